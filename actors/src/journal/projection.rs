//! Projections: the current state of projects, tasks and attempts, as a fold of the events.
//!
//! [`State::apply`] is the only place that interprets events; the journal keeps a live [`State`] up to date as it
//! appends, persists the parts that changed, and can rebuild the whole from the events alone.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::event::{Event, EventRecord, Intent, IntentRecorded};
use crate::types::{Decision, TaskKey, TaskSpec, TaskState};

/// What the journal knows of a project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectView {
    /// Its name.
    pub name: String,
    /// Its workspace, absolute.
    pub workspace: String,
    /// Its check commands.
    pub checks: Vec<String>,
}

/// One attempt, summarised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptView {
    /// Its number.
    pub number: u32,
    /// When it started (ms since the epoch).
    pub started_ms: i64,
    /// When its decision was made, or it was interrupted.
    pub ended_ms: Option<i64>,
    /// The agent's exit code.
    pub exit_code: Option<i32>,
    /// `none`, `wall_clock` or `idle`.
    pub timeout: Option<String>,
    /// Agent wall time.
    pub agent_ms: Option<u64>,
    /// The agent's session id.
    pub session_id: Option<String>,
    /// Files it created, changed or deleted.
    pub files_changed: u32,
    /// Checks that passed.
    pub checks_passed: u32,
    /// Checks run.
    pub checks_run: u32,
    /// Validation result.
    pub valid: Option<bool>,
    /// Confidence score.
    pub confidence: Option<f64>,
    /// The decision.
    pub decision: Option<Decision>,
    /// Why.
    pub reason: Option<String>,
    /// What a retry is told.
    pub feedback: Option<String>,
    /// It ended without a decision (a stop or a crash).
    pub interrupted: bool,
    /// Tokens the agent reported using.
    pub tokens: u64,
    /// Cost the agent reported, USD.
    pub cost_usd: f64,
}

/// What the journal knows of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskView {
    /// The specification.
    pub spec: TaskSpec,
    /// The current state.
    pub state: TaskState,
    /// For escalated, failed and blocked tasks: one line saying why.
    pub reason: Option<String>,
    /// Sequence number of the event that added it (its age, for scheduling).
    pub added_seq: u64,
    /// Every attempt.
    pub attempts: Vec<AttemptView>,
    /// Attempts since the task was added or a human last intervened (counts toward `max_attempts`).
    pub attempts_since_reset: u32,
    /// Answers humans gave; every later attempt's prompt carries them.
    pub answers: Vec<String>,
    /// The agent session to resume with the next answer (set by a clarify decision).
    pub resume_session: Option<String>,
}

impl TaskView {
    /// The last decision, if any attempt has one.
    pub fn last_decision(&self) -> Option<Decision> {
        self.attempts.iter().rev().find_map(|a| a.decision)
    }

    /// The last confidence score, if any attempt has one.
    pub fn confidence(&self) -> Option<f64> {
        self.attempts.iter().rev().find_map(|a| a.confidence)
    }

    /// The latest attempt, if any.
    pub fn last_attempt(&self) -> Option<&AttemptView> {
        self.attempts.last()
    }

    /// Takes in a change of state, as the journal's fold does: the one rule for what a change does to a view, for
    /// the projection and for whoever holds a copy of views ahead of the journal's answer (the scheduler).
    pub fn change_state(&mut self, e: &crate::journal::event::TaskStateChanged) {
        self.state = e.to;
        self.reason = e.to.blocks_dependants().then(|| e.reason.clone());
    }

    fn attempt_mut(&mut self, n: u32) -> Option<&mut AttemptView> {
        self.attempts.iter_mut().rev().find(|a| a.number == n)
    }
}

/// What an applied event changed, so the journal persists only that.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Touched {
    /// A project view changed.
    pub project: Option<String>,
    /// A task view changed.
    pub task: Option<TaskKey>,
    /// A task's open intents changed.
    pub intents: Option<TaskKey>,
}

/// The whole current state.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct State {
    /// Projects by name.
    pub projects: BTreeMap<String, ProjectView>,
    /// Tasks by key.
    pub tasks: BTreeMap<TaskKey, TaskView>,
    /// The last event folded in.
    pub last_seq: u64,
    /// Side effects under way, per task: recorded, not yet settled (see [`IntentRecorded`]). After a crash, what the
    /// next start has to settle.
    #[serde(default)]
    pub intents: BTreeMap<TaskKey, Vec<IntentRecorded>>,
}

impl State {
    /// Rebuilds the state from events alone.
    pub fn rebuild<'a>(records: impl IntoIterator<Item = &'a EventRecord>) -> State {
        let mut s = State::default();
        for r in records {
            s.apply(r);
        }
        s
    }

    /// Finds a task by `project/id`, or by a bare id when exactly one project has it.
    pub fn resolve(&self, id: &str) -> Result<TaskKey, String> {
        if let Some(k) = TaskKey::parse_qualified(id) {
            if self.tasks.contains_key(&k) {
                return Ok(k);
            }
        }
        let matches: Vec<&TaskKey> = self.tasks.keys().filter(|k| k.task == id).collect();
        match matches.as_slice() {
            [k] => Ok((*k).clone()),
            [] => Err(format!("unknown task `{id}`: no project has a task with that id (see `orch status`)")),
            many => Err(format!(
                "task id `{id}` is ambiguous: {}; write it as project/{id}",
                many.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(", ")
            )),
        }
    }

    /// Closes the task's open intents that `which` picks; the task, if any were.
    fn settle(&mut self, project: &str, task: &str, which: impl Fn(&IntentRecorded) -> bool) -> Option<TaskKey> {
        let key = TaskKey::new(project, task);
        let open = self.intents.get_mut(&key)?;
        let before = open.len();
        open.retain(|i| !which(i));
        if open.len() == before {
            return None;
        }
        if open.is_empty() {
            self.intents.remove(&key);
        }
        Some(key)
    }

    /// Folds one event in; returns what changed.
    pub fn apply(&mut self, record: &EventRecord) -> Touched {
        self.last_seq = record.seq;
        let t = record.time_us / 1000;
        let mut touched = Touched::default();
        match &record.event {
            Event::ProjectRegistered(e) => {
                self.projects.insert(
                    e.project.clone(),
                    ProjectView { name: e.project.clone(), workspace: e.workspace.clone(), checks: e.checks.clone() },
                );
                touched.project = Some(e.project.clone());
            }
            Event::TaskAdded(e) => {
                let key = e.spec.key();
                if !self.tasks.contains_key(&key) {
                    self.tasks.insert(
                        key.clone(),
                        TaskView {
                            spec: e.spec.clone(),
                            state: TaskState::Pending,
                            reason: None,
                            added_seq: record.seq,
                            attempts: Vec::new(),
                            attempts_since_reset: 0,
                            answers: Vec::new(),
                            resume_session: None,
                        },
                    );
                    touched.task = Some(key);
                }
            }
            Event::TaskUpdated(e) => {
                let key = e.spec.key();
                if let Some(v) = self.tasks.get_mut(&key) {
                    v.spec = e.spec.clone();
                    touched.task = Some(key);
                }
            }
            Event::IntentRecorded(e) => {
                let key = TaskKey::new(&e.project, &e.task);
                self.intents.entry(key.clone()).or_default().push(e.clone());
                touched.intents = Some(key);
            }
            Event::IntentSettled(e) => {
                touched.intents =
                    self.settle(&e.project, &e.task, |i| i.attempt == e.attempt && i.intent.name() == e.intent);
            }
            Event::RolledBack(e) => {
                touched.intents = self.settle(&e.project, &e.task, |i| matches!(i.intent, Intent::Rollback { .. }));
            }
            Event::Committed(e) => {
                touched.intents = self.settle(&e.project, &e.task, |i| {
                    i.attempt == e.attempt && matches!(i.intent, Intent::Merge { .. })
                });
            }
            Event::RunStarted(_)
            | Event::RunFinished(_)
            | Event::AgentOutput(_)
            | Event::LlmCalled(_)
            | Event::Reviewed(_)
            | Event::BreakpointHit(_)
            | Event::Notified(_)
            | Event::FileTouched(_)
            | Event::ProviderPaused(_)
            | Event::ProviderResumed(_)
            | Event::PristineChecked(_) => {}
            Event::AttemptStarted(e) => {
                let key = TaskKey::new(&e.project, &e.task);
                if let Some(v) = self.tasks.get_mut(&key) {
                    v.attempts.push(AttemptView {
                        number: e.attempt,
                        started_ms: t,
                        ended_ms: None,
                        exit_code: None,
                        timeout: None,
                        agent_ms: None,
                        session_id: e.resume_session.clone(),
                        files_changed: 0,
                        checks_passed: 0,
                        checks_run: 0,
                        valid: None,
                        confidence: None,
                        decision: None,
                        reason: None,
                        feedback: None,
                        interrupted: false,
                        tokens: 0,
                        cost_usd: 0.0,
                    });
                    v.attempts_since_reset += 1;
                    // A resumed session has been used; a later clarify sets it again.
                    v.resume_session = None;
                    touched.task = Some(key);
                }
            }
            Event::AgentExited(e) => {
                touched.task = self.with_attempt(&e.project, &e.task, e.attempt, |a| {
                    a.exit_code = e.exit_code;
                    a.timeout = Some(e.timeout.clone());
                    a.agent_ms = Some(e.duration_ms);
                    if e.session_id.is_some() {
                        a.session_id = e.session_id.clone();
                    }
                    if let Some(r) = &e.report {
                        a.tokens = r.total_tokens();
                        a.cost_usd = r.cost_usd;
                    }
                });
            }
            Event::FileChanged(e) => {
                touched.task = self.with_attempt(&e.project, &e.task, e.attempt, |a| a.files_changed += 1);
            }
            Event::Validated(e) => {
                touched.task = self.with_attempt(&e.project, &e.task, e.attempt, |a| a.valid = Some(e.ok));
            }
            Event::CheckFinished(e) => {
                touched.task = self.with_attempt(&e.project, &e.task, e.attempt, |a| {
                    a.checks_run += 1;
                    if e.passed {
                        a.checks_passed += 1;
                    }
                });
            }
            Event::Scored(e) => {
                touched.task = self.with_attempt(&e.project, &e.task, e.attempt, |a| a.confidence = Some(e.score));
            }
            Event::Decided(e) => {
                let mut session = None;
                touched.task = self.with_attempt(&e.project, &e.task, e.attempt, |a| {
                    a.decision = Some(e.decision);
                    a.reason = Some(e.reason.clone());
                    a.feedback = (!e.feedback.is_empty()).then(|| e.feedback.clone());
                    a.ended_ms = Some(t);
                    session = a.session_id.clone();
                });
                if e.decision == Decision::Clarify {
                    let key = TaskKey::new(&e.project, &e.task);
                    if let Some(v) = self.tasks.get_mut(&key) {
                        v.resume_session = session;
                        // A question does not burn an attempt: it is not counted toward max_attempts.
                        v.attempts_since_reset = v.attempts_since_reset.saturating_sub(1);
                        // Touched even when the attempt is unknown, so the persisted view gets the change.
                        touched.task = Some(key);
                    }
                }
            }
            Event::AttemptInterrupted(e) => {
                touched.task = self.with_attempt(&e.project, &e.task, e.attempt, |a| {
                    a.interrupted = true;
                    a.reason = Some(e.reason.clone());
                    a.ended_ms = Some(t);
                });
            }
            Event::TaskStateChanged(e) => {
                let key = TaskKey::new(&e.project, &e.task);
                if let Some(v) = self.tasks.get_mut(&key) {
                    v.change_state(e);
                    touched.task = Some(key);
                }
            }
            Event::LlmAnswered(e) => {
                let key = TaskKey::new(&e.project, &e.task);
                if let Some(v) = self.tasks.get_mut(&key) {
                    // Unlike a human's answer, it does not reset the attempts counted toward max_attempts.
                    v.answers.push(e.answer.clone());
                    touched.task = Some(key);
                }
            }
            Event::HumanAnswered(e) => {
                let key = TaskKey::new(&e.project, &e.task);
                if let Some(v) = self.tasks.get_mut(&key) {
                    v.answers.push(e.answer.clone());
                    v.attempts_since_reset = 0;
                    touched.task = Some(key);
                }
            }
            Event::HumanVerdict(e) => {
                let key = TaskKey::new(&e.project, &e.task);
                if let Some(v) = self.tasks.get_mut(&key) {
                    v.attempts_since_reset = 0;
                    touched.task = Some(key);
                }
            }
        }
        touched
    }

    fn with_attempt(
        &mut self,
        project: &str,
        task: &str,
        attempt: u32,
        f: impl FnOnce(&mut AttemptView),
    ) -> Option<TaskKey> {
        let key = TaskKey::new(project, task);
        let a = self.tasks.get_mut(&key)?.attempt_mut(attempt)?;
        f(a);
        Some(key)
    }
}
