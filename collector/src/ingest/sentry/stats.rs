//! Counts of envelope items received, by project and item type, of items discarded and
//! why, and of events stored (kept in memory; served at `/metrics`).
//!
//! ```text
//! calm_sentry_items_received_total{project="1",type="event"} 1200
//! calm_sentry_items_discarded_total{reason="calm_project_rate",type="event"} 300
//! calm_sentry_items_discarded_total{reason="invalid_event",type="event"} 1
//! calm_sentry_events_stored_total 900
//! calm_sentry_events_duplicate_total 0
//! calm_sentry_event_bodies_sampled_out_total 400
//! calm_sentry_requests_in_flight 3
//! ```

use parking_lot::Mutex;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Item types Sentry SDKs send today; anything else is counted as `unknown`.
pub const KNOWN_TYPES: &[&str] = &[
    "event",
    "transaction",
    "session",
    "sessions",
    "attachment",
    "user_report",
    "feedback",
    "client_report",
    "profile",
    "profile_chunk",
    "replay_event",
    "replay_recording",
    "replay_video",
    "check_in",
    "statsd",
    "metric_buckets",
    "span",
    "log",
    "otel_log",
    "security",
    "raw_security",
    "form_data",
    "nel",
];

/// Item counters.
#[derive(Debug, Default)]
pub struct ItemStats {
    counts: Mutex<BTreeMap<(u64, &'static str), u64>>,
    discarded: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// Events counted into issues (acknowledged with 2xx).
    pub events_stored: AtomicU64,
    /// Events sent again (same event id), acknowledged but not counted again.
    pub events_duplicate: AtomicU64,
    /// Events counted whose body was not stored (body sampling under a storm).
    pub bodies_sampled_out: AtomicU64,
    /// Events of new groups counted into their project's overflow issue
    /// (`limits.max_issues_per_project`).
    pub issues_overflowed: AtomicU64,
    /// Events of new environments counted as `other_environments`
    /// (`limits.max_environments_per_project`).
    pub environments_overflowed: AtomicU64,
}

fn known(ty: &str) -> &'static str {
    KNOWN_TYPES
        .iter()
        .find(|k| **k == ty)
        .copied()
        .unwrap_or("unknown")
}

impl ItemStats {
    /// Counts one item of type `ty` for `project`.
    pub fn count(&self, project: u64, ty: &str) {
        *self.counts.lock().entry((project, known(ty))).or_insert(0) += 1;
    }

    /// Counts `n` items of type `ty` discarded for `reason`.
    pub fn discard(&self, reason: &'static str, ty: &str, n: u64) {
        *self
            .discarded
            .lock()
            .entry((reason, known(ty)))
            .or_insert(0) += n;
    }

    /// Discarded items by reason and type.
    pub fn discarded(&self) -> BTreeMap<(&'static str, &'static str), u64> {
        self.discarded.lock().clone()
    }

    /// The counts of one project, by type.
    pub fn of(&self, project: u64) -> BTreeMap<&'static str, u64> {
        self.counts
            .lock()
            .iter()
            .filter(|((p, _), _)| *p == project)
            .map(|((_, t), n)| (*t, *n))
            .collect()
    }
}

/// The Sentry ingest counters as a `prometheus_client` collector for `/metrics`.
#[derive(Debug)]
pub struct SentryMetrics {
    /// The counters.
    pub stats: Arc<ItemStats>,
    /// The in-flight permits ...
    pub in_flight: Arc<tokio::sync::Semaphore>,
    /// ... of which there are this many.
    pub max_in_flight: usize,
}

impl prometheus_client::collector::Collector for SentryMetrics {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let s = &self.stats;
        let received = s.counts.lock().clone();
        let mut m = enc.encode_descriptor(
            "calm_sentry_items_received",
            "Envelope items (and store events) received, by project and item type.",
            None,
            MetricType::Counter,
        )?;
        for ((p, t), n) in received {
            let labels = [("project", p.to_string()), ("type", t.to_string())];
            ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
        }
        let mut m = enc.encode_descriptor(
            "calm_sentry_items_discarded",
            "Items received but not stored, by reason (calm_project_rate, calm_global_rate, calm_overloaded: answered 429; invalid_event: dropped from an otherwise accepted envelope) and item type.",
            None,
            MetricType::Counter,
        )?;
        for ((r, t), n) in s.discarded() {
            let labels = [("reason", r.to_string()), ("type", t.to_string())];
            ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
        }
        for (name, help, v) in [
            (
                "calm_sentry_events_stored",
                "Events counted into issues and acknowledged.",
                &s.events_stored,
            ),
            (
                "calm_sentry_events_duplicate",
                "Events received again (same event id): acknowledged, not counted again.",
                &s.events_duplicate,
            ),
            (
                "calm_sentry_event_bodies_sampled_out",
                "Events counted whose body was not kept (per-issue body sampling under a storm).",
                &s.bodies_sampled_out,
            ),
            (
                "calm_sentry_events_issue_overflow",
                "Events of new groups counted into their project's overflow issue (limits.max_issues_per_project reached).",
                &s.issues_overflowed,
            ),
            (
                "calm_sentry_events_environment_overflow",
                "Events of new environments counted as other_environments (limits.max_environments_per_project reached).",
                &s.environments_overflowed,
            ),
        ] {
            let m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(v.load(Ordering::Relaxed)).encode(m)?;
        }
        let m = enc.encode_descriptor(
            "calm_sentry_requests_in_flight",
            "Sentry ingest requests being processed now.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(
            self.max_in_flight
                .saturating_sub(self.in_flight.available_permits()) as i64,
        )
        .encode(m)?;
        Ok(())
    }
}
