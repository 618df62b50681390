//! A crash in the middle of a side effect — an attempt at work, a rollback restoring files, a merge — is settled at
//! the next start: the attempt's changes are journaled (and undone with `on_retry = "rollback"`), the rollback is
//! finished before the task is tried again, the merge is finished and never made twice. The crashes are real: a
//! `kill -9` during an attempt, and an abort at a fault point (`ORCH_FAULT`, debug builds) inside a rollback and
//! just after a merge. And a panic where none is expected — in the Scheduler, in the journal's writer — ends the
//! run with exit 1 and says so, instead of a hang; the next run resumes.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const ORCH: &str = env!("CARGO_BIN_EXE_orch");
const ORCH_LOG: &str = env!("CARGO_BIN_EXE_orch-log");

/// Attempt 1 spoils two files and creates a third; attempt 2 writes `done.txt` = `good` only if it finds the
/// workspace as it was before attempt 1 (`original.txt` untouched by then), else `bad`. With `hang`, attempt 1 then
/// waits to be killed (after saying so in `$MARK/started`).
fn agent(hang: bool) -> String {
    format!(
        r#"#!/bin/sh
if [ "$ORCH_ATTEMPT" = 1 ]; then
  echo "attempt 1 scribbles" > keep.txt
  echo "attempt 1 scribbles" > also.txt
  echo junk > junk.txt
  {hang}
  echo "Changed keep.txt, also.txt and junk.txt."
  exit 0
fi
if [ "$(cat keep.txt)" = original ] && [ "$(cat also.txt)" = original ] && [ ! -e junk.txt ]; then
  echo good > done.txt
else
  echo bad > done.txt
fi
echo "Wrote done.txt."
"#,
        hang = if hang { r#"touch "$MARK/started"; sleep 60"# } else { "" }
    )
}

fn setup(root: &Path, agent_script: &str, project_extra: &str) {
    std::fs::create_dir_all(root.join("mark")).expect("mark dir");
    std::fs::create_dir_all(root.join("ws")).expect("ws");
    for f in ["keep.txt", "also.txt"] {
        std::fs::write(root.join("ws").join(f), "original\n").expect("file");
    }
    std::fs::write(root.join("agent.sh"), agent_script).expect("agent");
    std::fs::write(
        root.join("orch.toml"),
        format!(
            r#"[journal]
path = ".orch/journal"

[agent]
kind = "command"
program = "sh"
args = ["{agent}"]
timeout_secs = 120
idle_timeout_secs = 120
writable = ["{mark}"]

[agent.env]
MARK = "{mark}"

[orchestration]
max_attempts = 3

[[projects]]
name = "p"
workspace = "ws"
checks = ["grep -qx good done.txt"]
{project_extra}

[[projects.tasks]]
id = "t"
title = "Write done.txt"
description = "Write done.txt."
"#,
            agent = root.join("agent.sh").display(),
            mark = root.join("mark").display(),
        ),
    )
    .expect("config");
}

fn orch_run(root: &Path, fault: Option<&str>) -> std::process::Child {
    let mut cmd = Command::new(ORCH);
    cmd.arg("run").current_dir(root).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.env_remove("ORCH_CONFIG").env_remove("ORCH_FAULT");
    if let Some(point) = fault {
        cmd.env("ORCH_FAULT", point);
    }
    cmd.spawn().expect("orch run")
}

fn events(root: &Path) -> Vec<Value> {
    let out = support::run_binary(ORCH_LOG, &["events", "--json"], root);
    assert_eq!(out.status.code(), Some(0), "orch-log events: {}", support::both(&out));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("event json")).collect()
}

fn of_kind<'a>(ev: &'a [Value], kind: &str) -> Vec<&'a Value> {
    ev.iter().filter(|e| e["kind"] == kind).collect()
}

fn task_state(root: &Path) -> String {
    let out = support::run_binary(ORCH, &["status", "--json"], root);
    let s: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    s["projects"][0]["tasks"][0]["state"].as_str().unwrap_or("?").to_string()
}

fn read(root: &Path, rel: &str) -> Option<String> {
    std::fs::read_to_string(root.join("ws").join(rel)).ok().map(|s| s.trim().to_string())
}

/// What the journal says, for assertion messages.
fn log(root: &Path) -> String {
    support::both(&support::run_binary(ORCH_LOG, &["events"], root))
}

/// Starts `orch run` and kills it with SIGKILL once attempt 1 (the hanging agent) has done its changes: nothing of
/// the attempt's end is journaled, and its agent lives on, adopted by init.
fn kill_during_attempt_1(root: &Path) {
    let mut run = orch_run(root, None);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !root.join("mark/started").exists() {
        assert!(Instant::now() < deadline, "attempt 1 never started:\n{}", log(root));
        assert!(run.try_wait().expect("try_wait").is_none(), "the run ended before the kill");
        std::thread::sleep(Duration::from_millis(20));
    }
    run.kill().expect("kill");
    let _ = run.wait();
}

#[test]
fn an_attempt_cut_short_by_a_kill_has_its_changes_journaled_and_rolled_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    setup(root, &agent(true), "on_retry = \"rollback\"");
    kill_during_attempt_1(root);
    assert_eq!(read(root, "keep.txt").as_deref(), Some("attempt 1 scribbles"));

    let out = orch_run(root, None).wait_with_output().expect("second run");
    assert_eq!(out.status.code(), Some(0), "{}\n{}", support::both(&out), log(root));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cut short by a crash"), "{}", support::both(&out));
    let ev = events(root);
    let changed: Vec<String> = of_kind(&ev, "file_changed")
        .iter()
        .filter(|e| e["attempt"] == 1)
        .map(|e| e["path"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(changed, ["also.txt", "junk.txt", "keep.txt"], "{}", log(root));
    let rolled: Vec<&Value> = of_kind(&ev, "rolled_back").into_iter().filter(|e| e["from_attempt"] == 1).collect();
    assert_eq!(rolled.len(), 1, "{}", log(root));
    assert_eq!(rolled[0]["restored"].as_array().map(Vec::len), Some(3), "{}", log(root));
    // Attempt 2 found the workspace as it was before attempt 1.
    assert_eq!(read(root, "done.txt").as_deref(), Some("good"), "{}", log(root));
    assert_eq!(task_state(root), "completed");
    assert!(of_kind(&ev, "intent_settled").iter().any(|e| e["intent"] == "attempt" && e["attempt"] == 1));
    // The agent attempt 1 left running was ended before its changes were read.
    let agent = root.join("agent.sh").display().to_string();
    assert!(support::processes_with(&agent).is_empty(), "attempt 1's agent survived");
}

#[test]
fn orch_rollback_undoes_an_attempt_a_kill_cut_short() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    setup(root, &agent(true), "");
    kill_during_attempt_1(root);
    // No `orch run` in between: the rollback itself finds what attempt 1 changed.
    let out = support::run_binary(ORCH, &["rollback", "p/t"], root);
    assert_eq!(out.status.code(), Some(0), "{}\n{}", support::both(&out), log(root));
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 file(s) restored"), "{}", support::both(&out));
    assert_eq!(read(root, "keep.txt").as_deref(), Some("original"));
    assert_eq!(read(root, "also.txt").as_deref(), Some("original"));
    assert_eq!(read(root, "junk.txt"), None);
}

#[test]
fn a_rollback_cut_short_is_finished_before_the_task_is_tried_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    setup(root, &agent(false), "on_retry = \"rollback\"");
    // Attempt 1 fails its check; its rollback aborts after restoring one of its three files.
    let out = orch_run(root, Some("rollback:one-restored")).wait_with_output().expect("first run");
    assert_ne!(out.status.code(), Some(0), "the fault point was not reached: {}", support::both(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("fault injected at rollback:one-restored"));
    let untouched = ["keep.txt", "also.txt"].iter().filter(|f| read(root, f).as_deref() != Some("original")).count()
        + usize::from(read(root, "junk.txt").is_some());
    assert_eq!(untouched, 2, "one file of three restored before the crash");

    let out = orch_run(root, None).wait_with_output().expect("second run");
    assert_eq!(out.status.code(), Some(0), "{}\n{}", support::both(&out), log(root));
    // Attempt 2 found all three restored, so it did not build on a half-restored workspace.
    assert_eq!(read(root, "done.txt").as_deref(), Some("good"), "{}", log(root));
    assert_eq!(task_state(root), "completed");
    let ev = events(root);
    let rolled = of_kind(&ev, "rolled_back");
    assert_eq!(rolled.len(), 1, "{}", log(root));
    assert_eq!(rolled[0]["restored"].as_array().map(Vec::len), Some(2), "the two left: {}", log(root));
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=orch test", "-c", "user.email=test@orch.invalid"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git");
    assert!(out.status.success(), "git {args:?}: {}", support::both(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_merge_cut_short_is_finished_once_and_never_made_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let script =
        "#!/bin/sh\necho \"work of attempt $ORCH_ATTEMPT\" > work.txt\necho good > done.txt\necho 'Wrote work.txt.'\n";
    setup(root, script, "isolation = \"worktree\"\nmerge = \"merge\"");
    let ws = root.join("ws");
    git(&ws, &["init", "-q", "-b", "main"]);
    std::fs::write(ws.join(".gitignore"), ".orch/\n").expect("gitignore");
    git(&ws, &["add", "-A"]);
    git(&ws, &["commit", "-q", "-m", "start"]);
    let out = orch_run(root, Some("merge:merged")).wait_with_output().expect("first run");
    assert_ne!(out.status.code(), Some(0), "the fault point was not reached: {}", support::both(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("fault injected at merge:merged"), "{}", support::both(&out));

    let out = orch_run(root, None).wait_with_output().expect("second run");
    assert_eq!(out.status.code(), Some(0), "{}\n{}", support::both(&out), log(root));
    assert_eq!(task_state(root), "completed", "{}", log(root));
    let ev = events(root);
    assert_eq!(of_kind(&ev, "attempt_started").len(), 1, "no second attempt: {}", log(root));
    let committed = of_kind(&ev, "committed");
    assert_eq!(committed.len(), 1, "{}", log(root));
    assert_eq!(committed[0]["merged"], true, "{}", log(root));
    let merges = git(&ws, &["log", "--merges", "--format=%s", "main"]);
    assert_eq!(merges.lines().count(), 1, "merged once: {merges}");
    assert_eq!(read(root, "work.txt").as_deref(), Some("work of attempt 1"));
}

#[test]
fn a_panic_in_the_scheduler_or_the_journal_writer_ends_the_run_and_the_next_run_resumes() {
    for point in ["scheduler:concluded", "journal:decided"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        setup(root, "#!/bin/sh\necho good > done.txt\necho 'Wrote done.txt.'\n", "");
        let out = orch_run(root, Some(&format!("panic:{point}"))).wait_with_output().expect("first run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{point}: {}", support::both(&out));
        assert!(stderr.contains(&format!("a part of the engine panicked: fault injected at {point}")), "{stderr}");
        let out = orch_run(root, None).wait_with_output().expect("second run");
        assert_eq!(out.status.code(), Some(0), "{point}: {}\n{}", support::both(&out), log(root));
        assert_eq!(task_state(root), "completed", "{point}: {}", log(root));
        let verify = support::run_binary(ORCH_LOG, &["verify"], root);
        assert_eq!(verify.status.code(), Some(0), "{point}: {}", support::both(&verify));
    }
}
