//! The shipper: takes the spool's oldest entries to a collector until they are taken.
//!
//! ```text
//! metrics lane   metrics entries, oldest first, merged into one remote-write request
//!                (up to MAX_BATCH_ENTRIES / MAX_BATCH_BYTES): POST /api/v1/write, snappy
//! events lane    event entries one at a time, replayed as the SDK sent them:
//!                POST /api/{project}/envelope/ or store/, with its X-Sentry-Auth and query,
//!                gzip-compressed (Content-Encoding: gzip) from 512 bytes on
//!
//! 2xx                  → ack (the entries leave the spool)
//! 429 on an event      → that project's events wait (Retry-After / X-Sentry-Rate-Limits,
//!                        else the backoff) in the spool, and the relay answers its SDKs
//!                        429 meanwhile; other projects' events go on
//! 429, 5xx, no answer  → keep them; that lane waits (exponential backoff with jitter, or
//!                        the server's Retry-After) and fails over to the next --collector
//! other 4xx            → the collector will never take it: log, count, drop
//! ```
//! The two lanes run side by side over the one spool, so a rate-limited error storm
//! never holds up metrics (nor metrics an error). Merging is safe because protobuf
//! concatenation of two `WriteRequest` messages is the request with both lists of
//! series; the metrics lane takes its entries in FIFO order, so samples of a series
//! stay in time order within and across requests.

use crate::sources::sentry::entry::EventEntry;
use crate::sources::sentry::limits::Limits;
use crate::spool::{Entry, EntryKind, Spool};
use calm_wire::sentry::rate_limits;
use parking_lot::Mutex;
use rand::Rng;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

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
    /// Try again after the wait the server asked for, if any; `rate_limited` for a 429.
    Retry {
        wait: Option<Duration>,
        why: String,
        rate_limited: bool,
    },
}

/// A request ready to send, and the spool entries it carries.
struct Batch {
    seqs: Vec<u64>,
    kind: EntryKind,
    path: String,
    body: Vec<u8>,
    event: Option<EventEntry>,
}

/// Turns a lane's oldest entries into one request: the metrics entries merged, or the
/// one event. `Err(seq)` names a corrupt entry to drop.
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
            if entries.len() == 1 {
                return Ok(Some(Batch {
                    seqs: vec![first.seq],
                    kind: EntryKind::Metrics,
                    path: "/api/v1/write".into(),
                    body: first.payload.clone(),
                    event: None,
                }));
            }
            let mut raw = Vec::new();
            let mut seqs = Vec::with_capacity(entries.len());
            for e in &entries {
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

/// Event bodies at least this large go gzip-compressed (the collector's Sentry routes
/// decompress gzip); smaller ones would not shrink enough to matter.
const GZIP_MIN_BYTES: usize = 512;

/// `body` gzip-compressed (fast level: events are JSON, which shrinks 3–10× even so),
/// or None when it is small or compressing fails.
fn gzip(body: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write;
    if body.len() < GZIP_MIN_BYTES {
        return None;
    }
    let mut z = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    z.write_all(body).ok()?;
    z.finish().ok()
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
            let mut r = client.post(url).header("Content-Type", ctype);
            r = match gzip(&e.body) {
                Some(z) => r.header("Content-Encoding", "gzip").body(z),
                None => r.body(e.body.clone()),
            };
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
                Outcome::Retry {
                    wait,
                    why: format!("{status}: {}", body.trim()),
                    rate_limited: status.as_u16() == 429,
                }
            } else {
                let body = resp.text().await.unwrap_or_default();
                Outcome::Refused(format!("{status}: {}", body.trim()))
            }
        }
        Err(e) => Outcome::Retry {
            wait: None,
            why: format!("{e}"),
            rate_limited: false,
        },
    }
}

/// Ships until the process ends: one lane for metrics, one for events. `wake` is
/// notified when something is spooled; `limits` learns which projects the collector
/// rate limits.
pub async fn run(
    spool: Arc<Spool>,
    cfg: ShipConfig,
    stats: Arc<ShipStats>,
    wake: Arc<Notify>,
    limits: Arc<Limits>,
) {
    let client = match client() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the HTTP client; nothing will be shipped");
            return;
        }
    };
    // Sources wake one waiter per push; each lane gets its own wake-up.
    let lane_wakes = [Arc::new(Notify::new()), Arc::new(Notify::new())];
    let forward = lane_wakes.clone();
    tokio::spawn(async move {
        loop {
            wake.notified().await;
            for w in &forward {
                w.notify_one();
            }
        }
    });
    let [metrics_wake, events_wake] = lane_wakes;
    let lane = |kind, wake| Lane {
        kind,
        spool: spool.clone(),
        cfg: cfg.clone(),
        stats: stats.clone(),
        limits: limits.clone(),
        client: client.clone(),
        wake,
        held: HashMap::new(),
    };
    tokio::join!(
        lane(EntryKind::Metrics, metrics_wake).run(),
        lane(EntryKind::Event, events_wake).run()
    );
}

/// One kind of entry on its way to the collector, with its own failover and backoff.
struct Lane {
    kind: EntryKind,
    spool: Arc<Spool>,
    cfg: ShipConfig,
    stats: Arc<ShipStats>,
    limits: Arc<Limits>,
    client: reqwest::Client,
    wake: Arc<Notify>,
    /// Projects the collector rate limits, until when: their events wait in the spool.
    held: HashMap<u64, Instant>,
}

impl Lane {
    async fn run(mut self) {
        let mut target = 0usize;
        let mut backoff = MIN_BACKOFF;
        loop {
            let now = Instant::now();
            self.held.retain(|_, until| *until > now);
            let held = &self.held;
            let max_entries = match self.kind {
                EntryKind::Metrics => MAX_BATCH_ENTRIES,
                EntryKind::Event => 1,
            };
            // sled reads of the queue are served from its page cache: no blocking pool.
            let next = self
                .spool
                .oldest_of(self.kind, max_entries, MAX_BATCH_BYTES, |payload| {
                    !held.is_empty()
                        && EventEntry::project_of(payload).is_some_and(|p| held.contains_key(&p))
                });
            let b = match next.map(batch) {
                Ok(Ok(Some(b))) => b,
                Ok(Ok(None)) => {
                    // Every push notifies (a permit is kept if nobody waits). The timeout
                    // is a safety net, long so that an idle agent stays idle, or the end
                    // of the first hold on a rate-limited project.
                    let idle = self
                        .held
                        .values()
                        .min()
                        .map_or(Duration::from_secs(30), |until| {
                            until.saturating_duration_since(now)
                        });
                    let _ = tokio::time::timeout(idle, self.wake.notified()).await;
                    continue;
                }
                Ok(Err(seq)) => {
                    tracing::error!(seq, "corrupt spool entry: dropped");
                    let _ = self.spool.ack(seq);
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the spool");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if self.cfg.collectors.is_empty() {
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
            let base = &self.cfg.collectors[target % self.cfg.collectors.len()];
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            match send(&self.client, &self.cfg, base, &b).await {
                Outcome::Taken => {
                    for seq in &b.seqs {
                        if let Err(e) = self.spool.ack(*seq) {
                            tracing::error!(error = %e, "cannot remove a shipped entry from the spool");
                        }
                    }
                    self.stats
                        .shipped
                        .fetch_add(b.seqs.len() as u64, Ordering::Relaxed);
                    backoff = MIN_BACKOFF;
                }
                Outcome::Refused(why) => {
                    tracing::error!(collector = %base, kind = ?b.kind, entries = b.seqs.len(), reason = %why,
                        "collector refused for good; dropping");
                    self.stats
                        .rejected
                        .fetch_add(b.seqs.len() as u64, Ordering::Relaxed);
                    *self.stats.last_error.lock() = Some(format!("{base}: {why}"));
                    for seq in &b.seqs {
                        let _ = self.spool.ack(*seq);
                    }
                }
                Outcome::Retry {
                    wait,
                    why,
                    rate_limited,
                } => {
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    *self.stats.last_error.lock() = Some(format!("{base}: {why}"));
                    let jitter = rand::rng().random_range(0.5..1.0);
                    let sleep = wait.unwrap_or_else(|| backoff.mul_f64(jitter));
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    if let (Some(e), true) = (&b.event, rate_limited) {
                        // The collector limits this project: its events wait in the spool
                        // and SDKs hear 429 from the relay until then, so the backlog
                        // stops growing at the source. Other projects' events go on.
                        self.limits.collector_limited(e.project, sleep);
                        self.held.insert(e.project, Instant::now() + sleep);
                        tracing::info!(collector = %base, project = e.project, retry_in = ?sleep,
                            "collector rate limits this project; its events wait");
                        continue;
                    }
                    target += 1; // fail over
                    tracing::warn!(collector = %base, kind = ?b.kind, reason = %why, retry_in = ?sleep,
                        "shipping failed; will retry");
                    tokio::time::sleep(sleep).await;
                }
            }
        }
    }
}
