//! A scripted server following Ollama's documented API — no registry ships Ollama, so its API is tested this way:
//! `GET /api/tags` lists the models it has; `POST /api/chat` (non-streaming) plays scripted replies in order, with
//! the request's `format` (the JSON schema) logged for the test to check.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::net::tcp::OwnedWriteHalf;

use super::http::{self, send_json, Responder, Server};

/// One scripted reply to `/api/chat`.
#[derive(Debug, Clone)]
pub enum ChatReply {
    /// `message.content`, `done_reason: "stop"`.
    Content(String),
    /// `done_reason: "length"` with this (cut) content.
    Truncated(String),
    /// An HTTP error with Ollama's `{"error": …}` body.
    Status(u16, String),
}

struct Shared {
    models: Vec<String>,
    replies: Mutex<Vec<ChatReply>>,
    log: Mutex<Vec<(String, Value)>>,
}

/// A running scripted Ollama; it stops when dropped.
pub struct OllamaStandIn {
    shared: Arc<Shared>,
    server: Server,
}

impl OllamaStandIn {
    /// Serves `models` (as `/api/tags` lists them) and answers chats with `replies` in order, then "{}".
    pub fn start(models: &[&str], replies: Vec<ChatReply>) -> OllamaStandIn {
        let shared = Arc::new(Shared {
            models: models.iter().map(|m| m.to_string()).collect(),
            replies: Mutex::new(replies.into_iter().rev().collect()),
            log: Mutex::new(Vec::new()),
        });
        let server = Server::start(Arc::new(Responds(shared.clone())));
        OllamaStandIn { shared, server }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port)
    }

    /// (path, body) of every request.
    pub fn requests(&self) -> Vec<(String, Value)> {
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
        Box::pin(async move {
            let s = &self.0;
            s.log.lock().expect("log").push((req.path.clone(), req.body.clone()));
            match (req.method.as_str(), req.path.as_str()) {
                ("GET", "/api/tags") => {
                    let models: Vec<Value> = s
                        .models
                        .iter()
                        .map(|m| {
                            json!({"name": m, "model": m, "modified_at": "2026-11-01T00:00:00Z", "size": 1,
                            "digest": "0000", "details": {"format": "gguf", "family": "qwen2"}})
                        })
                        .collect();
                    send_json(w, 200, &json!({"models": models}), &[]).await
                }
                ("POST", "/api/chat") => {
                    let model = req.body["model"].as_str().unwrap_or("").to_string();
                    if !s.models.contains(&model) {
                        return send_json(w, 404, &json!({"error": format!("model '{model}' not found")}), &[]).await;
                    }
                    let reply = s.replies.lock().expect("replies").pop().unwrap_or(ChatReply::Content("{}".into()));
                    let (content, reason) = match reply {
                        ChatReply::Status(status, error) => {
                            return send_json(w, status, &json!({"error": error}), &[]).await
                        }
                        ChatReply::Content(c) => (c, "stop"),
                        ChatReply::Truncated(c) => (c, "length"),
                    };
                    let body = json!({"model": model, "created_at": "2026-11-25T00:00:00Z",
                        "message": {"role": "assistant", "content": content}, "done_reason": reason, "done": true,
                        "total_duration": 1000, "load_duration": 10, "prompt_eval_count": 42,
                        "prompt_eval_duration": 100, "eval_count": 17, "eval_duration": 200});
                    send_json(w, 200, &body, &[]).await
                }
                _ => send_json(w, 404, &json!({"error": "404 page not found"}), &[]).await,
            }
        })
    }
}
