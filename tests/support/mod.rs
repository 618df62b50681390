//! Test support: the Messages-API stand-in and the pinned `claude` binary, installed on first use.

#![allow(dead_code)]

pub mod http;
pub mod messages_api;
pub mod openai_api;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The Claude Code version the tests pin.
pub const CLAUDE_VERSION: &str = "2.1.328";

/// The pinned `claude`, installed from npm into `target/test-tools/` the first time a test needs it (serialised
/// across test processes by a file lock).
pub fn claude() -> PathBuf {
    let tools = messages_api::tools_dir();
    std::fs::create_dir_all(&tools).expect("create target/test-tools");
    let lock = std::fs::File::create(tools.join("claude-install.lock")).expect("lock file");
    lock.lock().expect("lock");
    let prefix = tools.join(format!("claude-code-{CLAUDE_VERSION}"));
    let candidates = [
        prefix.join("node_modules/.bin/claude"),
        prefix.join("node_modules/@anthropic-ai/claude-code-linux-x64/claude"),
    ];
    if !candidates.iter().any(|c| runs(c)) {
        let status = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix"])
            .arg(&prefix)
            .arg(format!("@anthropic-ai/claude-code@{CLAUDE_VERSION}"))
            .status()
            .expect("npm must be installed to fetch the pinned claude");
        assert!(status.success(), "npm install @anthropic-ai/claude-code@{CLAUDE_VERSION} failed: {status}");
    }
    let bin = candidates
        .into_iter()
        .find(|c| runs(c))
        .unwrap_or_else(|| panic!("claude {CLAUDE_VERSION} was installed under {} but does not run", prefix.display()));
    let _ = lock.unlock();
    bin
}

fn runs(bin: &Path) -> bool {
    reports_version(bin, CLAUDE_VERSION)
}

fn reports_version(bin: &Path, version: &str) -> bool {
    Command::new(bin)
        .arg("--version")
        .output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains(version))
        .unwrap_or(false)
}

/// The aider version the tests pin.
pub const AIDER_VERSION: &str = "0.86.2";

/// The pinned `aider`, installed from PyPI into a virtual environment under `target/test-tools/` the first time a
/// test needs it (serialised across test processes by a file lock).
pub fn aider() -> PathBuf {
    let tools = messages_api::tools_dir();
    std::fs::create_dir_all(&tools).expect("create target/test-tools");
    let lock = std::fs::File::create(tools.join("aider-install.lock")).expect("lock file");
    lock.lock().expect("lock");
    let venv = tools.join(format!("aider-{AIDER_VERSION}"));
    let bin = venv.join("bin/aider");
    if !reports_version(&bin, AIDER_VERSION) {
        let status =
            Command::new("python3").arg("-m").arg("venv").arg(&venv).status().expect("python3 must be installed");
        assert!(status.success(), "python3 -m venv failed: {status}");
        let status = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .arg(format!("aider-chat=={AIDER_VERSION}"))
            .status()
            .expect("pip runs");
        assert!(status.success(), "pip install aider-chat=={AIDER_VERSION} failed: {status}");
    }
    assert!(reports_version(&bin, AIDER_VERSION), "aider {AIDER_VERSION} was installed but does not run");
    let _ = lock.unlock();
    bin
}

/// Processes whose command line contains `needle` (to prove nothing survived).
pub fn processes_with(needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                out.push(format!("{}: {cmd}", entry.file_name().to_string_lossy()));
            }
        }
    }
    out
}
