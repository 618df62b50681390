//! The ConfidenceScorer actor: combines the evidence into one score in [0, 1] from named factors with configured
//! weights, and journals every factor so that a score can always be explained.

use actix::prelude::*;

use super::decision::Decide;
use super::pipeline::{guarded, record_or_fail, SessionEnded};
use super::report::AttemptReport;
use super::state_journal::Append;
use crate::journal::event::{Event, Scored};
use crate::settings::ConfidenceWeights;
use crate::types::{Factor, Severity};

/// Score an attempt, then pass it on.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Score(pub AttemptReport);

/// See the module documentation.
pub struct ConfidenceScorer {
    journal: Recipient<Append>,
    next: Recipient<Decide>,
    weights: ConfidenceWeights,
    failed: Recipient<SessionEnded>,
}

impl ConfidenceScorer {
    /// A scorer with these weights.
    pub fn new(
        journal: Recipient<Append>,
        next: Recipient<Decide>,
        weights: ConfidenceWeights,
        failed: Recipient<SessionEnded>,
    ) -> Self {
        ConfidenceScorer { journal, next, weights, failed }
    }
}

impl Actor for ConfidenceScorer {
    type Context = Context<Self>;
}

/// Findings read from the agent's prose alone.
const PROSE: &[&str] = &["claimed_change_not_seen", "claimed_verification_without_command", "asked_user"];

/// The factors and the weighted score of a report: pure, so it is tested directly.
pub fn score(report: &AttemptReport, w: &ConfidenceWeights) -> (f64, Vec<Factor>) {
    let mut factors = Vec::new();
    let total = report.checks.len();
    let passed = report.checks.iter().filter(|c| c.passed).count();
    factors.push(if total == 0 {
        Factor { name: "checks".into(), value: 1.0, weight: w.checks, detail: "no checks configured".into() }
    } else {
        Factor {
            name: "checks".into(),
            value: passed as f64 / total as f64,
            weight: w.checks,
            detail: format!("{passed} of {total} checks passed"),
        }
    });
    let errors = report.findings.iter().filter(|f| f.severity == Severity::Error).count();
    let warnings = report.findings.iter().filter(|f| f.severity == Severity::Warning).count();
    // What the prose alone says, against clean evidence, lowers confidence a little and never alone below the bar.
    let prose =
        report.findings.iter().filter(|f| f.severity == Severity::Warning && PROSE.contains(&f.code.as_str())).count();
    let validation = if errors > 0 {
        0.0
    } else {
        (1.0 - 0.25 * (warnings - prose) as f64 - (0.1 * prose as f64).min(0.2)).max(0.25)
    };
    factors.push(Factor {
        name: "validation".into(),
        value: validation,
        weight: w.validation,
        detail: if errors + warnings == 0 {
            "no findings".into()
        } else {
            format!(
                "{errors} error(s), {warnings} warning(s): {}",
                report.findings.iter().map(|f| f.code.as_str()).collect::<Vec<_>>().join(", ")
            )
        },
    });
    let n = report.task_changes.len();
    factors.push(Factor {
        name: "changes".into(),
        value: if n > 0 { 1.0 } else { 0.3 },
        weight: w.changes,
        detail: if n > 0 { format!("{n} file(s) changed by the task") } else { "the task changed no file".into() },
    });
    // Scope: a handful of files is ordinary; a sprawling change or deletions are less likely to be what was asked.
    let deleted = report.changes.iter().filter(|c| c.kind == crate::types::ChangeKind::Deleted).count();
    let sprawl = (report.changes.len().saturating_sub(10) as f64 / 90.0).min(1.0);
    let scope = (1.0 - 0.5 * sprawl - 0.05 * deleted as f64).max(0.5);
    factors.push(Factor {
        name: "scope".into(),
        value: scope,
        weight: w.scope,
        detail: format!("{} file(s) changed, {deleted} deleted", report.changes.len()),
    });
    match &report.review {
        Some(super::report::Review::Done { accept, score, issues, .. }) => {
            let v = f64::from((*score).min(100)) / 100.0;
            factors.push(Factor {
                name: "llm_review".into(),
                // A reject weighs at most 0.3, whatever score came with it.
                value: if *accept { v } else { v.min(0.3) },
                weight: w.llm_review,
                detail: format!(
                    "the LLM says {} ({score}/100){}",
                    if *accept { "accept" } else { "reject" },
                    if issues.is_empty() { String::new() } else { format!(": {}", issues.join("; ")) }
                ),
            });
        }
        Some(super::report::Review::Dropped(why)) => factors.push(Factor {
            name: "llm_review".into(),
            value: 0.5,
            weight: w.llm_review,
            detail: format!("no usable review ({why}); confidence lowered"),
        }),
        None => {}
    }
    let k = report.attempts_in_round.max(1);
    factors.push(Factor {
        name: "attempt".into(),
        value: (1.0 - 0.1 * f64::from(k - 1)).max(0.5),
        weight: w.attempt,
        detail: format!("attempt {k} of this round"),
    });
    let wsum: f64 = factors.iter().map(|f| f.weight).sum();
    let s = if wsum > 0.0 { factors.iter().map(|f| f.value * f.weight).sum::<f64>() / wsum } else { 0.0 };
    // Rounded so that what is journaled and printed is what was compared.
    ((s * 1000.0).round() / 1000.0, factors)
}

impl Handler<Score> for ConfidenceScorer {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: Score, _ctx: &mut Self::Context) -> Self::Result {
        let attempt = msg.0.attempt.clone();
        let failed = self.failed.clone();
        guarded(&failed, attempt, "its score", move || {
            let mut report = msg.0;
            let (s, factors) = score(&report, &self.weights);
            report.score = Some(s);
            report.factors = factors.clone();
            let event = Event::Scored(Scored {
                project: report.attempt.key.project.clone(),
                task: report.attempt.key.task.clone(),
                attempt: report.attempt.attempt,
                score: s,
                factors,
            });
            let journal = self.journal.clone();
            let next = self.next.clone();
            let failed = self.failed.clone();
            async move {
                if record_or_fail(&journal, &failed, &report.attempt, "its score", vec![event]).await {
                    next.do_send(Decide(report));
                }
            }
        })
    }
}
