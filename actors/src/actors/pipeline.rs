//! The pipeline's shared ports: what every pipeline actor (AgentSession → Validator → QualityController →
//! ConfidenceScorer → DecisionEngine) and the Scheduler exchange besides their own messages. Kept apart so that the
//! pipeline actors need not import the Scheduler, nor the Scheduler them, for these.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

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

/// A future that turns a panic while it is polled into `Err(the panic's message)` (see [`catch_panic`]).
pub struct CatchPanic<F> {
    inner: Pin<Box<F>>,
}

/// `fut`, with a panic while it is polled caught and given back as `Err(message)` instead of unwinding into the
/// actor's thread (which would drop the attempt's work without a word to the scheduler: a run waiting forever).
pub fn catch_panic<F: Future>(fut: F) -> CatchPanic<F> {
    CatchPanic { inner: Box::pin(fut) }
}

impl<F: Future> Future for CatchPanic<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let inner = self.inner.as_mut();
        // Once it has panicked it is never polled again: the result is ready.
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(panic_message(payload.as_ref()))),
        }
    }
}

/// What a panic said, when it said it with a string.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_string());
    format!("internal error: panicked: {what}")
}

/// One pipeline step on an attempt: `step` (its synchronous work) and the future it returns run with panics
/// caught; a panic in either ends the attempt as an internal error — the scheduler is told through `failed`, journals
/// it and escalates the task — instead of dropping the attempt and leaving the run waiting for it forever.
pub fn guarded<A, F>(
    failed: &Recipient<SessionEnded>,
    attempt: AttemptRef,
    what: &'static str,
    step: impl FnOnce() -> F,
) -> ResponseActFuture<A, ()>
where
    A: Actor,
    F: Future<Output = ()> + 'static,
{
    let failed = failed.clone();
    let fut = match std::panic::catch_unwind(AssertUnwindSafe(step)) {
        Ok(fut) => Some(catch_panic(fut)),
        Err(payload) => {
            SessionEnded::failed(&failed, attempt.clone(), format!("{what}: {}", panic_message(payload.as_ref())));
            None
        }
    };
    Box::pin(actix::fut::wrap_future::<_, A>(async move {
        if let Some(fut) = fut {
            if let Err(panic) = fut.await {
                SessionEnded::failed(&failed, attempt, format!("{what}: {panic}"));
            }
        }
    }))
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::types::TaskKey;

    /// Keeps what the scheduler would be told.
    struct Told(Arc<Mutex<Vec<SessionEnded>>>);

    impl Actor for Told {
        type Context = Context<Self>;
    }

    impl Handler<SessionEnded> for Told {
        type Result = ();

        fn handle(&mut self, msg: SessionEnded, _ctx: &mut Self::Context) {
            if let Ok(mut v) = self.0.lock() {
                v.push(msg);
            }
        }
    }

    /// A step that runs its future when asked.
    struct Step(Recipient<SessionEnded>);

    impl Actor for Step {
        type Context = Context<Self>;
    }

    #[derive(Message)]
    #[rtype(result = "()")]
    struct Go(u8);

    impl Handler<Go> for Step {
        type Result = ResponseActFuture<Self, ()>;

        fn handle(&mut self, msg: Go, _ctx: &mut Self::Context) -> Self::Result {
            let attempt = AttemptRef { key: TaskKey::new("p", "t"), attempt: msg.0 as u32 };
            guarded(&self.0, attempt, "its step", move || {
                if msg.0 == 1 {
                    panic!("in the step itself");
                }
                async move {
                    tokio::task::yield_now().await;
                    if msg.0 == 2 {
                        panic!("in its future, after a wait");
                    }
                }
            })
        }
    }

    #[test]
    fn a_panicking_future_gives_its_message_back() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let caught = rt.block_on(catch_panic(async {
            tokio::task::yield_now().await;
            panic!("boom {}", 7);
        }));
        assert_eq!(caught, Err("internal error: panicked: boom 7".to_string()));
        assert_eq!(rt.block_on(catch_panic(async { 5 })), Ok(5));
    }

    #[actix::test]
    async fn a_panic_in_a_pipeline_step_ends_the_attempt_as_an_internal_error_and_the_actor_lives_on() {
        let told = Arc::new(Mutex::new(Vec::new()));
        let scheduler = Told(told.clone()).start().recipient();
        let step = Step(scheduler).start();
        for n in [1, 2, 3] {
            step.send(Go(n)).await.expect("the step actor is alive");
        }
        // The failures are do_send: give the collector its turn.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while told.lock().map(|v| v.len()).unwrap_or(0) < 2 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let told = told.lock().expect("lock");
        let seen: Vec<(u32, bool, Option<String>)> =
            told.iter().map(|m| (m.attempt.attempt, m.interrupted, m.error.clone())).collect();
        assert_eq!(
            seen,
            vec![
                (1, false, Some("its step: internal error: panicked: in the step itself".to_string())),
                (2, false, Some("its step: internal error: panicked: in its future, after a wait".to_string())),
            ]
        );
    }
}
