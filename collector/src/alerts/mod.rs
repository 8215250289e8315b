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

/// Starts alerting for `cfg`: notifiers, the rule groups (state restored) and the
/// error rules (listening to `issues`). Fails when a rule file is invalid, naming
/// every problem, so a bad file stops the start instead of silently not alerting.
pub async fn start(
    cfg: &crate::config::Config,
    stores: &crate::storage::Stores,
    issues: tokio::sync::broadcast::Receiver<IssueEvent>,
    listen: &str,
) -> anyhow::Result<Arc<Manager>> {
    let a = &cfg.alerting;
    let external_url = a
        .external_url
        .clone()
        .unwrap_or_else(|| format!("http://{listen}"))
        .trim_end_matches('/')
        .to_string();
    let notifiers = Arc::new(Notifiers::start(a, &external_url)?);
    let env = group::GroupEnv {
        db: stores.reader.clone(),
        sink: stores.sink.clone(),
        runtime: tokio::runtime::Handle::current(),
        external_labels: a.external_labels.clone(),
        external_url: external_url.clone(),
        resend_delay_ms: config::duration_ms(&a.resend_delay, "alerting.resend_delay")?,
    };
    let opts = ManagerOptions {
        rule_files: cfg.rule_files.clone(),
        base_dir: cfg.config_dir.clone().unwrap_or_default(),
        default_interval_ms: crate::config::parse_duration_ms(&cfg.evaluation_interval)?,
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
