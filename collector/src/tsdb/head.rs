//! The head: every series' recent samples, in memory, in XOR chunks.
//!
//! Series live in [`SHARDS`] shards, each behind its own mutex, chosen by the hash of
//! the series' encoded labels; a series ref names its shard and its slot:
//!
//! ```text
//! ref = slot * SHARDS + shard
//! ```
//!
//! Each series has the closed chunks not yet persisted to sled, one open chunk, and a
//! small sorted buffer of out-of-order samples. A chunk is cut at [`MAX_SAMPLES`]
//! samples and at every bucket boundary ([`super::BUCKET_MS`]), so a bucket can be
//! persisted by moving whole chunks.

use super::chunkenc::{Chunk, XorAppender, ENC_HISTOGRAM, MAX_SAMPLES};
use super::histogram::{FloatHistogram, ResetHint};
use super::{bucket_of, SeriesRef};
use hashbrown::HashTable;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Number of shards of the head. A power of two.
pub const SHARDS: usize = 64;

/// What happened to one appended sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Stored in time order.
    Appended,
    /// Stored in the out-of-order buffer.
    OutOfOrder,
    /// The same timestamp and value were already stored (a retry): nothing to do.
    Duplicate,
    /// Refused: same timestamp, another value.
    Conflict,
    /// Refused: older than the out-of-order window allows.
    TooOld,
    /// Refused: older than what is already persisted (outside the head).
    OutOfBounds,
    /// Refused: stamped more than the future grace ahead of the collector's clock.
    TooFarInFuture,
    /// Refused: older than the retention (it would be deleted at once).
    OlderThanRetention,
}

/// One series in memory.
pub struct MemSeries {
    /// Canonical label encoding (see `labels.rs`); empty for a slot whose definition
    /// has not been replayed yet.
    pub labels: Box<[u8]>,
    pub hash: u64,
    /// Closed chunks not yet persisted into a bucket, oldest first.
    pub closed: Vec<Chunk>,
    /// The chunk being appended to (may be empty).
    pub open: XorAppender,
    /// Out-of-order samples, sorted by time, unique timestamps.
    pub ooo: Vec<(i64, f64)>,
    /// Native histogram samples, sorted by time, unique timestamps; `None` for the
    /// (usual) series that never had one, so float series pay one pointer for them.
    /// A series may hold floats and histograms at different timestamps (Prometheus
    /// cuts a new chunk when the kind changes; here each kind has its own store and
    /// a read merges them by time).
    pub hist: Option<Box<Vec<HistSample>>>,
}

/// A native histogram sample: timestamp (ms) and histogram.
pub type HistSample = (i64, Arc<FloatHistogram>);

impl MemSeries {
    fn new(labels: Box<[u8]>, hash: u64) -> MemSeries {
        MemSeries {
            labels,
            hash,
            closed: Vec::new(),
            open: XorAppender::new(),
            ooo: Vec::new(),
            hist: None,
        }
    }

    /// Appends one histogram sample (in any order: histograms are kept sorted in
    /// memory). `ooo_window` as for [`MemSeries::append`].
    pub fn append_histogram(
        &mut self,
        t: i64,
        h: &Arc<FloatHistogram>,
        ooo_window: Option<i64>,
        min_valid: i64,
    ) -> AppendOutcome {
        if t < min_valid {
            return AppendOutcome::OutOfBounds;
        }
        if self.find(t).is_some() {
            return AppendOutcome::Conflict;
        }
        let float_last = self.last_t();
        let hs = self.hist.get_or_insert_with(Default::default);
        let last = hs.last().map(|s| s.0).unwrap_or(i64::MIN);
        if t > last {
            // Like Prometheus' chunks: a histogram following a histogram carries whether
            // it is a counter reset (unless its writer said so, or it is a gauge); the
            // first one, and one following a float, stays "unknown".
            let mut h = h.clone();
            if h.counter_reset_hint == ResetHint::Unknown {
                if let Some(prev) = hs.last().filter(|p| p.0 > float_last) {
                    let mut c = (*h).clone();
                    c.counter_reset_hint = if c.detect_reset(&prev.1) {
                        ResetHint::Reset
                    } else {
                        ResetHint::NotReset
                    };
                    h = Arc::new(c);
                }
            }
            hs.push((t, h));
            return AppendOutcome::Appended;
        }
        let pos = hs.partition_point(|s| s.0 < t);
        if hs.get(pos).is_some_and(|s| s.0 == t) {
            return if *hs[pos].1 == **h {
                AppendOutcome::Duplicate
            } else {
                AppendOutcome::Conflict
            };
        }
        if let Some(w) = ooo_window {
            if t < last.max(self.last_t()).saturating_sub(w) {
                return AppendOutcome::TooOld;
            }
        }
        if let Some(hs) = self.hist.as_mut() {
            hs.insert(pos, (t, h.clone()));
        }
        AppendOutcome::OutOfOrder
    }

    /// Appends every histogram sample in `[mint, maxt]` to `out`, sorted.
    pub fn collect_histograms(&self, mint: i64, maxt: i64, out: &mut Vec<HistSample>) {
        if let Some(hs) = &self.hist {
            let a = hs.partition_point(|s| s.0 < mint);
            let b = hs.partition_point(|s| s.0 <= maxt);
            if a < b {
                out.extend_from_slice(&hs[a..b]);
            }
        }
    }

    /// Loads histogram chunks (from a checkpoint) into the series.
    pub fn load_histogram_chunk(&mut self, c: &Chunk) {
        for (t, h) in super::histogram::decode_chunk(&c.data, c.count) {
            self.append_histogram(t, &h, None, i64::MIN);
        }
    }

    /// The series' histogram samples as chunks of [`MAX_SAMPLES`] (encoding
    /// [`ENC_HISTOGRAM`]), those of bucket `only` or all of them.
    pub fn histogram_chunks(&self, only: Option<i64>) -> Vec<Chunk> {
        let Some(hs) = &self.hist else {
            return Vec::new();
        };
        let part: Vec<HistSample> = hs
            .iter()
            .filter(|s| only.is_none_or(|b| bucket_of(s.0) == b))
            .cloned()
            .collect();
        part.chunks(MAX_SAMPLES as usize)
            .filter(|p| !p.is_empty())
            .map(|p| Chunk {
                min_t: p[0].0,
                max_t: p[p.len() - 1].0,
                count: p.len() as u16,
                encoding: ENC_HISTOGRAM,
                data: super::histogram::encode_chunk(p).into_boxed_slice(),
            })
            .collect()
    }

    /// Timestamp of the newest in-order sample, `i64::MIN` when there is none.
    pub fn last_t(&self) -> i64 {
        if self.open.count() > 0 {
            self.open.max_time()
        } else {
            self.closed.last().map(|c| c.max_t).unwrap_or(i64::MIN)
        }
    }

    /// The value stored at exactly `t`, if any.
    fn find(&self, t: i64) -> Option<f64> {
        if let Ok(i) = self.ooo.binary_search_by_key(&t, |s| s.0) {
            return Some(self.ooo[i].1);
        }
        if self.open.count() > 0 && self.open.min_time() <= t && t <= self.open.max_time() {
            return self.open.finish().iter().find(|s| s.0 == t).map(|s| s.1);
        }
        self.closed
            .iter()
            .filter(|c| c.min_t <= t && t <= c.max_t)
            .find_map(|c| c.iter().find(|s| s.0 == t).map(|s| s.1))
    }

    /// Appends one sample. `ooo_window` of `None` accepts any order (WAL replay).
    pub fn append(
        &mut self,
        t: i64,
        v: f64,
        ooo_window: Option<i64>,
        min_valid: i64,
    ) -> AppendOutcome {
        if t < min_valid {
            return AppendOutcome::OutOfBounds;
        }
        if let Some(hs) = &self.hist {
            if hs.binary_search_by_key(&t, |s| s.0).is_ok() {
                return AppendOutcome::Conflict;
            }
        }
        let last = self.last_t();
        if t > last {
            if self.open.count() >= MAX_SAMPLES
                || (self.open.count() > 0 && bucket_of(t) != bucket_of(self.open.min_time()))
            {
                self.closed.push(self.open.finish());
                self.open = XorAppender::new();
            }
            self.open.append(t, v);
            return AppendOutcome::Appended;
        }
        if let Some(existing) = self.find(t) {
            return if existing.to_bits() == v.to_bits() {
                AppendOutcome::Duplicate
            } else {
                AppendOutcome::Conflict
            };
        }
        if let Some(w) = ooo_window {
            if t < last.saturating_sub(w) {
                return AppendOutcome::TooOld;
            }
        }
        let pos = self.ooo.partition_point(|s| s.0 < t);
        self.ooo.insert(pos, (t, v));
        AppendOutcome::OutOfOrder
    }

    /// Appends every sample in `[mint, maxt]` to `out` (unsorted across chunks).
    pub fn collect(&self, mint: i64, maxt: i64, out: &mut Vec<(i64, f64)>) {
        // At most every sample of the overlapping chunks: one allocation instead of a
        // Vec grown by doubling from filtered iterators (no size hint), which was a
        // tenth of a head query's time in malloc, realloc and memmove.
        let overlaps = |lo: i64, hi: i64| hi >= mint && lo <= maxt;
        let open = (self.open.count() > 0 && overlaps(self.open.min_time(), self.open.max_time()))
            .then_some(&self.open);
        let most: usize = self
            .closed
            .iter()
            .filter(|c| overlaps(c.min_t, c.max_t))
            .map(|c| usize::from(c.count))
            .sum::<usize>()
            + open.map_or(0, |o| usize::from(o.count()))
            + self.ooo.len();
        out.reserve(most);
        // One decoding loop per chunk's encoding, not a dispatch per sample.
        for c in self.closed.iter().filter(|c| overlaps(c.min_t, c.max_t)) {
            c.as_view().decode_into(out, mint, maxt);
        }
        if let Some(o) = open {
            out.extend(o.finish().iter().filter(|s| s.0 >= mint && s.0 <= maxt));
        }
        out.extend(self.ooo.iter().filter(|s| s.0 >= mint && s.0 <= maxt));
    }

    /// Copies every chunk and sample of bucket `b` (for persisting it), leaving the
    /// series as it is; [`MemSeries::drop_before`] removes them once they are durable.
    /// The open chunk is included when it lies in `b` (the series went quiet there).
    pub fn copy_bucket(&self, b: i64) -> Vec<Chunk> {
        let mut out: Vec<Chunk> = self
            .closed
            .iter()
            .filter(|c| bucket_of(c.min_t) == b)
            .cloned()
            .collect();
        if self.open.count() > 0 && bucket_of(self.open.min_time()) == b {
            out.push(self.open.finish());
        }
        let part: Vec<(i64, f64)> = self
            .ooo
            .iter()
            .filter(|s| bucket_of(s.0) == b)
            .copied()
            .collect();
        for p in part.chunks(MAX_SAMPLES as usize) {
            out.push(Chunk::from_samples(p));
        }
        out.extend(self.histogram_chunks(Some(b)));
        out
    }

    /// Drops everything older than `t` (used once buckets before `t` are persisted).
    pub fn drop_before(&mut self, t: i64) {
        self.closed.retain(|c| c.max_t >= t);
        if self.open.count() > 0 && self.open.max_time() < t {
            self.open = XorAppender::new();
        }
        let cut = self.ooo.partition_point(|s| s.0 < t);
        self.ooo.drain(..cut);
        if let Some(hs) = self.hist.as_mut() {
            let cut = hs.partition_point(|s| s.0 < t);
            hs.drain(..cut);
            if hs.is_empty() {
                self.hist = None;
            }
        }
    }

    /// True when the series holds no sample in memory (everything it had is in pages,
    /// or it never stored one).
    pub fn is_empty(&self) -> bool {
        self.closed.is_empty()
            && self.open.count() == 0
            && self.ooo.is_empty()
            && self.hist.is_none()
    }

    /// Oldest bucket that holds data in memory.
    pub fn oldest_bucket(&self) -> Option<i64> {
        let mut m: Option<i64> = None;
        let mut see = |t: i64| {
            let b = bucket_of(t);
            m = Some(m.map_or(b, |x: i64| x.min(b)));
        };
        if let Some(c) = self.closed.first() {
            see(c.min_t);
        }
        if self.open.count() > 0 {
            see(self.open.min_time());
        }
        if let Some(s) = self.ooo.first() {
            see(s.0);
        }
        if let Some(s) = self.hist.as_ref().and_then(|h| h.first()) {
            see(s.0);
        }
        m
    }

    /// Bytes of sample data held (for the memory gauge).
    pub fn data_bytes(&self) -> usize {
        self.closed.iter().map(|c| c.data.len()).sum::<usize>()
            + self.open.byte_len()
            + self.ooo.len() * 16
            + self.hist.as_ref().map_or(0, |h| {
                h.iter()
                    .map(|s| 96 + 8 * (s.1.positive_buckets.len() + s.1.negative_buckets.len()))
                    .sum()
            })
    }
}

/// One shard: a hash table of its series and their slots.
#[derive(Default)]
pub struct Shard {
    table: HashTable<u32>,
    pub series: Vec<MemSeries>,
    /// Slots below this are saved in the sled `series` tree.
    pub saved_upto: usize,
}

impl Shard {
    /// The slot of the series with these encoded labels, if it exists.
    pub fn lookup(&self, hash: u64, labels: &[u8]) -> Option<u32> {
        self.table
            .find(hash, |&slot| &*self.series[slot as usize].labels == labels)
            .copied()
    }

    /// Creates a series in the next free slot and returns the slot.
    pub fn create(&mut self, hash: u64, labels: &[u8]) -> u32 {
        let slot = self.series.len() as u32;
        self.series.push(MemSeries::new(labels.into(), hash));
        let series = &self.series;
        self.table
            .insert_unique(hash, slot, |&s| series[s as usize].hash);
        slot
    }

    /// Removes the series in `slot` (series GC): its slot becomes an empty placeholder
    /// that is never handed out again, so its ref never names another series.
    pub fn remove(&mut self, slot: u32) {
        let Some(ms) = self.series.get(slot as usize) else {
            return;
        };
        if ms.labels.is_empty() {
            return;
        }
        if let Ok(e) = self.table.find_entry(ms.hash, |&s| s == slot) {
            e.remove();
        }
        self.series[slot as usize] = MemSeries::new(Box::new([]), 0);
    }

    /// Makes sure `slot` exists (as a placeholder if it holds nothing), so [`create`]
    /// never hands it out: load calls this for the refs of removed series.
    ///
    /// [`create`]: Shard::create
    pub fn reserve(&mut self, slot: u32) {
        while self.series.len() <= slot as usize {
            self.series.push(MemSeries::new(Box::new([]), 0));
        }
    }

    /// Puts a series into a given slot (WAL replay and load), leaving empty
    /// placeholders in any gap. Returns false if the slot holds other labels.
    pub fn put(&mut self, slot: u32, hash: u64, labels: &[u8]) -> bool {
        let slot_us = slot as usize;
        self.reserve(slot);
        let existing = &self.series[slot_us];
        if !existing.labels.is_empty() {
            return &*existing.labels == labels;
        }
        self.series[slot_us] = MemSeries::new(labels.into(), hash);
        let series = &self.series;
        self.table
            .insert_unique(hash, slot, |&s| series[s as usize].hash);
        true
    }
}

/// The sharded head.
pub struct Head {
    pub shards: Box<[Mutex<Shard>]>,
    /// Samples older than this are persisted already and refused.
    pub min_valid: AtomicI64,
    /// Newest timestamp seen in any series.
    pub max_t: AtomicI64,
}

impl Default for Head {
    fn default() -> Self {
        Head {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            min_valid: AtomicI64::new(i64::MIN),
            max_t: AtomicI64::new(i64::MIN),
        }
    }
}

/// Splits a ref into (shard, slot).
pub fn split_ref(r: SeriesRef) -> (usize, u32) {
    ((r as usize) % SHARDS, r / SHARDS as u32)
}

/// Joins a shard and a slot into a ref.
pub fn make_ref(shard: usize, slot: u32) -> SeriesRef {
    slot * SHARDS as u32 + shard as u32
}

/// The shard a label hash belongs to.
pub fn shard_of(hash: u64) -> usize {
    // The low bits feed the hash table; use high bits for the shard.
    (hash >> 58) as usize % SHARDS
}

impl Head {
    /// Raises the newest-timestamp mark.
    pub fn observe_time(&self, t: i64) {
        self.max_t.fetch_max(t, Ordering::Relaxed);
    }

    /// Copies labels and the samples in `[mint, maxt]` of one series.
    pub fn read(
        &self,
        r: SeriesRef,
        mint: i64,
        maxt: i64,
        out: &mut Vec<(i64, f64)>,
        hout: &mut Vec<HistSample>,
    ) -> Option<Box<[u8]>> {
        self.collect(r, mint, maxt, out, hout, |s| s.labels.clone())
    }

    /// [`Head::read`] for a caller that already has the labels: false when the series
    /// is unknown (nothing read).
    pub fn read_samples(
        &self,
        r: SeriesRef,
        mint: i64,
        maxt: i64,
        out: &mut Vec<(i64, f64)>,
        hout: &mut Vec<HistSample>,
    ) -> bool {
        self.collect(r, mint, maxt, out, hout, |_| ()).is_some()
    }

    /// Appends series `r`'s samples in `[mint, maxt]` to `out` and `hout` and returns
    /// `then` of the series, under one lock; `None` for an unknown series.
    fn collect<T>(
        &self,
        r: SeriesRef,
        mint: i64,
        maxt: i64,
        out: &mut Vec<(i64, f64)>,
        hout: &mut Vec<HistSample>,
        then: impl FnOnce(&MemSeries) -> T,
    ) -> Option<T> {
        let (shard, slot) = split_ref(r);
        let s = self.shards[shard].lock();
        let series = s.series.get(slot as usize)?;
        if series.labels.is_empty() {
            return None;
        }
        series.collect(mint, maxt, out);
        series.collect_histograms(mint, maxt, hout);
        Some(then(series))
    }

    /// Labels of one series.
    pub fn labels(&self, r: SeriesRef) -> Option<Box<[u8]>> {
        let (shard, slot) = split_ref(r);
        let s = self.shards[shard].lock();
        let series = s.series.get(slot as usize)?;
        (!series.labels.is_empty()).then(|| series.labels.clone())
    }

    /// Number of series slots in use.
    pub fn series_count(&self) -> usize {
        self.shards.iter().map(|s| s.lock().series.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_in_order_out_of_order_and_duplicates() {
        let mut s = MemSeries::new(Box::new([1]), 1);
        let w = Some(60_000);
        assert_eq!(s.append(1000, 1.0, w, i64::MIN), AppendOutcome::Appended);
        assert_eq!(s.append(2000, 2.0, w, i64::MIN), AppendOutcome::Appended);
        assert_eq!(s.append(2000, 2.0, w, i64::MIN), AppendOutcome::Duplicate);
        assert_eq!(s.append(2000, 3.0, w, i64::MIN), AppendOutcome::Conflict);
        assert_eq!(s.append(1000, 1.0, w, i64::MIN), AppendOutcome::Duplicate);
        assert_eq!(s.append(1500, 1.5, w, i64::MIN), AppendOutcome::OutOfOrder);
        assert_eq!(s.append(100_000, 9.0, w, i64::MIN), AppendOutcome::Appended);
        assert_eq!(s.append(10_000, 9.0, w, i64::MIN), AppendOutcome::TooOld);
        assert_eq!(
            s.append(10_000, 9.0, None, i64::MIN),
            AppendOutcome::OutOfOrder
        );
        assert_eq!(s.append(5, 9.0, w, 10), AppendOutcome::OutOfBounds);
        let mut out = vec![];
        s.collect(0, i64::MAX, &mut out);
        out.sort_by_key(|x| x.0);
        assert_eq!(
            out,
            vec![
                (1000, 1.0),
                (1500, 1.5),
                (2000, 2.0),
                (10_000, 9.0),
                (100_000, 9.0)
            ]
        );
    }

    #[test]
    fn chunks_are_cut_at_bucket_boundaries_and_taken_by_bucket() {
        let mut s = MemSeries::new(Box::new([1]), 1);
        let b = super::super::BUCKET_MS;
        for t in (0..2 * b).step_by(60_000) {
            s.append(t, t as f64, None, i64::MIN);
        }
        let first = s.copy_bucket(0);
        s.drop_before(b);
        assert!(first.iter().all(|c| c.max_t < b));
        assert_eq!(
            first.iter().map(|c| c.count as i64).sum::<i64>(),
            b / 60_000
        );
        let mut rest = vec![];
        s.collect(0, i64::MAX, &mut rest);
        assert_eq!(rest.len() as i64, b / 60_000);
    }
}
