//! The agent's sandbox: Landlock, writes allowed only beneath the workspace (or worktree), the attempt's private
//! temporary directory, the state its kind of agent needs, and what the user adds; reads stay unrestricted.
//!
//! Landlock restricts the calling thread and what it starts, so the agent is spawned from a thread of its own that
//! enters the restriction first ([`crate::process::run`] with a sandbox); orch itself is never restricted. [`probe`]
//! tells at start whether the kernel enforces it, the same way, on a throwaway thread.

use std::path::{Path, PathBuf};

use landlock::{
    path_beneath_rules, AccessFs, CompatLevel, Compatible, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, ABI,
};

/// The newest Landlock ABI orch asks for; older kernels get what they support (best effort), and [`probe`] says
/// how much that is.
const WANTED: ABI = ABI::V7;

/// How far the kernel enforces the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Support {
    /// Every restriction orch asks for.
    Full,
    /// Some of them (an older Landlock ABI).
    Partial,
    /// None: the kernel has no Landlock, or it is disabled. The reason.
    Unavailable(String),
}

fn ruleset() -> Result<landlock::RulesetCreated, String> {
    Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_write(WANTED))
        .and_then(|r| r.create())
        .map_err(|e| e.to_string())
}

/// Restricts the calling thread (and everything it starts) to writing beneath `writable`; `/dev` stays writable
/// (the null device, terminals). Paths that do not exist are skipped. Meant for a thread about to spawn the agent
/// and end.
pub fn enter(writable: &[PathBuf]) -> Result<Support, String> {
    let mut paths: Vec<&Path> = writable.iter().map(PathBuf::as_path).filter(|p| p.exists()).collect();
    paths.push(Path::new("/dev"));
    let status = ruleset()?
        .add_rules(path_beneath_rules(paths, AccessFs::from_write(WANTED)))
        .and_then(|r| r.restrict_self())
        .map_err(|e| e.to_string())?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => Support::Full,
        RulesetStatus::PartiallyEnforced => Support::Partial,
        RulesetStatus::NotEnforced => Support::Unavailable("the kernel does not enforce Landlock".into()),
    })
}

/// Whether the kernel enforces the sandbox: a ruleset is entered on a throwaway thread (the restriction ends with
/// it) and its status read.
pub fn probe() -> Support {
    let probe = std::thread::spawn(|| -> Result<Support, String> {
        let status = ruleset()?.restrict_self().map_err(|e| e.to_string())?;
        Ok(match status.ruleset {
            RulesetStatus::FullyEnforced => Support::Full,
            RulesetStatus::PartiallyEnforced => Support::Partial,
            RulesetStatus::NotEnforced => Support::Unavailable(
                "this kernel has no Landlock (or it is disabled): agents run without a sandbox".into(),
            ),
        })
    });
    match probe.join() {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => Support::Unavailable(format!("Landlock could not be set up: {e}")),
        Err(_) => Support::Unavailable("the Landlock probe failed".into()),
    }
}

/// What an agent of this kind needs to write besides its workspace and temporary directory, under its `home`:
/// claude keeps its sessions and settings in `~/.claude` and `~/.claude.json` (written through a temporary file
/// beside it, so the home directory's own entries must be creatable); aider its history and cache.
pub fn agent_state(kind: crate::settings::AgentKind, home: Option<&Path>) -> Vec<PathBuf> {
    let Some(home) = home else { return Vec::new() };
    match kind {
        crate::settings::AgentKind::ClaudeCode => {
            vec![home.join(".claude"), home.join(".claude.json"), home.join(".cache"), home.join(".npm")]
        }
        crate::settings::AgentKind::Aider => {
            vec![home.join(".aider"), home.join(".cache"), home.join(".aider.chat.history.md")]
        }
        crate::settings::AgentKind::Command => Vec::new(),
    }
}

/// What guards one attempt: its private directory (removed when this is dropped) holding its temporary directory,
/// the hook's rules and claude's settings.
pub struct AttemptGuard {
    dir: tempfile::TempDir,
    /// The attempt's temporary directory (`TMPDIR`).
    pub tmp: PathBuf,
    /// With the Landlock sandbox: where the agent may write.
    pub sandbox: Option<Vec<PathBuf>>,
    /// The environment the agent gets for its guards (`TMPDIR`).
    pub env: Vec<(String, String)>,
}

impl AttemptGuard {
    /// The private directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Prepares an attempt's guards around `invocation`: a private `TMPDIR`; for claude with a helper, the hook that
/// refuses edits of protected paths (`--settings`); with the Landlock sandbox, where the agent may write. Returns
/// the guard (with the environment to add) and the invocation to run.
pub fn prepare(
    project: &crate::settings::ProjectSettings,
    task: &crate::types::TaskSpec,
    mut invocation: crate::agent::Invocation,
) -> Result<(AttemptGuard, crate::agent::Invocation), String> {
    use crate::judge::{hook, paths};
    let dir = tempfile::Builder::new()
        .prefix("orch-attempt-")
        .tempdir()
        .map_err(|e| format!("the attempt's private directory: {e}"))?;
    let tmp = dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    let env = vec![("TMPDIR".to_string(), tmp.display().to_string())];
    let agent = &project.agent;
    let home = agent.env.get("HOME").map(PathBuf::from).or_else(|| std::env::var_os("HOME").map(PathBuf::from));
    let mut writable = vec![project.workspace.clone(), tmp.clone()];
    let state = agent_state(agent.kind, home.as_deref());
    // The agent's state directories must exist to be allowed (claude keeps its sessions there, for --resume).
    let landlock = agent.sandbox.mode == crate::settings::SandboxMode::Landlock;
    if landlock {
        for dir in state.iter().filter(|p| p.extension().is_none()) {
            let _ = std::fs::create_dir_all(dir);
        }
    }
    writable.extend(state);
    writable.extend(agent.sandbox.writable.iter().cloned());
    let sandbox = landlock.then(|| writable.clone());
    let Some(helper) = agent.helper.as_ref() else {
        return Ok((AttemptGuard { dir, tmp, env, sandbox }, invocation));
    };
    if agent.kind == crate::settings::AgentKind::ClaudeCode {
        let protection = paths::task_protection(project, &task.id, &crate::judge::task_text(task))?;
        let rules = hook::Rules {
            workspace: project.workspace.clone(),
            protected_files: hook::protected_files(&project.workspace, &protection, 100_000),
            patterns: protection.patterns.clone(),
            may_change: protection.may_change.clone(),
            allowed: writable.iter().skip(1).cloned().collect(),
            home: home.clone(),
        };
        let rules_path = dir.path().join("hook-rules.json");
        let settings_path = dir.path().join("claude-settings.json");
        let json = serde_json::to_vec(&rules).map_err(|e| e.to_string())?;
        std::fs::write(&rules_path, json).map_err(|e| format!("{}: {e}", rules_path.display()))?;
        let command = format!(
            "{} hook pre-tool-use {}",
            hook::sh_quote(&helper.display().to_string()),
            hook::sh_quote(&rules_path.display().to_string())
        );
        let settings = serde_json::to_vec(&hook::claude_settings(&command)).map_err(|e| e.to_string())?;
        std::fs::write(&settings_path, settings).map_err(|e| format!("{}: {e}", settings_path.display()))?;
        invocation.args.push("--settings".into());
        invocation.args.push(settings_path.display().to_string());
    }
    Ok((AttemptGuard { dir, tmp, env, sandbox }, invocation))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_answers_and_leaves_this_thread_free() {
        // Whatever the kernel, the probe answers; and this thread can still write anywhere afterwards.
        let _ = probe();
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("after-probe"), "ok").expect("still writable");
    }

    #[test]
    fn a_restricted_thread_writes_only_where_allowed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (inside, outside) = (dir.path().join("in"), dir.path().join("out"));
        std::fs::create_dir_all(&inside).expect("mkdir");
        std::fs::create_dir_all(&outside).expect("mkdir");
        let (i, o) = (inside.clone(), outside.clone());
        let result = std::thread::spawn(move || {
            let support = enter(std::slice::from_ref(&i)).expect("enter");
            (support, std::fs::write(i.join("f"), "x").is_ok(), std::fs::write(o.join("f"), "x").is_ok())
        })
        .join()
        .expect("thread");
        match result {
            (Support::Unavailable(_), _, _) => eprintln!("no Landlock on this kernel: the restriction is not tested"),
            (_, wrote_inside, wrote_outside) => {
                assert!(wrote_inside, "writing inside the allowed directory works");
                assert!(!wrote_outside, "writing outside is refused");
            }
        }
    }
}
