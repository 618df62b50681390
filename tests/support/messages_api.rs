//! A loopback stand-in of the Anthropic Messages API, as the real `claude` binary uses it: `POST /v1/messages`
//! answered with SSE streaming (unique message ids), plus the few side endpoints it touches.
//!
//! It plays a [`Scenario`]: per attempt (a new user prompt starts the next one), a list of model turns — a text
//! answer, tool calls (`{cwd}` in their input replaced by the workspace), an HTTP error for N tries, a delay, a
//! stall, a malformed or cut stream. Requests without `tools` (title generation and other side requests) never
//! consume turns. Every request is logged for the test to inspect.
//!
//! Hand-written HTTP/1.1 on purpose: the scripted misbehaviour (stalling, cutting a stream mid-way) is the point.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::tcp::OwnedWriteHalf;

use super::http::{self, send_json, send_stream, unique, Responder, Server};

/// A scenario: what the model does, attempt by attempt.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// One entry per attempt (claude process) in order.
    #[serde(default)]
    pub attempts: Vec<Attempt>,
}

/// The turns of one attempt.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attempt {
    /// The model's turns in order; after the last, it answers "Done.".
    pub turns: Vec<Turn>,
}

/// One model turn.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Turn {
    /// An assistant text (alone: the final answer; with tools: said before them).
    pub text: Option<String>,
    /// Tool calls: `{ name = "Write", input = { file_path = "{cwd}/x", content = "…" } }`.
    #[serde(default)]
    pub tools: Vec<ToolUse>,
    /// Answer with this HTTP status instead…
    pub status: Option<u16>,
    /// …for this many tries of the same request (default 1), then play the next turn. With `cut_after` or
    /// `malformed`: spoil only this many tries, then send the turn whole (default: every try).
    pub times: Option<u32>,
    /// `retry-after` header for the error.
    pub retry_after: Option<u32>,
    /// Wait this long before answering.
    pub delay_ms: Option<u64>,
    /// Accept the request and never answer.
    #[serde(default)]
    pub stall: bool,
    /// Send this raw body as the SSE stream.
    pub malformed: Option<String>,
    /// Send only the first N SSE events, then drop the connection.
    pub cut_after: Option<usize>,
}

/// A tool call.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolUse {
    /// The tool (Write, Edit, Bash, Read…).
    pub name: String,
    /// Its input; every `{cwd}` in a string is replaced by the workspace.
    pub input: toml::Value,
}

impl Scenario {
    /// Reads a scenario file (TOML).
    pub fn load(path: &Path) -> Scenario {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("scenario {}: {e}", path.display()));
        toml::from_str(&text).unwrap_or_else(|e| panic!("scenario {}: {e}", path.display()))
    }
}

/// One request the stand-in received.
#[derive(Debug, Clone)]
pub struct Request {
    /// `POST /v1/messages` etc.
    pub method: String,
    /// The path.
    pub path: String,
    /// The JSON body, when it had one.
    pub body: Value,
    /// `main` (consumed a turn), `side`, or `other`.
    pub kind: &'static str,
    /// What was answered.
    pub answer: String,
}

#[derive(Default)]
struct Play {
    /// Prompts in the order they first arrived: the index is the attempt.
    prompts: Vec<u64>,
    /// Tries of each (attempt, turn) request, for error turns.
    tries: std::collections::HashMap<(usize, usize), u32>,
}

struct Shared {
    scenario: Scenario,
    cwd: String,
    play: Mutex<Play>,
    log: Mutex<Vec<Request>>,
}

/// A running stand-in; it stops when dropped.
pub struct StandIn {
    shared: Arc<Shared>,
    server: Server,
}

impl StandIn {
    /// Starts a stand-in on a free loopback port, playing `scenario` for an agent working in `cwd`.
    pub fn start(scenario: Scenario, cwd: &Path) -> StandIn {
        let shared = Arc::new(Shared {
            scenario,
            cwd: cwd.display().to_string(),
            play: Mutex::new(Play::default()),
            log: Mutex::new(Vec::new()),
        });
        let server = Server::start(Arc::new(Responds(shared.clone())));
        StandIn { shared, server }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port)
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.log.lock().expect("log").clone()
    }

    /// The main (turn-consuming) requests so far.
    pub fn main_requests(&self) -> Vec<Request> {
        self.requests().into_iter().filter(|r| r.kind == "main").collect()
    }
}

struct Responds(Arc<Shared>);

impl Responder for Responds {
    fn respond<'a>(
        &'a self,
        req: http::Request,
        w: &'a mut OwnedWriteHalf,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + 'a>> {
        Box::pin(async move { respond(&req.method, &req.path, req.body, &self.0, w).await })
    }
}

fn log(shared: &Shared, method: &str, path: &str, body: Value, kind: &'static str, answer: String) {
    shared.log.lock().expect("log").push(Request { method: method.into(), path: path.into(), body, kind, answer });
}

/// A user message that is a prompt (text other than system reminders), not tool results.
fn prompt_text(m: &Value) -> Option<String> {
    if m["role"] != "user" {
        return None;
    }
    let text = match &m["content"] {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| b["type"] == "text")
            .filter_map(|b| b["text"].as_str())
            .filter(|t| !t.trim_start().starts_with("<system-reminder>"))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    };
    (!text.trim().is_empty()).then_some(text)
}

/// The prompt a request answers (the last user prompt) and how many assistant turns followed it.
pub fn prompt_and_turn(body: &Value) -> (String, usize) {
    let msgs = body["messages"].as_array().cloned().unwrap_or_default();
    let Some(at) = msgs.iter().rposition(|m| prompt_text(m).is_some()) else { return (String::new(), 0) };
    let turn = msgs[at + 1..].iter().filter(|m| m["role"] == "assistant").count();
    (prompt_text(&msgs[at]).unwrap_or_default(), turn)
}

fn hash_of(s: &str) -> u64 {
    let mut h = DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

/// The turns of an attempt with error turns folded into the turn they precede: (turn, failures before it).
fn effective_turns(turns: &[Turn]) -> Vec<(Turn, Option<Turn>)> {
    let mut out = Vec::new();
    let mut pending_error: Option<Turn> = None;
    for t in turns {
        if t.status.is_some() {
            pending_error = Some(t.clone());
        } else {
            out.push((t.clone(), pending_error.take()));
        }
    }
    if let Some(e) = pending_error {
        out.push((Turn { text: Some("Done.".into()), ..Turn::default() }, Some(e)));
    }
    out
}

/// Answers one request; false when the connection must close.
async fn respond(method: &str, path: &str, body: Value, shared: &Shared, w: &mut OwnedWriteHalf) -> bool {
    let route = path.split('?').next().unwrap_or("");
    if method == "POST" && route == "/v1/messages/count_tokens" {
        log(shared, method, path, body, "other", "count_tokens".into());
        return send_json(w, 200, &json!({"input_tokens": 100}), &[]).await;
    }
    if method == "HEAD" || (method == "GET" && route.starts_with("/v1/models")) {
        log(shared, method, path, body, "other", "200".into());
        return send_json(w, 200, &json!({"data": [], "has_more": false, "first_id": null, "last_id": null}), &[])
            .await;
    }
    if !(method == "POST" && route == "/v1/messages") {
        log(shared, method, path, body, "other", "404".into());
        let e = json!({"type": "error", "error": {"type": "not_found_error", "message": "not found"}});
        return send_json(w, 404, &e, &[]).await;
    }
    let main = body["tools"].as_array().is_some_and(|t| !t.is_empty());
    if !main {
        log(shared, method, path, body.clone(), "side", "side text".into());
        return stream(w, &body, &Turn { text: Some("Side answer".into()), ..Turn::default() }, &shared.cwd).await;
    }
    let turn = {
        let mut play = shared.play.lock().expect("play");
        let (prompt, turn_no) = prompt_and_turn(&body);
        let key = hash_of(&prompt);
        let attempt = match play.prompts.iter().position(|k| *k == key) {
            Some(a) => a,
            None => {
                play.prompts.push(key);
                play.prompts.len() - 1
            }
        };
        let turns = shared.scenario.attempts.get(attempt).map(|a| effective_turns(&a.turns)).unwrap_or_default();
        let (t, error) =
            turns.get(turn_no).cloned().unwrap_or((Turn { text: Some("Done.".into()), ..Turn::default() }, None));
        let tries = play.tries.entry((attempt, turn_no)).or_insert(0);
        *tries += 1;
        match error {
            Some(e) if *tries <= e.times.unwrap_or(1) => e,
            // A cut or malformed stream with `times`: only for that many tries, then the turn whole.
            _ if t.times.is_some_and(|n| *tries > n) => Turn { cut_after: None, malformed: None, ..t },
            _ => t,
        }
    };
    let answer = if let Some(s) = turn.status {
        format!("HTTP {s}")
    } else if turn.stall {
        "stall".into()
    } else {
        format!("turn: text={:?} tools={}", turn.text, turn.tools.len())
    };
    log(shared, method, path, body.clone(), "main", answer);
    if let Some(ms) = turn.delay_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(status) = turn.status {
        let (etype, msg) = match status {
            429 => ("rate_limit_error", "Rate limited by the stand-in"),
            529 => ("overloaded_error", "Overloaded"),
            400 => ("invalid_request_error", "scripted"),
            _ => ("api_error", "Internal server error"),
        };
        let extra: Vec<(&str, String)> =
            turn.retry_after.map(|r| vec![("retry-after", r.to_string())]).unwrap_or_default();
        let e = json!({"type": "error", "error": {"type": etype, "message": msg}});
        return send_json(w, status, &e, &extra).await;
    }
    if turn.stall {
        // Hold the connection without a byte until the client gives up.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        return false;
    }
    if body["stream"] != Value::Bool(true) {
        // claude's non-streaming fallback (after a broken stream) wants the whole message as JSON.
        return send_json(w, 200, &message_json(&body, &turn, &shared.cwd), &[]).await;
    }
    stream(w, &body, &turn, &shared.cwd).await
}

/// The turn's message as one JSON object.
fn message_json(body: &Value, turn: &Turn, cwd: &str) -> Value {
    let mut content = Vec::new();
    if let Some(t) = turn.text.clone().or_else(|| turn.tools.is_empty().then(|| "Done.".to_string())) {
        content.push(json!({"type": "text", "text": t}));
    }
    for tool in &turn.tools {
        content.push(json!({"type": "tool_use", "id": format!("toolu_{}", unique()), "name": tool.name, "input": substitute(&tool.input, cwd)}));
    }
    json!({"id": format!("msg_{}", unique()), "type": "message", "role": "assistant",
        "model": body["model"].as_str().unwrap_or("claude-stand-in"), "content": content,
        "stop_reason": if turn.tools.is_empty() { "end_turn" } else { "tool_use" }, "stop_sequence": null,
        "usage": {"input_tokens": 100, "output_tokens": 20, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}})
}

fn substitute(v: &toml::Value, cwd: &str) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s.replace("{cwd}", cwd)),
        toml::Value::Integer(i) => json!(i),
        toml::Value::Float(f) => json!(f),
        toml::Value::Boolean(b) => json!(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.iter().map(|x| substitute(x, cwd)).collect()),
        toml::Value::Table(t) => Value::Object(t.iter().map(|(k, x)| (k.clone(), substitute(x, cwd))).collect()),
    }
}

fn sse(event: &str, data: Value) -> String {
    format!("event: {event}\ndata: {data}\n\n")
}

/// The SSE events of a turn's message.
fn events(body: &Value, turn: &Turn, cwd: &str) -> Vec<String> {
    let model = body["model"].as_str().unwrap_or("claude-stand-in").to_string();
    let id = format!("msg_{}", unique());
    let mut ev = vec![sse(
        "message_start",
        json!({"type": "message_start", "message": {"id": id, "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 100, "output_tokens": 1, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}}),
    )];
    ev.push(sse("ping", json!({"type": "ping"})));
    let mut index = 0;
    let text = match (&turn.text, turn.tools.is_empty()) {
        (Some(t), _) => Some(t.clone()),
        (None, true) => Some("Done.".to_string()),
        (None, false) => None,
    };
    if let Some(t) = text {
        ev.push(sse(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}),
        ));
        let mid = t.char_indices().nth(t.chars().count() / 2).map(|(i, _)| i).unwrap_or(0);
        for piece in [&t[..mid], &t[mid..]] {
            if !piece.is_empty() {
                ev.push(sse("content_block_delta", json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}})));
            }
        }
        ev.push(sse("content_block_stop", json!({"type": "content_block_stop", "index": index})));
        index += 1;
    }
    for tool in &turn.tools {
        let tid = format!("toolu_{}", unique());
        ev.push(sse("content_block_start", json!({"type": "content_block_start", "index": index, "content_block": {"type": "tool_use", "id": tid, "name": tool.name, "input": {}}})));
        let input = substitute(&tool.input, cwd).to_string();
        let mid = input.char_indices().nth(input.chars().count() / 2).map(|(i, _)| i).unwrap_or(0);
        for piece in [&input[..mid], &input[mid..]] {
            ev.push(sse("content_block_delta", json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": piece}})));
        }
        ev.push(sse("content_block_stop", json!({"type": "content_block_stop", "index": index})));
        index += 1;
    }
    let stop = if turn.tools.is_empty() { "end_turn" } else { "tool_use" };
    ev.push(sse("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": 20}})));
    ev.push(sse("message_stop", json!({"type": "message_stop"})));
    ev
}

async fn stream(w: &mut OwnedWriteHalf, body: &Value, turn: &Turn, cwd: &str) -> bool {
    let chunks: Vec<String> = match &turn.malformed {
        Some(raw) => vec![raw.clone()],
        None => events(body, turn, cwd),
    };
    send_stream(w, &chunks, turn.cut_after).await
}

/// Where the pinned `claude` is installed for tests.
pub fn tools_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("test-tools")
}

/// The check of the calc projects the claude tests and the evaluation corpus use: calc.sh adds its two arguments.
pub const CALC_CHECK: &str = r#"#!/bin/sh
# The project's check: calc.sh adds its two arguments.
[ -f calc.sh ] || { echo "FAIL: calc.sh is missing"; exit 1; }
got=$(sh calc.sh 2 3)
[ "$got" = "5" ] || { echo "FAIL: sh calc.sh 2 3 printed '$got', expected 5"; exit 1; }
echo "ok: 2 + 3 = 5"
"#;

/// The `[agent]` and `[agent.env]` tables that run the pinned `claude` against a stand-in at `url`, with its own
/// `home` (its sessions live there) and the test API key (which must never reach the journal).
pub fn claude_agent_toml(claude: &Path, args: &[String], idle_timeout_secs: u64, url: &str, home: &Path) -> String {
    format!(
        r#"[agent]
kind = "claude-code"
program = "{claude}"
args = {args}
timeout_secs = 120
idle_timeout_secs = {idle_timeout_secs}

[agent.env]
ANTHROPIC_BASE_URL = "{url}"
ANTHROPIC_API_KEY = "sk-ant-test-secret-key-0123456789"
CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC = "1"
DISABLE_AUTOUPDATER = "1"
HOME = "{home}"
"#,
        claude = claude.display(),
        args = toml::Value::from(args.to_vec()),
        home = home.display(),
    )
}
