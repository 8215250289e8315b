//! The alerting room's own metrics, served in the collector's `/metrics`, named
//! after Prometheus' (`prometheus_rule_*`, `prometheus_notifications_*`,
//! `prometheus_config_last_reload_successful`).
//!
//! ```text
//! calm_rule_evaluations_total 120
//! calm_rule_evaluation_failures_total 0
//! calm_rule_group_iterations_missed_total 0
//! calm_rule_group_last_duration_seconds{rule_group="file;name"} 0.002
//! calm_rule_config_last_reload_successful 1
//! calm_rule_config_last_reload_success_timestamp_seconds 1.7e9
//! calm_notifications_sent_total{notifier="webhook-0"} 3
//! calm_notifications_errors_total{notifier="webhook-0"} 1
//! calm_notifications_dropped_total{notifier="am-0"} 0
//! calm_notifications_queue_length{notifier="am-0"} 0
//! ```

use parking_lot::Mutex;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

/// Counters of one notifier.
#[derive(Debug, Default)]
pub struct NotifierStats {
    /// Requests that succeeded.
    pub sent: AtomicU64,
    /// Requests that failed (each attempt).
    pub errors: AtomicU64,
    /// Alerts dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Alerts (or groups) waiting.
    pub queue_length: AtomicI64,
    /// Cluster mode: notifications not sent because the notification log says this
    /// slot's was sent already, or there was nothing new since the last.
    pub deduplicated: AtomicU64,
    /// Cluster mode: notifications refused by the log because this collector's
    /// evaluator lease epoch was stale (another collector evaluates now).
    pub fenced: AtomicU64,
}

/// Every counter of the alerting room.
#[derive(Debug, Default)]
pub struct AlertMetrics {
    /// Rule evaluations.
    pub evaluations: AtomicU64,
    /// Rule evaluations that failed.
    pub evaluation_failures: AtomicU64,
    /// Group evaluations skipped because the previous one ran late.
    pub iterations_missed: AtomicU64,
    /// 1 when the last rule reload worked.
    pub reload_successful: AtomicU64,
    /// When the last reload worked, seconds.
    pub reload_success_ts: AtomicI64,
    /// Last evaluation duration of each group.
    pub group_seconds: Mutex<BTreeMap<String, f64>>,
    /// Each notifier's counters.
    pub notifiers: Mutex<BTreeMap<String, Arc<NotifierStats>>>,
    /// Evaluations whose results were dropped because the evaluator lease was taken
    /// over meanwhile (cluster mode).
    pub evaluations_fenced: AtomicU64,
    /// Cluster mode: the evaluator lease, for `calm_alert_evaluator` and its epoch.
    pub lease: LeaseRef,
}

/// The evaluator lease the metrics report on (set in cluster mode).
#[derive(Default)]
pub struct LeaseRef(pub Mutex<Option<Arc<dyn crate::storage::evaluator::EvaluatorLease>>>);

impl std::fmt::Debug for LeaseRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LeaseRef")
    }
}

impl AlertMetrics {
    /// The counters of notifier `name` (created on first use).
    pub fn notifier(&self, name: &str) -> Arc<NotifierStats> {
        self.notifiers
            .lock()
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    /// Adds 1 to a counter.
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// The prometheus-client collector that renders the room's [`AlertMetrics`] (registered
/// in the self-metrics registry by [`crate::alerts::start`]).
#[derive(Debug)]
pub struct AlertsCollector(pub Arc<AlertMetrics>);

fn one(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    t: MetricType,
    v: f64,
) -> std::fmt::Result {
    let m = enc.encode_descriptor(name, help, None, t)?;
    if t == MetricType::Counter {
        ConstCounter::new(v as u64).encode(m)
    } else {
        ConstGauge::new(v).encode(m)
    }
}

fn family(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    t: MetricType,
    label: &str,
    values: &[(String, f64)],
) -> std::fmt::Result {
    if values.is_empty() {
        return Ok(());
    }
    let mut fam = enc.encode_descriptor(name, help, None, t)?;
    for (l, v) in values {
        let labels = vec![(label.to_string(), l.clone())];
        let m = fam.encode_family(&labels)?;
        if t == MetricType::Counter {
            ConstCounter::new(*v as u64).encode(m)?;
        } else {
            ConstGauge::new(*v).encode(m)?;
        }
    }
    Ok(())
}

impl prometheus_client::collector::Collector for AlertsCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let m = &*self.0;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
        one(
            &mut enc,
            "calm_rule_evaluations",
            "Rule evaluations.",
            MetricType::Counter,
            l(&m.evaluations),
        )?;
        one(
            &mut enc,
            "calm_rule_evaluation_failures",
            "Rule evaluations that failed.",
            MetricType::Counter,
            l(&m.evaluation_failures),
        )?;
        one(
            &mut enc,
            "calm_rule_group_iterations_missed",
            "Group evaluations skipped because the previous one ran past its slot.",
            MetricType::Counter,
            l(&m.iterations_missed),
        )?;
        one(
            &mut enc,
            "calm_rule_config_last_reload_successful",
            "1 if the last load of the rule files worked, 0 if it failed (the previous rules keep running).",
            MetricType::Gauge,
            l(&m.reload_successful),
        )?;
        one(
            &mut enc,
            "calm_rule_config_last_reload_success_timestamp_seconds",
            "When the rule files were last loaded successfully.",
            MetricType::Gauge,
            m.reload_success_ts.load(Ordering::Relaxed) as f64,
        )?;
        let groups: Vec<(String, f64)> = m
            .group_seconds
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        family(
            &mut enc,
            "calm_rule_group_last_duration_seconds",
            "How long the group's last evaluation took.",
            MetricType::Gauge,
            "rule_group",
            &groups,
        )?;
        let ns: Vec<(String, Arc<NotifierStats>)> = m
            .notifiers
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let pick = |f: &dyn Fn(&NotifierStats) -> f64| -> Vec<(String, f64)> {
            ns.iter().map(|(k, s)| (k.clone(), f(s))).collect()
        };
        family(
            &mut enc,
            "calm_notifications_sent",
            "Notifications delivered (2xx).",
            MetricType::Counter,
            "notifier",
            &pick(&|s| s.sent.load(Ordering::Relaxed) as f64),
        )?;
        family(
            &mut enc,
            "calm_notifications_errors",
            "Notification attempts that failed (timeout, connection error, non-2xx); they are retried.",
            MetricType::Counter,
            "notifier",
            &pick(&|s| s.errors.load(Ordering::Relaxed) as f64),
        )?;
        family(
            &mut enc,
            "calm_notifications_dropped",
            "Alerts dropped because the notifier's queue was full.",
            MetricType::Counter,
            "notifier",
            &pick(&|s| s.dropped.load(Ordering::Relaxed) as f64),
        )?;
        family(
            &mut enc,
            "calm_notifications_queue_length",
            "Alerts (Alertmanager) or groups (webhook) waiting to be sent.",
            MetricType::Gauge,
            "notifier",
            &pick(&|s| s.queue_length.load(Ordering::Relaxed) as f64),
        )?;
        let lease = m.lease.0.lock().clone();
        if let Some(lease) = lease {
            family(
                &mut enc,
                "calm_notifications_deduplicated",
                "Cluster mode: notifications not sent because the notification log holds this group-interval slot's already, or nothing changed since the last one.",
                MetricType::Counter,
                "notifier",
                &pick(&|s| s.deduplicated.load(Ordering::Relaxed) as f64),
            )?;
            family(
                &mut enc,
                "calm_notifications_fenced",
                "Cluster mode: notifications refused by the notification log because this collector's evaluator lease epoch was stale.",
                MetricType::Counter,
                "notifier",
                &pick(&|s| s.fenced.load(Ordering::Relaxed) as f64),
            )?;
            let held = lease.held();
            one(
                &mut enc,
                "calm_alert_evaluator",
                "Cluster mode: 1 while this collector holds the alert evaluator lease (it evaluates the rules and sends notifications), else 0.",
                MetricType::Gauge,
                if held.is_some() { 1.0 } else { 0.0 },
            )?;
            one(
                &mut enc,
                "calm_alert_evaluator_epoch",
                "Cluster mode: the evaluator lease epoch (fencing token) this collector holds, 0 when it holds none.",
                MetricType::Gauge,
                held.unwrap_or(0) as f64,
            )?;
            one(
                &mut enc,
                "calm_alert_evaluator_changes",
                "Cluster mode: times this collector became or stopped being the alert evaluator.",
                MetricType::Counter,
                lease.changes() as f64,
            )?;
            one(
                &mut enc,
                "calm_rule_evaluations_fenced",
                "Cluster mode: group evaluations whose results were dropped because the evaluator lease was taken over meanwhile.",
                MetricType::Counter,
                l(&m.evaluations_fenced),
            )?;
        }
        Ok(())
    }
}
