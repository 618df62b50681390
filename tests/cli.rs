//! End-to-end tests of the `orch` and `orch-log` binaries on temporary copies of the bundled demo.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const ORCH: &str = env!("CARGO_BIN_EXE_orch");
const ORCH_LOG: &str = env!("CARGO_BIN_EXE_orch-log");

fn demo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo")
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == "work" || name == ".orch" {
            continue; // what a run of the demo in place left behind
        }
        let (src, dst) = (entry.path(), to.join(&name));
        if entry.file_type()?.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

/// A fresh copy of config/demo in a temporary directory.
fn demo_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = dir.path().join("demo");
    copy_tree(&demo_dir(), &demo).expect("copy demo");
    (dir, demo)
}

fn run(bin: &str, args: &[&str], cwd: &Path) -> Output {
    let mut cmd = Command::new(bin);
    cmd.args(args).current_dir(cwd).stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("ORCH_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd.output().expect("binary runs")
}

fn orch(args: &[&str], cwd: &Path) -> Output {
    run(ORCH, args, cwd)
}

fn orch_log(args: &[&str], cwd: &Path) -> Output {
    run(ORCH_LOG, args, cwd)
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn tree_hashes(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            let name = e.file_name();
            if name == "work" || name == ".orch" {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(root).expect("prefix").display().to_string(),
                    std::fs::read(&p).expect("read"),
                );
            }
        }
    }
    out
}

fn run_demo(demo: &Path) -> Output {
    orch(&["run", "--config", "orch.toml"], demo)
}

#[test]
fn the_demo_runs_to_completion_with_a_retry_and_again() -> TestResult {
    let (_dir, demo) = demo_copy();
    let before = tree_hashes(&demo);
    let out = run_demo(&demo);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{}\nstderr:\n{}", text(&out), err(&out));
    let stdout = text(&out);
    assert!(stdout.contains("▶ greeter/greet  attempt 1 started"), "{stdout}");
    assert!(stdout.contains("attempt 1: retry"), "{stdout}");
    assert!(stdout.contains("✓ wordcount/count-words  completed"), "{stdout}");
    assert!(stdout.contains("run finished: 3 completed"), "{stdout}");
    // The tracked files are untouched: only work/ and .orch/ were made.
    assert_eq!(tree_hashes(&demo), before);

    let status = orch(&["status", "--json", "--config", "orch.toml"], &demo);
    assert_eq!(status.status.code(), Some(0), "{}", err(&status));
    let v: Value = serde_json::from_str(&text(&status))?;
    let tasks: Vec<&Value> = v["projects"]
        .as_array()
        .ok_or("projects")?
        .iter()
        .flat_map(|p| p["tasks"].as_array().into_iter().flatten())
        .collect();
    assert_eq!(tasks.len(), 3);
    assert!(tasks.iter().all(|t| t["state"] == "completed" && t["last_decision"] == "proceed"));
    assert!(tasks.iter().any(|t| t["attempts"].as_u64() >= Some(2)), "at least one after a retry");
    assert!(tasks.iter().all(|t| t["confidence"].as_f64().is_some_and(|c| c >= 0.85)));

    let events = orch_log(&["events", "--json", "--config", "orch.toml"], &demo);
    assert_eq!(events.status.code(), Some(0), "{}", err(&events));
    let lines: Vec<Value> = text(&events).lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    for (i, e) in lines.iter().enumerate() {
        assert_eq!(e["seq"].as_u64(), Some(i as u64 + 1), "gap-free sequence");
        assert!(e["time"].as_str().is_some_and(|t| t.ends_with('Z') && t.contains('T')), "{e}");
        assert!(e["kind"].is_string());
        if e["kind"] == "attempt_started" || e["kind"] == "decided" {
            assert!(e["project"].is_string() && e["task"].is_string() && e["attempt"].is_u64(), "{e}");
        }
    }
    assert!(lines.iter().any(|e| e["kind"] == "decided"
        && e["decision"] == "retry"
        && e["feedback"].as_str().is_some_and(|f| f.contains("FAIL"))));
    assert!(lines.iter().any(|e| e["kind"] == "file_changed" && e["path"] == "greet.sh"));

    let again = run_demo(&demo);
    assert_eq!(again.status.code(), Some(0), "second run: {}{}", text(&again), err(&again));
    assert_eq!(tree_hashes(&demo), before);
    let verify = orch_log(&["verify", "--config", "orch.toml"], &demo);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
    Ok(())
}

fn snapshot_filters() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.add_filter(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z", "[time]");
    s.add_filter(r"\d{2}:\d{2}:\d{2}\.\d{3}", "[time]");
    s.add_filter(r"(after|in) \d+\.\d+ s", "$1 [dur]");
    s.add_filter(r"[0-9a-f]{12}\)", "[hash])");
    s.add_filter(r"(?m)^ +\d+ ", "[seq] ");
    s.add_filter(r"`/[^`]*/demo/", "`[demo]/");
    s.add_filter(r"pid \d+", "pid [pid]");
    s.add_filter(r"agent time: \d+\.\d s", "agent time: [dur]");
    s.add_filter(r"prompt \d+ (tokens|bytes)", "prompt [size]");
    s
}

#[test]
fn what_users_read_after_the_demo() -> TestResult {
    let (_dir, demo) = demo_copy();
    assert_eq!(run_demo(&demo).status.code(), Some(0));
    let settings = snapshot_filters();
    let _guard = settings.bind_to_scope();
    insta::assert_snapshot!("status", text(&orch(&["status", "--config", "orch.toml"], &demo)));
    insta::assert_snapshot!("show_greet", text(&orch_log(&["show", "greet", "--config", "orch.toml"], &demo)));
    insta::assert_snapshot!(
        "task_show_greet",
        text(&orch(&["task", "show", "greeter/greet", "--config", "orch.toml"], &demo))
    );
    insta::assert_snapshot!("stats", text(&orch_log(&["stats", "--config", "orch.toml"], &demo)));
    Ok(())
}

#[test]
fn a_misspelled_key_fails_with_file_line_and_key() -> TestResult {
    let (_dir, demo) = demo_copy();
    let cfg = std::fs::read_to_string(demo.join("orch.toml"))?.replace("max_attempts = 3", "max_atempts = 3");
    std::fs::write(demo.join("bad.toml"), &cfg)?;
    let line = cfg.lines().position(|l| l.starts_with("max_atempts")).ok_or("line")? + 1;
    let out = orch(&["run", "--config", "bad.toml"], &demo);
    assert_eq!(out.status.code(), Some(2));
    let e = err(&out);
    assert!(e.contains(&format!("bad.toml:{line}:")), "{e}");
    assert!(e.contains("key `orchestration.max_atempts`"), "{e}");
    assert!(e.contains("unknown field `max_atempts`"), "{e}");
    // An impossible value names its line too.
    let cfg = std::fs::read_to_string(demo.join("orch.toml"))?.replace("priority = 8", "priority = 11");
    std::fs::write(demo.join("bad2.toml"), &cfg)?;
    let out = orch(&["status", "--config", "bad2.toml"], &demo);
    assert_eq!(out.status.code(), Some(2));
    assert!(err(&out).contains("key `projects.tasks.priority`: 11 is outside 1 ..= 10"), "{}", err(&out));
    // The environment layer is checked the same way.
    let out = Command::new(ORCH)
        .args(["status", "--config", "orch.toml"])
        .current_dir(&demo)
        .env("ORCH_JOURNAL__DURABILITY", "maybe")
        .output()?;
    assert_eq!(out.status.code(), Some(2));
    assert!(err(&out).contains("ORCH_JOURNAL__DURABILITY"), "{}", err(&out));
    Ok(())
}

#[test]
fn unknown_ids_and_missing_things_get_clear_errors() -> TestResult {
    let (_dir, demo) = demo_copy();
    let out = orch(&["status", "--config", "orch.toml"], &demo);
    assert_eq!(out.status.code(), Some(2));
    assert!(err(&out).contains("no journal at"), "{}", err(&out));
    assert_eq!(run_demo(&demo).status.code(), Some(0));
    for args in [vec!["task", "show", "nope"], vec!["answer", "nope", "x"], vec!["rollback", "nope"]] {
        let mut a = args.clone();
        a.extend(["--config", "orch.toml"]);
        let out = orch(&a, &demo);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(err(&out).contains("unknown task `nope`"), "{args:?}: {}", err(&out));
    }
    let out = orch_log(&["show", "nope", "--config", "orch.toml"], &demo);
    assert_eq!(out.status.code(), Some(2));
    let out = orch(&["run", "--config", "orch.toml", "--task", "nope"], &demo);
    assert_eq!(out.status.code(), Some(2), "{}", err(&out));
    let out = orch_log(&["events", "--kind", "nonsense", "--config", "orch.toml"], &demo);
    assert_eq!(out.status.code(), Some(2));
    assert!(err(&out).contains("not an event kind"));
    // A verdict on a task that is not waiting for one.
    let out = orch(&["approve", "greet", "--config", "orch.toml"], &demo);
    assert_eq!(out.status.code(), Some(2));
    assert!(err(&out).contains("is completed, not waiting for a human"), "{}", err(&out));
    // A missing agent program is found before anything runs.
    let cfg = std::fs::read_to_string(demo.join("orch.toml"))?.replace("agent/demo-agent", "agent/no-such-agent");
    std::fs::write(demo.join("noagent.toml"), cfg)?;
    let out = orch(&["run", "--config", "noagent.toml"], &demo);
    assert_eq!(out.status.code(), Some(2));
    assert!(err(&out).contains("no-such-agent` was not found"), "{}", err(&out));
    Ok(())
}

#[test]
fn init_task_add_and_a_run_of_the_added_task() -> TestResult {
    let dir = tempfile::tempdir()?;
    let out = orch(&["init", "proj"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", err(&out));
    let again = orch(&["init", "proj"], dir.path());
    assert_eq!(again.status.code(), Some(2), "refuses to overwrite");
    let root = dir.path().join("proj");
    std::fs::create_dir_all(root.join("ws"))?;
    let mut cfg = std::fs::read_to_string(root.join("orch.toml"))?;
    cfg.push_str("\n[[projects]]\nname = \"p\"\nworkspace = \"ws\"\nchecks = [\"test -s hello.txt\"]\n[projects.agent]\nkind = \"command\"\nprogram = \"sh\"\nargs = [\"-c\", \"cat > /dev/null; echo hi > hello.txt; echo wrote hello.txt\"]\n");
    std::fs::write(root.join("orch.toml"), cfg)?;
    let st = orch(&["status", "--json"], &root);
    assert_eq!(st.status.code(), Some(0), "{}", err(&st));
    let add =
        orch(&["task", "add", "--project", "p", "--id", "hello", "--title", "Say hello", "--priority", "7"], &root);
    assert_eq!(add.status.code(), Some(0), "{}", err(&add));
    let dup = orch(&["task", "add", "--project", "p", "--id", "hello", "--title", "Again"], &root);
    assert_eq!(dup.status.code(), Some(2));
    assert!(err(&dup).contains("already exists"));
    let bad = orch(&["task", "add", "--project", "nope", "--id", "x", "--title", "X"], &root);
    assert_eq!(bad.status.code(), Some(2));
    assert!(err(&bad).contains("unknown project"), "{}", err(&bad));
    let dep = orch(&["task", "add", "--project", "p", "--id", "y", "--title", "Y", "--depends-on", "ghost"], &root);
    assert_eq!(dep.status.code(), Some(2));
    let run = orch(&["run"], &root);
    assert_eq!(run.status.code(), Some(0), "{}{}", text(&run), err(&run));
    let show = orch(&["task", "show", "hello", "--json"], &root);
    let v: Value = serde_json::from_str(&text(&show))?;
    assert_eq!(v["state"], "completed");
    assert_eq!(v["priority"], 7);
    assert_eq!(v["attempts"][0]["files_changed"], 1);
    Ok(())
}

#[test]
fn an_escalated_task_takes_an_answer_and_verdicts() -> TestResult {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    std::fs::create_dir_all(root.join("ws"))?;
    std::fs::write(
        root.join("orch.toml"),
        "[orchestration]\nmax_attempts = 2\n[agent]\nkind = \"command\"\nprogram = \"sh\"\nwritable = [\".\"]\nargs = [\"-c\", \"cat > ../last-prompt.txt; echo attempt >> log.txt; echo tried\"]\n[[projects]]\nname = \"p\"\nworkspace = \"ws\"\nchecks = [\"test -f answered.txt\"]\n[[projects.tasks]]\nid = \"hard\"\ntitle = \"Hard\"\n[[projects.tasks]]\nid = \"after\"\ntitle = \"After\"\ndepends_on = [\"hard\"]\n",
    )?;
    let run = orch(&["run"], root);
    assert_eq!(run.status.code(), Some(3), "{}{}", text(&run), err(&run));
    let v: Value = serde_json::from_str(&text(&orch(&["status", "--json"], root)))?;
    let tasks = &v["projects"][0]["tasks"];
    let hard = tasks.as_array().ok_or("tasks")?.iter().find(|t| t["id"] == "hard").ok_or("hard")?;
    let after = tasks.as_array().ok_or("tasks")?.iter().find(|t| t["id"] == "after").ok_or("after")?;
    assert_eq!(hard["state"], "escalated");
    assert!(hard["reason"].as_str().is_some_and(|r| r.contains("2 attempt(s) without success")), "{hard}");
    assert_eq!(after["state"], "blocked");
    assert_eq!(after["reason"], "depends on p/hard, which is escalated");
    let ans = orch(&["answer", "hard", "Create answered.txt as well."], root);
    assert_eq!(ans.status.code(), Some(0), "{}", err(&ans));
    assert!(text(&ans).contains("now pending"));
    // The next run's prompt carries the answer; the agent still fails, so it is escalated again, then rejected.
    let run = orch(&["run"], root);
    assert_eq!(run.status.code(), Some(3));
    assert!(std::fs::read_to_string(root.join("last-prompt.txt"))?.contains("Create answered.txt as well."));
    let rej = orch(&["reject", "p/hard", "--reason", "not worth it"], root);
    assert_eq!(rej.status.code(), Some(0), "{}", err(&rej));
    let show = orch(&["task", "show", "hard", "--json"], root);
    let v: Value = serde_json::from_str(&text(&show))?;
    assert_eq!(v["state"], "failed");
    assert_eq!(v["reason"], "rejected: not worth it");
    let cancel = orch(&["cancel", "after"], root);
    assert_eq!(cancel.status.code(), Some(0));
    let cancel = orch(&["cancel", "after"], root);
    assert_eq!(cancel.status.code(), Some(2), "already cancelled");
    Ok(())
}

#[test]
fn a_damaged_record_is_reported_by_verify_and_at_start() -> TestResult {
    let (_dir, demo) = demo_copy();
    assert_eq!(run_demo(&demo).status.code(), Some(0));
    let journal = demo.join(".orch/journal");
    {
        let j = orch_actors::Journal::open(&journal, false)?;
        let mut raw = j.raw_event_for_tests(5).ok_or("event 5")?;
        let last = raw.len() - 1;
        raw[last] ^= 0x55;
        j.corrupt_event_for_tests(5, &raw)?;
    }
    assert!(orch_actors::Journal::wait_released(&journal, std::time::Duration::from_secs(10)));
    let out = orch_log(&["verify", "--journal", journal.to_str().ok_or("path")?], &demo);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("damaged: event 5: checksum mismatch"), "{}", text(&out));
    let events = orch_log(&["events", "--config", "orch.toml"], &demo);
    assert!(err(&events).contains("journal record event 5"), "{}", err(&events));
    Ok(())
}

#[test]
fn json_output_stays_clean_with_diagnostics_on() -> TestResult {
    let (_dir, demo) = demo_copy();
    let out = Command::new(ORCH)
        .args(["-vv", "run", "--config", "orch.toml"])
        .current_dir(&demo)
        .env("RUST_LOG", "debug")
        .output()?;
    assert_eq!(out.status.code(), Some(0));
    let out = Command::new(ORCH)
        .args(["-vv", "status", "--json", "--config", "orch.toml"])
        .current_dir(&demo)
        .env("RUST_LOG", "trace")
        .output()?;
    serde_json::from_slice::<Value>(&out.stdout)?;
    let out = Command::new(ORCH_LOG)
        .args(["-vv", "events", "--json", "--kind", "decided", "--config", "orch.toml"])
        .current_dir(&demo)
        .env("RUST_LOG", "trace")
        .output()?;
    let lines: Vec<Value> =
        String::from_utf8(out.stdout)?.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    assert_eq!(lines.len(), 5, "two retries and three proceeds");
    assert!(lines.iter().all(|l| l["kind"] == "decided"));
    let by_task =
        orch_log(&["events", "--json", "--task", "count-words", "--since", "1h", "--config", "orch.toml"], &demo);
    let lines: Vec<Value> = text(&by_task).lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    assert!(!lines.is_empty() && lines.iter().all(|l| l["task"] == "count-words"));
    Ok(())
}

#[test]
fn rollback_restores_what_the_attempts_changed() -> TestResult {
    let (_dir, demo) = demo_copy();
    assert_eq!(run_demo(&demo).status.code(), Some(0));
    let ws = demo.join("work/greeter");
    assert!(ws.join("greet.sh").exists());
    let out = orch(&["rollback", "greet", "--attempt", "2", "--config", "orch.toml"], &demo);
    assert_eq!(out.status.code(), Some(0), "{}", err(&out));
    // Attempt 2 rewrote greet.sh: back to attempt 1's version.
    assert!(std::fs::read_to_string(ws.join("greet.sh"))?.contains("echo \"Hello $1\""));
    let out = orch(&["rollback", "greet", "--config", "orch.toml"], &demo);
    assert_eq!(out.status.code(), Some(0), "{}", err(&out));
    assert!(!ws.join("greet.sh").exists(), "attempt 1 created it");
    std::fs::write(ws.join("farewell.sh"), "edited by a human")?;
    let out = orch(&["rollback", "farewell", "--config", "orch.toml"], &demo);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out).contains("conflict farewell.sh"), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(ws.join("farewell.sh"))?, "edited by a human");
    let out = orch(&["rollback", "farewell", "--force", "--config", "orch.toml"], &demo);
    assert_eq!(out.status.code(), Some(0));
    assert!(!ws.join("farewell.sh").exists());
    Ok(())
}

#[test]
fn sigint_stops_the_run_gracefully() -> TestResult {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    std::fs::create_dir_all(root.join("ws"))?;
    let marker = format!("sleep 303.{}", std::process::id());
    std::fs::write(
        root.join("orch.toml"),
        format!("[agent]\nkind = \"command\"\nprogram = \"sh\"\nargs = [\"-c\", \"cat >/dev/null; echo working; {marker}\"]\n[[projects]]\nname = \"p\"\nworkspace = \"ws\"\n[[projects.tasks]]\nid = \"slow\"\ntitle = \"Slow\"\n"),
    )?;
    let child =
        Command::new(ORCH).args(["run"]).current_dir(root).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    // Wait until the agent is running.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let running = std::fs::read_dir("/proc")?.flatten().any(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " ").contains(&marker))
                .unwrap_or(false)
        });
        if running {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the agent never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // While it runs, a second run on the same journal refuses, saying why.
    let second = orch(&["run"], root);
    assert_eq!(second.status.code(), Some(2), "{}", err(&second));
    assert!(err(&second).contains("another `orch run` (pid"), "{}", err(&second));
    Command::new("kill").args(["-INT", &child.id().to_string()]).status()?;
    let out = child.wait_with_output()?;
    assert_eq!(out.status.code(), Some(130), "{}{}", text(&out), err(&out));
    let events = orch_log(&["events", "--json"], root);
    let lines: Vec<Value> = text(&events).lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    assert!(lines.iter().any(|l| l["kind"] == "attempt_interrupted"));
    assert!(lines.iter().any(|l| l["kind"] == "run_finished" && l["outcome"] == "interrupted"));
    let v: Value = serde_json::from_str(&text(&orch(&["status", "--json"], root)))?;
    assert_eq!(v["projects"][0]["tasks"][0]["state"], "pending");
    Ok(())
}

#[test]
fn a_broken_claude_is_reported_once_at_start() -> TestResult {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    std::fs::create_dir_all(root.join("ws"))?;
    let fake = root.join("claude");
    std::fs::write(&fake, "#!/bin/sh\necho 'error: the native binary for this platform is missing' >&2\nexit 1\n")?;
    std::process::Command::new("chmod").args(["+x", fake.to_str().ok_or("path")?]).status()?;
    std::fs::write(
        root.join("orch.toml"),
        "[agent]\nkind = \"claude-code\"\nprogram = \"./claude\"\n[[projects]]\nname = \"p\"\nworkspace = \"ws\"\n[[projects.tasks]]\nid = \"a\"\ntitle = \"A\"\n[[projects.tasks]]\nid = \"b\"\ntitle = \"B\"\n",
    )?;
    let out = orch(&["run"], root);
    assert_eq!(out.status.code(), Some(2), "{}{}", text(&out), err(&out));
    let e = err(&out);
    assert_eq!(e.matches("--version` failed").count(), 1, "reported once: {e}");
    assert!(e.contains("the native binary for this platform is missing"), "{e}");
    // Nothing ran: no task was attempted.
    let st = orch(&["status", "--json"], root);
    assert_eq!(st.status.code(), Some(2), "no journal was even needed: {}", err(&st));
    Ok(())
}

#[test]
fn an_unreachable_llm_is_a_warning_unless_it_is_required() -> TestResult {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let cfg = format!("[llm]\nprovider = \"ollama\"\nbase_url = \"http://127.0.0.1:{port}\"\nmax_retries = 0\n");
    std::fs::write(root.join("orch.toml"), &cfg)?;
    let out = orch(&["run"], root);
    assert_eq!(out.status.code(), Some(0), "{}", err(&out));
    assert!(
        err(&out).contains("cannot be reached") && err(&out).contains("going on with evidence alone"),
        "{}",
        err(&out)
    );
    std::fs::write(root.join("orch.toml"), format!("{cfg}required = true\n"))?;
    let out = orch(&["run"], root);
    assert_eq!(out.status.code(), Some(2), "{}", err(&out));
    assert!(err(&out).contains("the LLM is required but not usable"), "{}", err(&out));
    Ok(())
}

/// A task's state in `orch status --json`, or "".
fn task_state(status: &Value, id: &str) -> String {
    status["projects"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["tasks"].as_array().cloned().unwrap_or_default())
        .find(|t| t["id"] == id)
        .and_then(|t| t["state"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Waits up to 30 s for `cond`.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < std::time::Duration::from_secs(30), "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn while_a_run_holds_the_journal_other_commands_work_through_its_socket() -> TestResult {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    std::fs::create_dir_all(root.join("ws"))?;
    std::fs::create_dir_all(root.join("ws2"))?;
    std::fs::create_dir_all(root.join("ws3"))?;
    // `slow` holds the run open until the test lets it go; `ask` asks a question on its first attempt.
    std::fs::write(
        root.join("agent.sh"),
        "case $ORCH_TASK_ID in\n\
         slow) while [ ! -f ../release ]; do sleep 0.05; done; echo done > slow.txt; echo 'Wrote slow.txt.';;\n\
         ask) if [ \"$ORCH_ATTEMPT\" = 1 ]; then echo 'Which greeting should it print?'; else echo hi > ask.txt; echo 'Wrote ask.txt.'; fi;;\n\
         hang) echo started; while true; do sleep 0.05; done;;\n\
         *) echo x > \"$ORCH_TASK_ID.txt\"; echo \"Wrote $ORCH_TASK_ID.txt.\";;\n\
         esac\n",
    )?;
    std::fs::write(
        root.join("orch.toml"),
        "[agent]\nkind = \"command\"\nprogram = \"sh\"\nargs = [\"../agent.sh\"]\n\n[orchestration]\nmax_sessions = 3\n\n\
         [[projects]]\nname = \"p\"\nworkspace = \"ws\"\n\n[[projects.tasks]]\nid = \"slow\"\ntitle = \"Slow\"\n\n\
         [[projects]]\nname = \"q\"\nworkspace = \"ws2\"\n\n[[projects.tasks]]\nid = \"ask\"\ntitle = \"Ask\"\n\n\
         [[projects]]\nname = \"r\"\nworkspace = \"ws3\"\n\n[[projects.tasks]]\nid = \"hang\"\ntitle = \"Hang\"\n",
    )?;
    let mut cmd = Command::new(ORCH);
    cmd.arg("run").current_dir(root).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("ORCH_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    let run = cmd.spawn()?;
    let socket = root.join(".orch/journal/control.sock");
    wait_for("the control socket", || socket.exists());
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&socket)?.permissions().mode() & 0o777, 0o600);
    }
    // A follower streams events live.
    let follower = Command::new(ORCH_LOG)
        .args(["follow", "--json"])
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    // The question is asked; the task waits for an answer while the run goes on.
    wait_for("ask to wait for an answer", || {
        let s: Value = serde_json::from_slice(&orch(&["status", "--json"], root).stdout).unwrap_or(Value::Null);
        task_state(&s, "ask") == "escalated"
    });
    // A cancelled task's agent is stopped, and its attempt is journaled as a human's cancel, not a shutdown.
    wait_for("hang to be running", || {
        let s: Value = serde_json::from_slice(&orch(&["status", "--json"], root).stdout).unwrap_or(Value::Null);
        task_state(&s, "hang") == "running"
    });
    let cancelled = orch(&["cancel", "hang"], root);
    assert_eq!(cancelled.status.code(), Some(0), "{}", text(&cancelled));
    wait_for("hang's attempt to be interrupted", || {
        String::from_utf8_lossy(&orch_log(&["events", "--task", "hang", "--kind", "attempt_interrupted"], root).stdout)
            .contains("stopped: cancelled by a human")
    });
    let second = orch(&["run"], root);
    assert_eq!(second.status.code(), Some(2), "{}", text(&second));
    assert!(err(&second).contains("another `orch run` (pid"), "{}", err(&second));
    let answered = orch(&["answer", "ask", "Print hi."], root);
    assert_eq!(answered.status.code(), Some(0), "{}", text(&answered));
    assert!(text(&answered).contains("q/ask: now pending"), "{}", text(&answered));
    let added = orch(&["task", "add", "--project", "q", "--id", "extra", "--title", "Extra"], root);
    assert_eq!(added.status.code(), Some(0), "{}", text(&added));
    let rollback = orch(&["rollback", "ask"], root);
    assert_eq!(rollback.status.code(), Some(2), "{}", text(&rollback));
    assert!(err(&rollback).contains("stop it first"), "{}", err(&rollback));
    let unknown = orch(&["approve", "nope"], root);
    assert_eq!(unknown.status.code(), Some(2), "{}", text(&unknown));
    assert!(err(&unknown).contains("nope"), "{}", err(&unknown));
    // The answered task and the added one run in this same run.
    wait_for("ask and extra to complete", || {
        let s: Value = serde_json::from_slice(&orch(&["status", "--json"], root).stdout).unwrap_or(Value::Null);
        task_state(&s, "ask") == "completed" && task_state(&s, "extra") == "completed"
    });
    let events = orch_log(&["events", "--task", "ask", "--json"], root);
    assert_eq!(events.status.code(), Some(0), "{}", text(&events));
    assert!(String::from_utf8_lossy(&events.stdout).contains("\"kind\":\"human_answered\""));
    assert_eq!(orch_log(&["verify"], root).status.code(), Some(0));
    std::fs::write(root.join("release"), "")?;
    let out = run.wait_with_output()?;
    // Not every selected task completed: one was cancelled.
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(!socket.exists(), "the socket is removed when the run ends");
    // The follower saw the run's events live, then keeps following the journal between runs.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut follower = follower;
    let _ = follower.kill();
    let followed = follower.wait_with_output()?;
    let lines: Vec<Value> =
        String::from_utf8_lossy(&followed.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert!(lines.iter().any(|e| e["kind"] == "task_added" && e["task"] == "extra"), "{lines:?}");
    assert!(lines.iter().any(|e| e["kind"] == "run_finished"), "{lines:?}");
    let seqs: Vec<u64> = lines.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "no gap, no repeat: {seqs:?}");
    Ok(())
}

#[test]
fn on_a_terminal_the_run_shows_a_live_view() -> TestResult {
    // `script` gives `orch run` a pseudo-terminal, as a user's shell would.
    let (_dir, demo) = demo_copy();
    let cmd = format!("{ORCH} run --config orch.toml");
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .current_dir(&demo)
        .stdin(Stdio::null())
        .env("COLUMNS", "120")
        .env("TERM", "xterm")
        .output()
        .expect("script (util-linux) runs");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let screen = String::from_utf8_lossy(&out.stdout);
    // A bar per project with its count, and the progress lines above them.
    assert!(screen.contains("greeter") && screen.contains("wordcount"), "{screen}");
    assert!(screen.contains("2/2") || screen.contains("1/1"), "{screen}");
    assert!(screen.contains("[===="), "{screen}");
    assert!(screen.contains("attempt 1: retry"), "{screen}");
    assert!(screen.contains("run finished: 3 completed"), "{screen}");
    // Not on a terminal: plain lines, no bar.
    let (_dir2, demo2) = demo_copy();
    let plain = run_demo(&demo2);
    assert!(!text(&plain).contains("[===="), "{}", text(&plain));
    Ok(())
}

#[test]
fn a_task_id_that_could_leave_its_directory_is_refused_at_every_door() -> TestResult {
    let (_dir, demo) = demo_copy();
    for id in ["../x", ".hidden", "a/b"] {
        let out =
            orch(&["task", "add", "--project", "greeter", "--id", id, "--title", "T", "--config", "orch.toml"], &demo);
        assert_eq!(out.status.code(), Some(2), "{id}: {}", text(&out));
        assert!(err(&out).contains("is not a valid"), "{id}: {}", err(&out));
    }
    Ok(())
}

#[test]
fn what_an_agent_prints_never_reaches_the_terminal_as_escape_sequences() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    // The agent prints a clipboard write (OSC 52), a title, a screen clear and a C1 CSI, then does its work.
    let script = r"printf 'copy \033]52;c;ZWNobyBvd25lZA==\007 title \033]0;pwned\007 clear \033[2J csi \302\23331m\n'; echo ok > out.txt; echo done";
    std::fs::write(
        root.join("orch.toml"),
        format!(
            "[agent]\nkind = \"command\"\nprogram = \"sh\"\nargs = [\"-c\", '''{script}''']\n[[projects]]\nname = \"p\"\nworkspace = \"ws\"\ncreate_workspace = true\n[[projects.tasks]]\nid = \"t\"\ntitle = \"T\"\n"
        ),
    )?;
    let out = orch(&["run"], root);
    assert_eq!(out.status.code(), Some(0), "{}", err(&out));
    for args in [&["events"][..], &["show", "t"][..]] {
        let o = orch_log(args, root);
        assert!(o.status.success(), "{}", err(&o));
        assert!(!o.stdout.contains(&0x1b) && !text(&o).contains('\u{9b}'), "orch-log {args:?} printed raw escapes");
        assert!(text(&o).contains("\\u{1b}]52;c;"), "orch-log {args:?} shows the sequence escaped: {}", text(&o));
    }
    // JSON carries the text as it was, escaped by JSON itself.
    let o = orch_log(&["events", "--json", "--kind", "agent_output"], root);
    assert!(!o.stdout.contains(&0x1b), "{}", text(&o));
    assert!(text(&o).contains("\\u001b]52"), "{}", text(&o));
    Ok(())
}

#[test]
fn an_unset_llm_key_stops_only_the_run() -> Result<(), Box<dyn std::error::Error>> {
    let (_dir, root) = demo_copy();
    let path = root.join("orch.toml");
    let text = std::fs::read_to_string(&path)?;
    let llm = "[llm]\nprovider = \"openai\"\napi_key_env = \"ORCH_TEST_UNSET_KEY\"\n";
    assert!(!text.contains("[llm]"), "the demo has an [llm] table of its own: adjust this test");
    // A journal to look at, made by a run without the LLM.
    let first = orch(&["run"], &root);
    assert_eq!(first.status.code(), Some(0), "{}", err(&first));
    std::fs::write(&path, format!("{llm}\n{text}"))?;
    let status = orch(&["status"], &root);
    assert_eq!(status.status.code(), Some(0), "status never calls the LLM: {}", err(&status));
    let log = orch_log(&["events"], &root);
    assert!(log.status.success(), "{}", err(&log));
    let run = orch(&["run"], &root);
    assert_eq!(run.status.code(), Some(2), "{}", err(&run));
    assert!(err(&run).contains("ORCH_TEST_UNSET_KEY") && err(&run).contains("orch.toml:3"), "{}", err(&run));
    Ok(())
}

/// Flips one bit at `at` (a fraction of its length) in the journal's storage file under `journal`.
fn flip_bit(journal: &Path, at: f64) -> std::io::Result<()> {
    let db = journal.join("db");
    let mut bytes = std::fs::read(&db)?;
    let i = ((bytes.len() as f64) * at) as usize;
    bytes[i] ^= 0x10;
    std::fs::write(db, bytes)
}

#[test]
fn a_flipped_bit_never_silently_loses_work_and_recover_saves_what_can_be_read() -> Result<(), Box<dyn std::error::Error>>
{
    let (_dir, root) = demo_copy();
    let first = orch(&["run"], &root);
    assert_eq!(first.status.code(), Some(0), "{}", err(&first));
    let journal = root.join(".orch/journal");
    let pristine = root.join("pristine-journal");
    copy_tree(&journal, &pristine)?;
    // Damage in the middle of what was written, with the storage's snapshot (as `orch-log` leaves it) and without
    // (as the run leaves it).
    for (at, snapshot) in [(0.5, false), (0.3, false), (0.8, false), (0.5, true)] {
        let _ = std::fs::remove_dir_all(&journal);
        copy_tree(&pristine, &journal)?;
        if snapshot {
            assert!(orch_log(&["verify"], &root).status.success());
        }
        let size = std::fs::metadata(pristine.join("db"))?.len() as f64;
        let len = std::fs::metadata(journal.join("db"))?.len() as f64;
        flip_bit(&journal, at * size / len)?;
        let case = format!("bit flipped at {:.0} % (snapshot: {snapshot})", at * 100.0);
        let verify = orch_log(&["verify"], &root);
        assert_ne!(verify.status.code(), Some(0), "{case}: verify calls it whole: {}", text(&verify));
        let run = orch(&["run"], &root);
        assert_ne!(run.status.code(), Some(0), "{case}: a run went ahead on it");
        assert!(err(&run).contains("orch-log recover"), "{case}: {}", err(&run));
        let saved = root.join(format!("recovered-{}-{snapshot}", (at * 100.0) as u32));
        let recover = orch_log(&["recover", saved.to_str().ok_or("path")?], &root);
        assert_eq!(recover.status.code(), Some(1), "{case}: {}{}", text(&recover), err(&recover));
        assert!(text(&recover).contains("were on disk and are gone"), "{case}: {}", text(&recover));
        let whole = orch_log(&["--journal", saved.to_str().ok_or("path")?, "verify"], &root);
        assert_eq!(whole.status.code(), Some(0), "{case}: {}{}", text(&whole), err(&whole));
    }
    // An undamaged journal recovers whole.
    let saved = root.join("recovered-whole");
    let recover =
        orch_log(&["--journal", pristine.to_str().ok_or("path")?, "recover", saved.to_str().ok_or("path")?], &root);
    assert_eq!(recover.status.code(), Some(0), "{}", text(&recover));
    assert!(text(&recover).contains("nothing was lost"));
    Ok(())
}

/// A tmpfs of `size` mounted at `dir` for the length of a test (root only), unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }

    fn resize(&self, size: &str) -> bool {
        Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_ends_the_run_saying_so_and_the_next_run_goes_on() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    let disk = match Tmpfs::mount(&root.join("disk"), "1m") {
        Ok(d) => d,
        Err(e) => {
            eprintln!("not tested: a small disk for the journal cannot be mounted here ({e}); needs root");
            return Ok(());
        }
    };
    let mut config = String::from(
        "[journal]\npath = \"disk/journal\"\n[agent]\nkind = \"command\"\nprogram = \"sh\"\n\
         args = [\"-c\", \"head -c 150000 /dev/zero | tr '\\\\0' x | fold -w 100; echo $ORCH_TASK_ID > $ORCH_TASK_ID.txt; echo done\"]\n\
         [[projects]]\nname = \"p\"\nworkspace = \"ws\"\ncreate_workspace = true\n",
    );
    for i in 0..12 {
        config.push_str(&format!("[[projects.tasks]]\nid = \"t{i:02}\"\ntitle = \"T{i}\"\n"));
    }
    std::fs::write(root.join("orch.toml"), config)?;
    let full = run("timeout", &["120", ORCH, "run"], root);
    assert_eq!(full.status.code(), Some(1), "the run ends by itself, as an internal error: {}", err(&full));
    let said = err(&full);
    assert!(said.contains("is full") && said.contains("disk/journal"), "it says the disk is full, and which: {said}");
    // Space is freed: the next run goes on where it stopped and every task ends in a defined state. (An attempt the
    // full disk interrupted may have written its file without the change being journaled; its retry then changes
    // nothing and the task goes to a human — issue 11's item 4, not yet settled on restart.)
    assert!(disk.resize("64m"), "remount");
    let again = run("timeout", &["120", ORCH, "run"], root);
    assert!(matches!(again.status.code(), Some(0) | Some(3)), "{}{}", text(&again), err(&again));
    let status = orch(&["status", "--json"], root);
    let v: Value = serde_json::from_slice(&status.stdout)?;
    let tasks = v["projects"][0]["tasks"].as_array().ok_or("tasks")?;
    assert_eq!(tasks.len(), 12);
    let completed = tasks.iter().filter(|t| t["state"] == "completed").count();
    assert!(completed == 12, "the attempts the disk interrupted are settled and finished: {tasks:?}");
    assert!(tasks.iter().all(|t| t["state"] == "completed" || t["state"] == "escalated"), "{tasks:?}");
    let verify = orch_log(&["verify"], root);
    assert!(verify.status.success(), "{}", text(&verify));
    Ok(())
}

/// `orch run` in `root` (the test's `ORCH_*` variables removed), its output piped.
fn spawn_run(root: &Path) -> std::io::Result<std::process::Child> {
    let mut cmd = Command::new(ORCH);
    cmd.arg("run").current_dir(root).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("ORCH_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd.spawn()
}

fn status_json(root: &Path) -> Value {
    serde_json::from_slice(&orch(&["status", "--json"], root).stdout).unwrap_or(Value::Null)
}

#[test]
fn an_agent_may_read_the_journal_but_never_give_a_verdict() -> TestResult {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    std::fs::create_dir_all(root.join("ws"))?;
    std::fs::create_dir_all(root.join("ws2"))?;
    // `ask` is escalated (it asks a question); `sneak` waits for that, then tries to approve it — through the run's
    // socket, with its environment and with none (`env -i`) — and to add a task; then reads, which it may.
    std::fs::write(
        root.join("agent.sh"),
        "case $ORCH_TASK_ID in\n\
         ask) echo 'Which greeting should it print?';;\n\
         sneak)\n\
           until \"$ORCH_BIN\" --config \"$ROOT/orch.toml\" task show q/ask --json | grep -q '\"state\":\"escalated\"'; do sleep 0.05; done\n\
           \"$ORCH_BIN\" --config \"$ROOT/orch.toml\" approve q/ask > approve.out 2>&1; echo $? > approve.code\n\
           env -i \"$ORCH_BIN\" --config \"$ROOT/orch.toml\" approve q/ask > approve-bare.out 2>&1; echo $? > approve-bare.code\n\
           \"$ORCH_BIN\" --config \"$ROOT/orch.toml\" task add --project q --id planted --title Planted > add.out 2>&1; echo $? > add.code\n\
           \"$ORCH_BIN\" --config \"$ROOT/orch.toml\" status > status.out 2>&1; echo $? > status.code\n\
           echo 'Tried.';;\n\
         esac\n",
    )?;
    std::fs::write(
        root.join("orch.toml"),
        format!(
            "[agent]\nkind = \"command\"\nprogram = \"sh\"\nargs = [\"../agent.sh\"]\n[agent.env]\nORCH_BIN = \"{ORCH}\"\n\
             ROOT = \"{}\"\n\n[orchestration]\nmax_sessions = 2\n\n\
             [[projects]]\nname = \"p\"\nworkspace = \"ws\"\n\n[[projects.tasks]]\nid = \"sneak\"\ntitle = \"Sneak\"\n\n\
             [[projects]]\nname = \"q\"\nworkspace = \"ws2\"\n\n[[projects.tasks]]\nid = \"ask\"\ntitle = \"Ask\"\n",
            root.display()
        ),
    )?;
    let run = spawn_run(root)?;
    let out = run.wait_with_output()?;
    let ws = root.join("ws");
    let read = |f: &str| std::fs::read_to_string(ws.join(f)).unwrap_or_default();
    let log = format!("run: {}\n{}", text(&out), err(&out));
    for attempt in ["approve", "approve-bare", "add"] {
        assert_eq!(
            read(&format!("{attempt}.code")).trim(),
            "2",
            "{attempt}: {}\n{log}",
            read(&format!("{attempt}.out"))
        );
        assert!(
            read(&format!("{attempt}.out"))
                .contains("from inside an attempt (p/sneak#1) may only read; verdicts are a human's"),
            "{attempt}: {}",
            read(&format!("{attempt}.out"))
        );
    }
    assert_eq!(read("status.code").trim(), "0", "{}", read("status.out"));
    assert!(read("status.out").contains("ask"), "{}", read("status.out"));
    // The escalated task is still waiting for a human; nothing was added.
    let s = status_json(root);
    assert_eq!(task_state(&s, "ask"), "escalated", "{s}");
    assert_eq!(task_state(&s, "sneak"), "completed", "{s}");
    assert_eq!(task_state(&s, "planted"), "", "{s}");
    let events = text(&orch_log(&["events", "--task", "q/ask"], root));
    assert!(!events.contains("approved by a human"), "{events}");
    // With no run, the command opens the journal itself: inside an attempt it refuses the same.
    let mut direct = Command::new(ORCH);
    direct.args(["approve", "q/ask"]).current_dir(root).stdin(Stdio::null());
    direct.env("ORCH_PROCESS_TAG", "orch:0123456789abcdef:p/sneak#1/1-2-3");
    let refused = direct.output()?;
    assert_eq!(refused.status.code(), Some(2), "{}", err(&refused));
    assert!(
        err(&refused).contains("refused: requests from inside an attempt (p/sneak#1) may only read"),
        "{}",
        err(&refused)
    );
    let rollback = Command::new(ORCH)
        .args(["rollback", "p/sneak"])
        .current_dir(root)
        .env("ORCH_PROCESS_TAG", "orch:0123456789abcdef:p/sneak#1/1-2-3")
        .output()?;
    assert_eq!(rollback.status.code(), Some(2), "{}", err(&rollback));
    assert!(err(&rollback).contains("refused"), "{}", err(&rollback));
    assert_eq!(task_state(&status_json(root), "ask"), "escalated");
    // A human's approval goes through.
    let approved = orch(&["approve", "q/ask"], root);
    assert_eq!(approved.status.code(), Some(0), "{}", err(&approved));
    assert_eq!(task_state(&status_json(root), "ask"), "completed");
    Ok(())
}

/// A run in `root` whose one task (`p/slow`) holds it open until `root/release` exists.
fn held_open_run(root: &Path, wrap: Option<&str>) -> std::io::Result<std::process::Child> {
    std::fs::create_dir_all(root.join("ws"))?;
    std::fs::write(
        root.join("orch.toml"),
        format!("[agent]\nkind = \"command\"\nprogram = \"sh\"\nargs = [\"-c\", \"while [ ! -f {}/release ]; do sleep 0.05; done; echo done > slow.txt; echo done\"]\n\n\
         [[projects]]\nname = \"p\"\nworkspace = \"ws\"\n\n[[projects.tasks]]\nid = \"slow\"\ntitle = \"Slow\"\n",
            root.display()
        ),
    )?;
    let mut cmd = match wrap {
        None => Command::new(ORCH),
        Some(shell) => {
            let mut c = Command::new("sh");
            c.args(["-c", &format!("{shell}; exec \"$0\" run"), ORCH]);
            c
        }
    };
    if wrap.is_none() {
        cmd.arg("run");
    }
    cmd.current_dir(root).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("ORCH_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    let child = cmd.spawn()?;
    wait_for("slow to be running", || task_state(&status_json(root), "slow") == "running");
    Ok(child)
}

fn reply_of(stream: &std::os::unix::net::UnixStream) -> Value {
    use std::io::BufRead;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(20))).expect("read timeout");
    let mut line = String::new();
    let _ = std::io::BufReader::new(stream).read_line(&mut line);
    serde_json::from_str(&line).unwrap_or(Value::Null)
}

#[test]
fn the_control_socket_outlives_idle_floods_and_oversized_requests() -> TestResult {
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    let run = held_open_run(root, None)?;
    let socket = root.join(".orch/journal/control.sock");
    // More idle connections than the run serves at once (64): those past the cap are told it is busy.
    let idle: Vec<UnixStream> = (0..100).map(|_| UnixStream::connect(&socket)).collect::<Result<_, _>>()?;
    let busy = reply_of(&idle[99]);
    assert_eq!(busy["busy"], true, "{busy}");
    // A real command still gets through: it asks again while the run is busy, and the idle ones are let go.
    let started = std::time::Instant::now();
    let status = orch(&["status", "--json"], root);
    assert_eq!(status.status.code(), Some(0), "{}", err(&status));
    assert!(started.elapsed() < std::time::Duration::from_secs(25), "{:?}", started.elapsed());
    let timed_out = reply_of(&idle[0]);
    assert!(timed_out["error"].as_str().unwrap_or("").contains("no request within"), "{timed_out}");
    drop(idle);
    // A request of 2 MiB with no newline is refused once past 1 MiB, not buffered whole.
    let big = UnixStream::connect(&socket)?;
    let mut writer = big.try_clone()?;
    let sender = std::thread::spawn(move || {
        let chunk = vec![b'x'; 64 << 10];
        for _ in 0..32 {
            if writer.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let refused = reply_of(&big);
    assert!(refused["error"].as_str().unwrap_or("").contains("longer than 1048576 bytes"), "{refused}");
    drop(big);
    let _ = sender.join();
    // And the run goes on serving.
    let status = orch(&["status", "--json"], root);
    assert_eq!(status.status.code(), Some(0), "{}", err(&status));
    assert_eq!(task_state(&serde_json::from_slice(&status.stdout)?, "slow"), "running");
    std::fs::write(root.join("release"), "")?;
    let out = run.wait_with_output()?;
    assert_eq!(out.status.code(), Some(0), "{}", err(&out));
    Ok(())
}

#[test]
fn a_flood_of_clients_cannot_take_the_descriptors_a_run_needs() -> TestResult {
    use std::os::unix::net::UnixStream;
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    // Room for fewer descriptors than the 64 connections served at once: the socket holds at most half of those left,
    // so a flood arriving while the attempt starts (a walk of the workspace, pipes to the agent) takes none it needs.
    let run = held_open_run(root, Some("ulimit -n 48"))?;
    let socket = root.join(".orch/journal/control.sock");
    let flood: Vec<UnixStream> = (0..200).filter_map(|_| UnixStream::connect(&socket).ok()).collect();
    wait_for("the agent to run", || agent_of(root).is_some());
    std::thread::sleep(std::time::Duration::from_millis(300));
    drop(flood);
    let status = orch(&["status", "--json"], root);
    assert_eq!(status.status.code(), Some(0), "{}", err(&status));
    let state = task_state(&serde_json::from_slice(&status.stdout)?, "slow");
    assert_eq!(state, "running", "{}", text(&orch_log(&["events"], root)));
    std::fs::write(root.join("release"), "")?;
    let out = run.wait_with_output()?;
    assert_eq!(out.status.code(), Some(0), "{}\n{}", err(&out), text(&orch_log(&["events"], root)));
    assert_eq!(task_state(&status_json(root), "slow"), "completed");
    Ok(())
}

#[test]
fn the_accept_loop_survives_running_out_of_file_descriptors() -> TestResult {
    use std::os::unix::net::UnixStream;
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    let run = held_open_run(root, None)?;
    wait_for("the agent to run", || agent_of(root).is_some());
    // Once the attempt runs, the run's descriptor limit is lowered to those it has open: every accept fails (EMFILE).
    let pid = run.id().to_string();
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count();
    let prlimit = |soft: &str| {
        let out = Command::new("prlimit").args(["--pid", &pid, &format!("--nofile={soft}:")]).output();
        assert!(out.as_ref().is_ok_and(|o| o.status.success()), "prlimit: {out:?}");
    };
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits"))?;
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .ok_or("no open-file limit in /proc/PID/limits")?
        .to_string();
    prlimit(&open.to_string());
    let socket = root.join(".orch/journal/control.sock");
    let flood: Vec<UnixStream> = (0..20).filter_map(|_| UnixStream::connect(&socket).ok()).collect();
    std::thread::sleep(std::time::Duration::from_millis(500));
    prlimit(&soft);
    drop(flood);
    // With descriptors to spare again, the run answers again.
    let status = orch(&["status", "--json"], root);
    assert_eq!(status.status.code(), Some(0), "{}", err(&status));
    assert_eq!(task_state(&serde_json::from_slice(&status.stdout)?, "slow"), "running");
    std::fs::write(root.join("release"), "")?;
    let out = run.wait_with_output()?;
    let quiet: String = err(&out).lines().filter(|l| !l.contains("accept failed")).collect::<Vec<_>>().join("\n");
    assert_eq!(out.status.code(), Some(0), "{}\n{quiet}\n{}", text(&out), text(&orch_log(&["events"], root)));
    assert!(err(&out).contains("accept failed (Too many open files"), "the limit was reached: {}", err(&out));
    assert!(err(&out).contains("accepting again after"), "{}", err(&out));
    Ok(())
}

/// The pid of the agent [`held_open_run`] started in `root`, once it runs.
fn agent_of(root: &Path) -> Option<u32> {
    let marker = format!("{}/release", root.display());
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline);
        (cmdline.contains(&marker) && cmdline.starts_with("sh")).then_some(pid)
    })
}

/// Every form of `secret` the Redactor is to catch, for a search through what orch wrote: the value, its halves,
/// its percent-encoding, and the middle of its base64 encoding at each alignment (either alphabet).
fn secret_forms(secret: &str) -> Vec<String> {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let encode = |data: &[u8]| -> String {
        let mut out = String::new();
        for c in data.chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(c.get(1).copied().unwrap_or(0)) << 8)
                | u32::from(c.get(2).copied().unwrap_or(0));
            for i in 0..=c.len() {
                out.push(char::from(B64[((n >> (18 - 6 * i)) & 0x3f) as usize]));
            }
        }
        out
    };
    let half = secret.len() / 2;
    let mut forms = vec![
        secret.to_string(),
        secret[..half].to_string(),
        secret[half..].to_string(),
        secret.bytes().map(|b| format!("%{b:02X}")).collect(),
    ];
    for align in 0..3 {
        let mut data = vec![b'.'; align];
        data.extend_from_slice(secret.as_bytes());
        let e = encode(&data);
        let middle = &e[(8 * align).div_ceil(6)..8 * (align + secret.len()) / 6];
        forms.push(middle.to_string());
        forms.push(middle.replace('+', "-").replace('/', "_"));
    }
    forms
}

#[test]
fn no_secret_reaches_the_journal_the_output_or_a_notification_in_any_form() -> TestResult {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    let llm_key = "sk-llm-4f9a1c77e0b24d3e9a5b";
    let agent_token = "agent-token-8c1e55d0f7a94b12";
    let webhook_token = "wh-9d8c7b6a5f4e3d2c1b0a";
    let hook_path = "T0123456789abcdef";
    let notify_token = "N0987654321fedcba";
    // The agent: prints whether it sees the LLM's key, prints its own token base64-encoded and wrapped over lines
    // (and plainly), names a file after it, and cuts a line in the token's middle at the journal's line limit.
    let script = r#"echo "llm key: [${ORCH_SECRET_TEST_LLM_KEY:-unset}]"
echo "token $SERVICE_TOKEN"
printf 'Authorization: %s\n' "$SERVICE_TOKEN" | base64 -w0 | fold -w 13; echo
printf 'x=%s' "$SERVICE_TOKEN" | base64 -w0 | fold -w 24; echo
printf '%s' "$SERVICE_TOKEN" | od -An -tx1 | tr -d ' \n'; echo
echo "split ${SERVICE_TOKEN%????????????}\\"; echo "${SERVICE_TOKEN#${SERVICE_TOKEN%????????????}} done"
head -c 2040 /dev/zero | tr '\0' 'a'; echo " $SERVICE_TOKEN"
echo content > "leak-$SERVICE_TOKEN.txt"
echo done"#;
    let config = format!(
        r#"[llm]
provider = "openai"
base_url = "http://127.0.0.1:9"
api_key_env = "ORCH_SECRET_TEST_LLM_KEY"
max_retries = 0

[notify]
command = "false https://notify.example/{notify_token}"
webhook = "http://127.0.0.1:9/hooks/{hook_path}?token={webhook_token}"
timeout_secs = 2

[agent]
kind = "command"
program = "sh"
args = ["-c", '''{script}''']
[agent.env]
SERVICE_TOKEN = "{agent_token}"

[[projects]]
name = "p"
workspace = "ws"
create_workspace = true
checks = ["echo check sees [${{ORCH_SECRET_TEST_LLM_KEY:-unset}}]; ls"]
[[projects.tasks]]
id = "t"
title = "T"
"#
    );
    std::fs::write(root.join("orch.toml"), config)?;
    let run = Command::new(ORCH)
        .arg("run")
        .current_dir(root)
        .stdin(Stdio::null())
        .env("ORCH_SECRET_TEST_LLM_KEY", llm_key)
        .output()?;
    assert!(run.status.code().is_some(), "{}", err(&run));
    // What the agent and the check saw, and that the file was written.
    let events = orch_log(&["events", "--json"], root);
    assert!(events.status.success(), "{}", err(&events));
    let json = text(&events);
    assert!(json.contains("llm key: [unset]"), "the agent saw the LLM's key: {json}");
    assert!(json.contains("check sees [unset]"), "the check saw the LLM's key: {json}");
    assert!(json.contains("leak-[redacted].txt"), "the file's name is journaled redacted: {json}");
    // Not vacuous: the agent printed its token in each form (plain, two base64 blobs, hex, split by `\`+newline).
    assert!(json.matches("[redacted]").count() >= 5, "{json}");
    assert!(std::fs::read_dir(root.join("ws"))?
        .any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().contains(agent_token))));
    // The failed notifications, named without their tokens.
    assert!(json.contains("POST http://127.0.0.1:9/…"), "{json}");
    assert!(json.contains("`false https://notify.example/…` exited with status 1"), "{json}");
    // Nowhere, in any form: the events, the human views, what the run printed, and the journal's bytes.
    let mut texts = vec![("events --json".to_string(), json)];
    for args in [&["events"][..], &["show", "t"][..]] {
        let o = orch_log(args, root);
        texts.push((format!("orch-log {args:?}"), text(&o) + &err(&o)));
    }
    texts.push(("orch run".into(), text(&run) + &err(&run)));
    let mut journal_bytes = Vec::new();
    // Everything orch wrote beside the config and the workspace: the journal, its seal, the socket's directory.
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            if p == root.join("ws") || p == root.join("orch.toml") {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                journal_bytes.extend(std::fs::read(&p)?);
            }
        }
    }
    assert!(journal_bytes.len() > 1000, "no journal beside the config");
    texts.push(("the journal's files".into(), String::from_utf8_lossy(&journal_bytes).into_owned()));
    let mut forms: Vec<String> =
        [llm_key, agent_token, webhook_token, notify_token, hook_path].iter().flat_map(|s| secret_forms(s)).collect();
    let hex: String = agent_token.bytes().map(|b| format!("{b:02x}")).collect();
    forms.push(hex);
    for (what, t) in &texts {
        for f in &forms {
            assert!(!t.contains(f.as_str()), "{what} holds `{f}`");
        }
        // Base64 wrapped over lines: nothing of it is left once the lines are joined again.
        let joined = t.replace("\\n", "").replace('\n', "");
        for f in &forms[4..] {
            assert!(!joined.contains(f.as_str()), "{what} holds `{f}` across lines");
        }
    }
    Ok(())
}

#[test]
fn forced_to_the_tag_sweep_orch_says_so_and_still_ends_a_detached_tagged_descendant() -> TestResult {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    std::fs::create_dir_all(root.join("ws"))?;
    let marker = format!("tagged-daemon-{}", std::process::id());
    // A descendant in a session of its own, adopted by init, that keeps its environment (and so its tag).
    std::fs::write(
        root.join("orch.toml"),
        format!(
            "[agent]\nkind = \"command\"\nprogram = \"sh\"\nargs = [\"-c\", \"cat >/dev/null; ( setsid nohup sh -c ': {marker}; \
             while :; do date >> tagged.txt; sleep 0.1; done' </dev/null >/dev/null 2>&1 & echo $! > ../daemon.pid ); \
             until [ -s tagged.txt ]; do sleep 0.05; done; echo started\"]\nwritable = [\".\"]\n\n\
             [orchestration]\nmax_attempts = 1\n\n\
             [[projects]]\nname = \"p\"\nworkspace = \"ws\"\n\n[[projects.tasks]]\nid = \"d\"\ntitle = \"Daemon\"\n"
        ),
    )?;
    let mut cmd = Command::new(ORCH);
    cmd.arg("run").current_dir(root).stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("ORCH_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    let out = cmd.env("ORCH_ORCHESTRATION__CONTAINMENT", "tags").output()?;
    let pid: u32 = std::fs::read_to_string(root.join("daemon.pid"))?.trim().parse()?;
    let alive = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])))
    };
    let survived = alive();
    if survived {
        let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    }
    assert!(
        err(&out).contains("containment: by process tag only (containment = \"tags\")"),
        "orch run says which containment is in force: {}",
        err(&out)
    );
    assert!(!survived, "the tagged daemon {pid} outlived its attempt and the run");
    // Nothing writes into the workspace any more (watched for a second).
    let size = || std::fs::metadata(root.join("ws/tagged.txt")).map(|m| m.len()).unwrap_or(0);
    let before = size();
    assert!(before > 0, "the daemon ran while the attempt lasted");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(1);
    while std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(size(), before, "the daemon still writes");
    }
    // An unknown containment is refused by name.
    let bad = cmd.env("ORCH_ORCHESTRATION__CONTAINMENT", "docker").output()?;
    assert_eq!(bad.status.code(), Some(2), "{}", err(&bad));
    assert!(err(&bad).contains("ORCH_ORCHESTRATION__CONTAINMENT"), "{}", err(&bad));
    Ok(())
}
