//! Configuration: built-in defaults → the TOML file → `ORCH_*` environment variables → command-line flags, into
//! the engine's typed [`Settings`]. An unknown key, a wrong type or an impossible value is an error naming the file,
//! the line and the key. Relative paths are relative to the config file's own directory.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use orch_actors::settings::{
    AgentKind, AgentSettings, ConfidenceWeights, DecisionSettings, Durability, JournalSettings, LlmProviderKind,
    LlmSettings, OrchestrationSettings, ProjectSettings, Settings,
};
use orch_actors::TaskSpec;
use serde::Deserialize;
use toml::Spanned;

/// The commented default configuration; parsing it gives exactly the built-in defaults (a test checks).
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// A configuration error, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or `environment`, or `command line`).
    pub source: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// The key, dotted, when known.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.source)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        write!(f, ": ")?;
        if let Some(k) = &self.key {
            write!(f, "key `{k}`: ")?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for ConfigError {}

fn default_true() -> bool {
    true
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileConfig {
    journal: FileJournal,
    prompts: FilePrompts,
    llm: FileLlm,
    agent: FileAgent,
    orchestration: FileOrchestration,
    notify: FileNotify,
    projects: Vec<FileProject>,
}

/// `[notify]`: who hears of what needs a human.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
struct FileNotify {
    command: String,
    webhook: Spanned<String>,
    timeout_secs: u64,
}

impl Default for FileNotify {
    fn default() -> Self {
        FileNotify { command: String::new(), webhook: Spanned::new(0..0, String::new()), timeout_secs: 10 }
    }
}

/// Prompt template files; empty: the built-in ones (`config/prompts/`).
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
struct FilePrompts {
    attempt: Spanned<String>,
    review: Spanned<String>,
    clarify: Spanned<String>,
}

impl Default for FilePrompts {
    fn default() -> Self {
        let empty = || Spanned::new(0..0, String::new());
        FilePrompts { attempt: empty(), review: empty(), clarify: empty() }
    }
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
struct FileJournal {
    path: String,
    durability: Spanned<String>,
}

impl Default for FileJournal {
    fn default() -> Self {
        FileJournal { path: ".orch/journal".into(), durability: Spanned::new(0..0, "sync".into()) }
    }
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
struct FileLlm {
    provider: Spanned<String>,
    model: String,
    base_url: String,
    temperature: f64,
    timeout_secs: u64,
    max_concurrent: usize,
    required: bool,
    api_key_env: String,
    max_retries: u32,
}

impl Default for FileLlm {
    fn default() -> Self {
        FileLlm {
            provider: Spanned::new(0..0, "none".into()),
            model: "qwen2.5-coder:32b".into(),
            base_url: "http://127.0.0.1:11434".into(),
            temperature: 0.1,
            timeout_secs: 60,
            max_concurrent: 1,
            required: false,
            api_key_env: String::new(),
            max_retries: 2,
        }
    }
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
struct FileAgent {
    kind: Spanned<String>,
    program: String,
    args: Vec<String>,
    timeout_secs: u64,
    idle_timeout_secs: u64,
    env: BTreeMap<String, String>,
    sandbox: orch_actors::settings::SandboxMode,
    writable: Vec<String>,
    sandbox_required: bool,
}

impl Default for FileAgent {
    fn default() -> Self {
        FileAgent {
            kind: Spanned::new(0..0, "claude-code".into()),
            program: "claude".into(),
            args: Vec::new(),
            timeout_secs: 1800,
            idle_timeout_secs: 300,
            env: BTreeMap::new(),
            sandbox: orch_actors::settings::SandboxMode::Landlock,
            writable: Vec::new(),
            sandbox_required: false,
        }
    }
}

/// A project's overrides of the default agent: any key may be given.
#[derive(Debug, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
struct FileAgentOverride {
    kind: Option<Spanned<String>>,
    program: Option<String>,
    args: Option<Vec<String>>,
    timeout_secs: Option<u64>,
    idle_timeout_secs: Option<u64>,
    env: Option<BTreeMap<String, String>>,
    sandbox: Option<orch_actors::settings::SandboxMode>,
    writable: Option<Vec<String>>,
    sandbox_required: Option<bool>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
struct FileOrchestration {
    max_sessions: usize,
    max_attempts: u32,
    prompt_token_budget: usize,
    output_tail_bytes: usize,
    decision: FileDecision,
    breakpoints: FileBreakpoints,
    confidence: FileConfidence,
    provider_max_sessions: BTreeMap<String, Spanned<usize>>,
    rate_limit_pause_secs: u64,
    max_wait_secs: f64,
}

impl Default for FileOrchestration {
    fn default() -> Self {
        FileOrchestration {
            max_sessions: 4,
            max_attempts: 3,
            prompt_token_budget: 8000,
            output_tail_bytes: 4096,
            decision: FileDecision::default(),
            breakpoints: FileBreakpoints::default(),
            confidence: FileConfidence::default(),
            provider_max_sessions: BTreeMap::new(),
            rate_limit_pause_secs: 60,
            max_wait_secs: 600.0,
        }
    }
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
struct FileDecision {
    high_confidence: Spanned<f64>,
    medium_confidence: Spanned<f64>,
}

impl Default for FileDecision {
    fn default() -> Self {
        FileDecision { high_confidence: Spanned::new(0..0, 0.85), medium_confidence: Spanned::new(0..0, 0.65) }
    }
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
struct FileBreakpoints {
    confidence_threshold: Spanned<f64>,
    consecutive_failures: u32,
    max_deleted_files: u32,
    max_changed_files: u32,
    allowed_paths: Vec<Spanned<String>>,
    task_token_budget: u64,
    task_cost_budget_usd: Spanned<f64>,
    project_token_budget: u64,
    project_cost_budget_usd: Spanned<f64>,
    run_token_budget: u64,
    run_cost_budget_usd: Spanned<f64>,
    on_rate_limit: bool,
}

impl Default for FileBreakpoints {
    fn default() -> Self {
        let d = orch_actors::settings::Breakpoints::default();
        FileBreakpoints {
            confidence_threshold: Spanned::new(0..0, 0.7),
            consecutive_failures: d.consecutive_failures,
            max_deleted_files: d.max_deleted_files,
            max_changed_files: d.max_changed_files,
            allowed_paths: Vec::new(),
            task_token_budget: d.task_token_budget,
            task_cost_budget_usd: Spanned::new(0..0, d.task_cost_budget_usd),
            project_token_budget: d.project_token_budget,
            project_cost_budget_usd: Spanned::new(0..0, d.project_cost_budget_usd),
            run_token_budget: d.run_token_budget,
            run_cost_budget_usd: Spanned::new(0..0, d.run_cost_budget_usd),
            on_rate_limit: d.on_rate_limit,
        }
    }
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
struct FileConfidence {
    checks: Spanned<f64>,
    validation: Spanned<f64>,
    changes: Spanned<f64>,
    attempt: Spanned<f64>,
    llm_review: Spanned<f64>,
    scope: Spanned<f64>,
}

impl Default for FileConfidence {
    fn default() -> Self {
        FileConfidence {
            checks: Spanned::new(0..0, 0.5),
            validation: Spanned::new(0..0, 0.25),
            changes: Spanned::new(0..0, 0.15),
            attempt: Spanned::new(0..0, 0.1),
            llm_review: Spanned::new(0..0, 0.3),
            scope: Spanned::new(0..0, 0.1),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileProject {
    name: Spanned<String>,
    workspace: Spanned<String>,
    #[serde(default)]
    create_workspace: bool,
    #[serde(default)]
    checks: Vec<String>,
    #[serde(default = "default_check_timeout")]
    check_timeout_secs: u64,
    #[serde(default = "default_one")]
    max_sessions: Spanned<usize>,
    #[serde(default)]
    agent: FileAgentOverride,
    #[serde(default)]
    tasks: Vec<FileTask>,
    #[serde(default = "default_true")]
    enabled: bool,
    #[serde(default)]
    on_retry: orch_actors::settings::OnRetry,
    #[serde(default = "default_spanned")]
    isolation: Spanned<orch_actors::settings::Isolation>,
    #[serde(default = "default_spanned")]
    merge: Spanned<orch_actors::settings::MergeMode>,
    #[serde(default)]
    protected: Option<Spanned<Vec<String>>>,
    #[serde(default = "default_spanned")]
    scope: Spanned<Vec<String>>,
}

fn default_check_timeout() -> u64 {
    600
}

fn default_spanned<T: Default>() -> Spanned<T> {
    Spanned::new(0..0, T::default())
}

fn default_one() -> Spanned<usize> {
    Spanned::new(0..0, 1)
}

fn default_priority() -> Spanned<i64> {
    Spanned::new(0..0, 5)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTask {
    id: Spanned<String>,
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default = "default_priority")]
    priority: Spanned<i64>,
    #[serde(default)]
    depends_on: Vec<Spanned<String>>,
    #[serde(default)]
    acceptance: Vec<String>,
    #[serde(default = "default_spanned")]
    scope: Spanned<Vec<String>>,
    #[serde(default = "default_spanned")]
    may_change: Spanned<Vec<String>>,
}

/// Checks that every glob of a list reads, naming the first that does not.
fn check_globs(source: &str, text: &str, globs: &Spanned<Vec<String>>, key: &str) -> Result<(), ConfigError> {
    for g in globs.get_ref() {
        orch_actors::judge::paths::glob(g).map_err(|e| at(source, text, globs, key, e))?;
    }
    Ok(())
}

/// The program that is claude's hook: `orch-guard` beside this binary, which starts fastest, else this binary itself
/// (it has the same hidden subcommand).
fn helper_program() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let guard = exe.with_file_name("orch-guard");
    Some(if guard.is_file() { guard } else { exe })
}

/// Values given on the command line, applied last.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--max-sessions N`.
    pub max_sessions: Option<usize>,
    /// `--durability sync|batch`.
    pub durability: Option<String>,
}

/// The LLM section, validated (the engine uses it from the LLM issue on).
#[derive(Debug, Clone, PartialEq)]
pub struct LlmConfig {
    /// `none`, `ollama` or `openai`.
    pub provider: String,
    /// Model name.
    pub model: String,
    /// Server URL.
    pub base_url: String,
}

/// A loaded configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from, if any.
    pub path: Option<PathBuf>,
    /// The engine's settings.
    pub settings: Settings,
    /// The LLM section.
    pub llm: LlmConfig,
}

/// Which file to read: `--config`, else `$ORCH_CONFIG`, else `./orch.toml`.
pub fn locate(flag: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = flag {
        return Some(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("ORCH_CONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let local = PathBuf::from("orch.toml");
    local.exists().then_some(local)
}

/// Loads the configuration from `path` (or defaults only), the process environment and `overrides`.
pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    load_with_env(path, &env, overrides)
}

/// As [`load`], with the environment given (for tests).
pub fn load_with_env(
    path: Option<&Path>,
    env: &[(String, String)],
    overrides: &Overrides,
) -> Result<Config, ConfigError> {
    let (text, source, base_dir) = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| ConfigError {
                source: p.display().to_string(),
                line: None,
                column: None,
                key: None,
                message: format!("cannot read the config file: {e}"),
            })?;
            let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
            let dir = abs.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
            (text, p.display().to_string(), dir)
        }
        None => (String::new(), "(defaults)".to_string(), std::env::current_dir().unwrap_or_default()),
    };
    let file: FileConfig = toml::from_str(&text).map_err(|e| toml_error(&source, &text, &e))?;
    let (file, llm, env_text) = apply_env(file, &text, &source, env)?;
    // Values set by the environment are reported against it, not against lines of the file.
    let (text, source) = match env_text {
        Some((t, names)) => (t, format!("environment ({names})")),
        None => (text, source),
    };
    let mut settings = resolve(file, &text, &source, &base_dir, env).map_err(|mut e| {
        if e.source.starts_with("environment") {
            e.line = None;
            e.column = None;
        }
        e
    })?;
    if let Some(n) = overrides.max_sessions {
        if n == 0 {
            return Err(flag_error("--max-sessions", "must be at least 1"));
        }
        settings.orchestration.max_sessions = n;
    }
    if let Some(d) = &overrides.durability {
        settings.journal.durability = parse_durability(d).ok_or_else(|| {
            flag_error("--durability", &format!("`{d}` is not a durability: use \"sync\" or \"batch\""))
        })?;
    }
    // The engine's own rules, whoever gives it settings; an error is mapped back to the key's line.
    settings.validate().map_err(|e| ConfigError {
        line: find_key_line(&text, &e.key),
        column: None,
        key: Some(e.key.clone()),
        message: e.message,
        source: source.clone(),
    })?;
    Ok(Config { path: path.map(Path::to_path_buf), settings, llm })
}

fn flag_error(flag: &str, message: &str) -> ConfigError {
    ConfigError {
        source: "command line".into(),
        line: None,
        column: None,
        key: Some(flag.into()),
        message: message.into(),
    }
}

fn parse_durability(s: &str) -> Option<Durability> {
    match s {
        "sync" => Some(Durability::Sync),
        "batch" => Some(Durability::Batch),
        _ => None,
    }
}

/// Applies `ORCH_SECTION__KEY=value` variables (`__` separates levels; the value is read as TOML, or as a
/// string when it is not valid TOML).
/// The file with the environment applied, its LLM section, and — when variables applied — the merged text and
/// the variables' names.
type Layered = (FileConfig, LlmConfig, Option<(String, String)>);

fn apply_env(file: FileConfig, text: &str, source: &str, env: &[(String, String)]) -> Result<Layered, ConfigError> {
    let vars: Vec<&(String, String)> = env.iter().filter(|(k, _)| k.starts_with("ORCH_") && k.contains("__")).collect();
    let mut env_text = None;
    let file = if vars.is_empty() {
        file
    } else {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| toml_error(source, text, &e))?;
        for (k, v) in &vars {
            let path: Vec<String> = k["ORCH_".len()..].split("__").map(|s| s.to_ascii_lowercase()).collect();
            let value = toml::from_str::<toml::Table>(&format!("v = {v}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(v.clone()));
            let mut cur = &mut table;
            for seg in &path[..path.len() - 1] {
                let entry = cur.entry(seg.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
                cur = match entry {
                    toml::Value::Table(t) => t,
                    _ => {
                        return Err(ConfigError {
                            source: format!("environment variable {k}"),
                            line: None,
                            column: None,
                            key: Some(path.join(".")),
                            message: format!("`{seg}` is not a table"),
                        })
                    }
                };
            }
            cur.insert(path[path.len() - 1].clone(), value);
        }
        let names: Vec<&str> = vars.iter().map(|(k, _)| k.as_str()).collect();
        let env_error = |message: String| ConfigError {
            source: format!("environment ({})", names.join(", ")),
            line: None,
            column: None,
            key: None,
            message,
        };
        // Through text again, so that values keep spans for the checks that follow.
        let merged = toml::to_string(&table).map_err(|e| env_error(e.to_string()))?;
        let parsed = toml::from_str::<FileConfig>(&merged).map_err(|e| {
            let mut err = env_error(e.message().trim().to_string());
            err.key = e.span().and_then(|s| key_at(&merged, s.start));
            err
        })?;
        env_text = Some((merged, names.join(", ")));
        parsed
    };
    let llm = LlmConfig {
        provider: file.llm.provider.get_ref().clone(),
        model: file.llm.model.clone(),
        base_url: file.llm.base_url.clone(),
    };
    Ok((file, llm, env_text))
}

/// Turns a toml error into one that names the file, line, column and key.
fn toml_error(source: &str, text: &str, e: &toml::de::Error) -> ConfigError {
    let (line, column, key) = match e.span() {
        Some(span) => {
            let (l, c) = line_col(text, span.start);
            (Some(l), Some(c), key_at(text, span.start))
        }
        None => (None, None, None),
    };
    ConfigError { source: source.to_string(), line, column, key, message: e.message().trim().to_string() }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map(|s| s.chars().count()).unwrap_or(0) + 1;
    (line, col)
}

/// The dotted key written at `offset`: the table header in force there plus the key on that line.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line_end = text[offset..].find('\n').map(|i| offset + i).unwrap_or(text.len());
    let line = &text[line_start..line_end];
    // The offset is on a table header itself (`[[hostz]]`): that table is the key, not the one before it.
    if line.trim_start().starts_with('[') {
        return Some(line.trim().trim_matches(|c| c == '[' || c == ']').trim().to_string());
    }
    let header = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    let key = line.split_once('=').map(|(k, _)| k.trim().trim_matches('"').to_string());
    match (header, key) {
        (Some(h), Some(k)) if !k.is_empty() && !line.trim_start().starts_with('[') => Some(format!("{h}.{k}")),
        (None, Some(k)) if !k.is_empty() => Some(k),
        (Some(h), _) => Some(h),
        _ => None,
    }
}

/// An error at a value whose span is known (a zero span means a default or an environment value).
fn at<T>(source: &str, text: &str, spanned: &Spanned<T>, key: &str, message: String) -> ConfigError {
    let span = spanned.span();
    let (line, column) = if span.end > 0 && span.start < text.len() {
        let (l, c) = line_col(text, span.start);
        (Some(l), Some(c))
    } else {
        (None, None)
    };
    ConfigError { source: source.to_string(), line, column, key: Some(key.to_string()), message }
}

fn resolve_path(base: &Path, p: &str) -> PathBuf {
    let path = PathBuf::from(p);
    if path.is_absolute() {
        path
    } else {
        base.join(path)
    }
}

fn agent_kind(s: &str) -> Option<AgentKind> {
    match s {
        "claude-code" => Some(AgentKind::ClaudeCode),
        "aider" => Some(AgentKind::Aider),
        "command" => Some(AgentKind::Command),
        _ => None,
    }
}

/// A program given with a slash is a path relative to the config file; a bare name is looked up on PATH.
fn resolve_program(base: &Path, program: &str) -> String {
    if program.contains('/') {
        resolve_path(base, program).display().to_string()
    } else {
        program.to_string()
    }
}

fn fraction(source: &str, text: &str, v: &Spanned<f64>, key: &str) -> Result<f64, ConfigError> {
    let x = *v.get_ref();
    if !(0.0..=1.0).contains(&x) {
        return Err(at(source, text, v, key, format!("{x} is outside 0.0 ..= 1.0")));
    }
    Ok(x)
}

fn resolve(
    file: FileConfig,
    text: &str,
    source: &str,
    base: &Path,
    env: &[(String, String)],
) -> Result<Settings, ConfigError> {
    let plain = |key: &str, message: String| ConfigError {
        source: source.to_string(),
        line: find_key_line(text, key),
        column: None,
        key: Some(key.to_string()),
        message,
    };
    let durability = parse_durability(file.journal.durability.get_ref()).ok_or_else(|| {
        at(
            source,
            text,
            &file.journal.durability,
            "journal.durability",
            format!("`{}` is not a durability: use \"sync\" or \"batch\"", file.journal.durability.get_ref()),
        )
    })?;
    let provider = file.llm.provider.get_ref().as_str();
    if !matches!(provider, "none" | "ollama" | "openai") {
        return Err(at(
            source,
            text,
            &file.llm.provider,
            "llm.provider",
            format!("`{provider}` is not a provider: use \"none\", \"ollama\" or \"openai\""),
        ));
    }
    if file.llm.max_concurrent == 0 {
        return Err(plain("llm.max_concurrent", "must be at least 1".into()));
    }
    let o = &file.orchestration;
    if o.max_sessions == 0 {
        return Err(plain("orchestration.max_sessions", "must be at least 1".into()));
    }
    if o.max_attempts == 0 {
        return Err(plain("orchestration.max_attempts", "must be at least 1".into()));
    }
    if o.prompt_token_budget < 256 {
        return Err(plain("orchestration.prompt_token_budget", "must be at least 256 tokens".into()));
    }
    let high = fraction(source, text, &o.decision.high_confidence, "orchestration.decision.high_confidence")?;
    let medium = fraction(source, text, &o.decision.medium_confidence, "orchestration.decision.medium_confidence")?;
    if medium > high {
        return Err(at(
            source,
            text,
            &o.decision.medium_confidence,
            "orchestration.decision.medium_confidence",
            format!("{medium} is above high_confidence ({high})"),
        ));
    }
    let threshold =
        fraction(source, text, &o.breakpoints.confidence_threshold, "orchestration.breakpoints.confidence_threshold")?;
    let prompts = prompt_templates(&file.prompts, text, source, base)?;
    let b = &o.breakpoints;
    for g in &b.allowed_paths {
        if let Err(e) = globset::Glob::new(g.get_ref()) {
            return Err(at(
                source,
                text,
                g,
                "orchestration.breakpoints.allowed_paths",
                format!("`{}` is not a glob: {e}", g.get_ref()),
            ));
        }
    }
    for (v, key) in [
        (&b.task_cost_budget_usd, "orchestration.breakpoints.task_cost_budget_usd"),
        (&b.project_cost_budget_usd, "orchestration.breakpoints.project_cost_budget_usd"),
        (&b.run_cost_budget_usd, "orchestration.breakpoints.run_cost_budget_usd"),
    ] {
        if *v.get_ref() < 0.0 {
            return Err(at(source, text, v, key, "must not be negative".into()));
        }
    }
    let breakpoints = orch_actors::settings::Breakpoints {
        consecutive_failures: b.consecutive_failures,
        max_deleted_files: b.max_deleted_files,
        max_changed_files: b.max_changed_files,
        allowed_paths: b.allowed_paths.iter().map(|g| g.get_ref().clone()).collect(),
        task_token_budget: b.task_token_budget,
        task_cost_budget_usd: *b.task_cost_budget_usd.get_ref(),
        project_token_budget: b.project_token_budget,
        project_cost_budget_usd: *b.project_cost_budget_usd.get_ref(),
        run_token_budget: b.run_token_budget,
        run_cost_budget_usd: *b.run_cost_budget_usd.get_ref(),
        on_rate_limit: b.on_rate_limit,
    };
    let c = &o.confidence;
    let weights = ConfidenceWeights {
        checks: fraction(source, text, &c.checks, "orchestration.confidence.checks")?,
        validation: fraction(source, text, &c.validation, "orchestration.confidence.validation")?,
        changes: fraction(source, text, &c.changes, "orchestration.confidence.changes")?,
        attempt: fraction(source, text, &c.attempt, "orchestration.confidence.attempt")?,
        llm_review: fraction(source, text, &c.llm_review, "orchestration.confidence.llm_review")?,
        scope: fraction(source, text, &c.scope, "orchestration.confidence.scope")?,
    };
    if weights.checks + weights.validation + weights.changes + weights.attempt <= 0.0 {
        return Err(plain("orchestration.confidence", "the weights add up to 0".into()));
    }
    let default_kind = agent_kind(file.agent.kind.get_ref()).ok_or_else(|| {
        at(
            source,
            text,
            &file.agent.kind,
            "agent.kind",
            format!(
                "`{}` is not an agent kind: use \"claude-code\", \"aider\" or \"command\"",
                file.agent.kind.get_ref()
            ),
        )
    })?;
    let default_agent = AgentSettings {
        kind: default_kind,
        program: resolve_program(base, &file.agent.program),
        args: file.agent.args.clone(),
        timeout: Duration::from_secs(file.agent.timeout_secs),
        idle_timeout: Duration::from_secs(file.agent.idle_timeout_secs),
        env: file.agent.env.clone(),
        sandbox: orch_actors::settings::SandboxSettings {
            mode: file.agent.sandbox,
            writable: file.agent.writable.iter().map(|w| resolve_path(base, w)).collect(),
            required: file.agent.sandbox_required,
        },
        helper: helper_program(),
    };

    let mut projects = Vec::new();
    let mut names = HashSet::new();
    for p in &file.projects {
        let name = p.name.get_ref();
        if !valid_id(name) {
            return Err(at(
                source,
                text,
                &p.name,
                "projects.name",
                format!("`{name}` is not a valid name (letters, digits, `-`, `_`, `.`)"),
            ));
        }
        if !names.insert(name.clone()) {
            return Err(at(source, text, &p.name, "projects.name", format!("project `{name}` is defined twice")));
        }
        if !p.enabled {
            continue;
        }
        if *p.max_sessions.get_ref() == 0 {
            return Err(at(source, text, &p.max_sessions, "projects.max_sessions", "must be at least 1".into()));
        }
        let mut agent = default_agent.clone();
        let ov = &p.agent;
        if let Some(k) = &ov.kind {
            agent.kind = agent_kind(k.get_ref()).ok_or_else(|| {
                at(source, text, k, "projects.agent.kind", format!("`{}` is not an agent kind", k.get_ref()))
            })?;
        }
        if let Some(prog) = &ov.program {
            agent.program = resolve_program(base, prog);
        }
        if let Some(a) = &ov.args {
            agent.args = a.clone();
        }
        if let Some(t) = ov.timeout_secs {
            agent.timeout = Duration::from_secs(t);
        }
        if let Some(t) = ov.idle_timeout_secs {
            agent.idle_timeout = Duration::from_secs(t);
        }
        if let Some(env) = &ov.env {
            agent.env.extend(env.clone());
        }
        if let Some(mode) = ov.sandbox {
            agent.sandbox.mode = mode;
        }
        if let Some(w) = &ov.writable {
            agent.sandbox.writable = w.iter().map(|w| resolve_path(base, w)).collect();
        }
        if let Some(r) = ov.sandbox_required {
            agent.sandbox.required = r;
        }
        let workspace = resolve_path(base, p.workspace.get_ref());
        if !workspace.is_dir() && !p.create_workspace {
            return Err(at(
                source,
                text,
                &p.workspace,
                "projects.workspace",
                format!(
                    "{} is not a directory (set create_workspace = true to have orch create it)",
                    workspace.display()
                ),
            ));
        }
        use orch_actors::settings::{Isolation, MergeMode};
        if *p.isolation.get_ref() == Isolation::Worktree && !orch_actors::git::is_repository(&workspace) {
            return Err(at(
                source,
                text,
                &p.isolation,
                "projects.isolation",
                format!(
                    "`worktree` needs a git repository with a commit, and {} is not one (git init, commit, or use \"none\")",
                    workspace.display()
                ),
            ));
        }
        if *p.merge.get_ref() != MergeMode::None && *p.isolation.get_ref() != Isolation::Worktree {
            return Err(at(
                source,
                text,
                &p.merge,
                "projects.merge",
                "merge applies to isolation = \"worktree\" only".into(),
            ));
        }
        let mut judgement = orch_actors::settings::JudgementSettings::default();
        if let Some(protected) = &p.protected {
            check_globs(source, text, protected, "projects.protected")?;
            judgement.protected = Some(protected.get_ref().clone());
        }
        check_globs(source, text, &p.scope, "projects.scope")?;
        judgement.scope = p.scope.get_ref().clone();
        let mut tasks = Vec::new();
        let mut ids = HashSet::new();
        for t in &p.tasks {
            let id = t.id.get_ref();
            if !valid_id(id) {
                return Err(at(
                    source,
                    text,
                    &t.id,
                    "projects.tasks.id",
                    format!("`{id}` is not a valid id (letters, digits, `-`, `_`, `.`)"),
                ));
            }
            if !ids.insert(id.clone()) {
                return Err(at(
                    source,
                    text,
                    &t.id,
                    "projects.tasks.id",
                    format!("task `{id}` is defined twice in project `{name}`"),
                ));
            }
            let pr = *t.priority.get_ref();
            if !(1..=10).contains(&pr) {
                return Err(at(
                    source,
                    text,
                    &t.priority,
                    "projects.tasks.priority",
                    format!("{pr} is outside 1 ..= 10"),
                ));
            }
            check_globs(source, text, &t.scope, "projects.tasks.scope")?;
            check_globs(source, text, &t.may_change, "projects.tasks.may_change")?;
            if !t.scope.get_ref().is_empty() || !t.may_change.get_ref().is_empty() {
                judgement.tasks.insert(
                    id.clone(),
                    orch_actors::settings::TaskJudgement {
                        scope: t.scope.get_ref().clone(),
                        may_change: t.may_change.get_ref().clone(),
                    },
                );
            }
            tasks.push(TaskSpec {
                project: name.clone(),
                id: id.clone(),
                title: t.title.clone(),
                description: if t.description.is_empty() { t.title.clone() } else { t.description.clone() },
                priority: pr as u8,
                depends_on: t.depends_on.iter().map(|d| d.get_ref().clone()).collect(),
                acceptance: t.acceptance.clone(),
            });
        }
        projects.push(ProjectSettings {
            name: name.clone(),
            workspace,
            create_workspace: p.create_workspace,
            checks: p.checks.clone(),
            check_timeout: Duration::from_secs(p.check_timeout_secs),
            max_sessions: *p.max_sessions.get_ref(),
            agent,
            tasks,
            on_retry: p.on_retry,
            isolation: *p.isolation.get_ref(),
            merge: *p.merge.get_ref(),
            judgement,
        });
    }
    // Dependencies name tasks that exist in the config (the journal may know more: checked again at run time).
    let known: HashSet<String> =
        projects.iter().flat_map(|p| p.tasks.iter().map(|t| format!("{}/{}", t.project, t.id))).collect();
    for fp in &file.projects {
        for t in &fp.tasks {
            for d in &t.depends_on {
                let full = if d.get_ref().contains('/') {
                    d.get_ref().clone()
                } else {
                    format!("{}/{}", fp.name.get_ref(), d.get_ref())
                };
                if full == format!("{}/{}", fp.name.get_ref(), t.id.get_ref()) {
                    return Err(at(
                        source,
                        text,
                        d,
                        "projects.tasks.depends_on",
                        format!("task `{}` depends on itself", t.id.get_ref()),
                    ));
                }
                if fp.enabled && !known.contains(&full) {
                    return Err(at(
                        source,
                        text,
                        d,
                        "projects.tasks.depends_on",
                        format!("no task `{full}` in the configuration"),
                    ));
                }
            }
        }
    }
    let api_key = if file.llm.api_key_env.is_empty() {
        None
    } else {
        // The environment this load was given (the process's for the binaries), never read behind its back.
        match env.iter().find(|(k, _)| *k == file.llm.api_key_env).map(|(_, v)| v.clone()) {
            Some(k) if !k.is_empty() => Some(k),
            _ => {
                return Err(plain(
                    "llm.api_key_env",
                    format!("the environment variable `{}` it names is not set", file.llm.api_key_env),
                ))
            }
        }
    };
    let llm = LlmSettings {
        provider: match provider {
            "ollama" => LlmProviderKind::Ollama,
            "openai" => LlmProviderKind::OpenAi,
            _ => LlmProviderKind::None,
        },
        model: file.llm.model.clone(),
        base_url: file.llm.base_url.clone(),
        temperature: file.llm.temperature,
        timeout: Duration::from_secs(file.llm.timeout_secs.max(1)),
        max_concurrent: file.llm.max_concurrent,
        required: file.llm.required,
        api_key,
        max_retries: file.llm.max_retries,
    };
    let webhook = file.notify.webhook.get_ref();
    if !(webhook.is_empty() || webhook.starts_with("http://") || webhook.starts_with("https://")) {
        return Err(at(
            source,
            text,
            &file.notify.webhook,
            "notify.webhook",
            format!("`{webhook}` is not an http:// or https:// URL"),
        ));
    }
    if file.notify.timeout_secs == 0 {
        return Err(plain("notify.timeout_secs", "must be at least 1".into()));
    }
    let mut provider_max_sessions = BTreeMap::new();
    for (provider, n) in &o.provider_max_sessions {
        if agent_kind(provider).is_none() {
            return Err(at(
                source,
                text,
                n,
                "orchestration.provider_max_sessions",
                format!("`{provider}` is not an agent provider: use \"claude-code\", \"aider\" or \"command\""),
            ));
        }
        if *n.get_ref() == 0 {
            return Err(at(source, text, n, "orchestration.provider_max_sessions", "must be at least 1".into()));
        }
        provider_max_sessions.insert(provider.clone(), *n.get_ref());
    }
    if !(o.max_wait_secs.is_finite() && o.max_wait_secs > 0.0) {
        return Err(plain("orchestration.max_wait_secs", "must be a positive number of seconds".into()));
    }
    if o.rate_limit_pause_secs == 0 {
        return Err(plain("orchestration.rate_limit_pause_secs", "must be at least 1".into()));
    }
    let notify = orch_actors::settings::NotifySettings {
        command: file.notify.command.clone(),
        webhook: webhook.clone(),
        timeout: Duration::from_secs(file.notify.timeout_secs),
    };
    Ok(Settings {
        notify,
        journal: JournalSettings { path: resolve_path(base, &file.journal.path), durability },
        llm,
        orchestration: OrchestrationSettings {
            max_sessions: o.max_sessions,
            max_attempts: o.max_attempts,
            decision: DecisionSettings { high_confidence: high, medium_confidence: medium },
            confidence: weights,
            confidence_threshold: threshold,
            breakpoints,
            prompts,
            prompt_token_budget: o.prompt_token_budget,
            output_tail_bytes: o.output_tail_bytes.max(256),
            provider_max_sessions,
            rate_limit_pause: Duration::from_secs(o.rate_limit_pause_secs),
            max_wait: Duration::from_secs_f64(o.max_wait_secs),
        },
        projects,
    })
}

/// Reads the prompt templates the config names (relative to it), checking the attempt template's placeholders.
fn prompt_templates(
    p: &FilePrompts,
    text: &str,
    source: &str,
    base: &Path,
) -> Result<orch_actors::settings::PromptTemplates, ConfigError> {
    let mut t = orch_actors::settings::PromptTemplates::default();
    let read = |v: &Spanned<String>, key: &str| -> Result<Option<(PathBuf, String)>, ConfigError> {
        if v.get_ref().is_empty() {
            return Ok(None);
        }
        let path = resolve_path(base, v.get_ref());
        std::fs::read_to_string(&path)
            .map(|s| Some((path.clone(), s)))
            .map_err(|e| at(source, text, v, key, format!("cannot read {}: {e}", path.display())))
    };
    if let Some((path, template)) = read(&p.attempt, "prompts.attempt")? {
        let used = orch_actors::prompt::placeholders(&template);
        for (name, line) in &used {
            if !orch_actors::settings::ATTEMPT_PLACEHOLDERS.contains(&name.as_str()) {
                return Err(ConfigError {
                    source: path.display().to_string(),
                    line: Some(*line),
                    column: None,
                    key: Some("prompts.attempt".into()),
                    message: format!(
                        "unknown placeholder {{{name}}}; known: {}",
                        orch_actors::settings::ATTEMPT_PLACEHOLDERS.map(|n| format!("{{{n}}}")).join(" ")
                    ),
                });
            }
        }
        if !used.iter().any(|(n, _)| n == "description") {
            return Err(at(
                source,
                text,
                &p.attempt,
                "prompts.attempt",
                format!("{} has no {{description}}: the task's description must reach the agent", path.display()),
            ));
        }
        t.attempt = template;
    }
    if let Some((_, s)) = read(&p.review, "prompts.review")? {
        t.review_system = s.trim().to_string();
    }
    if let Some((_, s)) = read(&p.clarify, "prompts.clarify")? {
        t.clarify_system = s.trim().to_string();
    }
    Ok(t)
}

/// Names usable as project names and task ids.
pub fn valid_id(s: &str) -> bool {
    orch_actors::validate::valid_id(s)
}

/// The line where a dotted key's last part is set, best effort (for errors about values without a span).
fn find_key_line(text: &str, dotted: &str) -> Option<usize> {
    let (section, key) = dotted.rsplit_once('.').unwrap_or(("", dotted));
    let mut in_section = section.is_empty();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.starts_with('[') {
            in_section = l.trim_matches(|c| c == '[' || c == ']').trim() == section;
            continue;
        }
        if in_section && l.split_once('=').is_some_and(|(k, _)| k.trim() == key) {
            return Some(i + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str, env: &[(String, String)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().map_err(|e| flag_error("tempdir", &e.to_string()))?;
        let p = dir.path().join("orch.toml");
        std::fs::write(&p, text).map_err(|e| flag_error("write", &e.to_string()))?;
        load_with_env(Some(&p), env, &Overrides::default())
    }

    #[test]
    fn default_toml_is_the_built_in_defaults() {
        let parsed: FileConfig = toml::from_str(DEFAULT_TOML).expect("config/default.toml parses");
        let d = FileConfig::default();
        assert_eq!(parsed.journal.path, d.journal.path);
        assert_eq!(parsed.journal.durability.get_ref(), d.journal.durability.get_ref());
        assert_eq!(parsed.llm.provider.get_ref(), d.llm.provider.get_ref());
        assert_eq!(parsed.llm.model, d.llm.model);
        assert_eq!(parsed.llm.base_url, d.llm.base_url);
        assert_eq!(parsed.llm.timeout_secs, d.llm.timeout_secs);
        assert_eq!(parsed.llm.max_concurrent, d.llm.max_concurrent);
        assert_eq!(parsed.llm.required, d.llm.required);
        assert_eq!(parsed.llm.api_key_env, d.llm.api_key_env);
        assert_eq!(parsed.llm.max_retries, d.llm.max_retries);
        assert_eq!(parsed.agent.kind.get_ref(), d.agent.kind.get_ref());
        assert_eq!(parsed.agent.program, d.agent.program);
        assert_eq!(parsed.agent.timeout_secs, d.agent.timeout_secs);
        assert_eq!(parsed.agent.idle_timeout_secs, d.agent.idle_timeout_secs);
        assert_eq!(parsed.agent.sandbox, d.agent.sandbox);
        assert_eq!(parsed.agent.writable, d.agent.writable);
        assert_eq!(parsed.agent.sandbox_required, d.agent.sandbox_required);
        let (po, dor) = (&parsed.orchestration, &d.orchestration);
        assert_eq!(po.max_sessions, dor.max_sessions);
        assert_eq!(po.max_attempts, dor.max_attempts);
        assert_eq!(po.prompt_token_budget, dor.prompt_token_budget);
        assert_eq!(po.output_tail_bytes, dor.output_tail_bytes);
        assert_eq!(po.decision.high_confidence.get_ref(), dor.decision.high_confidence.get_ref());
        assert_eq!(po.decision.medium_confidence.get_ref(), dor.decision.medium_confidence.get_ref());
        assert_eq!(po.breakpoints.confidence_threshold.get_ref(), dor.breakpoints.confidence_threshold.get_ref());
        assert_eq!(po.confidence.checks.get_ref(), dor.confidence.checks.get_ref());
        assert_eq!(po.confidence.validation.get_ref(), dor.confidence.validation.get_ref());
        assert_eq!(po.confidence.changes.get_ref(), dor.confidence.changes.get_ref());
        assert_eq!(po.confidence.attempt.get_ref(), dor.confidence.attempt.get_ref());
        assert_eq!(po.confidence.llm_review.get_ref(), dor.confidence.llm_review.get_ref());
        assert_eq!(po.confidence.scope.get_ref(), dor.confidence.scope.get_ref());
        assert!(parsed.projects.is_empty());
    }

    #[test]
    fn the_engine_defaults_are_the_config_defaults() -> Result<(), ConfigError> {
        let c = load_text(DEFAULT_TOML, &[])?;
        assert_eq!(c.settings.orchestration, OrchestrationSettings::default());
        Ok(())
    }

    #[test]
    fn an_unknown_table_is_named_not_the_table_before_it() {
        let e = load_text("[journal]\npath = \"j\"\n\n[[hostz]]\nname = \"a\"\n", &[]).expect_err("unknown table");
        assert_eq!(e.line, Some(4), "{e}");
        assert_eq!(e.key.as_deref(), Some("hostz"), "{e}");
    }

    #[test]
    fn judgement_keys_are_read_and_their_globs_checked() -> Result<(), ConfigError> {
        let dir = tempfile::tempdir().map_err(|e| flag_error("tempdir", &e.to_string()))?;
        std::fs::create_dir_all(dir.path().join("ws")).map_err(|e| flag_error("mkdir", &e.to_string()))?;
        let p = dir.path().join("orch.toml");
        let load = |text: &str| {
            std::fs::write(&p, text).expect("write");
            load_with_env(Some(&p), &[], &Overrides::default())
        };
        let c = load(
            "[agent]\nsandbox = \"none\"\nwritable = [\"shared\"]\nsandbox_required = true\n[[projects]]\nname = \"p\"\n\
             workspace = \"ws\"\nprotected = [\"tests/**\"]\nscope = [\"src/**\"]\n[[projects.tasks]]\nid = \"t\"\n\
             title = \"T\"\nscope = [\"src/a/**\"]\nmay_change = [\"tests/a.py\"]\n",
        )?;
        let project = &c.settings.projects[0];
        assert_eq!(project.judgement.protected, Some(vec!["tests/**".to_string()]));
        assert_eq!(project.judgement.scope, vec!["src/**".to_string()]);
        assert_eq!(project.judgement.tasks["t"].may_change, vec!["tests/a.py".to_string()]);
        assert_eq!(project.agent.sandbox.mode, orch_actors::settings::SandboxMode::None);
        assert_eq!(project.agent.sandbox.writable, vec![dir.path().join("shared")]);
        assert!(project.agent.sandbox.required);
        let e =
            load("[[projects]]\nname = \"p\"\nworkspace = \"ws\"\nprotected = [\"tests/[\"]\n").expect_err("bad glob");
        assert!(e.message.contains("`tests/[` is not a glob") && e.line == Some(4), "{e}");
        assert_eq!(e.key.as_deref(), Some("projects.protected"), "{e}");
        let e = load("[agent]\nsandbox = \"docker\"\n").expect_err("unknown sandbox");
        assert_eq!(e.line, Some(2), "{e}");
        Ok(())
    }

    #[test]
    fn prompt_templates_are_read_and_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("good.md"), "Do this: {description}\n({task})\n").expect("write");
        std::fs::write(dir.path().join("bad.md"), "# {title}\n{descripton}\n").expect("write");
        std::fs::write(dir.path().join("none.md"), "# {title}\n").expect("write");
        let p = dir.path().join("orch.toml");
        let load = |prompts: &str| {
            std::fs::write(&p, format!("[prompts]\n{prompts}\n")).expect("write");
            load_with_env(Some(&p), &[], &Overrides::default())
        };
        let c = load("attempt = \"good.md\"\nreview = \"good.md\"").expect("loads");
        assert_eq!(c.settings.orchestration.prompts.attempt, "Do this: {description}\n({task})\n");
        let e = load("attempt = \"bad.md\"").expect_err("unknown placeholder");
        assert!(e.source.ends_with("bad.md") && e.line == Some(2) && e.message.contains("{descripton}"), "{e}");
        let e = load("attempt = \"none.md\"").expect_err("no description");
        assert!(e.message.contains("has no {description}"), "{e}");
        let e = load("attempt = \"missing.md\"").expect_err("missing file");
        assert_eq!(e.line, Some(2));
    }

    #[test]
    fn misspelled_key_names_line_and_key() {
        let err = load_text("[orchestration]\nmax_sessions = 2\nmax_atempts = 3\n", &[]).expect_err("must fail");
        assert_eq!(err.line, Some(3));
        assert_eq!(err.key.as_deref(), Some("orchestration.max_atempts"));
        assert!(err.message.contains("unknown field `max_atempts`"), "{}", err.message);
    }

    #[test]
    fn on_retry_is_keep_or_rollback() {
        let project = "[[projects]]\nname = \"p\"\nworkspace = \".\"\n";
        let c = load_text(&format!("{project}on_retry = \"rollback\"\n"), &[]).expect("valid");
        assert_eq!(c.settings.projects[0].on_retry, orch_actors::settings::OnRetry::Rollback);
        let c = load_text(project, &[]).expect("valid");
        assert_eq!(c.settings.projects[0].on_retry, orch_actors::settings::OnRetry::Keep);
        let err = load_text(&format!("{project}on_retry = \"undo\"\n"), &[]).expect_err("must fail");
        assert_eq!(err.line, Some(4));
        assert!(err.message.contains("unknown variant `undo`, expected `keep` or `rollback`"), "{}", err.message);
    }

    #[test]
    fn notify_takes_a_command_and_an_http_webhook() {
        let c = load_text("[notify]\ncommand = \"cat\"\nwebhook = \"https://hooks.example/x\"\n", &[]).expect("valid");
        assert_eq!(c.settings.notify.webhook, "https://hooks.example/x");
        assert!(c.settings.notify.enabled());
        let err = load_text("[notify]\nwebhook = \"hooks.example/x\"\n", &[]).expect_err("must fail");
        assert_eq!((err.line, err.key.as_deref()), (Some(2), Some("notify.webhook")));
        assert!(err.message.contains("not an http:// or https:// URL"), "{}", err.message);
    }

    #[test]
    fn worktree_isolation_needs_a_repository_and_merge_needs_worktrees() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ws = dir.path().display().to_string();
        let project = format!("[[projects]]\nname = \"p\"\nworkspace = \"{ws}\"\n");
        let err = load_text(&format!("{project}isolation = \"worktree\"\n"), &[]).expect_err("not a repository");
        assert_eq!((err.line, err.key.as_deref()), (Some(4), Some("projects.isolation")));
        assert!(err.message.contains("needs a git repository"), "{}", err.message);
        let err = load_text(&format!("{project}merge = \"fast-forward\"\n"), &[]).expect_err("merge without worktree");
        assert_eq!(err.key.as_deref(), Some("projects.merge"));
        let err = load_text(&format!("{project}isolation = \"chroot\"\n"), &[]).expect_err("unknown");
        assert!(err.message.contains("unknown variant `chroot`"), "{}", err.message);
    }

    #[test]
    fn wrong_type_names_line_and_key() {
        let err = load_text("[journal]\ndurability = 5\n", &[]).expect_err("must fail");
        assert_eq!(err.line, Some(2));
        assert_eq!(err.key.as_deref(), Some("journal.durability"));
    }

    #[test]
    fn impossible_value_names_line_and_key() {
        let err = load_text("[orchestration.decision]\nhigh_confidence = 0.5\nmedium_confidence = 0.9\n", &[])
            .expect_err("must fail");
        assert_eq!(err.line, Some(3));
        assert_eq!(err.key.as_deref(), Some("orchestration.decision.medium_confidence"));
    }

    #[test]
    fn environment_overrides_the_file() -> Result<(), ConfigError> {
        let env = vec![
            ("ORCH_ORCHESTRATION__MAX_SESSIONS".to_string(), "7".to_string()),
            ("ORCH_PROJECT".to_string(), "not config".to_string()),
        ];
        let c = load_text("[orchestration]\nmax_sessions = 2\n", &env)?;
        assert_eq!(c.settings.orchestration.max_sessions, 7);
        Ok(())
    }

    #[test]
    fn bad_environment_value_names_the_variable() {
        let env = vec![("ORCH_JOURNAL__DURABILITY".to_string(), "sometimes".to_string())];
        let err = load_text("", &env).expect_err("must fail");
        assert_eq!(err.key.as_deref(), Some("journal.durability"));
    }

    #[test]
    fn unknown_dependency_is_an_error_with_its_line() {
        let text = "[[projects]]\nname = \"a\"\nworkspace = \".\"\n[[projects.tasks]]\nid = \"x\"\ntitle = \"X\"\ndepends_on = [\"nope\"]\n";
        let err = load_text(text, &[]).expect_err("must fail");
        assert_eq!(err.line, Some(7));
        assert!(err.message.contains("a/nope"));
    }
}
