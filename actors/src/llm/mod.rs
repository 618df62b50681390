//! The local LLM: providers behind one trait, one module each (`openai`: any OpenAI-compatible server — llama.cpp,
//! vLLM, LM Studio, Ollama's /v1; `ollama`: Ollama's native API), and the client-side check of structured answers
//! (`schema`). The `LlmGateway` actor in front of them bounds concurrency, retries and journals every call.

pub mod ollama;
pub mod openai;
pub mod schema;

use std::future::Future;
use std::pin::Pin;

use serde_json::Value;

use crate::settings::{LlmProviderKind, LlmSettings};

/// A boxed future, for the provider trait.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A check of what an answer means, beyond its schema: `Err` says why it makes no sense.
pub type SenseCheck = fn(&Value) -> Result<(), String>;

/// What to ask.
#[derive(Debug, Clone)]
pub struct LlmRequest {
    /// Why (journaled): `review`, `clarify`, …
    pub purpose: String,
    /// The system message.
    pub system: String,
    /// The user message.
    pub user: String,
    /// A JSON schema the answer must follow (enforced by the server where it can, always checked here).
    pub schema: Option<Value>,
    /// Upper bound on the answer's tokens.
    pub max_tokens: u32,
    /// What a schema cannot say: an answer that follows it and still makes no sense (a verdict its own score
    /// contradicts, an issue without a word in it) is unusable like one that does not follow it.
    pub sense: Option<SenseCheck>,
}

/// What came back.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmAnswer {
    /// The text.
    pub text: String,
    /// The text parsed and checked against the schema, when one was given.
    pub json: Option<Value>,
    /// Tokens in the prompt, as the server counted.
    pub prompt_tokens: u64,
    /// Tokens in the answer.
    pub completion_tokens: u64,
    /// The model the server says answered.
    pub model: String,
}

/// Why a call failed; each is recorded, and the gateway retries those that may pass.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LlmError {
    /// No connection (refused, DNS, reset).
    #[error("the LLM at {url} cannot be reached: {detail}")]
    Unreachable {
        /// Where.
        url: String,
        /// The transport error.
        detail: String,
    },
    /// No answer in time.
    #[error("the LLM did not answer within {secs} s")]
    Timeout {
        /// The limit.
        secs: u64,
    },
    /// An HTTP error status.
    #[error("the LLM answered HTTP {status}: {body}")]
    Http {
        /// The status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// The answer was cut short by its token limit.
    #[error("the answer was cut short at {tokens} tokens")]
    Truncated {
        /// Tokens produced.
        tokens: u64,
    },
    /// The answer is not what was asked for (not JSON, not the schema, empty, malformed).
    #[error("unusable answer: {why}")]
    BadAnswer {
        /// What is wrong with it.
        why: String,
    },
    /// The configured model is not served.
    #[error("the model `{model}` is not available ({detail})")]
    NoModel {
        /// The model.
        model: String,
        /// What the server offers.
        detail: String,
    },
}

impl LlmError {
    /// A short, stable name for the journal.
    pub fn outcome(&self) -> &'static str {
        match self {
            LlmError::Unreachable { .. } => "unreachable",
            LlmError::Timeout { .. } => "timeout",
            LlmError::Http { .. } => "http_error",
            LlmError::Truncated { .. } => "truncated",
            LlmError::BadAnswer { .. } => "bad_answer",
            LlmError::NoModel { .. } => "no_model",
        }
    }

    /// Worth another try: transport trouble, overload, server errors.
    pub fn transient(&self) -> bool {
        match self {
            LlmError::Unreachable { .. } | LlmError::Timeout { .. } => true,
            LlmError::Http { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }

    /// The answer came but cannot be used: tried once more, then the signal is dropped.
    pub fn bad_answer(&self) -> bool {
        matches!(self, LlmError::Truncated { .. } | LlmError::BadAnswer { .. })
    }

    pub(crate) fn from_reqwest(url: &str, timeout_secs: u64, e: reqwest::Error) -> LlmError {
        if e.is_timeout() {
            LlmError::Timeout { secs: timeout_secs }
        } else if e.is_connect() || e.is_request() {
            LlmError::Unreachable { url: url.to_string(), detail: e.to_string() }
        } else if e.is_decode() || e.is_body() {
            LlmError::BadAnswer { why: format!("the response does not decode: {e}") }
        } else {
            LlmError::Unreachable { url: url.to_string(), detail: e.to_string() }
        }
    }
}

/// One LLM API.
pub trait Provider: Send + Sync {
    /// `ollama` or `openai`.
    fn name(&self) -> &'static str;
    /// Asks once.
    fn chat<'a>(
        &'a self,
        http: &'a reqwest::Client,
        settings: &'a LlmSettings,
        req: &'a LlmRequest,
    ) -> BoxFuture<'a, Result<LlmAnswer, LlmError>>;
    /// Checks the server is there and serves the model; returns what it says about it.
    fn check<'a>(
        &'a self,
        http: &'a reqwest::Client,
        settings: &'a LlmSettings,
    ) -> BoxFuture<'a, Result<String, LlmError>>;
}

/// The provider for a kind; `None` for `provider = "none"`.
pub fn provider(kind: LlmProviderKind) -> Option<&'static dyn Provider> {
    match kind {
        LlmProviderKind::None => None,
        LlmProviderKind::Ollama => Some(&ollama::Ollama),
        LlmProviderKind::OpenAi => Some(&openai::OpenAi),
    }
}

/// Parses an answer's text against the request's schema.
pub(crate) fn checked_json(req: &LlmRequest, text: &str) -> Result<Option<Value>, LlmError> {
    let Some(schema) = &req.schema else { return Ok(None) };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(LlmError::BadAnswer { why: "the answer is empty".into() });
    }
    let v: Value = serde_json::from_str(trimmed)
        .map_err(|e| LlmError::BadAnswer { why: format!("not JSON ({e}): {}", crate::redact::head(trimmed, 120)) })?;
    schema::validate(schema, &v)
        .map_err(|why| LlmError::BadAnswer { why: format!("does not follow the schema: {why}") })?;
    if let Some(sense) = req.sense {
        sense(&v).map_err(|why| LlmError::BadAnswer { why: format!("makes no sense: {why}") })?;
    }
    Ok(Some(v))
}

/// Sends a request and returns its body when the status is 2xx; every failure becomes the matching [`LlmError`].
pub(crate) async fn fetch(rb: reqwest::RequestBuilder, url: &str, timeout_secs: u64) -> Result<String, LlmError> {
    let resp = rb.send().await.map_err(|e| LlmError::from_reqwest(url, timeout_secs, e))?;
    let status = resp.status().as_u16();
    let text = resp.text().await.map_err(|e| LlmError::from_reqwest(url, timeout_secs, e))?;
    if !(200..300).contains(&status) {
        return Err(LlmError::Http { status, body: body_head(&text) });
    }
    Ok(text)
}

/// The start of a body, for an error message.
pub(crate) fn body_head(body: &str) -> String {
    crate::redact::head(body.trim(), 300).to_string()
}
