//! The TSDB's own metrics (`calm_tsdb_*`, `calm_ingest_samples_rejected_total`), read
//! from its counters at scrape time, so the hot path only bumps atomics. Registered in
//! the collector's self-metrics registry by `main` when the TSDB opens.

use super::Db;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use std::sync::atomic::Ordering;
use std::sync::Arc;

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(v).encode(m)
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, v: f64) -> std::fmt::Result {
    let m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(v).encode(m)
}

/// The TSDB's counters as a prometheus-client collector.
#[derive(Debug)]
pub struct TsdbCollector(pub Arc<Db>);

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
