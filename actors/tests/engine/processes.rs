//! Agent processes: wall-clock and idle timeouts, stopping a run, a missing program, and the sandbox.

use std::time::Duration;

use orch_actors::journal::event::Event;
use orch_actors::{Orchestrator, Selection, TaskState};

use crate::support::{events, next_event, processes_with, running, task, wait_for, Fixture, TestResult};

#[actix::test]
async fn the_wall_clock_timeout_kills_the_whole_process_group() -> TestResult {
    let f = Fixture::new();
    // A unique sleep duration marks the grandchild in the process table.
    let marker = format!("sleep 301.{}", std::process::id());
    // The agent leaves a grandchild behind and then hangs while printing (so only the wall clock can stop it).
    let script = format!("cat >/dev/null; sh -c '{marker}' & while true; do echo working; sleep 0.2; done");
    let mut settings = f.settings(&script, &[], vec![task("hang", 5, &[])]);
    settings.projects[0].agent.timeout = Duration::from_secs(1);
    settings.orchestration.max_attempts = 1;
    let (orch, _) = Orchestrator::start(settings).await?;
    // Look for the grandchild while the run goes on: it lives only until the wall clock (a second) stops the agent.
    let watch =
        wait_for("the agent's grandchild to run", Duration::from_secs(30), || std::future::ready(running(&marker)));
    let (summary, grandchildren) = tokio::join!(orch.run(Selection::default()), watch);
    assert!(!grandchildren.is_empty(), "the grandchild ran");
    assert_eq!(summary?.count(TaskState::Escalated), 1);
    assert!(processes_with(&marker).is_empty(), "orphans survived: {:?}", processes_with(&marker));
    orch.shutdown().await?;
    let evs = events(&f.path("journal"));
    let found = evs
        .iter()
        .any(|e| matches!(e, Event::Validated(v) if v.findings.iter().any(|x| x.code == "wall_clock_timeout")));
    assert!(found, "the timeout is journaled as a finding");
    assert!(evs.iter().any(|e| matches!(e, Event::AgentExited(x) if x.timeout == "wall_clock")));
    Ok(())
}

#[actix::test]
async fn the_idle_timeout_kills_a_silent_agent_and_it_is_retried() -> TestResult {
    let f = Fixture::new();
    let script = "cat >/dev/null; if [ \"$ORCH_ATTEMPT\" = 1 ]; then sleep 300; fi; echo fine > out.txt; echo done";
    let mut settings = f.settings(script, &[], vec![task("quiet", 5, &[])]);
    settings.projects[0].agent.idle_timeout = Duration::from_secs(1);
    let (orch, _) = Orchestrator::start(settings).await?;
    assert!(orch.run(Selection::default()).await?.all_completed());
    let view = orch.task("quiet").await?;
    assert_eq!(view.attempts.len(), 2);
    assert_eq!(view.attempts[0].timeout.as_deref(), Some("idle"));
    Ok(())
}

#[actix::test]
async fn stopping_a_run_kills_agents_and_journals_their_attempts_as_interrupted() -> TestResult {
    let f = Fixture::new();
    let marker = format!("sleep 302.{}", std::process::id());
    let script = format!("cat >/dev/null; echo started; {marker}");
    let settings = f.settings(&script, &[], vec![task("long", 5, &[])]);
    let (orch, _) = Orchestrator::start(settings).await?;
    let mut rx = orch.subscribe().await?;
    let run = orch.run(Selection::default());
    let stopper = async {
        // Wait for the agent's first output, then stop.
        next_event(&mut rx, "the agent's first output", Duration::from_secs(60), |e| {
            matches!(e, Event::AgentOutput(_))
        })
        .await;
        // The agent's child is really there before the stop.
        wait_for("the agent's sleep to run", Duration::from_secs(30), || std::future::ready(running(&marker))).await;
        assert!(!processes_with(&marker).is_empty(), "the agent's sleep is running");
        orch.stop();
    };
    let (summary, ()) = tokio::join!(run, stopper);
    let summary = summary?;
    assert!(summary.interrupted);
    assert_eq!(orch.task("long").await?.state, TaskState::Pending);
    assert!(processes_with(&marker).is_empty());
    orch.shutdown().await?;
    let evs = events(&f.path("journal"));
    assert!(
        evs.iter().any(|e| matches!(e, Event::AttemptInterrupted(_))),
        "{:#?}",
        evs.iter().map(|e| e.kind()).collect::<Vec<_>>()
    );
    assert!(evs.iter().any(|e| matches!(e, Event::RunFinished(r) if r.outcome == "interrupted")));
    Ok(())
}

#[actix::test]
async fn a_missing_agent_program_is_recorded_and_escalated_not_a_crash() -> TestResult {
    let f = Fixture::new();
    let mut settings = f.settings("", &[], vec![task("t", 5, &[])]);
    settings.projects[0].agent.program = "/nonexistent/agent".into();
    settings.orchestration.max_attempts = 1;
    let (orch, _) = Orchestrator::start(settings).await?;
    let summary = orch.run(Selection::default()).await?;
    assert_eq!(summary.count(TaskState::Escalated), 1);
    let view = orch.task("t").await?;
    assert!(view.reason.as_deref().unwrap_or("").contains("/nonexistent/agent"), "{:?}", view.reason);
    Ok(())
}

#[actix::test]
async fn an_agent_in_the_sandbox_cannot_write_outside_its_workspace() -> TestResult {
    if let orch_actors::sandbox::Support::Unavailable(why) = orch_actors::sandbox::probe() {
        eprintln!("not tested: {why}");
        return Ok(());
    }
    let f = Fixture::new();
    let script =
        "cat >/dev/null; echo in > inside.txt; echo out > ../outside.txt || echo refused; echo $TMPDIR > tmp.txt; \
                  echo scratch > \"$TMPDIR/s\" && echo tmp-ok";
    let mut settings = f.settings(script, &["test -f inside.txt"], vec![task("box", 5, &[])]);
    settings.projects[0].agent.sandbox.writable.clear();
    let (orch, _) = Orchestrator::start(settings).await?;
    orch.run(Selection::default()).await?;
    orch.shutdown().await?;
    assert!(f.path("ws/inside.txt").exists(), "the workspace is writable");
    assert!(!f.path("outside.txt").exists(), "a write beside the workspace is refused");
    let tmp = std::fs::read_to_string(f.path("ws/tmp.txt"))?;
    assert!(tmp.contains("orch-attempt-"), "the agent gets a private TMPDIR: {tmp}");
    let out: Vec<String> = events(&f.path("journal"))
        .into_iter()
        .filter_map(|e| match e {
            Event::AgentOutput(o) => Some(o.text),
            _ => None,
        })
        .collect();
    assert!(out.iter().any(|t| t.contains("refused")) && out.iter().any(|t| t.contains("tmp-ok")), "{out:?}");
    // orch itself is not restricted: it can still write beside the workspace.
    std::fs::write(f.path("orch-wrote.txt"), "ok")?;
    Ok(())
}

/// The pid in `path` (written by an agent), once it is there.
fn pid_in(path: &std::path::Path) -> Result<u32, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.trim().parse().map_err(|e| format!("{}: {text:?}: {e}", path.display()))
}

/// Whether process `pid` is gone (or dead, a zombie waiting to be reaped).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

/// Watches `file` for `quiet`, looking every 50 ms: `Err` as soon as it changes size.
async fn stays_unchanged(file: &std::path::Path, quiet: Duration) -> Result<(), String> {
    let size = |f: &std::path::Path| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
    let (before, end) = (size(file), tokio::time::Instant::now() + quiet);
    while tokio::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = size(file);
        if now != before {
            return Err(format!("{} grew from {before} to {now} bytes", file.display()));
        }
    }
    Ok(())
}

#[actix::test]
async fn a_daemon_that_clears_its_environment_dies_with_its_attempt() -> TestResult {
    if let Err(why) = orch_actors::cgroup::hierarchy() {
        eprintln!("NOT TESTED: cgroup v2 cannot be used on this machine ({why}); only the tag sweep is in force");
        return Ok(());
    }
    let f = Fixture::new();
    let marker = format!("leak-marker-{}", std::process::id());
    // A daemon with no environment (no tag), in a session of its own, adopted by init (double fork); the agent
    // waits until it writes into the workspace, then exits.
    let script = format!(
        "cat >/dev/null; (setsid nohup env -i sh -c ': {marker}; sleep 1; while :; do date >> leaked.txt; sleep 0.1; \
         done' </dev/null >/dev/null 2>&1 & echo $! > ../daemon.pid) ; until [ -s leaked.txt ]; do sleep 0.05; done; \
         echo started a daemon"
    );
    let mut settings = f.settings(&script, &[], vec![task("daemon", 5, &[])]);
    settings.orchestration.max_attempts = 1;
    let (orch, _) = Orchestrator::start(settings).await?;
    assert!(
        matches!(orch.containment(), orch_actors::ContainmentStatus::Cgroup(_)),
        "{}",
        orch.containment().describe()
    );
    let mut rx = orch.subscribe().await?;
    let run = orch.run(Selection::default());
    let after_attempt = async {
        next_event(&mut rx, "the agent's exit", Duration::from_secs(60), |e| matches!(e, Event::AgentExited(_))).await;
        // By the time its exit is journaled, what the attempt started is dead.
        let daemon = pid_in(&f.path("daemon.pid")).expect("the agent wrote the daemon's pid");
        (daemon, gone(daemon), processes_with(&marker))
    };
    let (summary, (daemon, dead, left)) = tokio::join!(run, after_attempt);
    summary?;
    assert!(dead, "the daemon {daemon} outlived its attempt: {left:?}");
    assert!(left.is_empty(), "processes of the attempt outlived it: {left:?}");
    assert!(f.path("ws/leaked.txt").exists(), "the daemon ran and wrote while the attempt lasted");
    stays_unchanged(&f.path("ws/leaked.txt"), Duration::from_millis(1500)).await?;
    orch.shutdown().await?;
    let exited = events(&f.path("journal"))
        .into_iter()
        .find_map(|e| match e {
            Event::AgentExited(x) => Some(x.orphans_killed),
            _ => None,
        })
        .unwrap_or(0);
    assert!(exited >= 1, "the daemon is counted among the orphans killed ({exited})");
    Ok(())
}

#[actix::test]
async fn with_containment_by_tag_the_sweep_still_ends_a_detached_descendant() -> TestResult {
    let f = Fixture::new();
    let marker = format!("tagged-marker-{}", std::process::id());
    // Detached (its own session, adopted by init) but keeping its environment: its tag finds it.
    let script = format!(
        "cat >/dev/null; (setsid nohup sh -c ': {marker}; while :; do date >> tagged.txt; sleep 0.1; done' \
         </dev/null >/dev/null 2>&1 & echo $! > ../daemon.pid) ; until [ -s tagged.txt ]; do sleep 0.05; done; \
         echo started a daemon"
    );
    let mut settings = f.settings(&script, &[], vec![task("tagged", 5, &[])]);
    settings.orchestration.max_attempts = 1;
    settings.orchestration.containment = orch_actors::settings::Containment::Tags;
    let (orch, _) = Orchestrator::start(settings).await?;
    assert_eq!(orch.containment(), &orch_actors::ContainmentStatus::Tags);
    assert!(orch.containment().describe().contains("by process tag only"), "{}", orch.containment().describe());
    orch.run(Selection::default()).await?;
    let daemon = pid_in(&f.path("daemon.pid"))?;
    let cgroup = std::fs::read_to_string(format!("/proc/{daemon}/cgroup")).unwrap_or_default();
    wait_for("the tagged daemon to be gone", Duration::from_secs(10), || {
        std::future::ready(if gone(daemon) {
            Ok(())
        } else {
            Err(format!("{daemon} runs: {:?}", processes_with(&marker)))
        })
    })
    .await;
    assert!(processes_with(&marker).is_empty(), "{:?}", processes_with(&marker));
    assert!(!cgroup.contains("/orch-"), "with containment = \"tags\" no cgroup is made: {cgroup}");
    stays_unchanged(&f.path("ws/tagged.txt"), Duration::from_millis(1000)).await?;
    orch.shutdown().await?;
    Ok(())
}
