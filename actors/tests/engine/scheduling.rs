//! Scheduling: priority then age, dependency cycles, provider limits across projects, `max_wait` against
//! starvation, and dependants unblocked within the run.

use std::collections::BTreeMap;
use std::time::Duration;

use orch_actors::ops::HumanRequest;
use orch_actors::{Orchestrator, Selection, TaskState};

use crate::support::{task, wait_for, Fixture, TestResult};

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
        let orch = &orch;
        wait_for("p/a to wait for an answer", Duration::from_secs(60), move || async move {
            let a = orch.task("p/a").await.expect("task a");
            if a.state == TaskState::Escalated {
                Ok(())
            } else {
                Err(format!("p/a is {:?} ({:?})", a.state, a.reason))
            }
        })
        .await;
        let b = orch.task("p/b").await.expect("task b");
        assert_eq!(b.state, TaskState::Blocked, "b waits for a: {:?}", b.reason);
        orch.human("p/a", HumanRequest::Answer("Use orch.".into())).await.expect("answer");
    };
    let (summary, ()) = tokio::join!(orch.run(Selection::default()), human);
    let summary = summary?;
    orch.shutdown().await?;
    assert!(summary.all_completed(), "{:?}", summary.tasks);
    assert_eq!(std::fs::read_to_string(f.path("ws/b.txt"))?, "b\n");
    Ok(())
}
