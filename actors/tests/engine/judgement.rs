//! Judgement: claims against the evidence, questions and their answers, breakpoints, and the prompt the agent
//! gets.

use orch_actors::journal::event::Event;
use orch_actors::ops::HumanRequest;
use orch_actors::{Orchestrator, Selection, TaskState};

use crate::support::{breakpoints_hit, events, task, Fixture, TestResult};

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
