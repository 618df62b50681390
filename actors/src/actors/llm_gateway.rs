//! The LLM gateway actor, in front of the local model: at most `llm.max_concurrent` calls at once, bounded retries
//! with exponential backoff and jitter for calls that failed in transit or with 429/5xx, one more try for an
//! unusable answer (garbage, not the schema, truncated), and every try journaled — model, tokens, latency, outcome,
//! never the API key. Every request is redacted before it is sent: the LLM never sees a secret (a review's diff, an
//! agent's question).

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::Semaphore;

use super::state_journal::Append;
use crate::journal::event::{Event, LlmCalled};
use crate::llm::{LlmAnswer, LlmError, LlmRequest, Provider};
use crate::settings::LlmSettings;
use crate::types::AttemptRef;

/// Ask the LLM; the answer, or why there is none after the retries.
#[derive(Message)]
#[rtype(result = "Result<LlmAnswer, LlmError>")]
pub struct Ask {
    /// What to ask.
    pub request: LlmRequest,
    /// The attempt it is about, if any.
    pub about: Option<AttemptRef>,
}

/// Check that the server is there and serves the model (journaled as purpose `check`).
#[derive(Message)]
#[rtype(result = "Result<String, LlmError>")]
pub struct CheckLlm;

/// See the module documentation.
pub struct LlmGateway {
    settings: Arc<LlmSettings>,
    provider: &'static dyn Provider,
    http: reqwest::Client,
    permits: Arc<Semaphore>,
    journal: Recipient<Append>,
    redactor: Arc<crate::redact::Redactor>,
}

impl LlmGateway {
    /// A gateway for `provider` with these settings.
    pub fn new(settings: LlmSettings, provider: &'static dyn Provider, journal: Recipient<Append>) -> Self {
        let permits = Arc::new(Semaphore::new(settings.max_concurrent.max(1)));
        LlmGateway {
            settings: Arc::new(settings),
            provider,
            http: reqwest::Client::new(),
            permits,
            journal,
            redactor: Arc::default(),
        }
    }

    /// Redacts every request with `redactor` before it is sent.
    pub fn with_redactor(mut self, redactor: Arc<crate::redact::Redactor>) -> Self {
        self.redactor = redactor;
        self
    }
}

impl Actor for LlmGateway {
    type Context = Context<Self>;
}

/// 250 ms, 500 ms, 1 s … capped at 8 s, each with up to 50 % added at random.
pub fn backoff(try_number: u32) -> Duration {
    let base = 250u64.saturating_mul(1u64 << try_number.saturating_sub(1).min(5)).min(8000);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let jitter = (u64::from(nanos) % 1000) * base / 2000;
    Duration::from_millis(base + jitter)
}

fn record(
    about: &Option<AttemptRef>,
    purpose: &str,
    provider: &str,
    model: &str,
    try_number: u32,
    started: Instant,
    result: &Result<(u64, u64), LlmError>,
) -> Event {
    let (outcome, error, (pt, ct)) = match result {
        Ok(t) => ("ok".to_string(), String::new(), *t),
        Err(e) => (e.outcome().to_string(), e.to_string(), (0, 0)),
    };
    Event::LlmCalled(LlmCalled {
        project: about.as_ref().map(|a| a.key.project.clone()),
        task: about.as_ref().map(|a| a.key.task.clone()),
        attempt: about.as_ref().map(|a| a.attempt),
        purpose: purpose.to_string(),
        provider: provider.to_string(),
        model: model.to_string(),
        outcome,
        try_number,
        prompt_tokens: pt,
        completion_tokens: ct,
        latency_us: started.elapsed().as_micros() as u64,
        error,
    })
}

impl Handler<Ask> for LlmGateway {
    type Result = ResponseFuture<Result<LlmAnswer, LlmError>>;

    fn handle(&mut self, msg: Ask, _ctx: &mut Self::Context) -> Self::Result {
        let (settings, provider, http, permits, journal) =
            (self.settings.clone(), self.provider, self.http.clone(), self.permits.clone(), self.journal.clone());
        let mut msg = msg;
        self.redactor.redact_in_place(&mut msg.request.system);
        self.redactor.redact_in_place(&mut msg.request.user);
        Box::pin(async move {
            let _permit = permits.acquire_owned().await.map_err(|_| LlmError::Unreachable {
                url: settings.base_url.clone(),
                detail: "the gateway is shutting down".into(),
            })?;
            let mut try_number = 0;
            let mut bad_answers = 0;
            loop {
                try_number += 1;
                let started = Instant::now();
                let result = provider.chat(&http, &settings, &msg.request).await;
                let summary = result.as_ref().map(|a| (a.prompt_tokens, a.completion_tokens)).map_err(Clone::clone);
                let event = record(
                    &msg.about,
                    &msg.request.purpose,
                    provider.name(),
                    &settings.model,
                    try_number,
                    started,
                    &summary,
                );
                // The call is on the record before anyone acts on it.
                if let Err(e) = journal.send(Append(vec![event])).await {
                    tracing::error!("journal gone while recording an LLM call: {e}");
                }
                match result {
                    Ok(answer) => return Ok(answer),
                    Err(e) if e.transient() && try_number <= settings.max_retries => {
                        tokio::time::sleep(backoff(try_number)).await;
                    }
                    Err(e) if e.bad_answer() && bad_answers == 0 => bad_answers += 1,
                    Err(e) => return Err(e),
                }
            }
        })
    }
}

impl Handler<CheckLlm> for LlmGateway {
    type Result = ResponseFuture<Result<String, LlmError>>;

    fn handle(&mut self, _msg: CheckLlm, _ctx: &mut Self::Context) -> Self::Result {
        let (settings, provider, http, journal) =
            (self.settings.clone(), self.provider, self.http.clone(), self.journal.clone());
        Box::pin(async move {
            let started = Instant::now();
            let result = provider.check(&http, &settings).await;
            let summary = result.as_ref().map(|_| (0, 0)).map_err(Clone::clone);
            let event = record(&None, "check", provider.name(), &settings.model, 1, started, &summary);
            if let Err(e) = journal.send(Append(vec![event])).await {
                tracing::error!("journal gone while recording an LLM check: {e}");
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::backoff;

    #[test]
    fn backoff_grows_is_capped_and_jittered_within_half() {
        for (n, base) in [(1, 250), (2, 500), (3, 1000), (6, 8000), (20, 8000)] {
            let d = backoff(n).as_millis() as u64;
            assert!(d >= base && d <= base + base / 2, "try {n}: {d} ms");
        }
    }
}
