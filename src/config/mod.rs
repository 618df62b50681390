//! Configuration: the built-in defaults (`config/default.toml`) → the TOML file → `ORCH_*` environment variables →
//! command-line flags, into the engine's typed [`Settings`], then the engine's own rules
//! ([`Settings::validate`]). An unknown key, a wrong type or an impossible value is an error naming the file, the
//! line and the key (or the environment variable, or the flag). Relative paths are relative to the config file's
//! own directory.
//!
//! - [`layers`]: the defaults, the file and the environment merged key by key, each value keeping where it came
//!   from;
//! - [`file`]: the shape of the file;
//! - [`resolve`]: from the file to [`Settings`], a section at a time;
//! - [`error`]: [`ConfigError`] and the positions it names.

mod error;
mod file;
mod layers;
mod resolve;

use std::path::{Path, PathBuf};

use orch_actors::settings::Settings;

pub use error::ConfigError;

/// The commented default configuration: the base layer every configuration is merged over.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// Values given on the command line, applied last.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--max-sessions N`.
    pub max_sessions: Option<usize>,
    /// `--durability sync|batch`.
    pub durability: Option<String>,
}

/// The LLM section, as written (for what `orch` prints about it).
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
    /// The LLM needs a key from a variable that is not set: an error for the commands that call the LLM only.
    pub llm_key_missing: Option<ConfigError>,
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
    let (text, source, base) = match path {
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
    let (file, origin) = layers::layered(&text, &source, env)?;
    let cx = resolve::Context { origin: &origin, base: &base, env, helper: helper_program() };
    let mut settings = resolve::settings(&file, &cx)?;
    if let Some(n) = overrides.max_sessions {
        if n == 0 {
            return Err(ConfigError::flag("--max-sessions", "must be at least 1"));
        }
        settings.orchestration.max_sessions = n;
    }
    if let Some(d) = &overrides.durability {
        settings.journal.durability = resolve::durability(d).ok_or_else(|| {
            ConfigError::flag("--durability", format!("`{d}` is not a durability: use \"sync\" or \"batch\""))
        })?;
    }
    // The engine's own rules, whoever gives it settings; an error is mapped back to the value's line.
    settings.validate().map_err(|e| resolve::locate(e, &file, &origin))?;
    let llm_key_missing = resolve::llm_key_missing(&settings, &file.llm, &cx);
    let llm = LlmConfig {
        provider: file.llm.provider.get_ref().clone(),
        model: file.llm.model.clone(),
        base_url: file.llm.base_url.clone(),
    };
    Ok(Config { path: path.map(Path::to_path_buf), settings, llm, llm_key_missing })
}

/// The program that is claude's hook: `orch-guard` beside this binary, which starts fastest, else this binary itself
/// (it has the same hidden subcommand).
fn helper_program() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let guard = exe.with_file_name("orch-guard");
    Some(if guard.is_file() { guard } else { exe })
}

/// Names usable as project names and task ids.
pub fn valid_id(s: &str) -> bool {
    orch_actors::validate::valid_id(s)
}

#[cfg(test)]
mod tests;
