//! Git worktree isolation (`isolation = "worktree"`): each task of a project that is a git repository works in a
//! worktree of its own, on branch `orch/<project>/<task>`, under the journal directory; its accepted work is committed there
//! and, as `merge` says, brought to the branch checked out in the project's workspace. Every git command is a real
//! `git` process with a bounded wait; every failure is a message that says which command failed and why.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::settings::MergeMode;
use crate::types::TaskKey;

/// How long one git command may take.
const GIT_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the worktree of `key` lives: `<journal>/worktrees/<project>/<task>`.
pub fn worktree_path(journal: &Path, key: &TaskKey) -> PathBuf {
    journal.join("worktrees").join(&key.project).join(&key.task)
}

/// The branch of `key`'s worktree: the project is part of it, so two projects sharing a repository and a task id
/// do not collide.
pub fn branch(key: &TaskKey) -> String {
    format!("orch/{}/{}", key.project, key.task)
}

/// Runs `git ARGS` in `dir`; its trimmed stdout, or an error naming the command and what git said.
pub async fn git(dir: &Path, args: &[&str]) -> Result<String, String> {
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("-C").arg(dir).args(args).stdin(std::process::Stdio::null()).kill_on_drop(true);
    // A commit made by orch is orch's, whatever the user's git identity says (or lacks).
    cmd.env("GIT_AUTHOR_NAME", "orch")
        .env("GIT_AUTHOR_EMAIL", "orch@localhost")
        .env("GIT_COMMITTER_NAME", "orch")
        .env("GIT_COMMITTER_EMAIL", "orch@localhost")
        .env("GIT_TERMINAL_PROMPT", "0");
    let shown = format!("git {}", args.join(" "));
    let out = match tokio::time::timeout(GIT_TIMEOUT, cmd.output()).await {
        Err(_) => {
            return Err(format!("`{shown}` in {} did not finish within {} s", dir.display(), GIT_TIMEOUT.as_secs()))
        }
        Ok(Err(e)) => return Err(format!("cannot run `{shown}`: {e} (is git installed?)")),
        Ok(Ok(o)) => o,
    };
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let err = err.trim();
        Err(format!(
            "`{shown}` in {} failed: {}",
            dir.display(),
            if err.is_empty() { String::from_utf8_lossy(&out.stdout).trim().to_string() } else { err.to_string() }
        ))
    }
}

/// Whether `dir` is (inside) a git repository with at least one commit.
pub fn is_repository(dir: &Path) -> bool {
    std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "--verify", "--quiet", "HEAD"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Makes sure `key`'s worktree exists at `path`, on its branch — created from the commit checked out in `repo` the
/// first time; kept as the task left it for its next attempts.
pub async fn ensure_worktree(repo: &Path, path: &Path, key: &TaskKey) -> Result<(), String> {
    if path.join(".git").exists() {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    // A stale registration (the directory was removed by hand) would make `worktree add` refuse.
    let _ = git(repo, &["worktree", "prune"]).await;
    let b = branch(key);
    let path_s = path.to_string_lossy().to_string();
    let exists = git(repo, &["rev-parse", "--verify", "--quiet", &format!("refs/heads/{b}")]).await.is_ok();
    if exists {
        git(repo, &["worktree", "add", &path_s, &b]).await?;
    } else {
        git(repo, &["worktree", "add", "-b", &b, &path_s, "HEAD"]).await?;
    }
    Ok(())
}

/// Commits everything in the worktree (the accepted attempt's work); the new commit's id, or `None` when there was
/// nothing to commit.
pub async fn commit_all(path: &Path, message: &str) -> Result<Option<String>, String> {
    git(path, &["add", "-A"]).await?;
    if git(path, &["diff", "--cached", "--quiet"]).await.is_ok() {
        return Ok(None);
    }
    git(path, &["commit", "--quiet", "--no-verify", "-m", message]).await?;
    git(path, &["rev-parse", "HEAD"]).await.map(Some)
}

/// Brings `key`'s branch into the branch checked out in `repo`, as `mode` says; what happened, in words.
pub async fn merge(repo: &Path, worktree: &Path, key: &TaskKey, mode: MergeMode) -> Result<String, String> {
    let b = branch(key);
    let base = git(repo, &["rev-parse", "--abbrev-ref", "HEAD"]).await?;
    match mode {
        MergeMode::None => Ok(format!("left on branch {b}")),
        MergeMode::FastForward => {
            // Tasks of one project run at once: replay this one's commits on what the base has become.
            if let Err(e) = git(worktree, &["rebase", "--quiet", &base]).await {
                let _ = git(worktree, &["rebase", "--abort"]).await;
                return Err(format!("{b} does not rebase onto {base}: {e}"));
            }
            git(repo, &["merge", "--ff-only", "--quiet", &b]).await?;
            Ok(format!("{base} fast-forwarded to {b}"))
        }
        MergeMode::Merge => {
            let msg = format!("orch: merge {b} ({key})");
            if let Err(e) = git(repo, &["merge", "--no-ff", "--quiet", "-m", &msg, &b]).await {
                let _ = git(repo, &["merge", "--abort"]).await;
                return Err(format!("{b} does not merge into {base}: {e}"));
            }
            Ok(format!("{b} merged into {base}"))
        }
    }
}

/// Removes `key`'s worktree (its branch stays).
pub async fn remove_worktree(repo: &Path, path: &Path) -> Result<(), String> {
    if !path.exists() {
        return Ok(());
    }
    git(repo, &["worktree", "remove", "--force", &path.to_string_lossy()]).await.map(|_| ())
}
