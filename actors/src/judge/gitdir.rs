//! The git repository's own files, fingerprinted before and after an attempt: HEAD, refs, config, hooks, info.
//! The FileMonitor never looks inside `.git`; an agent that moves a branch, rewrites history, installs a hook or
//! edits the config is seen here. Objects, the index and logs are left out: reading the repository (`git status`,
//! `git diff`) touches them harmlessly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::types::ContentHash;

/// Per file of the repository (named `.git/…`), its content hash.
pub type Fingerprint = BTreeMap<String, ContentHash>;

/// Files larger than this are fingerprinted by size only.
const MAX_BYTES: u64 = 1 << 20;
/// Files looked at, at the most.
const MAX_FILES: usize = 20_000;

/// The repository directories of a workspace: its own git directory (a worktree's is separate) and the common one.
fn git_dirs(workspace: &Path) -> Option<(PathBuf, PathBuf)> {
    let dot = workspace.join(".git");
    let meta = std::fs::symlink_metadata(&dot).ok()?;
    let own = if meta.is_dir() {
        dot
    } else {
        let text = std::fs::read_to_string(&dot).ok()?;
        let rel = text.trim().strip_prefix("gitdir:")?.trim().to_string();
        workspace.join(rel)
    };
    let common =
        std::fs::read_to_string(own.join("commondir")).ok().map(|c| own.join(c.trim())).unwrap_or_else(|| own.clone());
    Some((own, common))
}

fn add_file(out: &mut Fingerprint, label: String, path: &Path) {
    if out.len() >= MAX_FILES {
        return;
    }
    let Ok(meta) = std::fs::symlink_metadata(path) else { return };
    if !meta.is_file() {
        return;
    }
    let hash = if meta.len() > MAX_BYTES {
        ContentHash::of(format!("size {}", meta.len()).as_bytes())
    } else {
        match std::fs::read(path) {
            Ok(b) => ContentHash::of(&b),
            Err(_) => return,
        }
    };
    out.insert(label, hash);
}

fn add_tree(out: &mut Fingerprint, label: &str, dir: &Path, skip: &dyn Fn(&str) -> bool) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let label = format!("{label}/{name}");
        if skip(&label) {
            continue;
        }
        match e.file_type() {
            Ok(t) if t.is_dir() => add_tree(out, &label, &e.path(), skip),
            Ok(t) if t.is_file() => add_file(out, label, &e.path()),
            _ => {}
        }
    }
}

/// The fingerprint of a workspace's repository (empty when it is not one). `own_refs`: whether the branches are
/// this workspace's alone (not so for a task's worktree, whose repository other tasks commit to meanwhile).
pub fn fingerprint(workspace: &Path, own_refs: bool) -> Fingerprint {
    let mut out = Fingerprint::new();
    let Some((own, common)) = git_dirs(workspace) else { return out };
    add_file(&mut out, ".git/HEAD".into(), &own.join("HEAD"));
    add_file(&mut out, ".git/config".into(), &common.join("config"));
    add_tree(&mut out, ".git/hooks", &common.join("hooks"), &|l| l.ends_with(".sample"));
    add_tree(&mut out, ".git/info", &common.join("info"), &|_| false);
    if own_refs {
        add_file(&mut out, ".git/packed-refs".into(), &common.join("packed-refs"));
        // orch's own task branches move when other tasks' work is committed.
        add_tree(&mut out, ".git/refs", &common.join("refs"), &|l| l.starts_with(".git/refs/heads/orch/"));
    }
    out
}

/// The fingerprint a task's first attempt (in this process) started from, so that a `.git` change an earlier
/// attempt made and a later one left in place is still seen: the judgement is of the task's work so far. `now` is
/// stored when the task has none yet.
pub fn task_baseline(workspace: &Path, task: &str, now: Fingerprint) -> Fingerprint {
    type Baselines = std::sync::Mutex<std::collections::HashMap<(PathBuf, String), Fingerprint>>;
    static BASELINES: std::sync::OnceLock<Baselines> = std::sync::OnceLock::new();
    let map = BASELINES.get_or_init(Default::default);
    let mut map = match map.lock() {
        Ok(m) => m,
        Err(poisoned) => poisoned.into_inner(),
    };
    map.entry((workspace.to_path_buf(), task.to_string())).or_insert(now).clone()
}

/// What differs between two fingerprints: `.git/…` paths created, changed or removed.
pub fn changed(before: &Fingerprint, after: &Fingerprint) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in after {
        match before.get(k) {
            None => out.push(format!("{k} (created)")),
            Some(b) if b != v => out.push(k.clone()),
            _ => {}
        }
    }
    for k in before.keys().filter(|k| !after.contains_key(*k)) {
        out.push(format!("{k} (deleted)"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_hooks_config_and_refs_not_the_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let git = dir.path().join(".git");
        std::fs::create_dir_all(git.join("refs/heads/orch")).expect("mkdir");
        std::fs::create_dir_all(git.join("hooks")).expect("mkdir");
        std::fs::write(git.join("HEAD"), "ref: refs/heads/main\n").expect("write");
        std::fs::write(git.join("config"), "[core]\n").expect("write");
        std::fs::write(git.join("refs/heads/main"), "aaaa\n").expect("write");
        std::fs::write(git.join("hooks/pre-commit.sample"), "x").expect("write");
        let before = fingerprint(dir.path(), true);
        std::fs::write(git.join("index"), "changed by git status").expect("write");
        std::fs::write(git.join("refs/heads/orch/other"), "bbbb\n").expect("write");
        assert!(changed(&before, &fingerprint(dir.path(), true)).is_empty());
        std::fs::write(git.join("hooks/pre-commit"), "exit 0").expect("write");
        std::fs::write(git.join("refs/heads/main"), "cccc\n").expect("write");
        let after = fingerprint(dir.path(), true);
        assert_eq!(changed(&before, &after), vec![".git/hooks/pre-commit (created)", ".git/refs/heads/main"]);
        assert_eq!(changed(&before, &fingerprint(dir.path(), false)).len(), 2, "hooks count in a worktree too");
        assert!(fingerprint(&dir.path().join("nope"), true).is_empty());
    }
}
