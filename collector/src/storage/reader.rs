//! [`SeriesReader`]: what PromQL, the series/labels API and the rules read.
//!
//! The calls are coarse on purpose: one dynamic call selects every series of a
//! selector, or reads the samples of a batch of series, never one per sample, so a
//! reader behind `dyn` costs nothing measurable (a fan-out reader for cluster mode
//! plugs in here and merges the answers of the partitions' owners).

use super::StorageError;

pub use crate::tsdb::index::{MatchOp, Matcher};
pub use crate::tsdb::querier::{SeriesData, SeriesSamples};

/// A series' handle inside one reader, from [`SeriesReader::select_labels`], good for
/// [`SeriesReader::read_samples`] of the same reader during one query. Opaque to the
/// callers (the embedded TSDB hands out its series refs; a fan-out reader its own).
pub type SeriesHandle = crate::tsdb::SeriesRef;

/// Reads series and their samples.
///
/// Labels come encoded (`tsdb::labels`: decode with `crate::tsdb::labels::iter`,
/// `to_pairs`; `promql::Labels::from_encoded`), sorted by name; lists of series are
/// sorted by labels. Samples are sorted by time with unique timestamps.
pub trait SeriesReader: Send + Sync + 'static {
    /// Series matching all `matchers` with their samples in `[mint, maxt]`; series
    /// without samples in the range are left out. Fails with
    /// [`super::ErrorKind::Limit`] past [`Self::max_query_samples`].
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesData>, StorageError>;

    /// The series matching `matchers` as `(handle, labels)`, sorted by labels, without
    /// their samples, for a caller that reads them a batch at a time
    /// ([`Self::read_samples`]).
    fn select_labels(&self, matchers: &[Matcher]) -> Vec<(SeriesHandle, Box<[u8]>)>;

    /// The samples in `[mint, maxt]` of each series of `handles` (in that order), as
    /// [`Self::select`] reads them. `total` counts the samples read; past
    /// [`Self::max_query_samples`], an error of kind [`super::ErrorKind::Limit`].
    fn read_samples(
        &self,
        handles: &[SeriesHandle],
        mint: i64,
        maxt: i64,
        total: &mut usize,
    ) -> Result<Vec<SeriesSamples>, StorageError>;

    /// [`Self::read_samples`] for a caller that needs when the samples are, not their
    /// values (`count`, `group` of a selector): a float value may come as any number
    /// that is not a stale marker, and a stale marker comes as itself. The embedded
    /// TSDB then leaves the values of its decimal page chunks undecoded (they cannot
    /// hold a stale marker, see `ChunkView::decode_times_into`); by default, the
    /// samples with their values.
    fn read_timestamps(
        &self,
        handles: &[SeriesHandle],
        mint: i64,
        maxt: i64,
        total: &mut usize,
    ) -> Result<Vec<SeriesSamples>, StorageError> {
        self.read_samples(handles, mint, maxt, total)
    }

    /// The first `k` label sets in label order among the series (known at any time in
    /// the retention) matching any of `selectors`, and whether there were more.
    fn series_first(&self, selectors: &[Vec<Matcher>], k: usize) -> (Vec<Box<[u8]>>, bool);

    /// Calls `f` with the labels of each series matching any of `selectors`.
    fn for_each_series(&self, selectors: &[Vec<Matcher>], f: &mut dyn FnMut(&[u8]));

    /// All label names, sorted.
    fn label_names(&self) -> Vec<String>;

    /// All values of the label `name`, sorted.
    fn label_values(&self, name: &str) -> Vec<String>;

    /// Most samples one query may hold at once (`max_query_samples`): one call of
    /// [`Self::select`] or [`Self::read_samples`] reads no more.
    fn max_query_samples(&self) -> usize;

    /// Most series one `/api/v1/series` answer holds (`limits.max_series_per_query`).
    fn max_series_per_query(&self) -> usize;
}

/// Read-after-write for the rules (cluster mode; embedded mode has none: a write is in
/// the TSDB once acknowledged). [`ReadBarrier::wait_caught_up`] returns once the
/// copies a [`SeriesReader`] reads from hold every write acknowledged before the call,
/// or after at most `max` (then the caller reads anyway; the barrier logs and counts
/// it). The one user is a rule group's round (`alerts/group.rs`); the implementation
/// is `cluster/read_after_write.rs`.
pub trait ReadBarrier: Send + Sync + 'static {
    /// Waits (bounded by `max` and by the barrier's own configured limit).
    fn wait_caught_up(
        &self,
        max: std::time::Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>>;
}

thread_local! {
    static WARNINGS: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Notes a warning for the answer being computed on this thread (a reader that could
/// not read everything, e.g. cluster mode's fan-out with a partition that has no ready
/// owner). The API takes them with [`take_warnings`] and answers them in Prometheus'
/// `warnings`. A query runs its reads on the thread that answers it.
pub fn warn(msg: String) {
    WARNINGS.with(|w| {
        let mut w = w.borrow_mut();
        if !w.contains(&msg) && w.len() < 20 {
            w.push(msg);
        }
    });
}

/// The warnings noted on this thread since the last call (and clears them).
pub fn take_warnings() -> Vec<String> {
    WARNINGS.with(|w| std::mem::take(&mut *w.borrow_mut()))
}
