//! The configuration file's shape: what each section may hold. Every key of a section is present once the layers
//! are merged (the defaults have them all), so nothing here has a default of its own except the keys of a project
//! or a task, which default to the engine's own.

use std::collections::BTreeMap;

use orch_actors::settings::{Containment, Isolation, MergeMode, OnRetry, SandboxMode};
use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub journal: FileJournal,
    pub prompts: FilePrompts,
    pub llm: FileLlm,
    pub agent: FileAgent,
    pub orchestration: FileOrchestration,
    pub notify: FileNotify,
    #[serde(default)]
    pub projects: Vec<FileProject>,
}

/// `[journal]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileJournal {
    pub path: String,
    pub durability: Spanned<String>,
}

/// `[prompts]`: template files; empty: the built-in ones.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePrompts {
    pub attempt: Spanned<String>,
    pub review: Spanned<String>,
    pub clarify: Spanned<String>,
}

/// `[llm]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLlm {
    pub provider: Spanned<String>,
    pub model: String,
    pub base_url: String,
    pub temperature: f64,
    pub timeout_secs: u64,
    pub max_concurrent: usize,
    pub required: bool,
    pub api_key_env: Spanned<String>,
    pub max_retries: u32,
}

/// `[agent]`: the agent every project uses unless it says otherwise.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAgent {
    pub kind: Spanned<String>,
    pub program: String,
    pub args: Vec<String>,
    pub timeout_secs: u64,
    pub idle_timeout_secs: u64,
    pub env: BTreeMap<String, String>,
    pub sandbox: SandboxMode,
    pub writable: Vec<String>,
    pub sandbox_required: bool,
}

/// `[projects.agent]`: a project's overrides of the default agent; any key may be given.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileAgentOverride {
    pub kind: Option<Spanned<String>>,
    pub program: Option<String>,
    pub args: Option<Vec<String>>,
    pub timeout_secs: Option<u64>,
    pub idle_timeout_secs: Option<u64>,
    pub env: Option<BTreeMap<String, String>>,
    pub sandbox: Option<SandboxMode>,
    pub writable: Option<Vec<String>>,
    pub sandbox_required: Option<bool>,
}

/// `[orchestration]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileOrchestration {
    pub max_sessions: usize,
    pub max_attempts: u32,
    pub prompt_token_budget: usize,
    pub output_tail_bytes: usize,
    pub decision: FileDecision,
    pub breakpoints: FileBreakpoints,
    pub confidence: FileConfidence,
    pub provider_max_sessions: BTreeMap<String, Spanned<usize>>,
    pub rate_limit_pause_secs: u64,
    pub max_wait_secs: Spanned<f64>,
    pub containment: Containment,
}

/// `[orchestration.decision]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDecision {
    pub high_confidence: Spanned<f64>,
    pub medium_confidence: Spanned<f64>,
}

/// `[orchestration.breakpoints]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileBreakpoints {
    pub confidence_threshold: Spanned<f64>,
    pub consecutive_failures: u32,
    pub max_deleted_files: u32,
    pub max_changed_files: u32,
    pub allowed_paths: Spanned<Vec<String>>,
    pub task_token_budget: u64,
    pub task_cost_budget_usd: Spanned<f64>,
    pub project_token_budget: u64,
    pub project_cost_budget_usd: Spanned<f64>,
    pub run_token_budget: u64,
    pub run_cost_budget_usd: Spanned<f64>,
    pub on_rate_limit: bool,
}

/// `[orchestration.confidence]`: the weights of the evidence.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfidence {
    pub checks: Spanned<f64>,
    pub validation: Spanned<f64>,
    pub changes: Spanned<f64>,
    pub attempt: Spanned<f64>,
    pub llm_review: Spanned<f64>,
    pub scope: Spanned<f64>,
}

/// `[notify]`: who hears of what needs a human.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileNotify {
    pub command: String,
    pub webhook: Spanned<String>,
    pub timeout_secs: u64,
}

/// A project's defaults: the engine's.
fn project_defaults() -> orch_actors::settings::ProjectSettings {
    orch_actors::settings::ProjectSettings::new("", "", orch_actors::settings::AgentSettings::command("", vec![]))
}

fn default_check_timeout() -> u64 {
    project_defaults().check_timeout.as_secs()
}

fn default_max_sessions() -> Spanned<usize> {
    Spanned::new(0..0, project_defaults().max_sessions)
}

fn default_true() -> bool {
    true
}

fn default_spanned<T: Default>() -> Spanned<T> {
    Spanned::new(0..0, T::default())
}

fn default_priority() -> Spanned<i64> {
    Spanned::new(0..0, i64::from(orch_actors::types::DEFAULT_PRIORITY))
}

/// `[[projects]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileProject {
    pub name: Spanned<String>,
    pub workspace: Spanned<String>,
    #[serde(default)]
    pub create_workspace: bool,
    #[serde(default)]
    pub checks: Vec<String>,
    #[serde(default = "default_check_timeout")]
    pub check_timeout_secs: u64,
    #[serde(default = "default_max_sessions")]
    pub max_sessions: Spanned<usize>,
    #[serde(default)]
    pub agent: FileAgentOverride,
    #[serde(default)]
    pub tasks: Vec<FileTask>,
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default)]
    pub on_retry: OnRetry,
    #[serde(default = "default_spanned")]
    pub isolation: Spanned<Isolation>,
    #[serde(default = "default_spanned")]
    pub merge: Spanned<MergeMode>,
    #[serde(default)]
    pub protected: Option<Spanned<Vec<String>>>,
    #[serde(default = "default_spanned")]
    pub scope: Spanned<Vec<String>>,
}

/// `[[projects.tasks]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTask {
    pub id: Spanned<String>,
    pub title: Spanned<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default = "default_priority")]
    pub priority: Spanned<i64>,
    #[serde(default)]
    pub depends_on: Vec<Spanned<String>>,
    #[serde(default)]
    pub acceptance: Vec<String>,
    #[serde(default = "default_spanned")]
    pub scope: Spanned<Vec<String>>,
    #[serde(default = "default_spanned")]
    pub may_change: Spanned<Vec<String>>,
}
