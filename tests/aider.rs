//! `orch run` end to end with the real `aider` (pinned, installed from PyPI on first use) against the loopback
//! OpenAI-compatible stand-in in `support/openai_api.rs`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use support::openai_api::{OpenAiStandIn, Reply, Script};

const ORCH: &str = env!("CARGO_BIN_EXE_orch");
const ORCH_LOG: &str = env!("CARGO_BIN_EXE_orch-log");

fn whole_file(content: &str) -> String {
    format!("Here is the updated file:\n\ncalc.sh\n```\n{content}```\n")
}

struct Project {
    _dir: tempfile::TempDir,
    root: PathBuf,
    ws: PathBuf,
    standin: OpenAiStandIn,
}

fn project(replies: Vec<Reply>) -> Project {
    let aider = support::aider();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_path_buf();
    let ws = root.join("ws");
    std::fs::create_dir_all(&ws).expect("ws");
    std::fs::create_dir_all(root.join("home")).expect("home");
    std::fs::write(ws.join("calc.sh"), "echo TODO\n").expect("calc.sh");
    let standin = OpenAiStandIn::start(Script { replies });
    let config = format!(
        r#"[journal]
path = ".orch/journal"

[agent]
kind = "aider"
program = "{aider}"
args = ["--model", "openai/stand-in", "--openai-api-base", "{base}", "--openai-api-key", "sk-aider-test-secret-0123",
        "--edit-format", "whole", "--map-tokens", "0", "--no-git", "calc.sh"]
timeout_secs = 120
idle_timeout_secs = 60

[agent.env]
HOME = "{home}"
LITELLM_LOCAL_MODEL_COST_MAP = "True"

[[projects]]
name = "calc"
workspace = "ws"
checks = ["test \"$(sh calc.sh 2 3)\" = 5 || {{ echo \"FAIL: sh calc.sh 2 3 printed $(sh calc.sh 2 3), expected 5\"; exit 1; }}"]

[[projects.tasks]]
id = "add"
title = "Add two numbers"
description = "Make calc.sh print the sum of its two arguments."
"#,
        aider = aider.display(),
        base = standin.base(),
        home = root.join("home").display(),
    );
    std::fs::write(root.join("orch.toml"), config).expect("config");
    Project { _dir: dir, root, ws, standin }
}

fn run(bin: &str, args: &[&str], cwd: &Path) -> Output {
    support::run_binary(bin, args, cwd)
}

fn text(o: &Output) -> String {
    support::both(o)
}

#[test]
fn aider_is_retried_with_the_failure_and_completes() {
    let p = project(vec![
        Reply { content: Some(whole_file("echo $(($1 - $2))\n")), ..Reply::default() },
        Reply { content: Some(whole_file("echo $(($1 + $2))\n")), ..Reply::default() },
    ]);
    let out = run(ORCH, &["run"], &p.root);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(p.ws.join("calc.sh")).expect("calc.sh"), "echo $(($1 + $2))\n");
    let show = run(ORCH, &["task", "show", "add", "--json"], &p.root);
    let t: Value = serde_json::from_slice(&show.stdout).expect("json");
    assert_eq!(t["attempts"].as_array().map(Vec::len), Some(2));
    // The second prompt told aider what failed.
    let requests = p.standin.requests();
    assert_eq!(requests.len(), 2, "{:?}", requests.iter().map(|r| &r.answer).collect::<Vec<_>>());
    assert!(requests[1].body.to_string().contains("FAIL: sh calc.sh 2 3 printed -1, expected 5"));
    let events = run(ORCH_LOG, &["events", "--json"], &p.root);
    let ev: Vec<Value> =
        String::from_utf8_lossy(&events.stdout).lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    assert!(ev
        .iter()
        .any(|e| e["kind"] == "agent_output" && e["stream"] == "tool_use" && e["text"] == "Applied edit to calc.sh"));
    let exited = ev.iter().find(|e| e["kind"] == "agent_exited").expect("agent_exited");
    assert!(exited["report"]["input_tokens"].as_u64() > Some(0), "{exited}");
    // Nothing but calc.sh changed: aider's history files stay out of the workspace.
    let changed: Vec<&str> =
        ev.iter().filter(|e| e["kind"] == "file_changed").filter_map(|e| e["path"].as_str()).collect();
    assert_eq!(changed, vec!["calc.sh", "calc.sh"]);
    assert!(!String::from_utf8_lossy(&events.stdout).contains("sk-aider-test-secret"), "the key is journaled");
}

#[test]
fn an_empty_answer_from_the_model_is_an_error_not_a_success() {
    let p = project(vec![
        Reply { content: Some(String::new()), ..Reply::default() },
        Reply { content: Some(String::new()), ..Reply::default() },
    ]);
    let cfg = std::fs::read_to_string(p.root.join("orch.toml"))
        .expect("config")
        .replace("[[projects]]", "[orchestration]\nmax_attempts = 1\n\n[[projects]]");
    std::fs::write(p.root.join("orch.toml"), cfg).expect("config");
    let out = run(ORCH, &["run"], &p.root);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let events = run(ORCH_LOG, &["events", "--json", "--kind", "validated"], &p.root);
    let findings = String::from_utf8_lossy(&events.stdout).to_string();
    assert!(findings.contains("error_reported_as_success") || findings.contains("agent_error"), "{findings}");
}
