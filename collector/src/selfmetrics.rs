//! The collector's own `/metrics`, in the Prometheus text format.
//!
//! One mechanism: a [`SelfMetrics`] registry handed to each room at construction; the
//! room registers a `Collector` that reads its counters at scrape time, so the hot path
//! only bumps atomics. Names carry no `_total`: prometheus-client's encoder adds it to
//! counters. The list of every name exposed is `dashboards/self-metrics.txt`.
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

/// Heartbeats refused by the fleet API (`api/agents.rs`).
#[derive(Debug)]
pub struct HeartbeatCollector;

impl prometheus_client::collector::Collector for HeartbeatCollector {
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
        Ok(())
    }
}

/// The serving layer's counters (calm-serve's [`calm_serve::Stats`]).
#[derive(Debug)]
pub struct ServeCollector(pub Arc<calm_serve::Stats>);

impl prometheus_client::collector::Collector for ServeCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let l = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let s = &self.0;
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
        let mut m = enc.encode_descriptor(
            "calm_http_request_duration_seconds",
            "HTTP request latency to the response head, by route template (unmatched: no route), method and status code.",
            None,
            MetricType::Histogram,
        )?;
        for ((handler, method, code), h) in s.requests.snapshot() {
            let code = code.to_string();
            let labels = [
                ("handler", handler.as_str()),
                ("method", method),
                ("code", code.as_str()),
            ];
            m.encode_family(&labels)?.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                h.sum,
                h.count,
                &h.per_bucket(),
                None,
            )?;
        }
        Ok(())
    }
}

/// PromQL evaluation latency by kind: `instant` and `range` (the HTTP API), `rule`
/// (one rule's expression in a rule group).
pub static QUERY_DURATIONS: std::sync::LazyLock<calm_serve::histogram::Histograms<&'static str>> =
    std::sync::LazyLock::new(Default::default);

/// Times `f` into [`QUERY_DURATIONS`] under `kind`.
pub fn time_query<T>(kind: &'static str, f: impl FnOnce() -> T) -> T {
    let started = std::time::Instant::now();
    let out = f();
    QUERY_DURATIONS.observe(kind, started.elapsed());
    out
}

/// [`QUERY_DURATIONS`] at `/metrics`.
#[derive(Debug)]
struct QueryDurationCollector;

impl prometheus_client::collector::Collector for QueryDurationCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let mut m = enc.encode_descriptor(
            "calm_query_duration_seconds",
            "PromQL evaluation latency, parsing included: kind=instant|range (/api/v1/query, /api/v1/query_range), kind=rule (one rule of a rule group).",
            None,
            MetricType::Histogram,
        )?;
        // All three kinds from the start, so rate() and the dashboards see zeros.
        let snap = QUERY_DURATIONS.snapshot();
        for kind in ["instant", "range", "rule"] {
            let h = snap
                .iter()
                .find(|(k, _)| *k == kind)
                .map(|(_, h)| h.clone())
                .unwrap_or_default();
            m.encode_family(&[("kind", kind)])?.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                h.sum,
                h.count,
                &h.per_bucket(),
                None,
            )?;
        }
        Ok(())
    }
}

/// The collector's self-metrics registry: one per process, handed to each room when it
/// is built; the room registers a collector that reads its own counters at scrape time.
/// `/metrics` renders it. Every family's name is on the list in
/// `dashboards/self-metrics.txt` (checked by `tests/tests/self_metrics.rs`).
#[derive(Clone, Default)]
pub struct SelfMetrics(Arc<parking_lot::Mutex<Registry>>);

impl std::fmt::Debug for SelfMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SelfMetrics")
    }
}

impl SelfMetrics {
    /// A registry with the process-wide families (the query pool and limits, the fleet
    /// API's refusals); rooms add theirs with [`SelfMetrics::register`].
    pub fn new() -> SelfMetrics {
        let m = SelfMetrics::default();
        m.register(QueryCollector);
        m.register(HeartbeatCollector);
        m.register(QueryDurationCollector);
        m
    }

    /// Adds `c`'s families to `/metrics`.
    pub fn register(&self, c: impl prometheus_client::collector::Collector) {
        self.0.lock().register_collector(Box::new(c));
    }

    /// Adds a boxed collector (the storage backend's, [`crate::storage::Stores::metrics`]).
    pub fn register_boxed(&self, c: Box<dyn prometheus_client::collector::Collector>) {
        self.0.lock().register_collector(c);
    }

    /// The Prometheus text format of every registered family.
    pub fn render(&self) -> String {
        render(&self.0.lock())
    }
}

/// Renders the registry in the Prometheus text format.
pub fn render(r: &Registry) -> String {
    let mut out = String::new();
    if prometheus_client::encoding::prometheus_text::encode(&mut out, r).is_err() {
        out.clear();
    }
    out
}
