//! The read interface for the query engine and the API: select series by matchers and
//! read their samples in `[mint, maxt]`, merged from sled pages and the head.

use super::chunkenc::ENC_HISTOGRAM;
use super::head::HistSample;
use super::index::Matcher;
use super::{bucket_of, Db, DbError, SeriesRef, BUCKET_MS};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Reads of pages and head made at most this often while buckets move under them
/// (`Db::consistent`).
const READ_TRIES: usize = 8;

/// Selects of at least this many series decode their pages on several threads.
const PARALLEL_REFS: usize = 64;

/// One series' float and histogram samples.
pub type SeriesSamples = (Vec<(i64, f64)>, Vec<HistSample>);

/// What a read decodes of float samples: their values, or only their times (then a
/// value is a stale marker or [`super::chunkenc::NO_VALUE`], see
/// [`super::chunkenc::ChunkView::decode_times_into`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decode {
    /// Times and values.
    Values,
    /// Times, and values only where one may be a stale marker.
    Times,
}

/// What [`Db::read_persisted`] read: float and histogram samples by series.
type Persisted = (
    HashMap<SeriesRef, Vec<(i64, f64)>>,
    HashMap<SeriesRef, Vec<HistSample>>,
);

/// One selected series: its labels (encoded, see `labels.rs`) and samples sorted by
/// time with unique timestamps. Values may be NaN, ±Inf or the staleness marker.
/// Native histogram samples come apart, also sorted by time.
#[derive(Debug, Clone)]
pub struct SeriesData {
    pub labels: Box<[u8]>,
    pub samples: Vec<(i64, f64)>,
    pub histograms: Vec<HistSample>,
}

impl SeriesData {
    /// Labels as owned pairs.
    pub fn label_pairs(&self) -> Vec<(String, String)> {
        super::labels::to_pairs(&self.labels)
    }
}

impl Db {
    /// Refs of the series matching all `matchers`.
    pub fn select_refs(&self, matchers: &[Matcher]) -> Vec<SeriesRef> {
        self.index.read().select(matchers)
    }

    /// Series matching `matchers` with their samples in `[mint, maxt]`; series without
    /// samples in the range are left out. Sorted by labels.
    pub fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesData>, DbError> {
        self.consistent(|| self.select_once(matchers, mint, maxt))
    }

    /// Runs `read` (pages from a catalog taken first, then the head) until no bucket
    /// moved from the head to pages while it ran ([`Db::head_moves`]): a read that
    /// took the catalog before a persist added its bucket and read the head after the
    /// persist dropped it would miss that bucket in both. At most [`READ_TRIES`] tries;
    /// persists are seconds apart, reads of pages far shorter.
    fn consistent<T>(&self, mut read: impl FnMut() -> Result<T, DbError>) -> Result<T, DbError> {
        let mut tries = 0;
        loop {
            let moves = self.head_moves.load(Ordering::SeqCst);
            let out = read()?;
            tries += 1;
            if tries >= READ_TRIES || self.head_moves.load(Ordering::SeqCst) == moves {
                return Ok(out);
            }
        }
    }

    fn select_once(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesData>, DbError> {
        let refs = self.select_refs(matchers);
        let limit = self.opts.max_query_samples;
        let total = AtomicUsize::new(0);
        // Persisted buckets first.
        let buckets: Vec<(i64, Vec<u32>)> = self
            .catalog
            .read()
            .range(bucket_of(mint)..=maxt.min(i64::MAX - BUCKET_MS))
            .map(|(b, g)| (*b, g.clone()))
            .collect();
        let (mut acc, mut hacc) =
            self.read_persisted_parallel(&refs, &buckets, (mint, maxt, Decode::Values), &total)?;
        let mut total = total.into_inner();
        let mut out = Vec::with_capacity(refs.len());
        for r in refs {
            let mut samples = acc.remove(&r).unwrap_or_default();
            let mut histograms = hacc.remove(&r).unwrap_or_default();
            let before = samples.len() + histograms.len();
            // The head keeps every known series' labels, so a ref it does not know is a
            // slot whose definition was never replayed: nothing to return.
            let Some(labels) = self.head.read(r, mint, maxt, &mut samples, &mut histograms) else {
                continue;
            };
            total += samples.len() + histograms.len() - before;
            if total > limit {
                return Err(DbError::TooManySamples(limit));
            }
            if samples.is_empty() && histograms.is_empty() {
                continue;
            }
            sort_unique(&mut samples, &mut histograms);
            out.push(SeriesData {
                labels,
                samples,
                histograms,
            });
        }
        out.sort_by(|a, b| super::labels::cmp(&a.labels, &b.labels));
        Ok(out)
    }

    /// The series matching `matchers` as `(ref, labels)`, sorted by labels: what
    /// [`Db::select`] returns, without reading samples, for a caller that reads them a
    /// batch at a time ([`Db::read_samples`]).
    pub fn select_labels(&self, matchers: &[Matcher]) -> Vec<(SeriesRef, Box<[u8]>)> {
        let mut out: Vec<(SeriesRef, Box<[u8]>)> = self
            .select_refs(matchers)
            .into_iter()
            .filter_map(|r| Some((r, self.head.labels(r)?)))
            .collect();
        out.sort_by(|a, b| super::labels::cmp(&a.1, &b.1));
        out
    }

    /// The samples in `[mint, maxt]` of each series of `refs` (any order), as
    /// [`Db::select`] reads them: floats and histograms sorted by time with unique
    /// timestamps. `total` counts the samples read; past the query limit, an error.
    /// `decode` says whether persisted float values are decoded (the head's always are).
    pub fn read_samples(
        &self,
        refs: &[SeriesRef],
        mint: i64,
        maxt: i64,
        total: &mut usize,
        decode: Decode,
    ) -> Result<Vec<SeriesSamples>, DbError> {
        let start = *total;
        self.consistent(|| {
            *total = start;
            self.read_samples_once(refs, mint, maxt, total, decode)
        })
    }

    fn read_samples_once(
        &self,
        refs: &[SeriesRef],
        mint: i64,
        maxt: i64,
        total: &mut usize,
        decode: Decode,
    ) -> Result<Vec<SeriesSamples>, DbError> {
        let limit = self.opts.max_query_samples;
        let buckets: Vec<(i64, Vec<u32>)> = self
            .catalog
            .read()
            .range(bucket_of(mint)..=maxt.min(i64::MAX - BUCKET_MS))
            .map(|(b, g)| (*b, g.clone()))
            .collect();
        let mut sorted = refs.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let read = AtomicUsize::new(*total);
        let (mut acc, mut hacc) =
            self.read_persisted_parallel(&sorted, &buckets, (mint, maxt, decode), &read)?;
        *total = read.into_inner();
        let mut out = Vec::with_capacity(refs.len());
        for &r in refs {
            let mut samples = acc.remove(&r).unwrap_or_default();
            let mut histograms = hacc.remove(&r).unwrap_or_default();
            let before = samples.len() + histograms.len();
            if self
                .head
                .read_samples(r, mint, maxt, &mut samples, &mut histograms)
            {
                *total += samples.len() + histograms.len() - before;
            }
            if *total > limit {
                return Err(DbError::TooManySamples(limit));
            }
            sort_unique(&mut samples, &mut histograms);
            out.push((samples, histograms));
        }
        Ok(out)
    }

    /// [`Db::read_persisted`], the refs split into runs (each reads its own pages)
    /// decoded on separate threads: decoding is most of a large select.
    fn read_persisted_parallel(
        &self,
        refs: &[SeriesRef],
        buckets: &[(i64, Vec<u32>)],
        range: (i64, i64, Decode),
        total: &AtomicUsize,
    ) -> Result<Persisted, DbError> {
        let threads = if refs.len() >= PARALLEL_REFS && buckets.len() > 1 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .min(refs.len() / (PARALLEL_REFS / 2))
                .max(1)
        } else {
            1
        };
        let per = refs.len().div_ceil(threads).max(1);
        let run = |part: &[SeriesRef]| self.read_persisted(part, buckets, range, total);
        let parts: Vec<Result<Persisted, DbError>> = if threads == 1 {
            vec![run(refs)]
        } else {
            std::thread::scope(|sc| {
                let handles: Vec<_> = refs
                    .chunks(per)
                    .skip(1)
                    .map(|part| sc.spawn(move || run(part)))
                    .collect();
                let mut parts = vec![run(&refs[..per.min(refs.len())])];
                for h in handles {
                    parts.push(h.join().unwrap_or_else(|_| {
                        Err(DbError::Corrupt("a thread reading pages panicked".into()))
                    }));
                }
                parts
            })
        };
        let mut acc: HashMap<SeriesRef, Vec<(i64, f64)>> = HashMap::with_capacity(refs.len());
        let mut hacc: HashMap<SeriesRef, Vec<HistSample>> = HashMap::new();
        for part in parts {
            let (a, h) = part?;
            acc.extend(a);
            hacc.extend(h);
        }
        Ok((acc, hacc))
    }

    /// The float and histogram samples in `[mint, maxt]` of the series `refs` (sorted)
    /// in the persisted `buckets`, float values decoded as `decode` says, counting them
    /// into `total`; fails once `total` passes the query limit.
    fn read_persisted(
        &self,
        refs: &[SeriesRef],
        buckets: &[(i64, Vec<u32>)],
        (mint, maxt, decode): (i64, i64, Decode),
        total: &AtomicUsize,
    ) -> Result<Persisted, DbError> {
        let limit = self.opts.max_query_samples;
        let mut acc: HashMap<SeriesRef, Vec<(i64, f64)>> = HashMap::with_capacity(refs.len());
        let mut hacc: HashMap<SeriesRef, Vec<HistSample>> = HashMap::new();
        let nbuckets = buckets.len();
        let mut over = false;
        for (bi, (b, gens)) in buckets.iter().enumerate() {
            for &g in gens {
                let mut read = 0usize;
                self.store.read_pages(*b, g, refs, |r, chunks| {
                    let v = acc.entry(r).or_insert_with(|| {
                        // Sized for the rest of the range at this bucket's density of
                        // samples: regular series need no regrowth (doubling a day of
                        // samples twelve times cost 5% of a query), and a range that
                        // starts late in its first bucket does not end up with twice
                        // the memory after one doubling too many. At most four times
                        // this bucket's count in every bucket to come (and the head).
                        let here: usize = chunks.iter().map(|c| c.count as usize).sum();
                        let first = chunks.iter().map(|c| c.min_t).min().unwrap_or(mint);
                        let last = chunks.iter().map(|c| c.max_t).max().unwrap_or(maxt);
                        let span = last.saturating_sub(first).max(1) as f64;
                        let rest = maxt.saturating_sub(first).max(1) as f64;
                        let est = (here as f64 * (rest / span) * 1.02) as usize + 8;
                        let bound = here.saturating_mul(nbuckets - bi + 1).saturating_mul(4);
                        Vec::with_capacity(est.min(bound).max(here))
                    });
                    let before = v.len();
                    for c in chunks {
                        if c.encoding == ENC_HISTOGRAM {
                            if c.max_t >= mint && c.min_t <= maxt {
                                let h = hacc.entry(r).or_default();
                                let before = h.len();
                                h.extend(
                                    super::histogram::decode_chunk(c.data, c.count)
                                        .into_iter()
                                        .filter(|s| s.0 >= mint && s.0 <= maxt),
                                );
                                read += h.len() - before;
                            }
                            continue;
                        }
                        match decode {
                            Decode::Values => c.decode_into(v, mint, maxt),
                            Decode::Times => c.decode_times_into(v, mint, maxt),
                        }
                    }
                    read += v.len() - before;
                })?;
                over |= total.fetch_add(read, Ordering::Relaxed) + read > limit;
                if over {
                    return Err(DbError::TooManySamples(limit));
                }
            }
        }
        Ok((acc, hacc))
    }

    /// Label sets of the series matching `matchers` (any time), sorted by labels.
    pub fn series(&self, matchers: &[Matcher]) -> Result<Vec<Box<[u8]>>, DbError> {
        let mut out = Vec::new();
        for r in self.select_refs(matchers) {
            if let Some(l) = self.head.labels(r) {
                out.push(l);
            }
        }
        out.sort_by(|a, b| super::labels::cmp(a, b));
        Ok(out)
    }

    /// Refs of the series matching any of `selectors`, sorted, without duplicates.
    pub fn select_refs_any(&self, selectors: &[Vec<Matcher>]) -> Vec<SeriesRef> {
        let mut refs: Vec<SeriesRef> = Vec::new();
        for ms in selectors {
            let r = self.select_refs(ms);
            refs = if refs.is_empty() {
                r
            } else {
                union_sorted(&refs, &r)
            };
        }
        refs
    }

    /// The first `k` label sets in label order among the series matching any of
    /// `selectors`, and whether there were more. Memory is bounded by `k` label sets
    /// (plus 8 bytes per matching series), whatever the number of matches.
    pub fn series_first(&self, selectors: &[Vec<Matcher>], k: usize) -> (Vec<Box<[u8]>>, bool) {
        struct ByLabels(Box<[u8]>);
        impl PartialEq for ByLabels {
            fn eq(&self, o: &Self) -> bool {
                self.cmp(o) == std::cmp::Ordering::Equal
            }
        }
        impl Eq for ByLabels {}
        impl PartialOrd for ByLabels {
            fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(o))
            }
        }
        impl Ord for ByLabels {
            fn cmp(&self, o: &Self) -> std::cmp::Ordering {
                super::labels::cmp(&self.0, &o.0)
            }
        }
        if k == 0 {
            return (Vec::new(), false);
        }
        let refs = self.select_refs_any(selectors);
        // A max-heap of the k smallest seen so far.
        let mut heap: std::collections::BinaryHeap<ByLabels> =
            std::collections::BinaryHeap::with_capacity(k.min(refs.len()) + 1);
        let mut more = false;
        for r in refs {
            let Some(l) = self.head.labels(r) else {
                continue;
            };
            if heap.len() < k {
                heap.push(ByLabels(l));
                continue;
            }
            more = true;
            let l = ByLabels(l);
            if heap.peek().is_some_and(|top| l < *top) {
                heap.pop();
                heap.push(l);
            }
        }
        let out = heap.into_sorted_vec().into_iter().map(|b| b.0).collect();
        (out, more)
    }

    /// Calls `f` with the labels of each series matching any of `selectors`, without
    /// collecting them.
    pub fn for_each_series(&self, selectors: &[Vec<Matcher>], mut f: impl FnMut(&[u8])) {
        for r in self.select_refs_any(selectors) {
            if let Some(l) = self.head.labels(r) {
                f(&l);
            }
        }
    }

    /// All label names, sorted.
    pub fn label_names(&self) -> Vec<String> {
        self.index.read().label_names()
    }

    /// All values of a label name, sorted.
    pub fn label_values(&self, name: &str) -> Vec<String> {
        self.index.read().label_values(name)
    }
}

fn union_sorted(a: &[SeriesRef], b: &[SeriesRef]) -> Vec<SeriesRef> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// Sorts a series' samples by time and keeps one per timestamp. Buckets and the head
/// come in time order, so the floats usually need nothing.
fn sort_unique<H>(samples: &mut Vec<(i64, f64)>, histograms: &mut Vec<(i64, H)>) {
    // A fold without a short cut, which the compiler vectorises: sorted is the rule.
    if !samples
        .windows(2)
        .fold(true, |ok, w| ok & (w[0].0 < w[1].0))
    {
        samples.sort_by_key(|s| s.0);
        samples.dedup_by_key(|s| s.0);
    }
    if !histograms.is_empty() {
        histograms.sort_by_key(|s| s.0);
        histograms.dedup_by_key(|s| s.0);
    }
}
