//! What users read: the status table and JSON, a task with its attempts, event lines, a task's timeline, stats.
//! Pure functions of the state and the events, so they are snapshot-tested.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use orch_actors::journal::event::{Event, Intent};
use orch_actors::journal::{State, TaskView};
use orch_actors::{EventRecord, TaskState};
use serde_json::{json, Value};

fn short_time(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    let s = humantime::format_rfc3339_millis(t).to_string();
    s.get(11..23).unwrap_or(&s).to_string()
}

fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// `orch status --json`.
pub fn status_json(state: &State) -> Value {
    let mut projects: BTreeMap<&str, Vec<Value>> = state.projects.keys().map(|p| (p.as_str(), Vec::new())).collect();
    for (k, v) in &state.tasks {
        projects.entry(k.project.as_str()).or_default().push(task_summary_json(v));
    }
    json!({
        "projects": projects
            .into_iter()
            .map(|(name, tasks)| json!({"name": name, "tasks": tasks}))
            .collect::<Vec<_>>()
    })
}

fn task_summary_json(v: &TaskView) -> Value {
    let mut o = json!({
        "id": v.spec.id,
        "title": v.spec.title,
        "state": v.state.as_str(),
        "priority": v.spec.priority,
        "attempts": v.attempts.len(),
        "last_decision": v.last_decision().map(|d| d.as_str()),
        "confidence": v.confidence(),
    });
    if let (Some(r), Some(obj)) = (&v.reason, o.as_object_mut()) {
        obj.insert("reason".into(), r.clone().into());
    }
    o
}

/// `orch status`.
pub fn status_text(state: &State) -> String {
    let mut out = String::new();
    if state.projects.is_empty() && state.tasks.is_empty() {
        return "no projects yet (add them to the config and run `orch run`)\n".into();
    }
    let rows: Vec<[String; 7]> = state
        .tasks
        .iter()
        .map(|(k, v)| {
            [
                k.project.clone(),
                k.task.clone(),
                v.state.as_str().to_string(),
                v.spec.priority.to_string(),
                v.attempts.len().to_string(),
                v.last_decision().map(|d| d.as_str().to_string()).unwrap_or_else(|| "-".into()),
                v.confidence().map(|c| format!("{c:.2}")).unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let header = ["PROJECT", "TASK", "STATE", "PRI", "ATTEMPTS", "DECISION", "CONFIDENCE"];
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                let _ = write!(s, "{c:<w$}  ", w = widths[i]);
            }
        }
        s.trim_end().to_string() + "\n"
    };
    out.push_str(&line(header.to_vec()));
    for (r, (_, v)) in rows.iter().zip(state.tasks.iter()) {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
        if let Some(reason) = &v.reason {
            let _ = writeln!(out, "    └ {reason}");
        }
    }
    let mut counts: BTreeMap<TaskState, usize> = BTreeMap::new();
    for v in state.tasks.values() {
        *counts.entry(v.state).or_default() += 1;
    }
    let summary: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    let _ = writeln!(out, "\n{} task(s): {}", state.tasks.len(), summary.join(", "));
    visible(out)
}

/// `orch task show --json`.
pub fn task_json(v: &TaskView) -> Value {
    json!({
        "project": v.spec.project,
        "id": v.spec.id,
        "title": v.spec.title,
        "description": v.spec.description,
        "state": v.state.as_str(),
        "reason": v.reason,
        "priority": v.spec.priority,
        "depends_on": v.spec.depends_on,
        "acceptance": v.spec.acceptance,
        "answers": v.answers,
        "last_decision": v.last_decision().map(|d| d.as_str()),
        "confidence": v.confidence(),
        "attempts": v.attempts.iter().map(|a| json!({
            "number": a.number,
            "started": rfc3339(a.started_ms),
            "ended": a.ended_ms.map(rfc3339),
            "exit_code": a.exit_code,
            "timeout": a.timeout,
            "agent_ms": a.agent_ms,
            "session_id": a.session_id,
            "files_changed": a.files_changed,
            "checks_passed": a.checks_passed,
            "checks_run": a.checks_run,
            "valid": a.valid,
            "confidence": a.confidence,
            "decision": a.decision.map(|d| d.as_str()),
            "reason": a.reason,
            "interrupted": a.interrupted,
        })).collect::<Vec<_>>(),
    })
}

/// `orch task show`.
pub fn task_text(v: &TaskView) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}/{} — {}", v.spec.project, v.spec.id, v.spec.title);
    let _ = writeln!(out, "state:      {}", v.state);
    if let Some(r) = &v.reason {
        let _ = writeln!(out, "reason:     {r}");
    }
    let _ = writeln!(out, "priority:   {}", v.spec.priority);
    if !v.spec.depends_on.is_empty() {
        let _ = writeln!(out, "depends on: {}", v.spec.depends_on.join(", "));
    }
    for a in &v.spec.acceptance {
        let _ = writeln!(out, "accept:     {a}");
    }
    let _ = writeln!(out, "\n{}", v.spec.description.trim_end());
    for a in &v.answers {
        let _ = writeln!(out, "\nanswer from a human: {a}");
    }
    if v.attempts.is_empty() {
        let _ = writeln!(out, "\nno attempts yet");
    }
    for a in &v.attempts {
        let _ = writeln!(out);
        let decision = if a.interrupted {
            "interrupted".to_string()
        } else {
            a.decision.map(|d| d.as_str().to_string()).unwrap_or_else(|| "(under way)".into())
        };
        let _ = writeln!(out, "attempt {}: {decision}", a.number);
        let exit = match (a.exit_code, a.timeout.as_deref()) {
            (_, Some(t)) if t != "none" => format!("killed ({t} timeout)"),
            (Some(c), _) => format!("exit {c}"),
            (None, _) => "-".into(),
        };
        let _ = writeln!(
            out,
            "  agent {exit}{}, {} file(s) changed, checks {}/{}, confidence {}",
            a.agent_ms.map(|ms| format!(" after {:.1} s", ms as f64 / 1000.0)).unwrap_or_default(),
            a.files_changed,
            a.checks_passed,
            a.checks_run,
            a.confidence.map(|c| format!("{c:.2}")).unwrap_or_else(|| "-".into())
        );
        if let Some(r) = &a.reason {
            let _ = writeln!(out, "  why: {r}");
        }
    }
    visible(out)
}

fn scope_label(e: &Event) -> String {
    let s = e.scope();
    match (s.project, s.task, s.attempt) {
        (Some(p), Some(t), Some(a)) => format!("{p}/{t}#{a}"),
        (Some(p), Some(t), None) => format!("{p}/{t}"),
        (Some(p), None, _) => p.to_string(),
        _ => "-".into(),
    }
}

fn first_line(s: &str, max: usize) -> String {
    let l = s.lines().next().unwrap_or("");
    if l.chars().count() > max {
        format!("{}…", l.chars().take(max).collect::<String>())
    } else {
        l.to_string()
    }
}

/// One line saying what an event records (without time or scope).
pub fn event_summary(e: &Event) -> String {
    match e {
        Event::ProjectRegistered(p) => format!("project registered, workspace {}", p.workspace),
        Event::TaskAdded(t) => format!("task added from {}: {}", t.source, t.spec.title),
        Event::TaskUpdated(t) => format!("task updated: {}", t.spec.title),
        Event::RunStarted(r) => format!("run started (pid {}, {} task(s) selected)", r.pid, r.selected.len()),
        Event::RunFinished(r) => format!(
            "run {}: {} completed, {} need a human, {} cancelled",
            r.outcome, r.completed, r.needs_human, r.cancelled
        ),
        Event::AttemptStarted(a) => format!(
            "attempt {} started: {} agent `{}`, prompt {}{}",
            a.attempt,
            a.agent,
            a.program,
            match a.prompt_tokens {
                Some(t) => format!("{t} tokens"),
                None => format!("{} bytes", a.prompt_bytes),
            },
            a.resume_session.as_ref().map(|s| format!(", resuming session {s}")).unwrap_or_default()
        ),
        Event::AgentOutput(o) => format!("agent {}: {}", o.stream, first_line(&o.text, 160)),
        Event::AgentExited(x) => {
            let how = match (x.timeout.as_str(), x.exit_code, x.signal) {
                ("none", Some(c), _) => format!("exited {c}"),
                ("none", None, Some(s)) => format!("killed by signal {s}"),
                (t, _, _) if t != "none" => format!("killed ({t} timeout)"),
                _ => "ended".into(),
            };
            let report = x
                .report
                .as_ref()
                .map(|r| {
                    format!(
                        "; reported {}{}, {} turn(s), {} tokens, ${:.4}",
                        r.subtype,
                        if r.is_error { " with is_error" } else { "" },
                        r.num_turns,
                        r.input_tokens.saturating_add(r.output_tokens),
                        r.cost_usd
                    )
                })
                .unwrap_or_default();
            let orphans = if x.orphans_killed > 0 {
                format!("; killed {} process(es) it left behind", x.orphans_killed)
            } else {
                String::new()
            };
            format!(
                "agent {how} after {:.2} s, {} bytes of output{report}{orphans}",
                x.duration_ms as f64 / 1000.0,
                x.stdout_bytes
            )
        }
        Event::ProviderPaused(p) => format!(
            "provider {} paused until {}: {}",
            p.provider,
            humantime::format_rfc3339_millis(
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(p.until_ms.max(0) as u64)
            ),
            p.reason
        ),
        Event::ProviderResumed(p) => format!("provider {} resumed", p.provider),
        Event::Committed(c) => format!(
            "committed on {}{}: {}",
            c.branch,
            c.commit
                .as_deref()
                .map(|h| format!(" as {}", &h[..h.len().min(12)]))
                .unwrap_or_else(|| " (nothing new)".into()),
            c.merge
        ),
        Event::IntentRecorded(i) => match &i.intent {
            Intent::Attempt { files, .. } => {
                format!("workspace manifest kept before attempt {} ({files} file(s))", i.attempt)
            }
            Intent::Rollback { from_attempt, force } => {
                format!("about to roll back attempt {from_attempt} and later{}", if *force { " (forced)" } else { "" })
            }
            Intent::Merge { branch } => {
                format!("about to commit attempt {}'s work on {branch} and merge it", i.attempt)
            }
        },
        Event::IntentSettled(i) if i.intent == "attempt" => format!("attempt {}: {}", i.attempt, i.how),
        Event::IntentSettled(i) => format!("{} of attempt {} settled: {}", i.intent, i.attempt, i.how),
        Event::PristineChecked(p) => {
            if !p.error.is_empty() {
                format!("checks on the original protected files could not run: {}", p.error)
            } else {
                let failed: Vec<&str> = p.checks.iter().filter(|c| !c.passed).map(|c| c.command.as_str()).collect();
                format!(
                    "checks on the original protected files ({} restored): {}",
                    p.restored.join(", "),
                    if failed.is_empty() {
                        "all pass".to_string()
                    } else {
                        format!("{} fail", failed.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", "))
                    }
                )
            }
        }
        Event::FileTouched(f) => format!(
            "seen: file {} {}{}",
            f.change.as_str(),
            f.path,
            f.after.map(|h| format!(" ({} B, {})", f.size, &h.to_hex()[..12])).unwrap_or_default()
        ),
        Event::FileChanged(f) => format!(
            "file {} {}{}",
            f.change.as_str(),
            f.path,
            f.after.map(|h| format!(" ({} B, {})", f.size, &h.to_hex()[..12])).unwrap_or_default()
        ),
        Event::Validated(v) => {
            if v.findings.is_empty() {
                "validated: ok".into()
            } else {
                format!(
                    "validated: {} ({})",
                    if v.ok { "ok" } else { "not acceptable" },
                    v.findings.iter().map(|f| f.code.as_str()).collect::<Vec<_>>().join(", ")
                )
            }
        }
        Event::CheckFinished(c) => format!(
            "check `{}` {}{} in {:.2} s",
            c.command,
            if c.passed { "passed" } else { "failed" },
            match (c.timed_out, c.exit_code) {
                (true, _) => " (timed out)".to_string(),
                (false, Some(code)) if !c.passed => format!(" (exit {code})"),
                _ => String::new(),
            },
            c.duration_ms as f64 / 1000.0
        ),
        Event::Scored(s) => format!(
            "confidence {:.2}: {}",
            s.score,
            s.factors
                .iter()
                .map(|f| format!("{} {:.2}×{:.2}", f.name, f.value, f.weight))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Event::Decided(d) => format!("decision {}: {}", d.decision, d.reason),
        Event::TaskStateChanged(c) => format!("{} → {}: {}", c.from, c.to, c.reason),
        Event::AttemptInterrupted(i) => format!("attempt {} interrupted: {}", i.attempt, i.reason),
        Event::HumanAnswered(h) => format!("a human answered: {}", first_line(&h.answer, 160)),
        Event::HumanVerdict(h) => {
            format!(
                "a human said {}{}",
                h.verdict,
                if h.reason.is_empty() { String::new() } else { format!(": {}", h.reason) }
            )
        }
        Event::LlmCalled(c) => format!(
            "LLM {} ({} {}, try {}): {}{}, {} in / {} out tokens, {:.0} ms",
            c.purpose,
            c.provider,
            c.model,
            c.try_number,
            c.outcome,
            if c.error.is_empty() { String::new() } else { format!(" — {}", first_line(&c.error, 160)) },
            c.prompt_tokens,
            c.completion_tokens,
            c.latency_us as f64 / 1000.0
        ),
        Event::BreakpointHit(b) => format!("breakpoint {}: {}", b.breakpoint, b.detail),
        Event::Notified(n) if n.ok => format!("notified ({}) of {}", n.channel, n.about),
        Event::Notified(n) => {
            format!("could not notify ({}) of {}: {}", n.channel, n.about, first_line(&n.error, 200))
        }
        Event::LlmAnswered(a) => {
            format!(
                "the LLM answered the agent's question \"{}\": {}",
                first_line(&a.question, 120),
                first_line(&a.answer, 160)
            )
        }
        Event::Reviewed(r) => {
            if r.available {
                let mut s = format!("LLM review: {} ({}/100)", r.verdict, r.score);
                for i in &r.issues {
                    s.push_str(&format!("; {}", first_line(i, 120)));
                }
                for u in &r.unmet_acceptance {
                    s.push_str(&format!("; unmet: {}", first_line(u, 120)));
                }
                s
            } else {
                format!("LLM review unavailable: {}", first_line(&r.error, 160))
            }
        }
        Event::RolledBack(r) => format!(
            "rolled back from attempt {}: {} file(s) restored, {} conflict(s)",
            r.from_attempt,
            r.restored.len(),
            r.conflicts.len()
        ),
    }
}

/// One event as `orch-log events` prints it: a JSON object, or a line of text.
pub fn record_line(r: &EventRecord, json: bool) -> String {
    if json {
        r.to_json().to_string()
    } else {
        event_line(r)
    }
}

/// One event as a line of `orch-log events`.
pub fn event_line(r: &EventRecord) -> String {
    visible(format!(
        "{:>6}  {}  {:<19} {:<28} {}",
        r.seq,
        r.time_rfc3339(),
        r.event.kind(),
        scope_label(&r.event),
        event_summary(&r.event)
    ))
}

/// `orch-log show`: a task's timeline.
pub fn timeline(view: &TaskView, records: &[EventRecord]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}/{} — {} [{}]", view.spec.project, view.spec.id, view.spec.title, view.state);
    if let Some(r) = &view.reason {
        let _ = writeln!(out, "why: {r}");
    }
    let mut attempt = None;
    // Live sightings of file changes are in `orch-log events`; the timeline lists the authoritative changes.
    for r in records.iter().filter(|r| !matches!(r.event, Event::FileTouched(_))) {
        let a = r.event.scope().attempt;
        if a.is_some() && a != attempt {
            attempt = a;
            let _ = writeln!(out, "\n── attempt {} ──", a.unwrap_or_default());
        }
        let _ = writeln!(out, "{:>6} {}  {}", r.seq, short_time(r.time_us / 1000), event_summary(&r.event));
        match &r.event {
            Event::CheckFinished(c) if !c.passed => {
                for l in c.output_tail.trim_end().lines().rev().take(8).collect::<Vec<_>>().into_iter().rev() {
                    let _ = writeln!(out, "{:>21}│ {l}", "");
                }
            }
            Event::Decided(d) if !d.feedback.is_empty() && d.decision.as_str() != "proceed" => {
                let _ =
                    writeln!(out, "{:>21}  feedback for the next attempt: {} line(s)", "", d.feedback.lines().count());
            }
            _ => {}
        }
    }
    visible(out)
}

/// Per-project totals for `orch-log stats`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ProjectStats {
    /// Tasks by state.
    pub states: BTreeMap<String, u64>,
    /// Attempts started.
    pub attempts: u64,
    /// Agent wall time.
    pub agent_ms: u64,
    /// Checks run.
    pub checks: u64,
    /// Checks failed.
    pub checks_failed: u64,
    /// Files changed.
    pub files_changed: u64,
    /// Tokens reported by agents (input + output).
    pub tokens: u64,
    /// Cost reported by agents, USD.
    pub cost_usd: f64,
}

/// Per-project stats from the state and a scan of the events.
pub fn stats(state: &State, records: impl Iterator<Item = EventRecord>) -> BTreeMap<String, ProjectStats> {
    let mut out: BTreeMap<String, ProjectStats> =
        state.projects.keys().map(|p| (p.clone(), ProjectStats::default())).collect();
    for (k, v) in &state.tasks {
        *out.entry(k.project.clone()).or_default().states.entry(v.state.as_str().into()).or_default() += 1;
    }
    for r in records {
        let Some(p) = r.event.scope().project.map(str::to_string) else { continue };
        let s = out.entry(p).or_default();
        match &r.event {
            Event::AttemptStarted(_) => s.attempts += 1,
            Event::AgentExited(x) => {
                s.agent_ms = s.agent_ms.saturating_add(x.duration_ms);
                if let Some(r) = &x.report {
                    s.tokens = s.tokens.saturating_add(r.total_tokens());
                    s.cost_usd += r.cost_usd;
                }
            }
            Event::CheckFinished(c) => {
                s.checks += 1;
                if !c.passed {
                    s.checks_failed += 1;
                }
            }
            Event::FileChanged(_) => s.files_changed += 1,
            _ => {}
        }
    }
    out
}

/// `orch-log stats --json`.
pub fn stats_json(stats: &BTreeMap<String, ProjectStats>) -> Value {
    json!({"projects": stats.iter().map(|(name, s)| json!({
        "name": name,
        "tasks": s.states,
        "attempts": s.attempts,
        "agent_seconds": s.agent_ms as f64 / 1000.0,
        "checks": s.checks,
        "checks_failed": s.checks_failed,
        "files_changed": s.files_changed,
        "tokens": s.tokens,
        "cost_usd": s.cost_usd,
    })).collect::<Vec<_>>()})
}

/// `orch-log stats`.
pub fn stats_text(stats: &BTreeMap<String, ProjectStats>) -> String {
    let mut out = String::new();
    for (name, s) in stats {
        let states: Vec<String> = s.states.iter().map(|(k, n)| format!("{n} {k}")).collect();
        let _ = writeln!(out, "{name}");
        let _ = writeln!(out, "  tasks:      {}", if states.is_empty() { "none".into() } else { states.join(", ") });
        let _ = writeln!(out, "  attempts:   {}", s.attempts);
        let _ = writeln!(out, "  agent time: {:.1} s", s.agent_ms as f64 / 1000.0);
        let _ = writeln!(out, "  checks:     {} run, {} failed", s.checks, s.checks_failed);
        let _ = writeln!(out, "  files:      {} changed", s.files_changed);
        let _ = writeln!(out, "  tokens:     {}", s.tokens);
        let _ = writeln!(out, "  cost:       ${:.4}", s.cost_usd);
    }
    if stats.is_empty() {
        out.push_str("no projects yet\n");
    }
    visible(out)
}

/// Text for a terminal, with nothing in it that a terminal would act on: control characters (escape sequences
/// — OSC 52 clipboard writes, titles, screen clears —, carriage returns, backspaces, bells; C1 controls) and the
/// invisible bidirectional overrides are shown escaped, as `\u{1b}`. What agents print reaches the user this way;
/// only line breaks and tabs pass as they are.
pub fn visible(s: String) -> String {
    let acts = |c: char| {
        (c.is_control() && c != '\n' && c != '\t') || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !s.chars().any(acts) {
        return s;
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if acts(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::visible;

    #[test]
    fn what_a_terminal_would_act_on_is_shown_escaped() {
        let osc52 = "copied \u{1b}]52;c;ZWNobyBwd25lZA==\u{7}done".to_string();
        assert_eq!(visible(osc52), "copied \\u{1b}]52;c;ZWNobyBwd25lZA==\\u{7}done");
        assert_eq!(visible("\u{1b}[2J\u{1b}[H".into()), "\\u{1b}[2J\\u{1b}[H");
        assert_eq!(visible("a\rb\u{8}c\u{9b}31m".into()), "a\\u{d}b\\u{8}c\\u{9b}31m");
        assert_eq!(visible("user\u{202e}gnp.exe".into()), "user\\u{202e}gnp.exe");
        let plain = "line one\n\tindented — ünïcode ✓\n".to_string();
        assert_eq!(visible(plain.clone()), plain);
    }
}
