//! The Validator actor: is the agent's outcome well-formed? It could start, it exited 0 by itself within its
//! limits, it produced an answer, it changed something, it does not say the work is unfinished, what it claims to
//! have changed did change. Every finding is journaled with its evidence.

use actix::prelude::*;

use super::pipeline::{guarded, record_or_fail, SessionEnded};
use super::quality::Assess;
use super::report::AttemptReport;
use super::state_journal::Append;
use crate::journal::event::{Event, Validated};
use crate::judge::{
    self,
    prose::{self, Claim},
};
use crate::process::EndedBy;
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
        EndedBy::WallClock => out.push(finding(
            "wall_clock_timeout",
            Severity::Error,
            format!("the agent ran past its {} s limit and was killed", report.project.agent.timeout.as_secs()),
        )),
        EndedBy::Idle => out.push(finding(
            "idle_timeout",
            Severity::Error,
            format!(
                "the agent printed nothing for {} s and was killed as hung",
                report.project.agent.idle_timeout.as_secs()
            ),
        )),
        EndedBy::Request => {
            out.push(finding("stopped", Severity::Error, "the agent was stopped before it finished".into()))
        }
        EndedBy::Itself => match (o.exit_code, o.signal) {
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
        (Some(r), _) => report_findings(r, result, &report.outcome.tool_calls, &mut out),
        (None, false) => {}
    }
    if result.is_empty() && !out.iter().any(|f| f.code == "max_turns") {
        out.push(finding("no_output", Severity::Error, "the agent gave no answer (its result is empty)".into()));
    }
    if report.changes.is_empty() {
        out.push(finding("no_changes", Severity::Info, "this attempt changed no file in the workspace".into()));
    }
    claim_findings(report, result, &mut out);
    structure_findings(report, &mut out);
    out
}

/// What the agent did outside its workspace, by its tool log, and inside the repository's own files.
fn structure_findings(report: &AttemptReport, out: &mut Vec<Finding>) {
    let home = report
        .project
        .agent
        .env
        .get("HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(Into::into));
    let writes =
        judge::tools::outside_writes(&report.outcome.tool_calls, &report.project.workspace, home.as_deref(), &[]);
    let (scratch, real): (Vec<_>, Vec<_>) = writes.into_iter().partition(|w| w.scratch);
    if !real.is_empty() {
        let shown: Vec<String> = real.iter().map(|w| format!("{} (by {})", w.path, w.by)).collect();
        out.push(finding(
            "outside_write",
            Severity::Error,
            format!(
                "the agent wrote, or tried to write, outside its workspace: {}; work only inside {}",
                judge::evidence::list(&shown),
                report.project.workspace.display()
            ),
        ));
    }
    if !scratch.is_empty() {
        let shown: Vec<&str> = scratch.iter().map(|w| w.path.as_str()).collect();
        out.push(finding(
            "outside_write",
            Severity::Warning,
            format!("the agent wrote scratch files outside its workspace: {}", judge::evidence::list(&shown)),
        ));
    }
    if let Some(f) = judge::evidence::git_finding(&report.git_changes) {
        out.push(f);
    }
    // What orch's hook refused before it happened still says what the agent tried to do.
    let refused = |what: &str| -> Vec<String> {
        report
            .outcome
            .tool_calls
            .iter()
            .filter(|t| t.denied && t.output.contains(what))
            .map(|t| format!("{}: {}", t.name, crate::redact::head(&t.target, 120)))
            .collect()
    };
    let protected = refused("is protected");
    if !protected.is_empty() {
        out.push(finding(
            "protected_changed",
            Severity::Error,
            format!(
                "the agent tried to change what the checks judge by (orch refused it before it happened): {}; fix \
                 the code, not the tests or checks",
                judge::evidence::list(&protected)
            ),
        ));
    }
    let git = refused("the git repository itself");
    if !git.is_empty() {
        out.push(finding(
            "collateral_change",
            Severity::Error,
            format!("the agent tried to change .git (refused before it happened): {}", judge::evidence::list(&git)),
        ));
    }
}

/// What the answer says, against what happened. Prose is read only for explicit claims, admissions and refusals;
/// a claim that clean evidence contradicts lowers confidence, it does not reject by itself.
fn claim_findings(report: &AttemptReport, result: &str, out: &mut Vec<Finding>) {
    if result.is_empty() {
        return;
    }
    let did_work = !report.changes.is_empty() || !report.outcome.tool_calls.is_empty();
    if let Some(phrase) = prose::sentinel(result) {
        out.push(finding(
            "non_answer",
            Severity::Error,
            format!("the result is not an answer (it says \"{phrase}\"): {}", crate::redact::head(result, 160)),
        ));
    } else if !did_work {
        if let Some(phrase) = prose::non_answer(result) {
            out.push(finding(
                "non_answer",
                Severity::Error,
                format!(
                    "the agent did no work and its answer is no answer (it says \"{phrase}…\"): {}",
                    crate::redact::head(result, 160)
                ),
            ));
        }
    }
    if let Some(phrase) = prose::admits_incomplete(result) {
        out.push(finding(
            "admits_incomplete",
            Severity::Error,
            format!("the agent says part of the task is not done (\"{phrase}\"): {}", crate::redact::head(result, 200)),
        ));
    }
    let changed: Vec<String> = report.changes.iter().map(|c| c.path.clone()).collect();
    // A file its tools wrote counts as written even if the content came out the same (a retry redoing its work).
    let written: Vec<String> = report
        .outcome
        .tool_calls
        .iter()
        .filter(|t| matches!(t.name.as_str(), "Write" | "Edit" | "MultiEdit" | "NotebookEdit" | "edit"))
        .map(|t| t.target.clone())
        .collect();
    for claim in prose::claims(result) {
        match claim {
            Claim::ChangedFile(path)
                if !prose::seen(&path, &changed, &report.project.workspace)
                    && !written.iter().any(|w| {
                        prose::seen(&path, std::slice::from_ref(w), &report.project.workspace)
                            || prose::seen(w, std::slice::from_ref(&path), &report.project.workspace)
                    }) =>
            {
                out.push(finding(
                    "claimed_change_not_seen",
                    Severity::Warning,
                    format!("the agent says it changed `{path}`, but no such file changed in the workspace"),
                ))
            }
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
fn report_findings(r: &AgentReport, result: &str, calls: &[crate::agent::ToolCall], out: &mut Vec<Finding>) {
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
    // Asking the human is not a failure: in `-p` mode claude's AskUserQuestion is always denied.
    // orch's own hook's refusals are judged from the tool log (what the agent tried to change).
    let by_hook = |d: &String| calls.iter().any(|c| c.denied && *d == format!("{}: {}", c.name, c.target));
    let (asked, denied): (Vec<&String>, Vec<&String>) =
        r.permission_denials.iter().filter(|d| !by_hook(d)).partition(|d| d.starts_with("AskUserQuestion"));
    if !asked.is_empty() {
        out.push(finding(
            "asked_user",
            Severity::Warning,
            format!("the agent asked the human: {}", asked.iter().map(|a| a.as_str()).collect::<Vec<_>>().join("; ")),
        ));
    }
    if !denied.is_empty() {
        out.push(finding(
            "permission_denied",
            Severity::Error,
            format!(
                "{} tool use(s) were not permitted: {}",
                denied.len(),
                denied.iter().map(|d| d.as_str()).collect::<Vec<_>>().join("; ")
            ),
        ));
    }
}

impl Handler<Validate> for Validator {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: Validate, _ctx: &mut Self::Context) -> Self::Result {
        let attempt = msg.0.attempt.clone();
        let failed = self.failed.clone();
        guarded(&failed, attempt, "its validation", move || {
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
            async move {
                if record_or_fail(&journal, &failed, &report.attempt, "its validation", vec![event]).await {
                    next.do_send(Assess(report));
                }
            }
        })
    }
}
