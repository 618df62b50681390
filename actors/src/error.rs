//! Errors, split by consequence: [`RecordError`] describes one bad record (reported, survived), [`JournalError`]
//! stops whoever needs the journal, [`EngineError`] is what the embedding API returns.

use std::path::PathBuf;

use thiserror::Error;

/// Why one stored record could not be read.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// Shorter than its header says.
    #[error("truncated record ({len} bytes)")]
    Truncated {
        /// Bytes present.
        len: usize,
    },
    /// Written by a newer (or unknown) format.
    #[error("unknown record format version {version}")]
    UnknownVersion {
        /// The version byte found.
        version: u8,
    },
    /// The bytes are not what was written.
    #[error("checksum mismatch (stored {stored:08x}, computed {actual:08x})")]
    Checksum {
        /// The checksum stored in the record.
        stored: u32,
        /// The checksum of the bytes found.
        actual: u32,
    },
    /// The header names a kind this build does not know.
    #[error("unknown event kind code {kind}")]
    UnknownKind {
        /// The code found.
        kind: u16,
    },
    /// The payload does not decode.
    #[error("payload does not decode: {0}")]
    Decode(String),
    /// The value could not be encoded.
    #[error("cannot encode: {0}")]
    Encode(String),
    /// A field is too large for the format.
    #[error("{what} too large for the record format")]
    TooLarge {
        /// Which field.
        what: &'static str,
    },
}

/// Errors of the journal as a whole.
#[derive(Debug, Error)]
pub enum JournalError {
    /// Another process holds the journal.
    #[error("the journal at {path} is in use by another orch process (sled holds a lock on it); wait for that run to end or stop it")]
    Locked {
        /// The journal directory.
        path: PathBuf,
    },
    /// There is no journal at that path (read-only open).
    #[error("no journal at {path}: run `orch init` or `orch run` first, or pass --journal")]
    Missing {
        /// The journal directory.
        path: PathBuf,
    },
    /// sled failed.
    #[error("journal storage error at {path}: {source}")]
    Storage {
        /// The journal directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: sled::Error,
    },
    /// A record is damaged or unknown.
    #[error("journal record {about}: {source}")]
    Record {
        /// Which record: `event 42`, `task api/x`, `blob …`.
        about: String,
        /// What is wrong with it.
        #[source]
        source: RecordError,
    },
    /// The sequence has a hole or goes backwards.
    #[error("journal sequence broken: {0}")]
    Sequence(String),
    /// Writing the journal to disk failed (a full disk, an I/O error): what was appended may not be durable.
    #[error("the journal could not be written to disk: {0}")]
    Flush(String),
    /// The disk holding the journal is full.
    #[error(
        "the disk holding the journal ({path}) is full: nothing more can be recorded, so the run stops; free space \
         there, then `orch run` again goes on where it stopped"
    )]
    DiskFull {
        /// The journal directory.
        path: PathBuf,
    },
    /// The journal lost acknowledged records (its seal says so): it takes no new events.
    #[error(
        "the journal at {path} lost acknowledged records: {what}. Nothing more is written to it; \
         `orch-log recover DIR` copies every record that can still be read into a new journal"
    )]
    Lost {
        /// The journal directory.
        path: PathBuf,
        /// What is missing.
        what: String,
    },
    /// The journal's storage is damaged so that it cannot be opened at all.
    #[error("the journal at {path} is damaged and cannot be opened ({what}); `orch-log recover DIR` copies every record that can still be read into a new journal")]
    Damaged {
        /// The journal directory.
        path: PathBuf,
        /// What the storage said.
        what: String,
    },
    /// A journal is already there (a recovery writes a new one).
    #[error("{path} already holds a journal: recover into a new directory")]
    Exists {
        /// The directory.
        path: PathBuf,
    },
    /// The sequence numbers would overflow: nothing was staged.
    #[error("the journal's sequence numbers are exhausted; nothing was appended")]
    SequenceExhausted,
    /// The journal writer is gone (the actor stopped).
    #[error("the journal writer has stopped")]
    WriterGone,
}

/// Errors returned to programs that embed the engine.
#[derive(Debug, Error)]
pub enum EngineError {
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// No such task.
    #[error("unknown task {0}")]
    UnknownTask(String),
    /// No such project.
    #[error("unknown project {0}")]
    UnknownProject(String),
    /// The request is invalid in the task's current state.
    #[error("{0}")]
    InvalidRequest(String),
    /// `llm.required = true` and the LLM cannot be used.
    #[error("the LLM is required but not usable: {0}")]
    LlmRequired(String),
    /// Settings or a task that break a domain rule.
    #[error("invalid {0}")]
    Invalid(#[from] crate::validate::Invalid),
    /// `sandbox_required = true` and the kernel cannot enforce the sandbox.
    #[error("the agent sandbox is required but not available: {0}")]
    SandboxRequired(String),
    /// An actor is gone.
    #[error("the engine has stopped ({0})")]
    Stopped(String),
    /// Input/output outside the journal.
    #[error("{about}: {source}")]
    Io {
        /// What was being done.
        about: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl From<actix::MailboxError> for EngineError {
    fn from(e: actix::MailboxError) -> Self {
        EngineError::Stopped(e.to_string())
    }
}

impl JournalError {
    /// What a storage failure at the journal `path` means: a full disk said as such, else the storage's words.
    pub fn storage(path: &std::path::Path, source: sled::Error) -> JournalError {
        let full = match &source {
            sled::Error::Io(io) => {
                io.kind() == std::io::ErrorKind::StorageFull
                    || io.raw_os_error() == Some(28)
                    || io.to_string().contains("No space left on device")
            }
            _ => false,
        };
        if full {
            JournalError::DiskFull { path: path.to_path_buf() }
        } else {
            JournalError::Storage { path: path.to_path_buf(), source }
        }
    }
}
