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
//!
//! # Invariants (what makes an acknowledgement true)
//!
//! The head takes a write's samples *before* its record reaches the WAL (the record
//! says what the head accepted). So a sample can be in the head and not durable. Three
//! rules keep every acknowledged sample durable:
//!
//! 1. **Nothing is skipped after a failure.** When a write or an fsync fails, the
//!    writer truncates the segment back to its last good offset (the end of the last
//!    synced record) and keeps the failed records in a backlog. Every later flush
//!    writes the backlog first, in the same write and fsync as the new records. So a
//!    record is acknowledged only when every record queued before it is durable too,
//!    and the file never holds a torn record in front of acknowledged ones. If the
//!    truncation itself fails, nothing is written (and nothing acknowledged) until it
//!    works.
//! 2. **A twin waits for its original.** A retry whose samples the head already holds
//!    (counted as duplicates: same time, same value) adds nothing to the WAL, but the
//!    original's record may still be queued or in the backlog. Such a writer waits
//!    until every writer that was between head and WAL has queued its record
//!    (`Db::commit_gate`, taken exclusively for an instant), then sends a barrier
//!    through the queue; the barrier is answered after the next successful flush,
//!    which covers every record before it (rule 1). Only then is the twin
//!    acknowledged.
//! 3. **Replay is strict.** A torn or corrupt record is accepted only in the last
//!    segment holding data (a crash mid-write: by rule 1 nothing acknowledged follows
//!    it there); start-up logs the file, offset and bytes dropped, and cuts them off
//!    before new records are appended. In an earlier segment it is corruption:
//!    start-up stops with an error naming the file, the offset and what to do. (Inside
//!    the last segment a torn write is not always a clean prefix — pages of an unsynced
//!    write reach the disk in any order — so bytes after the bad record are dropped,
//!    counted in the log, rather than refused.)
//!
//! Injected failures for tests: failpoints `wal.write` and `wal.sync` (see
//! `crate::failpoint`).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

/// Size at which a segment is closed and the next one started.
pub const SEGMENT_BYTES: u64 = 128 << 20;

/// Most bytes of failed records kept for retry (rule 1). Beyond it, writes wait for
/// the backlog to reach disk before they touch the head, and fail with it (503), so a
/// long outage of the disk does not grow memory without bound.
pub const MAX_BACKLOG_BYTES: u64 = 64 << 20;

/// Entry tag: a series definition.
pub const ENTRY_SERIES: u8 = 1;
/// Entry tag: samples of one series.
pub const ENTRY_SAMPLES: u8 = 2;
/// Entry tag: native histogram samples of one series.
pub const ENTRY_HISTOGRAMS: u8 = 3;

type Reply<T> = tokio::sync::oneshot::Sender<io::Result<T>>;

enum Cmd {
    Append(Vec<u8>, Reply<()>),
    /// Answered after every record queued before it is durable.
    Barrier(Reply<()>),
    Roll(Reply<u64>),
}

/// Handle to the WAL writer thread.
pub struct Wal {
    tx: mpsc::Sender<Cmd>,
    /// Bytes written since the last roll requested by a checkpoint.
    pub bytes_since_roll: Arc<AtomicU64>,
    /// Number of fsyncs done (group commits), for self metrics.
    pub syncs: Arc<AtomicU64>,
    /// Failed writes or fsyncs (each rolled back and retried), for self metrics.
    pub failures: Arc<AtomicU64>,
    /// Bytes of failed records waiting to be written again.
    pub backlog_bytes: Arc<AtomicU64>,
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
    /// End of the last synced record: everything before it is durable.
    size: u64,
    /// Framed records that failed to reach disk (their samples are in the head);
    /// written first by every later flush.
    backlog: Vec<u8>,
    /// The file may hold bytes past `size` (a failed write or fsync): cut them off
    /// before writing anything else.
    dirty: bool,
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
        if self.dirty || !self.backlog.is_empty() {
            return Err(io::Error::other(
                "the WAL has records not yet on disk; not starting a new segment",
            ));
        }
        self.file.sync_data()?;
        let file = Self::open_segment(&self.dir, self.seg + 1)?;
        self.seg += 1;
        self.file = file;
        self.size = 0;
        Ok(self.seg)
    }

    /// Cuts the segment back to its last good offset and syncs that.
    fn rollback(&mut self) -> io::Result<()> {
        self.file.set_len(self.size)?;
        self.file.sync_data()?;
        self.dirty = false;
        Ok(())
    }

    /// Writes `data` at the end of the segment and syncs it; failpoints `wal.write`
    /// (half of `data` is written, as on a full disk) and `wal.sync`.
    fn write_and_sync(&mut self, data: &[u8]) -> io::Result<()> {
        if let Err(e) = crate::failpoint::check("wal.write") {
            self.dirty = true;
            let _ = self.file.write_all(&data[..data.len() / 2]);
            return Err(e);
        }
        self.dirty = true;
        self.file.write_all(data)?;
        crate::failpoint::check("wal.sync")?;
        self.file.sync_data()?;
        self.dirty = false;
        Ok(())
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
            backlog: Vec::new(),
            dirty: false,
        };
        let (tx, rx) = mpsc::channel::<Cmd>();
        let bytes = Arc::new(AtomicU64::new(0));
        let syncs = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(AtomicU64::new(0));
        let backlog_bytes = Arc::new(AtomicU64::new(0));
        let counters = Counters {
            bytes: bytes.clone(),
            syncs: syncs.clone(),
            failures: failures.clone(),
            backlog: backlog_bytes.clone(),
        };
        std::thread::Builder::new()
            .name("calm-wal".into())
            .spawn(move || run(&mut w, rx, &counters))?;
        Ok((
            Wal {
                tx,
                bytes_since_roll: bytes,
                syncs,
                failures,
                backlog_bytes,
            },
            seg,
        ))
    }

    /// Queues one payload; the receiver resolves once it is on disk. Queue order is
    /// the order records reach the file.
    pub fn enqueue(&self, payload: Vec<u8>) -> tokio::sync::oneshot::Receiver<io::Result<()>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        // A stopped writer drops `tx`; the receiver then reports it.
        let _ = self.tx.send(Cmd::Append(payload, tx));
        rx
    }

    /// Resolves once every record queued before this call is on disk.
    pub async fn barrier(&self) -> io::Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(Cmd::Barrier(tx))
            .map_err(|_| io::Error::other("the WAL writer has stopped"))?;
        rx.await
            .map_err(|_| io::Error::other("the WAL writer has stopped"))?
    }

    /// When failed records beyond [`MAX_BACKLOG_BYTES`] wait for the disk: waits
    /// until they are written (a barrier), or fails with the disk's error.
    pub async fn check_backlog(&self) -> io::Result<()> {
        if self.backlog_bytes.load(Ordering::Relaxed) <= MAX_BACKLOG_BYTES {
            return Ok(());
        }
        self.barrier().await
    }

    /// Appends one payload; resolves once it is on disk.
    pub async fn append(&self, payload: Vec<u8>) -> io::Result<()> {
        self.enqueue(payload)
            .await
            .map_err(|_| io::Error::other("the WAL writer has stopped"))?
    }

    /// Appends one payload from a blocking context.
    pub fn append_blocking(&self, payload: Vec<u8>) -> io::Result<()> {
        self.enqueue(payload)
            .blocking_recv()
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

struct Counters {
    bytes: Arc<AtomicU64>,
    syncs: Arc<AtomicU64>,
    failures: Arc<AtomicU64>,
    backlog: Arc<AtomicU64>,
}

fn run(w: &mut Writer, rx: mpsc::Receiver<Cmd>, c: &Counters) {
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
                Cmd::Barrier(reply) => batch.push(reply),
                Cmd::Roll(reply) => {
                    let r = flush(w, &mut buf, &mut batch, c).and_then(|_| w.roll());
                    let _ = reply.send(r);
                }
            }
        }
        if let Err(e) = flush(w, &mut buf, &mut batch, c) {
            tracing::error!(error = %e, "WAL write failed; writes are refused until it works again");
        }
        if w.size >= SEGMENT_BYTES {
            if let Err(e) = w.roll() {
                tracing::error!(error = %e, "cannot start a new WAL segment");
            }
        }
    }
}

/// Writes the backlog and `buf` in one write and one fsync, then answers `batch`. On
/// failure the segment is cut back to its last good offset, `buf` joins the backlog
/// and `batch` is answered with the error (see the module comment, rule 1).
fn flush(
    w: &mut Writer,
    buf: &mut Vec<u8>,
    batch: &mut Vec<Reply<()>>,
    c: &Counters,
) -> io::Result<()> {
    if buf.is_empty() && w.backlog.is_empty() && !w.dirty {
        // Barriers only: everything queued before them is already durable.
        for r in batch.drain(..) {
            let _ = r.send(Ok(()));
        }
        return Ok(());
    }
    let backlog_len = w.backlog.len() as u64;
    let res = (|| {
        if w.dirty {
            w.rollback()?;
        }
        if w.backlog.is_empty() {
            w.write_and_sync(buf)
        } else {
            let mut all = std::mem::take(&mut w.backlog);
            all.extend_from_slice(buf);
            let r = w.write_and_sync(&all);
            if r.is_err() {
                all.truncate(all.len() - buf.len());
            }
            w.backlog = all;
            r.map(|()| w.backlog.clear())
        }
    })();
    match &res {
        Ok(()) => {
            let written = backlog_len + buf.len() as u64;
            w.size += written;
            c.bytes.fetch_add(written, Ordering::Relaxed);
            c.syncs.fetch_add(1, Ordering::Relaxed);
            for r in batch.drain(..) {
                let _ = r.send(Ok(()));
            }
        }
        Err(e) => {
            c.failures.fetch_add(1, Ordering::Relaxed);
            w.backlog.extend_from_slice(buf);
            if w.dirty {
                if let Err(e2) = w.rollback() {
                    tracing::error!(error = %e2, "cannot cut the WAL back to its last good record; retrying before the next write");
                }
            }
            for r in batch.drain(..) {
                let _ = r.send(Err(io::Error::new(e.kind(), e.to_string())));
            }
        }
    }
    buf.clear();
    c.backlog.store(w.backlog.len() as u64, Ordering::Relaxed);
    res
}
/// Where replay found the log's torn tail: the segment file and the offset of the
/// first byte that is not an intact record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    pub path: PathBuf,
    pub offset: u64,
    /// Bytes from `offset` to the end of the segment (discarded).
    pub bytes: u64,
}

/// Reads every intact record of segments `>= from` in order, calling `f` with each
/// payload. Returns the number of records read and the torn tail, if any.
///
/// A torn or corrupt record is accepted only at the end of the last segment holding
/// data (a crash mid-write); anywhere else it is an `InvalidData` error naming the
/// file, the offset and what to do (see the module comment, rule 3).
pub fn replay(
    dir: &Path,
    from: u64,
    mut f: impl FnMut(&[u8]),
) -> io::Result<(u64, Option<TornTail>)> {
    let mut records = 0;
    if !dir.exists() {
        return Ok((0, None));
    }
    let segs: Vec<u64> = segments(dir)?.into_iter().filter(|s| *s >= from).collect();
    let mut torn: Option<TornTail> = None;
    for seg in segs {
        let path = segment_path(dir, seg);
        let mut data = Vec::new();
        File::open(&path)?.read_to_end(&mut data)?;
        if let Some(t) = &torn {
            if !data.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "WAL segment {} is damaged at byte {} (a torn or corrupt record), and \
                         a later segment ({}) holds records: the log cannot be replayed past \
                         the damage. Keep a copy of the data directory; to start anyway, \
                         losing what follows the damage, run `truncate -s {} {}` and move the \
                         later segments out of {}",
                        t.path.display(),
                        t.offset,
                        path.display(),
                        t.offset,
                        t.path.display(),
                        dir.display()
                    ),
                ));
            }
            continue;
        }
        let mut pos = 0usize;
        while pos < data.len() {
            let intact = data.get(pos..pos + 8).and_then(|h| {
                let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
                let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
                let start = pos + 8;
                let payload = data.get(start..start.checked_add(len)?)?;
                (crc32fast::hash(payload) == crc).then_some((start, payload))
            });
            let Some((start, payload)) = intact else {
                torn = Some(TornTail {
                    path: path.clone(),
                    offset: pos as u64,
                    bytes: (data.len() - pos) as u64,
                });
                break;
            };
            f(payload);
            records += 1;
            pos = start + payload.len();
        }
    }
    Ok((records, torn))
}

/// Cuts a torn tail off its segment (and syncs it), so records appended later never
/// sit behind it.
pub fn cut_torn_tail(t: &TornTail) -> io::Result<()> {
    let f = OpenOptions::new().write(true).open(&t.path)?;
    f.set_len(t.offset)?;
    f.sync_all()
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
        let torn = torn.unwrap();
        assert_eq!(torn.path, segment_path(dir.path(), 2));
        assert_eq!(
            got,
            vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
        );
        let mut later = vec![];
        replay(dir.path(), 2, |p| later.push(p.to_vec())).unwrap();
        assert_eq!(later, vec![b"three".to_vec()]);
    }

    #[test]
    fn damage_before_the_last_segment_is_an_error_naming_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path()).unwrap();
        wal.append_blocking(b"one".to_vec()).unwrap();
        wal.roll_blocking().unwrap();
        wal.append_blocking(b"two".to_vec()).unwrap();
        drop(wal);
        // Flip a payload byte of segment 1's only record.
        let p = segment_path(dir.path(), 1);
        let mut data = std::fs::read(&p).unwrap();
        let last = data.len() - 1;
        data[last] ^= 0xff;
        std::fs::write(&p, &data).unwrap();
        let err = replay(dir.path(), 1, |_| {}).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let msg = err.to_string();
        assert!(msg.contains(&p.display().to_string()), "{msg}");
        assert!(msg.contains("byte 0"), "{msg}");
        assert!(msg.contains("truncate -s 0"), "{msg}");
        // Empty later segments do not count as records after the damage.
        std::fs::write(segment_path(dir.path(), 2), b"").unwrap();
        let (n, torn) = replay(dir.path(), 1, |_| {}).unwrap();
        assert_eq!(n, 0);
        assert_eq!(torn.map(|t| t.offset), Some(0));
    }

    #[test]
    fn a_cut_torn_tail_lets_later_records_replay() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path()).unwrap();
        wal.append_blocking(b"one".to_vec()).unwrap();
        drop(wal);
        let p = segment_path(dir.path(), 1);
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2, 3]).unwrap();
        let (_, torn) = replay(dir.path(), 1, |_| {}).unwrap();
        cut_torn_tail(&torn.unwrap()).unwrap();
        let (wal, seg) = Wal::open(dir.path()).unwrap();
        assert_eq!(seg, 2);
        wal.append_blocking(b"two".to_vec()).unwrap();
        drop(wal);
        let mut got = vec![];
        let (_, torn) = replay(dir.path(), 1, |p| got.push(p.to_vec())).unwrap();
        assert_eq!(torn, None);
        assert_eq!(got, vec![b"one".to_vec(), b"two".to_vec()]);
    }
}
