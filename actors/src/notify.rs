//! Notifications: when a task escalates or waits for an answer, and when a run ends, a JSON payload goes to the
//! configured command (on its stdin) and webhook (POSTed). Each delivery is journaled (`notified`), a failure too;
//! none is ever fatal to the run. A failure names the command and the webhook in redacted form only
//! ([`Redactor::command_line`], [`crate::redact::redact_url`]): their tokens are never journaled.

use serde_json::{json, Value};

use crate::journal::event::{Event, Notified};
use crate::process;
use crate::redact::{redact_url, Redactor};
use crate::settings::NotifySettings;
use crate::types::TaskKey;

/// What a notification is about.
#[derive(Debug, Clone)]
pub struct Notice {
    /// `task_escalated`, `task_waiting` or `run_finished`.
    pub about: &'static str,
    /// The task, for the first two.
    pub task: Option<TaskKey>,
    /// The payload's other fields.
    pub fields: Value,
}

impl Notice {
    /// A task needs a human: it escalated, or (`waiting`) it waits for an answer to the agent's question.
    pub fn task(key: &TaskKey, title: &str, waiting: bool, reason: &str) -> Notice {
        Notice {
            about: if waiting { "task_waiting" } else { "task_escalated" },
            task: Some(key.clone()),
            fields: json!({
                "project": key.project,
                "task": key.task,
                "title": title,
                "state": "escalated",
                "reason": reason,
                "next": if waiting {
                    format!("orch answer {key} \"…\"")
                } else {
                    format!("orch task show {key}; then orch approve / reject / answer {key}")
                },
            }),
        }
    }

    /// The JSON delivered: the fields with `event` and `time` (RFC 3339, UTC).
    pub fn payload(&self) -> Value {
        let mut v = self.fields.clone();
        if let Some(o) = v.as_object_mut() {
            o.insert("event".into(), self.about.into());
            o.insert("time".into(), humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string().into());
        }
        v
    }
}

/// Delivers `notice` to every configured channel; returns one `notified` event per channel.
pub async fn deliver(
    settings: &NotifySettings,
    containment: crate::settings::Containment,
    http: &reqwest::Client,
    notice: &Notice,
    redactor: &Redactor,
) -> Vec<Event> {
    let payload = notice.payload().to_string();
    let mut out = Vec::new();
    let event = |channel: &str, res: Result<(), String>| {
        Event::Notified(Notified {
            project: notice.task.as_ref().map(|k| k.project.clone()),
            task: notice.task.as_ref().map(|k| k.task.clone()),
            about: notice.about.to_string(),
            channel: channel.to_string(),
            ok: res.is_ok(),
            error: res.err().unwrap_or_default(),
        })
    };
    if !settings.command.is_empty() {
        out.push(event("command", run_command(settings, containment, &payload, redactor).await));
    }
    if !settings.webhook.is_empty() {
        out.push(event("webhook", post(settings, http, &payload, redactor).await));
    }
    out
}

async fn run_command(
    settings: &NotifySettings,
    containment: crate::settings::Containment,
    payload: &str,
    redactor: &Redactor,
) -> Result<(), String> {
    let args = vec!["-c".to_string(), settings.command.clone()];
    let cwd = std::env::current_dir().map_err(|e| format!("no working directory: {e}"))?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let exit = process::run(
        process::Spec {
            program: "sh",
            args: &args,
            cwd: &cwd,
            env: &[],
            hide_env: redactor.hidden_env(),
            stdin: Some(payload.to_string()),
            timeout: settings.timeout,
            idle_timeout: None,
            grace: std::time::Duration::from_secs(1),
            attempt: None,
            sandbox: None,
            containment,
        },
        Some(tx),
        None,
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut tail = String::new();
    while let Ok((_, line)) = rx.try_recv() {
        tail = redactor.redact(&line);
    }
    let shown = redactor.command_line(&settings.command);
    if exit.success() {
        Ok(())
    } else if exit.timeout != process::EndedBy::Itself {
        Err(format!("`{shown}` did not finish within {} s", settings.timeout.as_secs()))
    } else {
        Err(format!(
            "`{shown}` exited with {}{}",
            exit.code.map(|c| format!("status {c}")).unwrap_or_else(|| "a signal".into()),
            if tail.trim().is_empty() { String::new() } else { format!(": {}", crate::redact::head(tail.trim(), 200)) }
        ))
    }
}

async fn post(
    settings: &NotifySettings,
    http: &reqwest::Client,
    payload: &str,
    redactor: &Redactor,
) -> Result<(), String> {
    let shown = redact_url(&settings.webhook);
    let resp = http
        .post(&settings.webhook)
        .header("content-type", "application/json")
        .timeout(settings.timeout)
        .body(payload.to_string())
        .send()
        .await
        // reqwest's message names the URL: without it, and redacted for whatever else it may quote.
        .map_err(|e| redactor.redact(&format!("POST {shown}: {}", with_causes(&e.without_url()))))?;
    let status = resp.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("POST {shown} answered HTTP {}", status.as_u16()))
    }
}

/// An error and what caused it, as one line.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(&format!(": {c}"));
        cause = c.source();
    }
    out
}
