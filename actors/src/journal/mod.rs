//! The journal: an append-only, gap-free sequence of versioned, checksummed events in sled, with the projections
//! kept beside it and content-addressed blobs for file pre-images.
//!
//! Layout (sled trees): `events` (big-endian seq of a block's first event → a block of records), `tasks`
//! (`project/id` → [`TaskView`]), `projects` (name → [`ProjectView`]), `blobs` (BLAKE3 hash → bytes), `meta`
//! (`applied_seq`: the last event folded into the persisted projections). Events are packed into blocks — one sled
//! insert for all the events a commit writes, each record still individually versioned and checksummed — because
//! sled's cost is per key. Projections touched by a commit are written once, after its block; on open, any events
//! past `applied_seq` are folded in again, so a crash between the two loses nothing.
//!
//! [`Journal`] itself is synchronous and does not flush: [`Journal::append`] commits at once, while
//! [`Journal::stage`] + [`Journal::commit`] let the `StateJournal` actor — the only writer in a running system —
//! group appends into one block and one flush (group commit).

pub mod codec;
pub mod event;
pub mod projection;
pub mod recover;
pub mod seal;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub use event::{Event, EventRecord, Scope, FORMAT_VERSION};
pub use projection::{AttemptView, ProjectView, State, TaskView, Touched};
pub use seal::{Loss, Seal};

use crate::error::{JournalError, RecordError};
use crate::types::{ContentHash, TaskKey};
use event::IntentRecorded;

pub use crate::settings::Durability;

/// Selects events when scanning.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only this project's events.
    pub project: Option<String>,
    /// Only this task's events.
    pub task: Option<TaskKey>,
    /// Only these kinds (codes into [`Event::KINDS`]); empty means all.
    pub kinds: Vec<u16>,
    /// Only events at or after this time (ms since the epoch).
    pub since_ms: Option<i64>,
    /// Only events after this sequence number.
    pub after_seq: u64,
}

impl EventFilter {
    fn matches_header(&self, h: &codec::Header<'_>, task_key: &Option<Vec<u8>>) -> bool {
        if !self.kinds.is_empty() && !self.kinds.contains(&h.kind) {
            return false;
        }
        if let Some(since) = self.since_ms {
            if h.time_us < since.saturating_mul(1000) {
                return false;
            }
        }
        if let Some(k) = task_key {
            if h.scope_key != k.as_slice() {
                return false;
            }
        }
        if let Some(p) = &self.project {
            let sk = h.scope_key;
            let pb = p.as_bytes();
            let same = sk == pb || (sk.len() > pb.len() && sk.starts_with(pb) && sk[pb.len()] == b'/');
            if !same {
                return false;
            }
        }
        true
    }
}

/// One problem `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What is damaged: `event 42`, `task api/x`, `sequence`.
    pub about: String,
    /// What is wrong.
    pub what: String,
}

/// What `verify` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Events checked.
    pub events: u64,
    /// Projection records checked.
    pub projections: u64,
    /// Blobs checked.
    pub blobs: u64,
    /// Everything wrong.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// True when nothing is wrong.
    pub fn is_whole(&self) -> bool {
        self.problems.is_empty()
    }
}

/// What [`Journal::stage`] took in.
#[derive(Debug)]
pub struct Staged {
    /// The events as stored.
    pub records: Vec<EventRecord>,
    /// The tasks whose views they changed.
    pub tasks: Vec<TaskKey>,
}

/// The sled-backed event journal.
pub struct Journal {
    path: PathBuf,
    db: sled::Db,
    events: sled::Tree,
    tasks: sled::Tree,
    projects: sled::Tree,
    /// Each task's open intents (a projection, like `tasks`).
    intents: sled::Tree,
    blobs: sled::Tree,
    meta: sled::Tree,
    state: State,
    next_seq: u64,
    /// Records appended and folded in but not yet written: `(first seq, encoded records)`.
    staged: Vec<Vec<u8>>,
    staged_bytes: usize,
    /// Projections touched by staged records.
    staged_touched: Vec<Touched>,
    /// Damaged records found when opening (their projections could not be folded).
    damaged_at_open: Vec<Problem>,
    /// The seal each flush writes (see [`seal`]).
    sealing: Arc<std::sync::Mutex<Sealing>>,
    /// What the seal says this journal lost, if anything: it then takes no new events.
    loss: Option<Loss>,
    /// Applied to every event staged ([`Event::redacted`]): nothing reaches the journal unredacted.
    redactor: Arc<crate::redact::Redactor>,
}

/// The seal a flush is to write, and the last one written.
#[derive(Debug, Default)]
struct Sealing {
    /// The last record committed.
    pending: Option<Seal>,
    /// The sequence number of the last seal written.
    written: Option<u64>,
    /// False when the journal lost records: the seal is the evidence, never overwritten.
    enabled: bool,
    /// When a seal was last written: the flushes of a busy run seal at most every [`SEAL_EVERY`].
    at: Option<std::time::Instant>,
}

/// How often the flushes of a run under way write the seal (a seal that lags is safe: it only claims less).
const SEAL_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

const APPLIED_SEQ: &[u8] = b"applied_seq";

/// A block is closed once its records reach this size.
const MAX_BLOCK_BYTES: usize = 64 * 1024;

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

impl Journal {
    /// Opens (creating when `create`) the journal at `path`.
    pub fn open(path: &Path, create: bool) -> Result<Journal, JournalError> {
        if !create && !path.join("db").exists() && !path.join("conf").exists() {
            return Err(JournalError::Missing { path: path.to_path_buf() });
        }
        let storage = |source| JournalError::storage(path, source);
        let db =
            sled::Config::new().path(path).cache_capacity(64 * 1024 * 1024).flush_every_ms(Some(200)).open().map_err(
                |e| match &e {
                    sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
                        JournalError::Locked { path: path.to_path_buf() }
                    }
                    sled::Error::Corruption { .. } => {
                        JournalError::Damaged { path: path.to_path_buf(), what: e.to_string() }
                    }
                    _ => storage(e),
                },
            )?;
        let events = db.open_tree("events").map_err(storage)?;
        let tasks = db.open_tree("tasks").map_err(storage)?;
        let projects = db.open_tree("projects").map_err(storage)?;
        let intents = db.open_tree("intents").map_err(storage)?;
        let blobs = db.open_tree("blobs").map_err(storage)?;
        let meta = db.open_tree("meta").map_err(storage)?;
        let next_seq = match events.last().map_err(storage)? {
            Some((k, v)) => {
                let first = seq_of(&k)?;
                let count = codec::decode_block(&v).map(|b| b.records.len() as u64).unwrap_or(1);
                first + count
            }
            None => 1,
        };
        let mut j = Journal {
            path: path.to_path_buf(),
            db,
            events,
            tasks,
            projects,
            intents,
            blobs,
            meta,
            state: State::default(),
            next_seq,
            staged: Vec::new(),
            staged_bytes: 0,
            staged_touched: Vec::new(),
            damaged_at_open: Vec::new(),
            sealing: Arc::default(),
            loss: None,
            redactor: Arc::default(),
        };
        j.load_state()?;
        j.check_seal();
        Ok(j)
    }

    /// Loads the persisted projections and folds in any events past them.
    fn load_state(&mut self) -> Result<(), JournalError> {
        let storage = |source| JournalError::storage(&self.path, source);
        let applied = match self.meta.get(APPLIED_SEQ).map_err(storage)? {
            Some(v) => codec::decode_value::<u64>(&v)
                .map_err(|source| JournalError::Record { about: "meta applied_seq".into(), source })?,
            None => 0,
        };
        let mut state = State { last_seq: applied, ..State::default() };
        for item in self.projects.iter() {
            let (k, v) = item.map_err(storage)?;
            let about = format!("project {}", String::from_utf8_lossy(&k));
            let view: ProjectView = codec::decode_value(&v).map_err(|source| JournalError::Record { about, source })?;
            state.projects.insert(view.name.clone(), view);
        }
        for item in self.tasks.iter() {
            let (k, v) = item.map_err(storage)?;
            let about = format!("task {}", String::from_utf8_lossy(&k));
            let view: TaskView = codec::decode_value(&v).map_err(|source| JournalError::Record { about, source })?;
            state.tasks.insert(view.spec.key(), view);
        }
        for item in self.intents.iter() {
            let (k, v) = item.map_err(storage)?;
            let about = format!("intents of task {}", String::from_utf8_lossy(&k));
            let open: Vec<IntentRecorded> =
                codec::decode_value(&v).map_err(|source| JournalError::Record { about, source })?;
            if let Some(first) = open.first() {
                state.intents.insert(TaskKey::new(&first.project, &first.task), open);
            }
        }
        self.state = state;
        // Fold in what the persisted projections do not have yet.
        let mut touched = Vec::new();
        let mut damaged = Vec::new();
        let filter = EventFilter { after_seq: applied, ..EventFilter::default() };
        let results: Vec<_> = self.scan(filter).collect();
        for r in results {
            match r {
                Ok(rec) => touched.push(self.state.apply(&rec)),
                Err(JournalError::Record { about, source }) => {
                    damaged.push(Problem { about, what: source.to_string() })
                }
                Err(e) => return Err(e),
            }
        }
        if !touched.is_empty() {
            self.persist(&touched)?;
        }
        self.damaged_at_open = damaged;
        Ok(())
    }

    /// Holds the journal against its seal: a journal shorter than it was, or whose last sealed record differs,
    /// lost acknowledged records (see [`Journal::loss`]).
    fn check_seal(&mut self) {
        let present = self.next_seq - 1;
        let last = (present > 0).then(|| self.raw_event(present)).flatten().map(|b| Seal::of(present, &b));
        let loss = match Seal::read(&self.path) {
            Ok(Some(seal)) => seal.loss(present, self.raw_event(seal.seq).as_deref()),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!("{}: {e}; it is written anew", self.path.display());
                None
            }
        };
        if let Some(l) = &loss {
            tracing::error!("the journal at {} lost acknowledged records: {l}", self.path.display());
        }
        let mut s = self.sealing.lock().unwrap_or_else(|p| p.into_inner());
        *s = Sealing { pending: last, written: None, enabled: loss.is_none(), at: None };
        drop(s);
        self.loss = loss;
    }

    /// Acknowledged records this journal no longer has, as its seal tells; such a journal takes no new events
    /// (`orch-log recover DIR` copies what can still be read into a new one).
    pub fn loss(&self) -> Option<&Loss> {
        self.loss.as_ref()
    }

    /// Waits until no process (this one included) holds the journal's lock, up to `timeout`. sled releases its
    /// lock from background threads shortly after the last handle is dropped.
    pub fn wait_released(path: &Path, timeout: std::time::Duration) -> bool {
        let deadline = crate::process::deadline_after(std::time::Instant::now(), timeout);
        loop {
            match std::fs::File::open(path.join("db")) {
                Err(_) => return true,
                Ok(f) => {
                    if f.try_lock().is_ok() {
                        let _ = f.unlock();
                        return true;
                    }
                }
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Redacts every event staged from now on with `redactor` (a run's, [`crate::redact::Redactor::for_settings`]).
    pub fn set_redactor(&mut self, redactor: Arc<crate::redact::Redactor>) {
        self.redactor = redactor;
    }

    /// The journal directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current state (projections).
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Records that could not be folded in when the journal was opened.
    pub fn damaged_at_open(&self) -> &[Problem] {
        &self.damaged_at_open
    }

    /// The sequence number the next event will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// A handle for flushing from another thread.
    pub fn flusher(&self) -> Flusher {
        Flusher { db: self.db.clone(), path: Arc::new(self.path.clone()), sealing: self.sealing.clone() }
    }

    /// Appends events and writes them at once (not flushed); returns them as stored.
    pub fn append(&mut self, events: Vec<Event>) -> Result<Vec<EventRecord>, JournalError> {
        let staged = self.stage(events)?;
        self.commit()?;
        Ok(staged.records)
    }

    /// Appends events to the projections and to the block being built, without writing them yet; they are
    /// written by the next [`Journal::commit`]. Returns them as stored, with the tasks whose views they changed.
    pub fn stage(&mut self, events: Vec<Event>) -> Result<Staged, JournalError> {
        let time_us = now_us();
        self.stage_at(events.into_iter().map(|e| (time_us, e)).collect())
    }

    /// As [`Journal::stage`], each event with the time it is recorded at (a recovery keeps the original times).
    pub(crate) fn stage_at(&mut self, events: Vec<(i64, Event)>) -> Result<Staged, JournalError> {
        if let Some(loss) = &self.loss {
            return Err(JournalError::Lost { path: self.path.clone(), what: loss.to_string() });
        }
        // All or nothing: every event is encoded before any is staged, so one that cannot be stored leaves the
        // journal as it was.
        let mut records = Vec::with_capacity(events.len());
        let mut encoded = Vec::with_capacity(events.len());
        for (i, (time_us, event)) in events.into_iter().enumerate() {
            // Redacted first: what is stored, folded into the projections and handed to subscribers is the same.
            let event = event.redacted(&self.redactor);
            let seq = self.next_seq.checked_add(i as u64).ok_or(JournalError::SequenceExhausted)?;
            let bytes = codec::encode_event(time_us, &event)
                .map_err(|source| JournalError::Record { about: format!("event {seq}"), source })?;
            encoded.push(bytes);
            records.push(EventRecord { seq, time_us, event });
        }
        self.next_seq = self.next_seq.checked_add(records.len() as u64).ok_or(JournalError::SequenceExhausted)?;
        self.staged_bytes += encoded.iter().map(Vec::len).sum::<usize>();
        self.staged.extend(encoded);
        let mut tasks = Vec::new();
        for r in &records {
            let t = self.state.apply(r);
            if let Some(k) = &t.task {
                if !tasks.contains(k) {
                    tasks.push(k.clone());
                }
            }
            if t.project.is_some() || t.task.is_some() || t.intents.is_some() {
                self.staged_touched.push(t);
            }
        }
        Ok(Staged { records, tasks })
    }

    /// Bytes staged and not yet written.
    pub fn staged_bytes(&self) -> usize {
        self.staged_bytes
    }

    /// True when staged events wait for [`Journal::commit`].
    pub fn has_staged(&self) -> bool {
        !self.staged.is_empty()
    }

    /// Writes the staged events as one block, then the projections they touched (not flushed).
    pub fn commit(&mut self) -> Result<(), JournalError> {
        if self.staged.is_empty() {
            return Ok(());
        }
        // Blocks of at most ~64 KiB: sled stores larger values out of line, which costs more.
        let mut first = self.next_seq.checked_sub(self.staged.len() as u64).ok_or(JournalError::SequenceExhausted)?;
        let mut batch = sled::Batch::default();
        let mut start = 0;
        let mut size = 0;
        for (i, r) in self.staged.iter().enumerate() {
            size += r.len();
            if size >= MAX_BLOCK_BYTES || i + 1 == self.staged.len() {
                batch.insert(&seq_key(first), codec::encode_block(&self.staged[start..=i]));
                first += (i + 1 - start) as u64;
                start = i + 1;
                size = 0;
            }
        }
        self.events.apply_batch(batch).map_err(|source| JournalError::storage(&self.path, source))?;
        if let Some(last) = self.staged.last() {
            let seal = Seal::of(self.next_seq - 1, last);
            self.sealing.lock().unwrap_or_else(|p| p.into_inner()).pending = Some(seal);
        }
        self.staged.clear();
        self.staged_bytes = 0;
        let touched = std::mem::take(&mut self.staged_touched);
        self.persist(&touched)
    }

    /// Writes the projection records named in `touched`, then `applied_seq`.
    fn persist(&mut self, touched: &[Touched]) -> Result<(), JournalError> {
        let storage = |source| JournalError::storage(&self.path, source);
        let mut projects: Vec<&String> = touched.iter().filter_map(|t| t.project.as_ref()).collect();
        projects.sort();
        projects.dedup();
        let mut tasks: Vec<&TaskKey> = touched.iter().filter_map(|t| t.task.as_ref()).collect();
        tasks.sort();
        tasks.dedup();
        for p in projects {
            if let Some(v) = self.state.projects.get(p) {
                let bytes = codec::encode_value(v)
                    .map_err(|source| JournalError::Record { about: format!("project {p}"), source })?;
                self.projects.insert(p.as_bytes(), bytes).map_err(storage)?;
            }
        }
        for k in tasks {
            if let Some(v) = self.state.tasks.get(k) {
                let bytes = codec::encode_value(v)
                    .map_err(|source| JournalError::Record { about: format!("task {k}"), source })?;
                self.tasks.insert(k.to_string().as_bytes(), bytes).map_err(storage)?;
            }
        }
        let mut intents: Vec<&TaskKey> = touched.iter().filter_map(|t| t.intents.as_ref()).collect();
        intents.sort();
        intents.dedup();
        for k in intents {
            match self.state.intents.get(k) {
                Some(open) => {
                    let bytes = codec::encode_value(open)
                        .map_err(|source| JournalError::Record { about: format!("intents of task {k}"), source })?;
                    self.intents.insert(k.to_string().as_bytes(), bytes).map_err(storage)?;
                }
                None => {
                    self.intents.remove(k.to_string().as_bytes()).map_err(storage)?;
                }
            }
        }
        let applied = codec::encode_value(&self.state.last_seq)
            .map_err(|source| JournalError::Record { about: "meta applied_seq".into(), source })?;
        self.meta.insert(APPLIED_SEQ, applied).map_err(storage)?;
        Ok(())
    }

    /// Flushes everything written so far to disk.
    pub fn flush(&self) -> Result<(), JournalError> {
        self.flusher().flush_and_seal(true)
    }

    /// Stores a blob under its content hash (idempotent).
    pub fn put_blob(&self, data: &[u8]) -> Result<ContentHash, JournalError> {
        let hash = ContentHash::of(data);
        self.put_blob_hashed(hash, data)?;
        Ok(hash)
    }

    /// Stores a blob whose hash the caller already computed.
    pub fn put_blob_hashed(&self, hash: ContentHash, data: &[u8]) -> Result<(), JournalError> {
        let storage = |source| JournalError::storage(&self.path, source);
        if !self.blobs.contains_key(hash.0).map_err(storage)? {
            self.blobs.insert(hash.0, codec::encode_raw(data)).map_err(storage)?;
        }
        Ok(())
    }

    /// Reads a blob back, verified against its checksum and its hash.
    pub fn get_blob(&self, hash: &ContentHash) -> Result<Option<Vec<u8>>, JournalError> {
        let storage = |source| JournalError::storage(&self.path, source);
        let Some(v) = self.blobs.get(hash.0).map_err(storage)? else { return Ok(None) };
        let about = || format!("blob {}", hash.to_hex());
        let data = codec::decode_raw(&v).map_err(|source| JournalError::Record { about: about(), source })?;
        if ContentHash::of(data) != *hash {
            return Err(JournalError::Record {
                about: about(),
                source: RecordError::Decode("content does not match its hash".into()),
            });
        }
        Ok(Some(data.to_vec()))
    }

    /// Iterates over the written events that match `filter`, oldest first. A damaged record is yielded as an
    /// error naming its sequence number; iteration goes on past it.
    pub fn scan(&self, filter: EventFilter) -> impl Iterator<Item = Result<EventRecord, JournalError>> + '_ {
        let task_key = filter.task.as_ref().map(|k| k.to_string().into_bytes());
        let start = filter.after_seq + 1;
        // The block holding `start` begins at or before it.
        let from = match self.events.range(..=seq_key(start)).next_back() {
            Some(Ok((k, _))) => seq_of(&k).unwrap_or(start),
            _ => start,
        };
        self.events.range(seq_key(from)..).flat_map(move |item| {
            let mut out: Vec<Result<EventRecord, JournalError>> = Vec::new();
            let (k, v) = match item {
                Ok(kv) => kv,
                Err(source) => {
                    out.push(Err(JournalError::storage(&self.path, source)));
                    return out;
                }
            };
            let first = match seq_of(&k) {
                Ok(s) => s,
                Err(e) => {
                    out.push(Err(e));
                    return out;
                }
            };
            let block = match codec::decode_block(&v) {
                Ok(b) => b,
                Err(source) => {
                    out.push(Err(JournalError::Record { about: format!("block at event {first}"), source }));
                    return out;
                }
            };
            for (i, bytes) in block.records.iter().enumerate() {
                let seq = first + i as u64;
                if seq < start {
                    continue;
                }
                let about = || format!("event {seq}");
                match codec::decode_header(bytes) {
                    Ok(h) if !filter.matches_header(&h, &task_key) => {}
                    Ok(_) => out.push(
                        codec::decode_event(seq, bytes)
                            .map_err(|source| JournalError::Record { about: about(), source }),
                    ),
                    Err(source) => out.push(Err(JournalError::Record { about: about(), source })),
                }
            }
            out
        })
    }

    /// Checks every record's checksum and decoding, the gap-free sequence, and the projections and blobs.
    pub fn verify(&self) -> Result<VerifyReport, JournalError> {
        let storage = |source| JournalError::storage(&self.path, source);
        let mut report = VerifyReport::default();
        if let Some(l) = &self.loss {
            report.problems.push(Problem { about: "seal".into(), what: l.to_string() });
        }
        let mut expected = 1u64;
        for item in self.events.iter() {
            let (k, v) = item.map_err(storage)?;
            let first = match seq_of(&k) {
                Ok(s) => s,
                Err(e) => {
                    report.problems.push(Problem { about: "sequence".into(), what: e.to_string() });
                    continue;
                }
            };
            if first != expected {
                let what = if first > expected {
                    format!("events {expected}..={} are missing", first - 1)
                } else {
                    format!("event {first} is out of order (expected {expected})")
                };
                report.problems.push(Problem { about: "sequence".into(), what });
            }
            let block = match codec::decode_block(&v) {
                Ok(b) => b,
                Err(e) => {
                    report.problems.push(Problem { about: format!("block at event {first}"), what: e.to_string() });
                    expected = first + 1;
                    continue;
                }
            };
            let mut record_problems = 0;
            for (i, bytes) in block.records.iter().enumerate() {
                let seq = first + i as u64;
                report.events += 1;
                if let Err(e) = codec::decode_event(seq, bytes) {
                    record_problems += 1;
                    report.problems.push(Problem { about: format!("event {seq}"), what: e.to_string() });
                }
            }
            if !block.checksum_ok && record_problems == 0 {
                report.problems.push(Problem {
                    about: format!("block at event {first}"),
                    what: "block checksum mismatch (its layout was changed)".into(),
                });
            }
            expected = first + block.records.len() as u64;
        }
        for item in self.tasks.iter() {
            let (k, v) = item.map_err(storage)?;
            report.projections += 1;
            if let Err(e) = codec::decode_value::<TaskView>(&v) {
                report
                    .problems
                    .push(Problem { about: format!("task {}", String::from_utf8_lossy(&k)), what: e.to_string() });
            }
        }
        for item in self.intents.iter() {
            let (k, v) = item.map_err(storage)?;
            report.projections += 1;
            if let Err(e) = codec::decode_value::<Vec<IntentRecorded>>(&v) {
                report.problems.push(Problem {
                    about: format!("intents of task {}", String::from_utf8_lossy(&k)),
                    what: e.to_string(),
                });
            }
        }
        for item in self.projects.iter() {
            let (k, v) = item.map_err(storage)?;
            report.projections += 1;
            if let Err(e) = codec::decode_value::<ProjectView>(&v) {
                report
                    .problems
                    .push(Problem { about: format!("project {}", String::from_utf8_lossy(&k)), what: e.to_string() });
            }
        }
        for item in self.blobs.iter() {
            let (k, v) = item.map_err(storage)?;
            report.blobs += 1;
            let about = format!("blob {}", hex(&k));
            match codec::decode_raw(&v) {
                Ok(data) if blake3::hash(data).as_bytes().as_slice() == k.as_ref() => {}
                Ok(_) => report.problems.push(Problem { about, what: "content does not match its hash".into() }),
                Err(e) => report.problems.push(Problem { about, what: e.to_string() }),
            }
        }
        Ok(report)
    }

    /// Every blob that can be read back whole, with its hash; damaged ones are named.
    pub(crate) fn readable_blobs(&self) -> Vec<Result<(ContentHash, Vec<u8>), String>> {
        let mut out = Vec::new();
        for item in self.blobs.iter() {
            let Ok((k, v)) = item else {
                out.push(Err("a blob key that cannot be read".to_string()));
                continue;
            };
            let about = format!("blob {}", hex(&k));
            match (<[u8; 32]>::try_from(k.as_ref()), codec::decode_raw(&v)) {
                (Ok(h), Ok(data)) if blake3::hash(data).as_bytes() == &h => {
                    out.push(Ok((ContentHash(h), data.to_vec())))
                }
                (_, Err(e)) => out.push(Err(format!("{about}: {e}"))),
                _ => out.push(Err(format!("{about}: content does not match its hash"))),
            }
        }
        out
    }

    /// The block holding event `seq`: its first seq and its records.
    fn block_of(&self, seq: u64) -> Option<(u64, Vec<Vec<u8>>)> {
        let (k, v) = self.events.range(..=seq_key(seq)).next_back()?.ok()?;
        let first = seq_of(&k).ok()?;
        let block = codec::decode_block(&v).ok()?;
        let records: Vec<Vec<u8>> = block.records.iter().map(|r| r.to_vec()).collect();
        ((seq - first) < records.len() as u64).then_some((first, records))
    }

    /// Replaces the stored bytes of event `seq` (or stores them as a new block there), bypassing encoding. For
    /// tests of damage detection only.
    #[doc(hidden)]
    pub fn corrupt_event_for_tests(&self, seq: u64, bytes: &[u8]) -> Result<(), JournalError> {
        let storage = |source| JournalError::storage(&self.path, source);
        match self.block_of(seq) {
            Some((first, mut records)) => {
                records[(seq - first) as usize] = bytes.to_vec();
                self.events.insert(seq_key(first), codec::encode_block(&records)).map_err(storage)?;
            }
            None => {
                self.events.insert(seq_key(seq), codec::encode_block(&[bytes])).map_err(storage)?;
            }
        }
        self.flush()
    }

    /// Reads the raw stored bytes of event `seq`. For tests of damage detection only.
    #[doc(hidden)]
    pub fn raw_event_for_tests(&self, seq: u64) -> Option<Vec<u8>> {
        self.raw_event(seq)
    }

    fn raw_event(&self, seq: u64) -> Option<Vec<u8>> {
        let (first, records) = self.block_of(seq)?;
        records.into_iter().nth((seq - first) as usize)
    }
}

/// A key's bytes in lower-case hex (a blob's key is its content hash).
fn hex(k: &[u8]) -> String {
    k.iter().map(|b| format!("{b:02x}")).collect()
}

/// Flushes the journal's database; cheap to clone and safe to use off the writer's thread.
#[derive(Clone)]
pub struct Flusher {
    db: sled::Db,
    path: Arc<PathBuf>,
    sealing: Arc<std::sync::Mutex<Sealing>>,
}

impl Flusher {
    /// Blocks until everything written so far is on disk, then seals it (see [`seal`]) unless a seal was written
    /// less than 100 ms ago.
    pub fn flush(&self) -> Result<(), JournalError> {
        self.flush_and_seal(false)
    }

    /// As [`Flusher::flush`]; `always`: seal whenever there is something new to seal.
    pub fn flush_and_seal(&self, always: bool) -> Result<(), JournalError> {
        // What was committed before the flush starts is on disk when it returns: that is what the seal may claim.
        let pending = {
            let s = self.sealing.lock().unwrap_or_else(|p| p.into_inner());
            let due = always || s.at.is_none_or(|t| t.elapsed() >= SEAL_EVERY);
            s.pending.filter(|p| due && s.enabled && s.written != Some(p.seq))
        };
        self.db.flush().map_err(|source| JournalError::storage(&self.path, source))?;
        if let Some(seal) = pending {
            // A seal that cannot be written weakens the check; it never stops the run.
            match seal.write(&self.path) {
                Ok(()) => {
                    let mut s = self.sealing.lock().unwrap_or_else(|p| p.into_inner());
                    s.written = Some(s.written.map_or(seal.seq, |w| w.max(seal.seq)));
                    s.at = Some(std::time::Instant::now());
                }
                Err(e) => tracing::warn!("the journal's seal could not be written in {}: {e}", self.path.display()),
            }
        }
        Ok(())
    }
}

fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

fn seq_of(k: &[u8]) -> Result<u64, JournalError> {
    let arr: [u8; 8] =
        k.try_into().map_err(|_| JournalError::Sequence(format!("an event key of {} bytes (expected 8)", k.len())))?;
    Ok(u64::from_be_bytes(arr))
}
