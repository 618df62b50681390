//! The Validator actor: is the agent's outcome well-formed? It could start, it exited 0 by itself within its
//! limits, it produced an answer, it changed something, it does not say the work is unfinished, what it claims to
//! have changed did change. Every finding is journaled with its evidence.

use actix::prelude::*;

use super::quality::Assess;
use super::report::AttemptReport;
use super::scheduler::{record_or_fail, SessionEnded};
use super::state_journal::Append;
use crate::claims::{self, Claim};
use crate::journal::event::{Event, Validated};
use crate::process::Timeout;
use crate::types::{AgentReport, Finding, Severity};

/// Validate an attempt's outcome, then pass it on.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Validate(pub AttemptReport);

/// See the module documentation.
pub struct Validator {
    journal: Recipient<Append>,
    next: Recipient<Assess>,
    failed: Recipient<SessionEnded>,
}

impl Validator {
    /// A validator that journals to `journal`, passes reports to `next`, and reports to `failed` an attempt it
    /// cannot record.
    pub fn new(journal: Recipient<Append>, next: Recipient<Assess>, failed: Recipient<SessionEnded>) -> Self {
        Validator { journal, next, failed }
    }
}

impl Actor for Validator {
    type Context = Context<Self>;
}

fn finding(code: &str, severity: Severity, message: String) -> Finding {
    Finding { code: code.to_string(), severity, message }
}

/// The findings for a report: pure, so it is tested directly.
pub fn findings(report: &AttemptReport) -> Vec<Finding> {
    let o = &report.outcome;
    let mut out = Vec::new();
    if let Some(e) = &o.start_error {
        out.push(finding("agent_not_started", Severity::Error, e.clone()));
        return out;
    }
    match o.timeout {
        Timeout::WallClock => out.push(finding(
            "wall_clock_timeout",
            Severity::Error,
            format!("the agent ran past its {} s limit and was killed", report.project.agent.timeout.as_secs()),
        )),
        Timeout::Idle => out.push(finding(
            "idle_timeout",
            Severity::Error,
            format!(
                "the agent printed nothing for {} s and was killed as hung",
                report.project.agent.idle_timeout.as_secs()
            ),
        )),
        Timeout::Stopped => {
            out.push(finding("stopped", Severity::Error, "the agent was stopped before it finished".into()))
        }
        Timeout::None => match (o.exit_code, o.signal) {
            (Some(0), _) => {}
            (Some(code), _) => {
                out.push(finding("nonzero_exit", Severity::Error, format!("the agent exited with status {code}")))
            }
            (None, Some(sig)) => {
                out.push(finding("killed_by_signal", Severity::Error, format!("the agent was killed by signal {sig}")))
            }
            (None, None) => {
                out.push(finding("no_exit_status", Severity::Error, "the agent left no exit status".into()))
            }
        },
    }
    let result = o.result.as_deref().unwrap_or("").trim();
    match (&o.report, o.expects_report) {
        (None, true) => out.push(finding(
            "no_result_line",
            Severity::Error,
            "the agent's output ended without its result line (cut short, or it crashed)".into(),
        )),
        (Some(r), _) => report_findings(r, result, &mut out),
        (None, false) => {}
    }
    if result.is_empty() && !out.iter().any(|f| f.code == "max_turns") {
        out.push(finding("no_output", Severity::Error, "the agent gave no answer (its result is empty)".into()));
    }
    if report.changes.is_empty() {
        out.push(finding("no_changes", Severity::Warning, "the attempt changed no file in the workspace".into()));
    }
    claim_findings(report, result, &mut out);
    out
}

/// What the answer claims, against what happened.
fn claim_findings(report: &AttemptReport, result: &str, out: &mut Vec<Finding>) {
    if result.is_empty() {
        return;
    }
    if let Some(phrase) = claims::non_answer(result) {
        out.push(finding(
            "non_answer",
            Severity::Error,
            format!("the result is not an answer (it says \"{phrase}…\"): {}", crate::redact::head(result, 160)),
        ));
    }
    if let Some(phrase) = claims::admits_incomplete(result) {
        out.push(finding(
            "admits_incomplete",
            Severity::Error,
            format!("the agent says the work is unfinished (\"{phrase}\"): {}", crate::redact::head(result, 200)),
        ));
    }
    let changed: Vec<String> = report.changes.iter().map(|c| c.path.clone()).collect();
    for claim in claims::claims(result) {
        match claim {
            Claim::ChangedFile(path) if !claims::seen(&path, &changed, &report.project.workspace) => out.push(finding(
                "claimed_change_not_seen",
                Severity::Error,
                format!("the agent says it changed `{path}`, but no such file changed in the workspace"),
            )),
            // Only agents that report their tool calls can be held to this.
            Claim::Verified
                if report.outcome.expects_report && !report.outcome.tool_calls.iter().any(|t| t.name == "Bash") =>
            {
                out.push(finding(
                    "claimed_verification_without_command",
                    Severity::Warning,
                    "the agent says it ran or verified something, but it ran no command".into(),
                ))
            }
            _ => {}
        }
    }
}

/// Texts that mean an API failure, whatever the agent's flags say.
fn looks_like_api_error(text: &str) -> bool {
    let t = text.trim_start();
    t.starts_with("API Error") || t.contains("rate limit") || t.contains("Rate limit") || t.contains("overloaded_error")
}

fn looks_rate_limited(status: Option<u16>, text: &str) -> bool {
    matches!(status, Some(429) | Some(529))
        || text.contains("rate limit")
        || text.contains("Rate limit")
        || text.contains("Overloaded")
        || text.contains("overloaded")
}

/// Findings from the agent's own report (Claude Code's result line).
fn report_findings(r: &AgentReport, result: &str, out: &mut Vec<Finding>) {
    let excerpt = crate::redact::head(result, 200);
    if r.subtype == "error_max_turns" || r.terminal_reason == "max_turns" {
        out.push(finding(
            "max_turns",
            Severity::Error,
            format!("the agent stopped at its turn limit after {} turn(s) without finishing", r.num_turns),
        ));
    } else if r.subtype.starts_with("error") {
        out.push(finding("agent_error", Severity::Error, format!("the agent reported `{}`", r.subtype)));
    } else if r.is_error || looks_like_api_error(result) {
        out.push(finding(
            "error_reported_as_success",
            Severity::Error,
            format!("the agent reported `{}` but its result is an error: {excerpt}", r.subtype),
        ));
    }
    if (r.is_error || r.api_error_status.is_some()) && looks_rate_limited(r.api_error_status, result) {
        out.push(finding(
            "rate_limited",
            Severity::Error,
            format!(
                "the API was rate limited or overloaded{} even after the agent's own retries",
                r.api_error_status.map(|s| format!(" (HTTP {s})")).unwrap_or_default()
            ),
        ));
    } else if let Some(status) = r.api_error_status {
        out.push(finding("api_error", Severity::Error, format!("the API answered HTTP {status}")));
    }
    if !r.permission_denials.is_empty() {
        out.push(finding(
            "permission_denied",
            Severity::Error,
            format!(
                "{} tool use(s) were not permitted: {}",
                r.permission_denials.len(),
                r.permission_denials.join("; ")
            ),
        ));
    }
}

impl Handler<Validate> for Validator {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: Validate, _ctx: &mut Self::Context) -> Self::Result {
        let mut report = msg.0;
        report.findings = findings(&report);
        let event = Event::Validated(Validated {
            project: report.attempt.key.project.clone(),
            task: report.attempt.key.task.clone(),
            attempt: report.attempt.attempt,
            ok: report.valid(),
            findings: report.findings.clone(),
        });
        let journal = self.journal.clone();
        let next = self.next.clone();
        let failed = self.failed.clone();
        Box::pin(
            async move {
                if record_or_fail(&journal, &failed, &report.attempt, "its validation", vec![event]).await {
                    next.do_send(Assess(report));
                }
            }
            .into_actor(self),
        )
    }
}
