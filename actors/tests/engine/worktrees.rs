//! Worktree isolation: tasks of one project at once, fast-forwarded onto main, and a merge that conflicts.

use orch_actors::journal::event::Event;
use orch_actors::ops::HumanRequest;
use orch_actors::settings::{Isolation, MergeMode};
use orch_actors::{Orchestrator, Selection, TaskState};

use crate::support::{events, git, repository, task, Fixture, TestResult};

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
    let escalated = summary.tasks.iter().find(|t| t.state == TaskState::Escalated).ok_or("one escalated")?;
    let why = escalated.reason.clone().unwrap_or_default();
    assert!(why.starts_with("accepted, but orch/") && why.contains("does not merge into main"), "{why}");
    // The main checkout is clean (the merge was aborted) and the work waits on its branch, in its worktree.
    assert_eq!(git(&ws, &["status", "--porcelain"]), "");
    let loser = &escalated.key.task;
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
