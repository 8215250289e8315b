//! The collector's own `/metrics`, in the Prometheus text format.
//!
//! Values are read from the TSDB's counters at scrape time (a `Collector`), so the hot
//! path only bumps atomics. Names carry no `_total`: prometheus-client's encoder adds
//! it to counters.
//!
//! ```text
//! calm_tsdb_samples_appended_total 12345
//! calm_tsdb_series 1000
//! ```

use crate::tsdb::Db;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::sync::atomic::Ordering;
use std::sync::Arc;

#[derive(Debug)]
struct TsdbCollector(Arc<Db>);

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("dir", &self.opts.dir).finish()
    }
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(v).encode(m)
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, v: f64) -> std::fmt::Result {
    let m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(v).encode(m)
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

/// The query pool and the PromQL text limits (`promql/pool.rs`, `promql/limits.rs`).
#[derive(Debug)]
struct QueryCollector;

impl prometheus_client::collector::Collector for QueryCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let (in_flight, refused) =
            crate::promql::pool::global().map_or((0, 0), |p| (p.in_flight(), p.refused()));
        gauge(
            &mut enc,
            "calm_query_in_flight",
            "Queries running or waiting on the query pool.",
            in_flight as f64,
        )?;
        counter(
            &mut enc,
            "calm_query_refused_busy",
            "Queries refused with 503 because the query pool and its queue were full.",
            refused as u64,
        )?;
        counter(
            &mut enc,
            "calm_query_refused_limits",
            "PromQL texts refused (400) for their length or depth, rule files included.",
            crate::promql::limits::refused(),
        )?;
        Ok(())
    }
}

/// Builds the registry for one collector process.
/// The serving layer's counters (set once by `main`).
static SERVE_STATS: std::sync::OnceLock<Arc<calm_serve::Stats>> = std::sync::OnceLock::new();

/// Makes `s` the serving counters `/metrics` reports (the first call wins).
pub fn install_serve_stats(s: Arc<calm_serve::Stats>) {
    let _ = SERVE_STATS.set(s);
}

#[derive(Debug)]
struct ServeCollector;

impl prometheus_client::collector::Collector for ServeCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let l = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        {
            let a = &crate::api::agents::STATS;
            let mut m = enc.encode_descriptor(
                "calm_agents_heartbeats_refused",
                "Heartbeats refused, by reason (max_agents: limits.max_agents reached; foreign_token: the id belongs to another token; invalid).",
                None,
                MetricType::Counter,
            )?;
            for (reason, c) in [
                ("max_agents", &a.over_max_agents),
                ("foreign_token", &a.foreign_token),
                ("invalid", &a.invalid),
            ] {
                ConstCounter::new(l(c)).encode(m.encode_family(&[("reason", reason)])?)?;
            }
        }
        let Some(s) = SERVE_STATS.get() else {
            return Ok(());
        };
        counter(
            &mut enc,
            "calm_http_connections_accepted",
            "Connections accepted.",
            l(&s.connections_accepted),
        )?;
        gauge(
            &mut enc,
            "calm_http_connections_open",
            "Connections open now (at most limits.max_connections).",
            l(&s.connections_open) as f64,
        )?;
        counter(
            &mut enc,
            "calm_http_body_budget_refusals",
            "Requests refused with 503 because limits.inflight_body_bytes was spent.",
            l(&s.body_budget_refusals),
        )?;
        counter(
            &mut enc,
            "calm_http_body_timeouts",
            "Requests whose body did not arrive within limits.body_read_timeout (408).",
            l(&s.body_timeouts),
        )?;
        gauge(
            &mut enc,
            "calm_http_inflight_body_bytes",
            "Request body bytes held now.",
            s.inflight_body_bytes.load(Ordering::Relaxed) as f64,
        )?;
        Ok(())
    }
}

pub fn registry(db: Arc<Db>) -> Registry {
    let mut r = Registry::default();
    r.register_collector(Box::new(TsdbCollector(db)));
    r.register_collector(Box::new(ServeCollector));
    r.register_collector(Box::new(crate::alerts::metrics::AlertsCollector));
    r.register_collector(Box::new(crate::ingest::sentry::stats::SentryCollector));
    r.register_collector(Box::new(QueryCollector));
    r
}

/// Renders the registry in the Prometheus text format.
pub fn render(r: &Registry) -> String {
    let mut out = String::new();
    if prometheus_client::encoding::prometheus_text::encode(&mut out, r).is_err() {
        out.clear();
    }
    out
}
