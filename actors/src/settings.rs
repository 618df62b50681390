//! Typed settings handed to the engine. The engine reads no files and no environment: the edge (`orch`'s
//! `config.rs`) builds these from defaults, the config file, `ORCH_*` variables and flags.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::types::TaskSpec;

/// How appends reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// An event is flushed before its append is acknowledged; concurrent appends share one flush.
    Sync,
    /// Appends are acknowledged at once and flushed together in the background.
    Batch,
}

/// The prompts orch writes: the agent's (a template) and the LLM's system prompts.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptTemplates {
    /// The task part of an attempt's prompt; placeholders `{title}`, `{description}` (required: it travels
    /// verbatim), `{acceptance}`, `{checks}`, `{answers}`, `{project}`, `{task}`, `{attempt}`. Feedback of earlier
    /// attempts follows it, trimmed to the token budget.
    pub attempt: String,
    /// The LLM's system prompt for a review.
    pub review_system: String,
    /// The LLM's system prompt for answering an agent's question.
    pub clarify_system: String,
}

/// The placeholders an attempt template may use.
pub const ATTEMPT_PLACEHOLDERS: [&str; 8] =
    ["title", "description", "acceptance", "checks", "answers", "project", "task", "attempt"];

impl Default for PromptTemplates {
    /// The templates in `actors/prompts/`, inside the engine crate so that it can be packaged on its own.
    fn default() -> Self {
        PromptTemplates {
            attempt: include_str!("../prompts/attempt.md").to_string(),
            review_system: include_str!("../prompts/review.md").trim().to_string(),
            clarify_system: include_str!("../prompts/clarify.md").trim().to_string(),
        }
    }
}

/// Everything the engine needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where and how events are stored.
    pub journal: JournalSettings,
    /// The local LLM, if any.
    pub llm: LlmSettings,
    /// Scheduling, scoring and decisions.
    pub orchestration: OrchestrationSettings,
    /// The projects and their tasks.
    pub projects: Vec<ProjectSettings>,
    /// Who hears of what needs a human.
    pub notify: NotifySettings,
}

/// Notifications: a JSON payload when a task escalates or waits for an answer, and when a run ends.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifySettings {
    /// A shell line run with the payload on stdin; empty: none.
    pub command: String,
    /// An `http://` or `https://` URL the payload is POSTed to; empty: none.
    pub webhook: String,
    /// Limit of each delivery.
    pub timeout: Duration,
}

impl Default for NotifySettings {
    fn default() -> Self {
        NotifySettings { command: String::new(), webhook: String::new(), timeout: Duration::from_secs(10) }
    }
}

impl NotifySettings {
    /// Whether anyone is to be notified.
    pub fn enabled(&self) -> bool {
        !self.command.is_empty() || !self.webhook.is_empty()
    }
}

/// Where and how events are stored.
#[derive(Debug, Clone)]
pub struct JournalSettings {
    /// The sled directory.
    pub path: PathBuf,
    /// Flush per append (group commit) or in the background.
    pub durability: Durability,
}

/// Which LLM API, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlmProviderKind {
    /// No LLM: decisions rest on evidence alone.
    None,
    /// Ollama's native API.
    Ollama,
    /// Any OpenAI-compatible server.
    OpenAi,
}

/// The local LLM.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmSettings {
    /// Which API.
    pub provider: LlmProviderKind,
    /// The model to ask.
    pub model: String,
    /// Where the server is.
    pub base_url: String,
    /// Sampling temperature.
    pub temperature: f64,
    /// Limit of one call.
    pub timeout: Duration,
    /// Calls at once.
    pub max_concurrent: usize,
    /// Refuse to run when it cannot be reached.
    pub required: bool,
    /// Sent as a bearer token (openai); never journaled.
    pub api_key: Option<String>,
    /// The environment variable the key was read from (`llm.api_key_env`): removed from the environment of agents,
    /// checks and notify commands unless `[agent.env]` passes it.
    pub api_key_env: String,
    /// Extra tries of a call that failed in transit or with a 429/5xx.
    pub max_retries: u32,
}

impl Default for LlmSettings {
    fn default() -> Self {
        LlmSettings {
            provider: LlmProviderKind::None,
            model: "qwen2.5-coder:32b".into(),
            base_url: "http://127.0.0.1:11434".into(),
            temperature: 0.1,
            timeout: Duration::from_secs(60),
            max_concurrent: 1,
            required: false,
            api_key: None,
            api_key_env: String::new(),
            max_retries: 2,
        }
    }
}

/// The kinds of agent orch can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentKind {
    /// Claude Code in headless stream-json mode.
    ClaudeCode,
    /// aider's non-interactive mode.
    Aider,
    /// Any program: the prompt on stdin, its stdout as the result.
    Command,
}

impl AgentKind {
    /// The name used in config and in the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentKind::ClaudeCode => "claude-code",
            AgentKind::Aider => "aider",
            AgentKind::Command => "command",
        }
    }
}

/// How to run the agent.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// Which adapter.
    pub kind: AgentKind,
    /// The program: a name looked up on PATH, or a path.
    pub program: String,
    /// Extra arguments.
    pub args: Vec<String>,
    /// Wall-clock limit of one attempt.
    pub timeout: Duration,
    /// No output for this long: the session is considered hung.
    pub idle_timeout: Duration,
    /// Extra environment (secrets: never journaled, redacted from everything that is).
    pub env: BTreeMap<String, String>,
    /// Where it may write.
    pub sandbox: SandboxSettings,
    /// The program that is claude's PreToolUse hook (`PROGRAM hook pre-tool-use RULES`): `orch-guard`, or the `orch`
    /// binary. Without one, claude runs without the hook that refuses edits of protected paths.
    pub helper: Option<PathBuf>,
}

/// Weights of the confidence factors.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfidenceWeights {
    /// Share of check commands that passed.
    pub checks: f64,
    /// Validation findings.
    pub validation: f64,
    /// Whether the attempt changed files.
    pub changes: f64,
    /// Earlier attempts lower confidence a little.
    pub attempt: f64,
    /// The LLM's review, when an LLM is configured.
    pub llm_review: f64,
    /// How large and how destructive the change is: many files, deletions.
    pub scope: f64,
}

/// Thresholds of the decision engine.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionSettings {
    /// At or above, with passing checks: proceed.
    pub high_confidence: f64,
    /// Between medium and high: retry; below medium: retry, escalating after `max_attempts`.
    pub medium_confidence: f64,
}

/// Scheduling, scoring and decisions.
#[derive(Debug, Clone, PartialEq)]
pub struct OrchestrationSettings {
    /// Agent sessions at once, all projects together.
    pub max_sessions: usize,
    /// Attempts per task before escalating.
    pub max_attempts: u32,
    /// Decision thresholds.
    pub decision: DecisionSettings,
    /// Confidence factor weights.
    pub confidence: ConfidenceWeights,
    /// Below this confidence a breakpoint is recorded.
    pub confidence_threshold: f64,
    /// The other breakpoints.
    pub breakpoints: Breakpoints,
    /// The prompts.
    pub prompts: PromptTemplates,
    /// Token budget of a prompt (cl100k tokens).
    pub prompt_token_budget: usize,
    /// Bytes of check output kept (the tail).
    pub output_tail_bytes: usize,
    /// Sessions at once per agent provider (`claude-code`, `aider`, `command`); absent: only `max_sessions`.
    pub provider_max_sessions: BTreeMap<String, usize>,
    /// A project whose ready tasks have waited this long without a session goes first, whatever the priorities of
    /// the others: no project is starved.
    pub max_wait: Duration,
    /// How long a provider that reported a rate limit is paused when it did not say until when; doubled for each
    /// rate limit in a row, up to 15 minutes.
    pub rate_limit_pause: Duration,
    /// How the processes of an attempt (agent, tools, checks) are kept from outliving it.
    pub containment: Containment,
}

/// How the processes orch starts are kept from outliving what they were started for ([`crate::cgroup`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Containment {
    /// Each process tree in a cgroup v2 of its own, ended with `cgroup.kill`, where the machine lets orch create
    /// one; else (said once at start, with the reason) the tag sweep alone. The tag sweep runs in both cases.
    #[default]
    Auto,
    /// The tag sweep alone: whatever still carries the process's `ORCH_PROCESS_TAG` is killed. A process that
    /// clears its environment and leaves its process group escapes it.
    Tags,
}

impl Default for OrchestrationSettings {
    /// The same defaults as `config/default.toml` (a test in `orch` checks that they agree).
    fn default() -> Self {
        OrchestrationSettings {
            max_sessions: 4,
            max_attempts: 3,
            decision: DecisionSettings { high_confidence: 0.85, medium_confidence: 0.65 },
            confidence: ConfidenceWeights {
                checks: 0.5,
                validation: 0.25,
                changes: 0.15,
                attempt: 0.1,
                llm_review: 0.3,
                scope: 0.1,
            },
            confidence_threshold: 0.7,
            breakpoints: Breakpoints::default(),
            prompts: PromptTemplates::default(),
            prompt_token_budget: 8000,
            output_tail_bytes: 4096,
            provider_max_sessions: BTreeMap::new(),
            rate_limit_pause: Duration::from_secs(60),
            max_wait: Duration::from_secs(600),
            containment: Containment::Auto,
        }
    }
}

/// When an attempt must stop for a human whatever its confidence. Each hit is journaled (`breakpoint_hit`) and
/// escalates the task with the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Breakpoints {
    /// Escalate after this many failed attempts in a row (0: only `max_attempts` counts).
    pub consecutive_failures: u32,
    /// More deleted files than this in one attempt is destructive.
    pub max_deleted_files: u32,
    /// More changed files than this in one attempt is destructive.
    pub max_changed_files: u32,
    /// Workspace paths (globs) an attempt may change; empty: anywhere in the workspace.
    pub allowed_paths: Vec<String>,
    /// Tokens a task may use over all its attempts (0: no limit).
    pub task_token_budget: u64,
    /// Cost a task may run up over all its attempts, USD (0: no limit).
    pub task_cost_budget_usd: f64,
    /// Tokens each project may use over all its tasks' attempts (0: no limit); reached, its tasks get no new
    /// attempt and are escalated.
    pub project_token_budget: u64,
    /// Cost each project may run up, USD (0: no limit).
    pub project_cost_budget_usd: f64,
    /// Tokens one `orch run` may use, all projects together (0: no limit); reached, no task gets a new attempt.
    pub run_token_budget: u64,
    /// Cost one `orch run` may run up, USD (0: no limit).
    pub run_cost_budget_usd: f64,
    /// A rate limit the agent could not get past is a breakpoint (the task escalates) rather than a pause of its
    /// provider and a retry.
    pub on_rate_limit: bool,
}

impl Default for Breakpoints {
    fn default() -> Self {
        Breakpoints {
            consecutive_failures: 0,
            max_deleted_files: 20,
            max_changed_files: 200,
            allowed_paths: Vec::new(),
            task_token_budget: 0,
            task_cost_budget_usd: 0.0,
            project_token_budget: 0,
            project_cost_budget_usd: 0.0,
            run_token_budget: 0,
            run_cost_budget_usd: 0.0,
            on_rate_limit: false,
        }
    }
}

/// One project.
#[derive(Debug, Clone)]
pub struct ProjectSettings {
    /// Its name, unique.
    pub name: String,
    /// The directory the agent works in (absolute).
    pub workspace: PathBuf,
    /// Create the workspace directory when it does not exist.
    pub create_workspace: bool,
    /// Shell lines run in the workspace after each attempt; all must pass to proceed.
    pub checks: Vec<String>,
    /// Limit of each check.
    pub check_timeout: Duration,
    /// Sessions at once in this project.
    pub max_sessions: usize,
    /// The agent, with the project's overrides applied.
    pub agent: AgentSettings,
    /// Its tasks, as configured.
    pub tasks: Vec<TaskSpec>,
    /// What a retry starts from.
    pub on_retry: OnRetry,
    /// Where each task works.
    pub isolation: Isolation,
    /// With worktrees: what happens to the workspace's branch when a task's work is accepted.
    pub merge: MergeMode,
    /// What the checks judge by, where changes belong, per task what it may change.
    pub judgement: JudgementSettings,
}

impl ProjectSettings {
    /// A project with the defaults for everything but its name, workspace and agent: no checks, one session, a
    /// 10-minute check limit, no configured tasks, work kept on retry, no isolation, derived protected paths.
    pub fn new(name: impl Into<String>, workspace: impl Into<PathBuf>, agent: AgentSettings) -> Self {
        ProjectSettings {
            name: name.into(),
            workspace: workspace.into(),
            create_workspace: false,
            checks: Vec::new(),
            check_timeout: Duration::from_secs(600),
            max_sessions: 1,
            agent,
            tasks: Vec::new(),
            on_retry: OnRetry::default(),
            isolation: Isolation::default(),
            merge: MergeMode::default(),
            judgement: JudgementSettings::default(),
        }
    }
}

impl AgentSettings {
    /// An agent of kind `command`: `program` with `args`, 30 minutes wall clock, 5 minutes without output, in the
    /// Landlock sandbox, no hook program.
    pub fn command(program: impl Into<String>, args: Vec<String>) -> Self {
        AgentSettings {
            kind: AgentKind::Command,
            program: program.into(),
            args,
            timeout: Duration::from_secs(1800),
            idle_timeout: Duration::from_secs(300),
            env: BTreeMap::new(),
            sandbox: SandboxSettings::default(),
            helper: None,
        }
    }
}

/// Where an agent may write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxMode {
    /// Landlock: writes only beneath the workspace, the attempt's temporary directory, the agent's own state and
    /// `writable`.
    #[default]
    Landlock,
    /// Anywhere the user may write.
    None,
}

/// The agent's sandbox.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SandboxSettings {
    /// Which sandbox.
    pub mode: SandboxMode,
    /// More paths the agent may write beneath.
    pub writable: Vec<PathBuf>,
    /// Refuse to run agents where the kernel cannot enforce the sandbox (instead of saying so once and going on).
    pub required: bool,
}

/// The judgement keys of a project: what its checks judge by and where its tasks' changes belong.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JudgementSettings {
    /// Protected paths (globs relative to the workspace): modifying or deleting a pre-existing one is a finding
    /// and makes orch re-run the checks against the originals. `None`: derived from the checks and the usual test
    /// locations ([`crate::judge::paths::default_protected`]).
    pub protected: Option<Vec<String>>,
    /// Where the project's changes belong (globs); empty: anywhere not protected.
    pub scope: Vec<String>,
    /// Per task id: its own scope and the protected paths it may change.
    pub tasks: BTreeMap<String, TaskJudgement>,
}

/// A task's own judgement keys.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskJudgement {
    /// Where the task's changes belong (replaces the project's scope when not empty).
    pub scope: Vec<String>,
    /// Protected paths this task may modify (a task whose job is to change tests).
    pub may_change: Vec<String>,
}

/// Where each task of a project works.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    /// In the workspace itself, one session at a time.
    #[default]
    None,
    /// In a git worktree of its own (branch `orch/<project>/<task>`), so several tasks of the project run at once.
    Worktree,
}

/// With worktrees: what happens to the branch checked out in the workspace when a task's work is accepted (it is
/// always committed on the task's branch first).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MergeMode {
    /// Nothing: the work waits on its branch for a human.
    #[default]
    None,
    /// The task's branch is rebased onto it, then it is fast-forwarded: a linear history.
    FastForward,
    /// A merge commit.
    Merge,
}

/// What a retry starts from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnRetry {
    /// The workspace as the failed attempt left it: the agent builds on its own work, told what failed.
    #[default]
    Keep,
    /// The workspace as it was before the failed attempt: its changes are rolled back exactly.
    Rollback,
}

impl Settings {
    /// The project named `name`.
    pub fn project(&self, name: &str) -> Option<&ProjectSettings> {
        self.projects.iter().find(|p| p.name == name)
    }
}
