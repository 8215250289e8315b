//! The shipper: takes the spool's oldest entries to a collector until they are taken.
//!
//! ```text
//! metrics entries   consecutive ones merged into one remote-write request (up to
//!                   MAX_BATCH_ENTRIES / MAX_BATCH_BYTES): POST /api/v1/write, snappy
//! event entries     replayed as the SDK sent them: POST /api/{project}/envelope/ or
//!                   store/, with the SDK's X-Sentry-Auth and query string
//!
//! 2xx                  → ack (the entries leave the spool)
//! 429, 5xx, no answer  → keep them; wait (exponential backoff with jitter, or the
//!                        server's Retry-After) and fail over to the next --collector.
//!                        A 429 on an event also limits that project at the relay, so
//!                        SDKs are answered 429 while the collector limits it.
//! other 4xx            → the collector will never take it: log, count, drop
//! ```
//! Merging is safe because protobuf concatenation of two `WriteRequest` messages is the
//! request with both lists of series; entries are FIFO, so samples of a series stay in
//! time order within and across requests.

use crate::sources::sentry::entry::EventEntry;
use crate::sources::sentry::limits::Limits;
use crate::spool::{Entry, EntryKind, Spool};
use calm_wire::sentry::rate_limits;
use parking_lot::Mutex;
use rand::Rng;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Counters the shipper keeps (served at the agent's `/metrics` and in heartbeats).
#[derive(Default, Debug)]
pub struct ShipStats {
    /// Spool entries the collector took.
    pub shipped: AtomicU64,
    /// Requests sent (a request may carry several entries).
    pub requests: AtomicU64,
    /// Failed sends that will be retried.
    pub retries: AtomicU64,
    /// Entries the collector refused for good (4xx), dropped.
    pub rejected: AtomicU64,
    /// The last failure, for the heartbeat.
    pub last_error: Mutex<Option<String>>,
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
/// Most spool entries merged into one remote-write request.
pub const MAX_BATCH_ENTRIES: usize = 64;
/// Most compressed spool bytes merged into one remote-write request.
pub const MAX_BATCH_BYTES: usize = 4 << 20;
/// A spooled remote-write body is never larger than this decompressed (the sources
/// build them), so a corrupt entry cannot claim gigabytes.
const MAX_DECOMPRESSED: usize = 64 << 20;

fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let v = resp.headers().get("retry-after")?.to_str().ok()?;
    v.trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s.min(3600)))
}

/// The HTTP client the shipper and the heartbeat use.
pub fn client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("calm-agent/", env!("CARGO_PKG_VERSION")))
        .build()
}

enum Outcome {
    Taken,
    Refused(String),
    Retry(Option<Duration>, String),
}

/// A request ready to send, and the spool entries it carries.
struct Batch {
    seqs: Vec<u64>,
    kind: EntryKind,
    path: String,
    body: Vec<u8>,
    event: Option<EventEntry>,
}

/// Turns the oldest entries into one request: a run of metrics entries merged, or one
/// event. `Err(seq)` names a corrupt entry to drop.
fn batch(entries: Vec<Entry>) -> Result<Option<Batch>, u64> {
    let Some(first) = entries.first() else {
        return Ok(None);
    };
    match first.kind {
        EntryKind::Event => {
            let e = EventEntry::decode(&first.payload).ok_or(first.seq)?;
            Ok(Some(Batch {
                seqs: vec![first.seq],
                kind: EntryKind::Event,
                path: e.path(),
                body: Vec::new(),
                event: Some(e),
            }))
        }
        EntryKind::Metrics => {
            let run: Vec<&Entry> = entries
                .iter()
                .take_while(|e| e.kind == EntryKind::Metrics)
                .collect();
            if run.len() == 1 {
                return Ok(Some(Batch {
                    seqs: vec![first.seq],
                    kind: EntryKind::Metrics,
                    path: "/api/v1/write".into(),
                    body: first.payload.clone(),
                    event: None,
                }));
            }
            let mut raw = Vec::new();
            let mut seqs = Vec::with_capacity(run.len());
            for e in run {
                match calm_wire::remote_write::decompress(&e.payload, MAX_DECOMPRESSED) {
                    Ok(b) => raw.extend_from_slice(&b),
                    // Ship what came before; the corrupt one is dropped on its own turn.
                    Err(_) if !seqs.is_empty() => break,
                    Err(_) => return Err(e.seq),
                }
                seqs.push(e.seq);
            }
            let body = snap::raw::Encoder::new()
                .compress_vec(&raw)
                .unwrap_or_default();
            Ok(Some(Batch {
                seqs,
                kind: EntryKind::Metrics,
                path: "/api/v1/write".into(),
                body,
                event: None,
            }))
        }
    }
}

async fn send(client: &reqwest::Client, cfg: &ShipConfig, base: &str, b: &Batch) -> Outcome {
    let mut url = format!("{}{}", base.trim_end_matches('/'), b.path);
    let req = match &b.event {
        Some(e) => {
            if !e.query.is_empty() {
                url.push('?');
                url.push_str(&e.query);
            }
            let ctype = match e.endpoint {
                crate::sources::sentry::entry::Endpoint::Envelope => {
                    "application/x-sentry-envelope"
                }
                crate::sources::sentry::entry::Endpoint::Store => "application/json",
            };
            let mut r = client
                .post(url)
                .header("Content-Type", ctype)
                .body(e.body.clone());
            if !e.auth.is_empty() {
                r = r.header("X-Sentry-Auth", &e.auth);
            }
            r
        }
        None => {
            let mut r = client
                .post(url)
                .header("Content-Type", "application/x-protobuf")
                .header("Content-Encoding", "snappy")
                .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                .body(b.body.clone());
            if let Some(t) = &cfg.token {
                r = r.bearer_auth(t);
            }
            r
        }
    };
    match req.send().await {
        Ok(resp) => {
            let status = resp.status();
            if status.is_success() {
                Outcome::Taken
            } else if status.as_u16() == 429 || status.is_server_error() {
                let mut wait = retry_after(&resp);
                if let Some(l) = resp
                    .headers()
                    .get("x-sentry-rate-limits")
                    .and_then(|v| v.to_str().ok())
                    .and_then(rate_limits::error_wait)
                {
                    wait = Some(wait.map_or(l, |w| w.max(l)));
                }
                let body = resp.text().await.unwrap_or_default();
                Outcome::Retry(wait, format!("{status}: {}", body.trim()))
            } else {
                let body = resp.text().await.unwrap_or_default();
                Outcome::Refused(format!("{status}: {}", body.trim()))
            }
        }
        Err(e) => Outcome::Retry(None, format!("{e}")),
    }
}

/// Ships until the process ends. `wake` is notified when something is spooled;
/// `limits` learns which projects the collector rate limits.
pub async fn run(
    spool: Arc<Spool>,
    cfg: ShipConfig,
    stats: Arc<ShipStats>,
    wake: Arc<tokio::sync::Notify>,
    limits: Arc<Limits>,
) {
    let client = match client() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the HTTP client; nothing will be shipped");
            return;
        }
    };
    let mut target = 0usize;
    let mut backoff = MIN_BACKOFF;
    loop {
        // sled reads of the queue head are served from its page cache: no blocking pool.
        let next = spool.oldest(MAX_BATCH_ENTRIES, MAX_BATCH_BYTES);
        let b = match next.map(batch) {
            Ok(Ok(Some(b))) => b,
            Ok(Ok(None)) => {
                // Every push notifies (a permit is kept if nobody waits): the timeout is
                // only a safety net, long so that an idle agent stays idle.
                let _ = tokio::time::timeout(Duration::from_secs(30), wake.notified()).await;
                continue;
            }
            Ok(Err(seq)) => {
                tracing::error!(seq, "corrupt spool entry: dropped");
                let _ = spool.ack(seq);
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
        stats.requests.fetch_add(1, Ordering::Relaxed);
        match send(&client, &cfg, base, &b).await {
            Outcome::Taken => {
                for seq in &b.seqs {
                    if let Err(e) = spool.ack(*seq) {
                        tracing::error!(error = %e, "cannot remove a shipped entry from the spool");
                    }
                }
                stats
                    .shipped
                    .fetch_add(b.seqs.len() as u64, Ordering::Relaxed);
                backoff = MIN_BACKOFF;
            }
            Outcome::Refused(why) => {
                tracing::error!(collector = %base, kind = ?b.kind, entries = b.seqs.len(), reason = %why,
                    "collector refused for good; dropping");
                stats
                    .rejected
                    .fetch_add(b.seqs.len() as u64, Ordering::Relaxed);
                *stats.last_error.lock() = Some(format!("{base}: {why}"));
                for seq in &b.seqs {
                    let _ = spool.ack(*seq);
                }
            }
            Outcome::Retry(wait, why) => {
                stats.retries.fetch_add(1, Ordering::Relaxed);
                *stats.last_error.lock() = Some(format!("{base}: {why}"));
                if let (Some(e), true, Some(w)) = (&b.event, why.starts_with("429"), wait) {
                    // The collector limits this project: SDKs hear 429 from the relay
                    // until then, so the backlog stops growing at the source.
                    limits.collector_limited(e.project, w);
                } else {
                    target += 1; // fail over
                }
                let jitter = rand::rng().random_range(0.5..1.0);
                let sleep = wait.unwrap_or_else(|| backoff.mul_f64(jitter));
                tracing::warn!(collector = %base, reason = %why, retry_in = ?sleep, "shipping failed; will retry");
                tokio::time::sleep(sleep).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
