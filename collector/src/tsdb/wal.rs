//! The write-ahead log: what makes a 2xx mean "durable".
//!
//! Every accepted write is appended here before it is acknowledged. One thread owns
//! the files and commits in groups: it takes every record waiting in its queue, writes
//! them, calls `fdatasync` once and then answers all their writers. Under load many
//! requests share one flush; idle, a lone request pays one.
//!
//! Files are numbered segments in `<data>/wal/`, rolled at [`SEGMENT_BYTES`]:
//!
//! ```text
//! wal/00000001  record*
//! record   := u32 LE len(payload) · u32 LE crc32(payload) · payload
//! payload  := entry*
//! entry    := 0x01 uvarint(ref) uvarint(len) labels            a new series
//!           | 0x02 uvarint(ref) uvarint(n) varint(t0) u64(v0)   n samples of one series
//!                  (varint(t_i − t_{i−1}) u64 LE(v_i))*
//!           | 0x03 uvarint(ref) uvarint(n) (varint(t) histogram)*  n native histograms
//!                  (histogram: see `histogram.rs`, FloatHistogram::encode)
//! ```
//! Replay stops at the first torn or corrupt record of a segment (a crash mid-write);
//! nothing after it was acknowledged.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

/// Size at which a segment is closed and the next one started.
pub const SEGMENT_BYTES: u64 = 128 << 20;

/// Entry tag: a series definition.
pub const ENTRY_SERIES: u8 = 1;
/// Entry tag: samples of one series.
pub const ENTRY_SAMPLES: u8 = 2;
/// Entry tag: native histogram samples of one series.
pub const ENTRY_HISTOGRAMS: u8 = 3;

type Reply<T> = tokio::sync::oneshot::Sender<io::Result<T>>;

enum Cmd {
    Append(Vec<u8>, Reply<()>),
    Roll(Reply<u64>),
}

/// Handle to the WAL writer thread.
pub struct Wal {
    tx: mpsc::Sender<Cmd>,
    /// Bytes written since the last roll requested by a checkpoint.
    pub bytes_since_roll: Arc<AtomicU64>,
    /// Number of fsyncs done (group commits), for self metrics.
    pub syncs: Arc<AtomicU64>,
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:08}"))
}

/// Segment numbers present in `dir`, ascending.
pub fn segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if let Some(n) = e.file_name().to_str().and_then(|s| s.parse::<u64>().ok()) {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

struct Writer {
    dir: PathBuf,
    seg: u64,
    file: File,
    size: u64,
}

impl Writer {
    fn open_segment(dir: &Path, seg: u64) -> io::Result<File> {
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(segment_path(dir, seg))?;
        sync_dir(dir)?;
        Ok(f)
    }

    fn roll(&mut self) -> io::Result<u64> {
        self.file.sync_data()?;
        self.seg += 1;
        self.file = Self::open_segment(&self.dir, self.seg)?;
        self.size = 0;
        Ok(self.seg)
    }
}

impl Wal {
    /// Opens the WAL in `dir`, starting a fresh segment after the last one found.
    /// Returns the handle and the number of the new segment.
    pub fn open(dir: &Path) -> io::Result<(Wal, u64)> {
        std::fs::create_dir_all(dir)?;
        let seg = segments(dir)?.last().copied().unwrap_or(0) + 1;
        let file = Writer::open_segment(dir, seg)?;
        let mut w = Writer {
            dir: dir.to_path_buf(),
            seg,
            file,
            size: 0,
        };
        let (tx, rx) = mpsc::channel::<Cmd>();
        let bytes = Arc::new(AtomicU64::new(0));
        let syncs = Arc::new(AtomicU64::new(0));
        let (b2, s2) = (bytes.clone(), syncs.clone());
        std::thread::Builder::new()
            .name("calm-wal".into())
            .spawn(move || run(&mut w, rx, &b2, &s2))?;
        Ok((
            Wal {
                tx,
                bytes_since_roll: bytes,
                syncs,
            },
            seg,
        ))
    }

    /// Appends one payload; resolves once it is on disk.
    pub async fn append(&self, payload: Vec<u8>) -> io::Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(Cmd::Append(payload, tx))
            .map_err(|_| io::Error::other("the WAL writer has stopped"))?;
        rx.await
            .map_err(|_| io::Error::other("the WAL writer has stopped"))?
    }

    /// Appends one payload from a blocking context.
    pub fn append_blocking(&self, payload: Vec<u8>) -> io::Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(Cmd::Append(payload, tx))
            .map_err(|_| io::Error::other("the WAL writer has stopped"))?;
        rx.blocking_recv()
            .map_err(|_| io::Error::other("the WAL writer has stopped"))?
    }

    /// Starts a new segment; returns its number. Everything acknowledged before this
    /// call is in earlier segments.
    pub fn roll_blocking(&self) -> io::Result<u64> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(Cmd::Roll(tx))
            .map_err(|_| io::Error::other("the WAL writer has stopped"))?;
        let seg = rx
            .blocking_recv()
            .map_err(|_| io::Error::other("the WAL writer has stopped"))??;
        self.bytes_since_roll.store(0, Ordering::Relaxed);
        Ok(seg)
    }
}

/// Appends one framed record (`len · crc32 · payload`) to `out`. The checkpoint file
/// uses the same framing.
pub fn frame(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Reads the next framed record from `r` into `buf`. `Ok(false)` at a clean end;
/// an error for a torn or corrupt record.
pub fn read_record(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<bool> {
    let mut head = [0u8; 8];
    let mut got = 0;
    while got < 8 {
        let n = r.read(&mut head[got..])?;
        if n == 0 {
            return if got == 0 {
                Ok(false)
            } else {
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "torn record header",
                ))
            };
        }
        got += n;
    }
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    buf.clear();
    buf.resize(len, 0);
    r.read_exact(buf)?;
    if crc32fast::hash(buf) != crc {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "record checksum mismatch",
        ));
    }
    Ok(true)
}

fn run(w: &mut Writer, rx: mpsc::Receiver<Cmd>, bytes: &AtomicU64, syncs: &AtomicU64) {
    let mut batch: Vec<Reply<()>> = Vec::new();
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    while let Ok(first) = rx.recv() {
        let mut pending = vec![first];
        // Group commit: take everything that queued up while we were flushing.
        while let Ok(more) = rx.try_recv() {
            pending.push(more);
            if pending.len() >= 4096 {
                break;
            }
        }
        for cmd in pending {
            match cmd {
                Cmd::Append(payload, reply) => {
                    frame(&payload, &mut buf);
                    batch.push(reply);
                }
                Cmd::Roll(reply) => {
                    let r = flush(w, &mut buf, &mut batch, bytes, syncs).and_then(|_| w.roll());
                    let _ = reply.send(r);
                }
            }
        }
        if let Err(e) = flush(w, &mut buf, &mut batch, bytes, syncs) {
            tracing::error!(error = %e, "WAL write failed; writes are refused until it works again");
        }
        if w.size >= SEGMENT_BYTES {
            if let Err(e) = w.roll() {
                tracing::error!(error = %e, "cannot start a new WAL segment");
            }
        }
    }
}

fn flush(
    w: &mut Writer,
    buf: &mut Vec<u8>,
    batch: &mut Vec<Reply<()>>,
    bytes: &AtomicU64,
    syncs: &AtomicU64,
) -> io::Result<()> {
    if buf.is_empty() {
        return Ok(());
    }
    let res = w.file.write_all(buf).and_then(|_| w.file.sync_data());
    match &res {
        Ok(()) => {
            w.size += buf.len() as u64;
            bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
            syncs.fetch_add(1, Ordering::Relaxed);
            for r in batch.drain(..) {
                let _ = r.send(Ok(()));
            }
        }
        Err(e) => {
            for r in batch.drain(..) {
                let _ = r.send(Err(io::Error::new(e.kind(), e.to_string())));
            }
        }
    }
    buf.clear();
    res
}

/// Reads every intact record of segments `>= from` in order, calling `f` with each
/// payload. Returns the number of records read and whether a torn tail was found.
pub fn replay(dir: &Path, from: u64, mut f: impl FnMut(&[u8])) -> io::Result<(u64, bool)> {
    let mut records = 0;
    let mut torn = false;
    if !dir.exists() {
        return Ok((0, false));
    }
    for seg in segments(dir)?.into_iter().filter(|s| *s >= from) {
        let mut data = Vec::new();
        File::open(segment_path(dir, seg))?.read_to_end(&mut data)?;
        let mut pos = 0usize;
        while pos + 8 <= data.len() {
            let len = u32::from_le_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]])
                as usize;
            let crc =
                u32::from_le_bytes([data[pos + 4], data[pos + 5], data[pos + 6], data[pos + 7]]);
            let start = pos + 8;
            let Some(payload) = data.get(start..start.saturating_add(len)) else {
                torn = true;
                break;
            };
            if crc32fast::hash(payload) != crc {
                torn = true;
                break;
            }
            f(payload);
            records += 1;
            pos = start + len;
        }
        if pos < data.len() && !torn {
            torn = true;
        }
    }
    Ok((records, torn))
}

/// Deletes segments numbered below `before`.
pub fn truncate_before(dir: &Path, before: u64) -> io::Result<()> {
    for seg in segments(dir)? {
        if seg < before {
            std::fs::remove_file(segment_path(dir, seg))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_and_torn_tail_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, seg) = Wal::open(dir.path()).unwrap();
        assert_eq!(seg, 1);
        wal.append_blocking(b"one".to_vec()).unwrap();
        wal.append_blocking(b"two".to_vec()).unwrap();
        let next = wal.roll_blocking().unwrap();
        assert_eq!(next, 2);
        wal.append_blocking(b"three".to_vec()).unwrap();
        drop(wal);
        // A torn record at the end of the last segment.
        let mut f = OpenOptions::new()
            .append(true)
            .open(segment_path(dir.path(), 2))
            .unwrap();
        f.write_all(&[9, 0, 0, 0, 1, 2]).unwrap();
        let mut got = vec![];
        let (n, torn) = replay(dir.path(), 1, |p| got.push(p.to_vec())).unwrap();
        assert_eq!(n, 3);
        assert!(torn);
        assert_eq!(
            got,
            vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
        );
        let mut later = vec![];
        replay(dir.path(), 2, |p| later.push(p.to_vec())).unwrap();
        assert_eq!(later, vec![b"three".to_vec()]);
    }
}
