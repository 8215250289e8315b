//! Notifiers: where alerts go once they fire or resolve.
//!
//! ```text
//! rule groups / error rules ──send(batch)──▶ Notifiers ──try_send──▶ webhook dispatcher (per receiver)
//!                                                     └─try_send──▶ Alertmanager sender (per target)
//! ```
//! Handing a batch over never waits: each notifier has a bounded queue, and a full
//! queue drops the batch (counted in `calm_notifications_dropped_total`). Nothing of
//! substance is lost that way: rule groups re-send firing alerts every `resend_delay`
//! and resolved ones for 15 minutes, as Prometheus does, and a webhook dispatcher keeps
//! the state of its groups and retries a failed send until it gets through.

pub mod alertmanager;
pub mod payload;
pub mod webhook;

use super::alert::LabelMap;
use super::config::{AlertingConfig, BasicAuth};
use std::time::Duration;

/// An alert as notifiers receive it (Prometheus' `notifier.Alert`). Times are ms.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifyAlert {
    /// Labels, external labels included.
    pub labels: LabelMap,
    /// Annotations.
    pub annotations: LabelMap,
    /// When it started firing.
    pub starts_at: i64,
    /// When it resolved, or until when this notice is valid.
    pub ends_at: i64,
    /// Link back to the expression (or the issue).
    pub generator_url: String,
}

/// Every configured notifier.
pub struct Notifiers {
    webhooks: Vec<webhook::WebhookHandle>,
    alertmanagers: Vec<alertmanager::AlertmanagerHandle>,
}

/// Builds a client for a notifier: TLS verified (rustls, webpki roots), a timeout per
/// request, no redirects to other hosts' credentials.
pub fn http_client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("calm-collector/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// Adds the configured credentials to a request.
pub fn authorize(
    req: reqwest::RequestBuilder,
    bearer: &Option<String>,
    basic: &Option<BasicAuth>,
) -> reqwest::RequestBuilder {
    match (bearer, basic) {
        (Some(t), _) => req.bearer_auth(t),
        (None, Some(b)) => req.basic_auth(&b.username, Some(&b.password)),
        _ => req,
    }
}

/// Sends a notification request. `Ok` on a 2xx answer; otherwise what went wrong, in
/// words: the receiver's status with the start of its answer, or the transport error
/// (timed out, cannot connect, …) with its causes.
pub async fn deliver(req: reqwest::RequestBuilder) -> Result<(), String> {
    match req.send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => {
            let status = r.status();
            let text: String = r
                .text()
                .await
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect();
            Err(format!("receiver answered {status}: {text}"))
        }
        // Without the URL: it often is the secret itself (logs show it masked).
        Err(e) => Err(describe(&e.without_url())),
    }
}

/// What went wrong with a request, in words (timeout, connection refused, …).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_request() {
        "request failed"
    } else {
        "failed"
    };
    let mut msg = format!("{kind}: {e}");
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    msg
}

impl Notifiers {
    /// Starts one task per configured webhook and Alertmanager (on the current runtime).
    pub fn start(
        cfg: &AlertingConfig,
        external_url: &str,
        metrics: &crate::alerts::metrics::AlertMetrics,
        cluster: Option<crate::storage::evaluator::ClusterAlerting>,
    ) -> anyhow::Result<Notifiers> {
        let mut webhooks = Vec::new();
        for (i, w) in cfg.webhooks.iter().enumerate() {
            let name = w.name.clone().unwrap_or_else(|| format!("webhook-{i}"));
            webhooks.push(webhook::WebhookHandle::start(
                name,
                w,
                external_url,
                metrics,
                cluster.clone(),
            )?);
        }
        let mut alertmanagers = Vec::new();
        for (i, a) in cfg.alertmanagers.iter().enumerate() {
            let timeout = a.timeout.get();
            alertmanagers.push(alertmanager::AlertmanagerHandle::start(
                format!("alertmanager-{i}"),
                a,
                timeout,
                metrics,
            )?);
        }
        Ok(Notifiers {
            webhooks,
            alertmanagers,
        })
    }

    /// No notifiers at all.
    pub fn none() -> Notifiers {
        Notifiers {
            webhooks: Vec::new(),
            alertmanagers: Vec::new(),
        }
    }

    /// Hands `alerts` to every notifier without waiting.
    pub fn send(&self, alerts: Vec<NotifyAlert>) {
        if alerts.is_empty() {
            return;
        }
        for w in &self.webhooks {
            w.send(alerts.clone());
        }
        for a in &self.alertmanagers {
            a.send(alerts.clone());
        }
    }

    /// True when there is somewhere to send to.
    pub fn is_empty(&self) -> bool {
        self.webhooks.is_empty() && self.alertmanagers.is_empty()
    }
}
