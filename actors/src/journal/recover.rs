//! Recovery of a damaged journal: every record that can still be read is copied, in order and with its time, into a
//! new journal whose projections are rebuilt from them; so is every blob that reads back whole (the pre-images
//! rollback needs). The report says precisely what could not be saved: damaged records by sequence number, and
//! what the damaged journal's seal says it had and lost.

use std::path::Path;

use super::{EventFilter, Journal};
use crate::error::JournalError;

/// What a recovery saved and what it could not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoverReport {
    /// Events copied.
    pub events: u64,
    /// Blobs copied.
    pub blobs: u64,
    /// What could not be saved: damaged records and blobs, records lost before the recovery.
    pub lost: Vec<String>,
}

impl RecoverReport {
    /// Nothing was lost.
    pub fn is_complete(&self) -> bool {
        self.lost.is_empty()
    }
}

/// Writes into `to` (which must not hold a journal yet) a new journal holding everything of `from` that can be read.
/// Events keep their order and times; sequence numbers are made gap-free again where damaged records are left out.
pub fn recover(from: &Journal, to: &Path) -> Result<RecoverReport, JournalError> {
    if to.join("db").exists() || to.join("conf").exists() {
        return Err(JournalError::Exists { path: to.to_path_buf() });
    }
    let mut report = RecoverReport::default();
    if let Some(loss) = from.loss() {
        report.lost.push(loss.to_string());
    }
    let mut out = Journal::open(to, true)?;
    let mut batch = Vec::new();
    let mut expected = 1u64;
    for r in from.scan(EventFilter::default()) {
        match r {
            Ok(rec) => {
                if rec.seq > expected {
                    report.lost.push(format!("events {expected}..={} are missing", rec.seq - 1));
                }
                expected = rec.seq + 1;
                batch.push((rec.time_us, rec.event));
                if batch.len() == 1024 {
                    out.stage_at(std::mem::take(&mut batch))?;
                    out.commit()?;
                }
            }
            Err(JournalError::Record { about, source }) => report.lost.push(format!("{about}: {source}")),
            Err(e) => return Err(e),
        }
    }
    out.stage_at(batch)?;
    out.commit()?;
    report.events = out.next_seq() - 1;
    for b in from.readable_blobs() {
        match b {
            Ok((hash, data)) => {
                out.put_blob_hashed(hash, &data)?;
                report.blobs += 1;
            }
            Err(e) => report.lost.push(e),
        }
    }
    out.flush()?;
    Ok(report)
}
