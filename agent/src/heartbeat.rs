//! The heartbeat: every `[heartbeat] interval` the agent tells the collector it is alive
//! and how its spool is doing, for the collector's fleet view (`GET /api/calm/v1/agents`).
//! Heartbeats are not spooled: a missed one is simply superseded by the next.
//!
//! ```text
//! POST /api/calm/v1/agents/heartbeat      Authorization: Bearer <token> (when configured)
//! Content-Type: application/json
//!
//! {"id": "web-1 127.0.0.1:9401", "host": "web-1", "version": "0.1.0",
//!  "uptime_seconds": 3600.5, "spool_bytes": 1234, "spool_entries": 3,
//!  "spool_dropped": 0, "shipped": 9876, "rejected": 0, "retries": 2,
//!  "last_error": "http://c1:9400: 503 Service Unavailable: ..." | null}
//! ```

use crate::ship::ShipStats;
use crate::spool::Spool;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the heartbeat reports on, and where it goes.
pub struct Heartbeat {
    /// This agent's id: host name and listen address (several agents may share a host).
    pub id: String,
    /// The host name.
    pub host: String,
    /// Collector base URLs, tried in order.
    pub collectors: Vec<String>,
    /// Bearer token.
    pub token: Option<String>,
    /// How often.
    pub interval: Duration,
    /// The spool.
    pub spool: Arc<Spool>,
    /// The shipper's counters.
    pub stats: Arc<ShipStats>,
    /// When the agent started.
    pub started: Instant,
}

impl Heartbeat {
    /// The heartbeat body now.
    pub fn body(&self) -> serde_json::Value {
        json!({
            "id": self.id,
            "host": self.host,
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": self.started.elapsed().as_secs_f64(),
            "spool_bytes": self.spool.bytes(),
            "spool_entries": self.spool.entries(),
            "spool_dropped": self.spool.dropped_full.load(Ordering::Relaxed),
            "shipped": self.stats.shipped.load(Ordering::Relaxed),
            "rejected": self.stats.rejected.load(Ordering::Relaxed),
            "retries": self.stats.retries.load(Ordering::Relaxed),
            "last_error": self.stats.last_error.lock().clone(),
        })
    }

    /// Sends heartbeats until the process ends.
    pub async fn run(self) {
        let client = match crate::ship::client() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the HTTP client; no heartbeats");
                return;
            }
        };
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let body = self.body();
            for base in &self.collectors {
                let mut req = client
                    .post(format!(
                        "{}/api/calm/v1/agents/heartbeat",
                        base.trim_end_matches('/')
                    ))
                    .timeout(Duration::from_secs(5))
                    .json(&body);
                if let Some(t) = &self.token {
                    req = req.bearer_auth(t);
                }
                match req.send().await {
                    Ok(r) if r.status().is_success() => break,
                    Ok(r) => {
                        tracing::debug!(collector = %base, status = %r.status(), "heartbeat refused")
                    }
                    Err(e) => tracing::debug!(collector = %base, error = %e, "heartbeat failed"),
                }
            }
        }
    }
}
