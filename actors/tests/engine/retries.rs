//! Retries: a failed check's output reaches the next attempt, `max_attempts` escalates and blocks dependants, and
//! `on_retry` keeps or rolls back the failed attempt's work.

use orch_actors::journal::event::Event;
use orch_actors::ops::HumanRequest;
use orch_actors::settings::OnRetry;
use orch_actors::{Orchestrator, Selection, TaskState};

use crate::support::{events, task, Fixture, TestResult};

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
