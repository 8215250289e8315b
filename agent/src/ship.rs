//! The shipper: takes the spool's oldest entry to a collector until it is taken.
//!
//! ```text
//! 2xx                  → ack (entry leaves the spool)
//! 429, 5xx, no answer  → keep it; wait (exponential backoff with jitter, or the
//!                        server's Retry-After) and fail over to the next --collector
//! other 4xx            → the collector will never take it: log, count, drop
//! ```

use crate::spool::{EntryKind, Spool};
use rand::Rng;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Counters the shipper keeps (served at the agent's `/metrics`).
#[derive(Default, Debug)]
pub struct ShipStats {
    pub shipped: AtomicU64,
    pub retries: AtomicU64,
    pub rejected: AtomicU64,
}

/// Where and how to ship.
#[derive(Debug, Clone)]
pub struct ShipConfig {
    /// Collector base URLs, tried in order (failover).
    pub collectors: Vec<String>,
    /// Bearer token, if the collector wants one.
    pub token: Option<String>,
}

const MIN_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let v = resp.headers().get("retry-after")?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

enum Outcome {
    Taken,
    Refused(String),
    Retry(Option<Duration>, String),
}

async fn send(
    client: &reqwest::Client,
    cfg: &ShipConfig,
    base: &str,
    kind: EntryKind,
    payload: &[u8],
) -> Outcome {
    let (path, ctype, encoding) = match kind {
        EntryKind::Metrics => ("/api/v1/write", "application/x-protobuf", Some("snappy")),
        EntryKind::Event => ("/api/1/envelope/", "application/x-sentry-envelope", None),
    };
    let mut req = client
        .post(format!("{}{}", base.trim_end_matches('/'), path))
        .header("Content-Type", ctype)
        .header(
            "User-Agent",
            concat!("calm-agent/", env!("CARGO_PKG_VERSION")),
        )
        .body(payload.to_vec());
    if let Some(e) = encoding {
        req = req
            .header("Content-Encoding", e)
            .header("X-Prometheus-Remote-Write-Version", "0.1.0");
    }
    if let Some(t) = &cfg.token {
        req = req.bearer_auth(t);
    }
    match req.send().await {
        Ok(resp) => {
            let status = resp.status();
            if status.is_success() {
                Outcome::Taken
            } else if status.as_u16() == 429 || status.is_server_error() {
                let wait = retry_after(&resp);
                let body = resp.text().await.unwrap_or_default();
                Outcome::Retry(wait, format!("{status}: {}", body.trim()))
            } else {
                let body = resp.text().await.unwrap_or_default();
                Outcome::Refused(format!("{status}: {}", body.trim()))
            }
        }
        Err(e) => Outcome::Retry(None, e.to_string()),
    }
}

/// Ships until the process ends. `wake` is notified when something is spooled.
pub async fn run(
    spool: Arc<Spool>,
    cfg: ShipConfig,
    stats: Arc<ShipStats>,
    wake: Arc<tokio::sync::Notify>,
) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(5))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the HTTP client; nothing will be shipped");
            return;
        }
    };
    let mut target = 0usize;
    let mut backoff = MIN_BACKOFF;
    loop {
        let entry = match spool.first() {
            Ok(Some(e)) => e,
            Ok(None) => {
                let _ = tokio::time::timeout(Duration::from_secs(1), wake.notified()).await;
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read the spool");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if cfg.collectors.is_empty() {
            tokio::time::sleep(Duration::from_secs(5)).await;
            continue;
        }
        let base = &cfg.collectors[target % cfg.collectors.len()];
        match send(&client, &cfg, base, entry.kind, &entry.payload).await {
            Outcome::Taken => {
                if let Err(e) = spool.ack(entry.seq) {
                    tracing::error!(error = %e, "cannot remove a shipped entry from the spool");
                }
                stats.shipped.fetch_add(1, Ordering::Relaxed);
                backoff = MIN_BACKOFF;
            }
            Outcome::Refused(why) => {
                tracing::error!(collector = %base, reason = %why, "collector refused an entry for good; dropping it");
                stats.rejected.fetch_add(1, Ordering::Relaxed);
                let _ = spool.ack(entry.seq);
            }
            Outcome::Retry(wait, why) => {
                stats.retries.fetch_add(1, Ordering::Relaxed);
                target += 1; // fail over
                let jitter = rand::rng().random_range(0.5..1.0);
                let sleep =
                    wait.unwrap_or(backoff)
                        .mul_f64(if wait.is_some() { 1.0 } else { jitter });
                tracing::warn!(collector = %base, reason = %why, retry_in = ?sleep, "shipping failed; will retry");
                tokio::time::sleep(sleep).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
