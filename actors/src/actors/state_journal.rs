//! The StateJournal actor: the only writer of the sled database in a running system.
//!
//! Appends are folded into the projections and staged on the actor's thread (in-memory work); staged events are
//! written to sled as one block per commit, and the flush that makes them durable runs off-thread. With
//! `durability = "sync"` an append is acknowledged only after a flush that began after it was staged; appends that
//! arrive while a flush is running are committed and flushed together next (group commit). With `"batch"` appends
//! are acknowledged at once, committed every few milliseconds (or every 64 KiB), and sled flushes in the
//! background.

use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::{broadcast, oneshot};

use crate::error::{EngineError, JournalError};
use crate::journal::{Durability, Event, EventRecord, Flusher, Journal, State, TaskView};
use crate::ops::{self, ImportReport};
use crate::settings::ProjectSettings;
use crate::types::ContentHash;

/// Appends events; resolves once they are as durable as configured.
#[derive(Message)]
#[rtype(result = "Result<Appended, JournalError>")]
pub struct Append(pub Vec<Event>);

/// What an append stored.
#[derive(Debug, Clone)]
pub struct Appended {
    /// The events as stored, with their sequence numbers.
    pub records: Vec<Arc<EventRecord>>,
    /// The task views the events changed, after the change (none for events that change no view).
    pub tasks: Vec<TaskView>,
}

/// Stores blobs (pre-images); resolves once they are as durable as configured.
#[derive(Message)]
#[rtype(result = "Result<(), JournalError>")]
pub struct PutBlobs(pub Vec<(ContentHash, Vec<u8>)>);

/// A copy of the whole current state.
#[derive(Message)]
#[rtype(result = "State")]
pub struct GetState;

/// A receiver of every event appended from now on.
#[derive(Message)]
#[rtype(result = "broadcast::Receiver<Arc<EventRecord>>")]
pub struct Subscribe;

/// Imports the configured projects and tasks (idempotent by id).
#[derive(Message)]
#[rtype(result = "Result<ImportReport, EngineError>")]
pub struct Import(pub Vec<ProjectSettings>);

/// Flushes everything; resolves when it is on disk.
#[derive(Message)]
#[rtype(result = "Result<(), JournalError>")]
pub struct Flush;

/// The content of a blob (a pre-image), checked against its hash.
#[derive(Message)]
#[rtype(result = "Result<Option<Vec<u8>>, JournalError>")]
pub struct GetBlob(pub ContentHash);

impl Handler<GetBlob> for StateJournal {
    type Result = Result<Option<Vec<u8>>, JournalError>;

    fn handle(&mut self, msg: GetBlob, _ctx: &mut Self::Context) -> Self::Result {
        self.journal.get_blob(&msg.0)
    }
}

/// What a task's attempts before `before` changed: per path, the content before the task first changed it.
#[derive(Message)]
#[rtype(result = "Result<std::collections::BTreeMap<String, Option<ContentHash>>, JournalError>")]
pub struct EarlierChanges {
    /// The task.
    pub task: crate::types::TaskKey,
    /// Attempts numbered below this one.
    pub before: u32,
    /// Only events after this sequence number (the task's own start).
    pub after_seq: u64,
}

impl Handler<EarlierChanges> for StateJournal {
    type Result = Result<std::collections::BTreeMap<String, Option<ContentHash>>, JournalError>;

    fn handle(&mut self, msg: EarlierChanges, _ctx: &mut Self::Context) -> Self::Result {
        if self.journal.has_staged() {
            self.journal.commit()?;
        }
        let mut out = std::collections::BTreeMap::new();
        let code = Event::KINDS.iter().position(|k| *k == "file_changed").unwrap_or(0) as u16;
        let filter = crate::journal::EventFilter {
            task: Some(msg.task),
            kinds: vec![code],
            after_seq: msg.after_seq,
            ..Default::default()
        };
        for rec in self.journal.scan(filter) {
            if let Event::FileChanged(fc) = rec?.event {
                if fc.attempt < msg.before {
                    out.entry(fc.path).or_insert(fc.before);
                }
            }
        }
        Ok(out)
    }
}

/// Flushes and stops; the journal is released once the actor is gone (the receiver [`StateJournal::new`] returns
/// fires then).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Close;

type Waiter = oneshot::Sender<Result<(), String>>;

/// In batch mode, staged events are committed at the latest this long after the first of them.
const BATCH_COMMIT_DELAY: std::time::Duration = std::time::Duration::from_millis(2);
/// In batch mode, staged events are committed as soon as they reach this size.
const BATCH_COMMIT_BYTES: usize = 64 * 1024;

/// Fires when dropped: declared last in the actor so that it drops after the journal.
struct DropSignal(Option<oneshot::Sender<()>>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// See the module documentation.
pub struct StateJournal {
    journal: Journal,
    flusher: Flusher,
    durability: Durability,
    flushing: bool,
    waiting: Vec<Waiter>,
    events: broadcast::Sender<Arc<EventRecord>>,
    commit_scheduled: bool,
    /// Held only for its drop, which signals that the journal is released; declared last so it drops last.
    _released: DropSignal,
}

impl StateJournal {
    /// Wraps an open journal; the receiver fires once the actor, and with it the journal, is gone.
    pub fn new(journal: Journal, durability: Durability) -> (Self, oneshot::Receiver<()>) {
        let flusher = journal.flusher();
        let (events, _) = broadcast::channel(8192);
        let (tx, rx) = oneshot::channel();
        let actor = StateJournal {
            journal,
            flusher,
            durability,
            flushing: false,
            waiting: Vec::new(),
            events,
            commit_scheduled: false,
            _released: DropSignal(Some(tx)),
        };
        (actor, rx)
    }

    /// A future that resolves when what was written so far is durable (per the configured durability).
    fn durable(&mut self, ctx: &mut Context<Self>) -> impl std::future::Future<Output = Result<(), JournalError>> {
        self.durable_as(ctx, self.durability)
    }

    /// [`Self::durable`] with the given durability, whatever the journal's setting.
    fn durable_as(
        &mut self,
        ctx: &mut Context<Self>,
        durability: Durability,
    ) -> impl std::future::Future<Output = Result<(), JournalError>> {
        let rx = match durability {
            Durability::Batch => {
                if self.journal.staged_bytes() >= BATCH_COMMIT_BYTES {
                    self.commit();
                } else if self.journal.has_staged() && !self.commit_scheduled {
                    self.commit_scheduled = true;
                    ctx.run_later(BATCH_COMMIT_DELAY, |act, _| {
                        act.commit_scheduled = false;
                        act.commit();
                    });
                }
                None
            }
            Durability::Sync => {
                let (tx, rx) = oneshot::channel();
                self.waiting.push(tx);
                if !self.flushing {
                    self.start_flush(ctx);
                }
                Some(rx)
            }
        };
        async move {
            match rx {
                None => Ok(()),
                Some(rx) => match rx.await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(JournalError::Flush(e)),
                    Err(_) => Err(JournalError::WriterGone),
                },
            }
        }
    }

    /// Writes what is staged; a failure is logged and the events stay staged for the next commit.
    fn commit(&mut self) -> bool {
        match self.journal.commit() {
            Ok(()) => true,
            Err(e) => {
                tracing::error!("writing journal events failed (they stay staged): {e}");
                false
            }
        }
    }

    /// Commits what is staged and starts one flush for everyone waiting now; whoever arrives meanwhile waits for
    /// the next.
    fn start_flush(&mut self, ctx: &mut Context<Self>) {
        self.flushing = true;
        let batch = std::mem::take(&mut self.waiting);
        if let Err(e) = self.journal.commit() {
            for w in batch {
                let _ = w.send(Err(e.to_string()));
            }
            self.flushing = false;
            return;
        }
        let flusher = self.flusher.clone();
        let fut = async move {
            let res = tokio::task::spawn_blocking(move || flusher.flush()).await;
            match res {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(format!("flush task failed: {e}")),
            }
        };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            for w in batch {
                let _ = w.send(res.clone());
            }
            act.flushing = false;
            if !act.waiting.is_empty() {
                act.start_flush(ctx);
            }
        }));
    }

    fn append(&mut self, events: Vec<Event>) -> Result<Appended, JournalError> {
        // Only the views these events changed: an agent's output line changes none, and costs no clone.
        let staged = self.journal.stage(events)?;
        let tasks = staged.tasks.iter().filter_map(|k| self.journal.state().tasks.get(k).cloned()).collect();
        let records: Vec<Arc<EventRecord>> = staged.records.into_iter().map(Arc::new).collect();
        for r in &records {
            // No subscriber is fine.
            let _ = self.events.send(r.clone());
        }
        Ok(Appended { records, tasks })
    }
}

impl Actor for StateJournal {
    type Context = Context<Self>;

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        if let Err(e) = self.journal.commit().and_then(|()| self.journal.flush()) {
            tracing::error!("final journal flush failed: {e}");
        }
    }
}

impl Handler<Append> for StateJournal {
    type Result = ResponseFuture<Result<Appended, JournalError>>;

    fn handle(&mut self, msg: Append, ctx: &mut Self::Context) -> Self::Result {
        #[cfg(debug_assertions)]
        if msg.0.iter().any(|e| matches!(e, Event::Decided(_))) {
            crate::fault::point("journal:decided");
        }
        // An intent is on disk before whatever it announces starts: that is what it is for.
        let intent = msg.0.iter().any(|e| matches!(e, Event::IntentRecorded(_)));
        match self.append(msg.0) {
            Ok(appended) => {
                let durable = self.durable_as(ctx, if intent { Durability::Sync } else { self.durability });
                Box::pin(async move {
                    durable.await?;
                    Ok(appended)
                })
            }
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }
}

impl Handler<PutBlobs> for StateJournal {
    type Result = ResponseFuture<Result<(), JournalError>>;

    fn handle(&mut self, msg: PutBlobs, ctx: &mut Self::Context) -> Self::Result {
        for (hash, data) in &msg.0 {
            if let Err(e) = self.journal.put_blob_hashed(*hash, data) {
                return Box::pin(async move { Err(e) });
            }
        }
        let durable = self.durable(ctx);
        Box::pin(durable)
    }
}

/// What a control request does with the journal: reads it, and returns its answer with the events to append (none
/// for a read). Run on the journal's actor, so that what it read is still true when its events are appended.
pub type ControlFn<R> = Box<dyn FnOnce(&Journal) -> Result<(R, Vec<Event>), EngineError> + Send>;

/// A request from outside a run (`orch status`, `orch answer`, `orch-log events` while `orch run` holds the
/// journal): a [`ControlFn`]. Answers its result and the task views its events changed.
#[derive(Message)]
#[rtype(result = "Result<(R, Vec<TaskView>), EngineError>")]
pub struct Control<R: Send + 'static>(pub ControlFn<R>);

impl<R: Send + 'static> Handler<Control<R>> for StateJournal {
    type Result = ResponseFuture<Result<(R, Vec<TaskView>), EngineError>>;

    fn handle(&mut self, msg: Control<R>, ctx: &mut Self::Context) -> Self::Result {
        // What was appended so far must be readable (in `batch`, appends may be staged).
        if self.journal.has_staged() {
            if let Err(e) = self.journal.commit() {
                return Box::pin(async move { Err(e.into()) });
            }
        }
        let (answer, events) = match (msg.0)(&self.journal) {
            Ok(r) => r,
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        if events.is_empty() {
            return Box::pin(async move { Ok((answer, Vec::new())) });
        }
        let appended = match self.append(events) {
            Ok(a) => a,
            Err(e) => return Box::pin(async move { Err(e.into()) }),
        };
        let durable = self.durable(ctx);
        Box::pin(async move {
            durable.await?;
            Ok((answer, appended.tasks))
        })
    }
}

/// Undo one attempt's changes (`on_retry = "rollback"`): every file it created, changed or deleted is restored from
/// its pre-image; a file changed since by someone else is a conflict, left alone. Journaled as `rolled_back`.
#[derive(Message)]
#[rtype(result = "Result<ops::RollbackReport, EngineError>")]
pub struct RollbackAttempt(pub crate::types::AttemptRef);

impl Handler<RollbackAttempt> for StateJournal {
    type Result = ResponseFuture<Result<ops::RollbackReport, EngineError>>;

    fn handle(&mut self, msg: RollbackAttempt, ctx: &mut Self::Context) -> Self::Result {
        // File writes on the journal's thread: rollback reads pre-images from it, and this keeps it ordered with
        // the attempt's own events. One attempt's files, once per retry. Its file changes must be readable first.
        if self.journal.has_staged() {
            if let Err(e) = self.journal.commit() {
                return Box::pin(async move { Err(e.into()) });
            }
        }
        let id = msg.0.key.to_string();
        if let Some(intent) = ops::rollback_intent(self.journal.state(), &id, Some(msg.0.attempt), false) {
            let durable =
                self.append(vec![intent]).and_then(|_| self.journal.commit()).and_then(|_| self.journal.flush());
            if let Err(e) = durable {
                return Box::pin(async move { Err(e.into()) });
            }
        }
        let (report, event) = match ops::rollback_files(&self.journal, &id, Some(msg.0.attempt), false) {
            Ok(r) => r,
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        if let Err(e) = self.append(vec![event]) {
            return Box::pin(async move { Err(e.into()) });
        }
        let durable = self.durable(ctx);
        Box::pin(async move {
            durable.await?;
            Ok(report)
        })
    }
}

impl Handler<GetState> for StateJournal {
    type Result = MessageResult<GetState>;

    fn handle(&mut self, _msg: GetState, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.journal.state().clone())
    }
}

impl Handler<Subscribe> for StateJournal {
    type Result = MessageResult<Subscribe>;

    fn handle(&mut self, _msg: Subscribe, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.events.subscribe())
    }
}

impl Handler<Import> for StateJournal {
    type Result = ResponseFuture<Result<ImportReport, EngineError>>;

    fn handle(&mut self, msg: Import, ctx: &mut Self::Context) -> Self::Result {
        let (events, report) = ops::import_events(self.journal.state(), &msg.0);
        if events.is_empty() {
            return Box::pin(async move { Ok(report) });
        }
        if let Err(e) = self.append(events) {
            return Box::pin(async move { Err(e.into()) });
        }
        let durable = self.durable(ctx);
        Box::pin(async move {
            durable.await?;
            Ok(report)
        })
    }
}

impl Handler<Close> for StateJournal {
    type Result = ();

    fn handle(&mut self, _msg: Close, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl Handler<Flush> for StateJournal {
    type Result = ResponseFuture<Result<(), JournalError>>;

    fn handle(&mut self, _msg: Flush, _ctx: &mut Self::Context) -> Self::Result {
        if let Err(e) = self.journal.commit() {
            return Box::pin(async move { Err(e) });
        }
        let flusher = self.flusher.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || flusher.flush_and_seal(true))
                .await
                .map_err(|_| JournalError::WriterGone)?
        })
    }
}
