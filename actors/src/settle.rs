//! What a crash left half done, settled at the next start before anything new begins.
//!
//! orch journals an intent ([`IntentRecorded`]) before each side effect a crash could cut in two: an attempt's agent
//! working in the workspace, a rollback restoring files, a merge of accepted work. Each ends with an event of its own
//! (the attempt's `intent_settled` with its file changes, `rolled_back`, `committed`); an intent still open when the
//! journal is opened again was cut short, and is settled here:
//!
//! - **an attempt**: what it left running is killed, its changes are found by comparing the workspace with the
//!   manifest kept at its start, and journaled as its `file_changed` — so `orch rollback` can undo it — and with
//!   `on_retry = "rollback"` it is rolled back before the task is tried again;
//! - **a rollback**: run again to its end (restoring is idempotent: a file already restored is left alone), and a
//!   task whose files cannot all be restored is escalated instead of retried on a half-restored workspace;
//! - **a merge**: a merge git had begun is aborted, then the work is committed and merged again — a branch already
//!   merged is "up to date", so nothing is merged twice — and the task completes (or is escalated with what git
//!   said).
//!
//! Every intent is closed here, settled or given up with the reason, so a start never loops on one.

use std::path::PathBuf;

use crate::actors::file_monitor;
use crate::error::EngineError;
use crate::journal::event::{Committed, Event, Intent, IntentRecorded, IntentSettled, TaskStateChanged};
use crate::journal::Journal;
use crate::settings::{OnRetry, ProjectSettings};
use crate::types::{AttemptRef, ContentHash, TaskKey, TaskState};

/// Settles every open intent of `journal`; one line per intent settled, for the log. `projects` are the configured
/// projects (workspaces canonical); `skip` is what the workspace walk leaves out (the journal's directory).
pub async fn settle(
    journal: &mut Journal,
    projects: &[ProjectSettings],
    skip: &[PathBuf],
) -> Result<Vec<String>, EngineError> {
    let mut notes = Vec::new();
    // Each pass closes the intent it takes (settling an attempt may open a rollback): a bound, not a hope.
    for _ in 0..10_000 {
        let Some(open) = journal.state().intents.values().flatten().next().cloned() else { break };
        let key = TaskKey::new(&open.project, &open.task);
        let project = projects.iter().find(|p| p.name == key.project);
        let (events, note) = match &open.intent {
            Intent::Attempt { baseline, .. } => attempt(journal, project, skip, &open, baseline),
            Intent::Rollback { from_attempt, force } => rollback(journal, &open, *from_attempt, *force),
            Intent::Merge { branch } => merge(journal, project, &open, branch).await,
        };
        journal.append(events)?;
        journal.flush()?;
        tracing::warn!("{key}: {note}");
        notes.push(format!("{key}: {note}"));
    }
    Ok(notes)
}

/// Settles the open attempt intents of task `id` alone, as the journal knows its project (no configuration): what
/// `orch rollback` does first, so that it also undoes an attempt a crash cut short before any `orch run` settled it.
pub fn settle_attempts_of(journal: &mut Journal, id: &str, skip: &[PathBuf]) -> Result<Vec<String>, EngineError> {
    let Ok(key) = journal.state().resolve(id) else { return Ok(Vec::new()) };
    let mut notes = Vec::new();
    loop {
        let open = journal
            .state()
            .intents
            .get(&key)
            .and_then(|open| open.iter().find(|i| matches!(i.intent, Intent::Attempt { .. })))
            .cloned();
        let Some(open) = open else { break };
        let Intent::Attempt { baseline, .. } = &open.intent else { break };
        let (events, note) = attempt(journal, None, skip, &open, baseline);
        journal.append(events)?;
        journal.flush()?;
        notes.push(format!("{key}: {note}"));
    }
    Ok(notes)
}

fn settled(open: &IntentRecorded, how: String) -> Event {
    Event::IntentSettled(IntentSettled {
        project: open.project.clone(),
        task: open.task.clone(),
        attempt: open.attempt,
        intent: open.intent.name().into(),
        how,
    })
}

/// A running task (its attempt was cut short) escalated, with `why`; nothing for a task in another state.
fn escalate(journal: &Journal, key: &TaskKey, why: String) -> Option<Event> {
    let running = journal.state().tasks.get(key).is_some_and(|t| t.state == TaskState::Running);
    running.then(|| {
        Event::TaskStateChanged(TaskStateChanged {
            project: key.project.clone(),
            task: key.task.clone(),
            from: TaskState::Running,
            to: TaskState::Escalated,
            reason: why,
        })
    })
}

/// Where the task's files are: its worktree, when it works in one, else its project's workspace.
fn workspace_of(journal: &Journal, project: Option<&ProjectSettings>, key: &TaskKey) -> Option<PathBuf> {
    let worktree = crate::git::worktree_path(journal.path(), key);
    if worktree.join(".git").exists() {
        return Some(worktree);
    }
    project
        .map(|p| p.workspace.clone())
        .or_else(|| journal.state().projects.get(&key.project).map(|p| PathBuf::from(&p.workspace)))
}

fn attempt(
    journal: &Journal,
    project: Option<&ProjectSettings>,
    skip: &[PathBuf],
    open: &IntentRecorded,
    baseline: &ContentHash,
) -> (Vec<Event>, String) {
    let key = TaskKey::new(&open.project, &open.task);
    let a = AttemptRef { key: key.clone(), attempt: open.attempt };
    // Agents outlive a kill -9 of their parent: nothing of the attempt may go on writing while its changes are read.
    let killed = crate::process::kill_attempt(&crate::process::attempt_tag(journal.path(), &a));
    let found = workspace_of(journal, project, &key)
        .ok_or_else(|| format!("project {} is not known", key.project))
        .and_then(|ws| {
            let bytes = journal
                .get_blob(baseline)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("its workspace manifest (blob {baseline}) is not in the journal"))?;
            let manifest = file_monitor::decode_manifest(&bytes)?;
            file_monitor::changes_since(&ws, skip, &manifest).map_err(|e| e.to_string())
        });
    let killed = if killed > 0 { format!("; {killed} process(es) it left running killed") } else { String::new() };
    match found {
        Err(why) => (
            vec![settled(open, format!("after a crash, its changes could not be found: {why}"))],
            format!("attempt {} was cut short by a crash; its changes could not be found: {why}{killed}", a.attempt),
        ),
        Ok(changes) => {
            let n = changes.len();
            let mut events = file_monitor::file_changed_events(&a, &changes);
            events.push(settled(open, format!("after a crash: {n} file change(s) found against its manifest")));
            let rollback = project.is_some_and(|p| p.on_retry == OnRetry::Rollback) && n > 0;
            if rollback {
                events.push(Event::IntentRecorded(IntentRecorded {
                    intent: Intent::Rollback { from_attempt: a.attempt, force: false },
                    ..open.clone()
                }));
            }
            let then = if rollback { "; to be rolled back (on_retry = \"rollback\")" } else { "" };
            (
                events,
                format!("attempt {} was cut short by a crash: {n} file change(s) journaled{then}{killed}", a.attempt),
            )
        }
    }
}

fn rollback(journal: &Journal, open: &IntentRecorded, from: u32, force: bool) -> (Vec<Event>, String) {
    let key = TaskKey::new(&open.project, &open.task);
    match crate::ops::rollback_files(journal, &key.to_string(), Some(from), force) {
        Ok((report, rolled_back)) => {
            let mut events = vec![rolled_back];
            let note = format!(
                "a rollback from attempt {from} cut short by a crash was finished: {} file(s) restored",
                report.restored.len()
            );
            if report.conflicts.is_empty() {
                return (events, note);
            }
            let why = format!(
                "attempt {from} cannot be rolled back: changed since by someone else: {}",
                report.conflicts.join(", ")
            );
            events.extend(escalate(journal, &key, why.clone()));
            (events, format!("{note}; {why}"))
        }
        Err(e) => {
            let why = format!("a rollback from attempt {from} cut short by a crash could not be finished: {e}");
            let mut events = vec![settled(open, why.clone())];
            events.extend(escalate(journal, &key, why.clone()));
            (events, why)
        }
    }
}

async fn merge(
    journal: &Journal,
    project: Option<&ProjectSettings>,
    open: &IntentRecorded,
    branch: &str,
) -> (Vec<Event>, String) {
    let key = TaskKey::new(&open.project, &open.task);
    let Some(project) = project else {
        let why = format!("its merge was cut short by a crash, and project {} is no longer configured", key.project);
        let mut events = vec![settled(open, why.clone())];
        events.extend(escalate(journal, &key, why.clone()));
        return (events, why);
    };
    let repo = &project.workspace;
    let worktree = crate::git::worktree_path(journal.path(), &key);
    // What git had begun: a merge stopped in the repository, a rebase in the worktree.
    if crate::git::git(repo, &["rev-parse", "-q", "--verify", "MERGE_HEAD"]).await.is_ok() {
        let _ = crate::git::git(repo, &["merge", "--abort"]).await;
    }
    let (commit, merged) = if worktree.exists() {
        let _ = crate::git::git(&worktree, &["rebase", "--abort"]).await;
        let title = journal.state().tasks.get(&key).map(|t| t.spec.title.clone()).unwrap_or_else(|| key.task.clone());
        let message = format!("orch: {title}\n\nTask {key}, attempt {}: accepted\n", open.attempt);
        let accepted =
            crate::actors::scheduler::worktrees::accept_in(repo, &worktree, &key, project.merge, &message, None).await;
        (accepted.commit, accepted.merged)
    } else {
        // The worktree is removed only once its branch is merged: what is left to know is whether it was.
        match crate::git::git(repo, &["merge-base", "--is-ancestor", branch, "HEAD"]).await {
            Ok(_) => (None, Ok(format!("{branch} was merged before the crash"))),
            Err(_) => (None, Err(format!("its worktree is gone and {branch} is not merged"))),
        }
    };
    let ok = merged.is_ok();
    let detail = match &merged {
        Ok(d) | Err(d) => d.clone(),
    };
    let mut events = vec![Event::Committed(Committed {
        project: key.project.clone(),
        task: key.task.clone(),
        attempt: open.attempt,
        branch: branch.to_string(),
        commit,
        merge: detail.clone(),
        merged: ok,
    })];
    let running = journal.state().tasks.get(&key).is_some_and(|t| t.state == TaskState::Running);
    if running {
        let (to, reason) = if ok {
            (TaskState::Completed, format!("accepted; its merge, cut short by a crash, was finished: {detail}"))
        } else {
            (TaskState::Escalated, format!("accepted, but its merge, cut short by a crash, failed: {detail}"))
        };
        events.push(Event::TaskStateChanged(TaskStateChanged {
            project: key.project.clone(),
            task: key.task.clone(),
            from: TaskState::Running,
            to,
            reason,
        }));
    }
    (events, format!("a merge of attempt {} cut short by a crash: {detail}", open.attempt))
}
