//! Agents are plugins: one [`AgentAdapter`] per kind, one module each, found through [`adapter`].
//!
//! An adapter says how to invoke its agent for a prompt (and for resuming a session), and turns the lines the
//! agent prints into [`AgentItem`]s worth journaling plus a final [`ParsedOutcome`].

pub mod aider;
pub mod claude;
pub mod command;

use crate::settings::{AgentKind, AgentSettings};
pub use crate::types::AgentReport;
pub use crate::types::Stream;

/// How to start the agent.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The program.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// What to write to stdin.
    pub stdin: Option<String>,
    /// Environment the adapter itself needs (added after `[agent.env]`).
    pub env: Vec<(String, String)>,
}

/// Something the agent did that is worth a journal event.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentItem {
    /// `stdout`, `stderr`, or an adapter's own item name.
    pub stream: String,
    /// A bounded excerpt.
    pub text: String,
}

/// A tool the agent called, as it said (evidence to compare its claims with).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolCall {
    /// The tool's name (`Write`, `Bash`, …).
    pub name: String,
    /// What it acted on: a file path, a command.
    pub target: String,
    /// The agent's id of the call, to pair it with its result.
    pub id: String,
    /// Whether it succeeded, once its result was seen (`None`: no result reported).
    pub ok: Option<bool>,
    /// A hook refused it before it ran (orch's protected paths).
    pub denied: bool,
    /// The head of its result.
    pub output: String,
}

/// Bytes of a tool call's result kept with it.
pub const TOOL_OUTPUT_BYTES: usize = 2048;

/// What the adapter made of the agent's whole output.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedOutcome {
    /// The agent's final answer.
    pub result: Option<String>,
    /// The session id, for agents that have sessions.
    pub session_id: Option<String>,
    /// This kind ends its output with a report of its own (Claude Code's result line); its absence is a finding.
    pub expects_report: bool,
    /// That report, when there was one.
    pub report: Option<AgentReport>,
    /// The tools it called.
    pub tool_calls: Vec<ToolCall>,
    /// Lines that could not be understood (kept as raw events, never fatal).
    pub unparsed_lines: u32,
}

/// Turns an agent's output into items and an outcome.
pub trait OutputParser: Send {
    /// One line of output.
    fn line(&mut self, stream: Stream, line: &str) -> Option<AgentItem>;
    /// The output has ended.
    fn finish(self: Box<Self>) -> ParsedOutcome;
}

/// One kind of agent.
pub trait AgentAdapter: Send + Sync {
    /// Which kind.
    fn kind(&self) -> AgentKind;
    /// How to run it on `prompt`; `resume` is the session to continue, for kinds that can.
    fn invocation(&self, settings: &AgentSettings, prompt: &str, resume: Option<&str>) -> Invocation;
    /// A fresh parser for one attempt's output.
    fn parser(&self) -> Box<dyn OutputParser>;
    /// Whether a session can be resumed with an answer (`--resume`).
    fn can_resume(&self) -> bool {
        false
    }
}

/// The adapter for a kind.
pub fn adapter(kind: AgentKind) -> &'static dyn AgentAdapter {
    match kind {
        AgentKind::Command => &command::CommandAgent,
        AgentKind::ClaudeCode => &claude::ClaudeCode,
        AgentKind::Aider => &aider::Aider,
    }
}
