//! The read interface for the query engine and the API: select series by matchers and
//! read their samples in `[mint, maxt]`, merged from sled pages and the head.

use super::chunkenc::ENC_HISTOGRAM;
use super::head::HistSample;
use super::index::Matcher;
use super::{bucket_of, Db, DbError, SeriesRef, BUCKET_MS};
use std::collections::HashMap;

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
        let refs = self.select_refs(matchers);
        let mut acc: HashMap<SeriesRef, Vec<(i64, f64)>> = HashMap::with_capacity(refs.len());
        let mut hacc: HashMap<SeriesRef, Vec<HistSample>> = HashMap::new();
        let mut total = 0usize;
        let limit = self.opts.max_query_samples;
        // Persisted buckets first.
        let buckets: Vec<(i64, Vec<u32>)> = self
            .catalog
            .read()
            .range(bucket_of(mint)..=maxt.min(i64::MAX - BUCKET_MS))
            .map(|(b, g)| (*b, g.clone()))
            .collect();
        let mut over = false;
        let nbuckets = buckets.len();
        for (bi, (b, gens)) in buckets.into_iter().enumerate() {
            for g in gens {
                self.store.read_pages(b, g, &refs, |r, chunks| {
                    let v = acc.entry(r).or_insert_with(|| {
                        // Sized for this bucket's samples in every bucket still to come
                        // and the head's share: regular series need no regrowth
                        // (doubling a day of samples twelve times cost 5% of a query).
                        let here: usize = chunks.iter().map(|c| c.count as usize).sum();
                        Vec::with_capacity(here * (nbuckets - bi + 1))
                    });
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
                                total += h.len() - before;
                            }
                            continue;
                        }
                        if c.max_t >= mint && c.min_t <= maxt {
                            let before = v.len();
                            v.extend(c.iter().filter(|s| s.0 >= mint && s.0 <= maxt));
                            total += v.len() - before;
                        }
                    }
                    over |= total > limit;
                })?;
                if over {
                    return Err(DbError::TooManySamples(limit));
                }
            }
        }
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
            samples.sort_by_key(|s| s.0);
            samples.dedup_by_key(|s| s.0);
            if !histograms.is_empty() {
                histograms.sort_by_key(|s| s.0);
                histograms.dedup_by_key(|s| s.0);
            }
            out.push(SeriesData {
                labels,
                samples,
                histograms,
            });
        }
        out.sort_by(|a, b| super::labels::cmp(&a.labels, &b.labels));
        Ok(out)
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

    /// All label names, sorted.
    pub fn label_names(&self) -> Vec<String> {
        self.index.read().label_names()
    }

    /// All values of a label name, sorted.
    pub fn label_values(&self, name: &str) -> Vec<String> {
        self.index.read().label_values(name)
    }
}
