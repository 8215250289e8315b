//! The embedded backend: the TSDB (`tsdb/`) as [`SampleSink`] and [`SeriesReader`],
//! and its self-metrics. Only this file (with `storage/mod.rs`, `tsdb/` and
//! `main.rs`) names the concrete `Db`.

use super::reader::{Matcher, SeriesData, SeriesHandle, SeriesReader, SeriesSamples};
use super::sink::{NewSeriesGate, SampleSink, ViewOutcome, WriteFuture, WriteSummary};
use super::{ErrorKind, StorageError};
use crate::selfmetrics::{counter, gauge};
use crate::tsdb::querier::Decode;
use crate::tsdb::{Db, DbError};
use calm_wire::labels::LabelLimits;
use calm_wire::prompb::TimeSeries;
use calm_wire::remote_write_view::WriteRequestView;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::MetricType;
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl From<DbError> for StorageError {
    fn from(e: DbError) -> StorageError {
        let kind = match &e {
            DbError::Sled(_) => ErrorKind::Unavailable,
            DbError::Io(io) if io.raw_os_error() == Some(28) => ErrorKind::Full,
            DbError::Io(_) => ErrorKind::Unavailable,
            DbError::Corrupt(_) => ErrorKind::Corrupt,
            DbError::TooManySamples(_) => ErrorKind::Limit,
        };
        StorageError::new(kind, e.to_string())
    }
}

impl SampleSink for Db {
    fn write<'a>(
        &'a self,
        series: &'a [TimeSeries],
        gate: Option<NewSeriesGate<'a>>,
    ) -> WriteFuture<'a, WriteSummary> {
        Box::pin(async move { Ok(Db::write_gated(self, series, gate).await?) })
    }

    fn write_remote<'a>(
        &'a self,
        req: &'a WriteRequestView<'a>,
        limits: &'a LabelLimits,
        gate: Option<NewSeriesGate<'a>>,
    ) -> WriteFuture<'a, ViewOutcome> {
        Box::pin(async move { Ok(Db::write_view_gated(self, req, limits, gate).await?) })
    }
}

impl SeriesReader for Db {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesData>, StorageError> {
        Ok(Db::select(self, matchers, mint, maxt)?)
    }

    fn select_labels(&self, matchers: &[Matcher]) -> Vec<(SeriesHandle, Box<[u8]>)> {
        Db::select_labels(self, matchers)
    }

    fn read_samples(
        &self,
        handles: &[SeriesHandle],
        mint: i64,
        maxt: i64,
        total: &mut usize,
    ) -> Result<Vec<SeriesSamples>, StorageError> {
        Ok(Db::read_samples(
            self,
            handles,
            mint,
            maxt,
            total,
            Decode::Values,
        )?)
    }

    fn read_timestamps(
        &self,
        handles: &[SeriesHandle],
        mint: i64,
        maxt: i64,
        total: &mut usize,
    ) -> Result<Vec<SeriesSamples>, StorageError> {
        Ok(Db::read_samples(
            self,
            handles,
            mint,
            maxt,
            total,
            Decode::Times,
        )?)
    }

    fn series_first(&self, selectors: &[Vec<Matcher>], k: usize) -> (Vec<Box<[u8]>>, bool) {
        Db::series_first(self, selectors, k)
    }

    fn for_each_series(&self, selectors: &[Vec<Matcher>], f: &mut dyn FnMut(&[u8])) {
        Db::for_each_series(self, selectors, f)
    }

    fn label_names(&self) -> Vec<String> {
        Db::label_names(self)
    }

    fn label_values(&self, name: &str) -> Vec<String> {
        Db::label_values(self, name)
    }

    fn max_query_samples(&self) -> usize {
        self.opts.max_query_samples
    }

    fn max_series_per_query(&self) -> usize {
        self.opts.max_series_per_query
    }
}

/// The TSDB's counters at `/metrics`, read at scrape time.
#[derive(Debug)]
pub(super) struct TsdbCollector(pub(super) Arc<Db>);

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("dir", &self.opts.dir).finish()
    }
}

impl prometheus_client::collector::Collector for TsdbCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let s = &self.0.stats;
        let l = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        counter(
            &mut enc,
            "calm_tsdb_samples_appended",
            "Samples appended in time order.",
            l(&s.samples_appended),
        )?;
        counter(
            &mut enc,
            "calm_tsdb_samples_out_of_order",
            "Samples accepted out of order.",
            l(&s.samples_out_of_order),
        )?;
        counter(
            &mut enc,
            "calm_tsdb_samples_duplicate",
            "Samples already stored (retries), skipped.",
            l(&s.samples_duplicate),
        )?;
        counter(
            &mut enc,
            "calm_tsdb_samples_rejected",
            "Samples refused (conflict, too old, out of bounds).",
            l(&s.samples_rejected),
        )?;
        {
            let by_reason = [
                ("too_far_in_future", l(&s.rejected_future)),
                ("older_than_retention", l(&s.rejected_retention)),
                ("conflict", l(&s.rejected_conflict)),
                ("outside_ooo_window", l(&s.rejected_ooo_window)),
                ("invalid_histogram", l(&s.rejected_invalid_histogram)),
                (
                    "series_limit",
                    s.series_limit_rejections.iter().map(l).sum::<u64>(),
                ),
            ];
            let named: u64 = by_reason.iter().map(|r| r.1).sum();
            let mut m = enc.encode_descriptor(
                "calm_ingest_samples_rejected",
                "Samples refused by reason: too_far_in_future (after now + future_grace), older_than_retention, conflict (same time, other value), outside_ooo_window, invalid_histogram, series_limit (a new series over a limit: see calm_tsdb_series_limit_rejections_total), out_of_bounds (behind persisted data).",
                None,
                MetricType::Counter,
            )?;
            for (reason, n) in by_reason.into_iter().chain([(
                "out_of_bounds",
                l(&s.samples_rejected).saturating_sub(named),
            )]) {
                let labels = [("reason", reason)];
                ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
            }
        }
        counter(
            &mut enc,
            "calm_tsdb_wal_failures",
            "WAL writes or fsyncs that failed (rolled back; their records are retried before anything else is acknowledged).",
            self.0.wal.failures.load(Ordering::Relaxed),
        )?;
        counter(
            &mut enc,
            "calm_tsdb_series_created",
            "Series created.",
            l(&s.series_created),
        )?;
        counter(
            &mut enc,
            "calm_tsdb_checkpoints",
            "Head checkpoints written.",
            l(&s.checkpoints),
        )?;
        counter(
            &mut enc,
            "calm_tsdb_buckets_persisted",
            "Buckets persisted to sled pages.",
            l(&s.buckets_persisted),
        )?;
        {
            let m = enc.encode_descriptor(
                "calm_tsdb_series_limit_rejections",
                "Samples refused because their new series would pass a series limit, by limit.",
                None,
                MetricType::Counter,
            )?;
            let mut m = m;
            for lim in crate::tsdb::append::SeriesLimit::ALL {
                let labels = [("limit", lim.label())];
                ConstCounter::new(l(&s.series_limit_rejections[lim as usize]))
                    .encode(m.encode_family(&labels)?)?;
            }
        }
        counter(
            &mut enc,
            "calm_tsdb_series_removed",
            "Series removed by series GC once no data of theirs was left.",
            l(&s.series_removed),
        )?;
        counter(
            &mut enc,
            "calm_tsdb_wal_syncs",
            "WAL group commits (fdatasync calls).",
            l(&self.0.wal.syncs),
        )?;
        gauge(
            &mut enc,
            "calm_tsdb_series",
            "Series in the index.",
            self.0.series_count() as f64,
        )?;
        gauge(
            &mut enc,
            "calm_tsdb_disk_bytes",
            "Bytes on disk (sled and WAL).",
            self.0.disk_bytes() as f64,
        )?;
        gauge(
            &mut enc,
            "calm_tsdb_open_seconds",
            "Seconds the last start took to load the TSDB.",
            self.0.open_seconds,
        )?;
        Ok(())
    }
}

/// An embedded TSDB in a directory for the tests of the rooms above the seam
/// (PromQL, the API): written through [`SampleSink`], read through [`SeriesReader`].
pub struct TestTsdb {
    db: Arc<Db>,
}

impl TestTsdb {
    /// Opens a TSDB in `dir` that accepts any timestamp, and samples up to
    /// `ooo_window_ms` behind a series' newest.
    pub fn open(dir: &std::path::Path, ooo_window_ms: i64) -> Result<TestTsdb, StorageError> {
        Self::open_limited(
            dir,
            ooo_window_ms,
            crate::tsdb::Options::new(dir).max_query_samples,
        )
    }

    /// [`Self::open`], reading at most `max_query_samples` samples per query.
    pub fn open_limited(
        dir: &std::path::Path,
        ooo_window_ms: i64,
        max_query_samples: usize,
    ) -> Result<TestTsdb, StorageError> {
        let mut opts = crate::tsdb::Options::new(dir);
        opts.ooo_window_ms = ooo_window_ms;
        opts.max_query_samples = max_query_samples;
        Ok(TestTsdb {
            db: Db::open(opts)?,
        })
    }

    /// The reader.
    pub fn reader(&self) -> &dyn SeriesReader {
        &*self.db
    }

    /// The sink.
    pub fn sink(&self) -> &dyn SampleSink {
        &*self.db
    }

    /// Writes the bucket starting at `bucket_ms` out to pages (as maintenance does),
    /// so reads come from pages instead of the head.
    pub fn persist_bucket(&self, bucket_ms: i64) -> Result<(), StorageError> {
        crate::tsdb::compact::persist_bucket(&self.db, bucket_ms)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::TestTsdb;
    use crate::storage::contract::series as contract;

    #[tokio::test]
    async fn the_tsdb_reads_what_was_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = TestTsdb::open(dir.path(), i64::MAX / 4).expect("open");
        let persist = || db.persist_bucket(0).expect("persist");
        contract::reads_what_was_written(db.sink(), db.reader(), &persist).await;
    }

    #[tokio::test]
    async fn the_tsdb_refuses_reads_past_the_sample_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = TestTsdb::open_limited(dir.path(), i64::MAX / 4, 5).expect("open");
        contract::refuses_reads_past_the_sample_limit(db.sink(), db.reader()).await;
    }
}
