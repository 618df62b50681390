//! The pipeline's shared ports: what every pipeline actor (AgentSession → Validator → QualityController →
//! ConfidenceScorer → DecisionEngine) and the Scheduler exchange besides their own messages. Kept apart so that the
//! pipeline actors need not import the Scheduler, nor the Scheduler them, for these.

use actix::prelude::*;

use super::report::{AttemptReport, Conclusion};
use super::state_journal::Append;
use crate::journal::Event;
use crate::types::AttemptRef;

/// A session ended without reaching the pipeline (stopped, or an internal error).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionEnded {
    /// Which attempt.
    pub attempt: AttemptRef,
    /// It was stopped on request.
    pub interrupted: bool,
    /// What went wrong, when something did.
    pub error: Option<String>,
}

impl SessionEnded {
    /// Tells `to` that `attempt` could not be carried through the pipeline.
    pub fn failed(to: &Recipient<SessionEnded>, attempt: AttemptRef, error: String) {
        tracing::error!("{attempt}: {error}");
        to.do_send(SessionEnded { attempt, interrupted: false, error: Some(error) });
    }
}

/// Journals an attempt's `events` before the pipeline acts on them. When they cannot be recorded — the journal
/// refused them or is gone — the attempt stops there: the scheduler is told (it escalates the task with the reason)
/// and `false` comes back.
pub async fn record_or_fail(
    journal: &Recipient<Append>,
    failed: &Recipient<SessionEnded>,
    attempt: &AttemptRef,
    what: &str,
    events: Vec<Event>,
) -> bool {
    let error = match journal.send(Append(events)).await {
        Ok(Ok(_)) => return true,
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    SessionEnded::failed(failed, attempt.clone(), format!("recording {what}: {error}"));
    false
}

/// The DecisionEngine's conclusion on an attempt.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Concluded {
    /// The attempt, with all the evidence.
    pub report: AttemptReport,
    /// The decision.
    pub conclusion: Conclusion,
}
