//! Prevention before the fact, for claude: a PreToolUse hook (`orch hook pre-tool-use RULES`, given to claude
//! through `--settings`) refuses a Write, Edit, MultiEdit or NotebookEdit of a protected file, a Bash command whose
//! words write one, and writes outside the workspace, with a reason the agent reads. claude reports the refusal as
//! the tool's error result (`PreToolUse:Write hook error: …`), which orch journals as a denied tool call.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::paths::{self, Protection};
use super::tools;

/// What the hook is told: written by orch for each attempt.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Rules {
    /// The workspace (or worktree), absolute.
    pub workspace: PathBuf,
    /// The protected files that existed when the attempt started, relative.
    pub protected_files: Vec<String>,
    /// Protected globs and what the task may change anyway (for runner configuration a command would create).
    pub patterns: Vec<String>,
    /// Globs the task may change although protected.
    pub may_change: Vec<String>,
    /// Where writes outside the workspace are fine (the attempt's temporary directory, the agent's state).
    pub allowed: Vec<PathBuf>,
    /// The agent's home, for `~` in commands.
    pub home: Option<PathBuf>,
}

/// The protected files of a workspace as it is now: every file (ignored ones and `.git` left out) the protection
/// guards as pre-existing; at most `limit`.
pub fn protected_files(workspace: &Path, protection: &Protection, limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    let walk = ignore::WalkBuilder::new(workspace).hidden(false).parents(false).git_global(false).build();
    for entry in walk.flatten() {
        if out.len() >= limit {
            break;
        }
        if !entry.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(workspace) else { continue };
        let rel = rel.to_string_lossy().replace('\\', "/");
        if rel.starts_with(".git/") {
            continue;
        }
        if protection.guards(&rel, true) {
            out.push(rel);
        }
    }
    out.sort();
    out
}

/// The reason to refuse a tool call, if it must be refused. `input` is the hook's JSON on stdin.
pub fn decide(rules: &Rules, input: &serde_json::Value) -> Option<String> {
    let name = input["tool_name"].as_str().unwrap_or("");
    let tool_input = &input["tool_input"];
    let target = match name {
        "Bash" => tool_input["command"].as_str().unwrap_or("").to_string(),
        _ => {
            tool_input["file_path"].as_str().or_else(|| tool_input["notebook_path"].as_str()).unwrap_or("").to_string()
        }
    };
    if target.is_empty() {
        return None;
    }
    // Writing a file's own content back, or an edit that changes nothing, changes nothing.
    let unchanged = match name {
        "Write" => tool_input["content"].as_str().is_some_and(|c| {
            tools::edit_target(&target, &rules.workspace, rules.home.as_deref())
                .and_then(|p| std::fs::read(p).ok())
                .is_some_and(|now| now == c.as_bytes())
        }),
        "Edit" => tool_input["old_string"].is_string() && tool_input["old_string"] == tool_input["new_string"],
        _ => false,
    };
    if unchanged {
        return None;
    }
    let written: Vec<PathBuf> = if name == "Bash" {
        tools::written_paths(&target, &rules.workspace, rules.home.as_deref())
    } else if tools::is_edit_tool(name) {
        tools::edit_target(&target, &rules.workspace, rules.home.as_deref()).into_iter().collect()
    } else {
        return None;
    };
    let protection = Protection::new(rules.patterns.clone(), &rules.may_change).ok();
    let ws = &rules.workspace;
    for p in written {
        if let Ok(rel) = p.strip_prefix(ws) {
            let rel = rel.to_string_lossy().replace('\\', "/");
            if rel.is_empty() {
                continue;
            }
            let hit = rules.protected_files.iter().any(|f| *f == rel || f.starts_with(&format!("{rel}/")))
                || protection.as_ref().is_some_and(|pr| !p.exists() && pr.guards(&rel, false));
            if hit {
                return Some(format!(
                    "orch: `{rel}` is protected: the project's checks judge the work by it, so it must not be \
                     modified, deleted or added. Fix the code instead; if the test itself is wrong, say so in your \
                     answer."
                ));
            }
            if rel == ".git" || rel.starts_with(".git/") {
                return Some(format!(
                    "orch: `{rel}` is the git repository itself; orch commits accepted work, leave .git alone."
                ));
            }
            continue;
        }
        let fine = p.starts_with("/dev") || rules.allowed.iter().any(|a| p.starts_with(a));
        if !fine && !paths::generated(&p.to_string_lossy()) {
            return Some(format!(
                "orch: `{}` is outside the workspace {}; work only inside it (use $TMPDIR for scratch files).",
                p.display(),
                ws.display()
            ));
        }
    }
    None
}

/// The hook's answer on stdout for a refusal.
pub fn deny_json(reason: &str) -> serde_json::Value {
    serde_json::json!({
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": "deny",
            "permissionDecisionReason": reason,
        }
    })
}

/// claude's `--settings` file that installs the hook: `command` is run through the shell for every edit and Bash
/// call.
pub fn claude_settings(command: &str) -> serde_json::Value {
    serde_json::json!({
        "hooks": {
            "PreToolUse": [{
                "matcher": "Write|Edit|MultiEdit|NotebookEdit|Bash",
                "hooks": [{"type": "command", "command": command}]
            }]
        }
    })
}

/// A word quoted for `sh`.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules() -> Rules {
        Rules {
            workspace: "/w/ws".into(),
            protected_files: vec!["tests/test_calc.py".into(), "check.sh".into()],
            patterns: paths::default_protected(&[], Path::new("/nonexistent")),
            may_change: vec![],
            allowed: vec!["/w/tmp".into()],
            home: Some("/home/u".into()),
        }
    }

    fn call(tool: &str, input: serde_json::Value) -> Option<String> {
        decide(&rules(), &json!({"tool_name": tool, "tool_input": input}))
    }

    #[test]
    fn refuses_edits_of_protected_files_and_outside_writes() {
        assert!(call("Write", json!({"file_path": "/w/ws/tests/test_calc.py"})).is_some());
        assert!(call("Edit", json!({"file_path": "/w/ws/check.sh"})).is_some());
        assert!(call("Write", json!({"file_path": "/w/ws/conftest.py"})).is_some(), "new runner configuration");
        assert!(call("Write", json!({"file_path": "/w/ws/../elsewhere.txt"})).is_some());
        assert!(call("Bash", json!({"command": "sed -i '/assert/d' tests/test_calc.py"})).is_some());
        assert!(call("Bash", json!({"command": "rm -rf tests"})).is_some());
        assert!(call("Bash", json!({"command": "echo 'exit 0' > check.sh"})).is_some());
        assert!(call("Bash", json!({"command": "cp calc.sh ~/backup.sh"})).is_some());
    }

    #[test]
    fn writing_a_protected_file_back_unchanged_is_no_change() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("tests")).expect("mkdir");
        std::fs::write(dir.path().join("tests/test_calc.py"), "assert 1\n").expect("write");
        let r = Rules { workspace: dir.path().to_path_buf(), ..rules() };
        let file = dir.path().join("tests/test_calc.py").display().to_string();
        let write = |content: &str| {
            decide(&r, &json!({"tool_name": "Write", "tool_input": {"file_path": file, "content": content}}))
        };
        assert_eq!(write("assert 1\n"), None);
        assert!(write("assert True\n").is_some());
    }

    #[test]
    fn lets_the_work_through() {
        assert_eq!(call("Write", json!({"file_path": "/w/ws/calc.py"})), None);
        assert_eq!(call("Write", json!({"file_path": "/w/ws/tests/test_new.py"})), None, "a new test file");
        assert_eq!(call("Bash", json!({"command": "python3 -m unittest discover -s tests"})), None);
        assert_eq!(call("Bash", json!({"command": "echo x > /w/tmp/scratch.txt"})), None);
        assert_eq!(call("Read", json!({"file_path": "/w/ws/tests/test_calc.py"})), None);
        let json = deny_json("no");
        assert_eq!(json["hookSpecificOutput"]["permissionDecision"], "deny");
    }
}
