//! The AgentSession actor, one per running attempt: builds the prompt within its token budget, asks the
//! FileMonitor for a snapshot, runs the agent in its own process group (wall-clock and idle limits, the whole group
//! killed on the way out), journals what it prints through the adapter's parser, then hands the outcome and the
//! file changes to the Validator. A stop request kills the agent and journals the attempt as interrupted.

use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::{mpsc, oneshot};

use super::file_monitor::{BeginAttempt, EndAttempt, FileMonitor};
use super::pipeline::SessionEnded;
use super::report::{AgentOutcome, AttemptReport};
use super::state_journal::Append;
use super::validator::Validate;
use crate::agent::{self, AgentItem};
use crate::error::EngineError;
use crate::journal::event::{AgentExited, AgentOutput, AttemptInterrupted, AttemptStarted, Event};
use crate::journal::TaskView;
use crate::process::{self, EndedBy, Stream};
use crate::prompt::{self, PromptInput};
use crate::redact::{self, Redactor};
use crate::settings::ProjectSettings;
use crate::types::AttemptRef;

/// Agent output events journaled per attempt at the most; the rest is counted.
pub const MAX_OUTPUT_EVENTS: usize = 500;

/// Stop the agent now; the attempt is journaled as interrupted, with this reason.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopSession {
    /// Why, as journaled: "cancelled by a human", "the run is shutting down"…
    pub reason: String,
}

/// Everything a session needs.
pub struct SessionSpec {
    /// Which attempt.
    pub attempt: AttemptRef,
    /// The task as it stands (attempts, feedback, answers).
    pub task: TaskView,
    /// Attempts counted toward `max_attempts`, this one included.
    pub attempts_in_round: u32,
    /// The project.
    pub project: Arc<ProjectSettings>,
    /// Prompt token budget.
    pub token_budget: usize,
    /// Keeps secrets out of the journal.
    pub redactor: Arc<Redactor>,
    /// The attempt prompt's template.
    pub template: Arc<str>,
    /// The tag prefix of the attempt's processes ([`crate::process::attempt_tag`]).
    pub process_tag: String,
    /// How the attempt's processes are contained (its checks' too).
    pub containment: crate::settings::Containment,
}

/// See the module documentation.
pub struct AgentSession {
    spec: Option<SessionSpec>,
    journal: Recipient<Append>,
    monitor: Addr<FileMonitor>,
    validator: Recipient<Validate>,
    scheduler: Recipient<SessionEnded>,
    stop: Option<oneshot::Sender<()>>,
    stop_requested: bool,
    /// Why the session was stopped, for the journal (shared with the attempt's task).
    stop_reason: std::sync::Arc<std::sync::Mutex<String>>,
}

impl AgentSession {
    /// A session, started with `.start()`.
    pub fn new(
        spec: SessionSpec,
        journal: Recipient<Append>,
        monitor: Addr<FileMonitor>,
        validator: Recipient<Validate>,
        scheduler: Recipient<SessionEnded>,
    ) -> Self {
        AgentSession {
            spec: Some(spec),
            journal,
            monitor,
            validator,
            scheduler,
            stop: None,
            stop_requested: false,
            stop_reason: Default::default(),
        }
    }
}

enum Ended {
    Done(Box<AttemptReport>),
    Stopped(AttemptRef),
}

impl Actor for AgentSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let Some(spec) = self.spec.take() else { return ctx.stop() };
        let (stop_tx, stop_rx) = oneshot::channel();
        self.stop = Some(stop_tx);
        let attempt = spec.attempt.clone();
        let fut = run_attempt(spec, self.journal.clone(), self.monitor.clone(), stop_rx, self.stop_reason.clone());
        // A panic in the attempt's work ends the attempt as an internal error (journaled and escalated by the
        // scheduler), never as a session that vanished while the run waits for it.
        let fut = super::pipeline::catch_panic(fut);
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            let error = match res {
                Ok(Ok(Ended::Done(report))) => {
                    act.validator.do_send(Validate(*report));
                    None
                }
                Ok(Ok(Ended::Stopped(a))) => {
                    act.scheduler.do_send(SessionEnded { attempt: a, interrupted: true, error: None });
                    None
                }
                Ok(Err(e)) => Some(e.to_string()),
                Err(panic) => {
                    tracing::error!("{attempt}: {panic}");
                    Some(panic)
                }
            };
            if let Some(error) = error {
                act.scheduler.do_send(SessionEnded {
                    attempt: attempt.clone(),
                    interrupted: act.stop_requested,
                    error: Some(error),
                });
            }
            ctx.stop();
        }));
    }
}

impl Handler<StopSession> for AgentSession {
    type Result = ();

    fn handle(&mut self, msg: StopSession, _ctx: &mut Self::Context) {
        self.stop_requested = true;
        if let Ok(mut r) = self.stop_reason.lock() {
            *r = msg.reason;
        }
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

async fn run_attempt(
    spec: SessionSpec,
    journal: Recipient<Append>,
    monitor: Addr<FileMonitor>,
    stop: oneshot::Receiver<()>,
    stop_reason: std::sync::Arc<std::sync::Mutex<String>>,
) -> Result<Ended, EngineError> {
    let project = spec.project.clone();
    let a = spec.attempt.clone();
    let adapter = agent::adapter(project.agent.kind);

    // The prompt: tokenizing is heavy, so off the actor's thread.
    let task = spec.task.clone();
    let checks = project.checks.clone();
    let (n, budget) = (a.attempt, spec.token_budget);
    let template = spec.template.clone();
    let rules_project = project.clone();
    let built = tokio::task::spawn_blocking(move || {
        let rules = prompt::rules(&rules_project, &task.spec.id);
        prompt::build(&PromptInput {
            template: &template,
            task: &task,
            checks: &checks,
            attempt: n,
            rules: &rules,
            budget,
        })
    })
    .await
    .map_err(|e| EngineError::Stopped(format!("prompt task: {e}")))?;
    // A clarify: the same session goes on, with the human's answer as the prompt.
    let resume = spec.task.resume_session.clone().filter(|_| adapter.can_resume());
    let answer = spec.task.answers.last().cloned();
    let (prompt_text, prompt_tokens, resume) = match (resume, answer) {
        (Some(session), Some(answer)) => {
            let tokens = prompt::count_tokens_if_ready(&answer);
            (answer, tokens, Some(session))
        }
        _ => (built.text.clone(), built.tokens, None),
    };
    let invocation = adapter.invocation(&project.agent, &prompt_text, resume.as_deref());
    let agent_program = invocation.program.clone();
    // The attempt's guards: its private TMPDIR, claude's hook for protected paths, the Landlock sandbox.
    let (guard_project, guard_task) = (project.clone(), spec.task.spec.clone());
    let (guard, invocation) =
        tokio::task::spawn_blocking(move || crate::sandbox::prepare(&guard_project, &guard_task, invocation))
            .await
            .map_err(|e| EngineError::Stopped(format!("preparing the attempt: {e}")))?
            .map_err(|e| EngineError::Io {
                about: format!("preparing {a}'s sandbox and hook"),
                source: std::io::Error::other(e),
            })?;
    let redactor = spec.redactor.clone();

    journal
        .send(Append(vec![Event::AttemptStarted(AttemptStarted {
            project: a.key.project.clone(),
            task: a.key.task.clone(),
            attempt: a.attempt,
            agent: project.agent.kind.as_str().to_string(),
            program: agent_program,
            prompt_tokens: prompt_tokens.map(|t| t as u32),
            prompt_bytes: prompt_text.len() as u32,
            prompt_excerpt: redact::head(&redactor.redact_cow(&prompt_text), 1024).to_string(),
            resume_session: resume.clone(),
        })]))
        .await??;

    monitor.send(BeginAttempt(a.clone())).await??;
    // The repository's own files, which the FileMonitor does not look at (a task's worktree shares its branches
    // with the other tasks, so only its HEAD, config, hooks and info are its own).
    let own_refs = project.isolation != crate::settings::Isolation::Worktree;
    let git_ws = project.workspace.clone();
    let git_task = a.key.to_string();
    let git_before = tokio::task::spawn_blocking(move || {
        crate::judge::gitdir::task_baseline(&git_ws, &git_task, crate::judge::gitdir::fingerprint(&git_ws, own_refs))
    })
    .await
    .unwrap_or_default();

    // Lines → parser → bounded journal events, in order, while the agent runs.
    let (line_tx, mut line_rx) = mpsc::unbounded_channel::<(Stream, String)>();
    let mut parser = adapter.parser();
    let out_journal = journal.clone();
    let out_redactor = redactor.clone();
    let out_attempt = a.clone();
    let consumer = tokio::spawn(async move {
        let mut journaled = 0usize;
        let mut dropped = 0usize;
        // Each item is held until the next one (or a pause) shows that no secret runs on into it.
        let mut held = redact::Held::default();
        let mut emit = |item: AgentItem| {
            if journaled < MAX_OUTPUT_EVENTS {
                journaled += 1;
                out_journal.do_send(Append(vec![output_event(&out_attempt, &out_redactor, item)]));
            } else {
                dropped += 1;
            }
        };
        loop {
            let next = match tokio::time::timeout(redact::HOLD_FOR, line_rx.recv()).await {
                Ok(Some(next)) => next,
                Ok(None) => break,
                Err(_) => {
                    for (stream, text) in held.flush() {
                        emit(AgentItem { stream, text });
                    }
                    continue;
                }
            };
            let (stream, line) = next;
            // Redacted whole before the parser cuts anything to length.
            if let Some(item) = parser.line(stream, &out_redactor.redact_cow(&line)) {
                for (stream, text) in held.push(&out_redactor, item.stream, item.text) {
                    emit(AgentItem { stream, text });
                }
            }
        }
        for (stream, text) in held.flush() {
            emit(AgentItem { stream, text });
        }
        if dropped > 0 {
            let note = AgentItem { stream: "note".into(), text: format!("{dropped} more output items not journaled") };
            out_journal.do_send(Append(vec![output_event(&out_attempt, &out_redactor, note)]));
        }
        parser
    });

    let mut env: Vec<(String, String)> = project.agent.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    env.extend(invocation.env.iter().cloned());
    env.extend(guard.env.iter().cloned());
    env.extend(process::attempt_env(&a, &project.workspace));
    let run = process::run(
        process::Spec {
            program: &invocation.program,
            args: &invocation.args,
            cwd: &project.workspace,
            env: &env,
            hide_env: redactor.hidden_env(),
            stdin: invocation.stdin.clone(),
            timeout: project.agent.timeout,
            idle_timeout: Some(project.agent.idle_timeout),
            grace: std::time::Duration::from_secs(2),
            attempt: Some(&spec.process_tag),
            sandbox: guard.sandbox.as_deref(),
            containment: spec.containment,
        },
        Some(line_tx),
        Some(stop),
    )
    .await;
    let parser = consumer.await.map_err(|e| EngineError::Stopped(format!("output task: {e}")))?;
    let parsed = parser.finish();
    let parsed_unparsed = parsed.unparsed_lines;
    // Removing the private directory (what the agent left in its TMPDIR) is disk work: off this thread and off the
    // attempt's path.
    tokio::task::spawn_blocking(move || drop(guard));

    let changes = monitor.send(EndAttempt(a.clone())).await??;
    let git_ws = project.workspace.clone();
    let git_changes = tokio::task::spawn_blocking(move || {
        crate::judge::gitdir::changed(&git_before, &crate::judge::gitdir::fingerprint(&git_ws, own_refs))
    })
    .await
    .unwrap_or_default();

    let outcome = match run {
        Ok(exit) => AgentOutcome {
            start_error: None,
            exit_code: exit.code,
            signal: exit.signal,
            timeout: exit.timeout,
            duration_us: exit.duration.as_micros() as u64,
            stdout_bytes: exit.stdout_bytes,
            stderr_bytes: exit.stderr_bytes,
            orphans_killed: exit.orphans_killed,
            result: parsed.result.map(|r| redactor.redact(&r)),
            session_id: parsed.session_id.or_else(|| resume.clone()),
            report: parsed.report,
            expects_report: parsed.expects_report,
            tool_calls: parsed.tool_calls,
            resumed: resume.is_some(),
        },
        Err(e) => AgentOutcome {
            start_error: Some(e.to_string()),
            exit_code: None,
            signal: None,
            timeout: EndedBy::Itself,
            duration_us: 0,
            stdout_bytes: 0,
            stderr_bytes: 0,
            orphans_killed: 0,
            result: None,
            session_id: None,
            report: None,
            expects_report: false,
            tool_calls: Vec::new(),
            resumed: resume.is_some(),
        },
    };
    if outcome.timeout == EndedBy::Request {
        journal
            .send(Append(vec![Event::AttemptInterrupted(AttemptInterrupted {
                project: a.key.project.clone(),
                task: a.key.task.clone(),
                attempt: a.attempt,
                reason: match stop_reason.lock().map(|r| r.clone()).unwrap_or_default() {
                    why if why.is_empty() => "stopped".to_string(),
                    why => format!("stopped: {why}"),
                },
            })]))
            .await??;
        return Ok(Ended::Stopped(a));
    }
    journal
        .send(Append(vec![Event::AgentExited(AgentExited {
            project: a.key.project.clone(),
            task: a.key.task.clone(),
            attempt: a.attempt,
            exit_code: outcome.exit_code,
            signal: outcome.signal,
            timeout: outcome.timeout.as_str().to_string(),
            duration_ms: outcome.duration_us / 1000,
            duration_us: outcome.duration_us,
            stdout_bytes: outcome.stdout_bytes,
            stderr_bytes: outcome.stderr_bytes,
            result: outcome
                .result
                .as_deref()
                .map(|r| redact::head(r, 4096).to_string())
                .or_else(|| outcome.start_error.clone())
                .unwrap_or_default(),
            session_id: outcome.session_id.clone(),
            report: outcome.report.clone(),
            tool_calls: outcome.tool_calls.len() as u32,
            orphans_killed: outcome.orphans_killed,
            unparsed_lines: parsed_unparsed,
        })]))
        .await??;
    Ok(Ended::Done(Box::new(AttemptReport {
        attempt: a,
        project,
        attempts_in_round: spec.attempts_in_round,
        task: Some(spec.task.spec.clone()),
        history: super::report::History {
            tokens: spec.task.attempts.iter().fold(0u64, |t, a| t.saturating_add(a.tokens)),
            cost_usd: spec.task.attempts.iter().map(|a| a.cost_usd).sum(),
            failures_in_a_row: spec
                .task
                .attempts
                .iter()
                .rev()
                .take_while(|a| a.decision == Some(crate::types::Decision::Retry) || a.interrupted)
                .filter(|a| !a.interrupted)
                .count() as u32,
            // An interrupted attempt's changes may not be counted in its view: read the journal then too.
            earlier_changes: spec
                .task
                .attempts
                .iter()
                .any(|x| x.number < spec.attempt.attempt && (x.files_changed > 0 || x.interrupted)),
            added_seq: spec.task.added_seq,
        },
        process_tag: spec.process_tag.clone(),
        containment: spec.containment,
        outcome,
        changes,
        task_changes: Vec::new(),
        git_changes,
        pristine: Vec::new(),
        findings: Vec::new(),
        checks: Vec::new(),
        review: None,
        score: None,
        factors: Vec::new(),
    })))
}

fn output_event(a: &AttemptRef, redactor: &Redactor, item: AgentItem) -> Event {
    Event::AgentOutput(AgentOutput {
        project: a.key.project.clone(),
        task: a.key.task.clone(),
        attempt: a.attempt,
        stream: item.stream,
        text: redactor.redact(&item.text),
    })
}
