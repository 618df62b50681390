//! Notifications: escalations and the run's end, by command and by webhook, and a failed delivery journaled.

use std::time::Duration;

use orch_actors::journal::event::Event;
use orch_actors::settings::NotifySettings;
use orch_actors::{Orchestrator, Selection, TaskState};

use crate::support::{events, task, webhook_server, Fixture, TestResult};

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
