//! Domain types shared by every actor: task identity, task states, decisions, task specifications.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The lifecycle state of a task, as `orch status` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting to be scheduled.
    Pending,
    /// An attempt is under way.
    Running,
    /// Done: a proceed decision or a human's approval.
    Completed,
    /// Waiting for a human: an answer to a question, or a verdict.
    Escalated,
    /// Given up: rejected by a human, or failed for good.
    Failed,
    /// A dependency was failed, escalated, blocked or cancelled.
    Blocked,
    /// Cancelled by a human.
    Cancelled,
}

impl TaskState {
    /// Every state, in the order reports list them.
    pub const ALL: [TaskState; 7] = [
        TaskState::Pending,
        TaskState::Running,
        TaskState::Completed,
        TaskState::Escalated,
        TaskState::Failed,
        TaskState::Blocked,
        TaskState::Cancelled,
    ];

    /// The name used in JSON and on the terminal.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Running => "running",
            TaskState::Completed => "completed",
            TaskState::Escalated => "escalated",
            TaskState::Failed => "failed",
            TaskState::Blocked => "blocked",
            TaskState::Cancelled => "cancelled",
        }
    }

    /// True for the states a run stops at: nothing more happens without a human or a new run.
    pub fn is_settled(self) -> bool {
        !matches!(self, TaskState::Pending | TaskState::Running)
    }

    /// True for states that block the task's dependants.
    pub fn blocks_dependants(self) -> bool {
        matches!(self, TaskState::Failed | TaskState::Escalated | TaskState::Blocked | TaskState::Cancelled)
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the decision engine concluded about an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Accept the work: the task is completed.
    Proceed,
    /// Try again with feedback on what failed.
    Retry,
    /// The agent asked a question: answer it and resume.
    Clarify,
    /// Park the task for a human, with the reason.
    Escalate,
}

impl Decision {
    /// The name used in JSON and on the terminal.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Proceed => "proceed",
            Decision::Retry => "retry",
            Decision::Clarify => "clarify",
            Decision::Escalate => "escalate",
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A task's identity: its project and its id within the project.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskKey {
    /// The project's name.
    pub project: String,
    /// The task's id, unique within the project.
    pub task: String,
}

impl TaskKey {
    /// A key from its two parts.
    pub fn new(project: impl Into<String>, task: impl Into<String>) -> Self {
        TaskKey { project: project.into(), task: task.into() }
    }

    /// Parses `project/id`; `None` when there is no slash.
    pub fn parse_qualified(s: &str) -> Option<TaskKey> {
        let (p, t) = s.split_once('/')?;
        if p.is_empty() || t.is_empty() {
            return None;
        }
        Some(TaskKey::new(p, t))
    }
}

impl fmt::Display for TaskKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.project, self.task)
    }
}

/// Identifies one attempt at one task.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AttemptRef {
    /// The task.
    pub key: TaskKey,
    /// 1 for the first attempt, counting every attempt the task ever had.
    pub attempt: u32,
}

impl fmt::Display for AttemptRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} attempt {}", self.key, self.attempt)
    }
}

/// The priority of a task that does not say (1 low … 10 high).
pub const DEFAULT_PRIORITY: u8 = 5;

/// What a task asks for, as written in the config or given to `orch task add`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// The project it belongs to.
    pub project: String,
    /// Unique within the project.
    pub id: String,
    /// One line.
    pub title: String,
    /// What to do; reaches the agent verbatim.
    pub description: String,
    /// 1 (low) … 10 (high).
    pub priority: u8,
    /// Ids of tasks in the same project, or `project/id`.
    pub depends_on: Vec<String>,
    /// What must hold for the work to be accepted.
    pub acceptance: Vec<String>,
}

impl TaskSpec {
    /// The task's key.
    pub fn key(&self) -> TaskKey {
        TaskKey::new(&self.project, &self.id)
    }

    /// The keys of the tasks this one depends on, with unqualified ids taken as this project's.
    pub fn dependency_keys(&self) -> Vec<TaskKey> {
        self.depends_on
            .iter()
            .map(|d| TaskKey::parse_qualified(d).unwrap_or_else(|| TaskKey::new(&self.project, d)))
            .collect()
    }
}

/// How a file changed during an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// It did not exist before the attempt.
    Created,
    /// Its content changed.
    Modified,
    /// It existed before and not after.
    Deleted,
}

impl ChangeKind {
    /// The name used in JSON and on the terminal.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Created => "created",
            ChangeKind::Modified => "modified",
            ChangeKind::Deleted => "deleted",
        }
    }
}

/// A content hash (BLAKE3), the key of a blob in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    /// Hashes bytes.
    pub fn of(bytes: &[u8]) -> Self {
        ContentHash(*blake3::hash(bytes).as_bytes())
    }

    /// Lower-case hex, 64 characters.
    pub fn to_hex(&self) -> String {
        blake3::Hash::from(self.0).to_hex().to_string()
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// How serious a validation finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing; does not count against the attempt.
    Info,
    /// Lowers confidence.
    Warning,
    /// The attempt cannot be accepted.
    Error,
}

/// One thing the validator found, with a stable code for scripts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable machine-readable code, e.g. `nonzero_exit`.
    pub code: String,
    /// How serious it is.
    pub severity: Severity,
    /// One sentence with the evidence.
    pub message: String,
}

/// One named factor of a confidence score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Factor {
    /// Stable name, e.g. `checks`.
    pub name: String,
    /// The factor's value in [0, 1].
    pub value: f64,
    /// Its configured weight.
    pub weight: f64,
    /// Why it has this value.
    pub detail: String,
}

impl AgentReport {
    /// All tokens it reports, input, output and cache (saturating: a damaged report never panics).
    pub fn total_tokens(&self) -> u64 {
        self.input_tokens
            .saturating_add(self.output_tokens)
            .saturating_add(self.cache_creation_tokens)
            .saturating_add(self.cache_read_tokens)
    }
}

/// What an agent reported about its own run (Claude Code's final `result` line).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentReport {
    /// `success`, `error_max_turns`, `error_during_execution`, …
    pub subtype: String,
    /// The agent's own error flag.
    pub is_error: bool,
    /// Model turns taken.
    pub num_turns: u32,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Tokens written to the prompt cache.
    pub cache_creation_tokens: u64,
    /// Tokens read from the prompt cache.
    pub cache_read_tokens: u64,
    /// Cost as the agent computed it, USD.
    pub cost_usd: f64,
    /// Tool uses the agent was not permitted, as `Tool: target`.
    pub permission_denials: Vec<String>,
    /// Why it stopped (`completed`, `max_turns`, `api_error`, …).
    pub terminal_reason: String,
    /// The HTTP status of an API error it ended on.
    pub api_error_status: Option<u16>,
}

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// `stdout` or `stderr`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}
