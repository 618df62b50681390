//! From the merged file to the engine's typed [`Settings`], a section at a time. Here are the conversions that need
//! the file (strings to kinds, relative paths, the workspace on disk, the LLM key from the environment given, the
//! prompt templates) and their errors at the value's line; the domain rules are the engine's own
//! ([`Settings::validate`]), mapped back to the line by the loader.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use orch_actors::settings::{
    AgentKind, AgentSettings, Breakpoints, ConfidenceWeights, DecisionSettings, Durability, Isolation, JournalSettings,
    JudgementSettings, LlmProviderKind, LlmSettings, NotifySettings, OrchestrationSettings, ProjectSettings,
    PromptTemplates, SandboxSettings, Settings, TaskJudgement, ATTEMPT_PLACEHOLDERS,
};
use orch_actors::TaskSpec;
use toml::Spanned;

use super::error::{ConfigError, Origin};
use super::file::*;

/// What a resolve is given besides the file: where it came from, the directory relative paths start from, the
/// environment, and the program that is claude's hook.
pub struct Context<'a> {
    pub origin: &'a Origin,
    pub base: &'a Path,
    pub env: &'a [(String, String)],
    pub helper: Option<PathBuf>,
}

impl Context<'_> {
    /// A path of the config, relative to the config file's directory.
    fn path(&self, p: &str) -> PathBuf {
        let path = PathBuf::from(p);
        if path.is_absolute() {
            path
        } else {
            self.base.join(path)
        }
    }

    /// A program given with a slash is a path relative to the config file; a bare name is looked up on PATH.
    fn program(&self, program: &str) -> String {
        if program.contains('/') {
            self.path(program).display().to_string()
        } else {
            program.to_string()
        }
    }
}

/// The whole file.
pub fn settings(file: &FileConfig, cx: &Context<'_>) -> Result<Settings, ConfigError> {
    let agent = agent(&file.agent, cx)?;
    let projects =
        file.projects.iter().filter(|p| p.enabled).map(|p| project(p, &agent, cx)).collect::<Result<_, _>>()?;
    dependencies(&file.projects, cx.origin)?;
    Ok(Settings {
        journal: journal(&file.journal, cx)?,
        llm: llm(&file.llm, cx)?,
        orchestration: orchestration(&file.orchestration, &file.prompts, cx)?,
        projects,
        notify: notify(&file.notify),
    })
}

/// The error of a configuration whose LLM needs a key from a variable that is not set: for the commands that call
/// the LLM (`orch run`); the others never read the key.
pub fn llm_key_missing(settings: &Settings, l: &FileLlm, cx: &Context<'_>) -> Option<ConfigError> {
    let var = l.api_key_env.get_ref();
    (settings.llm.provider != LlmProviderKind::None && !var.is_empty() && settings.llm.api_key.is_none()).then(|| {
        cx.origin.at(&l.api_key_env, "llm.api_key_env", format!("the environment variable `{var}` it names is not set"))
    })
}

/// Reads `sync` or `batch`.
pub fn durability(s: &str) -> Option<Durability> {
    match s {
        "sync" => Some(Durability::Sync),
        "batch" => Some(Durability::Batch),
        _ => None,
    }
}

fn journal(j: &FileJournal, cx: &Context<'_>) -> Result<JournalSettings, ConfigError> {
    let durability = durability(j.durability.get_ref()).ok_or_else(|| {
        cx.origin.at(
            &j.durability,
            "journal.durability",
            format!("`{}` is not a durability: use \"sync\" or \"batch\"", j.durability.get_ref()),
        )
    })?;
    Ok(JournalSettings { path: cx.path(&j.path), durability })
}

fn llm(l: &FileLlm, cx: &Context<'_>) -> Result<LlmSettings, ConfigError> {
    let provider = match l.provider.get_ref().as_str() {
        "none" => LlmProviderKind::None,
        "ollama" => LlmProviderKind::Ollama,
        "openai" => LlmProviderKind::OpenAi,
        other => {
            return Err(cx.origin.at(
                &l.provider,
                "llm.provider",
                format!("`{other}` is not a provider: use \"none\", \"ollama\" or \"openai\""),
            ))
        }
    };
    // The environment this load was given (the process's for the binaries), never read behind its back. Unset,
    // it matters only to a command that calls the LLM: see `llm_key_missing`.
    let var = l.api_key_env.get_ref();
    let api_key =
        cx.env.iter().find(|(k, _)| !var.is_empty() && k == var).map(|(_, v)| v.clone()).filter(|k| !k.is_empty());
    Ok(LlmSettings {
        provider,
        model: l.model.clone(),
        base_url: l.base_url.clone(),
        temperature: l.temperature,
        timeout: Duration::from_secs(l.timeout_secs),
        max_concurrent: l.max_concurrent,
        required: l.required,
        api_key,
        api_key_env: var.clone(),
        max_retries: l.max_retries,
    })
}

fn agent_kind(s: &str) -> Option<AgentKind> {
    match s {
        "claude-code" => Some(AgentKind::ClaudeCode),
        "aider" => Some(AgentKind::Aider),
        "command" => Some(AgentKind::Command),
        _ => None,
    }
}

fn kind(k: &Spanned<String>, key: &str, cx: &Context<'_>) -> Result<AgentKind, ConfigError> {
    agent_kind(k.get_ref()).ok_or_else(|| {
        cx.origin.at(
            k,
            key,
            format!("`{}` is not an agent kind: use \"claude-code\", \"aider\" or \"command\"", k.get_ref()),
        )
    })
}

fn agent(a: &FileAgent, cx: &Context<'_>) -> Result<AgentSettings, ConfigError> {
    Ok(AgentSettings {
        kind: kind(&a.kind, "agent.kind", cx)?,
        program: cx.program(&a.program),
        args: a.args.clone(),
        timeout: Duration::from_secs(a.timeout_secs),
        idle_timeout: Duration::from_secs(a.idle_timeout_secs),
        env: a.env.clone(),
        sandbox: SandboxSettings {
            mode: a.sandbox,
            writable: a.writable.iter().map(|w| cx.path(w)).collect(),
            required: a.sandbox_required,
        },
        helper: cx.helper.clone(),
    })
}

/// The default agent with a project's overrides.
fn agent_override(
    default: &AgentSettings,
    ov: &FileAgentOverride,
    cx: &Context<'_>,
) -> Result<AgentSettings, ConfigError> {
    let mut agent = default.clone();
    if let Some(k) = &ov.kind {
        agent.kind = kind(k, "projects.agent.kind", cx)?;
    }
    if let Some(prog) = &ov.program {
        agent.program = cx.program(prog);
    }
    if let Some(a) = &ov.args {
        agent.args = a.clone();
    }
    if let Some(t) = ov.timeout_secs {
        agent.timeout = Duration::from_secs(t);
    }
    if let Some(t) = ov.idle_timeout_secs {
        agent.idle_timeout = Duration::from_secs(t);
    }
    if let Some(env) = &ov.env {
        agent.env.extend(env.clone());
    }
    if let Some(mode) = ov.sandbox {
        agent.sandbox.mode = mode;
    }
    if let Some(w) = &ov.writable {
        agent.sandbox.writable = w.iter().map(|w| cx.path(w)).collect();
    }
    if let Some(r) = ov.sandbox_required {
        agent.sandbox.required = r;
    }
    Ok(agent)
}

fn orchestration(
    o: &FileOrchestration,
    prompts: &FilePrompts,
    cx: &Context<'_>,
) -> Result<OrchestrationSettings, ConfigError> {
    let b = &o.breakpoints;
    let c = &o.confidence;
    let max_wait = *o.max_wait_secs.get_ref();
    if !(max_wait.is_finite() && max_wait > 0.0) {
        return Err(cx.origin.at(
            &o.max_wait_secs,
            "orchestration.max_wait_secs",
            "must be a positive number of seconds",
        ));
    }
    let mut provider_max_sessions = BTreeMap::new();
    for (provider, n) in &o.provider_max_sessions {
        if agent_kind(provider).is_none() {
            return Err(cx.origin.at(
                n,
                "orchestration.provider_max_sessions",
                format!("`{provider}` is not an agent provider: use \"claude-code\", \"aider\" or \"command\""),
            ));
        }
        provider_max_sessions.insert(provider.clone(), *n.get_ref());
    }
    Ok(OrchestrationSettings {
        max_sessions: o.max_sessions,
        max_attempts: o.max_attempts,
        decision: DecisionSettings {
            high_confidence: *o.decision.high_confidence.get_ref(),
            medium_confidence: *o.decision.medium_confidence.get_ref(),
        },
        confidence: ConfidenceWeights {
            checks: *c.checks.get_ref(),
            validation: *c.validation.get_ref(),
            changes: *c.changes.get_ref(),
            attempt: *c.attempt.get_ref(),
            llm_review: *c.llm_review.get_ref(),
            scope: *c.scope.get_ref(),
        },
        confidence_threshold: *b.confidence_threshold.get_ref(),
        breakpoints: Breakpoints {
            consecutive_failures: b.consecutive_failures,
            max_deleted_files: b.max_deleted_files,
            max_changed_files: b.max_changed_files,
            allowed_paths: b.allowed_paths.get_ref().clone(),
            task_token_budget: b.task_token_budget,
            task_cost_budget_usd: *b.task_cost_budget_usd.get_ref(),
            project_token_budget: b.project_token_budget,
            project_cost_budget_usd: *b.project_cost_budget_usd.get_ref(),
            run_token_budget: b.run_token_budget,
            run_cost_budget_usd: *b.run_cost_budget_usd.get_ref(),
            on_rate_limit: b.on_rate_limit,
        },
        prompts: prompt_templates(prompts, cx)?,
        prompt_token_budget: o.prompt_token_budget,
        output_tail_bytes: o.output_tail_bytes.max(256),
        provider_max_sessions,
        rate_limit_pause: Duration::from_secs(o.rate_limit_pause_secs),
        max_wait: Duration::from_secs_f64(max_wait),
        containment: o.containment,
    })
}

fn notify(n: &FileNotify) -> NotifySettings {
    NotifySettings {
        command: n.command.clone(),
        webhook: n.webhook.get_ref().clone(),
        timeout: Duration::from_secs(n.timeout_secs),
    }
}

fn project(p: &FileProject, default_agent: &AgentSettings, cx: &Context<'_>) -> Result<ProjectSettings, ConfigError> {
    let origin = cx.origin;
    let name = p.name.get_ref();
    let agent = agent_override(default_agent, &p.agent, cx)?;
    let workspace = cx.path(p.workspace.get_ref());
    if !workspace.is_dir() && !p.create_workspace {
        return Err(origin.at(
            &p.workspace,
            "projects.workspace",
            format!("{} is not a directory (set create_workspace = true to have orch create it)", workspace.display()),
        ));
    }
    if *p.isolation.get_ref() == Isolation::Worktree && !orch_actors::is_repository(&workspace) {
        return Err(origin.at(
            &p.isolation,
            "projects.isolation",
            format!(
                "`worktree` needs a git repository with a commit, and {} is not one (git init, commit, or use \"none\")",
                workspace.display()
            ),
        ));
    }
    let mut judgement = JudgementSettings {
        protected: p.protected.as_ref().map(|g| g.get_ref().clone()),
        scope: p.scope.get_ref().clone(),
        ..JudgementSettings::default()
    };
    let mut tasks = Vec::new();
    for t in &p.tasks {
        let id = t.id.get_ref();
        let pr = *t.priority.get_ref();
        let priority = u8::try_from(pr)
            .map_err(|_| origin.at(&t.priority, "projects.tasks.priority", format!("{pr} is outside 1 ..= 10")))?;
        if !t.scope.get_ref().is_empty() || !t.may_change.get_ref().is_empty() {
            judgement.tasks.insert(
                id.clone(),
                TaskJudgement { scope: t.scope.get_ref().clone(), may_change: t.may_change.get_ref().clone() },
            );
        }
        let title = t.title.get_ref().clone();
        tasks.push(TaskSpec {
            project: name.clone(),
            id: id.clone(),
            description: if t.description.is_empty() { title.clone() } else { t.description.clone() },
            title,
            priority,
            depends_on: t.depends_on.iter().map(|d| d.get_ref().clone()).collect(),
            acceptance: t.acceptance.clone(),
        });
    }
    Ok(ProjectSettings {
        name: name.clone(),
        workspace,
        create_workspace: p.create_workspace,
        checks: p.checks.clone(),
        check_timeout: Duration::from_secs(p.check_timeout_secs),
        max_sessions: *p.max_sessions.get_ref(),
        agent,
        tasks,
        on_retry: p.on_retry,
        isolation: *p.isolation.get_ref(),
        merge: *p.merge.get_ref(),
        judgement,
    })
}

/// Dependencies name tasks that exist in the config (the journal may know more: checked again at run time).
fn dependencies(projects: &[FileProject], origin: &Origin) -> Result<(), ConfigError> {
    let known: HashSet<String> = projects
        .iter()
        .filter(|p| p.enabled)
        .flat_map(|p| p.tasks.iter().map(move |t| format!("{}/{}", p.name.get_ref(), t.id.get_ref())))
        .collect();
    for p in projects.iter().filter(|p| p.enabled) {
        for t in &p.tasks {
            for d in &t.depends_on {
                let full = if d.get_ref().contains('/') {
                    d.get_ref().clone()
                } else {
                    format!("{}/{}", p.name.get_ref(), d.get_ref())
                };
                if !known.contains(&full) {
                    return Err(origin.at(
                        d,
                        "projects.tasks.depends_on",
                        format!("no task `{full}` in the configuration"),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Reads the prompt templates the config names (relative to it), checking the attempt template's placeholders.
fn prompt_templates(p: &FilePrompts, cx: &Context<'_>) -> Result<PromptTemplates, ConfigError> {
    let mut t = PromptTemplates::default();
    let read = |v: &Spanned<String>, key: &str| -> Result<Option<(PathBuf, String)>, ConfigError> {
        if v.get_ref().is_empty() {
            return Ok(None);
        }
        let path = cx.path(v.get_ref());
        std::fs::read_to_string(&path)
            .map(|s| Some((path.clone(), s)))
            .map_err(|e| cx.origin.at(v, key, format!("cannot read {}: {e}", path.display())))
    };
    if let Some((path, template)) = read(&p.attempt, "prompts.attempt")? {
        let used = orch_actors::prompt::placeholders(&template);
        for (name, line) in &used {
            if !ATTEMPT_PLACEHOLDERS.contains(&name.as_str()) {
                return Err(ConfigError {
                    source: path.display().to_string(),
                    line: Some(*line),
                    column: None,
                    key: Some("prompts.attempt".into()),
                    message: format!(
                        "unknown placeholder {{{name}}}; known: {}",
                        ATTEMPT_PLACEHOLDERS.map(|n| format!("{{{n}}}")).join(" ")
                    ),
                });
            }
        }
        if !used.iter().any(|(n, _)| n == "description") {
            return Err(cx.origin.at(
                &p.attempt,
                "prompts.attempt",
                format!("{} has no {{description}}: the task's description must reach the agent", path.display()),
            ));
        }
        t.attempt = template;
    }
    if let Some((_, s)) = read(&p.review, "prompts.review")? {
        t.review_system = s.trim().to_string();
    }
    if let Some((_, s)) = read(&p.clarify, "prompts.clarify")? {
        t.clarify_system = s.trim().to_string();
    }
    Ok(t)
}

/// Maps an engine rule's error back to the value it is about: a project's or a task's key at its line (the last
/// project or task of that name, which is the second of two), else the dotted key.
pub fn locate(e: orch_actors::validate::Invalid, file: &FileConfig, origin: &Origin) -> ConfigError {
    let project = e.project.as_deref().and_then(|name| file.projects.iter().rev().find(|p| p.name.get_ref() == name));
    let task = project.zip(e.task.as_deref()).and_then(|(p, id)| p.tasks.iter().rev().find(|t| t.id.get_ref() == id));
    let span = match (project, task) {
        (_, Some(t)) => Some(match e.key.as_str() {
            "projects.tasks.priority" => t.priority.span(),
            "projects.tasks.title" => t.title.span(),
            "projects.tasks.scope" => t.scope.span(),
            "projects.tasks.may_change" => t.may_change.span(),
            "projects.tasks.depends_on" => t.depends_on.first().map(Spanned::span).unwrap_or(t.id.span()),
            _ => t.id.span(),
        }),
        (Some(p), None) => Some(match e.key.as_str() {
            "projects.workspace" => p.workspace.span(),
            "projects.max_sessions" => p.max_sessions.span(),
            "projects.protected" => p.protected.as_ref().map(Spanned::span).unwrap_or(p.name.span()),
            "projects.scope" => p.scope.span(),
            "projects.merge" => p.merge.span(),
            "projects.isolation" => p.isolation.span(),
            _ => p.name.span(),
        }),
        (None, None) => None,
    };
    match span {
        // A defaulted value has no line: the project or task it belongs to does.
        Some(s) if s.end > 0 => origin.at(&Spanned::new(s, ()), &e.key, e.message),
        Some(_) => {
            let at = task.map(|t| t.id.span()).or(project.map(|p| p.name.span())).unwrap_or(0..0);
            origin.at(&Spanned::new(at, ()), &e.key, e.message)
        }
        None => origin.key(&e.key, e.message),
    }
}
