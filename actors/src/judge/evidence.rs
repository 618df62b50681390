//! The task's work so far, and what is wrong with it by structure: its cumulative change since its first attempt,
//! protected files it modified, collateral damage (unrelated files deleted, emptied or rewritten; changes outside
//! its scope), secrets written into files, writes outside the workspace, changes inside `.git`. Pure functions of
//! the evidence, tested on their own; the QualityController gathers the evidence and journals the findings.

use std::collections::BTreeMap;

use crate::actors::file_monitor::FileChange;
use crate::types::{ChangeKind, ContentHash, Finding, Severity};

use super::paths::{self, Protection};

/// The task's cumulative change: every path its attempts changed whose content now differs from before the
/// first change. `earlier` holds, per path, the content before the task first changed it; `this` the latest
/// attempt's changes; `now` the current content of a path only earlier attempts changed (`None`: absent).
pub fn cumulative(
    earlier: &BTreeMap<String, Option<ContentHash>>,
    this: &[FileChange],
    now: impl Fn(&str) -> Option<(ContentHash, u64)>,
) -> Vec<FileChange> {
    let mut out: BTreeMap<String, FileChange> = BTreeMap::new();
    for c in this {
        let before = earlier.get(&c.path).copied().unwrap_or(c.before);
        out.insert(c.path.clone(), FileChange { before, ..c.clone() });
    }
    for (path, before) in earlier {
        if out.contains_key(path) {
            continue;
        }
        let current = now(path);
        out.insert(
            path.clone(),
            FileChange {
                path: path.clone(),
                kind: ChangeKind::Modified,
                before: *before,
                after: current.map(|c| c.0),
                size: current.map(|c| c.1).unwrap_or(0),
            },
        );
    }
    out.into_values()
        .filter(|c| c.before != c.after)
        .map(|mut c| {
            c.kind = match (c.before, c.after) {
                (None, _) => ChangeKind::Created,
                (_, None) => ChangeKind::Deleted,
                _ => ChangeKind::Modified,
            };
            c
        })
        .collect()
}

fn finding(code: &str, severity: Severity, message: String) -> Finding {
    Finding { code: code.to_string(), severity, message }
}

/// Up to ten paths, then how many more.
pub fn list<S: AsRef<str>>(paths: &[S]) -> String {
    let shown: Vec<String> = paths.iter().take(10).map(|p| format!("`{}`", p.as_ref())).collect();
    let more = paths.len().saturating_sub(shown.len());
    format!("{}{}", shown.join(", "), if more > 0 { format!(" and {more} more") } else { String::new() })
}

/// The changes that tamper with what the checks judge by: pre-existing protected files modified or deleted, and
/// runner configuration or check scripts created.
pub fn protected_changes<'a>(changes: &'a [FileChange], protection: &Protection) -> Vec<&'a FileChange> {
    changes.iter().filter(|c| protection.guards(&c.path, c.before.is_some())).collect()
}

/// The `protected_changed` finding for these changes, with what the checks said on the original files.
pub fn protected_finding(changed: &[&FileChange], pristine: &str) -> Finding {
    let names: Vec<String> = changed
        .iter()
        .map(|c| match c.kind {
            ChangeKind::Deleted => format!("{} (deleted)", c.path),
            ChangeKind::Created => format!("{} (created)", c.path),
            ChangeKind::Modified => c.path.clone(),
        })
        .collect();
    finding(
        "protected_changed",
        Severity::Error,
        format!(
            "the work changes what the checks judge by: {} (protected paths); restore them and fix the code instead. \
             {pristine}",
            list(&names)
        ),
    )
}

/// How much of a file's text survived a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Survival {
    /// Non-blank lines before.
    pub old_lines: usize,
    /// Of those, how many are still there.
    pub kept: usize,
    /// Non-blank lines after.
    pub new_lines: usize,
}

impl Survival {
    /// Compares two texts line by line (as multisets of trimmed non-blank lines).
    pub fn of(before: &[u8], after: &[u8]) -> Survival {
        let lines = |b: &[u8]| -> Vec<String> {
            String::from_utf8_lossy(b).lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect()
        };
        let (old, new) = (lines(before), lines(after));
        let mut pool: BTreeMap<&str, usize> = BTreeMap::new();
        for l in &new {
            *pool.entry(l.as_str()).or_default() += 1;
        }
        let mut kept = 0;
        for l in &old {
            if let Some(n) = pool.get_mut(l.as_str()).filter(|n| **n > 0) {
                *n -= 1;
                kept += 1;
            }
        }
        Survival { old_lines: old.len(), kept, new_lines: new.len() }
    }
}

/// What happened to a pre-existing file the task does not name, if it is damage: deleted, emptied, cut short, or
/// rewritten wholesale (fewer than 40 % of its lines left, for a file of four lines or more).
pub fn damage(change: &FileChange, survival: Option<Survival>) -> Option<&'static str> {
    match change.kind {
        ChangeKind::Deleted => Some("deleted"),
        ChangeKind::Created => None,
        ChangeKind::Modified => {
            if change.size == 0 {
                return Some("emptied");
            }
            let s = survival?;
            if s.old_lines > 0 && s.new_lines == 0 {
                return Some("emptied");
            }
            if s.old_lines >= 4 && (s.kept as f64) < 0.4 * s.old_lines as f64 {
                return Some(if s.new_lines <= s.kept + s.old_lines / 10 { "cut short" } else { "rewritten" });
            }
            None
        }
    }
}

/// The task's text, as one string, for naming files.
pub struct TaskText<'a> {
    /// Title, description and acceptance criteria.
    pub text: &'a str,
    /// The task's scope (or the project's), empty when none.
    pub scope: &'a [String],
}

/// The `collateral_change` finding: changes outside the scope when there is one; otherwise pre-existing files the
/// task does not name that were deleted, emptied or rewritten. Build by-products and protected files (judged on
/// their own) are left out.
pub fn collateral(
    changes: &[FileChange],
    task: &TaskText<'_>,
    protection: &Protection,
    survival: impl Fn(&FileChange) -> Option<Survival>,
) -> Result<Option<Finding>, String> {
    let scope = if task.scope.is_empty() { None } else { Some(paths::set(task.scope)?) };
    let mut hits = Vec::new();
    for c in changes {
        if paths::generated(&c.path) || protection.guards(&c.path, c.before.is_some()) {
            continue;
        }
        if let Some(scope) = &scope {
            if !scope.is_match(&c.path) {
                hits.push(format!("{} ({} outside the scope {})", c.path, c.kind.as_str(), task.scope.join(", ")));
            }
            continue;
        }
        if c.before.is_none() || paths::named_by_task(&c.path, task.text) {
            continue;
        }
        if let Some(how) = damage(c, survival(c)) {
            hits.push(format!("{} ({how})", c.path));
        }
    }
    Ok((!hits.is_empty()).then(|| {
        finding(
            "collateral_change",
            Severity::Error,
            format!(
                "the work damages files the task does not ask to change: {}; restore them and change only what the \
                 task needs",
                list(&hits)
            ),
        )
    }))
}

/// The `secret_in_workspace` finding: files that hold a secret value, named; the value never.
pub fn secret_finding(files: &[String]) -> Option<Finding> {
    (!files.is_empty()).then(|| {
        finding(
            "secret_in_workspace",
            Severity::Error,
            format!(
                "{} hold(s) the value of a secret from the agent's environment; the work is not accepted and is left \
                 for a human (orch rollback undoes it)",
                list(files)
            ),
        )
    })
}

/// The `.git` finding: what changed in the repository's own files.
pub fn git_finding(changes: &[String]) -> Option<Finding> {
    (!changes.is_empty()).then(|| {
        finding(
            "collateral_change",
            Severity::Error,
            format!(
                "the agent changed the git repository itself (.git/): {}; orch commits accepted work, the agent must \
                 not",
                list(changes)
            ),
        )
    })
}

/// Which environment values are secrets: those whose name says so (KEY, TOKEN, SECRET, PASSWORD, CREDENTIAL,
/// AUTH…) and those that look like one (16 characters or more of letters and digits, not a path or a URL); at least
/// 8 characters either way.
pub fn secret_values<'a>(env: impl IntoIterator<Item = (&'a String, &'a String)>) -> Vec<String> {
    const NAMES: &[&str] =
        &["KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH", "COOKIE", "PRIVATE", "SESSION"];
    let mut out: Vec<String> = env
        .into_iter()
        .filter(|(k, v)| {
            let name = k.to_uppercase();
            let named = NAMES.iter().any(|n| name.contains(n));
            let looks = v.len() >= 16
                && !v.contains(['/', ' ', ':'])
                && v.chars().any(|c| c.is_ascii_digit())
                && v.chars().any(|c| c.is_ascii_alphabetic());
            v.len() >= 8 && (named || looks)
        })
        .map(|(_, v)| v.clone())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Whether a file holds any of the secrets, read in bounded chunks (a secret across two chunks is found).
pub fn file_holds_secret(path: &std::path::Path, secrets: &[String]) -> std::io::Result<bool> {
    use std::io::Read;
    if secrets.is_empty() {
        return Ok(false);
    }
    let longest = secrets.iter().map(String::len).max().unwrap_or(0);
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(false);
        }
        carry.extend_from_slice(&buf[..n]);
        if secrets.iter().any(|s| contains(&carry, s.as_bytes())) {
            return Ok(true);
        }
        let keep = longest.saturating_sub(1).min(carry.len());
        carry.drain(..carry.len() - keep);
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Option<ContentHash> {
        Some(ContentHash::of(s.as_bytes()))
    }

    fn change(path: &str, kind: ChangeKind, before: Option<ContentHash>, after: Option<ContentHash>) -> FileChange {
        FileChange { path: path.into(), kind, before, after, size: 10 }
    }

    #[test]
    fn the_task_change_spans_its_attempts() {
        let mut earlier = BTreeMap::new();
        earlier.insert("calc.sh".to_string(), None);
        earlier.insert("README.md".to_string(), h("readme"));
        // Attempt 2 rewrote calc.sh identically (no change of its own) and restored README.md.
        let now = |p: &str| match p {
            "calc.sh" => Some((ContentHash::of(b"echo"), 4)),
            "README.md" => Some((ContentHash::of(b"readme"), 6)),
            _ => None,
        };
        let c = cumulative(&earlier, &[], now);
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].path.as_str(), c[0].kind), ("calc.sh", ChangeKind::Created));
        // A file this attempt changed keeps the content from before the task.
        let this = vec![change("README.md", ChangeKind::Modified, h("readme v2"), h("readme v3"))];
        let c = cumulative(&earlier, &this, now);
        assert_eq!(c.iter().find(|c| c.path == "README.md").and_then(|c| c.before), h("readme"));
        assert!(cumulative(&BTreeMap::new(), &[], now).is_empty());
    }

    #[test]
    fn damage_is_deleting_emptying_cutting_or_rewriting() {
        let m = |size| FileChange { size, ..change("README.md", ChangeKind::Modified, h("a"), h("b")) };
        let long = b"one\ntwo\nthree\nfour\nfive\n";
        assert_eq!(damage(&change("x", ChangeKind::Deleted, h("a"), None), None), Some("deleted"));
        assert_eq!(damage(&m(0), None), Some("emptied"));
        assert_eq!(damage(&m(5), Some(Survival::of(long, b"one\n"))), Some("cut short"));
        assert_eq!(damage(&m(5), Some(Survival::of(long, b"a\nb\nc\nd\ne\nf\n"))), Some("rewritten"));
        assert_eq!(damage(&m(5), Some(Survival::of(long, b"one\ntwo\nthree\nfour\nfive\nsix\n"))), None);
        assert_eq!(damage(&m(5), Some(Survival::of(b"echo $(($1 - $2))\n", b"echo $(($1 + $2))\n"))), None);
    }

    #[test]
    fn collateral_names_unrelated_damage_and_respects_scope() {
        let dir = tempfile::tempdir().expect("tempdir");
        let checks = vec!["sh check.sh".to_string()];
        let p = Protection::new(paths::default_protected(&checks, dir.path()), &[]).expect("globs");
        let changes = vec![
            change("calc.sh", ChangeKind::Created, None, h("x")),
            change("README.md", ChangeKind::Deleted, h("r"), None),
            change("old.sh", ChangeKind::Deleted, h("o"), None),
        ];
        let text = "Write calc.sh and remove old.sh";
        let f = collateral(&changes, &TaskText { text, scope: &[] }, &p, |_| None).expect("ok").expect("finding");
        assert!(f.message.contains("README.md (deleted)") && !f.message.contains("old.sh"), "{}", f.message);
        let scope = vec!["src/**".to_string()];
        let f = collateral(&changes[..1], &TaskText { text, scope: &scope }, &p, |_| None).expect("ok");
        assert!(f.expect("finding").message.contains("calc.sh (created outside the scope src/**)"));
    }

    #[test]
    fn secrets_are_told_by_name_or_shape() {
        let env: Vec<(String, String)> = vec![
            ("DEPLOY_TOKEN".into(), "tok_live_9f8e7d6c5b".into()),
            ("HOME".into(), "/home/someone/dir".into()),
            ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC".into(), "1".into()),
            ("ANTHROPIC_BASE_URL".into(), "http://127.0.0.1:4000".into()),
            ("WHATEVER".into(), "a1b2c3d4e5f6g7h8i9".into()),
        ];
        let s = secret_values(env.iter().map(|(k, v)| (k, v)));
        assert_eq!(s, vec!["a1b2c3d4e5f6g7h8i9".to_string(), "tok_live_9f8e7d6c5b".to_string()]);
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("f");
        let mut big = vec![b'x'; (1 << 20) - 5];
        big.extend_from_slice(b"tok_live_9f8e7d6c5b\n");
        std::fs::write(&f, &big).expect("write");
        assert!(file_holds_secret(&f, &s).expect("read"), "a secret across two chunks is found");
        std::fs::write(&f, b"token = os.environ['DEPLOY_TOKEN']\n").expect("write");
        assert!(!file_holds_secret(&f, &s).expect("read"));
    }
}
