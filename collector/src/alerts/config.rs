//! The `[alerting]` section of the collector's TOML, with Alertmanager's meanings and
//! defaults for the grouping timers.
//!
//! ```text
//! rule_files = ["rules/*.yml"]          # top level, as in prometheus.yml
//! evaluation_interval = "1m"            # top level, default 1m
//! [alerting]
//! external_url = "https://calm.example.com"   # links in notifications (default http://<listen>)
//! external_labels = { cluster = "eu1" }       # added to alerts sent out
//! resend_delay = "1m"                          # how often firing alerts are re-sent
//! [[alerting.webhooks]]
//! url = "https://hooks.example.com/alert"
//! group_by = ["alertname"]          # default [] (one group); ["..."] = every label
//! group_wait = "30s"                # default 30s
//! group_interval = "5m"             # default 5m
//! repeat_interval = "4h"            # default 4h
//! send_resolved = true              # default true
//! bearer_token = "..."              # or [alerting.webhooks.basic_auth] username/password
//! timeout = "10s"                   # per request
//! [[alerting.alertmanagers]]
//! url = "http://alertmanager:9093"  # alerts are POSTed to <url>/api/v2/alerts
//! [[alerting.error_rules]]
//! name = "NewIssue"                 # alertname of the notification
//! on = "new_issue"                  # new_issue | regression | event_count
//! threshold = 100                   # event_count: more than this many events …
//! window = "5m"                     # … of one issue within this window
//! project = 1                       # optional: only this project
//! labels = { severity = "page" }
//! ```

use calm_serve::config::{ConfigError, Duration, Origin};
use serde::Deserialize;
use std::collections::BTreeMap;

/// HTTP basic auth for a notifier.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

/// One `[[alerting.webhooks]]` receiver.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Name shown as `receiver` in the payload and in metrics (default `webhook-N`).
    #[serde(default)]
    pub name: Option<String>,
    /// Where payloads are POSTed.
    pub url: String,
    /// Labels that make a group; `["..."]` groups by every label.
    #[serde(default)]
    pub group_by: Vec<String>,
    /// Wait before the first notification of a new group.
    #[serde(default = "default_group_wait")]
    pub group_wait: Duration,
    /// Wait before notifying about changes to a group already notified.
    #[serde(default = "default_group_interval")]
    pub group_interval: Duration,
    /// Wait before re-sending a notification that did not change.
    #[serde(default = "default_repeat_interval")]
    pub repeat_interval: Duration,
    /// Notify when alerts resolve.
    #[serde(default = "default_true")]
    pub send_resolved: bool,
    /// Sent as `Authorization: Bearer …`.
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// Sent as `Authorization: Basic …`.
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    /// Per-request timeout.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// Most alerts in one payload (0 = all); the rest are counted in `truncatedAlerts`.
    #[serde(default)]
    pub max_alerts: usize,
}

/// One `[[alerting.alertmanagers]]` target.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// Base URL; alerts go to `<url>/api/v2/alerts`.
    pub url: String,
    /// Sent as `Authorization: Bearer …`.
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// Sent as `Authorization: Basic …`.
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    /// Per-request timeout.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
}

/// What an error rule reacts to.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ErrorTrigger {
    /// An event opened a new issue.
    NewIssue,
    /// An event reopened a resolved issue.
    Regression,
    /// More than `threshold` events of one issue within `window`.
    EventCount,
}

/// One `[[alerting.error_rules]]` rule on Sentry issues.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ErrorRuleConfig {
    /// The notification's `alertname`.
    pub name: String,
    /// What triggers it.
    pub on: ErrorTrigger,
    /// `event_count`: more than this many events.
    #[serde(default)]
    pub threshold: u64,
    /// `event_count`: within this window.
    #[serde(default = "default_window")]
    pub window: Duration,
    /// Only this project.
    #[serde(default)]
    pub project: Option<u64>,
    /// Extra labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// The top-level keys of the alerts room (`rule_files`, `evaluation_interval`, as in
/// prometheus.yml).
#[derive(Debug, Clone)]
pub struct RulesConfig {
    /// Prometheus rule files (globs allowed), relative to `base_dir`.
    pub rule_files: Vec<String>,
    /// The config file's directory.
    pub base_dir: std::path::PathBuf,
    /// Default interval of rule groups.
    pub evaluation_interval: Duration,
}

/// The `[alerting]` section.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AlertingConfig {
    /// Base of links in notifications (default `http://<listen>`).
    pub external_url: Option<String>,
    /// Labels added to every alert sent out.
    pub external_labels: BTreeMap<String, String>,
    /// How often firing alerts are re-sent to notifiers.
    pub resend_delay: Duration,
    /// Webhook receivers.
    pub webhooks: Vec<WebhookConfig>,
    /// Alertmanagers.
    pub alertmanagers: Vec<AlertmanagerConfig>,
    /// Rules on Sentry issues.
    pub error_rules: Vec<ErrorRuleConfig>,
}

impl Default for AlertingConfig {
    fn default() -> Self {
        AlertingConfig {
            external_url: None,
            external_labels: BTreeMap::new(),
            resend_delay: Duration::from_secs(60),
            webhooks: Vec::new(),
            alertmanagers: Vec::new(),
            error_rules: Vec::new(),
        }
    }
}

fn default_group_wait() -> Duration {
    Duration::from_secs(30)
}
fn default_group_interval() -> Duration {
    Duration::from_secs(300)
}
fn default_repeat_interval() -> Duration {
    Duration::from_secs(14400)
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_window() -> Duration {
    Duration::from_secs(300)
}
fn default_true() -> bool {
    true
}

/// True for `0`, `0s`, `0m`, `0ms`, …: zero, which PromQL's parser refuses but
/// Alertmanager's `group_wait: 0s` and Prometheus' `for: 0s` mean.
pub fn is_zero_duration(s: &str) -> bool {
    let t = s.trim();
    let digits = t.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    !digits.is_empty() && digits.chars().all(|c| c == '0')
}

impl AlertingConfig {
    /// Checks every URL, timeout and label name (keys under `[alerting]`), so a bad
    /// config stops the start, naming where the wrong value came from.
    pub fn check(&self, origin: &Origin) -> Result<(), ConfigError> {
        for (i, w) in self.webhooks.iter().enumerate() {
            let at = format!("alerting.webhooks.{i}");
            check_url(&w.url, &format!("{at}.url"), origin)?;
            check_timeout(w.timeout, &format!("{at}.timeout"), origin)?;
            origin.check(
                !(w.bearer_token.is_some() && w.basic_auth.is_some()),
                &format!("{at}.bearer_token"),
                &"(set)",
                "expected bearer_token or basic_auth, not both",
            )?;
            for l in &w.group_by {
                origin.check(
                    l == "..." || calm_wire::labels::is_valid_label_name(l.as_bytes()),
                    &format!("{at}.group_by"),
                    &format!("{l:?}"),
                    &format!("expected label names ([a-zA-Z_][a-zA-Z0-9_]*) or \"...\"; {l:?} is not one"),
                )?;
            }
        }
        for (i, a) in self.alertmanagers.iter().enumerate() {
            let at = format!("alerting.alertmanagers.{i}");
            check_url(&a.url, &format!("{at}.url"), origin)?;
            check_timeout(a.timeout, &format!("{at}.timeout"), origin)?;
        }
        for (i, r) in self.error_rules.iter().enumerate() {
            origin.check(
                !(r.on == ErrorTrigger::EventCount && r.threshold == 0),
                &format!("alerting.error_rules.{i}.on"),
                &"event_count",
                "on = \"event_count\" expects a threshold above 0",
            )?;
        }
        Ok(())
    }
}

fn check_timeout(d: Duration, key: &str, origin: &Origin) -> Result<(), ConfigError> {
    origin.check(
        !d.is_zero(),
        key,
        &d,
        "expected a duration above 0 like \"10s\"",
    )
}

fn check_url(u: &str, key: &str, origin: &Origin) -> Result<(), ConfigError> {
    // The URL itself is often the secret (Slack-style webhooks): named masked.
    let masked = crate::secrets::mask_url(u);
    match reqwest::Url::parse(u) {
        Ok(url) if url.scheme() == "http" || url.scheme() == "https" => Ok(()),
        Ok(_) => Err(origin.refuse(
            key,
            &masked,
            &format!("{masked}: expected an http:// or https:// URL"),
        )),
        Err(e) => Err(origin.refuse(
            key,
            &masked,
            &format!("{masked}: {e}: expected an http:// or https:// URL"),
        )),
    }
}
