//! `orch run` end to end with the real `claude` binary (pinned, installed from npm on first use) against the
//! loopback Messages-API stand-in in `support/messages_api.rs`, playing the scenarios in `scenarios/`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use support::messages_api::{Scenario, StandIn};

const ORCH: &str = env!("CARGO_BIN_EXE_orch");
const ORCH_LOG: &str = env!("CARGO_BIN_EXE_orch-log");

const CHECK: &str = support::messages_api::CALC_CHECK;

struct Project {
    _dir: tempfile::TempDir,
    root: PathBuf,
    ws: PathBuf,
    standin: StandIn,
}

/// A project whose agent is the real claude, talking to a stand-in playing `scenario`.
fn project(scenario: &str, max_attempts: u32, idle_timeout_secs: u64) -> Project {
    let claude = support::claude();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_path_buf();
    let ws = root.join("ws");
    let home = root.join("home");
    std::fs::create_dir_all(&ws).expect("ws");
    std::fs::create_dir_all(&home).expect("home");
    std::fs::write(ws.join("check.sh"), CHECK).expect("check.sh");
    let ws = ws.canonicalize().expect("canonical ws");
    let scenario = Scenario::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios").join(scenario));
    let standin = StandIn::start(scenario, &ws);
    let config = format!(
        r#"[journal]
path = ".orch/journal"

{agent}
[orchestration]
max_attempts = {max_attempts}

[[projects]]
name = "calc"
workspace = "ws"
checks = ["sh check.sh"]
check_timeout_secs = 30

[[projects.tasks]]
id = "add"
title = "Add two numbers"
description = "Write calc.sh: `sh calc.sh A B` prints the sum of A and B."
acceptance = ["sh calc.sh 2 3 prints 5"]
"#,
        agent = support::messages_api::claude_agent_toml(
            &claude,
            &["--allowedTools", "Write", "Edit", "Bash", "Read"].map(String::from),
            idle_timeout_secs,
            &standin.url(),
            &home
        ),
    );
    std::fs::write(root.join("orch.toml"), config).expect("config");
    Project { _dir: dir, root, ws, standin }
}

fn run(bin: &str, args: &[&str], cwd: &Path) -> Output {
    support::run_binary(bin, args, cwd)
}

fn orch(p: &Project, args: &[&str]) -> Output {
    run(ORCH, args, &p.root)
}

fn text(o: &Output) -> String {
    support::both(o)
}

fn task(p: &Project) -> Value {
    serde_json::from_slice(&orch(p, &["task", "show", "add", "--json"]).stdout).expect("task json")
}

fn events(p: &Project) -> Vec<Value> {
    let out = run(ORCH_LOG, &["events", "--json"], &p.root);
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("event json")).collect()
}

/// The user prompt a main request answers.
fn last_user_text(body: &Value) -> String {
    support::messages_api::prompt_and_turn(body).0
}

#[test]
fn done_right_in_one_attempt() {
    let p = project("one-attempt.toml", 3, 60);
    let out = orch(&p, &["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let t = task(&p);
    assert_eq!(t["state"], "completed");
    assert_eq!(t["attempts"].as_array().map(Vec::len), Some(1));
    assert_eq!(std::fs::read_to_string(p.ws.join("calc.sh")).expect("calc.sh"), "echo $(($1 + $2))\n");
    let ev = events(&p);
    let exited = ev.iter().find(|e| e["kind"] == "agent_exited").expect("agent_exited");
    assert_eq!(exited["report"]["subtype"], "success");
    assert!(exited["report"]["num_turns"].as_u64() >= Some(2), "{exited}");
    assert!(exited["session_id"].is_string());
    assert!(ev.iter().any(|e| e["kind"] == "agent_output"
        && e["stream"] == "tool_use"
        && e["text"].as_str().is_some_and(|t| t.starts_with("Write:"))));
    assert!(ev.iter().any(|e| e["kind"] == "file_changed" && e["path"] == "calc.sh" && e["change"] == "created"));
    // The prompt carried the task's description verbatim, and the key never reached the journal.
    let first = &p.standin.main_requests()[0];
    assert!(last_user_text(&first.body).contains("Write calc.sh: `sh calc.sh A B` prints the sum of A and B."));
    let raw = std::fs::read_dir(p.root.join(".orch/journal"))
        .expect("journal")
        .flatten()
        .map(|e| std::fs::read(e.path()).unwrap_or_default())
        .collect::<Vec<_>>();
    assert!(raw.iter().all(|b| !b.windows(20).any(|w| w == b"sk-ant-test-secret-k")), "the API key is in the journal");
    let stats = run(ORCH_LOG, &["stats", "--json"], &p.root);
    let s: Value = serde_json::from_slice(&stats.stdout).expect("stats");
    assert!(s["projects"][0]["tokens"].as_u64() > Some(0), "{s}");
}

#[test]
fn a_failed_check_is_retried_with_its_output_and_completes_in_two() {
    let p = project("retry-after-failed-check.toml", 3, 60);
    let out = orch(&p, &["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let t = task(&p);
    assert_eq!(t["attempts"].as_array().map(Vec::len), Some(2));
    assert_eq!(t["attempts"][0]["decision"], "retry");
    assert_eq!(t["attempts"][1]["decision"], "proceed");
    // The second session's prompt says what failed, with the check's output.
    let mut prompts: Vec<String> = p.standin.main_requests().iter().map(|r| last_user_text(&r.body)).collect();
    prompts.dedup();
    assert_eq!(prompts.len(), 2, "{prompts:?}");
    assert!(prompts[1].contains("check `sh check.sh` failed (exit 1)"), "{}", prompts[1]);
    assert!(prompts[1].contains("FAIL: sh calc.sh 2 3 printed '-1', expected 5"), "{}", prompts[1]);
}

#[test]
fn a_question_waits_for_an_answer_then_the_same_session_resumes() {
    let p = project("question-then-answer.toml", 3, 60);
    let out = orch(&p, &["run"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let t = task(&p);
    assert_eq!(t["state"], "escalated");
    assert!(t["reason"].as_str().is_some_and(|r| r.contains("should calc.sh accept negative numbers too?")), "{t}");
    let session = t["attempts"][0]["session_id"].as_str().expect("session id").to_string();
    let ans = orch(&p, &["answer", "add", "Yes, negative numbers too."]);
    assert_eq!(ans.status.code(), Some(0), "{}", text(&ans));
    let out = orch(&p, &["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let t = task(&p);
    assert_eq!(t["state"], "completed");
    assert_eq!(t["attempts"][1]["session_id"].as_str(), Some(session.as_str()), "the same session");
    let ev = events(&p);
    let started: Vec<&Value> = ev.iter().filter(|e| e["kind"] == "attempt_started").collect();
    assert_eq!(started[1]["resume_session"].as_str(), Some(session.as_str()));
    // The resumed request carries the earlier conversation and the answer as the new prompt.
    let resumed = p
        .standin
        .main_requests()
        .into_iter()
        .find(|r| last_user_text(&r.body).contains("Yes, negative numbers too."))
        .expect("answer sent");
    let history = resumed.body["messages"].to_string();
    assert!(history.contains("should calc.sh accept negative numbers too?"), "{history}");
}

#[test]
fn a_stalled_model_hits_the_idle_timeout_and_is_retried_without_orphans() {
    let p = project("stall-then-success.toml", 3, 4);
    let out = orch(&p, &["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let t = task(&p);
    assert_eq!(t["attempts"].as_array().map(Vec::len), Some(2));
    assert_eq!(t["attempts"][0]["timeout"], "idle");
    let ev = events(&p);
    assert!(ev.iter().any(|e| e["kind"] == "validated" && e["findings"].to_string().contains("idle_timeout")));
    let home = p.root.join("home").display().to_string();
    let ws = p.ws.display().to_string();
    assert!(
        support::processes_with(&ws).is_empty() && support::processes_with(&home).is_empty(),
        "orphans: {:?}",
        support::processes_with(&ws)
    );
}

#[test]
fn overloaded_twice_is_retried_by_claude_itself() {
    let p = project("overloaded-twice.toml", 3, 60);
    let out = orch(&p, &["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(task(&p)["attempts"].as_array().map(Vec::len), Some(1));
    let statuses: Vec<String> = p.standin.main_requests().iter().map(|r| r.answer.clone()).collect();
    assert_eq!(statuses.iter().filter(|a| *a == "HTTP 529").count(), 2, "{statuses:?}");
}

#[test]
fn an_error_result_is_flagged_and_never_completed() {
    let p = project("error-result.toml", 2, 60);
    let out = orch(&p, &["run"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let t = task(&p);
    assert_eq!(t["state"], "escalated");
    let ev = events(&p);
    let findings: Vec<String> =
        ev.iter().filter(|e| e["kind"] == "validated").map(|e| e["findings"].to_string()).collect();
    assert_eq!(findings.len(), 2);
    assert!(
        findings.iter().all(|f| f.contains("error_reported_as_success") || f.contains("nonzero_exit")),
        "{findings:?}"
    );
    assert!(findings.iter().all(|f| f.contains("api_error")), "{findings:?}");
}

#[test]
fn deleting_the_checks_is_refused_before_it_happens_and_collateral_damage_is_undone_by_rollback() {
    let p = project("deletes-needed-file.toml", 2, 60);
    std::fs::write(p.ws.join("NOTES.md"), "# Notes\nkeep me\n").expect("NOTES.md");
    let out = orch(&p, &["run"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert_eq!(task(&p)["state"], "escalated");
    let ev = events(&p);
    // The hook refused `rm check.sh`: claude was told why, the file is whole.
    assert!(ev.iter().any(|e| e["kind"] == "agent_output"
        && e["stream"] == "tool_denied"
        && e["text"].as_str().is_some_and(|t| t.contains("`check.sh` is protected"))));
    assert_eq!(std::fs::read_to_string(p.ws.join("check.sh")).expect("check.sh"), CHECK);
    let findings: Vec<String> =
        ev.iter().filter(|e| e["kind"] == "validated").map(|e| e["findings"].to_string()).collect();
    assert!(findings.iter().any(|f| f.contains("protected_changed")), "{findings:?}");
    assert!(findings.iter().any(|f| f.contains("collateral_change") && f.contains("NOTES.md")), "{findings:?}");
    // The unrelated deletion happened, is journaled, and can be undone exactly.
    assert!(
        ev.iter().any(|e| e["kind"] == "file_changed"
            && e["path"] == "NOTES.md"
            && e["change"] == "deleted"
            && e["attempt"] == 1),
        "the deletion is journaled"
    );
    let rb = orch(&p, &["rollback", "add"]);
    assert_eq!(rb.status.code(), Some(0), "{}", text(&rb));
    assert_eq!(std::fs::read_to_string(p.ws.join("NOTES.md")).expect("restored"), "# Notes\nkeep me\n");
}

#[test]
fn a_background_process_left_by_a_tool_call_does_not_survive_the_session() {
    let p = project("background-process-then-stall.toml", 3, 4);
    let out = orch(&p, &["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        support::processes_with("time.sleep(304.25)").is_empty(),
        "survived: {:?}",
        support::processes_with("time.sleep(304.25)")
    );
    let ev = events(&p);
    let exited: Vec<&Value> = ev.iter().filter(|e| e["kind"] == "agent_exited").collect();
    assert_eq!(exited[0]["timeout"], "idle");
    assert!(exited[0]["orphans_killed"].as_u64() >= Some(1), "{}", exited[0]);
    assert!(ev
        .iter()
        .any(|e| e["kind"] == "agent_output" && e["text"].as_str().is_some_and(|t| t.contains("time.sleep(304.25)"))));
}

#[test]
fn a_rate_limit_and_a_malformed_stream_are_survived_by_claude_itself() {
    let p = project("rate-limited-then-malformed.toml", 3, 60);
    let out = orch(&p, &["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(task(&p)["attempts"].as_array().map(Vec::len), Some(1));
    let main = p.standin.main_requests();
    assert_eq!(main[0].answer, "HTTP 429");
    assert!(main.iter().any(|r| r.body["stream"] == Value::Bool(false)), "claude fell back to a non-streaming request");
    assert_eq!(std::fs::read_to_string(p.ws.join("calc.sh")).expect("calc.sh"), "echo $(($1 + $2))\n");
}
