//! Operations on the journal that enforce the task lifecycle's rules: importing the configuration, adding tasks,
//! a human's answer and verdicts, crash recovery and rollback. The CLI calls them on a journal it opened itself;
//! the `StateJournal` actor calls the same functions in a live run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use crate::error::EngineError;
use crate::journal::event::*;
use crate::journal::{EventFilter, Journal, State};
use crate::settings::ProjectSettings;
use crate::types::{ContentHash, TaskKey, TaskSpec, TaskState};

/// What [`import`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Projects registered or re-registered.
    pub projects: u32,
    /// Tasks added.
    pub added: u32,
    /// Pending tasks whose specification changed.
    pub updated: u32,
    /// Things the user should know (a settled task changed in the config, …).
    pub warnings: Vec<String>,
}

fn workspace_string(p: &ProjectSettings) -> String {
    p.workspace.display().to_string()
}

/// The events that bring the journal in line with the configured projects and tasks (idempotent by id).
pub fn import_events(state: &State, projects: &[ProjectSettings]) -> (Vec<Event>, ImportReport) {
    let mut events = Vec::new();
    let mut report = ImportReport::default();
    for p in projects {
        let ws = workspace_string(p);
        let same = state.projects.get(&p.name).is_some_and(|v| v.workspace == ws && v.checks == p.checks);
        if !same {
            events.push(Event::ProjectRegistered(ProjectRegistered {
                project: p.name.clone(),
                workspace: ws,
                checks: p.checks.clone(),
            }));
            report.projects += 1;
        }
        for t in &p.tasks {
            match state.tasks.get(&t.key()) {
                None => {
                    events.push(Event::TaskAdded(TaskAdded { spec: t.clone(), source: "config".into() }));
                    report.added += 1;
                }
                Some(v) if v.spec != *t => {
                    if matches!(v.state, TaskState::Pending | TaskState::Blocked | TaskState::Escalated) {
                        events.push(Event::TaskUpdated(TaskUpdated { spec: t.clone() }));
                        report.updated += 1;
                    } else {
                        report.warnings.push(format!(
                            "task {} changed in the config but is {}; the change is not applied",
                            t.key(),
                            v.state
                        ));
                    }
                }
                Some(_) => {}
            }
        }
    }
    (events, report)
}

/// Imports the configured projects and tasks.
pub fn import(journal: &mut Journal, projects: &[ProjectSettings]) -> Result<ImportReport, EngineError> {
    let (events, report) = import_events(journal.state(), projects);
    if !events.is_empty() {
        journal.append(events)?;
        journal.flush()?;
    }
    Ok(report)
}

/// Checks a new task against the state: its project exists, its id is new, its dependencies exist.
pub fn check_new_task(state: &State, spec: &TaskSpec) -> Result<(), EngineError> {
    crate::validate::task(spec)?;
    if !state.projects.contains_key(&spec.project) {
        return Err(EngineError::UnknownProject(format!(
            "`{}` (known: {})",
            spec.project,
            state.projects.keys().cloned().collect::<Vec<_>>().join(", ")
        )));
    }
    if state.tasks.contains_key(&spec.key()) {
        return Err(EngineError::InvalidRequest(format!("task {} already exists", spec.key())));
    }
    for d in spec.dependency_keys() {
        if !state.tasks.contains_key(&d) {
            return Err(EngineError::UnknownTask(format!("{d} (named in --depends-on of {})", spec.key())));
        }
    }
    Ok(())
}

/// The event that adds a new task, checked against the rules and the state; `source` says who added it (`cli`,
/// `api`, `config`).
pub fn add_task(state: &State, spec: TaskSpec, source: &str) -> Result<Event, EngineError> {
    check_new_task(state, &spec)?;
    Ok(Event::TaskAdded(TaskAdded { spec, source: source.to_string() }))
}

/// The events a human's request on a task produces, checked against the task's state.
pub fn human_events(state: &State, id: &str, request: &HumanRequest) -> Result<(TaskKey, Vec<Event>), EngineError> {
    let key = state.resolve(id).map_err(EngineError::UnknownTask)?;
    let view = &state.tasks[&key];
    let (project, task) = (key.project.clone(), key.task.clone());
    let change = |to: TaskState, reason: String| {
        Event::TaskStateChanged(TaskStateChanged {
            project: project.clone(),
            task: task.clone(),
            from: view.state,
            to,
            reason,
        })
    };
    let verdict = |verdict: &str, reason: &str| {
        Event::HumanVerdict(HumanVerdict {
            project: project.clone(),
            task: task.clone(),
            verdict: verdict.into(),
            reason: reason.into(),
        })
    };
    let not_waiting = || {
        EngineError::InvalidRequest(format!(
            "task {key} is {}, not waiting for a human (only escalated tasks take an answer or a verdict)",
            view.state
        ))
    };
    let events = match request {
        HumanRequest::Answer(text) => {
            if !matches!(view.state, TaskState::Escalated | TaskState::Failed | TaskState::Blocked) {
                return Err(not_waiting());
            }
            if text.trim().is_empty() {
                return Err(EngineError::InvalidRequest("the answer is empty".into()));
            }
            vec![
                Event::HumanAnswered(HumanAnswered {
                    project: project.clone(),
                    task: task.clone(),
                    answer: text.clone(),
                }),
                change(TaskState::Pending, "a human answered".into()),
            ]
        }
        HumanRequest::Approve => {
            if view.state != TaskState::Escalated {
                return Err(not_waiting());
            }
            vec![verdict("approve", ""), change(TaskState::Completed, "approved by a human".into())]
        }
        HumanRequest::Reject(reason) => {
            if view.state != TaskState::Escalated {
                return Err(not_waiting());
            }
            let why = if reason.is_empty() { "rejected by a human".to_string() } else { format!("rejected: {reason}") };
            vec![verdict("reject", reason), change(TaskState::Failed, why)]
        }
        HumanRequest::Cancel => {
            if matches!(view.state, TaskState::Completed | TaskState::Cancelled) {
                return Err(EngineError::InvalidRequest(format!("task {key} is already {}", view.state)));
            }
            vec![verdict("cancel", ""), change(TaskState::Cancelled, "cancelled by a human".into())]
        }
    };
    Ok((key, events))
}

/// What a human asks of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HumanRequest {
    /// An answer to the agent's question (or guidance after an escalation).
    Answer(String),
    /// Accept the work as it is.
    Approve,
    /// Refuse it, with a reason.
    Reject(String),
    /// Stop working on the task.
    Cancel,
}

/// The events that close attempts left open by a crash: each is journaled as interrupted and its task made
/// pending again.
pub fn recovery_events(state: &State) -> Vec<Event> {
    let mut events = Vec::new();
    for (key, view) in &state.tasks {
        if view.state != TaskState::Running {
            continue;
        }
        if let Some(a) = view.attempts.last() {
            if a.ended_ms.is_none() {
                events.push(Event::AttemptInterrupted(AttemptInterrupted {
                    project: key.project.clone(),
                    task: key.task.clone(),
                    attempt: a.number,
                    reason: "the supervisor stopped before the attempt ended".into(),
                }));
            }
        }
        events.push(Event::TaskStateChanged(TaskStateChanged {
            project: key.project.clone(),
            task: key.task.clone(),
            from: TaskState::Running,
            to: TaskState::Pending,
            reason: "its attempt was interrupted; it will be tried again".into(),
        }));
    }
    events
}

/// The intent to journal (and flush) before the task's files are rolled back, so that a rollback a crash cuts short
/// is finished at the next start instead of leaving a half-restored workspace for the next attempt. `None` when the
/// task has no such attempts (the rollback's own checks say so).
pub fn rollback_intent(state: &State, id: &str, from_attempt: Option<u32>, force: bool) -> Option<Event> {
    let key = state.resolve(id).ok()?;
    let last = state.tasks.get(&key)?.attempts.last()?.number;
    let from = from_attempt.unwrap_or(1);
    (from <= last).then(|| {
        Event::IntentRecorded(IntentRecorded {
            project: key.project.clone(),
            task: key.task.clone(),
            attempt: last,
            intent: Intent::Rollback { from_attempt: from, force },
        })
    })
}

/// What [`rollback`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RollbackReport {
    /// The task.
    pub task: String,
    /// Files restored to their content before the attempt (or removed, when the attempt created them).
    pub restored: Vec<String>,
    /// Files left alone because they changed since the attempt.
    pub conflicts: Vec<String>,
}

/// Restores every file the task's attempts (from `from_attempt` on) changed to its content before, and journals it.
pub fn rollback(
    journal: &mut Journal,
    id: &str,
    from_attempt: Option<u32>,
    force: bool,
) -> Result<RollbackReport, EngineError> {
    if let Some(intent) = rollback_intent(journal.state(), id, from_attempt, force) {
        journal.append(vec![intent])?;
        journal.flush()?;
    }
    let (report, event) = rollback_files(journal, id, from_attempt, force)?;
    journal.append(vec![event])?;
    journal.flush()?;
    Ok(report)
}

/// The work of [`rollback`] on the files; returns what it did and the `rolled_back` event for the caller to journal.
pub fn rollback_files(
    journal: &Journal,
    id: &str,
    from_attempt: Option<u32>,
    force: bool,
) -> Result<(RollbackReport, Event), EngineError> {
    let state = journal.state();
    let key = state.resolve(id).map_err(EngineError::UnknownTask)?;
    let mut workspace = state
        .projects
        .get(&key.project)
        .map(|p| PathBuf::from(&p.workspace))
        .ok_or_else(|| EngineError::UnknownProject(key.project.clone()))?;
    // A task that works in a worktree of its own changed files there.
    let worktree = crate::git::worktree_path(journal.path(), &key);
    if worktree.join(".git").exists() {
        workspace = worktree;
    }
    let from = from_attempt.unwrap_or(1);
    if let Some(n) = from_attempt {
        let attempts = state.tasks[&key].attempts.len() as u32;
        if n == 0 || state.tasks[&key].attempts.iter().all(|a| a.number != n) {
            return Err(EngineError::InvalidRequest(format!("task {key} has no attempt {n} (it has {attempts})")));
        }
    }
    // For each path: the content before its first change in range, and every state the attempts left it in.
    let mut first_before: BTreeMap<String, Option<ContentHash>> = BTreeMap::new();
    let mut known: BTreeMap<String, BTreeSet<Option<ContentHash>>> = BTreeMap::new();
    let filter = EventFilter { task: Some(key.clone()), kinds: vec![8], ..EventFilter::default() };
    for rec in journal.scan(filter) {
        if let Event::FileChanged(fc) = rec?.event {
            if fc.attempt < from {
                continue;
            }
            first_before.entry(fc.path.clone()).or_insert(fc.before);
            let states = known.entry(fc.path).or_default();
            states.insert(fc.before);
            states.insert(fc.after);
        }
    }
    let ws_canon = workspace.canonicalize().map_err(|source| EngineError::Io {
        about: format!("workspace {} of project {}", workspace.display(), key.project),
        source,
    })?;
    let mut report = RollbackReport { task: key.to_string(), ..RollbackReport::default() };
    // Each file on its own: one that cannot be restored is a conflict, reported, and the rest are still restored.
    for (rel, before) in &first_before {
        match restore_one(journal, &ws_canon, rel, *before, known.get(rel), force) {
            Restored::Yes => {
                report.restored.push(rel.clone());
                crate::fault::point("rollback:one-restored");
            }
            Restored::AlreadyAsItWas => {}
            Restored::ChangedSince => report.conflicts.push(rel.clone()),
            Restored::No(why) => report.conflicts.push(format!("{rel} ({why})")),
        }
    }
    let event = Event::RolledBack(RolledBack {
        project: key.project.clone(),
        task: key.task.clone(),
        from_attempt: from,
        restored: report.restored.clone(),
        conflicts: report.conflicts.clone(),
    });
    Ok((report, event))
}

/// What [`restore_one`] did with one file.
enum Restored {
    /// Restored (rewritten or removed).
    Yes,
    /// Nothing to do: it is as it was before the attempts.
    AlreadyAsItWas,
    /// Left alone: its content is none the attempts produced (someone else changed it since).
    ChangedSince,
    /// Left alone, for this reason.
    No(String),
}

/// Restores one file to `before` (its content before the attempts, `None`: it did not exist), refusing whatever
/// could write outside the workspace, block, or destroy what is not the attempts' work.
fn restore_one(
    journal: &Journal,
    ws_canon: &Path,
    rel: &str,
    before: Option<ContentHash>,
    known: Option<&BTreeSet<Option<ContentHash>>>,
    force: bool,
) -> Restored {
    // The file monitor journals names as UTF-8, lossily: such a name is not known exactly, so not touched.
    if rel.contains(char::REPLACEMENT_CHARACTER) {
        return Restored::No("its name is not valid UTF-8, so the journal does not hold it exactly".into());
    }
    // A name that held a secret is journaled redacted: the file it names is not known, so not touched.
    if rel.contains(crate::redact::MARKER) {
        return Restored::No("its name held a secret, which the journal does not keep".into());
    }
    let Some(target) = safe_join(ws_canon, rel) else {
        return Restored::No("the path leaves the workspace".into());
    };
    // What is there now, never following a symbolic link and never opening what is not a regular file.
    let (current, mode) = match std::fs::symlink_metadata(&target) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, None),
        Err(e) => return Restored::No(format!("cannot be examined: {e}")),
        Ok(m) => match kind_of(&m.file_type()) {
            Some(other) => return Restored::No(format!("now {other}")),
            None => match read_regular(&target) {
                Ok((data, mode)) => (Some(ContentHash::of(&data)), Some(mode)),
                Err(e) => return Restored::No(format!("cannot be read: {e}")),
            },
        },
    };
    if current == before {
        return Restored::AlreadyAsItWas;
    }
    // Content none of the attempts produced means someone else changed the file since.
    if !force && !known.is_some_and(|s| s.contains(&current)) {
        return Restored::ChangedSince;
    }
    match before {
        Some(hash) => {
            let data = match journal.get_blob(&hash) {
                Ok(Some(data)) => data,
                Ok(None) => return Restored::No(format!("no pre-image in the journal (blob {hash})")),
                Err(e) => return Restored::No(format!("its pre-image cannot be read: {e}")),
            };
            let Some(parent) = target.parent() else { return Restored::No("no parent directory".into()) };
            if let Err(e) = std::fs::create_dir_all(parent) {
                return Restored::No(format!("its directory cannot be made: {e}"));
            }
            // The directory made must still be inside the workspace (nothing swapped a parent for a link since).
            if !parent.canonicalize().is_ok_and(|c| c.starts_with(ws_canon)) {
                return Restored::No("the path leaves the workspace".into());
            }
            if let Err(e) = replace_file(&target, &data, mode) {
                return Restored::No(format!("cannot be written: {e}"));
            }
        }
        None => {
            if current.is_some() {
                // Unlinking removes this name only: another hard link to the same file keeps its content.
                if let Err(e) = std::fs::remove_file(&target) {
                    return Restored::No(format!("cannot be removed: {e}"));
                }
            }
        }
    }
    Restored::Yes
}

/// What a file type is when it is not a regular file (`None`), for a conflict's reason.
fn kind_of(t: &std::fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    if t.is_file() {
        None
    } else if t.is_symlink() {
        Some("a symbolic link")
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a FIFO")
    } else if t.is_socket() {
        Some("a socket")
    } else if t.is_block_device() || t.is_char_device() {
        Some("a device")
    } else {
        Some("not a regular file")
    }
}

/// Reads a regular file and its permission bits: opened without following a symbolic link and without blocking
/// (a FIFO swapped in since it was examined), and refused unless what was opened is a regular file.
fn read_regular(path: &Path) -> std::io::Result<(Vec<u8>, u32)> {
    use std::io::Read;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let flags = nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK;
    let mut f = std::fs::OpenOptions::new().read(true).custom_flags(flags.bits()).open(path)?;
    let meta = f.metadata()?;
    if let Some(other) = kind_of(&meta.file_type()) {
        return Err(std::io::Error::other(format!("it is {other}")));
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    f.read_to_end(&mut data)?;
    Ok((data, meta.permissions().mode() & 0o7777))
}

/// Puts `data` at `target` as a new file: written to a temporary file in the same directory, synced, then renamed
/// over the name. The inode that was there is never opened or truncated, so a hard link to a file elsewhere does not
/// carry the write out of the workspace, and a crash leaves the old file or the new one, never half of it. The file
/// keeps the permissions of the one it replaces (a new one gets the umask's default, as `std::fs::write` would).
fn replace_file(target: &Path, data: &[u8], mode: Option<u32>) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = target.parent().ok_or_else(|| std::io::Error::other("no parent directory"))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".orch-restore-")
        .permissions(std::fs::Permissions::from_mode(mode.unwrap_or(0o666)))
        .tempfile_in(dir)?;
    if let Some(mode) = mode {
        // The umask applied at creation: the old file's bits exactly.
        tmp.as_file().set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(target).map_err(|e| e.error)?;
    // The rename itself, durable (best effort: not every file system syncs a directory).
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Joins a workspace-relative path, refusing absolute paths, `..`, and parents that are symbolic links leading out.
fn safe_join(ws_canon: &Path, rel: &str) -> Option<PathBuf> {
    let rel_path = Path::new(rel);
    if rel_path.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    let joined = ws_canon.join(rel_path);
    // The deepest existing ancestor must resolve inside the workspace.
    let mut ancestor = joined.parent()?.to_path_buf();
    while !ancestor.exists() {
        ancestor = ancestor.parent()?.to_path_buf();
    }
    let canon = ancestor.canonicalize().ok()?;
    canon.starts_with(ws_canon).then_some(joined)
}

/// The keys of `selected` plus, transitively, everything they depend on that the state knows.
pub fn with_dependencies(state: &State, selected: &BTreeSet<TaskKey>) -> BTreeSet<TaskKey> {
    let mut out = BTreeSet::new();
    let mut stack: Vec<TaskKey> = selected.iter().cloned().collect();
    while let Some(k) = stack.pop() {
        if !out.insert(k.clone()) {
            continue;
        }
        if let Some(v) = state.tasks.get(&k) {
            for d in v.spec.dependency_keys() {
                if state.tasks.contains_key(&d) && !out.contains(&d) {
                    stack.push(d);
                }
            }
        }
    }
    out
}
