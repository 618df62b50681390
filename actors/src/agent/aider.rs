//! aider (`kind = "aider"`), in its non-interactive mode: `aider --message PROMPT --yes-always --no-auto-commits …
//! [agent.args…]` in the workspace. The model, its API base and the files to edit come from `agent.args`.
//!
//! aider prints plain text and exits 0 even when every call to the model failed, so its output is read for the
//! evidence: `Applied edit to FILE` (a tool call), `Tokens: N sent, M received.` (usage), and litellm's error lines
//! (`litellm.RateLimitError`, `…InternalServerError`, `…APIConnectionError`, …), which make the attempt's report an
//! error that the Validator names.

use super::{AgentAdapter, AgentItem, AgentReport, Invocation, OutputParser, ParsedOutcome, ToolCall};
use crate::redact;
use crate::settings::{AgentKind, AgentSettings};
use crate::types::Stream;

/// See the module documentation.
pub struct Aider;

/// Flags that make aider run once, ask nothing, commit nothing and call nothing but the configured model.
pub const NON_INTERACTIVE: &[&str] = &[
    "--yes-always",
    "--no-auto-commits",
    "--no-dirty-commits",
    "--no-check-update",
    "--no-show-release-notes",
    "--no-analytics",
    "--no-pretty",
    "--no-fancy-input",
    "--no-suggest-shell-commands",
    "--no-detect-urls",
    "--no-auto-lint",
    "--no-auto-test",
    "--no-restore-chat-history",
    "--no-gitignore",
    "--no-show-model-warnings",
    // Its history files would land in the workspace and count as the agent's changes.
    "--chat-history-file",
    "/dev/null",
    "--input-history-file",
    "/dev/null",
];

const RESULT_BYTES: usize = 4096;

impl AgentAdapter for Aider {
    fn kind(&self) -> AgentKind {
        AgentKind::Aider
    }

    fn invocation(&self, settings: &AgentSettings, prompt: &str, _resume: Option<&str>) -> Invocation {
        let mut args: Vec<String> = NON_INTERACTIVE.iter().map(|s| s.to_string()).collect();
        // One model call may take up to the idle limit; past it orch stops the whole session anyway.
        args.push("--timeout".into());
        args.push(settings.idle_timeout.as_secs().max(1).to_string());
        args.extend(settings.args.iter().cloned());
        args.push("--message".into());
        // aider runs a message that starts with `/` or `!` as one of its commands (`!` is a shell command).
        let safe = if prompt.trim_start().starts_with(['/', '!']) { format!(" {prompt}") } else { prompt.to_string() };
        args.push(safe);
        // With --yes-always it would open URLs from error messages in a browser.
        Invocation {
            program: settings.program.clone(),
            args,
            stdin: None,
            env: vec![("BROWSER".into(), "true".into())],
        }
    }

    fn parser(&self) -> Box<dyn OutputParser> {
        Box::new(AiderParser::default())
    }
}

#[derive(Default)]
struct AiderParser {
    tail: String,
    edits: Vec<ToolCall>,
    tokens_in: u64,
    tokens_out: u64,
    cost: f64,
    errors: Vec<String>,
    status: Option<u16>,
}

/// `657`, `2.3k`, `1.1M` → a number.
fn amount(s: &str) -> Option<u64> {
    let s = s.trim().trim_end_matches(',');
    let (num, mul) = match s.chars().last()? {
        'k' | 'K' => (&s[..s.len() - 1], 1_000.0),
        'm' | 'M' => (&s[..s.len() - 1], 1_000_000.0),
        _ => (s, 1.0),
    };
    num.parse::<f64>().ok().map(|n| (n * mul).round() as u64)
}

/// The HTTP status a litellm error class stands for.
fn status_of(error: &str) -> Option<u16> {
    if error.contains("RateLimitError") {
        Some(429)
    } else if error.contains("InternalServerError") || error.contains("ServiceUnavailableError") {
        Some(500)
    } else if error.contains("BadRequestError") {
        Some(400)
    } else if error.contains("AuthenticationError") {
        Some(401)
    } else if error.contains("NotFoundError") {
        Some(404)
    } else {
        None
    }
}

impl OutputParser for AiderParser {
    fn line(&mut self, stream: Stream, line: &str) -> Option<AgentItem> {
        let t = line.trim();
        if t.is_empty() {
            return None;
        }
        if stream == Stream::Stdout {
            self.tail.push_str(line);
            self.tail.push('\n');
            if self.tail.len() > 2 * RESULT_BYTES {
                self.tail = redact::tail(&self.tail, RESULT_BYTES).to_string();
            }
        }
        let kind = if let Some(file) = t.strip_prefix("Applied edit to ") {
            self.edits.push(ToolCall { name: "edit".into(), target: file.to_string(), ..ToolCall::default() });
            "tool_use"
        } else if let Some(rest) = t.strip_prefix("Tokens: ") {
            // "Tokens: 657 sent, 22 received. Cost: $0.01 message, $0.02 session."
            let mut parts = rest.split_whitespace();
            if let (Some(sent), Some(_), Some(received)) = (parts.next(), parts.next(), parts.next()) {
                self.tokens_in += amount(sent).unwrap_or(0);
                self.tokens_out += amount(received).unwrap_or(0);
            }
            if let Some(c) = rest.split("Cost: $").nth(1).and_then(|c| c.split_whitespace().next()) {
                self.cost += c.parse::<f64>().unwrap_or(0.0);
            }
            "usage"
        } else if (t.starts_with("litellm.") && t.contains("Error"))
            || t.starts_with("Empty response received from LLM")
        {
            if self.status.is_none() {
                self.status = status_of(t);
            }
            self.errors.push(t.to_string());
            "api_error"
        } else if stream == Stream::Stderr {
            "stderr"
        } else {
            "text"
        };
        Some(AgentItem { stream: kind.to_string(), text: redact::head(line, 1000).to_string() })
    }

    fn finish(self: Box<Self>) -> ParsedOutcome {
        let tail = redact::tail(&self.tail, RESULT_BYTES).trim().to_string();
        let failed = !self.errors.is_empty() && self.edits.is_empty();
        let report = AgentReport {
            subtype: if failed { "error_api".into() } else { "success".into() },
            is_error: failed,
            num_turns: 0,
            input_tokens: self.tokens_in,
            output_tokens: self.tokens_out,
            cache_creation_tokens: 0,
            cache_read_tokens: 0,
            cost_usd: self.cost,
            permission_denials: Vec::new(),
            terminal_reason: self.errors.last().cloned().unwrap_or_else(|| "completed".into()),
            api_error_status: if failed { self.status } else { None },
        };
        ParsedOutcome {
            result: (!tail.is_empty()).then_some(tail),
            session_id: None,
            expects_report: false,
            report: Some(report),
            tool_calls: self.edits,
            unparsed_lines: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(lines: &[(Stream, &str)]) -> ParsedOutcome {
        let mut p: Box<dyn OutputParser> = Box::new(AiderParser::default());
        for (s, l) in lines {
            p.line(*s, l);
        }
        p.finish()
    }

    #[test]
    fn an_applied_edit_with_usage() {
        let out = parse(&[
            (Stream::Stdout, "Aider v0.86.2"),
            (Stream::Stdout, "Tokens: 2.3k sent, 22 received. Cost: $0.01 message, $0.02 session."),
            (Stream::Stdout, "Applied edit to hello.py"),
        ]);
        let r = out.report.expect("report");
        assert!(!r.is_error);
        assert_eq!((r.input_tokens, r.output_tokens), (2300, 22));
        assert!((r.cost_usd - 0.01).abs() < 1e-9);
        assert_eq!(
            out.tool_calls,
            vec![ToolCall { name: "edit".into(), target: "hello.py".into(), ..ToolCall::default() }]
        );
    }

    #[test]
    fn errors_exiting_zero_are_still_errors() {
        let out = parse(&[
            (Stream::Stdout, "litellm.InternalServerError: InternalServerError: OpenAIException - standin error 500"),
            (Stream::Stdout, "The API provider's servers are down or overloaded."),
        ]);
        let r = out.report.expect("report");
        assert!(r.is_error);
        assert_eq!(r.subtype, "error_api");
        assert_eq!(r.api_error_status, Some(500));
    }

    #[test]
    fn the_prompt_comes_last_after_the_users_args() {
        let s = AgentSettings {
            kind: AgentKind::Aider,
            ..AgentSettings::command("aider", vec!["--model".into(), "openai/x".into(), "calc.py".into()])
        };
        let inv = Aider.invocation(&s, "do it", None);
        assert!(inv.args.starts_with(&["--yes-always".to_string(), "--no-auto-commits".to_string()]));
        assert_eq!(&inv.args[inv.args.len() - 5..], ["--model", "openai/x", "calc.py", "--message", "do it"]);
        let cmd = Aider.invocation(&s, "!rm -rf ~ please", None);
        assert_eq!(cmd.args.last().map(String::as_str), Some(" !rm -rf ~ please"), "never a shell command");
    }
}
