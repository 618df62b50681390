//! The DecisionEngine actor: maps validation, checks, confidence and the attempt count to one decision with
//! thresholds from config, journals it with its reason and the feedback a retry gets, and tells the Scheduler.

use actix::prelude::*;

use super::pipeline::{guarded, record_or_fail, Concluded, SessionEnded};
use super::report::{AttemptReport, Conclusion};
use super::state_journal::Append;
use crate::journal::event::{BreakpointHit, Decided, Event};
use crate::redact;
use crate::settings::Breakpoints;
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
    confidence_threshold: f64,
    failed: Recipient<SessionEnded>,
    breakpoints: Breakpoints,
    allowed: Option<globset::GlobSet>,
    gateway: Option<Recipient<super::llm_gateway::Ask>>,
    clarify_system: String,
}

impl DecisionEngine {
    /// An engine with these thresholds.
    pub fn new(
        journal: Recipient<Append>,
        scheduler: Recipient<Concluded>,
        thresholds: DecisionSettings,
        max_attempts: u32,
        confidence_threshold: f64,
        failed: Recipient<SessionEnded>,
        breakpoints: Breakpoints,
    ) -> Self {
        let allowed = allowed_paths(&breakpoints.allowed_paths).unwrap_or_else(|e| {
            tracing::error!("breakpoints.allowed_paths: {e}; no change is allowed anywhere until it is fixed");
            Some(globset::GlobSet::empty())
        });
        DecisionEngine {
            journal,
            scheduler,
            thresholds,
            max_attempts,
            confidence_threshold,
            failed,
            breakpoints,
            allowed,
            gateway: None,
            clarify_system: String::new(),
        }
    }

    /// Questions an agent asks are first put to this LLM, with this system prompt, and answered from the task when
    /// it is confident.
    pub fn with_llm(mut self, gateway: Option<Recipient<super::llm_gateway::Ask>>, system: &str) -> Self {
        self.gateway = gateway;
        self.clarify_system = system.to_string();
        self
    }
}

/// The request that asks the LLM to answer an agent's question from the task and its acceptance criteria only.
pub fn clarify_request(system: &str, report: &AttemptReport, question: &str) -> crate::llm::LlmRequest {
    let (title, description, acceptance) = match &report.task {
        Some(t) => (t.title.as_str(), t.description.as_str(), t.acceptance.clone()),
        None => (report.attempt.key.task.as_str(), "", Vec::new()),
    };
    let mut user = format!("## Task: {title}\n{description}\n");
    if !acceptance.is_empty() {
        user.push_str("\n## Acceptance criteria\n");
        for a in &acceptance {
            user.push_str(&format!("- {a}\n"));
        }
    }
    user.push_str(&format!("\n## The coding agent asks\n{question}\n"));
    crate::llm::LlmRequest {
        purpose: "clarify".into(),
        system: system.to_string(),
        user,
        schema: Some(serde_json::json!({
            "type": "object", "additionalProperties": false, "required": ["confident", "answer"],
            "properties": {"confident": {"type": "boolean"}, "answer": {"type": "string", "maxLength": 1000}}
        })),
        max_tokens: 400,
        sense: Some(clarify_sense),
    }
}

/// A confident answer must say something: not an empty string or a row of digits.
pub fn clarify_sense(v: &serde_json::Value) -> Result<(), String> {
    let answer = v["answer"].as_str().unwrap_or("");
    if v["confident"] == serde_json::Value::Bool(true) && !crate::llm::schema::says_something(answer) {
        return Err(format!("a confident answer that says nothing: `{}`", crate::redact::head(answer, 40)));
    }
    Ok(())
}

/// The allowed paths as one glob set; `None` when any path is allowed.
pub fn allowed_paths(globs: &[String]) -> Result<Option<globset::GlobSet>, String> {
    if globs.is_empty() {
        return Ok(None);
    }
    let mut b = globset::GlobSetBuilder::new();
    for g in globs {
        b.add(globset::Glob::new(g).map_err(|e| format!("`{g}` is not a glob: {e}"))?);
    }
    b.build().map(Some).map_err(|e| e.to_string())
}

/// The breakpoint an attempt hits, if any: (name, evidence). Pure, so it is tested directly.
pub fn breakpoint_hit(
    report: &AttemptReport,
    bp: &Breakpoints,
    allowed: Option<&globset::GlobSet>,
) -> Option<(String, String)> {
    let hit = |name: &str, detail: String| Some((name.to_string(), detail));
    if bp.on_rate_limit {
        if let Some(f) = report.findings.iter().find(|f| f.code == "rate_limited") {
            return hit("rate_limit", f.message.clone());
        }
    }
    let deleted: Vec<&str> = report
        .changes
        .iter()
        .filter(|c| c.kind == crate::types::ChangeKind::Deleted)
        .map(|c| c.path.as_str())
        .collect();
    if deleted.len() as u32 > bp.max_deleted_files {
        return hit(
            "deleted_files",
            format!("{} files deleted (more than {}): {}", deleted.len(), bp.max_deleted_files, list(&deleted)),
        );
    }
    if report.changes.len() as u32 > bp.max_changed_files {
        return hit(
            "changed_files",
            format!("{} files changed (more than {})", report.changes.len(), bp.max_changed_files),
        );
    }
    if let Some(set) = allowed {
        let outside: Vec<&str> = report.changes.iter().map(|c| c.path.as_str()).filter(|p| !set.is_match(p)).collect();
        if !outside.is_empty() {
            return hit(
                "outside_allowed_paths",
                format!("changed outside {}: {}", bp.allowed_paths.join(", "), list(&outside)),
            );
        }
    }
    let (tokens, cost) = report.outcome.report.as_ref().map(|r| (r.total_tokens(), r.cost_usd)).unwrap_or((0, 0.0));
    let (total_tokens, total_cost) = (report.history.tokens.saturating_add(tokens), report.history.cost_usd + cost);
    if bp.task_token_budget > 0 && total_tokens > bp.task_token_budget {
        return hit(
            "token_budget",
            format!("{total_tokens} tokens used, the task's budget is {}", bp.task_token_budget),
        );
    }
    if bp.task_cost_budget_usd > 0.0 && total_cost > bp.task_cost_budget_usd {
        return hit(
            "cost_budget",
            format!("${total_cost:.4} spent, the task's budget is ${:.4}", bp.task_cost_budget_usd),
        );
    }
    None
}

fn list(paths: &[&str]) -> String {
    let shown: Vec<&str> = paths.iter().take(10).copied().collect();
    let more = paths.len().saturating_sub(shown.len());
    format!("{}{}", shown.join(", "), if more > 0 { format!(" and {more} more") } else { String::new() })
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
    if report.task_changes.is_empty() {
        out.push(
            "the task's work so far changes no file in the workspace: work that changes nothing is never accepted"
                .into(),
        );
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
    for c in report.pristine.iter().filter(|c| !c.passed) {
        f.push_str(&format!(
            "\nOutput of `{}` with the original tests and checks (last lines):\n```\n{}\n```\n",
            c.command,
            redact::tail(c.output_tail.trim_end(), 3000)
        ));
    }
    f
}

/// Findings that say the agent's run itself failed: such an attempt asked nothing, whatever its text says.
const RUN_FAILURES: &[&str] = &[
    "agent_not_started",
    "wall_clock_timeout",
    "idle_timeout",
    "stopped",
    "nonzero_exit",
    "killed_by_signal",
    "no_exit_status",
    "no_result_line",
    "max_turns",
    "agent_error",
    "error_reported_as_success",
    "rate_limited",
    "api_error",
    "no_output",
];

/// The question an attempt that changed nothing puts to the human: its AskUserQuestion call, or an answer that
/// ends by asking to choose, confirm or provide something, in any phrasing.
pub fn question_asked(report: &AttemptReport) -> Option<String> {
    let changed = report.changes.iter().any(|c| !crate::judge::paths::generated(&c.path));
    if changed || report.findings.iter().any(|f| RUN_FAILURES.contains(&f.code.as_str())) {
        return None;
    }
    if let Some(t) = report.outcome.tool_calls.iter().find(|t| t.name == "AskUserQuestion") {
        return Some(t.target.clone());
    }
    report.outcome.result.as_deref().and_then(crate::judge::prose::question)
}

/// The decision for a report: pure, so it is tested directly.
pub fn decide(
    report: &AttemptReport,
    t: &DecisionSettings,
    max_attempts: u32,
    confidence_threshold: f64,
    bp: &Breakpoints,
    allowed: Option<&globset::GlobSet>,
) -> Conclusion {
    let score = report.score.unwrap_or(0.0);
    // A question instead of the work: ask a human, and resume the same session with the answer.
    if let Some(q) = question_asked(report) {
        return Conclusion {
            answered: false,
            breakpoint: None,
            decision: Decision::Clarify,
            reason: format!("the agent asked: {}", crate::redact::head(&q, 300)),
            feedback: String::new(),
        };
    }
    // A secret written into the work: never accepted, never retried over; a human looks at the file.
    if let Some(f) = report.findings.iter().find(|f| f.code == "secret_in_workspace") {
        return Conclusion {
            answered: false,
            breakpoint: None,
            decision: Decision::Escalate,
            reason: format!("secret_in_workspace: {}", f.message),
            feedback: feedback(report, None),
        };
    }
    if let Some((name, detail)) = breakpoint_hit(report, bp, allowed) {
        return Conclusion {
            answered: false,
            decision: Decision::Escalate,
            reason: format!("breakpoint {name}: {detail}"),
            feedback: feedback(report, None),
            breakpoint: Some((name, detail)),
        };
    }
    // Proceeding needs a well-formed outcome, passing checks and a change: an attempt that changed nothing is never
    // accepted, whatever it says.
    // A rate limit the agent could not get past (and no breakpoint for it): the scheduler pauses the provider; the
    // task is retried once it resumes, whatever the attempt count — the work was not tried, only refused.
    if let Some(f) = report.findings.iter().find(|f| f.code == "rate_limited") {
        return Conclusion {
            answered: false,
            breakpoint: None,
            decision: Decision::Retry,
            reason: format!("{}; its provider is paused, the task will be tried again", f.message),
            feedback: String::new(),
        };
    }
    // The task's work so far is what is judged: a retry that redoes correct work identically, or a flaky check
    // passing on retry, is accepted on the cumulative change; a task whose cumulative change is empty never is.
    let ok = report.valid() && report.checks_passed() && !report.task_changes.is_empty();
    if ok && score >= t.high_confidence {
        if score < confidence_threshold {
            let detail = format!("confidence {score:.2} is below the threshold {confidence_threshold:.2}");
            return Conclusion {
                answered: false,
                decision: Decision::Escalate,
                reason: format!("breakpoint confidence: {detail}"),
                feedback: String::new(),
                breakpoint: Some(("confidence".into(), detail)),
            };
        }
        let checks = report.checks.len();
        return Conclusion {
            answered: false,
            breakpoint: None,
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
    if bp.consecutive_failures > 0 && report.history.failures_in_a_row + 1 >= bp.consecutive_failures {
        let detail = format!("{} failed attempts in a row; last: {summary}", report.history.failures_in_a_row + 1);
        return Conclusion {
            answered: false,
            decision: Decision::Escalate,
            reason: format!("breakpoint consecutive_failures: {detail}"),
            feedback: feedback(report, extra),
            breakpoint: Some(("consecutive_failures".into(), detail)),
        };
    }
    if report.attempts_in_round >= max_attempts {
        return Conclusion {
            answered: false,
            breakpoint: None,
            decision: Decision::Escalate,
            reason: format!("{} attempt(s) without success; last: {summary}", report.attempts_in_round),
            feedback: feedback(report, extra),
        };
    }
    Conclusion {
        answered: false,
        breakpoint: None,
        decision: Decision::Retry,
        reason: summary,
        feedback: feedback(report, extra),
    }
}

impl Handler<Decide> for DecisionEngine {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: Decide, _ctx: &mut Self::Context) -> Self::Result {
        let attempt = msg.0.attempt.clone();
        let failed = self.failed.clone();
        guarded(&failed, attempt, "its decision", move || {
            let report = msg.0;
            let mut conclusion = decide(
                &report,
                &self.thresholds,
                self.max_attempts,
                self.confidence_threshold,
                &self.breakpoints,
                self.allowed.as_ref(),
            );
            let journal = self.journal.clone();
            let scheduler = self.scheduler.clone();
            let failed = self.failed.clone();
            let gateway = self.gateway.clone().filter(|_| conclusion.decision == Decision::Clarify);
            let clarify_system = self.clarify_system.clone();
            async move {
                let mut events = Vec::new();
                // A question: first the LLM, from the task and its acceptance criteria; a human only if it is unsure.
                if let Some(gateway) = gateway {
                    let question = question_asked(&report).unwrap_or_default();
                    let request = clarify_request(&clarify_system, &report, &question);
                    let asked =
                        gateway.send(super::llm_gateway::Ask { request, about: Some(report.attempt.clone()) }).await;
                    if let Ok(Ok(answer)) = asked {
                        let json = answer.json.unwrap_or_default();
                        let text = json["answer"].as_str().unwrap_or("").trim().to_string();
                        if json["confident"] == serde_json::Value::Bool(true) && !text.is_empty() {
                            events.push(Event::LlmAnswered(crate::journal::event::LlmAnswered {
                                project: report.attempt.key.project.clone(),
                                task: report.attempt.key.task.clone(),
                                attempt: report.attempt.attempt,
                                question: question.clone(),
                                answer: text,
                            }));
                            conclusion.answered = true;
                            conclusion.reason = format!("{}; answered by the LLM from the task", conclusion.reason);
                        }
                    }
                }
                if let Some((name, detail)) = &conclusion.breakpoint {
                    events.push(Event::BreakpointHit(BreakpointHit {
                        project: report.attempt.key.project.clone(),
                        task: report.attempt.key.task.clone(),
                        attempt: report.attempt.attempt,
                        breakpoint: name.clone(),
                        detail: detail.clone(),
                    }));
                }
                events.push(Event::Decided(Decided {
                    project: report.attempt.key.project.clone(),
                    task: report.attempt.key.task.clone(),
                    attempt: report.attempt.attempt,
                    decision: conclusion.decision,
                    reason: conclusion.reason.clone(),
                    feedback: conclusion.feedback.clone(),
                }));
                if record_or_fail(&journal, &failed, &report.attempt, "its decision", events).await {
                    scheduler.do_send(Concluded { report, conclusion });
                }
            }
        })
    }
}

#[cfg(test)]
mod breakpoint_tests {
    use std::sync::Arc;

    use super::*;
    use crate::actors::report::{AgentOutcome, History};
    use crate::process::EndedBy;
    use crate::settings::{AgentKind, AgentSettings, ProjectSettings};
    use crate::types::{AgentReport, AttemptRef, TaskKey};

    fn report(tokens: u64, cost: f64, history: History, findings: Vec<crate::types::Finding>) -> AttemptReport {
        AttemptReport {
            attempt: AttemptRef { key: TaskKey::new("p", "t"), attempt: 2 },
            project: Arc::new(ProjectSettings::new(
                "p",
                "/w",
                AgentSettings { kind: AgentKind::ClaudeCode, ..AgentSettings::command("claude", vec![]) },
            )),
            attempts_in_round: 2,
            task: None,
            history,
            outcome: AgentOutcome {
                start_error: None,
                exit_code: Some(0),
                signal: None,
                timeout: EndedBy::Itself,
                duration_us: 1,
                stdout_bytes: 1,
                stderr_bytes: 0,
                orphans_killed: 0,
                result: Some("done".into()),
                session_id: None,
                report: Some(AgentReport { input_tokens: tokens, cost_usd: cost, ..AgentReport::default() }),
                expects_report: true,
                tool_calls: vec![],
                resumed: false,
            },
            changes: vec![],
            task_changes: vec![],
            git_changes: vec![],
            pristine: vec![],
            findings,
            checks: vec![],
            review: None,
            score: Some(1.0),
            factors: vec![],
            process_tag: "test".into(),
            containment: crate::settings::Containment::Tags,
        }
    }

    #[test]
    fn budgets_count_the_tasks_earlier_attempts() {
        let bp = Breakpoints { task_token_budget: 1000, task_cost_budget_usd: 0.5, ..Breakpoints::default() };
        let earlier = History { tokens: 900, cost_usd: 0.1, failures_in_a_row: 1, ..History::default() };
        assert_eq!(breakpoint_hit(&report(50, 0.1, earlier.clone(), vec![]), &bp, None), None);
        let over = breakpoint_hit(&report(200, 0.1, earlier.clone(), vec![]), &bp, None);
        assert_eq!(over.map(|h| h.0), Some("token_budget".to_string()));
        let costly = breakpoint_hit(&report(10, 0.45, earlier, vec![]), &bp, None);
        assert_eq!(costly.map(|h| h.0), Some("cost_budget".to_string()));
    }

    #[test]
    fn a_rate_limit_is_a_breakpoint_unless_turned_off() {
        let rl = crate::types::Finding {
            code: "rate_limited".into(),
            severity: crate::types::Severity::Error,
            message: "429".into(),
        };
        let r = report(0, 0.0, History::default(), vec![rl]);
        let on = Breakpoints { on_rate_limit: true, ..Breakpoints::default() };
        assert_eq!(breakpoint_hit(&r, &on, None).map(|h| h.0), Some("rate_limit".to_string()));
        assert_eq!(breakpoint_hit(&r, &Breakpoints::default(), None), None);
    }
}
