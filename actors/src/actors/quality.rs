//! The QualityController actor: runs the project's check commands in the workspace, each with its timeout, and
//! keeps the tail of their output as evidence; then, when an LLM is configured, asks it through the gateway to
//! review the attempt's diff against the task and its acceptance criteria, with a JSON schema for the answer
//! (verdict, score, issues, unmet criteria). Each result is journaled before the report moves on.

use actix::prelude::*;

use super::confidence::Score;
use super::file_monitor::FileChange;
use super::llm_gateway::Ask;
use super::pipeline::{guarded, record_or_fail, SessionEnded};
use super::report::Review;
use super::report::{AttemptReport, CheckResult};
use super::state_journal::Append;
use super::state_journal::{EarlierChanges, GetBlob};
use crate::diff::{self, FileDiff};
use crate::journal::event::Reviewed;
use crate::journal::event::{CheckFinished, Event};
use crate::journal::event::{PristineCheck, PristineChecked};
use crate::judge;
use crate::llm::LlmRequest;
use crate::process::{self, EndedBy};
use crate::redact::{self, Redactor};
use crate::types::{ChangeKind, ContentHash, Finding};
use std::sync::Arc;

/// Run the checks for an attempt, then pass it on.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Assess(pub AttemptReport);

/// How to reach the LLM for reviews.
#[derive(Clone)]
pub struct Reviewer {
    /// The gateway.
    pub gateway: Recipient<Ask>,
    /// The review's system prompt.
    pub system: String,
}

/// See the module documentation.
pub struct QualityController {
    journal: Recipient<Append>,
    next: Recipient<Score>,
    tail_bytes: usize,
    redactor: Arc<Redactor>,
    failed: Recipient<SessionEnded>,
    blobs: Recipient<GetBlob>,
    reviewer: Option<Reviewer>,
    earlier: Option<Recipient<EarlierChanges>>,
    secrets: Arc<Vec<String>>,
}

/// Changed files read for the evidence in their contents (placeholders, the reviewer's diff): at most this many…
pub const CONTENT_FILES: usize = 100;
/// …of at most this many bytes each.
pub const CONTENT_BYTES: u64 = 512 * 1024;

/// Bytes of diff shown to the reviewer.
pub const REVIEW_DIFF_BYTES: usize = 24 * 1024;

/// The schema of a review: bounded, so that a small model cannot ramble past its token limit.
pub fn review_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object", "additionalProperties": false,
        "required": ["verdict", "score", "issues", "unmet_acceptance"],
        "properties": {
            "verdict": {"type": "string", "enum": ["accept", "reject"]},
            "score": {"type": "integer", "minimum": 0, "maximum": 100},
            "issues": {"type": "array", "maxItems": 5, "items": {"type": "string", "maxLength": 200}},
            "unmet_acceptance": {"type": "array", "maxItems": 5, "items": {"type": "string", "maxLength": 200}}
        }
    })
}

/// The review request for an attempt: the task, its acceptance criteria, what the agent said, the checks, the diff.
pub fn review_request(
    system: &str,
    report: &AttemptReport,
    task_title: &str,
    description: &str,
    acceptance: &[String],
    diff: &str,
) -> LlmRequest {
    let mut user = format!("## Task: {task_title}\n{description}\n");
    if !acceptance.is_empty() {
        user.push_str("\n## Acceptance criteria\n");
        for a in acceptance {
            user.push_str(&format!("- {a}\n"));
        }
    }
    user.push_str("\n## What the agent says it did\n");
    user.push_str(redact::head(report.outcome.result.as_deref().unwrap_or("(nothing)"), 2000));
    user.push_str("\n\n## Checks\n");
    if report.checks.is_empty() {
        user.push_str("(none configured)\n");
    }
    for c in &report.checks {
        user.push_str(&format!("- `{}`: {}\n", c.command, if c.passed { "passed" } else { "FAILED" }));
    }
    if !report.findings.is_empty() {
        // What the evidence and the prose left in doubt is put to the reviewer.
        user.push_str("\n## Findings\n");
        for f in &report.findings {
            user.push_str(&format!("- {} ({:?}): {}\n", f.code, f.severity, redact::head(&f.message, 300)));
        }
    }
    user.push_str("\n## The diff\n");
    user.push_str(if diff.is_empty() { "(no file changed)\n" } else { diff });
    LlmRequest {
        purpose: "review".into(),
        system: system.to_string(),
        user,
        schema: Some(review_schema()),
        max_tokens: 600,
        sense: Some(review_sense),
    }
}

/// A review that follows the schema but contradicts itself is no review: an accept scored below 50 or a reject
/// above 80, an accept that lists unmet criteria, an issue or criterion that says nothing (`1.1.1.0`).
pub fn review_sense(v: &serde_json::Value) -> Result<(), String> {
    let accept = v["verdict"] == "accept";
    let score = v["score"].as_u64().unwrap_or(0);
    if accept && score < 50 {
        return Err(format!("the verdict is accept but the score is {score}/100"));
    }
    if !accept && score > 80 {
        return Err(format!("the verdict is reject but the score is {score}/100"));
    }
    let unmet = strings(&v["unmet_acceptance"]);
    if accept && !unmet.is_empty() {
        return Err(format!("the verdict is accept but {} acceptance criteria are listed as unmet", unmet.len()));
    }
    for s in strings(&v["issues"]).iter().chain(&unmet) {
        if !crate::llm::schema::says_something(s) {
            return Err(format!("`{}` is not a sentence", redact::head(s, 40)));
        }
    }
    Ok(())
}

impl QualityController {
    /// A controller keeping `tail_bytes` of each check's output.
    pub fn new(
        journal: Recipient<Append>,
        next: Recipient<Score>,
        tail_bytes: usize,
        redactor: Arc<Redactor>,
        failed: Recipient<SessionEnded>,
        blobs: Recipient<GetBlob>,
        reviewer: Option<Reviewer>,
    ) -> Self {
        QualityController {
            journal,
            next,
            tail_bytes,
            redactor,
            failed,
            blobs,
            reviewer,
            earlier: None,
            secrets: Arc::new(Vec::new()),
        }
    }

    /// Judges the task's cumulative change (what its earlier attempts changed comes from `earlier`) and looks for
    /// these secret values (the LLM's key) in changed files, besides the agent environment's secrets.
    pub fn with_evidence(mut self, earlier: Recipient<EarlierChanges>, secrets: Vec<String>) -> Self {
        self.earlier = Some(earlier);
        self.secrets = Arc::new(secrets);
        self
    }
}

impl Actor for QualityController {
    type Context = Context<Self>;
}

/// Whom a check runs for: the attempt's environment and tag, how its processes are contained, what is secret.
pub struct CheckContext<'a> {
    /// The environment it adds.
    pub env: &'a [(String, String)],
    /// The attempt's process tag.
    pub attempt: Option<&'a str>,
    /// How its processes are kept from outliving it.
    pub containment: crate::settings::Containment,
    /// What its output must not show.
    pub redactor: &'a Redactor,
}

/// Runs one shell line in `cwd`, returning its result.
pub async fn run_check(
    command: &str,
    cwd: &std::path::Path,
    timeout: std::time::Duration,
    tail_bytes: usize,
    context: &CheckContext<'_>,
) -> (CheckResult, u64) {
    let CheckContext { env, attempt, containment, redactor } = *context;
    // Returns the result and its wall time in µs.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(process::Stream, String)>();
    let args = vec!["-c".to_string(), command.to_string()];
    // Each line redacted before it is kept (the tail is cut as it grows), the whole tail again at the end (a
    // secret split across lines).
    let line_redactor = redactor.clone();
    let collector = tokio::spawn(async move {
        let mut out = String::new();
        while let Some((_, line)) = rx.recv().await {
            out.push_str(&line_redactor.redact_cow(&line));
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
            hide_env: redactor.hidden_env(),
            stdin: None,
            timeout,
            idle_timeout: None,
            grace: std::time::Duration::from_secs(2),
            attempt,
            sandbox: None,
            containment,
        },
        Some(tx),
        None,
    )
    .await;
    let output = collector.await.unwrap_or_default();
    let tail = redact::tail(&redactor.redact_cow(&output), tail_bytes).to_string();
    match res {
        Ok(exit) => {
            let timed_out = exit.timeout == EndedBy::WallClock;
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
        let attempt = msg.0.attempt.clone();
        let failed = self.failed.clone();
        guarded(&failed, attempt, "its checks and review", move || {
            let mut report = msg.0;
            let journal = self.journal.clone();
            let next = self.next.clone();
            let tail_bytes = self.tail_bytes;
            let redactor = self.redactor.clone();
            let failed = self.failed.clone();
            let reviewer = self.reviewer.clone();
            let blobs = self.blobs.clone();
            let earlier = self.earlier.clone();
            let llm_secrets = self.secrets.clone();
            async move {
                // The task's work so far, and what is wrong with it by structure (before the checks, so that a
                // pristine re-run can follow them).
                let structural = if report.outcome.start_error.is_none() {
                    task_evidence(&mut report, earlier.as_ref(), &blobs, &llm_secrets).await
                } else {
                    Evidence::default()
                };
                if report.outcome.start_error.is_none() {
                    let env = process::attempt_env(&report.attempt, &report.project.workspace);
                    for command in report.project.checks.clone() {
                        let context = CheckContext {
                            env: &env,
                            attempt: Some(&report.process_tag),
                            containment: report.containment,
                            redactor: &redactor,
                        };
                        let (mut result, duration_us) = run_check(
                            &command,
                            &report.project.workspace,
                            report.project.check_timeout,
                            tail_bytes,
                            &context,
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
                        if !record_or_fail(&journal, &failed, &report.attempt, "a check result", vec![event]).await {
                            return;
                        }
                        report.checks.push(result);
                    }
                }
                // The checks again, on the original protected files, when the work changed them.
                let mut found = structural.findings;
                if !structural.protected.is_empty() {
                    let (event, results, summary) =
                        pristine_run(&report, &structural.protected, &blobs, tail_bytes, &redactor).await;
                    if !record_or_fail(&journal, &failed, &report.attempt, "the pristine check run", vec![event]).await
                    {
                        return;
                    }
                    let changed: Vec<&FileChange> = structural.protected.iter().collect();
                    found.insert(0, judge::evidence::protected_finding(&changed, &summary));
                    report.pristine = results;
                }
                // The changed files before and after: unfinished code the attempt added, and the reviewer's diff.
                let for_review = reviewer.is_some() && report.outcome.start_error.is_none();
                let contents = contents(&blobs, &report, for_review).await;
                if let Some(f) = placeholder_finding(&contents) {
                    found.push(f);
                }
                // "Tests pass", says the agent: do they?
                let says_pass = report
                    .outcome
                    .result
                    .as_deref()
                    .is_some_and(|r| judge::prose::claims(r).contains(&judge::prose::Claim::TestsPass));
                let failing: Vec<String> =
                    report.checks.iter().filter(|c| !c.passed).map(|c| c.command.clone()).collect();
                if says_pass && !failing.is_empty() {
                    found.push(crate::types::Finding {
                        code: "false_claim_tests_pass".into(),
                        severity: crate::types::Severity::Error,
                        message: format!(
                            "the agent says the tests pass, but {} failed",
                            failing.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
                        ),
                    });
                }
                if !found.is_empty() {
                    for f in &mut found {
                        f.message = redactor.redact(&f.message);
                    }
                    report.findings.extend(found.iter().cloned());
                    let event = Event::Validated(crate::journal::event::Validated {
                        project: report.attempt.key.project.clone(),
                        task: report.attempt.key.task.clone(),
                        attempt: report.attempt.attempt,
                        ok: !found.iter().any(|f| f.severity == crate::types::Severity::Error),
                        findings: found,
                    });
                    if !record_or_fail(&journal, &failed, &report.attempt, "its findings in the evidence", vec![event])
                        .await
                    {
                        return;
                    }
                }
                if let (Some(r), None) = (&reviewer, &report.outcome.start_error) {
                    let review = review(r, &report, &contents).await;
                    let mut reviewed = Reviewed {
                        project: report.attempt.key.project.clone(),
                        task: report.attempt.key.task.clone(),
                        attempt: report.attempt.attempt,
                        available: false,
                        verdict: String::new(),
                        score: 0,
                        issues: Vec::new(),
                        unmet_acceptance: Vec::new(),
                        error: String::new(),
                    };
                    match &review {
                        Review::Done { accept, score, issues, unmet_acceptance } => {
                            reviewed.available = true;
                            reviewed.verdict = if *accept { "accept".into() } else { "reject".into() };
                            reviewed.score = *score;
                            reviewed.issues = issues.iter().map(|i| redactor.redact(i)).collect();
                            reviewed.unmet_acceptance = unmet_acceptance.iter().map(|u| redactor.redact(u)).collect();
                        }
                        Review::Dropped(why) => reviewed.error = why.clone(),
                    }
                    let event = Event::Reviewed(reviewed);
                    if !record_or_fail(&journal, &failed, &report.attempt, "its review", vec![event]).await {
                        return;
                    }
                    report.review = Some(review);
                }
                next.do_send(Score(report));
            }
        })
    }
}

/// What the task's work so far shows by structure.
#[derive(Default)]
struct Evidence {
    /// Collateral damage, secrets, bad globs.
    findings: Vec<Finding>,
    /// Protected files the work changed: the checks must be run again without these changes.
    protected: Vec<FileChange>,
}

/// A file's content hash and size, read as a stream; `None` when it is absent or not a regular file.
pub fn hash_file(path: &std::path::Path) -> Option<(ContentHash, u64)> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    let mut hasher = blake3::Hasher::new();
    let f = std::fs::File::open(path).ok()?;
    hasher.update_reader(f).ok()?;
    Some((ContentHash(*hasher.finalize().as_bytes()), meta.len()))
}

/// The task's text, for telling which files it names.
fn task_text(report: &AttemptReport) -> String {
    match &report.task {
        Some(t) => judge::task_text(t),
        None => report.attempt.key.task.clone(),
    }
}

/// Gathers the task's cumulative change into the report and judges it: protected files changed, collateral
/// damage, secrets in files.
async fn task_evidence(
    report: &mut AttemptReport,
    earlier: Option<&Recipient<EarlierChanges>>,
    blobs: &Recipient<GetBlob>,
    llm_secrets: &[String],
) -> Evidence {
    let mut ev = Evidence::default();
    // Only a task whose earlier attempts changed files needs the journal read (a scan of the task's events).
    let before_map = match earlier.filter(|_| report.history.earlier_changes) {
        Some(e) => {
            let query = EarlierChanges {
                task: report.attempt.key.clone(),
                before: report.attempt.attempt,
                after_seq: report.history.added_seq,
            };
            match e.send(query).await {
                Ok(Ok(m)) => m,
                Ok(Err(err)) => {
                    tracing::warn!("{}: earlier changes unreadable: {err}", report.attempt);
                    Default::default()
                }
                Err(_) => Default::default(),
            }
        }
        None => Default::default(),
    };
    let project = report.project.clone();
    let this = report.changes.clone();
    let task_id = report.attempt.key.task.clone();
    let text = task_text(report);
    let mut secrets = judge::evidence::secret_values(project.agent.env.iter());
    secrets.extend(llm_secrets.iter().cloned());
    let judged = tokio::task::spawn_blocking(move || {
        let ws = &project.workspace;
        let changes = judge::evidence::cumulative(&before_map, &this, |p| hash_file(&ws.join(p)));
        let protection = judge::paths::task_protection(&project, &task_id, &text);
        let own = project.judgement.tasks.get(&task_id).cloned().unwrap_or_default();
        let scope = if own.scope.is_empty() { project.judgement.scope.clone() } else { own.scope };
        let secret_files: Vec<String> = changes
            .iter()
            .filter(|c| c.after.is_some())
            .filter(|c| judge::evidence::file_holds_secret(&ws.join(&c.path), &secrets).unwrap_or(false))
            .map(|c| c.path.clone())
            .collect();
        (changes, protection, scope, secret_files)
    })
    .await;
    let Ok((changes, protection, scope, secret_files)) = judged else {
        ev.findings.push(Finding {
            code: "evidence_unavailable".into(),
            severity: crate::types::Severity::Error,
            message: "the task's changes could not be judged (the judging task failed)".into(),
        });
        return ev;
    };
    // Caches and build outputs (`__pycache__`, `*.pyc`…) are no work: running the code leaves them.
    report.task_changes = changes.into_iter().filter(|c| !judge::paths::generated(&c.path)).collect();
    let protection = match protection {
        Ok(p) => p,
        Err(e) => {
            ev.findings.push(Finding {
                code: "bad_protected_paths".into(),
                severity: crate::types::Severity::Error,
                message: format!("the protected paths cannot be read: {e}"),
            });
            return ev;
        }
    };
    ev.protected = judge::evidence::protected_changes(&report.task_changes, &protection).into_iter().cloned().collect();
    // How much of each pre-existing, unnamed file survived: only those can be collateral damage.
    let text = task_text(report);
    let mut survival = std::collections::HashMap::new();
    for c in &report.task_changes {
        let candidate = c.kind == ChangeKind::Modified
            && c.size > 0
            && c.size <= CONTENT_BYTES
            && !judge::paths::generated(&c.path)
            && !protection.guards(&c.path, true)
            && !judge::paths::named_by_task(&c.path, &text);
        let Some(before) = c.before.filter(|_| candidate) else { continue };
        let old = blobs.send(GetBlob(before)).await.ok().and_then(|b| b.ok()).flatten();
        let new = tokio::fs::read(report.project.workspace.join(&c.path)).await.ok();
        if let (Some(old), Some(new)) = (old, new) {
            survival.insert(c.path.clone(), judge::evidence::Survival::of(&old, &new));
        }
    }
    let task = judge::evidence::TaskText { text: &text, scope: &scope };
    match judge::evidence::collateral(&report.task_changes, &task, &protection, |c| survival.get(&c.path).copied()) {
        Ok(Some(f)) => ev.findings.push(f),
        Ok(None) => {}
        Err(e) => ev.findings.push(Finding {
            code: "bad_scope".into(),
            severity: crate::types::Severity::Error,
            message: format!("the task's scope cannot be read: {e}"),
        }),
    }
    if let Some(f) = judge::evidence::secret_finding(&secret_files) {
        ev.findings.push(f);
    }
    ev
}

/// Runs the checks again in a scratch copy of the workspace with the protected files as they were before the task
/// (created ones removed). Returns the event to journal, the results, and one sentence saying what they show.
async fn pristine_run(
    report: &AttemptReport,
    protected: &[FileChange],
    blobs: &Recipient<GetBlob>,
    tail_bytes: usize,
    redactor: &Redactor,
) -> (Event, Vec<CheckResult>, String) {
    let mut event = PristineChecked {
        project: report.attempt.key.project.clone(),
        task: report.attempt.key.task.clone(),
        attempt: report.attempt.attempt,
        restored: protected.iter().map(|c| c.path.clone()).collect(),
        checks: Vec::new(),
        error: String::new(),
    };
    let mut results = Vec::new();
    let summary = match prepare_pristine(report, protected, blobs).await {
        Err(e) => {
            event.error = e.clone();
            format!("The checks could not be run on the original files ({e}).")
        }
        Ok(scratch) => {
            let ws = scratch.path().join("ws");
            let mut env = process::attempt_env(&report.attempt, &ws);
            env.push(("ORCH_PRISTINE".to_string(), "1".to_string()));
            for command in &report.project.checks {
                let context = CheckContext {
                    env: &env,
                    attempt: Some(&report.process_tag),
                    containment: report.containment,
                    redactor,
                };
                let (mut r, _) = run_check(command, &ws, report.project.check_timeout, tail_bytes, &context).await;
                r.output_tail = redactor.redact(&r.output_tail);
                event.checks.push(PristineCheck {
                    command: r.command.clone(),
                    passed: r.passed,
                    exit_code: r.exit_code,
                    output_tail: r.output_tail.clone(),
                });
                results.push(r);
            }
            drop(scratch);
            match results.iter().find(|r| !r.passed) {
                None => "On the original files the checks pass too.".to_string(),
                Some(r) => {
                    let last = r.output_tail.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
                    format!(
                        "On the original files `{}` fails{}{}.",
                        r.command,
                        r.exit_code.map(|c| format!(" (exit {c})")).unwrap_or_default(),
                        if last.is_empty() { String::new() } else { format!(": {}", redact::head(last, 200)) }
                    )
                }
            }
        }
    };
    (Event::PristineChecked(event), results, summary)
}

/// A scratch copy of the workspace (`<scratch>/ws`) with the protected changes undone.
async fn prepare_pristine(
    report: &AttemptReport,
    protected: &[FileChange],
    blobs: &Recipient<GetBlob>,
) -> Result<tempfile::TempDir, String> {
    let scratch =
        tempfile::Builder::new().prefix("orch-pristine-").tempdir().map_err(|e| format!("scratch directory: {e}"))?;
    let ws = scratch.path().join("ws");
    let out = tokio::process::Command::new("cp")
        .arg("-a")
        .arg("--")
        .arg(&report.project.workspace)
        .arg(&ws)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("copying the workspace: {e}"))?;
    if !out.status.success() {
        return Err(format!("copying the workspace: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    for c in protected {
        let target = ws.join(&c.path);
        match c.before {
            None => {
                let _ = tokio::fs::remove_file(&target).await;
            }
            Some(h) => {
                let data = match blobs.send(GetBlob(h)).await {
                    Ok(Ok(Some(d))) => d,
                    _ => return Err(format!("the original of {} is not in the journal", c.path)),
                };
                if let Some(dir) = target.parent() {
                    tokio::fs::create_dir_all(dir).await.map_err(|e| format!("{}: {e}", dir.display()))?;
                }
                // Never through an existing inode: the copy could be a link the agent planted.
                let _ = tokio::fs::remove_file(&target).await;
                tokio::fs::write(&target, &data).await.map_err(|e| format!("{}: {e}", target.display()))?;
            }
        }
    }
    Ok(scratch)
}

/// A changed file's path with its content before and after the attempt (`None`: absent, unreadable or too big).
type Contents = Vec<(String, Option<Vec<u8>>, Option<Vec<u8>>)>;

/// The contents of the attempt's changed files: pre-images from the journal, the rest from the workspace; at most
/// [`CONTENT_FILES`] files of at most [`CONTENT_BYTES`] each. A pre-image is fetched only when it is needed: for
/// the reviewer's diff (`for_review`), or to tell a placeholder the attempt added from one that was there before.
async fn contents(blobs: &Recipient<GetBlob>, report: &AttemptReport, for_review: bool) -> Contents {
    let mut out = Vec::new();
    for c in report.changes.iter().take(CONTENT_FILES) {
        let path = report.project.workspace.join(&c.path);
        let small = tokio::fs::symlink_metadata(&path).await.is_ok_and(|m| m.is_file() && m.len() <= CONTENT_BYTES);
        let after = if c.after.is_some() && small { tokio::fs::read(&path).await.ok() } else { None };
        let wanted = for_review || after.as_deref().is_some_and(crate::judge::prose::has_placeholder);
        let before = match c.before.filter(|_| wanted) {
            Some(h) => blobs.send(GetBlob(h)).await.ok().and_then(|b| b.ok()).flatten(),
            None => None,
        };
        out.push((c.path.clone(), before.filter(|b| b.len() as u64 <= CONTENT_BYTES), after));
    }
    out
}

/// Unfinished code the attempt added (TODO, `unimplemented!`, `NotImplementedError`…), as one finding.
pub fn placeholder_finding(contents: &Contents) -> Option<crate::types::Finding> {
    let mut hits = Vec::new();
    for (path, before, after) in contents {
        if let Some(after) = after {
            for (line, text) in crate::judge::prose::placeholders_added(before.as_deref(), after) {
                hits.push(format!("{path}:{line}: `{}`", redact::head(&text, 120)));
            }
        }
    }
    if hits.is_empty() {
        return None;
    }
    let n = hits.len();
    let shown = hits.into_iter().take(5).collect::<Vec<_>>().join("; ");
    Some(crate::types::Finding {
        code: "placeholder_added".into(),
        severity: crate::types::Severity::Error,
        message: format!(
            "the change adds {n} placeholder line(s) of unfinished work: {shown}{}",
            if n > 5 { " …" } else { "" }
        ),
    })
}

/// Asks the LLM to review the attempt. Any failure — unreachable, garbage twice, truncated — is a dropped review with
/// its reason, never an error of the attempt.
async fn review(r: &Reviewer, report: &AttemptReport, contents: &Contents) -> Review {
    let files: Vec<FileDiff<'_>> =
        contents.iter().map(|(p, b, a)| FileDiff { path: p, before: b.as_deref(), after: a.as_deref() }).collect();
    let diff = diff::unified(&files, REVIEW_DIFF_BYTES);
    let spec = report.project.tasks.iter().find(|t| t.id == report.attempt.key.task);
    let (title, description, acceptance) = match (spec, &report.task) {
        (_, Some(t)) => (t.title.as_str(), t.description.as_str(), t.acceptance.as_slice()),
        (Some(t), None) => (t.title.as_str(), t.description.as_str(), t.acceptance.as_slice()),
        (None, None) => (report.attempt.key.task.as_str(), "", &[][..]),
    };
    let request = review_request(&r.system, report, title, description, acceptance, &diff);
    match r.gateway.send(Ask { request, about: Some(report.attempt.clone()) }).await {
        Ok(Ok(answer)) => match answer.json {
            Some(v) => Review::Done {
                accept: v["verdict"] == "accept",
                score: v["score"].as_u64().unwrap_or(0).min(100) as u32,
                issues: strings(&v["issues"]),
                unmet_acceptance: strings(&v["unmet_acceptance"]),
            },
            None => Review::Dropped("the answer carried no JSON".into()),
        },
        Ok(Err(e)) => Review::Dropped(e.to_string()),
        Err(e) => Review::Dropped(format!("the LLM gateway is gone: {e}")),
    }
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_string)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn review(verdict: &str, score: u32, issues: &[&str], unmet: &[&str]) -> serde_json::Value {
        json!({"verdict": verdict, "score": score, "issues": issues, "unmet_acceptance": unmet})
    }

    #[test]
    fn a_review_must_agree_with_itself() {
        assert_eq!(review_sense(&review("accept", 90, &[], &[])), Ok(()));
        assert_eq!(review_sense(&review("reject", 20, &["calc.sh subtracts"], &["2 + 3 = 5"])), Ok(()));
        assert!(review_sense(&review("accept", 1, &[], &[])).is_err());
        assert!(review_sense(&review("reject", 95, &["x y"], &[])).is_err());
        assert!(review_sense(&review("accept", 90, &[], &["sub is missing"])).is_err());
        assert!(review_sense(&review("reject", 10, &["1.1.1.0"], &[])).is_err());
    }

    #[test]
    fn placeholders_are_found_with_their_place() {
        let contents: Contents = vec![
            ("a.py".into(), Some(b"x = 1\n".to_vec()), Some(b"x = 1\n# TODO: y\n".to_vec())),
            ("gone.py".into(), Some(b"# TODO\n".to_vec()), None),
        ];
        let f = placeholder_finding(&contents).expect("a finding");
        assert_eq!(f.code, "placeholder_added");
        assert!(f.message.contains("a.py:2: `# TODO: y`"), "{}", f.message);
        assert!(placeholder_finding(&contents[1..].to_vec()).is_none());
    }
}
