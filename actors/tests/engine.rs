//! Actor tests: the whole engine on a temporary journal and workspace, with real processes as agents.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use orch_actors::journal::event::Event;
use orch_actors::journal::{EventFilter, Journal};
use orch_actors::ops::HumanRequest;
use orch_actors::settings::*;
use orch_actors::{Orchestrator, Selection, TaskSpec, TaskState};

type TestResult = Result<(), Box<dyn std::error::Error>>;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        Fixture { dir: tempfile::tempdir().expect("tempdir") }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// Settings with one project whose agent is `sh -c SCRIPT` (prompt on stdin).
    fn settings(&self, script: &str, checks: &[&str], tasks: Vec<TaskSpec>) -> Settings {
        Settings {
            notify: Default::default(),
            journal: JournalSettings { path: self.path("journal"), durability: Durability::Sync },
            llm: LlmSettings::default(),
            orchestration: OrchestrationSettings { max_sessions: 2, ..OrchestrationSettings::default() },
            projects: vec![ProjectSettings {
                create_workspace: true,
                checks: checks.iter().map(|c| c.to_string()).collect(),
                check_timeout: Duration::from_secs(30),
                tasks,
                ..ProjectSettings::new(
                    "p",
                    self.path("ws"),
                    AgentSettings {
                        timeout: Duration::from_secs(60),
                        idle_timeout: Duration::from_secs(30),
                        // The agents leave notes beside their workspaces (prompts, logs) for the tests to read.
                        sandbox: SandboxSettings {
                            writable: vec![self.dir.path().to_path_buf()],
                            ..SandboxSettings::default()
                        },
                        ..AgentSettings::command("sh", vec!["-c".into(), script.into()])
                    },
                )
            }],
        }
    }
}

impl Fixture {
    /// A second project `q`, like the first, in workspace `ws2`, with one task.
    fn add_project_q(&self, settings: &mut Settings, t: TaskSpec) {
        let mut q = settings.projects[0].clone();
        q.name = "q".into();
        q.workspace = self.path("ws2");
        q.tasks = vec![TaskSpec { project: "q".into(), ..t }];
        settings.projects.push(q);
    }
}

fn task(id: &str, priority: u8, depends_on: &[&str]) -> TaskSpec {
    TaskSpec {
        project: "p".into(),
        id: id.into(),
        title: format!("Task {id}"),
        description: format!("Do {id}."),
        priority,
        depends_on: depends_on.iter().map(|d| d.to_string()).collect(),
        acceptance: vec![],
    }
}

fn events(journal: &Path) -> Vec<Event> {
    let j = Journal::open(journal, false).expect("journal");
    let events = j.scan(EventFilter::default()).map(|r| r.expect("record").event).collect();
    // sled lets go of its lock a moment after the handle is dropped; the test may open it again at once.
    drop(j);
    assert!(Journal::wait_released(journal, Duration::from_secs(10)));
    events
}

/// Processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(marker) && !cmd.contains("cargo") {
                out.push(cmd);
            }
        }
    }
    out
}

#[actix::test]
async fn a_failed_check_is_retried_with_its_output_and_then_proceeds() -> TestResult {
    let f = Fixture::new();
    std::fs::create_dir_all(f.path("prompts"))?;
    // Wrong on the first attempt, right once the prompt carries feedback; every prompt is kept outside the workspace.
    let script = format!(
        "cat > {}/prompt-$ORCH_ATTEMPT.txt; if [ \"$ORCH_ATTEMPT\" = 1 ]; then echo wrong > out.txt; else echo right > out.txt; fi; echo done",
        f.path("prompts").display()
    );
    let settings = f.settings(
        &script,
        &["grep -q right out.txt || { echo 'out.txt says:'; cat out.txt; exit 1; }"],
        vec![task("t", 5, &[])],
    );
    let (orch, report) = Orchestrator::start(settings).await?;
    assert_eq!(report.added, 1);
    let summary = orch.run(Selection::default()).await?;
    assert!(summary.all_completed(), "{:?}", summary.tasks);
    let view = orch.task("t").await?;
    assert_eq!(view.attempts.len(), 2);
    assert_eq!(view.attempts[0].decision, Some(orch_actors::Decision::Retry));
    assert_eq!(view.attempts[1].decision, Some(orch_actors::Decision::Proceed));
    let first = std::fs::read_to_string(f.path("prompts/prompt-1.txt"))?;
    let second = std::fs::read_to_string(f.path("prompts/prompt-2.txt"))?;
    assert!(first.contains("Do t.") && !first.contains("Feedback"), "{first}");
    assert!(second.contains("Do t."), "the description travels verbatim: {second}");
    assert!(second.contains("Feedback from earlier attempts"), "{second}");
    assert!(
        second.contains("out.txt says:") && second.contains("wrong"),
        "the check's output reaches the retry: {second}"
    );
    Ok(())
}

#[actix::test]
async fn max_attempts_escalates_and_blocks_dependants_with_a_reason() -> TestResult {
    let f = Fixture::new();
    let mut settings = f.settings(
        "cat >/dev/null; echo nope > out.txt; echo tried",
        &["false"],
        vec![task("base", 5, &[]), task("next", 5, &["base"])],
    );
    settings.orchestration.max_attempts = 2;
    let (orch, _) = Orchestrator::start(settings).await?;
    let summary = orch.run(Selection::default()).await?;
    let base = orch.task("base").await?;
    assert_eq!(base.state, TaskState::Escalated);
    assert_eq!(base.attempts.len(), 2);
    assert!(base.reason.as_deref().unwrap_or("").contains("2 attempt(s) without success"), "{:?}", base.reason);
    let next = orch.task("next").await?;
    assert_eq!(next.state, TaskState::Blocked);
    assert_eq!(next.reason.as_deref(), Some("depends on p/base, which is escalated"));
    assert!(next.attempts.is_empty());
    assert!(!summary.all_completed());
    // A human approves: the next run unblocks and runs the dependant.
    orch.human("base", HumanRequest::Approve).await?;
    orch.run(Selection::default()).await?;
    let next = orch.task("next").await?;
    assert_eq!(next.attempts.len(), 2, "unblocked and run: {next:?}");
    assert_eq!(next.state, TaskState::Escalated);
    Ok(())
}

#[actix::test]
async fn higher_priority_then_older_tasks_go_first() -> TestResult {
    let f = Fixture::new();
    let mut settings = f.settings(
        "cat >/dev/null; echo $ORCH_TASK_ID >> ../order.txt; echo x > $ORCH_TASK_ID.txt; echo ok",
        &[],
        vec![
            task("low", 2, &[]),
            task("old-mid", 5, &[]),
            task("high", 9, &[]),
            task("new-mid", 5, &[]),
            task("after-low", 10, &["low"]),
        ],
    );
    settings.orchestration.max_sessions = 1;
    let (orch, _) = Orchestrator::start(settings).await?;
    assert!(orch.run(Selection::default()).await?.all_completed());
    let order = std::fs::read_to_string(f.path("order.txt"))?;
    assert_eq!(order.lines().collect::<Vec<_>>(), vec!["high", "old-mid", "new-mid", "low", "after-low"]);
    Ok(())
}

#[actix::test]
async fn a_dependency_cycle_blocks_its_members() -> TestResult {
    let f = Fixture::new();
    let settings = f.settings("cat >/dev/null; echo ok", &[], vec![task("a", 5, &["b"]), task("b", 5, &["a"])]);
    let (orch, _) = Orchestrator::start(settings).await?;
    let summary = orch.run(Selection::default()).await?;
    assert_eq!(summary.count(TaskState::Blocked), 2);
    let a = orch.task("a").await?;
    assert!(a.reason.as_deref().unwrap_or("").contains("dependency cycle"), "{:?}", a.reason);
    Ok(())
}

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
    let watch = async {
        for _ in 0..500 {
            if !processes_with(&marker).is_empty() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    };
    let (summary, seen) = tokio::join!(orch.run(Selection::default()), watch);
    assert!(seen, "the grandchild ran");
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
async fn agent_environment_secrets_never_reach_the_journal() -> TestResult {
    let f = Fixture::new();
    let secret = "sk-test-very-secret-value-1234";
    let script = "cat >/dev/null; echo \"my key is $API_KEY\"; echo \"$API_KEY\" > key.txt; echo \"$API_KEY\" >&2";
    let mut settings =
        f.settings(script, &["echo check sees $API_KEY; cat key.txt; false"], vec![task("leak", 5, &[])]);
    settings.projects[0].agent.env.insert("API_KEY".into(), secret.into());
    settings.orchestration.max_attempts = 1;
    let (orch, _) = Orchestrator::start(settings).await?;
    orch.run(Selection::default()).await?;
    orch.shutdown().await?;
    let j = Journal::open(&f.path("journal"), false)?;
    let mut seen_redacted = false;
    for seq in 1..j.next_seq() {
        let raw = j.raw_event_for_tests(seq).ok_or("event")?;
        assert!(!raw.windows(secret.len()).any(|w| w == secret.as_bytes()), "event {seq} holds the secret");
        seen_redacted |= raw.windows(10).any(|w| w == b"[redacted]");
    }
    assert!(seen_redacted, "the agent's output was journaled, redacted");
    Ok(())
}

#[actix::test]
async fn file_changes_are_attributed_with_hashes_and_rollback_is_exact() -> TestResult {
    let f = Fixture::new();
    std::fs::create_dir_all(f.path("ws/sub"))?;
    std::fs::write(f.path("ws/keep.txt"), "unchanged")?;
    std::fs::write(f.path("ws/edit.txt"), "before")?;
    std::fs::write(f.path("ws/sub/gone.txt"), "doomed")?;
    let script =
        "cat >/dev/null; echo after > edit.txt; rm sub/gone.txt; mkdir -p new; echo fresh > new/made.txt; echo done";
    // The task names the file it deletes: a deletion the task does not ask for would be collateral damage.
    let edit = TaskSpec {
        description: "Edit edit.txt, remove sub/gone.txt, add new/made.txt.".into(),
        ..task("edit", 5, &[])
    };
    let settings = f.settings(script, &[], vec![edit]);
    let (orch, _) = Orchestrator::start(settings).await?;
    assert!(orch.run(Selection::default()).await?.all_completed());
    orch.shutdown().await?;
    let changes: Vec<(String, String, u32)> = events(&f.path("journal"))
        .into_iter()
        .filter_map(|e| match e {
            Event::FileChanged(c) => Some((c.path, c.change.as_str().to_string(), c.attempt)),
            _ => None,
        })
        .collect();
    assert_eq!(
        changes,
        vec![
            ("edit.txt".to_string(), "modified".to_string(), 1),
            ("new/made.txt".to_string(), "created".to_string(), 1),
            ("sub/gone.txt".to_string(), "deleted".to_string(), 1)
        ]
    );
    let mut j = Journal::open(&f.path("journal"), false)?;
    let report = orch_actors::ops::rollback(&mut j, "edit", None, false)?;
    assert_eq!(report.restored.len(), 3);
    assert_eq!(std::fs::read_to_string(f.path("ws/edit.txt"))?, "before");
    assert_eq!(std::fs::read_to_string(f.path("ws/sub/gone.txt"))?, "doomed");
    assert!(!f.path("ws/new/made.txt").exists());
    assert_eq!(std::fs::read_to_string(f.path("ws/keep.txt"))?, "unchanged");
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
        while let Ok(r) = rx.recv().await {
            if matches!(r.event, Event::AgentOutput(_)) {
                break;
            }
        }
        // The agent's child is really there before the stop.
        for _ in 0..200 {
            if !processes_with(&marker).is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
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
async fn a_question_instead_of_work_waits_for_an_answer_that_reaches_the_next_attempt() -> TestResult {
    let f = Fixture::new();
    std::fs::create_dir_all(f.path("prompts"))?;
    let script = format!(
        "cat > {}/prompt-$ORCH_ATTEMPT.txt; if grep -q 'port 8080' {}/prompt-$ORCH_ATTEMPT.txt; then echo ok > port.txt; echo done; else echo 'I looked at the code. Which port should the server use?'; fi",
        f.path("prompts").display(),
        f.path("prompts").display()
    );
    let settings = f.settings(&script, &["test -f port.txt"], vec![task("serve", 5, &[])]);
    let (orch, _) = Orchestrator::start(settings).await?;
    let summary = orch.run(Selection::default()).await?;
    assert_eq!(summary.count(TaskState::Escalated), 1);
    let view = orch.task("serve").await?;
    assert_eq!(view.attempts.len(), 1, "a question is not retried");
    assert_eq!(view.attempts[0].decision, Some(orch_actors::Decision::Clarify));
    assert_eq!(
        view.reason.as_deref(),
        Some("waiting for an answer: the agent asked: Which port should the server use?")
    );
    orch.human("serve", HumanRequest::Answer("Use port 8080.".into())).await?;
    assert!(orch.run(Selection::default()).await?.all_completed());
    assert!(std::fs::read_to_string(f.path("prompts/prompt-2.txt"))?.contains("Use port 8080."));
    Ok(())
}

#[actix::test]
async fn claims_are_held_to_the_evidence_and_non_answers_are_never_accepted() -> TestResult {
    // Says it created a file and that the tests pass; creates nothing and the check fails.
    let f = Fixture::new();
    let mut settings = f.settings(
        "cat >/dev/null; echo 'I created src/hello.py and all tests pass.'",
        &["test -f src/hello.py"],
        vec![task("liar", 5, &[])],
    );
    settings.orchestration.max_attempts = 1;
    let (orch, _) = Orchestrator::start(settings).await?;
    let summary = orch.run(Selection::default()).await?;
    assert_eq!(summary.count(TaskState::Escalated), 1);
    orch.shutdown().await?;
    let codes: Vec<String> = events(&f.path("journal"))
        .into_iter()
        .filter_map(|e| match e {
            Event::Validated(v) => Some(v.findings.into_iter().map(|f| f.code).collect::<Vec<_>>()),
            _ => None,
        })
        .flatten()
        .collect();
    assert!(codes.contains(&"claimed_change_not_seen".to_string()), "{codes:?}");
    assert!(codes.contains(&"false_claim_tests_pass".to_string()), "{codes:?}");

    // A non-answer that even changes a file and passes the checks is never completed.
    let g = Fixture::new();
    let mut settings = g.settings(
        "cat >/dev/null; echo x > out.txt; echo 'Mock response'",
        &["test -f out.txt"],
        vec![task("mock", 5, &[])],
    );
    settings.orchestration.max_attempts = 1;
    let (orch, _) = Orchestrator::start(settings).await?;
    let summary = orch.run(Selection::default()).await?;
    assert_eq!(summary.count(TaskState::Escalated), 1, "{:?}", summary.tasks);
    let view = orch.task("mock").await?;
    assert!(view.reason.as_deref().unwrap_or("").contains("not an answer"), "{:?}", view.reason);
    Ok(())
}

fn breakpoints_hit(journal: &Path) -> Vec<(String, String)> {
    events(journal)
        .into_iter()
        .filter_map(|e| match e {
            Event::BreakpointHit(b) => Some((b.breakpoint, b.detail)),
            _ => None,
        })
        .collect()
}

#[actix::test]
async fn breakpoints_stop_destructive_or_stray_changes_and_runs_of_failures() -> TestResult {
    // Outside the allowed paths.
    let f = Fixture::new();
    let mut s = f.settings(
        "cat >/dev/null; mkdir -p src; echo a > src/ok.txt; echo b > stray.txt; echo done",
        &[],
        vec![task("t", 5, &[])],
    );
    s.orchestration.breakpoints.allowed_paths = vec!["src/**".into()];
    let (orch, _) = Orchestrator::start(s).await?;
    assert_eq!(orch.run(Selection::default()).await?.count(TaskState::Escalated), 1);
    let reason = orch.task("t").await?.reason.unwrap_or_default();
    assert!(reason.starts_with("breakpoint outside_allowed_paths: changed outside src/**: stray.txt"), "{reason}");
    orch.shutdown().await?;
    assert_eq!(breakpoints_hit(&f.path("journal")).len(), 1);

    // Deletions past the limit, even with passing checks.
    let g = Fixture::new();
    std::fs::create_dir_all(g.path("ws"))?;
    std::fs::write(g.path("ws/keep.txt"), "x")?;
    std::fs::write(g.path("ws/old.txt"), "x")?;
    let mut s =
        g.settings("cat >/dev/null; rm old.txt; echo done > note.txt; echo done", &["true"], vec![task("t", 5, &[])]);
    s.orchestration.breakpoints.max_deleted_files = 0;
    let (orch, _) = Orchestrator::start(s).await?;
    assert_eq!(orch.run(Selection::default()).await?.count(TaskState::Escalated), 1);
    orch.shutdown().await?;
    let hits = breakpoints_hit(&g.path("journal"));
    assert_eq!(hits, vec![("deleted_files".to_string(), "1 files deleted (more than 0): old.txt".to_string())]);

    // Two failures in a row, long before max_attempts.
    let h = Fixture::new();
    let mut s = h.settings("cat >/dev/null; echo x > out.txt; echo done", &["false"], vec![task("t", 5, &[])]);
    s.orchestration.max_attempts = 5;
    s.orchestration.breakpoints.consecutive_failures = 2;
    let (orch, _) = Orchestrator::start(s).await?;
    assert_eq!(orch.run(Selection::default()).await?.count(TaskState::Escalated), 1);
    assert_eq!(orch.task("t").await?.attempts.len(), 2);
    orch.shutdown().await?;
    assert_eq!(breakpoints_hit(&h.path("journal"))[0].0, "consecutive_failures");
    Ok(())
}

#[actix::test]
async fn a_custom_prompt_template_is_what_the_agent_gets() -> TestResult {
    let f = Fixture::new();
    let script = format!("cat > {}/prompt.txt; echo x > out.txt; echo done", f.dir.path().display());
    let mut s = f.settings(&script, &[], vec![task("t", 5, &[])]);
    s.orchestration.prompts.attempt =
        "HOUSE RULES FIRST.\n{description}\n-- {project}/{task} #{attempt} {unknown}\n".into();
    let (orch, _) = Orchestrator::start(s).await?;
    assert!(orch.run(Selection::default()).await?.all_completed());
    orch.shutdown().await?;
    let prompt = std::fs::read_to_string(f.path("prompt.txt"))?;
    assert_eq!(prompt, "HOUSE RULES FIRST.\nDo t.\n-- p/t #1 {unknown}\n");
    Ok(())
}

#[actix::test]
async fn on_retry_rollback_starts_the_retry_from_the_workspace_before_the_failed_attempt() -> TestResult {
    let f = Fixture::new();
    std::fs::create_dir_all(f.path("ws/sub"))?;
    std::fs::write(f.path("ws/keep.txt"), "original\n")?;
    std::fs::write(f.path("ws/sub/gone.txt"), "precious\n")?;
    std::fs::create_dir_all(f.path("seen"))?;
    // Attempt 1 creates, changes and deletes (by shell, not by edits), and is wrong. Attempt 2 first records what
    // it finds, then does the work right.
    let script = format!(
        "ls -R . > {seen}/attempt-$ORCH_ATTEMPT.txt; cat keep.txt >> {seen}/attempt-$ORCH_ATTEMPT.txt; \
         if [ \"$ORCH_ATTEMPT\" = 1 ]; then echo wrong > out.txt; echo mangled > keep.txt; rm sub/gone.txt; \
         else echo right > out.txt; fi; echo done",
        seen = f.path("seen").display()
    );
    let mut settings = f.settings(&script, &["grep -q right out.txt"], vec![task("t", 5, &[])]);
    settings.projects[0].on_retry = OnRetry::Rollback;
    let (orch, _) = Orchestrator::start(settings).await?;
    let summary = orch.run(Selection::default()).await?;
    assert!(summary.all_completed(), "{:?}", summary.tasks);
    orch.shutdown().await?;
    let seen = std::fs::read_to_string(f.path("seen/attempt-2.txt"))?;
    assert!(!seen.contains("out.txt"), "attempt 1's new file was removed: {seen}");
    assert!(seen.contains("gone.txt"), "attempt 1's deletion was undone: {seen}");
    assert!(seen.contains("original") && !seen.contains("mangled"), "attempt 1's change was undone: {seen}");
    assert_eq!(std::fs::read_to_string(f.path("ws/sub/gone.txt"))?, "precious\n");
    let ev = events(&f.path("journal"));
    let rolled: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            Event::RolledBack(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(rolled.len(), 1);
    assert_eq!(rolled[0].from_attempt, 1);
    assert_eq!(rolled[0].restored.len(), 3, "{:?}", rolled[0]);
    assert!(rolled[0].conflicts.is_empty());
    Ok(())
}

#[actix::test]
async fn on_retry_keep_builds_on_the_failed_attempt() -> TestResult {
    let f = Fixture::new();
    let script = "if [ \"$ORCH_ATTEMPT\" = 1 ]; then echo wrong > out.txt; else cat out.txt > before.txt; echo right > out.txt; fi; echo done";
    let (orch, _) =
        Orchestrator::start(f.settings(script, &["grep -q right out.txt"], vec![task("t", 5, &[])])).await?;
    assert!(orch.run(Selection::default()).await?.all_completed());
    orch.shutdown().await?;
    assert_eq!(std::fs::read_to_string(f.path("ws/before.txt"))?, "wrong\n");
    assert!(!events(&f.path("journal")).iter().any(|e| matches!(e, Event::RolledBack(_))));
    Ok(())
}

/// A one-shot HTTP server on loopback: answers every request 200 and keeps the bodies.
fn webhook_server() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            kept.lock().expect("bodies").push(String::from_utf8_lossy(&body).into_owned());
            let _ = (&stream).write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, bodies)
}

#[actix::test]
async fn escalations_and_the_run_end_are_notified_and_a_failed_delivery_is_journaled() -> TestResult {
    let f = Fixture::new();
    let (url, bodies) = webhook_server();
    // One task asks a question (waits for an answer), one never passes its check (escalates), one completes.
    let script =
        "case $ORCH_TASK_ID in ask) echo 'Which port should it use?';; bad) echo wrong > bad.txt; echo done;; \
                  *) echo ok > good.txt; echo done;; esac";
    let mut settings = f.settings(
        script,
        &["[ \"$ORCH_TASK_ID\" != bad ]"],
        vec![task("ask", 5, &[]), task("bad", 5, &[]), task("good", 5, &[])],
    );
    settings.orchestration.max_attempts = 1;
    settings.notify = NotifySettings {
        command: format!("cat >> {}", f.path("notices.jsonl").display()),
        webhook: url,
        timeout: Duration::from_secs(5),
    };
    let (orch, _) = Orchestrator::start(settings.clone()).await?;
    orch.run(Selection::default()).await?;
    orch.shutdown().await?;
    let by_command: Vec<serde_json::Value> = std::fs::read_to_string(f.path("notices.jsonl"))?
        .replace("}{", "}\n{")
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let kinds: Vec<(String, String)> = by_command
        .iter()
        .map(|n| (n["event"].as_str().unwrap_or("").to_string(), n["task"].as_str().unwrap_or("").to_string()))
        .collect();
    assert!(kinds.contains(&("task_waiting".into(), "ask".into())), "{kinds:?}");
    assert!(kinds.contains(&("task_escalated".into(), "bad".into())), "{kinds:?}");
    assert_eq!(kinds.last().map(|k| k.0.as_str()), Some("run_finished"), "{kinds:?}");
    assert_eq!(by_command.len(), 3, "nothing about the task that completed: {by_command:?}");
    let end = by_command.last().expect("run_finished");
    assert_eq!((end["completed"].as_u64(), end["needs_human"].as_u64()), (Some(1), Some(2)), "{end}");
    let waiting = by_command.iter().find(|n| n["event"] == "task_waiting").expect("waiting");
    assert!(waiting["reason"].as_str().is_some_and(|r| r.contains("Which port should it use?")), "{waiting}");
    assert_eq!(waiting["next"], "orch answer p/ask \"…\"");
    // The webhook got the same three.
    let hooked: Vec<serde_json::Value> =
        bodies.lock().expect("bodies").iter().map(|b| serde_json::from_str(b)).collect::<Result<_, _>>()?;
    assert_eq!(hooked.len(), 3, "{hooked:?}");
    let notified = events(&f.path("journal"))
        .into_iter()
        .filter_map(|e| match e {
            Event::Notified(n) => Some(n),
            _ => None,
        })
        .collect::<Vec<_>>();
    assert_eq!(notified.len(), 6);
    assert!(notified.iter().all(|n| n.ok), "{notified:?}");

    // A webhook nobody listens to and a failing command: journaled, and the run goes on to its end.
    let g = Fixture::new();
    let mut settings =
        g.settings(script, &["[ \"$ORCH_TASK_ID\" != bad ]"], vec![task("bad", 5, &[]), task("good", 5, &[])]);
    settings.orchestration.max_attempts = 1;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    settings.notify = NotifySettings {
        command: "echo 'no mail server' >&2; exit 3".into(),
        webhook: format!("http://{dead}/hook"),
        timeout: Duration::from_secs(5),
    };
    let (orch, _) = Orchestrator::start(settings).await?;
    let summary = orch.run(Selection::default()).await?;
    orch.shutdown().await?;
    assert_eq!(summary.count(TaskState::Completed), 1);
    let failed: Vec<_> = events(&g.path("journal"))
        .into_iter()
        .filter_map(|e| match e {
            Event::Notified(n) if !n.ok => Some(n),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 4, "{failed:?}");
    assert!(failed.iter().any(|n| n.channel == "command" && n.error.contains("exited with status 3")), "{failed:?}");
    assert!(failed.iter().any(|n| n.channel == "webhook" && n.error.contains("POST http://")), "{failed:?}");
    Ok(())
}

#[actix::test]
async fn file_changes_are_journaled_live_while_the_agent_runs_ignored_paths_not() -> TestResult {
    let f = Fixture::new();
    std::fs::create_dir_all(f.path("ws"))?;
    std::fs::write(f.path("ws/.gitignore"), "build/\n")?;
    std::fs::write(f.path("ws/old.txt"), "old\n")?;
    let script = "echo one > a.txt; mkdir -p build; echo junk > build/out.o; sleep 0.4; \
                  echo two >> old.txt; rm a.txt; sleep 0.4; echo done";
    let (orch, _) = Orchestrator::start(f.settings(script, &[], vec![task("t", 5, &[])])).await?;
    orch.run(Selection::default()).await?;
    orch.shutdown().await?;
    let ev = events(&f.path("journal"));
    let exited = ev.iter().position(|e| matches!(e, Event::AgentExited(_))).ok_or("no agent_exited")?;
    let live: Vec<(usize, String, orch_actors::types::ChangeKind)> = ev
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match e {
            Event::FileTouched(c) => Some((i, c.path.clone(), c.change)),
            _ => None,
        })
        .collect();
    use orch_actors::types::ChangeKind::*;
    let seen = |path: &str, kind| live.iter().any(|(i, p, k)| *i < exited && p == path && *k == kind);
    assert!(seen("a.txt", Created), "{live:?}");
    assert!(seen("a.txt", Deleted), "{live:?}");
    assert!(seen("old.txt", Modified), "{live:?}");
    assert!(!live.iter().any(|(_, p, _)| p.starts_with("build/")), "ignored paths are not journaled: {live:?}");
    // The authoritative list at the end: a.txt came and went, so only old.txt changed.
    let changed: Vec<String> = ev
        .iter()
        .filter_map(|e| match e {
            Event::FileChanged(c) => Some(c.path.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(changed, vec!["old.txt".to_string()]);
    Ok(())
}

#[actix::test]
async fn a_provider_limit_holds_across_projects() -> TestResult {
    let f = Fixture::new();
    let log = f.path("log.txt");
    // Each agent notes when it starts and ends, in ns, in a log outside the workspaces.
    let script = format!(
        "echo \"start $(date +%s%N)\" >> {log}; sleep 0.2; echo $ORCH_TASK_ID > out.txt; echo \"end $(date +%s%N)\" >> {log}; echo done",
        log = log.display()
    );
    let mut settings = f.settings(&script, &[], vec![task("a", 5, &[]), task("b", 5, &[])]);
    f.add_project_q(&mut settings, task("c", 5, &[]));
    settings.orchestration.max_sessions = 4;
    settings.orchestration.provider_max_sessions = BTreeMap::from([("command".to_string(), 1)]);
    let (orch, _) = Orchestrator::start(settings).await?;
    let summary = orch.run(Selection::default()).await?;
    assert!(summary.all_completed(), "{:?}", summary.tasks);
    orch.shutdown().await?;
    let text = std::fs::read_to_string(&log)?;
    let marks: Vec<&str> = text.lines().map(|l| l.split(' ').next().unwrap_or("")).collect();
    assert_eq!(marks, ["start", "end", "start", "end", "start", "end"], "one command session at a time:\n{text}");
    Ok(())
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@t")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@t")
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A repository with one commit, for worktree isolation.
fn repository(f: &Fixture) -> PathBuf {
    let ws = f.path("ws");
    std::fs::create_dir_all(&ws).expect("ws");
    git(&ws, &["init", "-q", "-b", "main"]);
    std::fs::write(ws.join("README.md"), "# project\n").expect("readme");
    git(&ws, &["add", "-A"]);
    git(&ws, &["commit", "-q", "-m", "start"]);
    ws
}

#[actix::test]
async fn worktrees_let_tasks_of_one_project_run_at_once_and_fast_forward_their_work() -> TestResult {
    let f = Fixture::new();
    let ws = repository(&f);
    let log = f.path("log.txt");
    // Each task writes its own file in its own worktree; they overlap in time.
    let script = format!(
        "echo \"start $ORCH_TASK_ID $PWD\" >> {log}; sleep 0.3; echo \"$ORCH_TASK_ID\" > $ORCH_TASK_ID.txt; echo \"end $ORCH_TASK_ID\" >> {log}; echo done",
        log = log.display()
    );
    let mut settings =
        f.settings(&script, &["test -f \"$ORCH_TASK_ID.txt\""], vec![task("a", 5, &[]), task("b", 5, &[])]);
    settings.projects[0].isolation = Isolation::Worktree;
    settings.projects[0].merge = MergeMode::FastForward;
    settings.projects[0].max_sessions = 2;
    let (orch, _) = Orchestrator::start(settings).await?;
    let summary = orch.run(Selection::default()).await?;
    assert!(summary.all_completed(), "{:?}", summary.tasks);
    orch.shutdown().await?;
    let text = std::fs::read_to_string(&log)?;
    let marks: Vec<&str> = text.lines().map(|l| l.split(' ').next().unwrap_or("")).collect();
    assert_eq!(&marks[..2], ["start", "start"], "both ran at once:\n{text}");
    assert!(text.contains("worktrees/p/a") && text.contains("worktrees/p/b"), "each in its worktree:\n{text}");
    // Both commits are on main, in a straight line, and the workspace has both files.
    assert!(ws.join("a.txt").exists() && ws.join("b.txt").exists());
    let history = git(&ws, &["log", "--format=%s%x09%an%x09%P", "main"]);
    let lines: Vec<&str> = history.lines().collect();
    assert_eq!(lines.len(), 3, "{history}");
    assert!(lines.iter().all(|l| !l.split('\t').nth(2).unwrap_or("").contains(' ')), "no merge commit: {history}");
    assert!(lines[0].starts_with("orch: Task ") && lines[0].contains("\torch\t"), "{history}");
    // Worktrees are gone, branches stay.
    assert!(!f.path("journal/worktrees/p/a").exists() && !f.path("journal/worktrees/p/b").exists());
    assert!(git(&ws, &["branch", "--list", "orch/*"]).contains("orch/p/a"));
    let committed: Vec<_> = events(&f.path("journal"))
        .into_iter()
        .filter_map(|e| match e {
            Event::Committed(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(committed.len(), 2);
    assert!(
        committed.iter().all(|c| c.merged && c.commit.is_some() && c.merge.contains("fast-forwarded")),
        "{committed:?}"
    );
    Ok(())
}

#[actix::test]
async fn a_merge_that_conflicts_escalates_and_keeps_the_work_on_its_branch() -> TestResult {
    let f = Fixture::new();
    let ws = repository(&f);
    // Both tasks rewrite README.md differently: the second cannot be merged.
    let script = "sleep 0.2; echo \"$ORCH_TASK_ID was here\" > README.md; echo done";
    let mut settings = f.settings(script, &[], vec![task("a", 5, &[]), task("b", 5, &[])]);
    settings.projects[0].isolation = Isolation::Worktree;
    settings.projects[0].merge = MergeMode::Merge;
    settings.projects[0].max_sessions = 2;
    let (orch, _) = Orchestrator::start(settings.clone()).await?;
    let summary = orch.run(Selection::default()).await?;
    orch.shutdown().await?;
    assert_eq!(summary.count(TaskState::Completed), 1, "{:?}", summary.tasks);
    let escalated = summary.tasks.iter().find(|(_, s, _)| *s == TaskState::Escalated).ok_or("one escalated")?;
    let why = escalated.2.clone().unwrap_or_default();
    assert!(why.starts_with("accepted, but orch/") && why.contains("does not merge into main"), "{why}");
    // The main checkout is clean (the merge was aborted) and the work waits on its branch, in its worktree.
    assert_eq!(git(&ws, &["status", "--porcelain"]), "");
    let loser = &escalated.0.task;
    assert!(git(&ws, &["show", &format!("orch/p/{loser}:README.md")]).contains(&format!("{loser} was here")));
    assert!(f.path(&format!("journal/worktrees/p/{loser}")).exists());
    // Once a human cancels it, the next run removes its worktree; the branch stays.
    let (orch, _) = Orchestrator::start(settings).await?;
    orch.human(loser, HumanRequest::Cancel).await?;
    orch.run(Selection::default()).await?;
    orch.shutdown().await?;
    assert!(!f.path(&format!("journal/worktrees/p/{loser}")).exists());
    assert!(git(&ws, &["branch", "--list", "orch/*"]).contains(&format!("orch/p/{loser}")));
    Ok(())
}

#[actix::test]
async fn a_project_that_waited_past_max_wait_goes_before_higher_priorities() -> TestResult {
    let f = Fixture::new();
    let log = f.path("log.txt");
    let script = format!(
        "echo \"$ORCH_PROJECT/$ORCH_TASK_ID\" >> {log}; sleep 0.4; echo \"$ORCH_TASK_ID\" > out.txt; echo done",
        log = log.display()
    );
    // One session for everyone; p's three tasks outrank q's one.
    let mut settings = f.settings(&script, &[], vec![task("a1", 9, &[]), task("a2", 9, &[]), task("a3", 9, &[])]);
    f.add_project_q(&mut settings, task("b", 1, &[]));
    settings.orchestration.max_sessions = 1;
    settings.orchestration.max_wait = Duration::from_millis(600);
    let (orch, _) = Orchestrator::start(settings).await?;
    assert!(orch.run(Selection::default()).await?.all_completed());
    orch.shutdown().await?;
    let order = std::fs::read_to_string(&log)?;
    // q/b waited 0.4 s after p/a1 (not yet past 0.6 s), 0.8 s after p/a2: it goes next.
    assert_eq!(order.lines().collect::<Vec<_>>(), ["p/a1", "p/a2", "q/b", "p/a3"], "{order}");
    Ok(())
}

#[actix::test]
async fn answering_a_dependency_during_the_run_unblocks_its_dependants_in_that_run() -> TestResult {
    let f = Fixture::new();
    // `a` asks on its first attempt; `b` waits for `a`; `q/slow` keeps the run going meanwhile.
    let script = "case $ORCH_TASK_ID in \
                  a) if [ \"$ORCH_ATTEMPT\" = 1 ]; then echo 'Which name should it use?'; else echo a > a.txt; echo done; fi;; \
                  slow) sleep 1.5; echo s > s.txt; echo done;; \
                  *) echo \"$ORCH_TASK_ID\" > \"$ORCH_TASK_ID.txt\"; echo done;; esac";
    let mut settings = f.settings(script, &[], vec![task("a", 5, &[]), task("b", 5, &["a"])]);
    f.add_project_q(&mut settings, task("slow", 5, &[]));
    let (orch, _) = Orchestrator::start(settings).await?;
    let human = async {
        loop {
            let a = orch.task("p/a").await.expect("task a");
            if a.state == TaskState::Escalated {
                let b = orch.task("p/b").await.expect("task b");
                assert_eq!(b.state, TaskState::Blocked, "b waits for a: {:?}", b.reason);
                orch.human("p/a", HumanRequest::Answer("Use orch.".into())).await.expect("answer");
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let (summary, ()) = tokio::join!(orch.run(Selection::default()), human);
    let summary = summary?;
    orch.shutdown().await?;
    assert!(summary.all_completed(), "{:?}", summary.tasks);
    assert_eq!(std::fs::read_to_string(f.path("ws/b.txt"))?, "b\n");
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
