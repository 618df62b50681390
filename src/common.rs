//! What both binaries share (so not the command line itself: that is `orch_cmd.rs` and `log_cmd.rs`): logging setup,
//! exit codes, errors that carry their exit code, opening the journal.

use std::path::{Path, PathBuf};

use orch_actors::{EngineError, Journal, JournalError};

use crate::config::{self, Config, ConfigError, Overrides};

/// Every selected task completed (or the command succeeded).
pub const EXIT_OK: u8 = 0;
/// Internal error.
pub const EXIT_INTERNAL: u8 = 1;
/// Usage or configuration error.
pub const EXIT_USAGE: u8 = 2;
/// The run finished and at least one task needs a human.
pub const EXIT_NEEDS_HUMAN: u8 = 3;
/// Stopped by SIGINT.
pub const EXIT_SIGINT: u8 = 130;
/// Stopped by SIGTERM.
pub const EXIT_SIGTERM: u8 = 143;

/// An error with the exit code it deserves.
#[derive(Debug)]
pub struct Failure {
    /// The exit code.
    pub code: u8,
    /// What to print.
    pub message: String,
}

impl Failure {
    /// A usage or configuration error (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Failure { code: EXIT_USAGE, message: message.into() }
    }

    /// An internal error (exit 1).
    pub fn internal(message: impl Into<String>) -> Self {
        Failure { code: EXIT_INTERNAL, message: message.into() }
    }
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure::usage(format!("configuration error: {e}"))
    }
}

impl From<JournalError> for Failure {
    fn from(e: JournalError) -> Self {
        match e {
            JournalError::Missing { .. } | JournalError::Locked { .. } => Failure::usage(e.to_string()),
            other => Failure::internal(other.to_string()),
        }
    }
}

impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Journal(j) => j.into(),
            EngineError::UnknownTask(_)
            | EngineError::UnknownProject(_)
            | EngineError::InvalidRequest(_)
            | EngineError::Invalid(_)
            | EngineError::LlmRequired(_)
            | EngineError::SandboxRequired(_) => Failure::usage(e.to_string()),
            other => Failure::internal(other.to_string()),
        }
    }
}

/// Sends diagnostics through tracing to stderr: warnings by default, more with `-v`, or as `RUST_LOG` says.
pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
}

/// The last panic anywhere in the process, as `message (at file:line)`: what to say when the engine stops because
/// one of its actors died of it (a panic inside an attempt's work ends only that attempt, and says so itself).
static LAST_PANIC: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Keeps each panic's message for [`last_panic`], then reports it as Rust does.
pub fn remember_panics() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        let at = info.location().map(|l| format!(" (at {}:{})", l.file(), l.line())).unwrap_or_default();
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = Some(format!("{message}{at}"));
        }
        report(info);
    }));
}

/// See [`remember_panics`].
pub fn last_panic() -> Option<String> {
    LAST_PANIC.lock().ok().and_then(|l| l.clone())
}

/// Loads the configuration found at `--config`, `$ORCH_CONFIG` or `./orch.toml`; `required`: it must exist.
pub fn load_config(flag: Option<&Path>, overrides: &Overrides, required: bool) -> Result<Config, Failure> {
    let path = config::locate(flag);
    if required && path.is_none() {
        return Err(Failure::usage(
            "no configuration: pass --config FILE, set ORCH_CONFIG, or create ./orch.toml (`orch init`)",
        ));
    }
    Ok(config::load(path.as_deref(), overrides)?)
}

/// The journal directory: `--journal`, else the configuration's.
pub fn journal_path(config_flag: Option<&Path>, journal_flag: Option<&Path>) -> Result<PathBuf, Failure> {
    if let Some(j) = journal_flag {
        return Ok(j.to_path_buf());
    }
    let c = load_config(config_flag, &Overrides::default(), false)?;
    Ok(c.settings.journal.path)
}

/// Opens an existing journal, reporting records found damaged on stderr.
pub fn open_journal(path: &Path) -> Result<Journal, Failure> {
    let j = Journal::open(path, false)?;
    for p in j.damaged_at_open() {
        eprintln!("warning: journal {}: {} is damaged: {} (run `orch-log verify`)", path.display(), p.about, p.what);
    }
    Ok(j)
}
