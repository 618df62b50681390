//! The QualityController actor: runs the project's check commands in the workspace, each with its timeout, and
//! keeps the tail of their output as evidence. Each result is journaled before the report moves on.

use actix::prelude::*;

use super::confidence::Score;
use super::report::{AttemptReport, CheckResult};
use super::scheduler::SessionEnded;
use super::state_journal::Append;
use crate::journal::event::{CheckFinished, Event};
use crate::process::{self, Timeout};
use crate::redact::{self, Redactor};
use std::sync::Arc;

/// Run the checks for an attempt, then pass it on.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Assess(pub AttemptReport);

/// See the module documentation.
pub struct QualityController {
    journal: Recipient<Append>,
    next: Recipient<Score>,
    tail_bytes: usize,
    redactor: Arc<Redactor>,
    failed: Recipient<SessionEnded>,
}

impl QualityController {
    /// A controller keeping `tail_bytes` of each check's output.
    pub fn new(
        journal: Recipient<Append>,
        next: Recipient<Score>,
        tail_bytes: usize,
        redactor: Arc<Redactor>,
        failed: Recipient<SessionEnded>,
    ) -> Self {
        QualityController { journal, next, tail_bytes, redactor, failed }
    }
}

impl Actor for QualityController {
    type Context = Context<Self>;
}

/// Runs one shell line in `cwd`, returning its result.
pub async fn run_check(
    command: &str,
    cwd: &std::path::Path,
    timeout: std::time::Duration,
    env: &[(String, String)],
    tail_bytes: usize,
) -> (CheckResult, u64) {
    // Returns the result and its wall time in µs.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(process::Stream, String)>();
    let args = vec!["-c".to_string(), command.to_string()];
    let collector = tokio::spawn(async move {
        let mut out = String::new();
        while let Some((_, line)) = rx.recv().await {
            out.push_str(&line);
            out.push('\n');
            if out.len() > 4 * tail_bytes {
                out = redact::tail(&out, tail_bytes).to_string();
            }
        }
        out
    });
    let res = process::run(
        process::Spec {
            program: "sh",
            args: &args,
            cwd,
            env,
            stdin: None,
            timeout,
            idle_timeout: None,
            grace: std::time::Duration::from_secs(2),
        },
        Some(tx),
        None,
    )
    .await;
    let output = collector.await.unwrap_or_default();
    let tail = redact::tail(&output, tail_bytes).to_string();
    match res {
        Ok(exit) => {
            let timed_out = exit.timeout == Timeout::WallClock;
            let mut tail = tail;
            if timed_out {
                tail.push_str(&format!("[orch: killed after {} s]\n", timeout.as_secs()));
            }
            (
                CheckResult {
                    command: command.to_string(),
                    passed: exit.success(),
                    exit_code: exit.code,
                    timed_out,
                    output_tail: tail,
                },
                exit.duration.as_micros() as u64,
            )
        }
        Err(e) => (
            CheckResult {
                command: command.to_string(),
                passed: false,
                exit_code: None,
                timed_out: false,
                output_tail: format!("[orch: {e}]"),
            },
            0,
        ),
    }
}

impl Handler<Assess> for QualityController {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: Assess, _ctx: &mut Self::Context) -> Self::Result {
        let mut report = msg.0;
        let journal = self.journal.clone();
        let next = self.next.clone();
        let tail_bytes = self.tail_bytes;
        let redactor = self.redactor.clone();
        let failed = self.failed.clone();
        Box::pin(
            async move {
                if report.outcome.start_error.is_none() {
                    let env = vec![
                        ("ORCH_PROJECT".to_string(), report.attempt.key.project.clone()),
                        ("ORCH_TASK_ID".to_string(), report.attempt.key.task.clone()),
                        ("ORCH_ATTEMPT".to_string(), report.attempt.attempt.to_string()),
                    ];
                    for command in report.project.checks.clone() {
                        let (mut result, duration_us) = run_check(
                            &command,
                            &report.project.workspace,
                            report.project.check_timeout,
                            &env,
                            tail_bytes,
                        )
                        .await;
                        result.output_tail = redactor.redact(&result.output_tail);
                        let event = Event::CheckFinished(CheckFinished {
                            project: report.attempt.key.project.clone(),
                            task: report.attempt.key.task.clone(),
                            attempt: report.attempt.attempt,
                            command: result.command.clone(),
                            passed: result.passed,
                            exit_code: result.exit_code,
                            timed_out: result.timed_out,
                            duration_ms: duration_us / 1000,
                            duration_us,
                            output_tail: result.output_tail.clone(),
                        });
                        let sent = journal.send(Append(vec![event])).await;
                        if let Some(e) = match sent {
                            Ok(Ok(_)) => None,
                            Ok(Err(e)) => Some(e.to_string()),
                            Err(e) => Some(e.to_string()),
                        } {
                            SessionEnded::failed(&failed, report.attempt, format!("recording a check result: {e}"));
                            return;
                        }
                        report.checks.push(result);
                    }
                }
                next.do_send(Score(report));
            }
            .into_actor(self),
        )
    }
}
