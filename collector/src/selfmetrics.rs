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

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub(crate) fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: u64,
) -> std::fmt::Result {
    let m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(v).encode(m)
}

pub(crate) fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: f64,
) -> std::fmt::Result {
    let m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(v).encode(m)
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

/// The collector's registry: `storage` is the storage backend's own collector
/// ([`crate::storage::Stores::metrics`]), the rest are the rooms'.
pub fn registry(storage: Box<dyn prometheus_client::collector::Collector>) -> Registry {
    let mut r = Registry::default();
    r.register_collector(storage);
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
