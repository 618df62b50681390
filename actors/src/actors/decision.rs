//! The DecisionEngine actor: maps validation, checks, confidence and the attempt count to one decision with
//! thresholds from config, journals it with its reason and the feedback a retry gets, and tells the Scheduler.

use actix::prelude::*;

use super::report::{AttemptReport, Conclusion};
use super::scheduler::{Concluded, SessionEnded};
use super::state_journal::Append;
use crate::journal::event::{Decided, Event};
use crate::redact;
use crate::settings::DecisionSettings;
use crate::types::{Decision, Severity};

/// Decide on a scored attempt.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Decide(pub AttemptReport);

/// See the module documentation.
pub struct DecisionEngine {
    journal: Recipient<Append>,
    scheduler: Recipient<Concluded>,
    thresholds: DecisionSettings,
    max_attempts: u32,
    breakpoint: f64,
    failed: Recipient<SessionEnded>,
}

impl DecisionEngine {
    /// An engine with these thresholds.
    pub fn new(
        journal: Recipient<Append>,
        scheduler: Recipient<Concluded>,
        thresholds: DecisionSettings,
        max_attempts: u32,
        breakpoint: f64,
        failed: Recipient<SessionEnded>,
    ) -> Self {
        DecisionEngine { journal, scheduler, thresholds, max_attempts, breakpoint, failed }
    }
}

impl Actor for DecisionEngine {
    type Context = Context<Self>;
}

/// What went wrong in an attempt, one line per problem, most important first.
fn problems(report: &AttemptReport) -> Vec<String> {
    let mut out = Vec::new();
    for f in report.findings.iter().filter(|f| f.severity == Severity::Error) {
        out.push(f.message.clone());
    }
    for c in report.checks.iter().filter(|c| !c.passed) {
        out.push(match (c.timed_out, c.exit_code) {
            (true, _) => format!("check `{}` timed out", c.command),
            (false, Some(code)) => format!("check `{}` failed (exit {code})", c.command),
            (false, None) => format!("check `{}` failed", c.command),
        });
    }
    out
}

/// The feedback a retry gets: what failed, with the failing checks' output.
fn feedback(report: &AttemptReport, extra: Option<String>) -> String {
    let mut f = String::new();
    for p in problems(report) {
        f.push_str(&format!("- {p}\n"));
    }
    if let Some(e) = extra {
        f.push_str(&format!("- {e}\n"));
    }
    if let Some(super::report::Review::Done { accept: false, issues, unmet_acceptance, .. }) = &report.review {
        for i in issues {
            f.push_str(&format!("- a reviewer found: {i}\n"));
        }
        for u in unmet_acceptance {
            f.push_str(&format!("- an acceptance criterion is not met: {u}\n"));
        }
    }
    for c in report.checks.iter().filter(|c| !c.passed) {
        f.push_str(&format!(
            "\nOutput of `{}` (last lines):\n```\n{}\n```\n",
            c.command,
            redact::tail(c.output_tail.trim_end(), 3000)
        ));
    }
    f
}

/// The question an answer ends with, if it ends with one.
pub fn trailing_question(result: &str) -> Option<String> {
    let last = result.trim().lines().rev().map(str::trim).find(|l| !l.is_empty())?;
    if !last.ends_with('?') {
        return None;
    }
    // The last sentence of that line: after the last `.`, `!`, `?` or `:` that ends a sentence (followed by a
    // space), so that `calc.sh` stays whole.
    let body = &last[..last.len() - 1];
    let start = body
        .char_indices()
        .rev()
        .filter(|(i, c)| matches!(c, '.' | '!' | '?' | ':') && body[i + 1..].starts_with(' '))
        .map(|(i, _)| i + 2)
        .next()
        .unwrap_or(0);
    Some(last[start..].trim().to_string())
}

/// The decision for a report: pure, so it is tested directly.
pub fn decide(report: &AttemptReport, t: &DecisionSettings, max_attempts: u32, breakpoint: f64) -> Conclusion {
    let score = report.score.unwrap_or(0.0);
    // A question instead of the work: ask a human, and resume the same session with the answer.
    if report.valid() && report.changes.is_empty() {
        if let Some(q) = report.outcome.result.as_deref().and_then(trailing_question) {
            return Conclusion {
                decision: Decision::Clarify,
                reason: format!("the agent asked: {}", crate::redact::head(&q, 300)),
                feedback: String::new(),
            };
        }
    }
    let ok = report.valid() && report.checks_passed();
    if ok && score >= t.high_confidence {
        if score < breakpoint {
            return Conclusion {
                decision: Decision::Escalate,
                reason: format!("breakpoint: confidence {score:.2} is below the threshold {breakpoint:.2}"),
                feedback: String::new(),
            };
        }
        let checks = report.checks.len();
        return Conclusion {
            decision: Decision::Proceed,
            reason: format!("{checks} check(s) passed, confidence {score:.2}"),
            feedback: String::new(),
        };
    }
    let (summary, extra) = match problems(report).first() {
        Some(p) => (p.clone(), None),
        None => {
            let why = format!(
                "confidence {score:.2} is below {:.2} ({})",
                t.high_confidence,
                report
                    .factors
                    .iter()
                    .filter(|f| f.value < 1.0)
                    .map(|f| format!("{}: {}", f.name, f.detail))
                    .collect::<Vec<_>>()
                    .join("; ")
            );
            (why.clone(), Some(why))
        }
    };
    if report.attempts_in_round >= max_attempts {
        return Conclusion {
            decision: Decision::Escalate,
            reason: format!("{} attempt(s) without success; last: {summary}", report.attempts_in_round),
            feedback: feedback(report, extra),
        };
    }
    Conclusion { decision: Decision::Retry, reason: summary, feedback: feedback(report, extra) }
}

impl Handler<Decide> for DecisionEngine {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: Decide, _ctx: &mut Self::Context) -> Self::Result {
        let report = msg.0;
        let conclusion = decide(&report, &self.thresholds, self.max_attempts, self.breakpoint);
        let event = Event::Decided(Decided {
            project: report.attempt.key.project.clone(),
            task: report.attempt.key.task.clone(),
            attempt: report.attempt.attempt,
            decision: conclusion.decision,
            reason: conclusion.reason.clone(),
            feedback: conclusion.feedback.clone(),
        });
        let journal = self.journal.clone();
        let scheduler = self.scheduler.clone();
        let failed = self.failed.clone();
        Box::pin(
            async move {
                match journal.send(Append(vec![event])).await {
                    Ok(Ok(_)) => scheduler.do_send(Concluded { report, conclusion }),
                    Ok(Err(e)) => SessionEnded::failed(&failed, report.attempt, format!("recording its decision: {e}")),
                    Err(e) => SessionEnded::failed(&failed, report.attempt, format!("recording its decision: {e}")),
                }
            }
            .into_actor(self),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::trailing_question;

    #[test]
    fn finds_the_question_an_answer_ends_with() {
        assert_eq!(
            trailing_question("I looked around. Which port should it listen on?").as_deref(),
            Some("Which port should it listen on?")
        );
        assert_eq!(
            trailing_question("Done.\n\nShould I also update the docs?\n").as_deref(),
            Some("Should I also update the docs?")
        );
        assert_eq!(trailing_question("Is it? No. It is done."), None);
        assert_eq!(
            trailing_question("Before I write it: should calc.sh accept negatives?").as_deref(),
            Some("should calc.sh accept negatives?")
        );
        assert_eq!(trailing_question(""), None);
    }
}
