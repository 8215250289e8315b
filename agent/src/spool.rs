//! The spool: a durable, bounded FIFO on sled between the sources and the shipper.
//!
//! An entry leaves only when the shipper says the collector answered 2xx (or refused
//! it for good with a 4xx), so what the agent was given survives collector outages
//! and agent restarts. When the spool would pass its byte bound, the oldest metrics
//! entries are dropped first (errors are kept longer), and every drop is counted.
//!
//! Each kind has its own sled tree, so a lane reads only its own entries: a backlog
//! of a million metrics entries after a collector outage does not make every event
//! batch read through all of them (one tree for both did).
//!
//! ```text
//! tree "metrics", tree "events"
//! key   = u64 BE sequence number, one counter for both trees (FIFO order)
//! value = u8 kind (1 metrics: snappy remote-write body, 2 event: see
//!         `sources::sentry::entry`) · payload
//! tree "cursors": key = u8 kind, value = u64 BE: every entry of that lane below it
//!         has left the spool
//! ```
//! Each lane keeps a cursor (in memory, and in the "cursors" tree so a reopened spool
//! resumes there too): its reads start at the cursor instead of at the start of its
//! tree, and acking the lane's oldest entry moves the cursor past it. Entries passed
//! over (a rate-limited project's events) keep the cursor at them until they go.
//!
//! A spool written by an earlier version (one tree "queue" for both kinds) is moved
//! into the two trees when it is opened.
//!
//! Sources that answer a client (OTLP, the Sentry relay) use [`Spool::push_durable`]:
//! their 2xx means the entry is on disk, so `kill -9` after the answer loses nothing.
//! Concurrent callers share sled's flushes (group commit).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// What an entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A snappy-compressed remote-write body.
    Metrics = 1,
    /// A Sentry envelope or store event with its project and auth.
    Event = 2,
}

impl EntryKind {
    fn from_byte(b: u8) -> Option<EntryKind> {
        match b {
            1 => Some(EntryKind::Metrics),
            2 => Some(EntryKind::Event),
            _ => None,
        }
    }
}

/// One spooled entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub seq: u64,
    pub kind: EntryKind,
    pub payload: Vec<u8>,
}

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool storage: {0}")]
    Sled(#[from] sled::Error),
    #[error("entry of {0} bytes is larger than the whole spool ({1} bytes)")]
    TooLarge(usize, u64),
}

/// The spool.
pub struct Spool {
    db: sled::Db,
    metrics: sled::Tree,
    events: sled::Tree,
    cursors: sled::Tree,
    /// Per lane (metrics, events): no entry of the lane is below it. Held while an
    /// entry is inserted into the lane's tree and while the cursor moves, so a push
    /// whose number was drawn before a later entry was acked is never left behind it.
    cursor: [parking_lot::Mutex<u64>; 2],
    next: AtomicU64,
    bytes: AtomicU64,
    entries: AtomicU64,
    max_bytes: u64,
    /// Entries dropped because the spool was full.
    pub dropped_full: AtomicU64,
    /// Of those, event entries (dropped only when metrics alone could not make room).
    pub dropped_events: AtomicU64,
}

impl Spool {
    /// Opens the spool in `dir`, bounded to `max_bytes` of payload.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(16 << 20)
            // No timer flushes (a thread waking 5 times a second costs more CPU than the
            // whole host collection): every push that matters is flushed by
            // `push_durable`, which also makes earlier acks durable. An ack lost to
            // `kill -9` only means that entry is sent again (the collector dedupes).
            .flush_every_ms(None)
            .open()?;
        let metrics = db.open_tree("metrics")?;
        let events = db.open_tree("events")?;
        let cursors = db.open_tree("cursors")?;
        migrate_single_queue(&db, &metrics, &events)?;
        let mut bytes = 0u64;
        let mut entries = 0u64;
        let mut next = 1;
        for tree in [&metrics, &events] {
            for item in tree.iter() {
                let (_, v) = item?;
                bytes += v.len() as u64;
                entries += 1;
            }
            if let Some((k, _)) = tree.last()? {
                next = next.max(seq_of(&k) + 1);
            }
        }
        let cursor = [
            parking_lot::Mutex::new(load_cursor(&cursors, &metrics, EntryKind::Metrics)?),
            parking_lot::Mutex::new(load_cursor(&cursors, &events, EntryKind::Event)?),
        ];
        // New entries never number below a cursor (that would hide them from the lane
        // until a push lowers it again).
        for c in &cursor {
            next = next.max(*c.lock());
        }
        Ok(Spool {
            db,
            metrics,
            events,
            cursors,
            cursor,
            next: AtomicU64::new(next),
            bytes: AtomicU64::new(bytes),
            entries: AtomicU64::new(entries),
            max_bytes,
            dropped_full: AtomicU64::new(0),
            dropped_events: AtomicU64::new(0),
        })
    }

    /// Appends an entry, dropping the oldest metrics entries if the bound requires.
    pub fn push(&self, kind: EntryKind, payload: &[u8]) -> Result<u64, SpoolError> {
        let size = payload.len() as u64 + 1;
        if size > self.max_bytes {
            return Err(SpoolError::TooLarge(payload.len(), self.max_bytes));
        }
        if self.bytes.load(Ordering::Relaxed) + size > self.max_bytes {
            self.make_room(size)?;
        }
        let seq = self.next.fetch_add(1, Ordering::SeqCst);
        let mut v = Vec::with_capacity(payload.len() + 1);
        v.push(kind as u8);
        v.extend_from_slice(payload);
        {
            let mut cur = self.cursor(kind).lock();
            self.tree(kind).insert(seq.to_be_bytes(), v)?;
            if seq < *cur {
                // Numbered before an entry that was acked meanwhile: the lane resumes here.
                *cur = seq;
                self.cursors.insert([kind as u8], &seq.to_be_bytes())?;
            }
        }
        self.bytes.fetch_add(size, Ordering::Relaxed);
        self.entries.fetch_add(1, Ordering::Relaxed);
        Ok(seq)
    }

    fn make_room(&self, need: u64) -> Result<(), SpoolError> {
        // Oldest metrics first; events only if metrics alone cannot make room.
        for kind in [EntryKind::Metrics, EntryKind::Event] {
            let mut victims = Vec::new();
            let mut freed = 0u64;
            let over = (self.bytes.load(Ordering::Relaxed) + need).saturating_sub(self.max_bytes);
            let tree = self.tree(kind);
            for item in tree.iter() {
                if freed >= over {
                    break;
                }
                let (k, v) = item?;
                freed += v.len() as u64;
                victims.push(k);
            }
            for k in victims {
                if let Some(v) = tree.remove(&k)? {
                    self.advance(kind, seq_of(&k))?;
                    self.bytes.fetch_sub(v.len() as u64, Ordering::Relaxed);
                    self.entries.fetch_sub(1, Ordering::Relaxed);
                    self.dropped_full.fetch_add(1, Ordering::Relaxed);
                    if kind == EntryKind::Event {
                        self.dropped_events.fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::warn!(kind = ?kind, bytes = v.len(), "spool full: dropped the oldest entry");
                }
            }
            if self.bytes.load(Ordering::Relaxed) + need <= self.max_bytes {
                break;
            }
        }
        Ok(())
    }

    /// Appends an entry and waits until it is on disk.
    pub async fn push_durable(&self, kind: EntryKind, payload: &[u8]) -> Result<u64, SpoolError> {
        let seq = self.push(kind, payload)?;
        self.db.flush_async().await?;
        Ok(seq)
    }

    /// Up to `max_entries` oldest entries of `kind` whose payloads add up to at most
    /// `max_bytes` (at least one entry when any is taken), in FIFO order. Entries of the
    /// other kind, and those `pass_over` names (by payload), stay where they are for a
    /// later call: one kind, or one rate-limited project, never holds up the rest.
    pub fn oldest_of(
        &self,
        kind: EntryKind,
        max_entries: usize,
        max_bytes: usize,
        pass_over: impl Fn(&[u8]) -> bool,
    ) -> Result<Vec<Entry>, SpoolError> {
        let mut out: Vec<Entry> = Vec::new();
        let mut bytes = 0usize;
        let from = *self.cursor(kind).lock();
        for item in self.tree(kind).range(from.to_be_bytes()..) {
            let (k, v) = item?;
            let seq = seq_of(&k);
            let Some(this) = v.first().copied().and_then(EntryKind::from_byte) else {
                // Not ours (corrupt): drop it rather than block the queue forever.
                tracing::error!(seq, "spool entry of unknown kind: dropped");
                self.ack(seq)?;
                continue;
            };
            if this != kind || pass_over(&v[1..]) {
                continue;
            }
            if !out.is_empty() && (out.len() >= max_entries || bytes + v.len() > max_bytes) {
                break;
            }
            bytes += v.len();
            out.push(Entry {
                seq,
                kind,
                payload: v[1..].to_vec(),
            });
        }
        Ok(out)
    }

    /// Removes an entry after the collector took it. When it was its lane's oldest,
    /// the lane's cursor moves past it.
    pub fn ack(&self, seq: u64) -> Result<(), SpoolError> {
        for kind in [EntryKind::Metrics, EntryKind::Event] {
            let tree = self.tree(kind);
            if let Some(v) = tree.remove(seq.to_be_bytes())? {
                self.bytes.fetch_sub(v.len() as u64, Ordering::Relaxed);
                self.entries.fetch_sub(1, Ordering::Relaxed);
                self.advance(kind, seq)?;
                break;
            }
        }
        Ok(())
    }

    /// Moves `kind`'s cursor past `seq` (just removed) if nothing of the lane is left
    /// between the cursor and it. Acks come from one lane task per kind (and
    /// `make_room`); pushes take the same lock, see `cursor`.
    fn advance(&self, kind: EntryKind, seq: u64) -> Result<(), SpoolError> {
        let mut cur = self.cursor(kind).lock();
        if seq < *cur {
            return Ok(());
        }
        if self
            .tree(kind)
            .range(cur.to_be_bytes()..seq.to_be_bytes())
            .next()
            .is_none()
        {
            *cur = seq + 1;
            // Written after the removal: sled's log keeps their order, so a cursor
            // found on disk never passes an entry that is still there.
            self.cursors.insert([kind as u8], &cur.to_be_bytes())?;
        }
        Ok(())
    }

    /// The cursor of `kind`'s lane.
    fn cursor(&self, kind: EntryKind) -> &parking_lot::Mutex<u64> {
        match kind {
            EntryKind::Metrics => &self.cursor[0],
            EntryKind::Event => &self.cursor[1],
        }
    }

    /// Where `kind`'s lane resumes.
    #[cfg(test)]
    pub fn cursor_of(&self, kind: EntryKind) -> u64 {
        *self.cursor(kind).lock()
    }

    /// Whether entry `seq` is still held (not yet taken by a collector).
    pub fn holds(&self, seq: u64) -> bool {
        let k = seq.to_be_bytes();
        self.metrics.contains_key(k).unwrap_or(false)
            || self.events.contains_key(k).unwrap_or(false)
    }

    /// The tree that holds entries of `kind`.
    fn tree(&self, kind: EntryKind) -> &sled::Tree {
        match kind {
            EntryKind::Metrics => &self.metrics,
            EntryKind::Event => &self.events,
        }
    }

    /// Payload bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Entries held.
    pub fn entries(&self) -> u64 {
        self.entries.load(Ordering::Relaxed)
    }

    /// Flushes to disk.
    pub fn flush(&self) -> Result<(), SpoolError> {
        self.db.flush()?;
        Ok(())
    }
}

/// The sequence number of a key (0 for a key that is not 8 bytes: never written).
fn seq_of(k: &[u8]) -> u64 {
    u64::from_be_bytes(k.try_into().unwrap_or([0; 8]))
}

/// The cursor of `kind` stored in `cursors`, checked against `tree`: when an entry
/// is still below it (a cursor written by hand, or a disk that lost the order), the
/// lane starts at its oldest entry instead, so nothing is skipped.
fn load_cursor(
    cursors: &sled::Tree,
    tree: &sled::Tree,
    kind: EntryKind,
) -> Result<u64, SpoolError> {
    let stored = cursors.get([kind as u8])?.map_or(0, |v| seq_of(&v));
    if stored > 0 && tree.range(..stored.to_be_bytes()).next().is_some() {
        tracing::warn!(kind = ?kind, cursor = stored, "spool entries below the lane's cursor: resuming at the oldest");
        return Ok(0);
    }
    Ok(stored)
}

/// Moves the entries of an earlier version's single tree "queue" into the tree of
/// their kind (same keys), then drops it. Entries of an unknown kind are dropped
/// with an error in the log, as the shipper did with them.
fn migrate_single_queue(
    db: &sled::Db,
    metrics: &sled::Tree,
    events: &sled::Tree,
) -> Result<(), SpoolError> {
    if !db.tree_names().iter().any(|n| n.as_ref() == b"queue") {
        return Ok(());
    }
    let old = db.open_tree("queue")?;
    let mut moved = 0u64;
    for item in old.iter() {
        let (k, v) = item?;
        match v.first().copied().and_then(EntryKind::from_byte) {
            Some(EntryKind::Metrics) => metrics.insert(k, v)?,
            Some(EntryKind::Event) => events.insert(k, v)?,
            None => {
                tracing::error!(seq = seq_of(&k), "spool entry of unknown kind: dropped");
                None
            }
        };
        moved += 1;
    }
    // The moved entries are durable before the old tree goes.
    db.flush()?;
    db.drop_tree("queue")?;
    db.flush()?;
    tracing::info!(entries = moved, "spool moved to one tree per kind");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_survives_reopen_and_drops_oldest_metrics_first() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Spool::open(dir.path(), 100).unwrap();
            s.push(EntryKind::Event, &[1; 30]).unwrap();
            s.push(EntryKind::Metrics, &[2; 30]).unwrap();
            s.push(EntryKind::Metrics, &[3; 30]).unwrap();
            // Full: the oldest metrics entry goes, the older event stays.
            s.push(EntryKind::Metrics, &[4; 30]).unwrap();
            assert_eq!(s.dropped_full.load(Ordering::Relaxed), 1);
            s.flush().unwrap();
        }
        let s = Spool::open(dir.path(), 100).unwrap();
        assert_eq!(s.entries(), 3);
        let all = |_: &[u8]| false;
        let e = s
            .oldest_of(EntryKind::Event, 1, usize::MAX, all)
            .unwrap()
            .remove(0);
        assert_eq!(e.payload, vec![1; 30]);
        // Metrics are served past the event ahead of them, which stays.
        let m = s.oldest_of(EntryKind::Metrics, 1, usize::MAX, all).unwrap();
        assert_eq!(m[0].payload, vec![3; 30]);
        assert_eq!(s.entries(), 3);
        s.ack(e.seq).unwrap();
        // What `pass_over` names stays for later.
        let rest = s
            .oldest_of(EntryKind::Metrics, 10, usize::MAX, |p| p[0] == 3)
            .unwrap();
        assert_eq!((rest.len(), rest[0].payload[0]), (1, 4));
        // A batch stops at the byte bound but always holds one entry.
        assert_eq!(
            s.oldest_of(EntryKind::Metrics, 10, 40, all).unwrap().len(),
            1
        );
        assert_eq!(
            s.oldest_of(EntryKind::Metrics, 10, 1 << 20, all)
                .unwrap()
                .len(),
            2
        );
        assert!(s
            .oldest_of(EntryKind::Event, 10, 1 << 20, all)
            .unwrap()
            .is_empty());
        assert!(matches!(
            s.push(EntryKind::Metrics, &[0; 200]),
            Err(SpoolError::TooLarge(..))
        ));
    }

    /// A lane reads from its cursor: acking its oldest entries moves the cursor past
    /// them, an entry passed over holds it, and a reopened spool resumes there.
    #[test]
    fn a_lane_resumes_at_its_cursor_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let all = |_: &[u8]| false;
        let seqs = |v: Vec<Entry>| v.iter().map(|e| e.seq).collect::<Vec<_>>();
        {
            let s = Spool::open(dir.path(), 1 << 20).unwrap();
            for i in 1..=6u8 {
                let kind = if i % 3 == 0 {
                    EntryKind::Event
                } else {
                    EntryKind::Metrics
                };
                assert_eq!(s.push(kind, &[i]).unwrap(), i as u64);
            }
            // metrics: 1 2 4 5, events: 3 6
            assert_eq!(
                (
                    s.cursor_of(EntryKind::Metrics),
                    s.cursor_of(EntryKind::Event)
                ),
                (0, 0)
            );
            let batch = s.oldest_of(EntryKind::Metrics, 2, usize::MAX, all).unwrap();
            assert_eq!(seqs(batch.clone()), vec![1, 2]);
            // Not acked yet: the same entries again (nothing is skipped before an ack).
            assert_eq!(
                seqs(s.oldest_of(EntryKind::Metrics, 2, usize::MAX, all).unwrap()),
                vec![1, 2]
            );
            s.ack(1).unwrap();
            s.ack(2).unwrap();
            assert_eq!(s.cursor_of(EntryKind::Metrics), 3);
            assert_eq!(
                seqs(
                    s.oldest_of(EntryKind::Metrics, 10, usize::MAX, all)
                        .unwrap()
                ),
                vec![4, 5]
            );
            // Events: 3 passed over (its project held), 6 shipped: the cursor stays at 3.
            let e = s
                .oldest_of(EntryKind::Event, 1, usize::MAX, |p| p[0] == 3)
                .unwrap();
            assert_eq!(seqs(e), vec![6]);
            s.ack(6).unwrap();
            assert_eq!(s.cursor_of(EntryKind::Event), 0);
            s.flush().unwrap();
        }
        let s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(s.cursor_of(EntryKind::Metrics), 3);
        assert_eq!(
            seqs(
                s.oldest_of(EntryKind::Metrics, 10, usize::MAX, all)
                    .unwrap()
            ),
            vec![4, 5]
        );
        assert_eq!(
            seqs(s.oldest_of(EntryKind::Event, 10, usize::MAX, all).unwrap()),
            vec![3]
        );
        s.ack(3).unwrap();
        assert_eq!(s.cursor_of(EntryKind::Event), 4);
        // Numbers go on after the last one held; a new entry is read after the cursor.
        assert_eq!(s.push(EntryKind::Event, &[7]).unwrap(), 6);
        assert_eq!(
            seqs(s.oldest_of(EntryKind::Event, 10, usize::MAX, all).unwrap()),
            vec![6]
        );
        // A push numbered below the cursor (drawn before a later entry was acked)
        // moves the cursor back to it.
        s.ack(4).unwrap();
        s.ack(5).unwrap();
        assert_eq!(s.cursor_of(EntryKind::Metrics), 6);
        s.metrics.remove(0u64.to_be_bytes()).unwrap();
        {
            let mut cur = s.cursor(EntryKind::Metrics).lock();
            s.metrics.insert(2u64.to_be_bytes(), vec![1, 2]).unwrap();
            // what `push` does under the lock for a late number
            if 2 < *cur {
                *cur = 2;
            }
        }
        assert_eq!(
            seqs(
                s.oldest_of(EntryKind::Metrics, 10, usize::MAX, all)
                    .unwrap()
            ),
            vec![2]
        );
        // A cursor on disk with an entry below it is not trusted.
        s.cursors
            .insert([EntryKind::Metrics as u8], &9u64.to_be_bytes())
            .unwrap();
        s.flush().unwrap();
        drop(s);
        let s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(s.cursor_of(EntryKind::Metrics), 0);
        assert_eq!(
            seqs(
                s.oldest_of(EntryKind::Metrics, 10, usize::MAX, all)
                    .unwrap()
            ),
            vec![2]
        );
    }

    /// A spool of the earlier layout (one tree "queue") opens with every entry, in
    /// order, and new entries number after the old ones.
    #[test]
    fn a_single_queue_spool_is_moved_into_one_tree_per_kind() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::Config::new().path(dir.path()).open().unwrap();
            let q = db.open_tree("queue").unwrap();
            q.insert(7u64.to_be_bytes(), vec![1, 70]).unwrap();
            q.insert(8u64.to_be_bytes(), vec![2, 80]).unwrap();
            q.insert(9u64.to_be_bytes(), vec![1, 90]).unwrap();
            db.flush().unwrap();
        }
        let s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!((s.entries(), s.bytes()), (3, 6));
        let all = |_: &[u8]| false;
        let m = s.oldest_of(EntryKind::Metrics, 10, 1 << 20, all).unwrap();
        let seqs: Vec<(u64, u8)> = m.iter().map(|e| (e.seq, e.payload[0])).collect();
        assert_eq!(seqs, vec![(7, 70), (9, 90)]);
        let e = s.oldest_of(EntryKind::Event, 10, 1 << 20, all).unwrap();
        assert_eq!((e[0].seq, e[0].payload.clone()), (8, vec![80]));
        assert_eq!(s.push(EntryKind::Event, &[1]).unwrap(), 10);
        s.ack(8).unwrap();
        s.ack(7).unwrap();
        assert_eq!(s.entries(), 2);
        drop(s);
        let s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(s.entries(), 2);
    }
}
