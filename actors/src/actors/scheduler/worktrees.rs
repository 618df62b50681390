//! Worktree keeping, for projects with `isolation = "worktree"`: each task's worktree made before its agent starts,
//! its accepted work committed and merged, the worktree removed when the task is done with (its branch stays). It
//! owns the per-repository locks: one git operation on a repository's shared state at a time — adding or removing a
//! worktree, merging — since git locks its refs and worktree records, and two at once fail.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Mutex;

use crate::journal::TaskView;
use crate::settings::{Isolation, MergeMode, ProjectSettings};
use crate::types::{TaskKey, TaskState};

/// What became of an accepted attempt's work.
pub(crate) struct Accepted {
    /// The commit made on the task's branch, if there was anything to commit.
    pub commit: Option<String>,
    /// What the merge did, in words; or why the work stays on its branch.
    pub merged: Result<String, String>,
}

/// Commits everything in the worktree at `path` with `message` and merges `key`'s branch into `repo` as `mode` says
/// (holding `lock`, the repository's, for the merge); a merged worktree is removed. Run again on work a crash
/// interrupted, it merges nothing twice: what is committed stays committed, and a merged branch is "up to date".
pub(crate) async fn accept_in(
    repo: &Path,
    path: &Path,
    key: &TaskKey,
    mode: MergeMode,
    message: &str,
    lock: Option<Arc<Mutex<()>>>,
) -> Accepted {
    let commit = crate::git::commit_all(path, message).await;
    let merged = match &commit {
        Ok(_) => {
            let _one_at_a_time = match &lock {
                Some(l) => Some(l.lock().await),
                None => None,
            };
            let merged = crate::git::merge(repo, path, key, mode).await;
            if merged.is_ok() {
                crate::fault::point("merge:merged");
                if let Err(e) = crate::git::remove_worktree(repo, path).await {
                    tracing::warn!("{e}");
                }
            }
            merged
        }
        Err(e) => Err(format!("committing its work failed: {e}")),
    };
    Accepted { commit: commit.ok().flatten(), merged }
}

/// See the module documentation.
pub(crate) struct Worktrees {
    journal_path: PathBuf,
    locks: HashMap<PathBuf, Arc<Mutex<()>>>,
}

impl Worktrees {
    /// Worktrees under the journal's directory.
    pub(crate) fn new(journal_path: PathBuf) -> Self {
        Worktrees { journal_path, locks: HashMap::new() }
    }

    /// Where `key`'s worktree is.
    pub(crate) fn path(&self, key: &TaskKey) -> PathBuf {
        crate::git::worktree_path(&self.journal_path, key)
    }

    fn lock(&mut self, repo: &Path) -> Arc<Mutex<()>> {
        self.locks.entry(repo.to_path_buf()).or_default().clone()
    }

    /// Makes (or finds) `key`'s worktree of `repo`; its path.
    pub(crate) fn prepare(&mut self, repo: &Path, key: &TaskKey) -> impl Future<Output = Result<PathBuf, String>> {
        let (path, repo, key, lock) = (self.path(key), repo.to_path_buf(), key.clone(), self.lock(repo));
        async move {
            let _one_at_a_time = lock.lock().await;
            crate::git::ensure_worktree(&repo, &path, &key).await.map(|_| path)
        }
    }

    /// Commits everything in `key`'s worktree with `message` and merges its branch into `repo` as `mode` says; a
    /// merged worktree is removed, one a human has to look at is kept.
    pub(crate) fn accept(
        &mut self,
        repo: &Path,
        key: &TaskKey,
        mode: MergeMode,
        message: String,
    ) -> impl Future<Output = Accepted> {
        let (path, repo, key, lock) = (self.path(key), repo.to_path_buf(), key.clone(), self.lock(repo));
        async move { accept_in(&repo, &path, &key, mode, &message, Some(lock)).await }
    }

    /// Removes the worktrees of tasks that are done with — cancelled, failed, or completed by a human — that are
    /// still there; an escalated task keeps its worktree for a human to look at. One future per worktree.
    pub(crate) fn remove_done(
        &mut self,
        views: &HashMap<TaskKey, TaskView>,
        projects: &HashMap<String, Arc<ProjectSettings>>,
    ) -> Vec<impl Future<Output = ()>> {
        let mut out = Vec::new();
        for (key, v) in views {
            let Some(p) = projects.get(&key.project) else { continue };
            if p.isolation != Isolation::Worktree
                || !matches!(v.state, TaskState::Completed | TaskState::Cancelled | TaskState::Failed)
            {
                continue;
            }
            let path = self.path(key);
            if !path.exists() {
                continue;
            }
            let (repo, lock) = (p.workspace.clone(), self.lock(&p.workspace));
            out.push(async move {
                let _one_at_a_time = lock.lock().await;
                if let Err(e) = crate::git::remove_worktree(&repo, &path).await {
                    tracing::warn!("{e}");
                }
            });
        }
        out
    }
}
