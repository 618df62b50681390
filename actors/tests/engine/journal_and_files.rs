//! The journal and the workspace's files: secrets never reach the journal, file changes are attributed and rolled
//! back exactly, and changes are journaled live while the agent runs.

use orch_actors::journal::event::Event;
use orch_actors::journal::Journal;
use orch_actors::{Orchestrator, Selection, TaskSpec};

use crate::support::{events, task, Fixture, TestResult};

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

/// Runs `script` as the agent of one task `t` that names the files it touches, then returns the journal, closed.
async fn run_one(f: &Fixture, script: &str) -> TestResult {
    let t = TaskSpec {
        description: "Edit edit.txt, remove gone.txt, replace fifo.txt and dir.txt, add the odd names.".into(),
        ..task("t", 5, &[])
    };
    let (orch, _) = Orchestrator::start(f.settings(script, &[], vec![t])).await?;
    orch.run(Selection::default()).await?;
    orch.shutdown().await?;
    Ok(())
}

/// Rolls back on another thread, failing (instead of hanging the test) if it does not return in time.
fn rollback_within(f: &Fixture, force: bool) -> Result<orch_actors::ops::RollbackReport, Box<dyn std::error::Error>> {
    let path = f.path("journal");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = Journal::open(&path, false)
            .map_err(|e| e.to_string())
            .and_then(|mut j| orch_actors::ops::rollback(&mut j, "t", None, force).map_err(|e| e.to_string()));
        let _ = tx.send(r);
    });
    Ok(rx.recv_timeout(std::time::Duration::from_secs(20)).map_err(|_| "rollback hung")??)
}

#[actix::test]
async fn rollback_replaces_a_hard_linked_file_and_never_writes_through_the_link_outside() -> TestResult {
    let f = Fixture::new();
    std::fs::create_dir_all(f.path("ws"))?;
    std::fs::write(f.path("ws/edit.txt"), "before")?;
    std::fs::write(f.path("ws/other.txt"), "before too")?;
    // The agent leaves hard links to files outside the workspace (a human's files) where rollback will write.
    let script = "cat >/dev/null; echo after > edit.txt; echo after > ../outside.txt; rm edit.txt; \
                  ln ../outside.txt edit.txt; echo changed > other.txt; ln other.txt ../outside2.txt; echo done";
    run_one(&f, script).await?;
    assert_eq!(std::fs::read_to_string(f.path("outside.txt"))?, "after\n");
    let report = rollback_within(&f, false)?;
    assert_eq!(report.restored, vec!["edit.txt".to_string(), "other.txt".to_string()], "{report:?}");
    assert_eq!(std::fs::read_to_string(f.path("ws/edit.txt"))?, "before");
    assert_eq!(std::fs::read_to_string(f.path("ws/other.txt"))?, "before too");
    // The files outside the workspace keep their content: the names inside were replaced, not written through.
    assert_eq!(std::fs::read_to_string(f.path("outside.txt"))?, "after\n");
    assert_eq!(std::fs::read_to_string(f.path("outside2.txt"))?, "changed\n");
    // No temporary file is left behind.
    let names: Vec<String> = std::fs::read_dir(f.path("ws"))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    assert!(names.iter().all(|n| !n.starts_with(".orch-restore-")), "{names:?}");
    Ok(())
}

#[actix::test]
async fn rollback_reports_a_fifo_a_directory_and_a_non_utf8_name_as_conflicts_and_restores_the_rest() -> TestResult {
    let f = Fixture::new();
    std::fs::create_dir_all(f.path("ws"))?;
    for name in ["edit.txt", "gone.txt", "fifo.txt", "dir.txt"] {
        std::fs::write(f.path(&format!("ws/{name}")), format!("{name} before"))?;
    }
    let script = "cat >/dev/null; echo after > edit.txt; rm gone.txt; echo x > fifo.txt; echo y > dir.txt; \
                  echo z > 'back\\slash.txt'; echo w > \"$(printf 'bad\\377name.txt')\"; echo done";
    run_one(&f, script).await?;
    let changed: Vec<String> = events(&f.path("journal"))
        .into_iter()
        .filter_map(|e| match e {
            Event::FileChanged(c) => Some(c.path),
            _ => None,
        })
        .collect();
    assert!(changed.contains(&"back\\slash.txt".to_string()), "a backslash is part of the name: {changed:?}");
    assert!(f.path("ws/back\\slash.txt").exists());
    // Since the attempt: a FIFO where a file was (reading it would block forever), a directory where another was.
    std::fs::remove_file(f.path("ws/fifo.txt"))?;
    let status = std::process::Command::new("mkfifo").arg(f.path("ws/fifo.txt")).status()?;
    assert!(status.success());
    std::fs::remove_file(f.path("ws/dir.txt"))?;
    std::fs::create_dir(f.path("ws/dir.txt"))?;
    std::fs::write(f.path("ws/dir.txt/inside"), "a human's work")?;
    // Forced, so only the kind of file stops it.
    let report = rollback_within(&f, true)?;
    assert_eq!(
        report.restored,
        vec!["back\\slash.txt".to_string(), "edit.txt".to_string(), "gone.txt".to_string()],
        "{report:?}"
    );
    assert_eq!(report.conflicts.len(), 3, "{report:?}");
    assert!(report.conflicts.iter().any(|c| c.starts_with("bad") && c.contains("not valid UTF-8")), "{report:?}");
    assert!(report.conflicts.contains(&"dir.txt (now a directory)".to_string()), "{report:?}");
    assert!(report.conflicts.contains(&"fifo.txt (now a FIFO)".to_string()), "{report:?}");
    assert_eq!(std::fs::read_to_string(f.path("ws/edit.txt"))?, "edit.txt before");
    assert_eq!(std::fs::read_to_string(f.path("ws/gone.txt"))?, "gone.txt before");
    assert!(!f.path("ws/back\\slash.txt").exists());
    assert!(!f.path("ws/back").exists(), "nothing made at the name with the backslash read as a separator");
    assert_eq!(std::fs::read_to_string(f.path("ws/dir.txt/inside"))?, "a human's work");
    {
        use std::os::unix::ffi::OsStrExt;
        let bad = f.path("ws").join(std::ffi::OsStr::from_bytes(b"bad\xffname.txt"));
        assert!(bad.exists(), "the file with the non-UTF-8 name is left alone");
    }
    // It was journaled, conflicts and all.
    let rolled = events(&f.path("journal")).into_iter().rev().find_map(|e| match e {
        Event::RolledBack(r) => Some(r),
        _ => None,
    });
    let rolled = rolled.ok_or("no rolled_back event")?;
    assert_eq!(rolled.restored, report.restored);
    assert_eq!(rolled.conflicts, report.conflicts);
    Ok(())
}

#[actix::test]
async fn rollback_never_follows_a_directory_swapped_for_a_link_out_of_the_workspace() -> TestResult {
    let f = Fixture::new();
    std::fs::create_dir_all(f.path("ws/sub"))?;
    std::fs::create_dir_all(f.path("human"))?;
    std::fs::write(f.path("ws/sub/edit.txt"), "before")?;
    std::fs::write(f.path("ws/edit.txt"), "before")?;
    std::fs::write(f.path("human/edit.txt"), "after\n")?;
    let script = "cat >/dev/null; echo after > sub/edit.txt; echo after > edit.txt; echo done";
    run_one(&f, script).await?;
    // Since: the directory is now a link to a human's directory, whose file has the content the attempt left.
    std::fs::remove_dir_all(f.path("ws/sub"))?;
    std::os::unix::fs::symlink(f.path("human"), f.path("ws/sub"))?;
    let report = rollback_within(&f, true)?;
    assert_eq!(report.restored, vec!["edit.txt".to_string()], "{report:?}");
    assert_eq!(report.conflicts, vec!["sub/edit.txt (the path leaves the workspace)".to_string()], "{report:?}");
    assert_eq!(std::fs::read_to_string(f.path("human/edit.txt"))?, "after\n");
    assert_eq!(std::fs::read_to_string(f.path("ws/edit.txt"))?, "before");
    Ok(())
}
