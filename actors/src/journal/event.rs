//! The one closed, versioned enum of everything the journal persists.
//!
//! Adding a variant is backwards compatible for readers of this version only if it is appended at the end;
//! changing a payload's fields requires a new [`FORMAT_VERSION`]. Every payload names its own scope (project,
//! task, attempt) so a record can be filtered without knowing the rest of the history.

use serde::{Deserialize, Serialize};

use crate::types::{AgentReport, ChangeKind, ContentHash, Decision, Factor, Finding, TaskKey, TaskSpec, TaskState};

mod redaction;

/// The version of the record format written by this build.
pub const FORMAT_VERSION: u8 = 1;

/// A project became known to the journal (or its definition changed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectRegistered {
    /// The project's name.
    pub project: String,
    /// Its workspace, absolute.
    pub workspace: String,
    /// Its check commands.
    pub checks: Vec<String>,
}

/// A task was added, from the config or from `orch task add`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskAdded {
    /// The task as specified.
    pub spec: TaskSpec,
    /// `config` or `cli` or `api`.
    pub source: String,
}

/// A pending task's specification was changed in the config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskUpdated {
    /// The task as now specified.
    pub spec: TaskSpec,
}

/// `orch run` started supervising.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStarted {
    /// Process id of the supervisor.
    pub pid: u32,
    /// The tasks selected, as `project/id`.
    pub selected: Vec<String>,
}

/// `orch run` stopped supervising.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunFinished {
    /// `finished`, `interrupted` or `failed`.
    pub outcome: String,
    /// Selected tasks completed.
    pub completed: u32,
    /// Selected tasks that need a human (escalated, failed, blocked).
    pub needs_human: u32,
    /// Selected tasks cancelled.
    pub cancelled: u32,
}

/// An attempt began: the prompt is built and the agent is about to start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptStarted {
    /// The project.
    pub project: String,
    /// The task.
    pub task: String,
    /// The attempt number.
    pub attempt: u32,
    /// The agent kind.
    pub agent: String,
    /// The program run.
    pub program: String,
    /// Tokens in the prompt (cl100k); absent when not counted because it could not exceed the budget.
    pub prompt_tokens: Option<u32>,
    /// Bytes in the prompt.
    pub prompt_bytes: u32,
    /// The beginning of the prompt.
    pub prompt_excerpt: String,
    /// Session resumed, for a clarify.
    pub resume_session: Option<String>,
}

/// A bounded excerpt of what the agent printed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentOutput {
    /// The project.
    pub project: String,
    /// The task.
    pub task: String,
    /// The attempt number.
    pub attempt: u32,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// The text, secrets redacted, bounded in length.
    pub text: String,
}

/// The agent process ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentExited {
    /// The project.
    pub project: String,
    /// The task.
    pub task: String,
    /// The attempt number.
    pub attempt: u32,
    /// Exit code, when it exited.
    pub exit_code: Option<i32>,
    /// Signal, when it was killed.
    pub signal: Option<i32>,
    /// `none`, `wall_clock` or `idle`.
    pub timeout: String,
    /// Wall time of the agent process.
    pub duration_ms: u64,
    /// The same in microseconds.
    pub duration_us: u64,
    /// Bytes printed on stdout.
    pub stdout_bytes: u64,
    /// Bytes printed on stderr.
    pub stderr_bytes: u64,
    /// The agent's final answer (last lines of stdout for a command agent), bounded.
    pub result: String,
    /// The agent's session id, when it has one.
    pub session_id: Option<String>,
    /// What the agent reported about its own run, for kinds that report.
    pub report: Option<AgentReport>,
    /// Tool calls it made.
    pub tool_calls: u32,
    /// Processes it left running that orch killed.
    pub orphans_killed: u32,
    /// Output lines that could not be understood.
    pub unparsed_lines: u32,
}

/// A file changed during an attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileChanged {
    /// The project.
    pub project: String,
    /// The task.
    pub task: String,
    /// The attempt number.
    pub attempt: u32,
    /// Path relative to the workspace.
    pub path: String,
    /// Created, modified or deleted.
    pub change: ChangeKind,
    /// Content before (a blob in the journal), absent when created.
    pub before: Option<ContentHash>,
    /// Content after, absent when deleted.
    pub after: Option<ContentHash>,
    /// Size after, in bytes.
    pub size: u64,
}

/// The validator's verdict on the agent's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Validated {
    /// The project.
    pub project: String,
    /// The task.
    pub task: String,
    /// The attempt number.
    pub attempt: u32,
    /// False when any finding is an error.
    pub ok: bool,
    /// What it found.
    pub findings: Vec<Finding>,
}

/// One check command ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckFinished {
    /// The project.
    pub project: String,
    /// The task.
    pub task: String,
    /// The attempt number.
    pub attempt: u32,
    /// The shell line.
    pub command: String,
    /// True when it exited 0 in time.
    pub passed: bool,
    /// Exit code, when it exited.
    pub exit_code: Option<i32>,
    /// True when it was killed for taking too long.
    pub timed_out: bool,
    /// Wall time.
    pub duration_ms: u64,
    /// The same in microseconds.
    pub duration_us: u64,
    /// The tail of its combined output, bounded.
    pub output_tail: String,
}

/// The confidence score of an attempt, with every factor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    /// The project.
    pub project: String,
    /// The task.
    pub task: String,
    /// The attempt number.
    pub attempt: u32,
    /// The weighted score in [0, 1].
    pub score: f64,
    /// Every factor that went into it.
    pub factors: Vec<Factor>,
}

/// The decision on an attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decided {
    /// The project.
    pub project: String,
    /// The task.
    pub task: String,
    /// The attempt number.
    pub attempt: u32,
    /// What was decided.
    pub decision: Decision,
    /// One line saying why.
    pub reason: String,
    /// For a retry: what the next attempt is told.
    pub feedback: String,
}

/// A task moved from one state to another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStateChanged {
    /// The project.
    pub project: String,
    /// The task.
    pub task: String,
    /// The state before.
    pub from: TaskState,
    /// The state after.
    pub to: TaskState,
    /// One line saying why.
    pub reason: String,
}

/// An attempt that had started has no recorded end, found at start or made so by a stop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptInterrupted {
    /// The project.
    pub project: String,
    /// The task.
    pub task: String,
    /// The attempt number.
    pub attempt: u32,
    /// Why.
    pub reason: String,
}

/// A side effect orch is about to have, journaled (durably) before it starts, so that a crash in the middle of it
/// leaves a record of what was under way: the next start settles it (see [`IntentSettled`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntentRecorded {
    /// The project.
    pub project: String,
    /// The task.
    pub task: String,
    /// The attempt it belongs to.
    pub attempt: u32,
    /// What is about to happen.
    pub intent: Intent,
}

/// What an [`IntentRecorded`] is about to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    /// The attempt's agent is about to run in the workspace; `baseline` is the blob holding the workspace's manifest
    /// (path, size, content hash of every file) before it, from which its changes can be found if it never ends.
    /// Settled when its file changes are journaled.
    Attempt {
        /// The manifest's blob.
        baseline: ContentHash,
        /// Files in it.
        files: u64,
    },
    /// The task's files, as its attempts from `from_attempt` on changed them, are about to be restored. Settled by
    /// the [`RolledBack`] that follows.
    Rollback {
        /// The first attempt undone.
        from_attempt: u32,
        /// Files changed since are overwritten too.
        force: bool,
    },
    /// The attempt's accepted work is about to be committed on `branch` and merged. Settled by the [`Committed`]
    /// that follows.
    Merge {
        /// The task's branch.
        branch: String,
    },
}

impl Intent {
    /// Its name, as events show it.
    pub fn name(&self) -> &'static str {
        match self {
            Intent::Attempt { .. } => "attempt",
            Intent::Rollback { .. } => "rollback",
            Intent::Merge { .. } => "merge",
        }
    }
}

/// An [`IntentRecorded`] came to its end without an end event of its own: an attempt's file changes were journaled,
/// or what a crash left half done was finished (or given up) at the next start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntentSettled {
    /// The project.
    pub project: String,
    /// The task.
    pub task: String,
    /// The attempt.
    pub attempt: u32,
    /// Which intent ([`Intent::name`]).
    pub intent: String,
    /// How it was settled, in words.
    pub how: String,
}

/// A human answered a task's question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HumanAnswered {
    /// The project.
    pub project: String,
    /// The task.
    pub task: String,
    /// The answer, given to the next attempt.
    pub answer: String,
}

/// A human's verdict on an escalated task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HumanVerdict {
    /// The project.
    pub project: String,
    /// The task.
    pub task: String,
    /// `approve`, `reject` or `cancel`.
    pub verdict: String,
    /// Optional reason.
    pub reason: String,
}

/// Files were restored to their content before an attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolledBack {
    /// The project.
    pub project: String,
    /// The task.
    pub task: String,
    /// The first attempt undone.
    pub from_attempt: u32,
    /// Paths restored.
    pub restored: Vec<String>,
    /// Paths left alone because they changed since (without `--force`).
    pub conflicts: Vec<String>,
}

/// One call to the LLM (one try), never with the API key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmCalled {
    /// The project, when the call is about an attempt.
    pub project: Option<String>,
    /// The task.
    pub task: Option<String>,
    /// The attempt.
    pub attempt: Option<u32>,
    /// Why it was asked: `check`, `review`, `clarify`.
    pub purpose: String,
    /// `ollama` or `openai`.
    pub provider: String,
    /// The model asked.
    pub model: String,
    /// `ok`, `unreachable`, `timeout`, `http_error`, `truncated`, `bad_answer`, `no_model`.
    pub outcome: String,
    /// 1 for the first try.
    pub try_number: u32,
    /// Tokens in.
    pub prompt_tokens: u64,
    /// Tokens out.
    pub completion_tokens: u64,
    /// Wall time of the call.
    pub latency_us: u64,
    /// What went wrong, when something did.
    pub error: String,
}

/// The LLM's review of an attempt (or why there is none).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reviewed {
    /// The project.
    pub project: String,
    /// The task.
    pub task: String,
    /// The attempt number.
    pub attempt: u32,
    /// A usable review came back.
    pub available: bool,
    /// `accept` or `reject`.
    pub verdict: String,
    /// 0 … 100.
    pub score: u32,
    /// What it found wrong.
    pub issues: Vec<String>,
    /// Acceptance criteria it judged unmet.
    pub unmet_acceptance: Vec<String>,
    /// Why there is no review, when there is none.
    pub error: String,
}

/// A breakpoint stopped an attempt for a human.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BreakpointHit {
    /// The project.
    pub project: String,
    /// The task.
    pub task: String,
    /// The attempt number.
    pub attempt: u32,
    /// `confidence`, `consecutive_failures`, `deleted_files`, `changed_files`, `outside_allowed_paths`,
    /// `token_budget`, `cost_budget`, `rate_limit`.
    pub breakpoint: String,
    /// The evidence.
    pub detail: String,
}

/// The LLM answered an agent's question from the task and its acceptance criteria.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmAnswered {
    /// The project.
    pub project: String,
    /// The task.
    pub task: String,
    /// The attempt that asked.
    pub attempt: u32,
    /// The question.
    pub question: String,
    /// The answer, given to the next attempt (which resumes the same session).
    pub answer: String,
}

/// A notification was delivered, or could not be (never fatal).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notified {
    /// The project, when it is about a task.
    pub project: Option<String>,
    /// The task, when it is about one.
    pub task: Option<String>,
    /// What happened: `task_escalated`, `task_waiting`, `run_finished`.
    pub about: String,
    /// `command` or `webhook`.
    pub channel: String,
    /// Delivered.
    pub ok: bool,
    /// Why not, when it was not.
    pub error: String,
}

/// An agent provider was paused after a rate limit: no session of it starts until `until`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderPaused {
    /// The provider (agent kind).
    pub provider: String,
    /// Until when, ms since the epoch.
    pub until_ms: i64,
    /// Why, and where the time comes from.
    pub reason: String,
}

/// A paused provider resumed by itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderResumed {
    /// The provider (agent kind).
    pub provider: String,
}

/// The checks run again against the original protected files: the attempt had changed what they judge by, so its
/// own check results do not count. Run in a scratch copy of the workspace; the user's files are never touched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PristineChecked {
    /// The project.
    pub project: String,
    /// The task.
    pub task: String,
    /// The attempt.
    pub attempt: u32,
    /// The protected files put back as they were (or removed, when the work created them).
    pub restored: Vec<String>,
    /// Each check's result on the original files.
    pub checks: Vec<PristineCheck>,
    /// Why the checks could not be run again, when they could not.
    pub error: String,
}

/// One check's result in a pristine run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PristineCheck {
    /// The shell line.
    pub command: String,
    /// Exit 0 in time.
    pub passed: bool,
    /// Exit code.
    pub exit_code: Option<i32>,
    /// The tail of its output.
    pub output_tail: String,
}

/// A task's accepted work was committed on its branch (worktree isolation) and merged as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Committed {
    /// The project.
    pub project: String,
    /// The task.
    pub task: String,
    /// The accepted attempt.
    pub attempt: u32,
    /// The task's branch.
    pub branch: String,
    /// The commit made, when there was something to commit.
    pub commit: Option<String>,
    /// What happened to the workspace's branch, or why it could not.
    pub merge: String,
    /// The merge worked (or none was asked for).
    pub merged: bool,
}

/// Everything the journal records. Closed: readers match exhaustively.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// See [`ProjectRegistered`].
    ProjectRegistered(ProjectRegistered),
    /// See [`TaskAdded`].
    TaskAdded(TaskAdded),
    /// See [`TaskUpdated`].
    TaskUpdated(TaskUpdated),
    /// See [`RunStarted`].
    RunStarted(RunStarted),
    /// See [`RunFinished`].
    RunFinished(RunFinished),
    /// See [`AttemptStarted`].
    AttemptStarted(AttemptStarted),
    /// See [`AgentOutput`].
    AgentOutput(AgentOutput),
    /// See [`AgentExited`].
    AgentExited(AgentExited),
    /// See [`FileChanged`].
    FileChanged(FileChanged),
    /// See [`Validated`].
    Validated(Validated),
    /// See [`CheckFinished`].
    CheckFinished(CheckFinished),
    /// See [`Scored`].
    Scored(Scored),
    /// See [`Decided`].
    Decided(Decided),
    /// See [`TaskStateChanged`].
    TaskStateChanged(TaskStateChanged),
    /// See [`AttemptInterrupted`].
    AttemptInterrupted(AttemptInterrupted),
    /// See [`HumanAnswered`].
    HumanAnswered(HumanAnswered),
    /// See [`HumanVerdict`].
    HumanVerdict(HumanVerdict),
    /// See [`RolledBack`].
    RolledBack(RolledBack),
    /// See [`LlmCalled`].
    LlmCalled(LlmCalled),
    /// See [`Reviewed`].
    Reviewed(Reviewed),
    /// See [`BreakpointHit`].
    BreakpointHit(BreakpointHit),
    /// See [`LlmAnswered`].
    LlmAnswered(LlmAnswered),
    /// See [`Notified`].
    Notified(Notified),
    /// A file change seen while the attempt ran (live, from the file watcher), before the authoritative
    /// `file_changed` list its end journals: what `orch-log follow` shows as it happens, and what a crash leaves on
    /// record about an attempt that never ended.
    FileTouched(FileChanged),
    /// See [`ProviderPaused`].
    ProviderPaused(ProviderPaused),
    /// See [`ProviderResumed`].
    ProviderResumed(ProviderResumed),
    /// See [`Committed`].
    Committed(Committed),
    /// See [`PristineChecked`].
    PristineChecked(PristineChecked),
    /// See [`IntentRecorded`].
    IntentRecorded(IntentRecorded),
    /// See [`IntentSettled`].
    IntentSettled(IntentSettled),
}

/// The project, task and attempt an event is about, where it is about one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scope<'a> {
    /// The project.
    pub project: Option<&'a str>,
    /// The task.
    pub task: Option<&'a str>,
    /// The attempt.
    pub attempt: Option<u32>,
}

macro_rules! attempt_scope {
    ($e:expr) => {
        Scope { project: Some(&$e.project), task: Some(&$e.task), attempt: Some($e.attempt) }
    };
}

macro_rules! task_scope {
    ($e:expr) => {
        Scope { project: Some(&$e.project), task: Some(&$e.task), attempt: None }
    };
}

impl Event {
    /// Every kind name, in declaration order; the index is the kind's code on disk.
    pub const KINDS: [&'static str; 30] = [
        "project_registered",
        "task_added",
        "task_updated",
        "run_started",
        "run_finished",
        "attempt_started",
        "agent_output",
        "agent_exited",
        "file_changed",
        "validated",
        "check_finished",
        "scored",
        "decided",
        "task_state_changed",
        "attempt_interrupted",
        "human_answered",
        "human_verdict",
        "rolled_back",
        "llm_called",
        "reviewed",
        "breakpoint_hit",
        "llm_answered",
        "notified",
        "file_touched",
        "provider_paused",
        "provider_resumed",
        "committed",
        "pristine_checked",
        "intent_recorded",
        "intent_settled",
    ];

    /// The kind's code: its index in [`Event::KINDS`].
    pub fn kind_code(&self) -> u16 {
        match self {
            Event::ProjectRegistered(_) => 0,
            Event::TaskAdded(_) => 1,
            Event::TaskUpdated(_) => 2,
            Event::RunStarted(_) => 3,
            Event::RunFinished(_) => 4,
            Event::AttemptStarted(_) => 5,
            Event::AgentOutput(_) => 6,
            Event::AgentExited(_) => 7,
            Event::FileChanged(_) => 8,
            Event::Validated(_) => 9,
            Event::CheckFinished(_) => 10,
            Event::Scored(_) => 11,
            Event::Decided(_) => 12,
            Event::TaskStateChanged(_) => 13,
            Event::AttemptInterrupted(_) => 14,
            Event::HumanAnswered(_) => 15,
            Event::HumanVerdict(_) => 16,
            Event::RolledBack(_) => 17,
            Event::LlmCalled(_) => 18,
            Event::Reviewed(_) => 19,
            Event::BreakpointHit(_) => 20,
            Event::LlmAnswered(_) => 21,
            Event::Notified(_) => 22,
            Event::FileTouched(_) => 23,
            Event::ProviderPaused(_) => 24,
            Event::ProviderResumed(_) => 25,
            Event::Committed(_) => 26,
            Event::PristineChecked(_) => 27,
            Event::IntentRecorded(_) => 28,
            Event::IntentSettled(_) => 29,
        }
    }

    /// The kind's name, as `orch-log events --kind` takes it.
    pub fn kind(&self) -> &'static str {
        Event::KINDS[self.kind_code() as usize]
    }

    /// What the event is about.
    pub fn scope(&self) -> Scope<'_> {
        match self {
            Event::ProjectRegistered(e) => Scope { project: Some(&e.project), task: None, attempt: None },
            Event::TaskAdded(e) => Scope { project: Some(&e.spec.project), task: Some(&e.spec.id), attempt: None },
            Event::TaskUpdated(e) => Scope { project: Some(&e.spec.project), task: Some(&e.spec.id), attempt: None },
            Event::RunStarted(_) | Event::RunFinished(_) | Event::ProviderPaused(_) | Event::ProviderResumed(_) => {
                Scope::default()
            }
            Event::AttemptStarted(e) => attempt_scope!(e),
            Event::AgentOutput(e) => attempt_scope!(e),
            Event::AgentExited(e) => attempt_scope!(e),
            Event::FileChanged(e) | Event::FileTouched(e) => attempt_scope!(e),
            Event::Validated(e) => attempt_scope!(e),
            Event::CheckFinished(e) => attempt_scope!(e),
            Event::Scored(e) => attempt_scope!(e),
            Event::Decided(e) => attempt_scope!(e),
            Event::AttemptInterrupted(e) => attempt_scope!(e),
            Event::TaskStateChanged(e) => task_scope!(e),
            Event::HumanAnswered(e) => task_scope!(e),
            Event::HumanVerdict(e) => task_scope!(e),
            Event::RolledBack(e) => task_scope!(e),
            Event::Reviewed(e) => attempt_scope!(e),
            Event::BreakpointHit(e) => attempt_scope!(e),
            Event::LlmAnswered(e) => attempt_scope!(e),
            Event::Committed(e) => attempt_scope!(e),
            Event::PristineChecked(e) => attempt_scope!(e),
            Event::IntentRecorded(e) => attempt_scope!(e),
            Event::IntentSettled(e) => attempt_scope!(e),
            Event::LlmCalled(e) => Scope { project: e.project.as_deref(), task: e.task.as_deref(), attempt: e.attempt },
            Event::Notified(e) => Scope { project: e.project.as_deref(), task: e.task.as_deref(), attempt: None },
        }
    }

    /// The task the event is about, if any.
    pub fn task_key(&self) -> Option<TaskKey> {
        let s = self.scope();
        Some(TaskKey::new(s.project?, s.task?))
    }
}

/// An event as stored: its place in the sequence and when it was appended.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    /// Position in the gap-free sequence, from 1.
    pub seq: u64,
    /// Microseconds since the Unix epoch.
    pub time_us: i64,
    /// The event.
    pub event: Event,
}

impl EventRecord {
    /// RFC 3339 time with milliseconds, UTC.
    pub fn time_rfc3339(&self) -> String {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_micros(self.time_us.max(0) as u64);
        humantime::format_rfc3339_millis(t).to_string()
    }

    /// The event as one flat JSON object: `seq`, `time`, `kind`, `project`, `task`, `attempt` (where they apply)
    /// and the payload's fields.
    pub fn to_json(&self) -> serde_json::Value {
        let mut obj = serde_json::Map::new();
        obj.insert("seq".into(), self.seq.into());
        obj.insert("time".into(), self.time_rfc3339().into());
        obj.insert("kind".into(), self.event.kind().into());
        let scope = self.event.scope();
        if let Some(p) = scope.project {
            obj.insert("project".into(), p.into());
        }
        if let Some(t) = scope.task {
            obj.insert("task".into(), t.into());
        }
        if let Some(a) = scope.attempt {
            obj.insert("attempt".into(), a.into());
        }
        // Externally tagged: {"kind": {payload}}; lift the payload's fields.
        if let Ok(serde_json::Value::Object(outer)) = serde_json::to_value(&self.event) {
            for (_, inner) in outer {
                if let serde_json::Value::Object(fields) = inner {
                    for (k, v) in fields {
                        match (k.as_str(), v) {
                            ("spec", serde_json::Value::Object(spec)) => {
                                for (sk, sv) in spec {
                                    if sk != "project" {
                                        obj.entry(if sk == "id" { "task".to_string() } else { sk }).or_insert(sv);
                                    }
                                }
                            }
                            (_, v) => {
                                obj.entry(k).or_insert(v);
                            }
                        }
                    }
                }
            }
        }
        serde_json::Value::Object(obj)
    }
}
