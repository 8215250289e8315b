//! Pushing alerts to an Alertmanager, as Prometheus' notifier does: a bounded queue
//! (oldest alerts dropped first when full, counted), batches of up to 64 alerts
//! POSTed to `<url>/api/v2/alerts`. A failed batch is counted and logged, not
//! retried: the rule groups re-send every active alert every `resend_delay`, and
//! Alertmanager expects exactly that.

use super::payload::alertmanager_v2;
use super::{authorize, deliver, http_client, NotifyAlert};
use crate::alerts::config::{AlertmanagerConfig, BasicAuth};
use crate::alerts::metrics::{AlertMetrics, NotifierStats};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Alerts waiting at most (Prometheus' default `--alertmanager.notification-queue-capacity`).
const QUEUE_CAPACITY: usize = 10_000;
/// Alerts per request (Prometheus' `maxBatchSize`).
const MAX_BATCH: usize = 64;

struct Queue {
    alerts: Mutex<VecDeque<NotifyAlert>>,
    more: Notify,
}

/// The sending side of one Alertmanager target.
pub struct AlertmanagerHandle {
    name: String,
    queue: Arc<Queue>,
    stats: Arc<NotifierStats>,
}

impl AlertmanagerHandle {
    /// Starts the sender task for `cfg.url`.
    pub fn start(
        name: String,
        cfg: &AlertmanagerConfig,
        timeout: Duration,
        metrics: &AlertMetrics,
    ) -> anyhow::Result<AlertmanagerHandle> {
        let client = http_client(timeout)?;
        let url = format!("{}/api/v2/alerts", cfg.url.trim_end_matches('/'));
        let queue = Arc::new(Queue {
            alerts: Mutex::new(VecDeque::new()),
            more: Notify::new(),
        });
        let stats = metrics.notifier(&name);
        tokio::spawn(run(
            name.clone(),
            url,
            client,
            cfg.bearer_token.clone(),
            cfg.basic_auth.clone(),
            queue.clone(),
            stats.clone(),
        ));
        Ok(AlertmanagerHandle { name, queue, stats })
    }

    /// Queues alerts without waiting; drops the oldest beyond the capacity.
    pub fn send(&self, alerts: Vec<NotifyAlert>) {
        let mut q = self.queue.alerts.lock();
        q.extend(alerts);
        let over = q.len().saturating_sub(QUEUE_CAPACITY);
        if over > 0 {
            q.drain(..over);
            self.stats.dropped.fetch_add(over as u64, Ordering::Relaxed);
            tracing::warn!(notifier = %self.name, dropped = over, "Alertmanager queue full: oldest alerts dropped");
        }
        self.stats
            .queue_length
            .store(q.len() as i64, Ordering::Relaxed);
        drop(q);
        self.queue.more.notify_one();
    }
}

async fn run(
    name: String,
    url: String,
    client: reqwest::Client,
    bearer: Option<String>,
    basic: Option<BasicAuth>,
    queue: Arc<Queue>,
    stats: Arc<NotifierStats>,
) {
    loop {
        let batch: Vec<NotifyAlert> = {
            let mut q = queue.alerts.lock();
            let n = q.len().min(MAX_BATCH);
            let b = q.drain(..n).collect();
            stats.queue_length.store(q.len() as i64, Ordering::Relaxed);
            b
        };
        if batch.is_empty() {
            queue.more.notified().await;
            continue;
        }
        let body = alertmanager_v2(&batch);
        let req = authorize(client.post(&url).json(&body), &bearer, &basic);
        match deliver(req).await {
            Ok(()) => {
                stats.sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(notifier = %name, url = %crate::secrets::mask_url(&url), error = %e, alerts = batch.len(), "cannot deliver alerts to Alertmanager (they are re-sent by the next evaluations)");
            }
        }
    }
}
