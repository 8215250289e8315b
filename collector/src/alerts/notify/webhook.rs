//! Webhook receivers: Alertmanager's grouping and timing, then its webhook payload
//! (version 4) POSTed to the configured URL.
//!
//! ```text
//! alert ──▶ group (by group_by labels) ──group_wait──▶ first flush
//!                    └── changes ──group_interval──▶ next flush
//!                    └── nothing new ──repeat_interval──▶ re-send
//! flush: notify if new alerts fire, alerts resolved (send_resolved), or repeat is due
//!        (Alertmanager's dedup stage); on success resolved alerts leave the group;
//!        on failure the group is retried with backoff (1 s, 2 s, … ≤ 30 s) from its
//!        current state, so the receiver gets the latest truth once it answers.
//! ```
//! One task per receiver; each POST runs in its own task with the configured
//! timeout, so a hanging receiver delays only its own group.
//!
//! Cluster mode (the evaluator lease and the notification log, `storage/evaluator.rs`):
//! a group's flushes fall on a wall-clock grid, the middle of each group-interval slot
//! (`slot = floor(now / group_interval)`), so whichever collector evaluates sends at the
//! same instants. Before each POST the flush is claimed in the log under the lease
//! epoch: a slot already claimed, or nothing new since the last delivered notice
//! (judged on the log, not on this process' memory), sends nothing; a stale epoch is
//! refused and this receiver's groups are dropped (another collector sends now). The
//! POST carries `X-Calm-Notification-Slot` and `X-Calm-Evaluator-Epoch`.

use super::payload::{group_key, sort_alerts, webhook_v4};
use super::{authorize, deliver, http_client, NotifyAlert};
use crate::alerts::alert::{fingerprint, LabelMap};
use crate::alerts::config::{BasicAuth, WebhookConfig};
use crate::alerts::metrics::{AlertMetrics, NotifierStats};
use crate::storage::evaluator::{Claim, ClaimRequest, ClusterAlerting, LoggedNotice};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Batches waiting for the dispatcher; beyond this, batches are dropped and counted.
const QUEUE_BATCHES: usize = 1024;
/// Longest wait between two attempts of a failing group.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The sending side of one webhook receiver.
pub struct WebhookHandle {
    name: String,
    tx: mpsc::Sender<Vec<NotifyAlert>>,
    stats: Arc<NotifierStats>,
}

#[derive(Clone)]
struct Settings {
    url: String,
    group_by: Vec<String>,
    group_by_all: bool,
    group_wait: Duration,
    group_interval: Duration,
    repeat_interval: Duration,
    send_resolved: bool,
    max_alerts: usize,
    bearer: Option<String>,
    basic: Option<BasicAuth>,
}

struct Entry {
    firing: HashSet<u64>,
    resolved: HashSet<u64>,
    at: Instant,
}

struct Group {
    labels: LabelMap,
    alerts: HashMap<u64, NotifyAlert>,
    next_flush: Instant,
    has_flushed: bool,
    in_flight: bool,
    last: Option<Entry>,
    failures: u32,
}

struct Outcome {
    key: String,
    result: Sent,
    firing: HashSet<u64>,
    resolved: HashSet<u64>,
}

/// What became of a flush.
enum Sent {
    /// The receiver answered 2xx.
    Delivered,
    /// Sending (or, in cluster mode, claiming it in the log) failed: retried.
    Failed(String),
    /// Cluster mode: the log holds this slot's notice, or nothing new since the
    /// latest delivered one (given).
    Deduplicated(Option<LoggedNotice>),
    /// Cluster mode: this collector's lease epoch is stale.
    Fenced,
}

/// The middle of the group-interval slot after the one holding `now_ms`.
fn next_grid_flush(now_ms: i64, gi_ms: i64) -> Instant {
    let at = (now_ms.div_euclid(gi_ms) + 1) * gi_ms + gi_ms / 2;
    Instant::now() + Duration::from_millis((at - now_ms).max(0) as u64)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl WebhookHandle {
    /// Starts the dispatcher task of receiver `name`.
    pub fn start(
        name: String,
        cfg: &WebhookConfig,
        external_url: &str,
        metrics: &AlertMetrics,
        cluster: Option<ClusterAlerting>,
    ) -> anyhow::Result<WebhookHandle> {
        let settings = Settings {
            url: cfg.url.clone(),
            group_by_all: cfg.group_by.iter().any(|l| l == "..."),
            group_by: cfg.group_by.clone(),
            group_wait: cfg.group_wait.get(),
            group_interval: cfg.group_interval.get().max(Duration::from_millis(100)),
            repeat_interval: cfg.repeat_interval.get(),
            send_resolved: cfg.send_resolved,
            max_alerts: cfg.max_alerts,
            bearer: cfg.bearer_token.clone(),
            basic: cfg.basic_auth.clone(),
        };
        let client = http_client(cfg.timeout.get())?;
        let (tx, rx) = mpsc::channel(QUEUE_BATCHES);
        let stats = metrics.notifier(&name);
        let dispatcher = Dispatcher {
            name: name.clone(),
            s: settings,
            client,
            external_url: external_url.to_string(),
            groups: HashMap::new(),
            stats: stats.clone(),
            inflight: JoinSet::new(),
            cluster,
        };
        tokio::spawn(dispatcher.run(rx));
        Ok(WebhookHandle { name, tx, stats })
    }

    /// Hands alerts over without waiting (dropped and counted if the queue is full).
    pub fn send(&self, alerts: Vec<NotifyAlert>) {
        let n = alerts.len() as u64;
        if let Err(e) = self.tx.try_send(alerts) {
            self.stats.dropped.fetch_add(n, Ordering::Relaxed);
            tracing::warn!(notifier = %self.name, error = %e, alerts = n, "webhook queue full: alerts dropped (they are re-sent by the next evaluations)");
        }
    }
}

struct Dispatcher {
    name: String,
    s: Settings,
    client: reqwest::Client,
    external_url: String,
    groups: HashMap<String, Group>,
    stats: Arc<NotifierStats>,
    inflight: JoinSet<Outcome>,
    cluster: Option<ClusterAlerting>,
}

impl Dispatcher {
    async fn run(mut self, mut rx: mpsc::Receiver<Vec<NotifyAlert>>) {
        loop {
            let next = self
                .groups
                .values()
                .filter(|g| !g.in_flight)
                .map(|g| g.next_flush)
                .min();
            let far = Instant::now() + Duration::from_secs(3600);
            tokio::select! {
                m = rx.recv() => match m {
                    Some(batch) => self.ingest(batch),
                    None => break,
                },
                Some(res) = self.inflight.join_next(), if !self.inflight.is_empty() => {
                    if let Ok(o) = res {
                        self.done(o);
                    }
                }
                _ = tokio::time::sleep_until(next.unwrap_or(far)), if next.is_some() => self.flush_due(),
            }
            self.stats
                .queue_length
                .store(self.groups.len() as i64, Ordering::Relaxed);
        }
    }

    fn ingest(&mut self, batch: Vec<NotifyAlert>) {
        let now = Instant::now();
        let now_ms = now_ms();
        for a in batch {
            let labels: LabelMap = if self.s.group_by_all {
                a.labels.clone()
            } else {
                self.s
                    .group_by
                    .iter()
                    .filter_map(|k| a.labels.get(k).map(|v| (k.clone(), v.clone())))
                    .collect()
            };
            let key = group_key(&labels);
            let wait = self.s.group_wait;
            let g = self.groups.entry(key).or_insert_with(|| Group {
                labels,
                alerts: HashMap::new(),
                next_flush: now + wait,
                has_flushed: false,
                in_flight: false,
                last: None,
                failures: 0,
            });
            if !g.has_flushed && a.starts_at + wait.as_millis() as i64 <= now_ms {
                g.next_flush = g.next_flush.min(now);
            }
            let fp = fingerprint(&a.labels);
            let mut a = a;
            if let Some(old) = g.alerts.get(&fp) {
                // Still the same firing: keep when it started.
                if old.ends_at > now_ms && old.starts_at < a.starts_at {
                    a.starts_at = old.starts_at;
                }
            }
            g.alerts.insert(fp, a);
        }
    }

    fn flush_due(&mut self) {
        let now = Instant::now();
        let now_ms = now_ms();
        // Cluster mode: only the evaluator sends; a collector that is not (any more)
        // forgets its groups (the evaluator has them).
        let epoch = match &self.cluster {
            Some(c) => match c.lease.held() {
                Some(e) => Some(e),
                None => {
                    if self.groups.values().any(|g| !g.in_flight) {
                        self.groups.retain(|_, g| g.in_flight);
                    }
                    return;
                }
            },
            None => None,
        };
        let gi_ms = (self.s.group_interval.as_millis() as i64).max(1);
        let due: Vec<String> = self
            .groups
            .iter()
            .filter(|(_, g)| !g.in_flight && g.next_flush <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            let Some(g) = self.groups.get_mut(&key) else {
                continue;
            };
            g.has_flushed = true;
            let firing: HashSet<u64> = g
                .alerts
                .iter()
                .filter(|(_, a)| a.ends_at > now_ms)
                .map(|(f, _)| *f)
                .collect();
            let resolved: HashSet<u64> = g
                .alerts
                .iter()
                .filter(|(_, a)| a.ends_at <= now_ms)
                .map(|(f, _)| *f)
                .collect();
            if epoch.is_none()
                && !needs_update(
                    g.last.as_ref(),
                    &firing,
                    &resolved,
                    self.s.send_resolved,
                    self.s.repeat_interval,
                    now,
                )
            {
                // Alertmanager's dedup stage: nothing to say; resolved alerts leave.
                g.alerts.retain(|f, _| !resolved.contains(f));
                g.next_flush = now + self.s.group_interval;
                if g.alerts.is_empty() {
                    self.groups.remove(&key);
                }
                continue;
            }
            let mut alerts: Vec<NotifyAlert> = g
                .alerts
                .values()
                .filter(|a| self.s.send_resolved || a.ends_at > now_ms)
                .cloned()
                .collect();
            sort_alerts(&mut alerts);
            let body = webhook_v4(
                &self.name,
                &g.labels,
                &alerts,
                &self.external_url,
                now_ms,
                self.s.max_alerts,
            );
            g.in_flight = true;
            let mut req = authorize(
                self.client.post(&self.s.url).json(&body),
                &self.s.bearer,
                &self.s.basic,
            );
            let k = key.clone();
            let (Some(c), Some(epoch)) = (self.cluster.clone(), epoch) else {
                self.inflight.spawn(async move {
                    Outcome {
                        key: k,
                        result: match deliver(req).await {
                            Ok(()) => Sent::Delivered,
                            Err(e) => Sent::Failed(e),
                        },
                        firing,
                        resolved,
                    }
                });
                continue;
            };
            let slot = now_ms.div_euclid(gi_ms);
            req = req
                .header("X-Calm-Notification-Slot", slot)
                .header("X-Calm-Evaluator-Epoch", epoch);
            let (send_resolved, repeat_ms) = (
                self.s.send_resolved,
                self.s.repeat_interval.as_millis() as i64,
            );
            let (f, r) = (firing.clone(), resolved.clone());
            let claim = ClaimRequest {
                receiver: self.name.clone(),
                group_key: key.clone(),
                slot,
                epoch,
                now_ms,
                firing: sorted(&firing),
                resolved: sorted(&resolved),
                needs_update: Box::new(move |last| {
                    // Flushes fall on the grid: half a slot of slack absorbs the
                    // jitter of "one group interval later".
                    needs_update_logged(last, &f, &r, send_resolved, repeat_ms, now_ms + gi_ms / 2)
                }),
            };
            let receiver = self.name.clone();
            self.inflight.spawn(async move {
                let result = match c.log.claim(claim).await {
                    Ok(Claim::Send) => match deliver(req).await {
                        Ok(()) => {
                            if let Err(e) = c.log.delivered(&receiver, &k, slot, epoch).await {
                                tracing::warn!(notifier = %receiver, group = %k, error = %e, "notification delivered but not marked so in the log (a new evaluator would send it again)");
                            }
                            Sent::Delivered
                        }
                        Err(e) => Sent::Failed(e),
                    },
                    Ok(Claim::AlreadySent(n)) => Sent::Deduplicated(Some(n)),
                    Ok(Claim::Skip(n)) => Sent::Deduplicated(n),
                    Ok(Claim::Fenced) => Sent::Fenced,
                    Err(e) => Sent::Failed(format!("cannot record it in the notification log: {e}")),
                };
                Outcome {
                    key: k,
                    result,
                    firing,
                    resolved,
                }
            });
        }
    }

    fn done(&mut self, o: Outcome) {
        let now = Instant::now();
        let Some(g) = self.groups.get_mut(&o.key) else {
            return;
        };
        g.in_flight = false;
        let gi_ms = (self.s.group_interval.as_millis() as i64).max(1);
        let next_after_flush = |now: Instant| match self.cluster {
            Some(_) => next_grid_flush(now_ms(), gi_ms),
            None => now + self.s.group_interval,
        };
        match o.result {
            Sent::Deduplicated(last) => {
                self.stats.deduplicated.fetch_add(1, Ordering::Relaxed);
                g.failures = 0;
                let now_ms = now_ms();
                g.alerts
                    .retain(|f, a| !(o.resolved.contains(f) && a.ends_at <= now_ms));
                if let Some(n) = last {
                    let ago = Duration::from_millis((now_ms - n.sent_at_ms).max(0) as u64);
                    g.last = Some(Entry {
                        firing: n.firing.into_iter().collect(),
                        resolved: n.resolved.into_iter().collect(),
                        at: now.checked_sub(ago).unwrap_or(now),
                    });
                }
                g.next_flush = next_after_flush(now);
                if g.alerts.is_empty() {
                    self.groups.remove(&o.key);
                }
            }
            Sent::Fenced => {
                self.stats.fenced.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(notifier = %self.name, group = %o.key, "notification refused by the notification log: this collector is no longer the alert evaluator (another one sends now)");
                self.groups.retain(|_, g| g.in_flight);
            }
            Sent::Delivered => {
                self.stats.sent.fetch_add(1, Ordering::Relaxed);
                if g.failures > 0 {
                    tracing::info!(notifier = %self.name, group = %o.key, attempts = g.failures + 1, "webhook delivered after retries");
                }
                g.failures = 0;
                let now_ms = now_ms();
                // Resolved alerts that were sent as resolved and not updated since leave.
                g.alerts
                    .retain(|f, a| !(o.resolved.contains(f) && a.ends_at <= now_ms));
                g.last = Some(Entry {
                    firing: o.firing,
                    resolved: o.resolved,
                    at: now,
                });
                g.next_flush = next_after_flush(now);
                if g.alerts.is_empty() {
                    self.groups.remove(&o.key);
                }
            }
            Sent::Failed(e) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                g.failures += 1;
                let backoff = Duration::from_secs(1u64 << g.failures.min(6).saturating_sub(1))
                    .min(MAX_BACKOFF);
                tracing::warn!(notifier = %self.name, url = %crate::secrets::mask_url(&self.s.url), group = %o.key, attempt = g.failures, retry_in = ?backoff, error = %e, "webhook notification failed; will retry");
                g.next_flush = now + backoff;
            }
        }
    }
}

fn sorted(s: &HashSet<u64>) -> Vec<u64> {
    let mut v: Vec<u64> = s.iter().copied().collect();
    v.sort_unstable();
    v
}

/// [`needs_update`] against the latest delivered notice of the notification log
/// (cluster mode), on the wall clock (`now_ms` with the caller's slack).
fn needs_update_logged(
    last: Option<&LoggedNotice>,
    firing: &HashSet<u64>,
    resolved: &HashSet<u64>,
    send_resolved: bool,
    repeat_ms: i64,
    now_ms: i64,
) -> bool {
    let Some(n) = last else {
        return !firing.is_empty();
    };
    let last_firing: HashSet<u64> = n.firing.iter().copied().collect();
    let last_resolved: HashSet<u64> = n.resolved.iter().copied().collect();
    if !firing.is_subset(&last_firing) {
        return true;
    }
    if firing.is_empty() {
        return !last_firing.is_empty();
    }
    if send_resolved && !resolved.is_subset(&last_resolved) {
        return true;
    }
    n.sent_at_ms + repeat_ms <= now_ms
}

/// Alertmanager's `DedupStage.needsUpdate`.
fn needs_update(
    last: Option<&Entry>,
    firing: &HashSet<u64>,
    resolved: &HashSet<u64>,
    send_resolved: bool,
    repeat: Duration,
    now: Instant,
) -> bool {
    let Some(e) = last else {
        return !firing.is_empty();
    };
    if !firing.is_subset(&e.firing) {
        return true;
    }
    if firing.is_empty() {
        return !e.firing.is_empty();
    }
    if send_resolved && !resolved.is_subset(&e.resolved) {
        return true;
    }
    e.at + repeat <= now
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_like_alertmanager() {
        let now = Instant::now();
        let s = |v: &[u64]| v.iter().copied().collect::<HashSet<u64>>();
        let sent = Entry {
            firing: s(&[1, 2]),
            resolved: s(&[]),
            at: now,
        };
        let minute = Duration::from_secs(60);
        // (last sent, firing now, resolved now, send_resolved, repeat, notify?)
        type Case<'a> = (
            Option<&'a Entry>,
            &'a [u64],
            &'a [u64],
            bool,
            Duration,
            bool,
        );
        let cases: [Case; 7] = [
            (None, &[1], &[], true, minute, true),
            (None, &[], &[1], true, minute, false),
            (Some(&sent), &[1], &[], false, minute, false),
            (Some(&sent), &[1], &[2], true, minute, true),
            (Some(&sent), &[], &[1, 2], false, minute, true),
            (Some(&sent), &[3], &[], false, minute, true),
            (Some(&sent), &[1], &[], false, Duration::ZERO, true),
        ];
        for (i, (last, firing, resolved, send_resolved, repeat, want)) in
            cases.into_iter().enumerate()
        {
            let got = needs_update(last, &s(firing), &s(resolved), send_resolved, repeat, now);
            assert_eq!(got, want, "case {i}");
        }
    }

    #[test]
    fn dedup_against_the_notification_log_and_the_slot_grid() {
        let s = |v: &[u64]| v.iter().copied().collect::<HashSet<u64>>();
        let sent = LoggedNotice {
            slot: 10,
            epoch: 1,
            node: "a".into(),
            sent_at_ms: 100_000,
            firing: vec![1, 2],
            resolved: vec![],
            delivered: true,
        };
        let repeat = 60_000;
        // Nothing logged: only firing alerts are worth a first notice.
        assert!(needs_update_logged(
            None,
            &s(&[1]),
            &s(&[]),
            true,
            repeat,
            0
        ));
        assert!(!needs_update_logged(
            None,
            &s(&[]),
            &s(&[1]),
            true,
            repeat,
            0
        ));
        // Same alerts within repeat_interval: nothing new (a new evaluator stays quiet).
        assert!(!needs_update_logged(
            Some(&sent),
            &s(&[1]),
            &s(&[]),
            false,
            repeat,
            150_000
        ));
        // Repeat due, a new firing alert, everything resolved, a new resolved one.
        assert!(needs_update_logged(
            Some(&sent),
            &s(&[1]),
            &s(&[]),
            false,
            repeat,
            160_000
        ));
        assert!(needs_update_logged(
            Some(&sent),
            &s(&[3]),
            &s(&[]),
            false,
            repeat,
            101_000
        ));
        assert!(needs_update_logged(
            Some(&sent),
            &s(&[]),
            &s(&[1, 2]),
            false,
            repeat,
            101_000
        ));
        assert!(needs_update_logged(
            Some(&sent),
            &s(&[1]),
            &s(&[2]),
            true,
            repeat,
            101_000
        ));
        // The grid: the middle of the next slot, whatever the offset in this one.
        for now in [40_000, 40_001, 44_999, 45_000, 49_999] {
            let at = next_grid_flush(now, 10_000);
            let ms = at.saturating_duration_since(Instant::now()).as_millis() as i64;
            assert!((ms - (55_000 - now)).abs() <= 50, "{now}: {ms}");
        }
    }
}
