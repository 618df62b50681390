//! Any OpenAI-compatible server (`provider = "openai"`): `POST /v1/chat/completions` with `response_format`
//! `json_schema`, `GET /v1/models` to check. Works with llama.cpp's server, vLLM, LM Studio and Ollama's /v1.

use serde_json::{json, Value};

use super::{body_head, checked_json, fetch, BoxFuture, LlmAnswer, LlmError, LlmRequest, Provider};
use crate::settings::LlmSettings;

/// See the module documentation.
pub struct OpenAi;

/// `base_url` with `/v1` once.
fn v1(base: &str) -> String {
    let b = base.trim_end_matches('/');
    if b.ends_with("/v1") {
        b.to_string()
    } else {
        format!("{b}/v1")
    }
}

fn authorized(rb: reqwest::RequestBuilder, s: &LlmSettings) -> reqwest::RequestBuilder {
    match &s.api_key {
        Some(k) => rb.bearer_auth(k),
        None => rb,
    }
}

impl Provider for OpenAi {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn chat<'a>(
        &'a self,
        http: &'a reqwest::Client,
        s: &'a LlmSettings,
        req: &'a LlmRequest,
    ) -> BoxFuture<'a, Result<LlmAnswer, LlmError>> {
        Box::pin(async move {
            let url = format!("{}/chat/completions", v1(&s.base_url));
            let mut body = json!({
                "model": s.model,
                "messages": [{"role": "system", "content": req.system}, {"role": "user", "content": req.user}],
                "temperature": s.temperature,
                "max_tokens": req.max_tokens,
                "stream": false,
            });
            if let Some(schema) = &req.schema {
                body["response_format"] = json!({"type": "json_schema", "json_schema": {"name": req.purpose, "strict": true, "schema": schema}});
            }
            let text =
                fetch(authorized(http.post(&url).timeout(s.timeout).json(&body), s), &url, s.timeout.as_secs()).await?;
            let v: Value = serde_json::from_str(&text).map_err(|e| LlmError::BadAnswer {
                why: format!("the response is not JSON ({e}): {}", body_head(&text)),
            })?;
            let choice = &v["choices"][0];
            let content = choice["message"]["content"].as_str().ok_or_else(|| LlmError::BadAnswer {
                why: format!("no choices[0].message.content in {}", body_head(&text)),
            })?;
            let completion_tokens = v["usage"]["completion_tokens"].as_u64().unwrap_or(0);
            if choice["finish_reason"] == "length" {
                return Err(LlmError::Truncated { tokens: completion_tokens });
            }
            Ok(LlmAnswer {
                json: checked_json(req, content)?,
                text: content.to_string(),
                prompt_tokens: v["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
                completion_tokens,
                model: v["model"].as_str().unwrap_or(&s.model).to_string(),
            })
        })
    }

    fn check<'a>(&'a self, http: &'a reqwest::Client, s: &'a LlmSettings) -> BoxFuture<'a, Result<String, LlmError>> {
        Box::pin(async move {
            let url = format!("{}/models", v1(&s.base_url));
            let text = fetch(authorized(http.get(&url).timeout(s.timeout), s), &url, s.timeout.as_secs()).await?;
            let v: Value = serde_json::from_str(&text)
                .map_err(|e| LlmError::BadAnswer { why: format!("/models is not JSON ({e})") })?;
            let ids: Vec<&str> = v["data"].as_array().into_iter().flatten().filter_map(|m| m["id"].as_str()).collect();
            // Some servers (llama.cpp) answer whatever model is named; a missing id is worth saying, not fatal.
            Ok(if ids.contains(&s.model.as_str()) {
                format!("{} serves `{}`", s.base_url, s.model)
            } else {
                format!("{} does not list `{}` (it lists {}); asking it anyway", s.base_url, s.model, ids.join(", "))
            })
        })
    }
}
