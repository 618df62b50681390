//! The seal: what the journal knew it had on disk, kept outside sled's own files. sled recovers from a damaged log
//! by dropping every record after the damage, silently; the seal — the last sequence number flushed and a digest of
//! that record, written after each flush — is how orch notices that the journal came back shorter than it was, or
//! different, and refuses to build on it (see [`Loss`]).
//!
//! The seal is written by rename (never half a file), after sled's flush returned, and without an fsync of its own:
//! it never claims more than was on disk when it was written; a crash can only leave it older, which is safe.

use std::path::Path;

/// The file in the journal's directory.
pub const SEAL_FILE: &str = "orch-seal";

/// The last record known to be on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seal {
    /// Its sequence number.
    pub seq: u64,
    /// BLAKE3 of its stored bytes.
    pub digest: [u8; 32],
}

/// Acknowledged records the journal no longer has, as the seal tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loss {
    /// The last record the seal vouches for.
    pub sealed: u64,
    /// The last record the journal has now (0: none).
    pub present: u64,
    /// The sealed record is there but its bytes differ.
    pub differs: bool,
}

impl std::fmt::Display for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.differs {
            write!(f, "event {} is not the one that was on disk (its digest differs)", self.sealed)
        } else {
            write!(
                f,
                "events {}..={} were on disk and are gone (the journal ends at {}): its storage dropped them \
                 recovering from damage",
                self.present + 1,
                self.sealed,
                self.present
            )
        }
    }
}

impl Seal {
    /// The seal of the record `bytes` stored as event `seq`.
    pub fn of(seq: u64, bytes: &[u8]) -> Seal {
        Seal { seq, digest: *blake3::hash(bytes).as_bytes() }
    }

    /// Writes it into the journal directory `dir`, by rename.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let hex: String = self.digest.iter().map(|b| format!("{b:02x}")).collect();
        let tmp = dir.join(format!("{SEAL_FILE}.tmp"));
        std::fs::write(&tmp, format!("orch-seal 1\nseq {}\nblake3 {hex}\n", self.seq))?;
        std::fs::rename(&tmp, dir.join(SEAL_FILE))
    }

    /// Reads the seal of the journal directory `dir`: `Ok(None)` when there is none, an error naming what is wrong
    /// with one that cannot be read.
    pub fn read(dir: &Path) -> Result<Option<Seal>, String> {
        let text = match std::fs::read_to_string(dir.join(SEAL_FILE)) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{SEAL_FILE}: {e}")),
        };
        let mut lines = text.lines();
        let bad = || format!("{SEAL_FILE} is not a seal this version of orch can read");
        if lines.next() != Some("orch-seal 1") {
            return Err(bad());
        }
        let seq = lines.next().and_then(|l| l.strip_prefix("seq ")).and_then(|s| s.parse().ok()).ok_or_else(bad)?;
        let hex = lines.next().and_then(|l| l.strip_prefix("blake3 ")).filter(|h| h.len() == 64).ok_or_else(bad)?;
        let mut digest = [0u8; 32];
        for (i, d) in digest.iter_mut().enumerate() {
            *d = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Some(Seal { seq, digest }))
    }

    /// What is lost, if the journal whose last record is `present` and whose record at the sealed sequence number
    /// is `at_seal` (its stored bytes, if it has one) is shorter than, or differs from, what was sealed.
    pub fn loss(&self, present: u64, at_seal: Option<&[u8]>) -> Option<Loss> {
        match at_seal {
            _ if present < self.seq => Some(Loss { sealed: self.seq, present, differs: false }),
            Some(bytes) if *blake3::hash(bytes).as_bytes() == self.digest => None,
            _ => Some(Loss { sealed: self.seq, present, differs: true }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seal_round_trips_and_tells_a_shorter_or_different_journal() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        assert_eq!(Seal::read(dir.path())?, None);
        let s = Seal::of(42, b"record 42");
        s.write(dir.path())?;
        assert_eq!(Seal::read(dir.path())?, Some(s));
        assert_eq!(s.loss(42, Some(b"record 42")), None);
        assert_eq!(s.loss(50, Some(b"record 42")), None, "a longer journal lost nothing");
        let short = s.loss(17, None).ok_or("shorter")?;
        assert_eq!(short, Loss { sealed: 42, present: 17, differs: false });
        assert!(short.to_string().starts_with("events 18..=42 were on disk and are gone"), "{short}");
        assert!(s.loss(42, Some(b"record 4?")).is_some_and(|l| l.differs));
        std::fs::write(dir.path().join(SEAL_FILE), "garbage")?;
        assert!(Seal::read(dir.path()).is_err());
        Ok(())
    }
}
