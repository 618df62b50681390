//! The on-disk form of records: a version byte, a CRC-32 of the rest, then the body.
//!
//! An event body starts with a small header (kind code, scope key, time) so that filters can skip records without
//! decoding their payload; the payload itself is bincode 2 over serde.

use serde::{de::DeserializeOwned, Serialize};

use super::event::{Event, EventRecord, FORMAT_VERSION};
use crate::error::RecordError;

const BINCODE: bincode::config::Configuration = bincode::config::standard();

/// The header of an event record, readable without decoding the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// Index into [`Event::KINDS`].
    pub kind: u16,
    /// `project/task`, `project`, or empty.
    pub scope_key: &'a [u8],
    /// Microseconds since the Unix epoch.
    pub time_us: i64,
}

/// The scope key a filter compares against: `project/task`, `project`, or empty.
pub fn scope_key(event: &Event) -> String {
    let s = event.scope();
    match (s.project, s.task) {
        (Some(p), Some(t)) => format!("{p}/{t}"),
        (Some(p), None) => p.to_string(),
        _ => String::new(),
    }
}

/// Encodes an event record's value (the sequence number is the key, not part of the value).
pub fn encode_event(time_us: i64, event: &Event) -> Result<Vec<u8>, RecordError> {
    let key = scope_key(event);
    let key_len = u16::try_from(key.len()).map_err(|_| RecordError::TooLarge { what: "scope key" })?;
    let mut buf = Vec::with_capacity(64 + key.len());
    buf.push(FORMAT_VERSION);
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&event.kind_code().to_le_bytes());
    buf.extend_from_slice(&key_len.to_le_bytes());
    buf.extend_from_slice(key.as_bytes());
    buf.extend_from_slice(&time_us.to_le_bytes());
    bincode::serde::encode_into_std_write(event, &mut buf, BINCODE).map_err(|e| RecordError::Encode(e.to_string()))?;
    let crc = crc32fast::hash(&buf[5..]);
    buf[1..5].copy_from_slice(&crc.to_le_bytes());
    Ok(buf)
}

/// Checks version and checksum and returns the body.
fn checked_body(bytes: &[u8]) -> Result<&[u8], RecordError> {
    if bytes.len() < 5 {
        return Err(RecordError::Truncated { len: bytes.len() });
    }
    if bytes[0] != FORMAT_VERSION {
        return Err(RecordError::UnknownVersion { version: bytes[0] });
    }
    let stored = u32::from_le_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    let actual = crc32fast::hash(&bytes[5..]);
    if stored != actual {
        return Err(RecordError::Checksum { stored, actual });
    }
    Ok(&bytes[5..])
}

fn split_header(body: &[u8]) -> Result<(Header<'_>, &[u8]), RecordError> {
    let too_short = || RecordError::Truncated { len: body.len() };
    let kind = u16::from_le_bytes(body.get(0..2).ok_or_else(too_short)?.try_into().map_err(|_| too_short())?);
    let key_len =
        u16::from_le_bytes(body.get(2..4).ok_or_else(too_short)?.try_into().map_err(|_| too_short())?) as usize;
    let scope_key = body.get(4..4 + key_len).ok_or_else(too_short)?;
    let t = body.get(4 + key_len..12 + key_len).ok_or_else(too_short)?;
    let time_us = i64::from_le_bytes(t.try_into().map_err(|_| too_short())?);
    if kind as usize >= Event::KINDS.len() {
        return Err(RecordError::UnknownKind { kind });
    }
    Ok((Header { kind, scope_key, time_us }, &body[12 + key_len..]))
}

/// Verifies a record and reads its header only.
pub fn decode_header(bytes: &[u8]) -> Result<Header<'_>, RecordError> {
    let body = checked_body(bytes)?;
    Ok(split_header(body)?.0)
}

/// Verifies and decodes a whole event record.
pub fn decode_event(seq: u64, bytes: &[u8]) -> Result<EventRecord, RecordError> {
    let body = checked_body(bytes)?;
    let (header, payload) = split_header(body)?;
    let (event, used): (Event, usize) =
        bincode::serde::decode_from_slice(payload, BINCODE).map_err(|e| RecordError::Decode(e.to_string()))?;
    if used != payload.len() {
        return Err(RecordError::Decode(format!("{} trailing bytes after the payload", payload.len() - used)));
    }
    if event.kind_code() != header.kind {
        return Err(RecordError::Decode(format!(
            "header says kind {} but the payload is {}",
            header.kind,
            event.kind()
        )));
    }
    Ok(EventRecord { seq, time_us: header.time_us, event })
}

/// Encodes any value with version and checksum (projections, blobs' metadata).
pub fn encode_value<T: Serialize>(value: &T) -> Result<Vec<u8>, RecordError> {
    let mut buf = vec![FORMAT_VERSION, 0, 0, 0, 0];
    bincode::serde::encode_into_std_write(value, &mut buf, BINCODE).map_err(|e| RecordError::Encode(e.to_string()))?;
    let crc = crc32fast::hash(&buf[5..]);
    buf[1..5].copy_from_slice(&crc.to_le_bytes());
    Ok(buf)
}

/// Verifies and decodes a value written by [`encode_value`].
pub fn decode_value<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, RecordError> {
    let body = checked_body(bytes)?;
    let (v, _): (T, usize) =
        bincode::serde::decode_from_slice(body, BINCODE).map_err(|e| RecordError::Decode(e.to_string()))?;
    Ok(v)
}

/// Raw bytes with version and checksum (blobs).
pub fn encode_raw(data: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(data.len() + 5);
    buf.push(FORMAT_VERSION);
    buf.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    buf.extend_from_slice(data);
    buf
}

/// Verifies raw bytes written by [`encode_raw`].
pub fn decode_raw(bytes: &[u8]) -> Result<&[u8], RecordError> {
    checked_body(bytes)
}

/// The version of the block format.
pub const BLOCK_VERSION: u8 = 1;

/// Packs encoded event records into one block: version, CRC-32 of the rest, count, lengths, records.
pub fn encode_block<R: AsRef<[u8]>>(records: &[R]) -> Vec<u8> {
    let body: usize = records.iter().map(|r| r.as_ref().len() + 4).sum();
    let mut buf = Vec::with_capacity(9 + body);
    buf.push(BLOCK_VERSION);
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&(records.len() as u32).to_le_bytes());
    for r in records {
        buf.extend_from_slice(&(r.as_ref().len() as u32).to_le_bytes());
    }
    for r in records {
        buf.extend_from_slice(r.as_ref());
    }
    let crc = crc32fast::hash(&buf[5..]);
    buf[1..5].copy_from_slice(&crc.to_le_bytes());
    buf
}

/// A block split into its records.
#[derive(Debug)]
pub struct Block<'a> {
    /// The records, in sequence order.
    pub records: Vec<&'a [u8]>,
    /// The block's own checksum matched.
    pub checksum_ok: bool,
}

/// Splits a block into its records. The records are returned even when the block's checksum fails (each has its
/// own); an error means the layout itself is unreadable.
pub fn decode_block(bytes: &[u8]) -> Result<Block<'_>, RecordError> {
    if bytes.len() < 9 {
        return Err(RecordError::Truncated { len: bytes.len() });
    }
    if bytes[0] != BLOCK_VERSION {
        return Err(RecordError::UnknownVersion { version: bytes[0] });
    }
    let stored = u32::from_le_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    let checksum_ok = crc32fast::hash(&bytes[5..]) == stored;
    let count = u32::from_le_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) as usize;
    let lens_end = count.checked_mul(4).and_then(|n| n.checked_add(9)).filter(|&e| e <= bytes.len());
    let Some(lens_end) = lens_end else { return Err(RecordError::Truncated { len: bytes.len() }) };
    let mut records = Vec::with_capacity(count);
    let mut at = lens_end;
    for i in 0..count {
        let l = &bytes[9 + 4 * i..13 + 4 * i];
        let len = u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize;
        let Some(r) = bytes.get(at..at + len) else { return Err(RecordError::Truncated { len: bytes.len() }) };
        records.push(r);
        at += len;
    }
    if at != bytes.len() {
        return Err(RecordError::Decode(format!("{} stray bytes after the records", bytes.len() - at)));
    }
    Ok(Block { records, checksum_ok })
}
