//! The one redaction every journaled event passes through: [`Event::redacted`], over every string of every payload.

use super::*;
use crate::redact::Redactor;

/// Every string an event carries, redacted ([`Event::redacted`]). Each payload is taken apart field by field with no
/// `..`, so a field added to an event does not compile until it is redacted here or named as left alone. Left alone:
/// the journal's keys — project and task names (a task's scope, its dependencies, the tasks a run selected, a
/// task's branch) — which the config's validation keeps to names.
trait Redact {
    fn redact(&mut self, r: &Redactor);
}

impl Redact for String {
    fn redact(&mut self, r: &Redactor) {
        r.redact_in_place(self);
    }
}

impl<T: Redact> Redact for Option<T> {
    fn redact(&mut self, r: &Redactor) {
        if let Some(v) = self {
            v.redact(r);
        }
    }
}

impl<T: Redact> Redact for Vec<T> {
    fn redact(&mut self, r: &Redactor) {
        for v in self {
            v.redact(r);
        }
    }
}

impl Redact for TaskSpec {
    fn redact(&mut self, r: &Redactor) {
        let TaskSpec { project: _, id: _, title, description, priority: _, depends_on: _, acceptance } = self;
        title.redact(r);
        description.redact(r);
        acceptance.redact(r);
    }
}

impl Redact for Finding {
    fn redact(&mut self, r: &Redactor) {
        let Finding { code, severity: _, message } = self;
        code.redact(r);
        message.redact(r);
    }
}

impl Redact for Factor {
    fn redact(&mut self, r: &Redactor) {
        let Factor { name, value: _, weight: _, detail } = self;
        name.redact(r);
        detail.redact(r);
    }
}

impl Redact for AgentReport {
    fn redact(&mut self, r: &Redactor) {
        let AgentReport {
            subtype,
            is_error: _,
            num_turns: _,
            input_tokens: _,
            output_tokens: _,
            cache_creation_tokens: _,
            cache_read_tokens: _,
            cost_usd: _,
            permission_denials,
            terminal_reason,
            api_error_status: _,
        } = self;
        subtype.redact(r);
        permission_denials.redact(r);
        terminal_reason.redact(r);
    }
}

impl Redact for FileChanged {
    fn redact(&mut self, r: &Redactor) {
        // A name that held a secret can no longer be restored by a rollback: it is reported as a conflict.
        let FileChanged { project: _, task: _, attempt: _, path, change: _, before: _, after: _, size: _ } = self;
        path.redact(r);
    }
}

impl Redact for PristineCheck {
    fn redact(&mut self, r: &Redactor) {
        let PristineCheck { command, passed: _, exit_code: _, output_tail } = self;
        command.redact(r);
        output_tail.redact(r);
    }
}

impl Event {
    /// The event with every secret `r` knows replaced, in every string it carries (see [`Redactor`]) — the one
    /// redaction everything journaled passes through, applied when an event is staged, before anything reads it.
    pub fn redacted(mut self, r: &Redactor) -> Event {
        if r.is_empty() {
            return self;
        }
        match &mut self {
            Event::ProjectRegistered(ProjectRegistered { project: _, workspace, checks }) => {
                workspace.redact(r);
                checks.redact(r);
            }
            Event::TaskAdded(TaskAdded { spec, source }) => {
                spec.redact(r);
                source.redact(r);
            }
            Event::TaskUpdated(TaskUpdated { spec }) => spec.redact(r),
            Event::RunStarted(RunStarted { pid: _, selected: _ }) => {}
            Event::RunFinished(RunFinished { outcome, completed: _, needs_human: _, cancelled: _ }) => {
                outcome.redact(r)
            }
            Event::AttemptStarted(AttemptStarted {
                project: _,
                task: _,
                attempt: _,
                agent,
                program,
                prompt_tokens: _,
                prompt_bytes: _,
                prompt_excerpt,
                resume_session,
            }) => {
                agent.redact(r);
                program.redact(r);
                prompt_excerpt.redact(r);
                resume_session.redact(r);
            }
            Event::AgentOutput(AgentOutput { project: _, task: _, attempt: _, stream, text }) => {
                stream.redact(r);
                text.redact(r);
            }
            Event::AgentExited(AgentExited {
                project: _,
                task: _,
                attempt: _,
                exit_code: _,
                signal: _,
                timeout,
                duration_ms: _,
                duration_us: _,
                stdout_bytes: _,
                stderr_bytes: _,
                result,
                session_id,
                report,
                tool_calls: _,
                orphans_killed: _,
                unparsed_lines: _,
            }) => {
                timeout.redact(r);
                result.redact(r);
                session_id.redact(r);
                report.redact(r);
            }
            Event::FileChanged(e) | Event::FileTouched(e) => e.redact(r),
            Event::Validated(Validated { project: _, task: _, attempt: _, ok: _, findings }) => findings.redact(r),
            Event::CheckFinished(CheckFinished {
                project: _,
                task: _,
                attempt: _,
                command,
                passed: _,
                exit_code: _,
                timed_out: _,
                duration_ms: _,
                duration_us: _,
                output_tail,
            }) => {
                command.redact(r);
                output_tail.redact(r);
            }
            Event::Scored(Scored { project: _, task: _, attempt: _, score: _, factors }) => factors.redact(r),
            Event::Decided(Decided { project: _, task: _, attempt: _, decision: _, reason, feedback }) => {
                reason.redact(r);
                feedback.redact(r);
            }
            Event::TaskStateChanged(TaskStateChanged { project: _, task: _, from: _, to: _, reason }) => {
                reason.redact(r)
            }
            Event::AttemptInterrupted(AttemptInterrupted { project: _, task: _, attempt: _, reason }) => {
                reason.redact(r)
            }
            Event::HumanAnswered(HumanAnswered { project: _, task: _, answer }) => answer.redact(r),
            Event::HumanVerdict(HumanVerdict { project: _, task: _, verdict, reason }) => {
                verdict.redact(r);
                reason.redact(r);
            }
            Event::RolledBack(RolledBack { project: _, task: _, from_attempt: _, restored, conflicts }) => {
                restored.redact(r);
                conflicts.redact(r);
            }
            Event::LlmCalled(LlmCalled {
                project: _,
                task: _,
                attempt: _,
                purpose,
                provider,
                model,
                outcome,
                try_number: _,
                prompt_tokens: _,
                completion_tokens: _,
                latency_us: _,
                error,
            }) => {
                purpose.redact(r);
                provider.redact(r);
                model.redact(r);
                outcome.redact(r);
                error.redact(r);
            }
            Event::Reviewed(Reviewed {
                project: _,
                task: _,
                attempt: _,
                available: _,
                verdict,
                score: _,
                issues,
                unmet_acceptance,
                error,
            }) => {
                verdict.redact(r);
                issues.redact(r);
                unmet_acceptance.redact(r);
                error.redact(r);
            }
            Event::BreakpointHit(BreakpointHit { project: _, task: _, attempt: _, breakpoint, detail }) => {
                breakpoint.redact(r);
                detail.redact(r);
            }
            Event::LlmAnswered(LlmAnswered { project: _, task: _, attempt: _, question, answer }) => {
                question.redact(r);
                answer.redact(r);
            }
            Event::Notified(Notified { project: _, task: _, about, channel, ok: _, error }) => {
                about.redact(r);
                channel.redact(r);
                error.redact(r);
            }
            Event::ProviderPaused(ProviderPaused { provider, until_ms: _, reason }) => {
                provider.redact(r);
                reason.redact(r);
            }
            Event::ProviderResumed(ProviderResumed { provider }) => provider.redact(r),
            // The task's branch is named after the task: an identifier.
            Event::Committed(Committed { project: _, task: _, attempt: _, branch: _, commit, merge, merged: _ }) => {
                commit.redact(r);
                merge.redact(r);
            }
            Event::IntentRecorded(IntentRecorded { project: _, task: _, attempt: _, intent }) => match intent {
                Intent::Attempt { baseline: _, files: _ } => {}
                Intent::Rollback { from_attempt: _, force: _ } => {}
                Intent::Merge { branch: _ } => {}
            },
            Event::IntentSettled(IntentSettled { project: _, task: _, attempt: _, intent, how }) => {
                intent.redact(r);
                how.redact(r);
            }
            Event::PristineChecked(PristineChecked { project: _, task: _, attempt: _, restored, checks, error }) => {
                restored.redact(r);
                checks.redact(r);
                error.redact(r);
            }
        }
        self
    }
}
