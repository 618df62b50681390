//! The ready queue (per project, priority then age, one candidate per project at each pick) and the slots a pick
//! looks at (sessions per project, per provider, and the workspaces taken).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::settings::ProjectSettings;
use crate::types::TaskKey;

/// The sessions under way, as a pick sees them: per project, per provider, and the workspaces taken (a project
/// without worktrees has one session at a time in its workspace: the FileMonitor attributes changes to the one
/// attempt).
#[derive(Default)]
pub(crate) struct Slots<'a> {
    pub(crate) per_project: HashMap<&'a str, usize>,
    pub(crate) per_provider: HashMap<&'static str, usize>,
    pub(crate) workspaces: std::collections::HashSet<&'a std::path::Path>,
}

impl<'a> Slots<'a> {
    /// A session of `p` starts.
    pub(crate) fn take(&mut self, p: &'a ProjectSettings) {
        *self.per_project.entry(p.name.as_str()).or_default() += 1;
        *self.per_provider.entry(p.agent.kind.as_str()).or_default() += 1;
        if p.isolation == crate::settings::Isolation::None {
            self.workspaces.insert(p.workspace.as_path());
        }
    }

    /// Whether a session of `p` may start now.
    pub(crate) fn free(
        &self,
        p: &ProjectSettings,
        limits: &BTreeMap<String, usize>,
        paused: &HashMap<String, i64>,
    ) -> bool {
        let provider = p.agent.kind.as_str();
        self.per_project.get(p.name.as_str()).copied().unwrap_or(0) < p.max_sessions
            && (p.isolation == crate::settings::Isolation::Worktree || !self.workspaces.contains(p.workspace.as_path()))
            && !paused.contains_key(provider)
            && limits.get(provider).is_none_or(|limit| self.per_provider.get(provider).copied().unwrap_or(0) < *limit)
    }
}

/// The tasks ready to start (pending, dependencies completed), in the order they should start: highest priority
/// first, then oldest (the order they were added). Kept per project, with each project's best task in a second
/// ordered set, so that a pick looks at one candidate per project and skips only projects that cannot take a
/// session now.
#[derive(Debug, Default)]
pub struct ReadyQueue {
    by_project: HashMap<String, BTreeSet<(std::cmp::Reverse<u8>, u64, String)>>,
    heads: BTreeSet<(std::cmp::Reverse<u8>, u64, String)>,
    index: HashMap<TaskKey, (u8, u64)>,
}

impl ReadyQueue {
    /// Queues a task (again, with this priority and age, if it was queued).
    pub fn insert(&mut self, key: TaskKey, priority: u8, seq: u64) {
        if self.index.get(&key) == Some(&(priority, seq)) {
            return;
        }
        self.remove(&key);
        self.change(&key.project, |queue| {
            queue.insert((std::cmp::Reverse(priority), seq, key.task.clone()));
        });
        self.index.insert(key, (priority, seq));
    }

    /// Takes a task out of the queue; false when it was not in it.
    pub fn remove(&mut self, key: &TaskKey) -> bool {
        let Some((priority, seq)) = self.index.remove(key) else { return false };
        self.change(&key.project, |queue| {
            queue.remove(&(std::cmp::Reverse(priority), seq, key.task.clone()));
        });
        true
    }

    /// Changes a project's queue, keeping its entry among the heads (its best task) in step.
    fn change(&mut self, project: &str, f: impl FnOnce(&mut BTreeSet<(std::cmp::Reverse<u8>, u64, String)>)) {
        let queue = self.by_project.entry(project.to_string()).or_default();
        let head = |q: &BTreeSet<(std::cmp::Reverse<u8>, u64, String)>| q.first().map(|(p, s, _)| (*p, *s));
        let old = head(queue);
        f(queue);
        let new = head(queue);
        if queue.is_empty() {
            self.by_project.remove(project);
        }
        if old != new {
            if let Some((p, s)) = old {
                self.heads.remove(&(p, s, project.to_string()));
            }
            if let Some((p, s)) = new {
                self.heads.insert((p, s, project.to_string()));
            }
        }
    }

    /// Takes out the best task of `project`, if it has one ready.
    pub fn pick_in(&mut self, project: &str) -> Option<TaskKey> {
        let task = self.by_project.get(project)?.first()?.2.clone();
        let key = TaskKey::new(project, &task);
        self.remove(&key);
        Some(key)
    }

    /// The projects with a task ready.
    pub fn projects(&self) -> impl Iterator<Item = &str> {
        self.by_project.keys().map(String::as_str)
    }

    /// Takes out the best task of the best project for which `available(project)` says yes.
    pub fn pick(&mut self, mut available: impl FnMut(&str) -> bool) -> Option<TaskKey> {
        let project = self.heads.iter().find(|(_, _, p)| available(p)).map(|(_, _, p)| p.clone())?;
        self.pick_in(&project)
    }

    /// How many tasks are queued.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Whether `key` is queued.
    pub fn contains(&self, key: &TaskKey) -> bool {
        self.index.contains_key(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ready_queue_gives_priority_then_age_skipping_busy_projects() {
        let k = |p: &str, t: &str| TaskKey::new(p, t);
        let mut q = ReadyQueue::default();
        q.insert(k("a", "old-low"), 3, 1);
        q.insert(k("b", "high"), 9, 5);
        q.insert(k("a", "high-older"), 9, 2);
        q.insert(k("c", "mid"), 5, 3);
        assert_eq!(q.len(), 4);
        // Same priority: the older goes first.
        assert_eq!(q.pick(|_| true), Some(k("a", "high-older")));
        // `b` is busy: the best of the others.
        assert_eq!(q.pick(|p| p != "b"), Some(k("c", "mid")));
        assert_eq!(q.pick(|p| p != "b"), Some(k("a", "old-low")));
        assert_eq!(q.pick(|p| p != "b"), None);
        // Re-queued with a new priority; removed ones are gone.
        q.insert(k("b", "high"), 1, 5);
        q.insert(k("c", "new"), 2, 6);
        assert!(q.remove(&k("c", "new")) && !q.remove(&k("c", "new")));
        assert!(q.contains(&k("b", "high")));
        assert_eq!(q.pick(|_| true), Some(k("b", "high")));
        assert!(q.is_empty());
    }
}
