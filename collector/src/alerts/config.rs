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
    pub group_wait: String,
    /// Wait before notifying about changes to a group already notified.
    #[serde(default = "default_group_interval")]
    pub group_interval: String,
    /// Wait before re-sending a notification that did not change.
    #[serde(default = "default_repeat_interval")]
    pub repeat_interval: String,
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
    pub timeout: String,
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
    pub timeout: String,
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
    pub window: String,
    /// Only this project.
    #[serde(default)]
    pub project: Option<u64>,
    /// Extra labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
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
    pub resend_delay: String,
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
            resend_delay: "1m".into(),
            webhooks: Vec::new(),
            alertmanagers: Vec::new(),
            error_rules: Vec::new(),
        }
    }
}

fn default_group_wait() -> String {
    "30s".into()
}
fn default_group_interval() -> String {
    "5m".into()
}
fn default_repeat_interval() -> String {
    "4h".into()
}
fn default_timeout() -> String {
    "10s".into()
}
fn default_window() -> String {
    "5m".into()
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

/// A duration that may be zero (`0s`), unlike PromQL's.
pub fn duration_ms(s: &str, what: &str) -> anyhow::Result<i64> {
    if is_zero_duration(s) {
        return Ok(0);
    }
    promql_parser::util::parse_duration(s)
        .map(|d| d.as_millis() as i64)
        .map_err(|e| anyhow::anyhow!("{what}: invalid duration {s:?}: {e} (use e.g. 30s, 5m, 4h)"))
}

impl AlertingConfig {
    /// Checks every duration, URL and label name, so a bad config stops the start.
    pub fn validate(&self) -> anyhow::Result<()> {
        duration_ms(&self.resend_delay, "alerting.resend_delay")?;
        for (i, w) in self.webhooks.iter().enumerate() {
            let at = format!("alerting.webhooks[{i}]");
            check_url(&w.url, &at)?;
            duration_ms(&w.group_wait, &format!("{at}.group_wait"))?;
            duration_ms(&w.group_interval, &format!("{at}.group_interval"))?;
            duration_ms(&w.repeat_interval, &format!("{at}.repeat_interval"))?;
            duration_ms(&w.timeout, &format!("{at}.timeout"))?;
            if w.bearer_token.is_some() && w.basic_auth.is_some() {
                anyhow::bail!("{at}: set bearer_token or basic_auth, not both");
            }
            for l in &w.group_by {
                if l != "..." && !calm_wire::labels::is_valid_label_name(l.as_bytes()) {
                    anyhow::bail!("{at}.group_by: {l:?} is not a valid label name");
                }
            }
        }
        for (i, a) in self.alertmanagers.iter().enumerate() {
            let at = format!("alerting.alertmanagers[{i}]");
            check_url(&a.url, &at)?;
            duration_ms(&a.timeout, &format!("{at}.timeout"))?;
        }
        for (i, r) in self.error_rules.iter().enumerate() {
            let at = format!("alerting.error_rules[{i}]");
            duration_ms(&r.window, &format!("{at}.window"))?;
            if r.on == ErrorTrigger::EventCount && r.threshold == 0 {
                anyhow::bail!("{at}: on = \"event_count\" needs threshold > 0");
            }
        }
        Ok(())
    }
}

fn check_url(u: &str, at: &str) -> anyhow::Result<()> {
    match reqwest::Url::parse(u) {
        Ok(url) if url.scheme() == "http" || url.scheme() == "https" => Ok(()),
        // The URL itself is often the secret (Slack-style webhooks): named masked.
        Ok(_) => anyhow::bail!(
            "{at}.url {}: must be http:// or https://",
            crate::secrets::mask_url(u)
        ),
        Err(e) => anyhow::bail!("{at}.url {}: {e}", crate::secrets::mask_url(u)),
    }
}
