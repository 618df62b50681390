//! The FileMonitor actor, one per workspace: knows every file an attempt created, modified or deleted, with its
//! content hash, and keeps the content before the attempt (content-addressed blobs in the journal) so a rollback
//! is exact — also for files changed by shell commands and files git does not track.
//!
//! Before an attempt it snapshots the workspace (size, mtime and BLAKE3 hash of every file, re-hashing only what
//! changed since the last snapshot) and stores the content of files the journal does not have yet. During the
//! attempt `notify` reports the paths touched; after it a second snapshot, in which touched paths are always
//! re-hashed, is compared with the first. The comparison is authoritative; notify makes it cheap and catches
//! edits that keep size and mtime.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

use actix::prelude::*;
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use notify::{RecursiveMode, Watcher};

use super::state_journal::{Append, PutBlobs};
use crate::error::EngineError;
use crate::journal::event::{Event, FileChanged, Intent, IntentRecorded, IntentSettled};
use crate::types::{AttemptRef, ChangeKind, ContentHash};

/// Files larger than this are hashed but their content is not kept (no exact rollback for them).
pub const MAX_PREIMAGE_BYTES: u64 = 64 * 1024 * 1024;

/// Snapshot the workspace before an attempt; resolves when the pre-images are stored.
#[derive(Message)]
#[rtype(result = "Result<(), EngineError>")]
pub struct BeginAttempt(pub AttemptRef);

/// Compare with the snapshot after an attempt, journal every change, and return them.
#[derive(Message)]
#[rtype(result = "Result<Vec<FileChange>, EngineError>")]
pub struct EndAttempt(pub AttemptRef);

/// Paths reported by notify.
#[derive(Message)]
#[rtype(result = "()")]
struct Notified(Vec<PathBuf>);

/// One file's change during an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    /// Path relative to the workspace, `/`-separated.
    pub path: String,
    /// What happened to it.
    pub kind: ChangeKind,
    /// Content before.
    pub before: Option<ContentHash>,
    /// Content after.
    pub after: Option<ContentHash>,
    /// Size after.
    pub size: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    len: u64,
    mtime_ns: i128,
    hash: ContentHash,
    /// When this entry was recorded. File timestamps come from a coarse clock (a few ms), so an entry whose mtime is
    /// that close to when it was recorded may hide a later same-size edit: it is "racily clean" and re-hashed.
    seen_ns: i128,
}

/// How far before its recording a file's mtime must be for size + mtime to be trusted.
const RACY_NS: i128 = 100_000_000;

fn now_ns() -> i128 {
    std::time::SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i128).unwrap_or(0)
}

type Snapshot = BTreeMap<String, Entry>;

/// See the module documentation.
pub struct FileMonitor {
    workspace: PathBuf,
    ignore: Vec<PathBuf>,
    journal: Recipient<Append>,
    blobs: Recipient<PutBlobs>,
    /// Last known entry per path: unchanged size and mtime means unchanged content.
    cache: HashMap<String, Entry>,
    /// Hashes whose content the journal already has.
    stored: HashSet<ContentHash>,
    active: Option<AttemptRef>,
    before: Snapshot,
    touched: HashSet<String>,
    watcher: Option<notify::RecommendedWatcher>,
    rules: IgnoreRules,
    /// Paths the watcher reported during the attempt, not yet looked at for a live `file_touched`.
    pending: HashSet<String>,
    /// A look at `pending` is scheduled.
    flush_scheduled: bool,
    /// What the last `file_touched` of each path said (its content hash; `None`: absent).
    live: HashMap<String, Option<ContentHash>>,
}

/// How long the watcher's reports are gathered before they are looked at: one write is often several reports.
const LIVE_DEBOUNCE: std::time::Duration = std::time::Duration::from_millis(3);

impl FileMonitor {
    /// A monitor for `workspace`; paths under `ignore` (the journal, say) are not watched. `.git` never is.
    pub fn new(
        workspace: PathBuf,
        ignore: Vec<PathBuf>,
        journal: Recipient<Append>,
        blobs: Recipient<PutBlobs>,
    ) -> Self {
        FileMonitor {
            workspace,
            ignore,
            journal,
            blobs,
            cache: HashMap::new(),
            stored: HashSet::new(),
            active: None,
            before: Snapshot::new(),
            touched: HashSet::new(),
            watcher: None,
            rules: IgnoreRules::default(),
            pending: HashSet::new(),
            flush_scheduled: false,
            live: HashMap::new(),
        }
    }

    fn relative(&self, p: &Path) -> Option<String> {
        let rel = p.strip_prefix(&self.workspace).ok()?;
        let s = rel_name(rel);
        (!s.is_empty()).then_some(s)
    }
}

/// A workspace-relative path as journaled: `/`-separated. A backslash is part of a name on Unix (only Windows
/// separates with it), so it is kept, and a rollback finds the very file. A name that is not UTF-8 is journaled
/// lossily (with U+FFFD), which a rollback reports as a conflict instead of touching another file.
fn rel_name(rel: &Path) -> String {
    let s = rel.to_string_lossy();
    if cfg!(windows) {
        s.replace('\\', "/")
    } else {
        s.into_owned()
    }
}

impl Actor for FileMonitor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let addr = ctx.address();
        let handler = move |res: notify::Result<notify::Event>| {
            if let Ok(ev) = res {
                if !ev.paths.is_empty() && !ev.kind.is_access() {
                    addr.do_send(Notified(ev.paths));
                }
            }
        };
        match notify::recommended_watcher(handler) {
            Ok(mut w) => match w.watch(&self.workspace, RecursiveMode::Recursive) {
                Ok(()) => self.watcher = Some(w),
                Err(e) => tracing::warn!(
                    "cannot watch {} ({e}); changes are still found by comparing snapshots",
                    self.workspace.display()
                ),
            },
            Err(e) => tracing::warn!("no file watcher ({e}); changes are still found by comparing snapshots"),
        }
    }
}

impl Handler<Notified> for FileMonitor {
    type Result = ();

    fn handle(&mut self, msg: Notified, ctx: &mut Self::Context) {
        if self.active.is_none() {
            return;
        }
        for p in msg.0 {
            if let Some(rel) = self.relative(&p) {
                self.touched.insert(rel.clone());
                self.pending.insert(rel);
            }
        }
        if !self.pending.is_empty() && !self.flush_scheduled {
            self.flush_scheduled = true;
            ctx.run_later(LIVE_DEBOUNCE, |act, ctx| act.flush_live(ctx));
        }
    }
}

impl FileMonitor {
    /// Journals what the watcher's reports show changed since the attempt began (or since the last look): a
    /// `file_touched` per path, in the background, never blocking the attempt. Ignored paths are skipped like in
    /// snapshots.
    fn flush_live(&mut self, ctx: &mut Context<Self>) {
        self.flush_scheduled = false;
        let Some(attempt) = self.active.clone() else {
            self.pending.clear();
            return;
        };
        let paths: Vec<String> = self.pending.drain().collect();
        let known: Vec<(String, Option<ContentHash>, Option<ContentHash>)> = paths
            .into_iter()
            .map(|p| {
                let before = self.before.get(&p).map(|e| e.hash);
                let last = self.live.get(&p).copied().unwrap_or(before);
                (p, before, last)
            })
            .collect();
        let (ws, ignore, rules) = (self.workspace.clone(), self.ignore.clone(), self.rules.clone());
        let look = tokio::task::spawn_blocking(move || {
            let mut seen = Vec::new();
            for (rel, before, last) in known {
                let path = ws.join(&rel);
                if live_ignored(&ws, &rules, &ignore, &path) {
                    continue;
                }
                let now = match std::fs::symlink_metadata(&path) {
                    Ok(m) if m.is_file() => match std::fs::read(&path) {
                        Ok(data) => Some((ContentHash::of(&data), data.len() as u64)),
                        Err(_) => continue,
                    },
                    Ok(_) => continue, // a directory or a link: its files are reported on their own
                    Err(_) => None,
                };
                let hash = now.map(|(h, _)| h);
                if hash == last {
                    continue;
                }
                let change = match (before, hash) {
                    (None, Some(_)) => ChangeKind::Created,
                    (Some(_), None) | (None, None) => ChangeKind::Deleted,
                    (Some(_), Some(_)) => ChangeKind::Modified,
                };
                seen.push((rel, change, before, hash, now.map(|(_, n)| n).unwrap_or(0)));
            }
            seen
        });
        let journal = self.journal.clone();
        ctx.spawn(look.into_actor(self).map(move |res, act, _| {
            let Ok(seen) = res else { return };
            if act.active.as_ref() != Some(&attempt) || seen.is_empty() {
                return;
            }
            let mut events = Vec::new();
            for (path, change, before, after, size) in seen {
                act.live.insert(path.clone(), after);
                events.push(Event::FileTouched(FileChanged {
                    project: attempt.key.project.clone(),
                    task: attempt.key.task.clone(),
                    attempt: attempt.attempt,
                    path,
                    change,
                    before,
                    after,
                    size,
                }));
            }
            let send = journal.send(Append(events));
            actix::spawn(async move {
                if let Ok(Err(e)) = send.await {
                    tracing::warn!("a live file change could not be journaled: {e}");
                }
            });
        }));
    }
}

/// Whether a path the watcher reported is outside what snapshots look at: under `.git`, under `skip`, or excluded by
/// the ignore rules of a directory on its way (an ignored directory hides everything below it).
fn live_ignored(ws: &Path, rules: &IgnoreRules, skip: &[PathBuf], path: &Path) -> bool {
    if skip.iter().any(|s| path.starts_with(s)) {
        return true;
    }
    let Ok(rel) = path.strip_prefix(ws) else { return true };
    let parts: Vec<_> = rel.components().collect();
    let mut active = Vec::new();
    let mut dir = ws.to_path_buf();
    for (i, part) in parts.iter().enumerate() {
        if part.as_os_str() == ".git" {
            return true;
        }
        let mut files = Vec::new();
        if dir == ws {
            files.push(ws.join(".git/info/exclude"));
        }
        for name in [".gitignore", ".ignore"] {
            let f = dir.join(name);
            if f.exists() {
                files.push(f);
            }
        }
        if let Some(r) = rules.for_dir(&dir, &files) {
            active.push(r);
        }
        let next = dir.join(part);
        if ignored(&active, &next, i + 1 < parts.len()) {
            return true;
        }
        dir = next;
    }
    false
}

impl Handler<BeginAttempt> for FileMonitor {
    type Result = ResponseActFuture<Self, Result<(), EngineError>>;

    fn handle(&mut self, msg: BeginAttempt, _ctx: &mut Self::Context) -> Self::Result {
        let ws = self.workspace.clone();
        let ignore = self.ignore.clone();
        let cache = self.cache.clone();
        let stored = self.stored.clone();
        let rules = self.rules.clone();
        let scan = async move {
            tokio::task::spawn_blocking(move || scan(&ws, &ignore, &rules, &cache, &HashSet::new(), Some(&stored)))
                .await
                .map_err(|e| EngineError::Stopped(format!("snapshot task: {e}")))?
        };
        let blobs = self.blobs.clone();
        let journal = self.journal.clone();
        let attempt = msg.0.clone();
        Box::pin(
            scan.into_actor(self)
                .then(move |res, act, _| {
                    let fut = async move {
                        let (snap, mut new_blobs) = res?;
                        let hashes: Vec<ContentHash> = new_blobs.iter().map(|(h, _)| *h).collect();
                        // The workspace's manifest, kept with the pre-images: a crash during the attempt leaves what
                        // is needed to find its changes (and undo them) at the next start.
                        let manifest = encode_manifest(&snap)?;
                        let baseline = ContentHash::of(&manifest);
                        new_blobs.push((baseline, manifest));
                        blobs.send(PutBlobs(new_blobs)).await??;
                        let intent = Event::IntentRecorded(IntentRecorded {
                            project: attempt.key.project.clone(),
                            task: attempt.key.task.clone(),
                            attempt: attempt.attempt,
                            intent: Intent::Attempt { baseline, files: snap.len() as u64 },
                        });
                        journal.send(Append(vec![intent])).await??;
                        Ok::<_, EngineError>((snap, hashes))
                    };
                    let _ = act;
                    fut.into_actor(act)
                })
                .map(move |res, act, _| {
                    let (snap, hashes) = res?;
                    act.stored.extend(hashes);
                    act.cache = snap.iter().map(|(k, v)| (k.clone(), *v)).collect();
                    act.before = snap;
                    act.touched.clear();
                    act.pending.clear();
                    act.live.clear();
                    act.active = Some(msg.0);
                    Ok(())
                }),
        )
    }
}

impl Handler<EndAttempt> for FileMonitor {
    type Result = ResponseActFuture<Self, Result<Vec<FileChange>, EngineError>>;

    fn handle(&mut self, msg: EndAttempt, _ctx: &mut Self::Context) -> Self::Result {
        let ws = self.workspace.clone();
        let ignore = self.ignore.clone();
        let cache = self.cache.clone();
        let touched = std::mem::take(&mut self.touched);
        let rules = self.rules.clone();
        let scan = async move {
            tokio::task::spawn_blocking(move || scan(&ws, &ignore, &rules, &cache, &touched, None))
                .await
                .map_err(|e| EngineError::Stopped(format!("snapshot task: {e}")))?
        };
        let journal = self.journal.clone();
        let attempt = msg.0;
        Box::pin(
            scan.into_actor(self)
                .map(|res, act, _| {
                    let (after, _) = res?;
                    let changes = diff(&act.before, &after);
                    act.cache = after.iter().map(|(k, v)| (k.clone(), *v)).collect();
                    act.active = None;
                    act.pending.clear();
                    Ok::<_, EngineError>(changes)
                })
                .then(move |res, act, _| {
                    async move {
                        let changes = res?;
                        let mut events = file_changed_events(&attempt, &changes);
                        events.push(Event::IntentSettled(IntentSettled {
                            project: attempt.key.project.clone(),
                            task: attempt.key.task.clone(),
                            attempt: attempt.attempt,
                            intent: "attempt".into(),
                            how: format!("its {} file change(s) journaled", changes.len()),
                        }));
                        journal.send(Append(events)).await??;
                        Ok(changes)
                    }
                    .into_actor(act)
                }),
        )
    }
}

/// The `file_changed` events of `attempt`'s changes.
pub(crate) fn file_changed_events(attempt: &AttemptRef, changes: &[FileChange]) -> Vec<Event> {
    changes
        .iter()
        .map(|c| {
            Event::FileChanged(FileChanged {
                project: attempt.key.project.clone(),
                task: attempt.key.task.clone(),
                attempt: attempt.attempt,
                path: c.path.clone(),
                change: c.kind,
                before: c.before,
                after: c.after,
                size: c.size,
            })
        })
        .collect()
}

/// A workspace's files as a snapshot found them (path → size and content hash): what an attempt's intent keeps.
pub(crate) type Manifest = BTreeMap<String, (u64, ContentHash)>;

fn encode_manifest(snap: &Snapshot) -> Result<Vec<u8>, EngineError> {
    let manifest: Manifest = snap.iter().map(|(k, e)| (k.clone(), (e.len, e.hash))).collect();
    crate::journal::codec::encode_value(&manifest)
        .map_err(|e| EngineError::Stopped(format!("encoding a manifest: {e}")))
}

/// Reads a manifest [`encode_manifest`] wrote.
pub(crate) fn decode_manifest(bytes: &[u8]) -> Result<Manifest, String> {
    crate::journal::codec::decode_value(bytes).map_err(|e| e.to_string())
}

/// What changed in `ws` (less `ignore`) since `manifest` was taken, every file read afresh: the changes of an
/// attempt that never ended, found at the next start.
pub(crate) fn changes_since(
    ws: &Path,
    ignore: &[PathBuf],
    manifest: &Manifest,
) -> Result<Vec<FileChange>, EngineError> {
    let (now, _) = scan(ws, ignore, &IgnoreRules::default(), &HashMap::new(), &HashSet::new(), None)?;
    let before: Snapshot = manifest
        .iter()
        .map(|(k, (len, hash))| (k.clone(), Entry { len: *len, mtime_ns: 0, hash: *hash, seen_ns: 0 }))
        .collect();
    Ok(diff(&before, &now))
}

/// What changed between two snapshots, in path order.
fn diff(before: &Snapshot, after: &Snapshot) -> Vec<FileChange> {
    let mut out = Vec::new();
    for (path, a) in after {
        match before.get(path) {
            None => out.push(FileChange {
                path: path.clone(),
                kind: ChangeKind::Created,
                before: None,
                after: Some(a.hash),
                size: a.len,
            }),
            Some(b) if b.hash != a.hash => out.push(FileChange {
                path: path.clone(),
                kind: ChangeKind::Modified,
                before: Some(b.hash),
                after: Some(a.hash),
                size: a.len,
            }),
            Some(_) => {}
        }
    }
    for (path, b) in before {
        if !after.contains_key(path) {
            out.push(FileChange {
                path: path.clone(),
                kind: ChangeKind::Deleted,
                before: Some(b.hash),
                after: None,
                size: 0,
            });
        }
    }
    out.sort_by(|x, y| x.path.cmp(&y.path));
    out
}

type ScanResult = Result<(Snapshot, Vec<(ContentHash, Vec<u8>)>), EngineError>;

/// A file found by [`walk`].
struct Walked {
    path: PathBuf,
    meta: std::fs::Metadata,
}

/// The ignore rules of each directory (`.git/info/exclude` at the top, `.gitignore`, `.ignore`, in rising
/// precedence), built once and reused while those files keep their size and mtime: compiling them on every snapshot
/// cost more than the rest of an attempt's bookkeeping together.
#[derive(Clone, Default)]
pub struct IgnoreRules(Arc<Mutex<HashMap<PathBuf, CachedRules>>>);

/// A directory's rules files (path, mtime, size) and the rules built from them.
type CachedRules = (Vec<(PathBuf, i128, u64)>, Option<Arc<Gitignore>>);

impl IgnoreRules {
    fn for_dir(&self, dir: &Path, files: &[PathBuf]) -> Option<Arc<Gitignore>> {
        let sig: Vec<(PathBuf, i128, u64)> = files
            .iter()
            .filter_map(|f| {
                let m = std::fs::metadata(f).ok()?;
                Some((f.clone(), mtime_ns(&m), m.len()))
            })
            .collect();
        if sig.is_empty() {
            return None;
        }
        let mut map = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((known, rules)) = map.get(dir) {
            if *known == sig {
                return rules.clone();
            }
        }
        let mut b = GitignoreBuilder::new(dir);
        for (f, _, _) in &sig {
            if let Some(e) = b.add(f) {
                tracing::warn!("ignore rules in {}: {e}", f.display());
            }
        }
        let rules = b.build().map(Arc::new).map_err(|e| tracing::warn!("ignore rules in {}: {e}", dir.display())).ok();
        map.insert(dir.to_path_buf(), (sig, rules.clone()));
        rules
    }
}

fn mtime_ns(meta: &std::fs::Metadata) -> i128 {
    meta.modified().ok().and_then(|m| m.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_nanos() as i128).unwrap_or(0)
}

/// Whether the innermost rules that say anything about `path` ignore it.
fn ignored(active: &[Arc<Gitignore>], path: &Path, is_dir: bool) -> bool {
    for rules in active.iter().rev() {
        let m = rules.matched(path, is_dir);
        if m.is_ignore() {
            return true;
        }
        if m.is_whitelist() {
            return false;
        }
    }
    false
}

/// Collects the workspace's files: hidden ones count; `.git`, `skip` and what the ignore rules exclude do not
/// (build outputs are not the agent's work, and hashing a `target/` of gigabytes before every attempt would be
/// ruinous); symbolic links are not followed.
fn walk(
    dir: &Path,
    ws: &Path,
    rules: &IgnoreRules,
    active: &mut Vec<Arc<Gitignore>>,
    skip: &[PathBuf],
    out: &mut Vec<(PathBuf, std::fs::Metadata)>,
) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        // A directory that vanished while walking is simply not there.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let entries: Vec<std::fs::DirEntry> = entries.filter_map(Result::ok).collect();
    let mut rule_files = Vec::new();
    if dir == ws {
        rule_files.push(ws.join(".git/info/exclude"));
    }
    for name in [".gitignore", ".ignore"] {
        if entries.iter().any(|e| e.file_name() == name) {
            rule_files.push(dir.join(name));
        }
    }
    let pushed = match rules.for_dir(dir, &rule_files) {
        Some(r) => {
            active.push(r);
            true
        }
        None => false,
    };
    for e in entries {
        let Ok(ft) = e.file_type() else { continue };
        let path = e.path();
        // `.git` is a directory in a repository and a file in a worktree: neither is the agent's work.
        if ft.is_symlink() || skip.iter().any(|s| path.starts_with(s)) || e.file_name() == ".git" {
            continue;
        }
        if ignored(active, &path, ft.is_dir()) {
            continue;
        }
        if ft.is_dir() {
            walk(&path, ws, rules, active, skip, out)?;
        } else if ft.is_file() {
            if let Ok(meta) = e.metadata() {
                out.push((path, meta));
            }
        }
    }
    if pushed {
        active.pop();
    }
    Ok(())
}

/// Walks the workspace (not following symbolic links, skipping `.git` and `ignore`), hashing files whose size or
/// mtime changed since `cache` or that are in `force`. With `stored`, returns the content of every file whose hash
/// is not in it, for the journal to keep.
fn scan(
    ws: &Path,
    ignore: &[PathBuf],
    rules: &IgnoreRules,
    cache: &HashMap<String, Entry>,
    force: &HashSet<String>,
    stored: Option<&HashSet<ContentHash>>,
) -> ScanResult {
    let mut snap = Snapshot::new();
    let mut blobs = Vec::new();
    // Taken before any file is read: an edit after this point has an mtime at or after it.
    let seen = now_ns();
    let mut new_hashes = HashSet::new();
    let mut files = Vec::new();
    walk(ws, ws, rules, &mut Vec::new(), ignore, &mut files)
        .map_err(|source| EngineError::Io { about: format!("walking workspace {}", ws.display()), source })?;
    for (path, meta) in files {
        let entry = Walked { path, meta };
        let Ok(rel) = entry.path.strip_prefix(ws) else { continue };
        let rel = rel_name(rel);
        let meta = entry.meta;
        let mtime_ns = mtime_ns(&meta);
        let len = meta.len();
        if let Some(c) = cache.get(&rel) {
            let known = stored.is_none_or(|s| s.contains(&c.hash));
            let settled = c.mtime_ns < c.seen_ns - RACY_NS;
            if c.len == len && c.mtime_ns == mtime_ns && settled && !force.contains(&rel) && known {
                snap.insert(rel, *c);
                continue;
            }
        }
        let data = match std::fs::read(&entry.path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(EngineError::Io { about: format!("reading {}", entry.path.display()), source }),
        };
        let hash = ContentHash::of(&data);
        if let Some(s) = stored {
            if !s.contains(&hash) && len <= MAX_PREIMAGE_BYTES && new_hashes.insert(hash) {
                blobs.push((hash, data));
            }
        }
        snap.insert(rel, Entry { len, mtime_ns, hash, seen_ns: seen });
    }
    Ok((snap, blobs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(b: u8) -> Entry {
        Entry { len: 1, mtime_ns: 0, hash: ContentHash([b; 32]), seen_ns: 0 }
    }

    #[test]
    fn a_same_size_edit_right_after_a_snapshot_is_not_missed() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let f = dir.path().join("same.txt");
        std::fs::write(&f, "before")?;
        let (first, _) = scan(dir.path(), &[], &IgnoreRules::default(), &HashMap::new(), &HashSet::new(), None)?;
        // Same size, at once: with a coarse clock the mtime does not move (made so here, whatever this clock does).
        let mtime = std::fs::metadata(&f)?.modified()?;
        std::fs::write(&f, "after!")?;
        std::fs::File::options().write(true).open(&f)?.set_modified(mtime)?;
        let cache: HashMap<String, Entry> = first.iter().map(|(k, v)| (k.clone(), *v)).collect();
        let (second, _) = scan(dir.path(), &[], &IgnoreRules::default(), &cache, &HashSet::new(), None)?;
        assert_ne!(first["same.txt"].hash, second["same.txt"].hash);
        Ok(())
    }

    #[test]
    fn diff_finds_created_modified_deleted() {
        let before: Snapshot = [("a".to_string(), entry(1)), ("b".to_string(), entry(2))].into_iter().collect();
        let after: Snapshot = [("a".to_string(), entry(9)), ("c".to_string(), entry(3))].into_iter().collect();
        let d = diff(&before, &after);
        let kinds: Vec<(&str, ChangeKind)> = d.iter().map(|c| (c.path.as_str(), c.kind)).collect();
        assert_eq!(kinds, vec![("a", ChangeKind::Modified), ("b", ChangeKind::Deleted), ("c", ChangeKind::Created)]);
    }

    #[test]
    fn ignore_rules_nest_negate_and_follow_their_files() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let w = |p: &str, c: &str| -> std::io::Result<()> {
            let path = dir.path().join(p);
            std::fs::create_dir_all(path.parent().unwrap_or(dir.path()))?;
            std::fs::write(path, c)
        };
        w(".gitignore", "*.log\n!keep.log\n")?;
        w("sub/.gitignore", "local/\n")?;
        w("sub/.ignore", "!local/\nscratch.txt\n")?;
        w("a.log", "x")?;
        w("keep.log", "x")?;
        w(".hidden", "x")?;
        w("sub/local/x.txt", "x")?;
        w("sub/scratch.txt", "x")?;
        w("sub/y.txt", "x")?;
        w("sub/deep/z.log", "x")?;
        let rules = IgnoreRules::default();
        let names = |rules: &IgnoreRules| -> Result<Vec<String>, EngineError> {
            let (snap, _) = scan(dir.path(), &[], rules, &HashMap::new(), &HashSet::new(), None)?;
            Ok(snap.into_keys().collect())
        };
        // .ignore outranks .gitignore in its directory; the deepest rule that speaks wins.
        assert_eq!(
            names(&rules)?,
            vec![".gitignore", ".hidden", "keep.log", "sub/.gitignore", "sub/.ignore", "sub/local/x.txt", "sub/y.txt"]
        );
        // A changed rules file is read again.
        std::thread::sleep(std::time::Duration::from_millis(20));
        w(".gitignore", "*.log\n!keep.log\n.hidden\n")?;
        assert!(!names(&rules)?.contains(&".hidden".to_string()));
        Ok(())
    }

    #[test]
    fn scan_skips_git_and_ignored_and_reports_new_blobs() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join(".gitignore"), "target/\n")?;
        std::fs::create_dir_all(dir.path().join("target/debug"))?;
        std::fs::write(dir.path().join("target/debug/big.bin"), "build output")?;
        std::fs::create_dir_all(dir.path().join(".git"))?;
        std::fs::write(dir.path().join(".git/HEAD"), "ref")?;
        std::fs::create_dir_all(dir.path().join("journal"))?;
        std::fs::write(dir.path().join("journal/db"), "x")?;
        std::fs::write(dir.path().join("a.txt"), "hello")?;
        let (snap, blobs) = scan(
            dir.path(),
            &[dir.path().join("journal")],
            &IgnoreRules::default(),
            &HashMap::new(),
            &HashSet::new(),
            Some(&HashSet::new()),
        )?;
        assert_eq!(snap.keys().collect::<Vec<_>>(), vec![".gitignore", "a.txt"]);
        assert_eq!(blobs.len(), 2);
        assert!(blobs.iter().any(|b| b.1 == b"hello"));
        Ok(())
    }
}
