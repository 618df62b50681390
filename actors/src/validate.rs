//! The domain rules of settings and tasks, held by the engine itself: whoever hands it settings or a task — the
//! config file, the CLI, the control socket, an embedder — gets the same checks. The edge (`orch`'s config loader)
//! maps an [`Invalid`] back to the file, line and key it came from.

use std::collections::HashSet;
use std::time::Duration;

use crate::settings::{Isolation, MergeMode, ProjectSettings, Settings};
use crate::types::TaskSpec;

/// What is wrong, and which setting (dotted, as in the config file) it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct Invalid {
    /// The setting, dotted (`projects.tasks.id`); for a project or task, its name is in the message too.
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// The project it is about, if it is about one.
    pub project: Option<String>,
    /// The task it is about (in [`Invalid::project`]), if it is about one.
    pub task: Option<String>,
}

fn invalid(key: &str, message: impl Into<String>) -> Invalid {
    Invalid { key: key.to_string(), message: message.into(), project: None, task: None }
}

impl Invalid {
    fn about(mut self, project: &str, task: Option<&str>) -> Self {
        self.project.get_or_insert_with(|| project.to_string());
        if let Some(t) = task {
            self.task.get_or_insert_with(|| t.to_string());
        }
        self
    }
}

/// The longest id or name (it becomes a path component and a branch name).
pub const MAX_ID: usize = 128;
/// The longest task title.
pub const MAX_TITLE: usize = 1024;
/// The longest task description, or acceptance criterion.
pub const MAX_TEXT: usize = 256 * 1024;
/// The longest limit of a wall clock (a week): longer is a typo, and would overflow deadlines.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Whether `s` can name a project or a task: letters, digits, `-`, `_`, `.`, not starting with a dot, at most
/// [`MAX_ID`] bytes. It becomes a directory and a git branch name, so nothing that could leave one.
pub fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID
        && !s.starts_with('.')
        && !s.ends_with(".lock")
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn id(key: &str, what: &str, s: &str) -> Result<(), Invalid> {
    if valid_id(s) {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!(
                "{what} `{}` is not a valid id (letters, digits, `-`, `_`, `.`; not starting with a dot; at most \
                 {MAX_ID} bytes)",
                crate::redact::head(s, 200)
            ),
        ))
    }
}

fn duration(key: &str, d: Duration) -> Result<(), Invalid> {
    if d.is_zero() || d > MAX_DURATION {
        return Err(invalid(key, format!("{} s is outside 1 s ..= {} s", d.as_secs(), MAX_DURATION.as_secs())));
    }
    Ok(())
}

fn unit(key: &str, v: f64) -> Result<(), Invalid> {
    if !(0.0..=1.0).contains(&v) {
        return Err(invalid(key, format!("{v} is outside 0 ..= 1")));
    }
    Ok(())
}

fn globs(key: &str, globs: &[String]) -> Result<(), Invalid> {
    for g in globs {
        crate::judge::paths::glob(g).map_err(|e| invalid(key, e))?;
    }
    Ok(())
}

/// Checks a task as it is given (config, CLI, socket, API): its ids, priority, and the length of its texts.
pub fn task(spec: &TaskSpec) -> Result<(), Invalid> {
    task_rules(spec).map_err(|e| e.about(&spec.project, Some(&spec.id)))
}

fn task_rules(spec: &TaskSpec) -> Result<(), Invalid> {
    id("projects.name", "project", &spec.project)?;
    id("projects.tasks.id", "task", &spec.id)?;
    if !(1..=10).contains(&spec.priority) {
        return Err(invalid("projects.tasks.priority", format!("{} is outside 1 ..= 10", spec.priority)));
    }
    if spec.title.trim().is_empty() {
        return Err(invalid("projects.tasks.title", format!("task `{}` has an empty title", spec.id)));
    }
    if spec.title.len() > MAX_TITLE {
        return Err(invalid("projects.tasks.title", format!("{} bytes, more than {MAX_TITLE}", spec.title.len())));
    }
    if spec.description.len() > MAX_TEXT || spec.acceptance.iter().any(|a| a.len() > MAX_TEXT) {
        return Err(invalid(
            "projects.tasks.description",
            format!("a text of task `{}` is over {MAX_TEXT} bytes", spec.id),
        ));
    }
    for d in &spec.depends_on {
        let (project, task) = d.split_once('/').unwrap_or((spec.project.as_str(), d.as_str()));
        if !valid_id(project) || !valid_id(task) {
            return Err(invalid(
                "projects.tasks.depends_on",
                format!("`{}` names no task", crate::redact::head(d, 200)),
            ));
        }
        if project == spec.project && task == spec.id {
            return Err(invalid("projects.tasks.depends_on", format!("task `{}` depends on itself", spec.id)));
        }
    }
    Ok(())
}

/// Checks one project's settings and its configured tasks.
pub fn project(p: &ProjectSettings) -> Result<(), Invalid> {
    project_rules(p).map_err(|e| e.about(&p.name, None))
}

fn project_rules(p: &ProjectSettings) -> Result<(), Invalid> {
    id("projects.name", "project", &p.name)?;
    if p.workspace.as_os_str().is_empty() {
        return Err(invalid("projects.workspace", format!("project `{}` has no workspace", p.name)));
    }
    if p.max_sessions == 0 {
        return Err(invalid("projects.max_sessions", format!("project `{}`: must be at least 1", p.name)));
    }
    duration("projects.check_timeout_secs", p.check_timeout)?;
    duration("agent.timeout_secs", p.agent.timeout)?;
    duration("agent.idle_timeout_secs", p.agent.idle_timeout)?;
    if p.agent.program.trim().is_empty() {
        return Err(invalid("agent.program", format!("project `{}`: the agent program is empty", p.name)));
    }
    if p.merge != MergeMode::None && p.isolation != Isolation::Worktree {
        return Err(invalid("projects.merge", "merge applies to isolation = \"worktree\" only"));
    }
    if let Some(protected) = &p.judgement.protected {
        globs("projects.protected", protected)?;
    }
    globs("projects.scope", &p.judgement.scope)?;
    let mut ids = HashSet::new();
    for t in &p.tasks {
        if t.project != p.name {
            return Err(invalid(
                "projects.tasks",
                format!("task `{}` belongs to `{}`, not `{}`", t.id, t.project, p.name),
            ));
        }
        task(t)?;
        if !ids.insert(t.id.as_str()) {
            return Err(invalid(
                "projects.tasks.id",
                format!("task `{}` is defined twice in project `{}`", t.id, p.name),
            )
            .about(&p.name, Some(&t.id)));
        }
    }
    for (id, rules) in &p.judgement.tasks {
        globs("projects.tasks.scope", &rules.scope)
            .map_err(|e| Invalid { message: format!("task `{id}`: {}", e.message), ..e }.about(&p.name, Some(id)))?;
        globs("projects.tasks.may_change", &rules.may_change)
            .map_err(|e| Invalid { message: format!("task `{id}`: {}", e.message), ..e }.about(&p.name, Some(id)))?;
    }
    Ok(())
}

impl Settings {
    /// Every domain rule of the engine's settings: ids, counts, limits, thresholds, weights, globs, tasks.
    /// [`crate::Orchestrator::start`] calls it; so can an embedder before that.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.journal.path.as_os_str().is_empty() {
            return Err(invalid("journal.path", "is empty"));
        }
        let o = &self.orchestration;
        if o.max_sessions == 0 {
            return Err(invalid("orchestration.max_sessions", "must be at least 1"));
        }
        if o.max_attempts == 0 {
            return Err(invalid("orchestration.max_attempts", "must be at least 1"));
        }
        for (provider, n) in &o.provider_max_sessions {
            if *n == 0 {
                return Err(invalid(
                    "orchestration.provider_max_sessions",
                    format!("`{provider}`: must be at least 1"),
                ));
            }
        }
        unit("orchestration.decision.high_confidence", o.decision.high_confidence)?;
        unit("orchestration.decision.medium_confidence", o.decision.medium_confidence)?;
        if o.decision.medium_confidence > o.decision.high_confidence {
            return Err(invalid("orchestration.decision.medium_confidence", "is above high_confidence"));
        }
        unit("orchestration.breakpoints.confidence_threshold", o.confidence_threshold)?;
        let w = &o.confidence;
        let weights = [w.checks, w.validation, w.changes, w.attempt, w.llm_review, w.scope];
        if weights.iter().any(|x| !x.is_finite() || *x < 0.0) {
            return Err(invalid("orchestration.confidence", "weights must be finite and not negative"));
        }
        if weights.iter().sum::<f64>() <= 0.0 {
            return Err(invalid("orchestration.confidence", "the weights add up to 0"));
        }
        let bp = &o.breakpoints;
        for (key, v) in [
            ("task_cost_budget_usd", bp.task_cost_budget_usd),
            ("project_cost_budget_usd", bp.project_cost_budget_usd),
            ("run_cost_budget_usd", bp.run_cost_budget_usd),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(invalid(&format!("orchestration.breakpoints.{key}"), format!("{v} is not a budget")));
            }
        }
        globs("orchestration.breakpoints.allowed_paths", &bp.allowed_paths)?;
        if o.prompt_token_budget < 256 {
            return Err(invalid("orchestration.prompt_token_budget", "must be at least 256"));
        }
        if o.output_tail_bytes == 0 {
            return Err(invalid("orchestration.output_tail_bytes", "must be at least 1"));
        }
        duration("orchestration.rate_limit_pause_secs", o.rate_limit_pause)?;
        if o.max_wait > MAX_DURATION {
            return Err(invalid("orchestration.max_wait_secs", "is longer than a week"));
        }
        let l = &self.llm;
        if !(0.0..=2.0).contains(&l.temperature) {
            return Err(invalid("llm.temperature", format!("{} is outside 0 ..= 2", l.temperature)));
        }
        duration("llm.timeout_secs", l.timeout)?;
        if l.max_concurrent == 0 {
            return Err(invalid("llm.max_concurrent", "must be at least 1"));
        }
        let mut names = HashSet::new();
        for p in &self.projects {
            project(p)?;
            if !names.insert(p.name.as_str()) {
                return Err(
                    invalid("projects.name", format!("project `{}` is defined twice", p.name)).about(&p.name, None)
                );
            }
        }
        let n = &self.notify;
        if !(n.webhook.is_empty() || n.webhook.starts_with("http://") || n.webhook.starts_with("https://")) {
            return Err(invalid("notify.webhook", format!("`{}` is not an http:// or https:// URL", n.webhook)));
        }
        if n.enabled() {
            duration("notify.timeout_secs", n.timeout)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::*;

    fn settings() -> Settings {
        Settings {
            notify: Default::default(),
            journal: JournalSettings { path: "/j".into(), durability: Durability::Batch },
            llm: LlmSettings::default(),
            orchestration: OrchestrationSettings::default(),
            projects: vec![ProjectSettings::new("p", "/w", AgentSettings::command("sh", vec![]))],
        }
    }

    fn spec(id: &str) -> TaskSpec {
        TaskSpec {
            project: "p".into(),
            id: id.into(),
            title: "T".into(),
            description: String::new(),
            priority: 5,
            depends_on: vec![],
            acceptance: vec![],
        }
    }

    #[test]
    fn ids_that_could_leave_a_directory_or_a_branch_are_refused() {
        for bad in ["../x", "..", ".hidden", "a/b", "", "x.lock", &"a".repeat(200), "sp ace"] {
            assert!(task(&spec(bad)).is_err(), "{bad:?}");
        }
        for good in ["add-health", "v1.2", "T_3"] {
            assert_eq!(task(&spec(good)), Ok(()), "{good}");
        }
        let long = TaskSpec { title: "x".repeat(MAX_TITLE + 1), ..spec("t") };
        assert_eq!(task(&long).map_err(|e| e.key), Err("projects.tasks.title".to_string()));
        let own = TaskSpec { depends_on: vec!["t".into()], ..spec("t") };
        assert!(task(&own).is_err());
    }

    #[test]
    fn the_engine_checks_its_own_settings() {
        assert_eq!(settings().validate(), Ok(()));
        let mut s = settings();
        s.orchestration.max_sessions = 0;
        assert_eq!(s.validate().map_err(|e| e.key), Err("orchestration.max_sessions".to_string()));
        let mut s = settings();
        s.projects[0].agent.timeout = Duration::from_secs(u64::MAX);
        assert_eq!(s.validate().map_err(|e| e.key), Err("agent.timeout_secs".to_string()));
        let mut s = settings();
        s.projects[0].judgement.protected = Some(vec!["tests/[".into()]);
        assert_eq!(s.validate().map_err(|e| e.key), Err("projects.protected".to_string()));
        let mut s = settings();
        s.orchestration.decision.medium_confidence = 0.9;
        assert!(s.validate().is_err());
        let mut s = settings();
        s.projects.push(s.projects[0].clone());
        assert!(s.validate().is_err_and(|e| e.message.contains("defined twice")));
    }
}
