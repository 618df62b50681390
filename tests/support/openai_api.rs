//! A loopback stand-in of an OpenAI-compatible chat-completions API (`POST /v1/chat/completions`, streamed as
//! `chat.completion.chunk` events ending in `[DONE]`, or as one JSON object), playing scripted replies in order —
//! for aider, which reaches its model through litellm.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::tcp::OwnedWriteHalf;

use super::http::{self, send_json, send_stream, unique, Responder, Server};

/// One scripted reply.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    /// The assistant's message.
    pub content: Option<String>,
    /// Answer with this HTTP status instead…
    pub status: Option<u16>,
    /// …this many times (default 1), then go on to the next reply.
    pub times: Option<u32>,
    /// Wait this long first.
    pub delay_ms: Option<u64>,
}

/// The replies, in order; after the last, "Done.".
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    /// What each chat completion gets.
    pub replies: Vec<Reply>,
}

/// One request received.
#[derive(Debug, Clone)]
pub struct Logged {
    /// The path.
    pub path: String,
    /// The JSON body.
    pub body: Value,
    /// What was answered.
    pub answer: String,
}

struct Shared {
    script: Script,
    next: Mutex<(usize, u32)>,
    log: Mutex<Vec<Logged>>,
}

/// A running stand-in; it stops when dropped.
pub struct OpenAiStandIn {
    shared: Arc<Shared>,
    server: Server,
}

impl OpenAiStandIn {
    /// Starts one playing `script`.
    pub fn start(script: Script) -> OpenAiStandIn {
        let shared = Arc::new(Shared { script, next: Mutex::new((0, 0)), log: Mutex::new(Vec::new()) });
        let server = Server::start(Arc::new(Responds(shared.clone())));
        OpenAiStandIn { shared, server }
    }

    /// `http://127.0.0.1:PORT/v1`, the API base.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.server.port)
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Logged> {
        self.shared.log.lock().expect("log").clone()
    }
}

struct Responds(Arc<Shared>);

impl Responder for Responds {
    fn respond<'a>(
        &'a self,
        req: http::Request,
        w: &'a mut OwnedWriteHalf,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + 'a>> {
        Box::pin(async move { respond(req, &self.0, w).await })
    }
}

fn next_reply(shared: &Shared) -> Reply {
    let mut next = shared.next.lock().expect("next");
    loop {
        let reply = shared
            .script
            .replies
            .get(next.0)
            .cloned()
            .unwrap_or(Reply { content: Some("Done.".into()), ..Reply::default() });
        if reply.status.is_some() {
            if next.1 < reply.times.unwrap_or(1) {
                next.1 += 1;
                return reply;
            }
            *next = (next.0 + 1, 0);
            continue;
        }
        if next.0 < shared.script.replies.len() {
            *next = (next.0 + 1, 0);
        }
        return reply;
    }
}

async fn respond(req: http::Request, shared: &Shared, w: &mut OwnedWriteHalf) -> bool {
    let route = req.path.split('?').next().unwrap_or("").to_string();
    let log = |answer: String| {
        shared.log.lock().expect("log").push(Logged { path: req.path.clone(), body: req.body.clone(), answer });
    };
    if req.method != "POST" || !route.ends_with("/chat/completions") {
        log("404".into());
        let e = json!({"error": {"message": "not found", "type": "invalid_request_error", "code": "not_found"}});
        return send_json(w, 404, &e, &[]).await;
    }
    let reply = next_reply(shared);
    if let Some(ms) = reply.delay_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(status) = reply.status {
        log(format!("HTTP {status}"));
        let e =
            json!({"error": {"message": format!("stand-in error {status}"), "type": "server_error", "code": status}});
        return send_json(w, status, &e, &[]).await;
    }
    let content = reply.content.unwrap_or_default();
    log(format!("reply: {}", content.lines().next().unwrap_or("")));
    let model = req.body["model"].as_str().unwrap_or("stand-in").to_string();
    let id = format!("chatcmpl-{}", unique());
    let created = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let usage = json!({"prompt_tokens": 600, "completion_tokens": (content.len() / 4).max(1), "total_tokens": 600 + (content.len() / 4).max(1)});
    if req.body["stream"] != Value::Bool(true) {
        let body = json!({"id": id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": usage});
        return send_json(w, 200, &body, &[]).await;
    }
    let chunk = |delta: Value, finish: Value| {
        let mut c = json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        if !finish.is_null() {
            c["usage"] = usage.clone();
        }
        format!("data: {c}\n\n")
    };
    let mut chunks = vec![chunk(json!({"role": "assistant", "content": ""}), Value::Null)];
    let pieces: Vec<char> = content.chars().collect();
    for part in pieces.chunks(40) {
        chunks.push(chunk(json!({"content": part.iter().collect::<String>()}), Value::Null));
    }
    chunks.push(chunk(json!({}), json!("stop")));
    chunks.push("data: [DONE]\n\n".to_string());
    send_stream(w, &chunks, None).await
}
