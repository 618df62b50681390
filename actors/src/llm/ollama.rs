//! Ollama's native API (`provider = "ollama"`): `POST /api/chat` with the JSON schema in `format`, `GET /api/tags`
//! to check the model is there.

use serde_json::{json, Value};

use super::{body_head, checked_json, fetch, BoxFuture, LlmAnswer, LlmError, LlmRequest, Provider};
use crate::settings::LlmSettings;

/// See the module documentation.
pub struct Ollama;

fn base(s: &LlmSettings) -> &str {
    s.base_url.trim_end_matches('/')
}

/// `qwen2.5-coder` and `qwen2.5-coder:latest` are the same model.
fn same_model(a: &str, b: &str) -> bool {
    let norm = |m: &str| if m.contains(':') { m.to_string() } else { format!("{m}:latest") };
    norm(a) == norm(b)
}

impl Provider for Ollama {
    fn name(&self) -> &'static str {
        "ollama"
    }

    fn chat<'a>(
        &'a self,
        http: &'a reqwest::Client,
        s: &'a LlmSettings,
        req: &'a LlmRequest,
    ) -> BoxFuture<'a, Result<LlmAnswer, LlmError>> {
        Box::pin(async move {
            let url = format!("{}/api/chat", base(s));
            let mut body = json!({
                "model": s.model,
                "messages": [{"role": "system", "content": req.system}, {"role": "user", "content": req.user}],
                "stream": false,
                "options": {"temperature": s.temperature, "num_predict": req.max_tokens},
            });
            if let Some(schema) = &req.schema {
                body["format"] = schema.clone();
            }
            let secs = s.timeout.as_secs();
            let resp = http
                .post(&url)
                .timeout(s.timeout)
                .json(&body)
                .send()
                .await
                .map_err(|e| LlmError::from_reqwest(&url, secs, e))?;
            let status = resp.status().as_u16();
            let text = resp.text().await.map_err(|e| LlmError::from_reqwest(&url, secs, e))?;
            if status == 404 && text.contains("not found") {
                return Err(LlmError::NoModel { model: s.model.clone(), detail: body_head(&text) });
            }
            if !(200..300).contains(&status) {
                return Err(LlmError::Http { status, body: body_head(&text) });
            }
            let v: Value = serde_json::from_str(&text).map_err(|e| LlmError::BadAnswer {
                why: format!("the response is not JSON ({e}): {}", body_head(&text)),
            })?;
            let content = v["message"]["content"]
                .as_str()
                .ok_or_else(|| LlmError::BadAnswer { why: format!("no message.content in {}", body_head(&text)) })?;
            let completion_tokens = v["eval_count"].as_u64().unwrap_or(0);
            if v["done_reason"] == "length" {
                return Err(LlmError::Truncated { tokens: completion_tokens });
            }
            Ok(LlmAnswer {
                json: checked_json(req, content)?,
                text: content.to_string(),
                prompt_tokens: v["prompt_eval_count"].as_u64().unwrap_or(0),
                completion_tokens,
                model: v["model"].as_str().unwrap_or(&s.model).to_string(),
            })
        })
    }

    fn check<'a>(&'a self, http: &'a reqwest::Client, s: &'a LlmSettings) -> BoxFuture<'a, Result<String, LlmError>> {
        Box::pin(async move {
            let url = format!("{}/api/tags", base(s));
            let text = fetch(http.get(&url).timeout(s.timeout), &url, s.timeout.as_secs()).await?;
            let v: Value = serde_json::from_str(&text)
                .map_err(|e| LlmError::BadAnswer { why: format!("/api/tags is not JSON ({e})") })?;
            let names: Vec<&str> =
                v["models"].as_array().into_iter().flatten().filter_map(|m| m["name"].as_str()).collect();
            if names.iter().any(|n| same_model(n, &s.model)) {
                Ok(format!("{} serves `{}`", s.base_url, s.model))
            } else {
                Err(LlmError::NoModel {
                    model: s.model.clone(),
                    detail: format!("Ollama at {} has {}; run `ollama pull {}`", s.base_url, names.join(", "), s.model),
                })
            }
        })
    }
}
