//! The Scheduler actor: owns the queue of a run across all projects. It picks the highest-priority ready task
//! (then the oldest) whose project and workspace have a free slot, within the global `max_sessions`; a task whose
//! dependency is failed, escalated, blocked or cancelled is blocked and says why; a dependency cycle blocks its
//! members. It journals every state change before acting on it, starts one AgentSession per attempt, and applies
//! the DecisionEngine's conclusions. The run ends when every selected task is settled.
//!
//! This file is the actor and its handlers: it talks to the world (the journal, sessions, git, timers, processes).
//! What to do is decided by plain code in `scheduler/`: the run's [`plan`](plan::plan), the dependency
//! [`graph`], the run's state and its passes ([`run`]), the [`queue`] and its slots, [`budgets`], provider
//! [`pauses`], and [`worktrees`].

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::agent_session::{AgentSession, SessionSpec, StopSession};
use super::file_monitor::FileMonitor;
use super::report::AttemptReport;
use super::state_journal::{Append, Appended, GetState, StateJournal};
use super::validator::Validate;
use crate::error::EngineError;
use crate::journal::event::{
    AttemptInterrupted, Committed, Event, Intent, IntentRecorded, ProviderPaused, ProviderResumed, RunFinished,
};
use crate::redact::Redactor;
use crate::settings::{Isolation, OnRetry, OrchestrationSettings, ProjectSettings};
use crate::types::{AttemptRef, Decision, TaskKey, TaskState};

/// How the reason of a task waiting for an answer to its agent's question begins.
pub const WAITING_FOR_AN_ANSWER: &str = "waiting for an answer";

mod budgets;
mod graph;
mod messages;
mod pauses;
mod plan;
mod queue;
mod run;
pub(crate) mod worktrees;

pub use super::pipeline::{record_or_fail, Concluded, SessionEnded};
pub use budgets::{budget_hit, BudgetHit, Usage};
use graph::change;
pub use messages::{Refresh, Run, RunSummary, Selection, StopRun, TaskOutcome};
pub use pauses::{pause_until, rate_limit_reset};
pub use queue::ReadyQueue;
use run::{Idle, RunState};
use worktrees::{Accepted, Worktrees};

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
    worktrees: Worktrees,
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
            worktrees: Worktrees::new(journal_path.clone()),
            journal_path,
            notify: crate::settings::NotifySettings::default(),
            http: reqwest::Client::new(),
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

    /// Runs `work` in the background, then `then` with its result. The run does not end while it is under way: the
    /// one place that counts work in flight.
    fn background<F>(
        &mut self,
        ctx: &mut Context<Self>,
        work: F,
        then: impl FnOnce(&mut Self, &mut Context<Self>, F::Output) + 'static,
    ) where
        F: Future + 'static,
    {
        if let Some(run) = self.run.as_mut() {
            run.in_flight += 1;
        }
        ctx.spawn(work.into_actor(self).map(move |out, act, ctx| {
            if let Some(run) = act.run.as_mut() {
                run.in_flight -= 1;
            }
            then(act, ctx, out);
        }));
    }

    /// Journals `events`, takes in the task views the journal answers with, then calls `then`.
    fn append_then(
        &mut self,
        ctx: &mut Context<Self>,
        events: Vec<Event>,
        then: impl FnOnce(&mut Self, &mut Context<Self>, Appended) + 'static,
    ) {
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
        self.background(ctx, fut, move |act, ctx, res| match res {
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
        });
    }

    /// Journals `events`, then runs a scheduling pass.
    fn append_and_schedule(&mut self, ctx: &mut Context<Self>, events: Vec<Event>) {
        self.append_then(ctx, events, |act, ctx, _| act.schedule(ctx));
    }

    /// The task's attempt is over for this run's bookkeeping: its slot is free again.
    fn release(&mut self, key: &TaskKey) {
        if let Some(run) = self.run.as_mut() {
            run.running.remove(key);
        }
    }

    /// Worktree isolation: an accepted attempt's work is committed on the task's branch, then merged as the project
    /// says; the task completes when that worked, else it is escalated with what git said (the work stays on its
    /// branch).
    fn commit_and_merge(
        &mut self,
        ctx: &mut Context<Self>,
        project: &ProjectSettings,
        report: &AttemptReport,
        reason: String,
    ) {
        let key = report.attempt.key.clone();
        let attempt = report.attempt.attempt;
        let title = report.task.as_ref().map(|t| t.title.clone()).unwrap_or_else(|| key.task.clone());
        let message = format!("orch: {title}\n\nTask {key}, attempt {attempt}: {reason}\n");
        // Journaled (durably) first: a crash in the middle of the merge is finished at the next start, never merged
        // again by a new attempt.
        let intent = self.journal.send(Append(vec![Event::IntentRecorded(IntentRecorded {
            project: key.project.clone(),
            task: key.task.clone(),
            attempt,
            intent: Intent::Merge { branch: crate::git::branch(&key) },
        })]));
        let accept = self.worktrees.accept(&project.workspace, &key, project.merge, message);
        let work = async move {
            match intent.await {
                Ok(Ok(_)) => accept.await,
                Ok(Err(e)) => Accepted { commit: None, merged: Err(format!("its merge could not be journaled: {e}")) },
                Err(e) => Accepted { commit: None, merged: Err(format!("its merge could not be journaled: {e}")) },
            }
        };
        self.background(ctx, work, move |act, ctx, accepted| {
            let ok = accepted.merged.is_ok();
            let (to, why, detail) = match accepted.merged {
                Ok(d) => (TaskState::Completed, format!("{reason}; {d}"), d),
                Err(e) => (TaskState::Escalated, format!("accepted, but {e}"), e),
            };
            let events = vec![
                Event::Committed(Committed {
                    project: key.project.clone(),
                    task: key.task.clone(),
                    attempt,
                    branch: crate::git::branch(&key),
                    commit: accepted.commit,
                    merge: detail,
                    merged: ok,
                }),
                change(&key, TaskState::Running, to, why),
            ];
            act.release(&key);
            if let Some(run) = act.run.as_mut().filter(|_| ok) {
                run.task_monitors.remove(&key);
            }
            act.append_and_schedule(ctx, events);
        });
    }

    /// Pauses the provider of a rate-limited attempt until the reset time its agent gave, else for a backoff that
    /// doubles with each rate limit in a row; a timer resumes it. Returns the event saying so.
    fn pause_provider(&mut self, ctx: &mut Context<Self>, report: &AttemptReport) -> Event {
        let provider = report.project.agent.kind.as_str().to_string();
        let now = crate::journal::now_us() / 1000;
        let base = self.orchestration.rate_limit_pause.as_millis() as i64;
        let streak = self.run.as_ref().and_then(|r| r.rate_streak.get(&provider)).copied().unwrap_or(0);
        let (until, why) = pause_until(report.outcome.result.as_deref().unwrap_or(""), base, streak, now);
        if let Some(run) = self.run.as_mut() {
            run.rate_streak.insert(provider.clone(), streak.saturating_add(1));
            let entry = run.paused.entry(provider.clone()).or_insert(until);
            *entry = (*entry).max(until);
        }
        let delay = std::time::Duration::from_millis(until.saturating_sub(now).max(0) as u64);
        let p = provider.clone();
        ctx.run_later(delay, move |act, ctx| act.resume_provider(ctx, &p));
        Event::ProviderPaused(ProviderPaused {
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
        let ev = Event::ProviderResumed(ProviderResumed { provider: provider.to_string() });
        self.append_and_schedule(ctx, vec![ev]);
    }

    /// Delivers a notification in the background; the run does not end before it is delivered and journaled.
    fn announce(&mut self, ctx: &mut Context<Self>, notice: crate::notify::Notice) {
        if !self.notify.enabled() || self.run.is_none() {
            return;
        }
        let (settings, http, journal) = (self.notify.clone(), self.http.clone(), self.journal.clone().recipient());
        let containment = self.orchestration.containment;
        let redactor = self.redactor.clone();
        let work = async move { deliver_and_record(&settings, containment, &http, &journal, &notice, &redactor).await };
        self.background(ctx, work, |act, ctx, ()| act.maybe_finish(ctx));
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

    /// One scheduling pass: block what must be blocked, start what can start, finish when all is settled.
    fn schedule(&mut self, ctx: &mut Context<Self>) {
        let Some(run) = self.run.as_mut() else { return };
        if run.stopping {
            return self.maybe_finish(ctx);
        }
        let now = std::time::Instant::now();
        let mut events = run.settle();
        let picks = run.choose(&self.projects, &self.orchestration, now);
        if let Some(due) = picks.wake {
            ctx.run_later(
                due.saturating_duration_since(now).saturating_add(std::time::Duration::from_millis(1)),
                |act, ctx| {
                    if let Some(run) = act.run.as_mut() {
                        run.wake_at = None;
                    }
                    act.schedule(ctx);
                },
            );
        }
        events.extend(picks.events);
        if events.is_empty() {
            return self.maybe_finish(ctx);
        }
        let starting = picks.starting;
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
            let ev = change(&key, TaskState::Running, TaskState::Pending, "the run stopped before it started");
            return self.append_then(ctx, vec![ev], |act, ctx, _| act.maybe_finish(ctx));
        }
        let Some(project) = self.projects.get(&key.project).cloned() else { return };
        if project.isolation != Isolation::Worktree {
            return self.launch(ctx, key, None);
        }
        // The task's own worktree, made (or found) before its agent starts.
        let work = self.worktrees.prepare(&project.workspace, &key);
        self.background(ctx, work, move |act, ctx, res| match res {
            Ok(path) => act.launch(ctx, key, Some(path)),
            Err(e) => {
                act.release(&key);
                let why = format!("its worktree could not be prepared: {e}");
                act.append_and_schedule(ctx, vec![change(&key, TaskState::Running, TaskState::Escalated, why)]);
            }
        });
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
        let attempt =
            AttemptRef { key: key.clone(), attempt: view.attempts.iter().map(|a| a.number).max().unwrap_or(0) + 1 };
        let spec = SessionSpec {
            process_tag: crate::process::attempt_tag(&self.journal_path, &attempt),
            containment: self.orchestration.containment,
            attempt,
            attempts_in_round: view.attempts_since_reset + 1,
            task: view,
            project,
            token_budget: self.orchestration.prompt_token_budget,
            redactor: self.redactor.clone(),
            template: Arc::from(self.orchestration.prompts.attempt.as_str()),
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
        match run.idle() {
            Idle::Wait => return,
            Idle::Cycle(events) => return self.append_then(ctx, events, |act, ctx, _| act.maybe_finish(ctx)),
            Idle::Finish => {}
        }
        let Some(done) = run.done.take() else { return };
        let summary = run.summary();
        let failed = run.failed.take();
        let outcome = if failed.is_some() {
            "failed"
        } else if run.stopping {
            "interrupted"
        } else {
            "finished"
        };
        let needs_human =
            summary.count(TaskState::Escalated) + summary.count(TaskState::Failed) + summary.count(TaskState::Blocked);
        let ev = Event::RunFinished(RunFinished {
            outcome: outcome.into(),
            completed: summary.count(TaskState::Completed) as u32,
            needs_human: needs_human as u32,
            cancelled: summary.count(TaskState::Cancelled) as u32,
        });
        let journal = self.journal.clone();
        let notice = self.notify.enabled().then(|| crate::notify::Notice {
            about: "run_finished",
            task: None,
            fields: serde_json::json!({
                "outcome": outcome,
                "completed": summary.count(TaskState::Completed),
                "needs_human": needs_human,
                "cancelled": summary.count(TaskState::Cancelled),
                "tasks": summary.tasks.iter().map(|t| serde_json::json!({"task": t.key.to_string(), "state": t.state.as_str(), "reason": t.reason})).collect::<Vec<_>>(),
            }),
        });
        let (settings, http, redactor) = (self.notify.clone(), self.http.clone(), self.redactor.clone());
        let containment = self.orchestration.containment;
        self.run = None;
        ctx.spawn(
            async move {
                let res = journal.send(Append(vec![ev])).await;
                if let Some(notice) = notice {
                    deliver_and_record(&settings, containment, &http, &journal.clone().recipient(), &notice, &redactor)
                        .await;
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

    /// Starts the run `plan` describes: what a supervisor that died left running is killed, the plan's events are
    /// journaled, the worktrees of tasks done with are removed, and the first pass runs.
    fn start_run(
        &mut self,
        ctx: &mut Context<Self>,
        plan: plan::Plan,
        done: oneshot::Sender<Result<RunSummary, EngineError>>,
    ) {
        // Agents outlive a kill -9 of their parent: whatever an open attempt started is killed before its task can
        // start again, so that no task ever runs twice at once. (A read of /proc, once per recovered attempt.)
        for a in &plan.interrupted {
            let killed = crate::process::kill_attempt(&crate::process::attempt_tag(&self.journal_path, a));
            if killed > 0 {
                tracing::warn!(
                    "{}: killed {killed} process(es) left running by interrupted attempt {}",
                    a.key,
                    a.attempt
                );
            }
        }
        let events = plan.events.clone();
        let run = RunState::new(plan, done);
        let removals = self.worktrees.remove_done(&run.views, &self.projects);
        self.run = Some(run);
        for work in removals {
            self.background(ctx, work, |act, ctx, ()| act.maybe_finish(ctx));
        }
        self.append_and_schedule(ctx, events);
    }

    /// Why an attempt that ended outside the pipeline ended, for its `AttemptInterrupted` event.
    fn interruption(msg: &SessionEnded, cancelled: bool) -> Option<String> {
        let e = msg.error.as_ref()?;
        Some(match (msg.interrupted, cancelled) {
            (true, true) => "stopped: the task was cancelled by a human".into(),
            (true, false) => "stopped: the run is shutting down".into(),
            (false, _) => format!("internal error: {e}"),
        })
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
            let started = state
                .map_err(EngineError::from)
                .and_then(|state| plan::plan(&state, &act.projects, &msg.0, std::process::id()))
                .map(|plan| act.start_run(ctx, plan, tx));
            async move {
                started?;
                rx.await.map_err(|_| EngineError::Stopped("the scheduler stopped".into()))?
            }
            .into_actor(act)
        }))
    }
}

impl Handler<Refresh> for Scheduler {
    type Result = ();

    fn handle(&mut self, msg: Refresh, ctx: &mut Self::Context) {
        let Some(run) = self.run.as_mut() else { return };
        for v in msg.0 {
            run.join(&v);
            if v.state == TaskState::Cancelled {
                if let Some(Some(session)) = run.running.get(&v.spec.key()) {
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
        let cancelled = run.views.get(&key).is_some_and(|v| v.state == TaskState::Cancelled);
        let mut events: Vec<Event> = Self::interruption(&msg, cancelled)
            .map(|reason| {
                Event::AttemptInterrupted(AttemptInterrupted {
                    project: key.project.clone(),
                    task: key.task.clone(),
                    attempt: msg.attempt.attempt,
                    reason,
                })
            })
            .into_iter()
            .collect();
        match (&msg.error, msg.interrupted) {
            // Cancelled by a human while it ran: it stays cancelled.
            (_, true) if cancelled => {}
            (_, true) => {
                events.push(change(&key, TaskState::Running, TaskState::Pending, "interrupted; it will be tried again"))
            }
            (Some(e), false) => events.push(change(
                &key,
                TaskState::Running,
                TaskState::Escalated,
                format!("orch could not supervise attempt {}: {e}", msg.attempt.attempt),
            )),
            (None, false) => {}
        }
        run.running.remove(&key);
        if events.is_empty() {
            return self.schedule(ctx);
        }
        self.append_and_schedule(ctx, events);
    }
}

impl Handler<Concluded> for Scheduler {
    type Result = ();

    fn handle(&mut self, msg: Concluded, ctx: &mut Self::Context) {
        crate::fault::point("scheduler:concluded");
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
        if !rate_limited {
            run.rate_streak.remove(msg.report.project.agent.kind.as_str());
        }
        let project = self.projects.get(&key.project).cloned();
        if let Some(p) =
            project.as_ref().filter(|p| c.decision == Decision::Proceed && p.isolation == Isolation::Worktree)
        {
            return self.commit_and_merge(ctx, p, &msg.report, reason);
        }
        let rollback =
            c.decision == Decision::Retry && !rate_limited && project.is_some_and(|p| p.on_retry == OnRetry::Rollback);
        if !rollback {
            let mut events = vec![change(&key, TaskState::Running, to, reason)];
            self.release(&key);
            if rate_limited {
                events.push(self.pause_provider(ctx, &msg.report));
            }
            return self.append_and_schedule(ctx, events);
        }
        // on_retry = "rollback": the retry starts from the workspace as it was before this attempt. The task stays
        // running (nothing else may start on it) until its files are restored.
        let attempt = msg.report.attempt.clone();
        let fut = self.journal.send(super::state_journal::RollbackAttempt(attempt.clone()));
        self.background(ctx, fut, move |act, ctx, res| {
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
            act.release(&attempt.key);
            act.append_and_schedule(ctx, vec![change(&attempt.key, TaskState::Running, to, reason)]);
        });
    }
}

/// Delivers `notice` and journals how each delivery went; a failure to journal that is logged, never fatal.
async fn deliver_and_record(
    settings: &crate::settings::NotifySettings,
    containment: crate::settings::Containment,
    http: &reqwest::Client,
    journal: &Recipient<Append>,
    notice: &crate::notify::Notice,
    redactor: &crate::redact::Redactor,
) {
    let events = crate::notify::deliver(settings, containment, http, notice, redactor).await;
    match journal.send(Append(events)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::error!("a notification could not be journaled: {e}"),
        Err(e) => tracing::error!("a notification could not be journaled: {e}"),
    }
}
