//! Claude Code (`kind = "claude-code"`): runs `claude -p PROMPT --output-format stream-json --verbose [args…]`
//! (or `--resume SESSION_ID` with the answer as the prompt, for a clarify) and parses its stream-json output.
//!
//! Every line becomes a typed item — `init`, `text`, `tool_use`, `tool_result`, `result` — journaled bounded in size;
//! a line of an unknown type, or one that is not JSON, is kept as a `raw` item and never fatal. The final `result`
//! line gives the [`AgentReport`]: subtype, error flag, turns, tokens, cost, permission denials.

use serde::Deserialize;

use super::{AgentAdapter, AgentItem, AgentReport, Invocation, OutputParser, ParsedOutcome, ToolCall};
use crate::redact;
use crate::settings::{AgentKind, AgentSettings};
use crate::types::Stream;

/// See the module documentation.
pub struct ClaudeCode;

/// Bytes of text kept in one journaled item.
const ITEM_BYTES: usize = 1000;

impl AgentAdapter for ClaudeCode {
    fn kind(&self) -> AgentKind {
        AgentKind::ClaudeCode
    }

    fn invocation(&self, settings: &AgentSettings, prompt: &str, resume: Option<&str>) -> Invocation {
        let mut args = vec!["-p".to_string(), prompt.to_string()];
        if let Some(session) = resume {
            args.push("--resume".into());
            args.push(session.to_string());
        }
        args.extend(["--output-format", "stream-json", "--verbose"].map(String::from));
        args.extend(settings.args.iter().cloned());
        Invocation { program: settings.program.clone(), args, stdin: None, env: Vec::new() }
    }

    fn parser(&self) -> Box<dyn OutputParser> {
        Box::new(StreamJsonParser::default())
    }

    fn can_resume(&self) -> bool {
        true
    }
}

#[derive(Deserialize)]
struct Line {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    subtype: Option<String>,
    #[serde(default)]
    session_id: Option<String>,
    #[serde(default)]
    message: Option<Message>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    claude_code_version: Option<String>,
    #[serde(default)]
    is_error: Option<bool>,
    #[serde(default)]
    result: Option<String>,
    #[serde(default)]
    num_turns: Option<u32>,
    #[serde(default)]
    total_cost_usd: Option<f64>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    permission_denials: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    terminal_reason: Option<String>,
    #[serde(default)]
    api_error_status: Option<u16>,
    #[serde(default)]
    is_api_error_message: Option<bool>,
}

#[derive(Deserialize, Default)]
struct Usage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cache_creation_input_tokens: u64,
    #[serde(default)]
    cache_read_input_tokens: u64,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    content: Content,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Blocks(Vec<Block>),
}

impl Default for Content {
    fn default() -> Self {
        Content::Blocks(Vec::new())
    }
}

#[derive(Deserialize)]
struct Block {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    input: Option<serde_json::Value>,
    #[serde(default)]
    content: Option<serde_json::Value>,
    #[serde(default)]
    is_error: Option<bool>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    tool_use_id: Option<String>,
}

/// Parses stream-json, line by line.
#[derive(Default)]
pub struct StreamJsonParser {
    outcome: ParsedOutcome,
    last_text: Option<String>,
}

fn item(kind: &str, text: impl AsRef<str>) -> AgentItem {
    AgentItem { stream: kind.to_string(), text: redact::head(text.as_ref(), ITEM_BYTES).to_string() }
}

/// What a tool call acted on: the file path, the command, the pattern…
fn tool_target(name: &str, input: Option<&serde_json::Value>) -> String {
    let Some(input) = input else { return String::new() };
    let field = |k: &str| input.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let found = match name {
        "Bash" => field("command"),
        "Write" | "Edit" | "Read" | "MultiEdit" | "NotebookEdit" => {
            field("file_path").or_else(|| field("notebook_path"))
        }
        "Glob" | "Grep" => field("pattern"),
        "WebFetch" => field("url"),
        "WebSearch" => field("query"),
        "AskUserQuestion" => input
            .get("questions")
            .and_then(|q| q.as_array())
            .map(|qs| {
                qs.iter().filter_map(|q| q.get("question").and_then(|t| t.as_str())).collect::<Vec<_>>().join(" ")
            })
            .filter(|q| !q.is_empty())
            .or_else(|| field("question")),
        _ => None,
    };
    found.unwrap_or_else(|| {
        let s = input.to_string();
        redact::head(&s, 200).to_string()
    })
}

fn tool_result_text(content: Option<&serde_json::Value>) -> String {
    match content {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Array(parts)) => {
            parts.iter().filter_map(|p| p.get("text").and_then(|t| t.as_str())).collect::<Vec<_>>().join("\n")
        }
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

fn denial_text(v: &serde_json::Value) -> String {
    let name = v.get("tool_name").and_then(|n| n.as_str()).unwrap_or("tool");
    let target = tool_target(name, v.get("tool_input"));
    if target.is_empty() {
        name.to_string()
    } else {
        format!("{name}: {target}")
    }
}

impl StreamJsonParser {
    fn parse(&mut self, line: &str) -> Vec<AgentItem> {
        let parsed: Line = match serde_json::from_str(line) {
            Ok(l) => l,
            Err(_) => {
                self.outcome.unparsed_lines += 1;
                return vec![item("raw", line)];
            }
        };
        if let Some(s) = &parsed.session_id {
            self.outcome.session_id = Some(s.clone());
        }
        match parsed.kind.as_str() {
            "system" if parsed.subtype.as_deref() == Some("init") => vec![item(
                "init",
                format!(
                    "claude {} with model {}, session {}",
                    parsed.claude_code_version.as_deref().unwrap_or("?"),
                    parsed.model.as_deref().unwrap_or("?"),
                    parsed.session_id.as_deref().unwrap_or("?")
                ),
            )],
            "assistant" => {
                let mut items = Vec::new();
                let api_error = parsed.is_api_error_message == Some(true);
                match parsed.message.map(|m| m.content).unwrap_or_default() {
                    Content::Text(t) => {
                        self.last_text = Some(t.clone());
                        items.push(item(if api_error { "api_error" } else { "text" }, t));
                    }
                    Content::Blocks(blocks) => {
                        for b in blocks {
                            match b.kind.as_str() {
                                "text" => {
                                    let t = b.text.unwrap_or_default();
                                    items.push(item(if api_error { "api_error" } else { "text" }, &t));
                                    self.last_text = Some(t);
                                }
                                "tool_use" => {
                                    let name = b.name.unwrap_or_default();
                                    let target = tool_target(&name, b.input.as_ref());
                                    items.push(item("tool_use", format!("{name}: {target}")));
                                    self.outcome.tool_calls.push(ToolCall {
                                        name,
                                        target,
                                        id: b.id.unwrap_or_default(),
                                        ..ToolCall::default()
                                    });
                                }
                                "thinking" | "redacted_thinking" => {}
                                other => items.push(item("raw", format!("assistant {other} block"))),
                            }
                        }
                    }
                }
                items
            }
            "user" => {
                let mut items = Vec::new();
                if let Some(Content::Blocks(blocks)) = parsed.message.map(|m| m.content) {
                    for b in blocks.into_iter().filter(|b| b.kind == "tool_result") {
                        let text = tool_result_text(b.content.as_ref());
                        let failed = b.is_error == Some(true);
                        // A PreToolUse hook's refusal reaches the model as an error result naming the hook.
                        let denied = failed && text.starts_with("PreToolUse:");
                        let kind = match (denied, failed) {
                            (true, _) => "tool_denied",
                            (false, true) => "tool_error",
                            (false, false) => "tool_result",
                        };
                        let id = b.tool_use_id.unwrap_or_default();
                        if let Some(call) =
                            self.outcome.tool_calls.iter_mut().rev().find(|c| !id.is_empty() && c.id == id)
                        {
                            call.ok = Some(!failed);
                            call.denied = denied;
                            call.output = redact::head(&text, super::TOOL_OUTPUT_BYTES).to_string();
                        }
                        items.push(item(kind, text));
                    }
                }
                items
            }
            "result" => {
                let usage = parsed.usage.unwrap_or_default();
                let report = AgentReport {
                    subtype: parsed.subtype.clone().unwrap_or_default(),
                    is_error: parsed.is_error.unwrap_or(false),
                    num_turns: parsed.num_turns.unwrap_or(0),
                    input_tokens: usage.input_tokens,
                    output_tokens: usage.output_tokens,
                    cache_creation_tokens: usage.cache_creation_input_tokens,
                    cache_read_tokens: usage.cache_read_input_tokens,
                    cost_usd: parsed.total_cost_usd.unwrap_or(0.0),
                    permission_denials: parsed.permission_denials.unwrap_or_default().iter().map(denial_text).collect(),
                    terminal_reason: parsed.terminal_reason.clone().unwrap_or_default(),
                    api_error_status: parsed.api_error_status,
                };
                let summary = format!(
                    "{}{}, {} turn(s), {} in / {} out tokens, ${:.4}",
                    report.subtype,
                    if report.is_error { " (is_error)" } else { "" },
                    report.num_turns,
                    report.input_tokens,
                    report.output_tokens,
                    report.cost_usd
                );
                self.outcome.result = parsed.result.clone();
                self.outcome.report = Some(report);
                vec![item("result", summary)]
            }
            _ => {
                self.outcome.unparsed_lines += 1;
                vec![item("raw", line)]
            }
        }
    }
}

impl OutputParser for StreamJsonParser {
    fn line(&mut self, stream: Stream, line: &str) -> Option<AgentItem> {
        if line.trim().is_empty() {
            return None;
        }
        if stream == Stream::Stderr {
            return Some(item("stderr", line));
        }
        // One line is one JSON value; an assistant line can hold several blocks: they are joined.
        let mut items = self.parse(line);
        match items.len() {
            0 => None,
            1 => items.pop(),
            _ => {
                let stream = items[0].stream.clone();
                let text = items.iter().map(|i| format!("{}: {}", i.stream, i.text)).collect::<Vec<_>>().join("\n");
                Some(AgentItem { stream, text: redact::head(&text, 2 * ITEM_BYTES).to_string() })
            }
        }
    }

    fn finish(mut self: Box<Self>) -> ParsedOutcome {
        self.outcome.expects_report = true;
        if self.outcome.report.is_none() {
            // No result line: the last thing it said is all there is.
            self.outcome.result = self.last_text.take();
        }
        self.outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HAPPY: &str = include_str!("../../tests/data/claude-happy.jsonl");
    const API_ERROR: &str = include_str!("../../tests/data/claude-apierror.jsonl");

    fn parse_all(text: &str) -> (Vec<AgentItem>, ParsedOutcome) {
        let mut p: Box<dyn OutputParser> = Box::new(StreamJsonParser::default());
        let items = text.lines().filter_map(|l| p.line(Stream::Stdout, l)).collect();
        (items, p.finish())
    }

    #[test]
    fn parses_a_successful_run() {
        let (items, out) = parse_all(HAPPY);
        let kinds: Vec<&str> = items.iter().map(|i| i.stream.as_str()).collect();
        assert_eq!(kinds, vec!["init", "tool_use", "tool_result", "tool_use", "tool_result", "text", "result"]);
        assert_eq!(items[1].text, "Write: /home/user/calc/calc.py");
        assert_eq!(items[3].text, "Bash: python3 test_calc.py");
        let r = out.report.expect("report");
        assert_eq!(r.subtype, "success");
        assert!(!r.is_error);
        assert_eq!(r.num_turns, 3);
        assert_eq!((r.input_tokens, r.output_tokens), (300, 60));
        assert!((r.cost_usd - 0.0024).abs() < 1e-9);
        assert_eq!(out.result.as_deref(), Some("Added add() to calc.py; test_calc.py passes."));
        assert_eq!(out.session_id.as_deref(), Some("9f28b6f6-4637-4010-829d-318c47056207"));
        assert_eq!(out.tool_calls.len(), 2);
        assert_eq!(out.unparsed_lines, 0);
    }

    #[test]
    fn parses_an_error_reported_as_success() {
        let (items, out) = parse_all(API_ERROR);
        assert!(items.iter().any(|i| i.stream == "api_error" && i.text.contains("API Error: 400")));
        let r = out.report.expect("report");
        assert_eq!(r.subtype, "success");
        assert!(r.is_error);
        assert_eq!(r.api_error_status, Some(400));
        assert_eq!(r.terminal_reason, "api_error");
    }

    #[test]
    fn unknown_and_garbage_lines_are_kept_raw() {
        let (items, out) = parse_all("{\"type\":\"brand_new\",\"x\":1}\nnot json at all\n{\"type\":\"assistant\"");
        assert_eq!(items.iter().filter(|i| i.stream == "raw").count(), 3);
        assert_eq!(out.unparsed_lines, 3);
        assert!(out.report.is_none());
        assert!(out.expects_report);
    }

    #[test]
    fn resume_passes_the_session_and_the_answer() {
        let s = AgentSettings {
            kind: AgentKind::ClaudeCode,
            ..AgentSettings::command("claude", vec!["--allowedTools".into(), "Write".into()])
        };
        let inv = ClaudeCode.invocation(&s, "use port 8080", Some("sid-1"));
        assert_eq!(
            inv.args,
            [
                "-p",
                "use port 8080",
                "--resume",
                "sid-1",
                "--output-format",
                "stream-json",
                "--verbose",
                "--allowedTools",
                "Write"
            ]
        );
        assert!(inv.stdin.is_none());
    }
}
