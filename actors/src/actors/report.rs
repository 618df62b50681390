//! The report of one attempt, handed down the pipeline AgentSession → Validator → QualityController →
//! ConfidenceScorer → DecisionEngine → Scheduler, each adding its part.

use std::sync::Arc;

use super::file_monitor::FileChange;
use crate::agent::ToolCall;
use crate::process::EndedBy;
use crate::settings::ProjectSettings;
use crate::types::AgentReport;
use crate::types::{AttemptRef, Decision, Factor, Finding};

/// How the agent process ended, with what it produced.
#[derive(Debug, Clone)]
pub struct AgentOutcome {
    /// Whether the process could be started at all; the error when not.
    pub start_error: Option<String>,
    /// Exit code.
    pub exit_code: Option<i32>,
    /// Signal.
    pub signal: Option<i32>,
    /// Whether orch ended it.
    pub timeout: EndedBy,
    /// Agent wall time in µs.
    pub duration_us: u64,
    /// Bytes on stdout.
    pub stdout_bytes: u64,
    /// Bytes on stderr.
    pub stderr_bytes: u64,
    /// Processes it left behind that orch killed.
    pub orphans_killed: u32,
    /// The agent's final answer.
    pub result: Option<String>,
    /// The session id.
    pub session_id: Option<String>,
    /// The agent's own report, for kinds that end with one.
    pub report: Option<AgentReport>,
    /// This kind ends with a report; its absence is a finding.
    pub expects_report: bool,
    /// The tools it called.
    pub tool_calls: Vec<ToolCall>,
    /// This attempt resumed an earlier session (a clarify).
    pub resumed: bool,
}

/// One check command's result.
#[derive(Debug, Clone)]
pub struct CheckResult {
    /// The shell line.
    pub command: String,
    /// Exit 0 in time.
    pub passed: bool,
    /// Exit code.
    pub exit_code: Option<i32>,
    /// Killed for taking too long.
    pub timed_out: bool,
    /// The tail of its output.
    pub output_tail: String,
}

/// Everything known about an attempt so far.
#[derive(Debug, Clone)]
pub struct AttemptReport {
    /// Which attempt.
    pub attempt: AttemptRef,
    /// The project's settings.
    pub project: Arc<ProjectSettings>,
    /// Attempts counted toward `max_attempts`, this one included.
    pub attempts_in_round: u32,
    /// The task as it was given.
    pub task: Option<crate::types::TaskSpec>,
    /// Tokens and cost of the task's earlier attempts, and how many of the latest failed in a row.
    pub history: History,
    /// From the AgentSession.
    pub outcome: AgentOutcome,
    /// From the FileMonitor: what this attempt changed.
    pub changes: Vec<FileChange>,
    /// From the QualityController: the task's cumulative change since its first attempt (what is judged).
    pub task_changes: Vec<FileChange>,
    /// From the AgentSession: files of the git repository itself (`.git/…`) the attempt changed.
    pub git_changes: Vec<String>,
    /// From the QualityController: the checks run again on the original protected files, when the work changed
    /// them.
    pub pristine: Vec<CheckResult>,
    /// From the Validator.
    pub findings: Vec<Finding>,
    /// From the QualityController.
    pub checks: Vec<CheckResult>,
    /// From the QualityController, when an LLM is configured.
    pub review: Option<Review>,
    /// From the ConfidenceScorer.
    pub score: Option<f64>,
    /// The factors of the score.
    pub factors: Vec<Factor>,
    /// The tag prefix of the attempt's processes, agent and checks ([`crate::process::attempt_tag`]).
    pub process_tag: String,
    /// How the attempt's processes are contained ([`crate::settings::Containment`]).
    pub containment: crate::settings::Containment,
}

impl AttemptReport {
    /// No finding is an error.
    pub fn valid(&self) -> bool {
        !self.findings.iter().any(|f| f.severity == crate::types::Severity::Error)
    }

    /// Every check passed (true when there are none).
    pub fn checks_passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    /// Whether a finding with this code was made.
    pub fn has_finding(&self, code: &str) -> bool {
        self.findings.iter().any(|f| f.code == code)
    }
}

/// What the task's earlier attempts used and how they ended.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// Tokens used before this attempt.
    pub tokens: u64,
    /// Cost before this attempt, USD.
    pub cost_usd: f64,
    /// The latest attempts that failed (retry), in a row.
    pub failures_in_a_row: u32,
    /// An earlier attempt changed files (so the task's cumulative change must be read from the journal).
    pub earlier_changes: bool,
    /// The sequence number of the event that added the task: its events all come after it.
    pub added_seq: u64,
}

/// The LLM's review of an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Review {
    /// It answered within the schema.
    Done {
        /// `accept`.
        accept: bool,
        /// 0 … 100.
        score: u32,
        /// What it found wrong.
        issues: Vec<String>,
        /// Acceptance criteria it judged unmet.
        unmet_acceptance: Vec<String>,
    },
    /// No usable review (unreachable, garbage twice, truncated…): the signal is dropped, confidence lowered.
    Dropped(String),
}

/// The DecisionEngine's conclusion, sent to the Scheduler.
#[derive(Debug, Clone)]
pub struct Conclusion {
    /// The breakpoint that stopped the attempt, if one did: (name, evidence).
    pub breakpoint: Option<(String, String)>,
    /// For a clarify: the LLM answered the question, so the task goes on without a human.
    pub answered: bool,
    /// The decision.
    pub decision: Decision,
    /// One line saying why.
    pub reason: String,
    /// What a retry is told.
    pub feedback: String,
}
