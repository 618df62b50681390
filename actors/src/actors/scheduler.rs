//! The Scheduler actor: owns the queue of a run across all projects. It picks the highest-priority ready task
//! (then the oldest) whose project and workspace have a free slot, within the global `max_sessions`; a task whose
//! dependency is failed, escalated, blocked or cancelled is blocked and says why; a dependency cycle blocks its
//! members. It journals every state change before acting on it, starts one AgentSession per attempt, and applies
//! the DecisionEngine's conclusions. The run ends when every selected task is settled.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::agent_session::{AgentSession, SessionSpec, StopSession};
use super::file_monitor::FileMonitor;
use super::report::AttemptReport;
use super::state_journal::{Append, Appended, GetState, StateJournal};
use super::validator::Validate;
use crate::error::EngineError;
use crate::journal::event::{AttemptInterrupted, Event, RunFinished, RunStarted, TaskStateChanged};
use crate::journal::TaskView;
use crate::ops;
use crate::redact::Redactor;
use crate::settings::{OrchestrationSettings, ProjectSettings};
use crate::types::{AttemptRef, Decision, TaskKey, TaskState};

/// How the reason of a task blocked by a dependency begins (not one blocked in a cycle: that one stays blocked).
const DEPENDS_ON: &str = "depends on ";

/// How the reason of a task waiting for an answer to its agent's question begins.
pub const WAITING_FOR_AN_ANSWER: &str = "waiting for an answer";

mod budgets;
mod messages;
mod pauses;
mod queue;

pub use super::pipeline::{record_or_fail, Concluded, SessionEnded};
pub use budgets::{budget_hit, Usage};
pub use messages::{Refresh, Run, RunSummary, Selection, StopRun};
pub use pauses::rate_limit_reset;
pub use queue::ReadyQueue;
use queue::Slots;

struct RunState {
    /// Since when each project with ready tasks has been waiting for a session.
    waiting_since: HashMap<String, std::time::Instant>,
    /// When the pending starvation timer fires.
    wake_at: Option<std::time::Instant>,
    /// The FileMonitor of each task working in a worktree of its own.
    task_monitors: HashMap<TaskKey, Addr<FileMonitor>>,
    /// Providers paused after a rate limit: until when (ms since the epoch).
    paused: HashMap<String, i64>,
    /// Rate limits in a row per provider (reset by an attempt of it that was not rate limited).
    rate_streak: HashMap<String, u32>,
    /// Ready tasks, in start order.
    ready: ReadyQueue,
    /// Who depends on whom, among the selected tasks.
    dependants: HashMap<TaskKey, Vec<TaskKey>>,
    /// Tasks to look at again on the next scheduling pass (their state or their dependencies' changed).
    dirty: Vec<TaskKey>,
    /// Projects whose new tasks join the run (`None`: the run has an explicit task list).
    open_to: Option<BTreeSet<String>>,
    /// What each project's tasks used, over the journal's history.
    usage: HashMap<String, Usage>,
    /// What this run's attempts used.
    run_usage: Usage,
    selected: BTreeSet<TaskKey>,
    views: HashMap<TaskKey, TaskView>,
    /// Tasks with an attempt under way; `None` while its start is being journaled.
    running: HashMap<TaskKey, Option<Addr<AgentSession>>>,
    /// Background work the run waits for before it ends: journal appends, notifications, worktree removals.
    in_flight: usize,
    done: Option<oneshot::Sender<Result<RunSummary, EngineError>>>,
    stopping: bool,
    failed: Option<EngineError>,
}

/// See the module documentation.
pub struct Scheduler {
    orchestration: OrchestrationSettings,
    projects: HashMap<String, Arc<ProjectSettings>>,
    journal: Addr<StateJournal>,
    monitors: HashMap<String, Addr<FileMonitor>>,
    validator: Recipient<Validate>,
    redactor: Arc<Redactor>,
    run: Option<RunState>,
    /// The journal's directory: attempts' process tags are made from it.
    journal_path: std::path::PathBuf,
    /// Who hears of escalations and of the run's end.
    notify: crate::settings::NotifySettings,
    http: reqwest::Client,
    /// One git operation on a repository's shared state at a time — adding or removing a worktree, merging: git
    /// locks its refs and worktree records, and two at once fail.
    merge_locks: HashMap<std::path::PathBuf, Arc<tokio::sync::Mutex<()>>>,
}

impl Scheduler {
    /// A scheduler over these projects; `monitors` has one FileMonitor per project (shared by projects with the same
    /// workspace).
    pub fn new(
        orchestration: OrchestrationSettings,
        projects: Vec<ProjectSettings>,
        journal: Addr<StateJournal>,
        monitors: HashMap<String, Addr<FileMonitor>>,
        validator: Recipient<Validate>,
        redactor: Arc<Redactor>,
        journal_path: std::path::PathBuf,
    ) -> Self {
        Scheduler {
            journal_path,
            notify: crate::settings::NotifySettings::default(),
            http: reqwest::Client::new(),
            merge_locks: HashMap::new(),
            orchestration,
            projects: projects.into_iter().map(|p| (p.name.clone(), Arc::new(p))).collect(),
            journal,
            monitors,
            validator,
            redactor,
            run: None,
        }
    }

    /// Escalations and the run's end are announced to `notify`.
    pub fn with_notify(mut self, notify: crate::settings::NotifySettings) -> Self {
        self.notify = notify;
        self
    }

    /// Journals `events`, updates the run's views from what the journal says, then calls `then`.
    fn append_then(
        &mut self,
        ctx: &mut Context<Self>,
        events: Vec<Event>,
        then: impl FnOnce(&mut Self, &mut Context<Self>, Appended) + 'static,
    ) {
        if let Some(run) = self.run.as_mut() {
            run.in_flight += 1;
        }
        // A task that now needs a human is announced once its state change is on record.
        let escalated: Vec<(TaskKey, bool, String)> = events
            .iter()
            .filter_map(|e| match e {
                Event::TaskStateChanged(c) if c.to == TaskState::Escalated => Some((
                    TaskKey::new(&c.project, &c.task),
                    c.reason.starts_with(WAITING_FOR_AN_ANSWER),
                    c.reason.clone(),
                )),
                _ => None,
            })
            .collect();
        let fut = self.journal.send(Append(events));
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            if let Some(run) = act.run.as_mut() {
                run.in_flight -= 1;
            }
            match res {
                Ok(Ok(appended)) => {
                    if let Some(run) = act.run.as_mut() {
                        for v in &appended.tasks {
                            run.take_view(v.clone());
                        }
                    }
                    for (key, waiting, reason) in escalated {
                        let title = act
                            .run
                            .as_ref()
                            .and_then(|r| r.views.get(&key))
                            .map(|v| v.spec.title.clone())
                            .unwrap_or_default();
                        act.announce(ctx, crate::notify::Notice::task(&key, &title, waiting, &reason));
                    }
                    then(act, ctx, appended);
                }
                Ok(Err(e)) => act.fail(ctx, EngineError::Journal(e)),
                Err(e) => act.fail(ctx, EngineError::from(e)),
            }
        }));
    }

    /// Worktree isolation: an accepted attempt's work is committed on the task's branch, then merged as the project
    /// says; the task completes when that worked, else it is escalated with what git said (the work stays on its
    /// branch). A completed task's worktree is removed (its branch stays).
    fn commit_and_merge(
        &mut self,
        ctx: &mut Context<Self>,
        project: &ProjectSettings,
        report: &AttemptReport,
        reason: String,
    ) {
        let key = report.attempt.key.clone();
        let attempt = report.attempt.attempt;
        let path = crate::git::worktree_path(&self.journal_path, &key);
        let repo = project.workspace.clone();
        let mode = project.merge;
        let title = report.task.as_ref().map(|t| t.title.clone()).unwrap_or_else(|| key.task.clone());
        let message = format!("orch: {title}\n\nTask {key}, attempt {attempt}: {reason}\n");
        let k = key.clone();
        let lock = self.merge_locks.entry(repo.clone()).or_default().clone();
        let work = async move {
            let commit = crate::git::commit_all(&path, &message).await;
            let merged = match &commit {
                Ok(_) => {
                    let _one_at_a_time = lock.lock().await;
                    let merged = crate::git::merge(&repo, &path, &k, mode).await;
                    // Done with: the worktree goes (its branch stays); kept when a human has to look.
                    if merged.is_ok() {
                        if let Err(e) = crate::git::remove_worktree(&repo, &path).await {
                            tracing::warn!("{e}");
                        }
                    }
                    merged
                }
                Err(e) => Err(format!("committing its work failed: {e}")),
            };
            (commit.ok().flatten(), merged)
        };
        ctx.spawn(work.into_actor(self).map(move |(commit, merged), act, ctx| {
            let ok = merged.is_ok();
            let (to, why, detail) = match merged {
                Ok(d) => (TaskState::Completed, format!("{reason}; {d}"), d),
                Err(e) => (TaskState::Escalated, format!("accepted, but {e}"), e),
            };
            let events = vec![
                Event::Committed(crate::journal::event::Committed {
                    project: key.project.clone(),
                    task: key.task.clone(),
                    attempt,
                    branch: crate::git::branch(&key),
                    commit,
                    merge: detail,
                    merged: ok,
                }),
                Self::change(&key, TaskState::Running, to, why),
            ];
            if let Some(run) = act.run.as_mut() {
                run.running.remove(&key);
                if ok {
                    run.task_monitors.remove(&key);
                }
            }
            act.append_then(ctx, events, |act, ctx, _| act.schedule(ctx));
        }));
    }

    /// Pauses the provider of a rate-limited attempt until the reset time its agent gave, else for a backoff that
    /// doubles with each rate limit in a row; a timer resumes it. Returns the event saying so.
    fn pause_provider(&mut self, ctx: &mut Context<Self>, report: &AttemptReport) -> Event {
        let provider = report.project.agent.kind.as_str().to_string();
        let now = crate::journal::now_us() / 1000;
        let base = self.orchestration.rate_limit_pause.as_millis() as i64;
        let streak = self.run.as_ref().and_then(|r| r.rate_streak.get(&provider)).copied().unwrap_or(0);
        let text = report.outcome.result.as_deref().unwrap_or("");
        let (until, why) = match rate_limit_reset(text, now) {
            Some(t) => (t, "until the reset time the agent gave".to_string()),
            None => {
                let cap = (15 * 60 * 1000).max(base);
                let wait = base.saturating_mul(1i64 << streak.min(20)).min(cap);
                (now + wait, format!("for {} s (rate limit {} in a row)", wait / 1000, streak + 1))
            }
        };
        if let Some(run) = self.run.as_mut() {
            run.rate_streak.insert(provider.clone(), streak + 1);
            let entry = run.paused.entry(provider.clone()).or_insert(until);
            *entry = (*entry).max(until);
        }
        let delay = std::time::Duration::from_millis((until - now).max(0) as u64);
        let p = provider.clone();
        ctx.run_later(delay, move |act, ctx| act.resume_provider(ctx, &p));
        Event::ProviderPaused(crate::journal::event::ProviderPaused {
            provider,
            until_ms: until,
            reason: format!("{}: rate limited {why}", report.attempt),
        })
    }

    fn resume_provider(&mut self, ctx: &mut Context<Self>, provider: &str) {
        let Some(run) = self.run.as_mut() else { return };
        let now = crate::journal::now_us() / 1000;
        match run.paused.get(provider) {
            Some(until) if *until <= now + 5 => {}
            _ => return, // extended since: a later timer resumes it
        }
        run.paused.remove(provider);
        let ev = Event::ProviderResumed(crate::journal::event::ProviderResumed { provider: provider.to_string() });
        self.append_then(ctx, vec![ev], |act, ctx, _| act.schedule(ctx));
    }

    /// Delivers a notification in the background; the run does not end before it is delivered and journaled.
    fn announce(&mut self, ctx: &mut Context<Self>, notice: crate::notify::Notice) {
        if !self.notify.enabled() {
            return;
        }
        let Some(run) = self.run.as_mut() else { return };
        run.in_flight += 1;
        let (settings, http, journal) = (self.notify.clone(), self.http.clone(), self.journal.clone().recipient());
        ctx.spawn(async move { deliver_and_record(&settings, &http, &journal, &notice).await }.into_actor(self).map(
            |_, act, ctx| {
                if let Some(run) = act.run.as_mut() {
                    run.in_flight -= 1;
                }
                act.maybe_finish(ctx);
            },
        ));
    }

    /// The journal failed: nothing can be recorded, so stop everything and report it.
    fn fail(&mut self, ctx: &mut Context<Self>, e: EngineError) {
        tracing::error!("run failed: {e}");
        if let Some(run) = self.run.as_mut() {
            if run.failed.is_none() {
                run.failed = Some(e);
            }
            run.stopping = true;
            for s in run.running.values().flatten() {
                s.do_send(StopSession { reason: "the run failed: the journal cannot record it".into() });
            }
        }
        self.maybe_finish(ctx);
    }

    fn change(key: &TaskKey, from: TaskState, to: TaskState, reason: impl Into<String>) -> Event {
        Event::TaskStateChanged(TaskStateChanged {
            project: key.project.clone(),
            task: key.task.clone(),
            from,
            to,
            reason: reason.into(),
        })
    }

    /// Why `key` cannot run because of a dependency, or `None`.
    fn blocked_reason(run: &RunState, key: &TaskKey) -> Option<String> {
        let view = run.views.get(key)?;
        for d in view.spec.dependency_keys() {
            match run.views.get(&d) {
                None => return Some(format!("{DEPENDS_ON}{d}, which does not exist")),
                Some(dv) if dv.state.blocks_dependants() => {
                    return Some(format!("{DEPENDS_ON}{d}, which is {}", dv.state));
                }
                Some(_) => {}
            }
        }
        None
    }

    fn deps_completed(run: &RunState, key: &TaskKey) -> bool {
        run.views.get(key).is_some_and(|v| {
            v.spec.dependency_keys().iter().all(|d| run.views.get(d).is_some_and(|dv| dv.state == TaskState::Completed))
        })
    }

    /// One scheduling pass: block what must be blocked, start what can start, finish when all is settled.
    fn schedule(&mut self, ctx: &mut Context<Self>) {
        let Some(run) = self.run.as_mut() else { return };
        if run.stopping {
            return self.maybe_finish(ctx);
        }
        let mut events = Vec::new();
        // Tasks whose state or whose dependencies' states changed: blocked now, ready now, or neither. Blocking
        // propagates along chains; a dependency that completed may make its dependants ready.
        let mut work: Vec<(TaskKey, bool)> = std::mem::take(&mut run.dirty).into_iter().map(|k| (k, true)).collect();
        while let Some((k, changed)) = work.pop() {
            if !run.selected.contains(&k) {
                continue;
            }
            let Some(state) = run.views.get(&k).map(|v| v.state) else { continue };
            if state == TaskState::Pending {
                if let Some(reason) = Self::blocked_reason(run, &k) {
                    events.push(Self::change(&k, TaskState::Pending, TaskState::Blocked, reason.clone()));
                    if let Some(v) = run.views.get_mut(&k) {
                        v.state = TaskState::Blocked;
                        v.reason = Some(reason);
                    }
                    run.ready.remove(&k);
                    work.extend(run.dependants.get(&k).into_iter().flatten().map(|d| (d.clone(), true)));
                    continue;
                }
                match run.views.get(&k) {
                    Some(v) if !run.running.contains_key(&k) && Self::deps_completed(run, &k) => {
                        let (priority, seq) = (v.spec.priority, v.added_seq);
                        run.ready.insert(k.clone(), priority, seq);
                    }
                    _ => {
                        run.ready.remove(&k);
                    }
                }
                // Pending again (answered, approved…): dependants it blocked may go on.
                if changed {
                    work.extend(run.dependants.get(&k).into_iter().flatten().map(|d| (d.clone(), false)));
                }
            } else if state == TaskState::Blocked
                && run.views.get(&k).and_then(|v| v.reason.as_deref()).is_some_and(|r| r.starts_with(DEPENDS_ON))
                && Self::blocked_reason(run, &k).is_none()
            {
                // What blocked it no longer does (a human answered or approved the dependency during the run).
                events.push(Self::change(
                    &k,
                    TaskState::Blocked,
                    TaskState::Pending,
                    "its dependencies no longer block it",
                ));
                if let Some(v) = run.views.get_mut(&k) {
                    v.state = TaskState::Pending;
                    v.reason = None;
                }
                work.push((k, true));
            } else {
                run.ready.remove(&k);
                if changed && (state == TaskState::Completed || state.blocks_dependants()) {
                    work.extend(run.dependants.get(&k).into_iter().flatten().map(|d| (d.clone(), false)));
                }
            }
        }
        // Start the best ready tasks — highest priority first, then oldest — whose project has a free slot and whose
        // workspace is free (one session per workspace: the FileMonitor attributes changes to the one attempt).
        let projects = &self.projects;
        let mut slots = Slots::default();
        for k in run.running.keys() {
            if let Some(p) = projects.get(&k.project) {
                slots.take(p);
            }
        }
        let free = |slots: &Slots, name: &str| {
            projects.get(name).is_some_and(|p| slots.free(p, &self.orchestration.provider_max_sessions, &run.paused))
        };
        let mut starting: Vec<TaskKey> = Vec::new();
        let mut escalated: Vec<TaskKey> = Vec::new();
        // Projects that have waited past max_wait go first, the longest-waiting first.
        let now = std::time::Instant::now();
        let mut starved: Vec<(std::time::Instant, String)> = run
            .waiting_since
            .iter()
            .filter(|(_, since)| now.duration_since(**since) >= self.orchestration.max_wait)
            .map(|(p, since)| (*since, p.clone()))
            .collect();
        starved.sort();
        let mut starved = starved.into_iter().map(|(_, p)| p).collect::<std::collections::VecDeque<_>>();
        while run.running.len() + starting.len() < self.orchestration.max_sessions {
            let mut picked = None;
            while let Some(p) = starved.pop_front() {
                if free(&slots, &p) {
                    picked = run.ready.pick_in(&p);
                    if picked.is_some() {
                        break;
                    }
                }
            }
            let picked = match picked {
                Some(k) => Some(k),
                None => run.ready.pick(|name| free(&slots, name)),
            };
            let Some(key) = picked else {
                break;
            };
            // A project or run budget reached: no new attempt; the task goes to a human, saying which budget.
            let in_project = run.usage.get(&key.project).copied().unwrap_or_default();
            if let Some((name, detail)) =
                budget_hit(&self.orchestration.breakpoints, &key.project, in_project, run.run_usage)
            {
                let attempt = run.views.get(&key).and_then(|v| v.attempts.last()).map(|a| a.number).unwrap_or(0);
                events.push(Event::BreakpointHit(crate::journal::event::BreakpointHit {
                    project: key.project.clone(),
                    task: key.task.clone(),
                    attempt,
                    breakpoint: name.clone(),
                    detail: detail.clone(),
                }));
                events.push(Self::change(
                    &key,
                    TaskState::Pending,
                    TaskState::Escalated,
                    format!("breakpoint {name}: {detail}"),
                ));
                escalated.push(key);
                continue;
            }
            let Some(project) = projects.get(&key.project) else { continue };
            slots.take(project);
            events.push(Self::change(&key, TaskState::Pending, TaskState::Running, "an attempt is starting"));
            starting.push(key);
        }
        for key in escalated {
            if let Some(v) = run.views.get_mut(&key) {
                v.state = TaskState::Escalated;
            }
        }
        // Who waits now, and since when: a project with ready tasks and no session. One that got a session starts
        // waiting afresh when it has none again.
        let waiting: Vec<String> = run
            .ready
            .projects()
            .filter(|p| slots.per_project.get(p).copied().unwrap_or(0) == 0)
            .map(str::to_string)
            .collect();
        run.waiting_since.retain(|p, _| waiting.contains(p));
        for p in waiting {
            run.waiting_since.entry(p).or_insert(now);
        }
        // A pass when the oldest wait runs out, in case nothing else happens by then (one timer at a time).
        if let Some(oldest) = run.waiting_since.values().min().copied() {
            let due = oldest + self.orchestration.max_wait;
            if run.wake_at.is_none_or(|w| w <= now || due < w) {
                run.wake_at = Some(due);
                ctx.run_later(due.saturating_duration_since(now) + std::time::Duration::from_millis(1), |act, ctx| {
                    if let Some(run) = act.run.as_mut() {
                        run.wake_at = None;
                    }
                    act.schedule(ctx);
                });
            }
        }
        for key in &starting {
            run.running.insert(key.clone(), None);
            if let Some(v) = run.views.get_mut(key) {
                v.state = TaskState::Running;
            }
        }
        if events.is_empty() {
            return self.maybe_finish(ctx);
        }
        self.append_then(ctx, events, move |act, ctx, _| {
            for key in starting {
                act.start_session(ctx, key);
            }
            act.maybe_finish(ctx);
        });
    }

    fn start_session(&mut self, ctx: &mut Context<Self>, key: TaskKey) {
        let Some(run) = self.run.as_mut() else { return };
        if run.stopping {
            // The stop came while the start was journaled: it never ran.
            run.running.remove(&key);
            let ev = Self::change(&key, TaskState::Running, TaskState::Pending, "the run stopped before it started");
            return self.append_then(ctx, vec![ev], |act, ctx, _| act.maybe_finish(ctx));
        }
        let Some(project) = self.projects.get(&key.project).cloned() else { return };
        if project.isolation == crate::settings::Isolation::Worktree {
            // The task's own worktree, made (or found) before its agent starts.
            let path = crate::git::worktree_path(&self.journal_path, &key);
            let (repo, k) = (project.workspace.clone(), key.clone());
            let lock = self.merge_locks.entry(repo.clone()).or_default().clone();
            let fut = async move {
                let _one_at_a_time = lock.lock().await;
                crate::git::ensure_worktree(&repo, &path, &k).await.map(|_| path)
            };
            ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| match res {
                Ok(path) => act.launch(ctx, key, Some(path)),
                Err(e) => {
                    if let Some(run) = act.run.as_mut() {
                        run.running.remove(&key);
                    }
                    let ev = Self::change(
                        &key,
                        TaskState::Running,
                        TaskState::Escalated,
                        format!("its worktree could not be prepared: {e}"),
                    );
                    act.append_then(ctx, vec![ev], |act, ctx, _| act.schedule(ctx));
                }
            }));
            return;
        }
        self.launch(ctx, key, None);
    }

    /// Starts the attempt's session, in `worktree` when the task has one.
    fn launch(&mut self, ctx: &mut Context<Self>, key: TaskKey, worktree: Option<std::path::PathBuf>) {
        let Some(run) = self.run.as_mut() else { return };
        let (Some(mut project), Some(view)) = (self.projects.get(&key.project).cloned(), run.views.get(&key).cloned())
        else {
            return;
        };
        let monitor = match worktree {
            Some(path) => {
                project = Arc::new(ProjectSettings { workspace: path.clone(), ..(*project).clone() });
                // The worktree lies inside the journal directory: nothing in it is to be skipped.
                let (journal, skip) = (self.journal.clone(), Vec::new());
                run.task_monitors
                    .entry(key.clone())
                    .or_insert_with(|| {
                        FileMonitor::new(path, skip, journal.clone().recipient(), journal.recipient()).start()
                    })
                    .clone()
            }
            None => match self.monitors.get(&key.project).cloned() {
                Some(m) => m,
                None => return,
            },
        };
        let attempt = view.attempts.iter().map(|a| a.number).max().unwrap_or(0) + 1;
        let spec = SessionSpec {
            attempt: AttemptRef { key: key.clone(), attempt },
            attempts_in_round: view.attempts_since_reset + 1,
            task: view,
            project,
            token_budget: self.orchestration.prompt_token_budget,
            redactor: self.redactor.clone(),
            template: Arc::from(self.orchestration.prompts.attempt.as_str()),
            process_tag: crate::process::attempt_tag(&self.journal_path, &AttemptRef { key: key.clone(), attempt }),
        };
        let session = AgentSession::new(
            spec,
            self.journal.clone().recipient(),
            monitor,
            self.validator.clone(),
            ctx.address().recipient(),
        )
        .start();
        run.running.insert(key, Some(session));
    }

    /// Ends the run when nothing is running or being journaled and no selected task can make progress.
    fn maybe_finish(&mut self, ctx: &mut Context<Self>) {
        let Some(run) = self.run.as_mut() else { return };
        if !run.running.is_empty() || run.in_flight > 0 {
            return;
        }
        // Tasks wait for a paused provider: its resume schedules them.
        if !run.stopping && run.failed.is_none() && !run.paused.is_empty() && !run.ready.is_empty() {
            return;
        }
        if !run.stopping && run.failed.is_none() {
            // Pending tasks that nothing will ever make ready wait on each other: a cycle.
            let stuck: Vec<TaskKey> = run
                .selected
                .iter()
                .filter(|k| run.views.get(*k).is_some_and(|v| v.state == TaskState::Pending))
                .cloned()
                .collect();
            if !stuck.is_empty() {
                let names = stuck.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(", ");
                let events = stuck
                    .iter()
                    .map(|k| {
                        Self::change(
                            k,
                            TaskState::Pending,
                            TaskState::Blocked,
                            format!("dependency cycle among {names}"),
                        )
                    })
                    .collect();
                return self.append_then(ctx, events, |act, ctx, _| act.maybe_finish(ctx));
            }
        }
        let Some(done) = run.done.take() else { return };
        let summary = RunSummary {
            tasks: run
                .selected
                .iter()
                .filter_map(|k| run.views.get(k).map(|v| (k.clone(), v.state, v.reason.clone())))
                .collect(),
            interrupted: run.stopping,
        };
        let failed = run.failed.take();
        let outcome = if failed.is_some() {
            "failed"
        } else if run.stopping {
            "interrupted"
        } else {
            "finished"
        };
        let ev = Event::RunFinished(RunFinished {
            outcome: outcome.into(),
            completed: summary.count(TaskState::Completed) as u32,
            needs_human: (summary.count(TaskState::Escalated)
                + summary.count(TaskState::Failed)
                + summary.count(TaskState::Blocked)) as u32,
            cancelled: summary.count(TaskState::Cancelled) as u32,
        });
        let journal = self.journal.clone();
        let notice = self.notify.enabled().then(|| crate::notify::Notice {
            about: "run_finished",
            task: None,
            fields: serde_json::json!({
                "outcome": outcome,
                "completed": summary.count(TaskState::Completed),
                "needs_human": summary.count(TaskState::Escalated) + summary.count(TaskState::Failed) + summary.count(TaskState::Blocked),
                "cancelled": summary.count(TaskState::Cancelled),
                "tasks": summary.tasks.iter().map(|(k, s, r)| serde_json::json!({"task": k.to_string(), "state": s.as_str(), "reason": r})).collect::<Vec<_>>(),
            }),
        });
        let (settings, http) = (self.notify.clone(), self.http.clone());
        self.run = None;
        ctx.spawn(
            async move {
                let res = journal.send(Append(vec![ev])).await;
                if let Some(notice) = notice {
                    deliver_and_record(&settings, &http, &journal.clone().recipient(), &notice).await;
                }
                let _ = done.send(match (failed, res) {
                    (Some(e), _) => Err(e),
                    (None, Ok(Ok(_))) => Ok(summary),
                    (None, Ok(Err(e))) => Err(e.into()),
                    (None, Err(e)) => Err(e.into()),
                });
            }
            .into_actor(self),
        );
    }
}

impl Actor for Scheduler {
    type Context = Context<Self>;
}

impl Handler<Run> for Scheduler {
    type Result = ResponseActFuture<Self, Result<RunSummary, EngineError>>;

    fn handle(&mut self, msg: Run, _ctx: &mut Self::Context) -> Self::Result {
        if self.run.is_some() {
            return Box::pin(actix::fut::ready(Err(EngineError::InvalidRequest("a run is already under way".into()))));
        }
        let state_fut = self.journal.send(GetState);
        Box::pin(state_fut.into_actor(self).then(move |state, act, ctx| {
            let (tx, rx) = oneshot::channel();
            let started = (|| -> Result<(), EngineError> {
                let state = state?;
                let sel = msg.0;
                for p in &sel.projects {
                    if !act.projects.contains_key(p) {
                        return Err(EngineError::UnknownProject(format!("`{p}` is not in the configuration")));
                    }
                }
                let mut keys = BTreeSet::new();
                for t in &sel.tasks {
                    let k = state.resolve(t).map_err(EngineError::UnknownTask)?;
                    if !act.projects.contains_key(&k.project) {
                        return Err(EngineError::UnknownProject(format!(
                            "`{}` (of task {k}) is not in the configuration",
                            k.project
                        )));
                    }
                    keys.insert(k);
                }
                if sel.tasks.is_empty() {
                    keys = state
                        .tasks
                        .keys()
                        .filter(|k| act.projects.contains_key(&k.project))
                        .filter(|k| sel.projects.is_empty() || sel.projects.contains(&k.project))
                        .cloned()
                        .collect();
                }
                let selected: BTreeSet<TaskKey> = ops::with_dependencies(&state, &keys)
                    .into_iter()
                    .filter(|k| act.projects.contains_key(&k.project))
                    .collect();
                // An attempt left open by a supervisor that died: whatever it started may still be running (agents
                // outlive a kill -9 of their parent). It is killed before the task can be started again, so that no
                // task ever runs twice at once. (A read of /proc, once per recovered attempt, on the actor's thread.)
                for (key, view) in state.tasks.iter().filter(|(_, v)| v.state == TaskState::Running) {
                    if let Some(a) = view.attempts.last().filter(|a| a.ended_ms.is_none()) {
                        let tag = crate::process::attempt_tag(
                            &act.journal_path,
                            &AttemptRef { key: key.clone(), attempt: a.number },
                        );
                        let killed = crate::process::kill_attempt(&tag);
                        if killed > 0 {
                            tracing::warn!(
                                "{key}: killed {killed} process(es) left running by interrupted attempt {}",
                                a.number
                            );
                        }
                    }
                }
                let mut events = ops::recovery_events(&state);
                let mut views: HashMap<TaskKey, TaskView> =
                    state.tasks.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                for e in &events {
                    if let Event::TaskStateChanged(c) = e {
                        if let Some(v) = views.get_mut(&TaskKey::new(&c.project, &c.task)) {
                            v.state = c.to;
                        }
                    }
                }
                let mut usage: HashMap<String, Usage> = HashMap::new();
                for v in views.values() {
                    usage.entry(v.spec.project.clone()).or_default().shift(Usage::default(), Usage::of(v));
                }
                let open_to = sel.tasks.is_empty().then(|| {
                    act.projects
                        .keys()
                        .filter(|p| sel.projects.is_empty() || sel.projects.contains(*p))
                        .cloned()
                        .collect::<BTreeSet<String>>()
                });
                let mut dependants: HashMap<TaskKey, Vec<TaskKey>> = HashMap::new();
                for k in &selected {
                    if let Some(v) = views.get(k) {
                        for d in v.spec.dependency_keys() {
                            dependants.entry(d).or_default().push(k.clone());
                        }
                    }
                }
                let dirty: Vec<TaskKey> = selected.iter().cloned().collect();
                let mut run = RunState {
                    waiting_since: HashMap::new(),
                    wake_at: None,
                    task_monitors: HashMap::new(),
                    paused: HashMap::new(),
                    rate_streak: HashMap::new(),
                    ready: ReadyQueue::default(),
                    dependants,
                    dirty,
                    open_to,
                    usage,
                    run_usage: Usage::default(),
                    selected,
                    views,
                    running: HashMap::new(),
                    in_flight: 0,
                    done: Some(tx),
                    stopping: false,
                    failed: None,
                };
                // Blocked tasks whose dependencies no longer block them get another chance.
                let unblock: Vec<TaskKey> = run
                    .selected
                    .iter()
                    .filter(|k| run.views.get(*k).is_some_and(|v| v.state == TaskState::Blocked))
                    .filter(|k| Self::blocked_reason(&run, k).is_none())
                    .cloned()
                    .collect();
                for k in unblock {
                    events.push(Self::change(
                        &k,
                        TaskState::Blocked,
                        TaskState::Pending,
                        "its dependencies no longer block it",
                    ));
                    if let Some(v) = run.views.get_mut(&k) {
                        v.state = TaskState::Pending;
                    }
                }
                events.push(Event::RunStarted(RunStarted {
                    pid: std::process::id(),
                    selected: run.selected.iter().map(|k| k.to_string()).collect(),
                }));
                // Worktrees of tasks that are done with — cancelled, failed, or completed by a human — are removed
                // (their branches stay); an escalated task keeps its worktree for a human to look at.
                let mut leftovers: Vec<(std::path::PathBuf, std::path::PathBuf)> = Vec::new();
                for (key, v) in &run.views {
                    let Some(p) = act.projects.get(&key.project) else { continue };
                    if p.isolation != crate::settings::Isolation::Worktree
                        || !matches!(v.state, TaskState::Completed | TaskState::Cancelled | TaskState::Failed)
                    {
                        continue;
                    }
                    let path = crate::git::worktree_path(&act.journal_path, key);
                    if path.exists() {
                        leftovers.push((p.workspace.clone(), path));
                    }
                }
                for (repo, path) in leftovers {
                    let lock = act.merge_locks.entry(repo.clone()).or_default().clone();
                    run.in_flight += 1;
                    ctx.spawn(
                        async move {
                            let _one_at_a_time = lock.lock().await;
                            if let Err(e) = crate::git::remove_worktree(&repo, &path).await {
                                tracing::warn!("{e}");
                            }
                        }
                        .into_actor(act)
                        .map(|_, act, ctx| {
                            if let Some(run) = act.run.as_mut() {
                                run.in_flight -= 1;
                            }
                            act.maybe_finish(ctx);
                        }),
                    );
                }
                act.run = Some(run);
                act.append_then(ctx, events, |act, ctx, _| act.schedule(ctx));
                Ok(())
            })();
            async move {
                started?;
                rx.await.map_err(|_| EngineError::Stopped("the scheduler stopped".into()))?
            }
            .into_actor(act)
        }))
    }
}

impl RunState {
    /// Takes in a task's view as the journal now has it: its usage counts toward its project's and the run's, and
    /// the next scheduling pass looks at it again.
    fn take_view(&mut self, v: TaskView) {
        let key = v.spec.key();
        let (before, after) = (self.views.get(&key).map(Usage::of).unwrap_or_default(), Usage::of(&v));
        self.usage.entry(key.project.clone()).or_default().shift(before, after);
        self.run_usage.shift(before, after);
        self.dirty.push(key.clone());
        self.views.insert(key, v);
    }
}

impl Handler<Refresh> for Scheduler {
    type Result = ();

    fn handle(&mut self, msg: Refresh, ctx: &mut Self::Context) {
        let Some(run) = self.run.as_mut() else { return };
        for v in msg.0 {
            let key = v.spec.key();
            if !run.selected.contains(&key) && run.open_to.as_ref().is_some_and(|p| p.contains(&key.project)) {
                run.selected.insert(key.clone());
                for d in v.spec.dependency_keys() {
                    run.dependants.entry(d).or_default().push(key.clone());
                }
            }
            if v.state == TaskState::Cancelled {
                if let Some(Some(session)) = run.running.get(&key) {
                    session.do_send(StopSession { reason: "cancelled by a human".into() });
                }
            }
            run.take_view(v);
        }
        self.schedule(ctx);
    }
}

impl Handler<StopRun> for Scheduler {
    type Result = ();

    fn handle(&mut self, _msg: StopRun, ctx: &mut Self::Context) {
        if let Some(run) = self.run.as_mut() {
            run.stopping = true;
            for s in run.running.values().flatten() {
                s.do_send(StopSession { reason: "the run is shutting down".into() });
            }
        }
        self.maybe_finish(ctx);
    }
}

impl Handler<SessionEnded> for Scheduler {
    type Result = ();

    fn handle(&mut self, msg: SessionEnded, ctx: &mut Self::Context) {
        let key = msg.attempt.key.clone();
        let Some(run) = self.run.as_mut() else { return };
        let mut events = Vec::new();
        let cancelled = run.views.get(&key).is_some_and(|v| v.state == TaskState::Cancelled);
        match (&msg.error, msg.interrupted) {
            // Cancelled by a human while it ran: it stays cancelled.
            (_, true) if cancelled => {
                if msg.error.is_some() {
                    events.push(Event::AttemptInterrupted(AttemptInterrupted {
                        project: key.project.clone(),
                        task: key.task.clone(),
                        attempt: msg.attempt.attempt,
                        reason: "stopped: the task was cancelled by a human".into(),
                    }));
                }
            }
            (_, true) => {
                if msg.error.is_some() {
                    events.push(Event::AttemptInterrupted(AttemptInterrupted {
                        project: key.project.clone(),
                        task: key.task.clone(),
                        attempt: msg.attempt.attempt,
                        reason: "stopped: the run is shutting down".into(),
                    }));
                }
                events.push(Self::change(
                    &key,
                    TaskState::Running,
                    TaskState::Pending,
                    "interrupted; it will be tried again",
                ));
            }
            (Some(e), false) => {
                events.push(Event::AttemptInterrupted(AttemptInterrupted {
                    project: key.project.clone(),
                    task: key.task.clone(),
                    attempt: msg.attempt.attempt,
                    reason: format!("internal error: {e}"),
                }));
                events.push(Self::change(
                    &key,
                    TaskState::Running,
                    TaskState::Escalated,
                    format!("orch could not supervise attempt {}: {e}", msg.attempt.attempt),
                ));
            }
            (None, false) => {}
        }
        run.running.remove(&key);
        if events.is_empty() {
            return self.schedule(ctx);
        }
        self.append_then(ctx, events, |act, ctx, _| act.schedule(ctx));
    }
}

impl Handler<Concluded> for Scheduler {
    type Result = ();

    fn handle(&mut self, msg: Concluded, ctx: &mut Self::Context) {
        let key = msg.report.attempt.key.clone();
        let Some(run) = self.run.as_mut() else { return };
        if run.views.get(&key).is_some_and(|v| v.state == TaskState::Cancelled) {
            // A human cancelled it while its attempt was judged: the decision is on record, the task stays cancelled.
            run.running.remove(&key);
            return self.schedule(ctx);
        }
        let c = msg.conclusion;
        let (to, reason) = match c.decision {
            Decision::Proceed => (TaskState::Completed, c.reason),
            Decision::Retry => (TaskState::Pending, format!("retry: {}", c.reason)),
            Decision::Clarify if c.answered => (TaskState::Pending, c.reason),
            Decision::Clarify => (TaskState::Escalated, format!("{WAITING_FOR_AN_ANSWER}: {}", c.reason)),
            Decision::Escalate => (TaskState::Escalated, c.reason),
        };
        let rate_limited =
            c.decision == Decision::Retry && msg.report.findings.iter().any(|f| f.code == "rate_limited");
        let rollback = c.decision == Decision::Retry
            && !rate_limited
            && self.projects.get(&key.project).is_some_and(|p| p.on_retry == crate::settings::OnRetry::Rollback);
        if !rate_limited {
            run.rate_streak.remove(msg.report.project.agent.kind.as_str());
        }
        let configured = self.projects.get(&key.project).cloned();
        if let Some(project) = configured
            .filter(|p| c.decision == Decision::Proceed && p.isolation == crate::settings::Isolation::Worktree)
        {
            return self.commit_and_merge(ctx, &project, &msg.report, reason);
        }
        if !rollback {
            let mut events = vec![Self::change(&key, TaskState::Running, to, reason)];
            run.running.remove(&key);
            if rate_limited {
                events.push(self.pause_provider(ctx, &msg.report));
            }
            return self.append_then(ctx, events, |act, ctx, _| act.schedule(ctx));
        }
        // on_retry = "rollback": the retry starts from the workspace as it was before this attempt. The task stays
        // running (nothing else may start on it) until its files are restored.
        let attempt = msg.report.attempt.clone();
        let fut = self.journal.send(super::state_journal::RollbackAttempt(attempt.clone()));
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            let n = attempt.attempt;
            let (to, reason) = match res {
                Ok(Ok(r)) if r.conflicts.is_empty() => {
                    (to, format!("{reason}; attempt {n}'s changes rolled back ({} file(s))", r.restored.len()))
                }
                Ok(Ok(r)) => (
                    TaskState::Escalated,
                    format!(
                        "{reason}; but attempt {n} cannot be rolled back: changed since by someone else: {}",
                        r.conflicts.join(", ")
                    ),
                ),
                Ok(Err(e)) => (TaskState::Escalated, format!("{reason}; but rolling back attempt {n} failed: {e}")),
                Err(e) => (TaskState::Escalated, format!("{reason}; but rolling back attempt {n} failed: {e}")),
            };
            let ev = Self::change(&attempt.key, TaskState::Running, to, reason);
            if let Some(run) = act.run.as_mut() {
                run.running.remove(&attempt.key);
            }
            act.append_then(ctx, vec![ev], |act, ctx, _| act.schedule(ctx));
        }));
    }
}

/// Delivers `notice` and journals how each delivery went; a failure to journal that is logged, never fatal.
async fn deliver_and_record(
    settings: &crate::settings::NotifySettings,
    http: &reqwest::Client,
    journal: &Recipient<Append>,
    notice: &crate::notify::Notice,
) {
    let events = crate::notify::deliver(settings, http, notice).await;
    match journal.send(Append(events)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::error!("a notification could not be journaled: {e}"),
        Err(e) => tracing::error!("a notification could not be journaled: {e}"),
    }
}
