//! Configuration errors, and where a value came from so that an error can name it: a line of the file, an
//! environment variable, a flag, or the built-in defaults.

use std::fmt;
use std::ops::Range;

use toml::Spanned;

/// A configuration error, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or `environment variable ORCH_…`, or `command line`).
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

impl ConfigError {
    /// An error about a command-line flag.
    pub fn flag(flag: &str, message: impl Into<String>) -> Self {
        ConfigError {
            source: "command line".into(),
            line: None,
            column: None,
            key: Some(flag.into()),
            message: message.into(),
        }
    }
}

/// Where the values of the layered configuration came from. Every value keeps a span: within the file's text for
/// what the file says, one span past the text per environment variable for what the environment says, and an empty
/// span for a built-in default.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The file's name (`(defaults)` without one).
    pub source: String,
    /// The file's text.
    pub text: String,
    /// The `ORCH_*` variables applied, in order: their names and the dotted keys they set.
    pub env: Vec<(String, String)>,
}

impl Origin {
    /// The span that marks the values of the `i`-th environment variable.
    pub fn env_span(&self, i: usize) -> Range<usize> {
        let at = self.text.len() + 1 + i;
        at..at + 1
    }

    /// An error at a span: a line and column of the file, an environment variable, or a default.
    fn error(&self, span: Range<usize>, key: Option<String>, message: String) -> ConfigError {
        let env_base = self.text.len() + 1;
        if span.end == 0 {
            return ConfigError { source: self.source.clone(), line: None, column: None, key, message };
        }
        if span.start >= env_base {
            if let Some((var, dotted)) = self.env.get(span.start - env_base) {
                return ConfigError {
                    source: format!("environment variable {var}"),
                    line: None,
                    column: None,
                    key: key.or_else(|| Some(dotted.clone())),
                    message,
                };
            }
        }
        let (line, column) = line_col(&self.text, span.start);
        ConfigError {
            source: self.source.clone(),
            line: Some(line),
            column: Some(column),
            key: key.or_else(|| key_at(&self.text, span.start)),
            message,
        }
    }

    /// An error about a value whose span is known.
    pub fn at<T>(&self, value: &Spanned<T>, key: &str, message: impl Into<String>) -> ConfigError {
        self.error(value.span(), Some(key.to_string()), message.into())
    }

    /// An error about a dotted key, without a span: the environment variable that set it, else the line the file
    /// sets it on, best effort.
    pub fn key(&self, key: &str, message: impl Into<String>) -> ConfigError {
        if let Some((var, _)) = self.env.iter().rev().find(|(_, k)| k == key) {
            return ConfigError {
                source: format!("environment variable {var}"),
                line: None,
                column: None,
                key: Some(key.to_string()),
                message: message.into(),
            };
        }
        ConfigError {
            source: self.source.clone(),
            line: find_key_line(&self.text, key),
            column: None,
            key: Some(key.to_string()),
            message: message.into(),
        }
    }

    /// A parse or type error from toml, at the value or key it is about.
    pub fn toml(&self, e: &toml::de::Error) -> ConfigError {
        let message = e.message().trim().to_string();
        match e.span() {
            Some(span) => self.error(span, None, message),
            None => ConfigError { source: self.source.clone(), line: None, column: None, key: None, message },
        }
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map(|s| s.chars().count()).unwrap_or(0) + 1;
    (line, col)
}

fn floor_char_boundary(text: &str, offset: usize) -> usize {
    let mut i = offset.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The dotted key written at `offset`: the table header in force there plus the key on that line.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = floor_char_boundary(text, offset);
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
        (Some(h), Some(k)) if !k.is_empty() => Some(format!("{h}.{k}")),
        (None, Some(k)) if !k.is_empty() => Some(k),
        (Some(h), _) => Some(h),
        _ => None,
    }
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
    // A whole section (`orchestration.confidence`): its header.
    text.lines().position(|l| l.trim().trim_matches(|c| c == '[' || c == ']').trim() == dotted).map(|i| i + 1)
}
