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

use calm_wire::exposition;
use calm_wire::prompb::{Label, Sample, TimeSeries};
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
pub struct HeartbeatCollector(pub Arc<crate::storage::agents::AgentStats>);

impl prometheus_client::collector::Collector for HeartbeatCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let l = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        {
            let a = &self.0;
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
            encode_histogram(&mut m, &labels, &h)?;
        }
        Ok(())
    }
}

/// One histogram series of family `m` with `labels`.
fn encode_histogram(
    m: &mut prometheus_client::encoding::MetricEncoder<'_>,
    labels: &[(&str, &str)],
    h: &calm_serve::histogram::Histogram,
) -> std::fmt::Result {
    m.encode_family(&labels)?
        .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            h.sum,
            h.count,
            &h.per_bucket(),
            None,
        )
}

/// PromQL evaluation latency by kind: `instant` and `range` (the HTTP API), `rule`
/// (one rule's expression in a rule group). One per registry
/// ([`SelfMetrics::query_durations`]): the query API and the rule groups take it from
/// the registry they are built with.
#[derive(Clone, Default)]
pub struct QueryDurations(Arc<calm_serve::histogram::Histograms<&'static str>>);

impl std::fmt::Debug for QueryDurations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QueryDurations")
    }
}

impl QueryDurations {
    /// Times `f` under `kind`.
    pub fn time<T>(&self, kind: &'static str, f: impl FnOnce() -> T) -> T {
        let started = std::time::Instant::now();
        let out = f();
        self.0.observe(kind, started.elapsed());
        out
    }
}

/// [`QueryDurations`] at `/metrics`.
#[derive(Debug)]
struct QueryDurationCollector(QueryDurations);

impl prometheus_client::collector::Collector for QueryDurationCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let mut m = enc.encode_descriptor(
            "calm_query_duration_seconds",
            "PromQL evaluation latency, parsing included: kind=instant|range (/api/v1/query, /api/v1/query_range), kind=rule (one rule of a rule group).",
            None,
            MetricType::Histogram,
        )?;
        // All three kinds from the start, so rate() and the dashboards see zeros.
        let snap = self.0 .0.snapshot();
        for kind in ["instant", "range", "rule"] {
            let h = snap
                .iter()
                .find(|(k, _)| *k == kind)
                .map(|(_, h)| h.clone())
                .unwrap_or_default();
            encode_histogram(&mut m, &[("kind", kind)], &h)?;
        }
        Ok(())
    }
}

/// The collector's self-metrics registry: one per process, handed to each room when it
/// is built; the room registers a collector that reads its own counters at scrape time.
/// `/metrics` renders it. Every family's name is on the list in
/// `dashboards/self-metrics.txt` (checked by `tests/tests/self_metrics.rs`).
#[derive(Clone, Default)]
pub struct SelfMetrics {
    registry: Arc<parking_lot::Mutex<Registry>>,
    query_durations: QueryDurations,
    agent_stats: Arc<crate::storage::agents::AgentStats>,
}

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
        m.register(HeartbeatCollector(m.agent_stats.clone()));
        m.register(QueryDurationCollector(m.query_durations.clone()));
        m
    }

    /// `calm_agents_heartbeats_refused{reason}`: the fleet API counts refused
    /// heartbeats into it.
    pub fn agent_stats(&self) -> Arc<crate::storage::agents::AgentStats> {
        self.agent_stats.clone()
    }

    /// `calm_query_duration_seconds{kind}`: the query API and the rule groups time
    /// their evaluations into it.
    pub fn query_durations(&self) -> QueryDurations {
        self.query_durations.clone()
    }

    /// Adds `c`'s families to `/metrics`.
    pub fn register(&self, c: impl prometheus_client::collector::Collector) {
        self.registry.lock().register_collector(Box::new(c));
    }

    /// Adds a boxed collector (the storage backend's, [`crate::storage::Stores::metrics`]).
    pub fn register_boxed(&self, c: Box<dyn prometheus_client::collector::Collector>) {
        self.registry.lock().register_collector(c);
    }

    /// The Prometheus text format of every registered family.
    pub fn render(&self) -> String {
        render(&self.registry.lock())
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

/// `[self_metrics]`: the collector writes its own `/metrics` into its TSDB.
///
/// ```text
/// [self_metrics]
/// store = false     # true: also written into the TSDB (default: /metrics only)
/// interval = "15s"  # how often the registry is rendered and written
/// ```
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SelfMetricsConfig {
    /// Write the registry's samples into the TSDB (default false: like Prometheus and
    /// VictoriaMetrics, a bare collector keeps only what it is sent, so label and
    /// series listings hold the user's data alone; `scripts/run` turns it on).
    pub store: bool,
    /// How often (default 15s, at least 1s).
    pub interval: calm_serve::config::Duration,
}

impl Default for SelfMetricsConfig {
    fn default() -> Self {
        SelfMetricsConfig {
            store: false,
            interval: calm_serve::config::Duration::from_secs(15),
        }
    }
}

impl SelfMetricsConfig {
    /// Checks the interval, naming where a wrong one came from.
    pub fn check(
        &self,
        o: &calm_serve::config::Origin,
    ) -> Result<(), calm_serve::config::ConfigError> {
        o.check(
            self.interval.get() >= std::time::Duration::from_secs(1),
            "self_metrics.interval",
            &self.interval,
            "expected a duration of at least 1s like \"15s\"",
        )
    }
}

/// The series of one rendering of the registry, stamped `t_ms`, with `job` and
/// `instance` added (a family's own labels of those names win).
pub fn to_series(text: &str, job: &str, instance: &str, t_ms: i64) -> Vec<TimeSeries> {
    let families = match exposition::parse(text, exposition::Format::Text) {
        Ok(f) => f,
        Err(e) => {
            // Our own encoder's output: a failure here is a bug, not bad input.
            tracing::warn!(error = %e, "self-metrics: cannot parse the registry's rendering");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for f in &families {
        for s in &f.samples {
            let mut labels = Vec::with_capacity(s.labels.len() + 3);
            labels.push(Label::new("__name__", s.name));
            for (n, v) in &s.labels {
                labels.push(Label::new(*n, v.as_ref()));
            }
            for (n, v) in [("job", job), ("instance", instance)] {
                if !s.labels.iter().any(|(x, _)| *x == n) {
                    labels.push(Label::new(n, v));
                }
            }
            labels.sort_by(|a, b| a.name.cmp(&b.name));
            out.push(TimeSeries {
                labels,
                samples: vec![Sample {
                    value: s.value,
                    timestamp: s.timestamp_ms.unwrap_or(t_ms),
                }],
                ..Default::default()
            });
        }
    }
    out
}

/// Renders `metrics` every `cfg.interval` and writes the samples through `sink` with
/// `job="calm-collector"`, `instance=<listen address>`, so `calm_*` series can be
/// queried and graphed. A failed write is logged and the next round goes on.
pub fn start_storing(
    cfg: &SelfMetricsConfig,
    metrics: SelfMetrics,
    sink: Arc<dyn crate::storage::SampleSink>,
    instance: String,
) {
    if !cfg.store {
        return;
    }
    let every = cfg.interval.get();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick fires at once: skip it so the first round has something to say.
        tick.tick().await;
        let limits = calm_wire::labels::LabelLimits::default();
        loop {
            tick.tick().await;
            let text = metrics.render();
            let t_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            let mut series = to_series(&text, "calm-collector", &instance, t_ms);
            let (problems, bad) = crate::storage::sink::validate_all(&mut series, &limits);
            if bad > 0 {
                tracing::warn!(bad, ?problems, "self-metrics: series refused");
            }
            if let Err(e) = sink.write(&series, None).await {
                tracing::warn!(error = %e, "self-metrics: write failed");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendering_becomes_series_with_job_and_instance() {
        let m = SelfMetrics::new();
        m.query_durations().time("range", || ());
        let series = to_series(&m.render(), "calm-collector", "127.0.0.1:9400", 1_000);
        let find = |name: &str, kind: &str| {
            series.iter().find(|s| {
                let has = |n: &str, v: &str| s.labels.iter().any(|l| l.name == n && l.value == v);
                has("__name__", name) && has("kind", kind)
            })
        };
        let count = find("calm_query_duration_seconds_count", "range").expect("count series");
        assert!(count.samples[0].value >= 1.0);
        assert_eq!(count.samples[0].timestamp, 1_000);
        let names: Vec<&[u8]> = count.labels.iter().map(|l| l.name.as_ref()).collect();
        assert_eq!(
            names,
            [&b"__name__"[..], b"instance", b"job", b"kind"],
            "job and instance added, labels sorted"
        );
        assert!(find("calm_query_duration_seconds_bucket", "rule").is_some());
    }

    #[test]
    fn interval_under_one_second_is_refused() {
        let o = calm_serve::config::Origin::default();
        let mut c = SelfMetricsConfig::default();
        assert!(c.check(&o).is_ok());
        c.interval = calm_serve::config::Duration::from_millis(500);
        let e = c.check(&o).expect_err("500ms refused").to_string();
        assert!(e.contains("self_metrics.interval"), "{e}");
    }
}
