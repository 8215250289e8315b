//! The series log: every series' labels, appended once, read once at start.
//!
//! A series is saved here before anything that outlives the WAL refers to it (a
//! checkpoint, a persisted bucket). The file only grows by appends and is read
//! sequentially, which is what it needs; sled was tried first and held gigabytes of
//! memory for a million small inserts, then took half a minute to read them back.
//!
//! ```text
//! series.log := record*            (WAL framing: u32 len · u32 crc32 · payload)
//! payload    := snappy( ( uvarint(ref) uvarint(len) labels )* )
//! ```
//! Label sets repeat most of their bytes from one series to the next (same names, same
//! job, same instance), so snappy shrinks the log several times over.
//!
//! An entry with no labels (`len` 0, which no series has: every series has a name) is
//! a tombstone: series GC removed that ref, and it is never used again.
//! A torn last record (crash mid-append) is ignored: its series are still in the WAL,
//! which is only truncated after the append was synced.

use super::labels::{get_bytes, get_uvarint, put_uvarint};
use super::wal;
use super::SeriesRef;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};

/// File name inside the TSDB directory.
pub const FILE: &str = "series.log";

fn compress(payload: &[u8]) -> io::Result<Vec<u8>> {
    snap::raw::Encoder::new()
        .compress_vec(payload)
        .map_err(io::Error::other)
}

/// Appends series definitions to the log.
pub struct SeriesLog {
    path: PathBuf,
}

impl SeriesLog {
    /// The log of the TSDB in `dir`.
    pub fn new(dir: &Path) -> SeriesLog {
        SeriesLog {
            path: dir.join(FILE),
        }
    }

    /// Appends `(ref, labels)` pairs and syncs. Nothing to do for an empty list.
    pub fn append(&self, series: &[(SeriesRef, Box<[u8]>)]) -> io::Result<()> {
        if series.is_empty() {
            return Ok(());
        }
        let mut framed = Vec::new();
        let mut payload = Vec::with_capacity(1 << 20);
        for (r, labels) in series {
            put_uvarint(&mut payload, *r as u64);
            put_uvarint(&mut payload, labels.len() as u64);
            payload.extend_from_slice(labels);
            if payload.len() >= 1 << 20 {
                wal::frame(&compress(&payload)?, &mut framed);
                payload.clear();
            }
        }
        if !payload.is_empty() {
            wal::frame(&compress(&payload)?, &mut framed);
        }
        let existed = self.path.exists();
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        f.write_all(&framed)?;
        f.sync_data()?;
        if !existed {
            if let Some(dir) = self.path.parent() {
                wal::sync_dir(dir)?;
            }
        }
        Ok(())
    }

    /// Appends tombstones for `refs` (removed series) and syncs.
    pub fn append_tombstones(&self, refs: &[SeriesRef]) -> io::Result<()> {
        let entries: Vec<(SeriesRef, Box<[u8]>)> =
            refs.iter().map(|&r| (r, Box::<[u8]>::default())).collect();
        self.append(&entries)
    }

    /// Reads every intact entry in order, calling `f(ref, labels)`; empty labels are a
    /// tombstone. Returns how many; a torn tail ends the read.
    pub fn load(
        &self,
        mut f: impl FnMut(SeriesRef, &[u8]) -> Result<(), String>,
    ) -> Result<usize, String> {
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(format!("cannot open {}: {e}", self.path.display())),
        };
        let mut r = BufReader::with_capacity(1 << 20, file);
        let mut rec = Vec::new();
        let mut n = 0;
        loop {
            match wal::read_record(&mut r, &mut rec) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "series log ends in a torn record; ignoring it");
                    break;
                }
            }
            let raw = snap::raw::Decoder::new()
                .decompress_vec(&rec)
                .map_err(|e| {
                    format!("{}: a record does not decompress: {e}", self.path.display())
                })?;
            let mut buf: &[u8] = &raw;
            while !buf.is_empty() {
                let bad = || format!("{} has a malformed entry", self.path.display());
                let sref = get_uvarint(&mut buf).ok_or_else(bad)? as SeriesRef;
                let len = get_uvarint(&mut buf).ok_or_else(bad)? as usize;
                let labels = get_bytes(&mut buf, len).ok_or_else(bad)?;
                f(sref, labels)?;
                n += 1;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let log = SeriesLog::new(dir.path());
        log.append(&[(1, Box::from(&b"ab"[..])), (7, Box::from(&b"c"[..]))])
            .unwrap();
        log.append(&[(9, Box::from(&b""[..]))]).unwrap();
        let mut got = vec![];
        let n = log
            .load(|r, l| {
                got.push((r, l.to_vec()));
                Ok(())
            })
            .unwrap();
        assert_eq!(n, 3);
        assert_eq!(got[1], (7, b"c".to_vec()));
    }
}
