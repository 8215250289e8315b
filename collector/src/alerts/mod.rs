//! Alerts: Prometheus rule files evaluated over the TSDB, alert state that survives
//! restarts and reloads, and notifiers (Alertmanager webhooks, Alertmanager itself).
//!
//! ```text
//! rule files ─rules (parse, validate)─▶ manager ─▶ group tasks ─▶ rule (state machine)
//!                                          │            │  write back: ALERTS,
//!                                          │            │  ALERTS_FOR_STATE, records
//!                                    state (data dir)   └─▶ notify/ (webhook, alertmanager)
//! errors/ hook ─IssueEvent─▶ error_rules ──────────────────▶ notify/
//! ```
//! One concept a file: [`config`] (`[alerting]`), [`rules`] (rule files), [`template`]
//! (Go templates) with [`gofmt`] (Go number printing), [`alert`] (an alert and its
//! states), [`rule`] (evaluating a rule), [`group`] (a group on its interval),
//! [`manager`] (loading and reloading), [`state`] (persistence), [`notify`],
//! [`error_rules`], [`metrics`] and [`check`] (`calm-collector check rules`).

pub mod alert;
pub mod check;
pub mod config;
pub mod error_rules;
pub mod gofmt;
pub mod group;
pub mod manager;
pub mod metrics;
pub mod notify;
pub mod rule;
pub mod rules;
pub mod state;
pub mod template;

use crate::errors::hook::IssueEvent;
use manager::{Manager, ManagerOptions};
use notify::Notifiers;
use std::sync::Arc;

/// Starts alerting for its sections of the config (`[alerting]` and the rule files):
/// notifiers, the rule groups (state restored) and the error rules (listening to
/// `issues`). Fails when a rule file is invalid, naming every problem, so a bad file
/// stops the start instead of silently not alerting.
pub async fn start(
    a: &config::AlertingConfig,
    rules: config::RulesConfig,
    stores: &crate::storage::Stores,
    issues: tokio::sync::broadcast::Receiver<IssueEvent>,
    listen: &str,
    self_metrics: &crate::selfmetrics::SelfMetrics,
) -> anyhow::Result<Arc<Manager>> {
    let metrics = Arc::new(metrics::AlertMetrics::default());
    self_metrics.register(metrics::AlertsCollector(metrics.clone()));
    let external_url = a
        .external_url
        .clone()
        .unwrap_or_else(|| format!("http://{listen}"))
        .trim_end_matches('/')
        .to_string();
    let cluster = stores.cluster_alerting.clone();
    if let Some(c) = &cluster {
        *metrics.lease.0.lock() = Some(c.lease.clone());
    }
    let notifiers = Arc::new(Notifiers::start(
        a,
        &external_url,
        &metrics,
        cluster.clone(),
    )?);
    let env = group::GroupEnv {
        db: stores.reader.clone(),
        sink: stores.sink.clone(),
        runtime: tokio::runtime::Handle::current(),
        external_labels: a.external_labels.clone(),
        external_url: external_url.clone(),
        resend_delay_ms: a.resend_delay.as_millis_i64(),
        metrics,
        query_durations: self_metrics.query_durations(),
        cluster,
        state: stores.alert_state.clone(),
        read_barrier: stores.read_barrier.clone(),
    };
    let opts = ManagerOptions {
        rule_files: rules.rule_files,
        base_dir: rules.base_dir,
        default_interval_ms: rules.evaluation_interval.as_millis_i64(),
        state: stores.alert_state.clone(),
    };
    let manager = Manager::new(opts, env, notifiers.clone());
    if let Err(errors) = manager.reload().await {
        let list: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        anyhow::bail!(
            "invalid rule files (check them with `calm-collector check rules FILE`):\n{}",
            list.join("\n")
        );
    }
    if !a.error_rules.is_empty() {
        let rules =
            error_rules::ErrorRules::new(&a.error_rules, &external_url, &a.external_labels)?;
        tokio::spawn(error_rules::run(rules, issues, notifiers));
    }
    Ok(manager)
}
