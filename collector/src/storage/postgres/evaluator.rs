//! The evaluator lease (`calm_leases` row [`LEASE_NAME`]) and the notification log
//! (`calm_notification_log`) on PostgreSQL: see `storage/evaluator.rs` for the rules.
//!
//! Why PostgreSQL and not the JetStream KV leases the partition owners use: the lease
//! has to fence the writes it guards, and those writes (alert state, the notification
//! log) are in PostgreSQL. Checking the epoch in the same transaction as the write,
//! with the lease row locked `FOR SHARE`, makes a stale evaluator's write fail in the
//! database itself; a KV revision could only be compared before the write, leaving a
//! window. The database's clock decides expiry; each holder also stops on its own
//! monotonic clock (`renew start + ttl − renew`), before the database can hand the
//! lease to anyone else.

use super::{client, db_error};
use crate::storage::evaluator::{
    Claim, ClaimRequest, EvaluatorLease, LoggedNotice, NotificationLog,
};
use crate::storage::events::StoreFuture;
use crate::storage::StorageError;
use deadpool_postgres::Pool;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The lease row's name.
pub const LEASE_NAME: &str = "alert-evaluator";

/// Notices older than this are pruned (the latest of each group is always kept).
const KEEP_NOTICES_MS: i64 = 86_400_000;

/// Counters of the lease (self-metrics).
#[derive(Debug, Default)]
pub struct LeaseStats {
    /// Times this collector became the evaluator.
    pub acquired: AtomicU64,
    /// Times it stopped being the evaluator (lost, expired on its own clock).
    pub lost: AtomicU64,
    /// Renewals or acquisitions that failed for want of the database.
    pub errors: AtomicU64,
}

#[derive(Default)]
struct Held {
    epoch: Option<i64>,
    /// Held until then on this collector's clock.
    until: Option<Instant>,
}

/// The evaluator lease of one collector.
pub struct PgEvaluatorLease {
    pool: Pool,
    node: String,
    ttl: Duration,
    renew: Duration,
    held: Mutex<Held>,
    tx: watch::Sender<Option<i64>>,
    /// Released for good (stopping): no more rounds.
    stopping: std::sync::atomic::AtomicBool,
    /// Counters.
    pub stats: LeaseStats,
}

impl PgEvaluatorLease {
    /// The lease for `node`; nothing happens until [`PgEvaluatorLease::start`].
    pub fn new(pool: Pool, node: &str, ttl: Duration, renew: Duration) -> Arc<PgEvaluatorLease> {
        let (tx, _) = watch::channel(None);
        Arc::new(PgEvaluatorLease {
            pool,
            node: node.to_string(),
            ttl,
            renew,
            held: Mutex::new(Held::default()),
            tx,
            stopping: std::sync::atomic::AtomicBool::new(false),
            stats: LeaseStats::default(),
        })
    }

    /// Runs the acquire/renew loop (every `renew`) on the current runtime.
    pub fn start(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut pruned: Option<Instant> = None;
            loop {
                me.round().await;
                if me.held().is_some()
                    && pruned.is_none_or(|t| t.elapsed() > Duration::from_secs(600))
                {
                    pruned = Some(Instant::now());
                    if let Err(e) = prune(&me.pool, chrono::Utc::now().timestamp_millis()).await {
                        tracing::debug!(error = %e, "cannot prune the notification log");
                    }
                }
                tokio::time::sleep(me.renew).await;
            }
        });
    }

    fn set(&self, epoch: Option<i64>, until: Option<Instant>) {
        let mut h = self.held.lock();
        h.epoch = epoch;
        h.until = until;
        drop(h);
        self.tx.send_if_modified(|v| {
            if *v != epoch {
                *v = epoch;
                true
            } else {
                false
            }
        });
    }

    /// One acquire-or-renew round.
    pub async fn round(&self) {
        if self.stopping.load(Ordering::Relaxed) {
            return;
        }
        let started = Instant::now();
        let until = started + self.ttl.saturating_sub(self.renew);
        let (epoch, deadline) = {
            let h = self.held.lock();
            (h.epoch, h.until)
        };
        match epoch {
            Some(e) => match renew(&self.pool, &self.node, e, self.ttl).await {
                Ok(true) => self.set(Some(e), Some(until)),
                Ok(false) => {
                    self.stats.lost.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(node = %self.node, epoch = e, "alert evaluator lease lost (expired or taken over): this collector stops evaluating rules and sending notifications");
                    self.set(None, None);
                }
                Err(err) => {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    if deadline.is_none_or(|d| Instant::now() >= d) {
                        self.stats.lost.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(node = %self.node, epoch = e, error = %err, "cannot renew the alert evaluator lease in time: this collector stops evaluating rules and sending notifications");
                        self.set(None, None);
                    } else {
                        tracing::warn!(node = %self.node, epoch = e, error = %err, "cannot renew the alert evaluator lease; still held on this collector's clock");
                    }
                }
            },
            None => match acquire(&self.pool, &self.node, self.ttl).await {
                Ok(Some(e)) => {
                    self.stats.acquired.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(node = %self.node, epoch = e, "this collector is now the alert evaluator");
                    self.set(Some(e), Some(until));
                }
                Ok(None) => {}
                Err(err) => {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(error = %err, "cannot try the alert evaluator lease");
                }
            },
        }
    }
}

impl EvaluatorLease for PgEvaluatorLease {
    fn held(&self) -> Option<i64> {
        let h = self.held.lock();
        match (h.epoch, h.until) {
            (Some(e), Some(u)) if Instant::now() < u => Some(e),
            _ => None,
        }
    }

    fn watch(&self) -> watch::Receiver<Option<i64>> {
        self.tx.subscribe()
    }

    fn node(&self) -> &str {
        &self.node
    }

    fn changes(&self) -> u64 {
        self.stats.acquired.load(Ordering::Relaxed) + self.stats.lost.load(Ordering::Relaxed)
    }

    fn release(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.stopping.store(true, Ordering::Relaxed);
            let epoch = self.held.lock().epoch;
            self.set(None, None);
            if let Some(e) = epoch {
                release(&self.pool, &self.node, e).await?;
                tracing::info!(node = %self.node, epoch = e, "alert evaluator lease released");
            }
            Ok(())
        })
    }
}

/// Takes the lease for `node` when it is free or expired (on the database's clock):
/// the new epoch, or `None` while someone's lease runs (this node's own included: a
/// restarted collector waits for its previous lease to expire like anyone else).
pub async fn acquire(pool: &Pool, node: &str, ttl: Duration) -> Result<Option<i64>, StorageError> {
    let c = client(pool).await?;
    let row = c
        .query_opt(
            "INSERT INTO calm_leases (name, holder, epoch, expires_at)
             VALUES ($1, $2, 1, now() + $3 * interval '1 millisecond')
             ON CONFLICT (name) DO UPDATE SET
                epoch = calm_leases.epoch + 1,
                holder = EXCLUDED.holder,
                expires_at = EXCLUDED.expires_at
             WHERE calm_leases.expires_at <= now() OR calm_leases.holder = ''
             RETURNING epoch",
            &[&LEASE_NAME, &node, &(ttl.as_millis() as f64)],
        )
        .await
        .map_err(db_error)?;
    Ok(row.map(|r| r.get(0)))
}

/// Extends `node`'s lease of `epoch` by `ttl`: false when it is not held by `node`
/// under `epoch` any more, or expired.
pub async fn renew(
    pool: &Pool,
    node: &str,
    epoch: i64,
    ttl: Duration,
) -> Result<bool, StorageError> {
    let c = client(pool).await?;
    let n = c
        .execute(
            "UPDATE calm_leases SET expires_at = now() + $4 * interval '1 millisecond'
              WHERE name = $1 AND holder = $2 AND epoch = $3 AND expires_at > now()",
            &[&LEASE_NAME, &node, &epoch, &(ttl.as_millis() as f64)],
        )
        .await
        .map_err(db_error)?;
    Ok(n == 1)
}

/// Gives the lease up (a clean stop), so another collector need not wait for it to expire.
pub async fn release(pool: &Pool, node: &str, epoch: i64) -> Result<(), StorageError> {
    let c = client(pool).await?;
    c.execute(
        "UPDATE calm_leases SET holder = '', expires_at = now()
          WHERE name = $1 AND holder = $2 AND epoch = $3",
        &[&LEASE_NAME, &node, &epoch],
    )
    .await
    .map_err(db_error)?;
    Ok(())
}

/// The lease's holder and epoch as the database sees it (for tests and the API).
pub async fn current(pool: &Pool) -> Result<Option<(String, i64, bool)>, StorageError> {
    let c = client(pool).await?;
    let row = c
        .query_opt(
            "SELECT holder, epoch, expires_at > now() FROM calm_leases WHERE name = $1",
            &[&LEASE_NAME],
        )
        .await
        .map_err(db_error)?;
    Ok(row.map(|r| (r.get(0), r.get(1), r.get(2))))
}

/// The SQL condition "the lease is `($holder, $epoch)` and live", locking the row
/// against a take-over until the statement's transaction ends.
const FENCE: &str = "EXISTS (SELECT 1 FROM calm_leases WHERE name = 'alert-evaluator'
    AND holder = $3 AND epoch = $4 AND expires_at > now() FOR SHARE)";

/// Saves a rule group's alert state if `(node, epoch)` still holds the lease; false
/// when fenced (nothing written).
pub async fn save_state_fenced(
    pool: &Pool,
    key: &str,
    state: &[u8],
    node: &str,
    epoch: i64,
) -> Result<bool, StorageError> {
    let c = client(pool).await?;
    let n = c
        .execute(
            &format!(
                "INSERT INTO calm_alert_state (key, state, updated_at)
                 SELECT $1, $2, now() WHERE {FENCE}
                 ON CONFLICT (key) DO UPDATE SET state = EXCLUDED.state, updated_at = now()"
            ),
            &[&key, &state, &node, &epoch],
        )
        .await
        .map_err(db_error)?;
    Ok(n == 1)
}

fn to_i64(v: &[u64]) -> Vec<i64> {
    v.iter().map(|x| *x as i64).collect()
}

fn notice(r: &tokio_postgres::Row) -> LoggedNotice {
    let f: Vec<i64> = r.get(4);
    let res: Vec<i64> = r.get(5);
    LoggedNotice {
        slot: r.get(0),
        epoch: r.get(1),
        node: r.get(2),
        sent_at_ms: r.get(3),
        firing: f.into_iter().map(|x| x as u64).collect(),
        resolved: res.into_iter().map(|x| x as u64).collect(),
        delivered: r.get(6),
    }
}

const NOTICE_COLUMNS: &str = "slot, epoch, node, sent_at_ms, firing, resolved, delivered";

/// The notification log on PostgreSQL, for the lease holder `node`.
pub struct PgNotificationLog {
    pool: Pool,
    node: String,
    /// Claims refused because the epoch was stale.
    pub fenced: AtomicU64,
}

impl PgNotificationLog {
    /// The log of `node`'s claims.
    pub fn new(pool: Pool, node: &str) -> PgNotificationLog {
        PgNotificationLog {
            pool,
            node: node.to_string(),
            fenced: AtomicU64::new(0),
        }
    }

    async fn claim_inner(&self, req: ClaimRequest) -> Result<Claim, StorageError> {
        let mut c = client(&self.pool).await?;
        let tx = c.transaction().await.map_err(db_error)?;
        let lease = tx
            .query_opt(
                "SELECT holder, epoch, expires_at > now() FROM calm_leases WHERE name = $1 FOR SHARE",
                &[&LEASE_NAME],
            )
            .await
            .map_err(db_error)?;
        let ok = lease.is_some_and(|r| {
            r.get::<_, String>(0) == self.node
                && r.get::<_, i64>(1) == req.epoch
                && r.get::<_, bool>(2)
        });
        if !ok {
            self.fenced.fetch_add(1, Ordering::Relaxed);
            return Ok(Claim::Fenced);
        }
        let latest = tx
            .query_opt(
                &format!(
                    "SELECT {NOTICE_COLUMNS} FROM calm_notification_log
                      WHERE receiver = $1 AND group_key = $2 ORDER BY slot DESC LIMIT 1"
                ),
                &[&req.receiver, &req.group_key],
            )
            .await
            .map_err(db_error)?
            .map(|r| notice(&r));
        let (firing, resolved) = (to_i64(&req.firing), to_i64(&req.resolved));
        let notice_row: [&(dyn tokio_postgres::types::ToSql + Sync); 8] = [
            &req.receiver,
            &req.group_key,
            &req.slot,
            &req.epoch,
            &self.node,
            &req.now_ms,
            &firing,
            &resolved,
        ];
        if let Some(l) = &latest {
            if l.slot > req.slot {
                return Ok(Claim::AlreadySent(l.clone()));
            }
            if l.slot == req.slot {
                // Claimed in this slot and not confirmed by this epoch: a retry, send.
                // Claimed by an older epoch: that evaluator may still be sending it (a
                // paused process resumes mid-POST), so not in this slot; the next slot
                // judges against the last *delivered* notice, so nothing is lost, at
                // worst one slot late.
                if !l.delivered && l.epoch == req.epoch {
                    return record_claim(tx, &notice_row).await;
                }
                return Ok(Claim::AlreadySent(l.clone()));
            }
        }
        // What the receiver last got: the latest delivered notice.
        let last = match &latest {
            Some(l) if l.delivered => Some(l.clone()),
            Some(_) => tx
                .query_opt(
                    &format!(
                        "SELECT {NOTICE_COLUMNS} FROM calm_notification_log
                          WHERE receiver = $1 AND group_key = $2 AND delivered
                          ORDER BY slot DESC LIMIT 1"
                    ),
                    &[&req.receiver, &req.group_key],
                )
                .await
                .map_err(db_error)?
                .map(|r| notice(&r)),
            None => None,
        };
        if !(req.needs_update)(last.as_ref()) {
            return Ok(Claim::Skip(last));
        }
        record_claim(tx, &notice_row).await
    }
}

/// Records a claimed notice (`row`: receiver, group key, slot, epoch, node, time,
/// firing, resolved) — a new row for its slot, or the slot's row claimed again by the
/// same epoch (a retry) — and commits.
async fn record_claim(
    tx: deadpool_postgres::Transaction<'_>,
    row: &[&(dyn tokio_postgres::types::ToSql + Sync); 8],
) -> Result<Claim, StorageError> {
    tx.execute(
        "INSERT INTO calm_notification_log
            (receiver, group_key, slot, epoch, node, sent_at_ms, firing, resolved)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (receiver, group_key, slot) DO UPDATE
            SET epoch = EXCLUDED.epoch, node = EXCLUDED.node, sent_at_ms = EXCLUDED.sent_at_ms,
                firing = EXCLUDED.firing, resolved = EXCLUDED.resolved",
        row,
    )
    .await
    .map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    Ok(Claim::Send)
}

impl NotificationLog for PgNotificationLog {
    fn claim(&self, req: ClaimRequest) -> StoreFuture<'_, Claim> {
        Box::pin(self.claim_inner(req))
    }

    fn delivered<'a>(
        &'a self,
        receiver: &'a str,
        group_key: &'a str,
        slot: i64,
        epoch: i64,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let c = client(&self.pool).await?;
            c.execute(
                "UPDATE calm_notification_log SET delivered = true
                  WHERE receiver = $1 AND group_key = $2 AND slot = $3 AND epoch = $4",
                &[&receiver, &group_key, &slot, &epoch],
            )
            .await
            .map_err(db_error)?;
            Ok(())
        })
    }
}

/// Deletes notices older than a day, keeping the latest of each group.
pub async fn prune(pool: &Pool, now_ms: i64) -> Result<u64, StorageError> {
    let c = client(pool).await?;
    c.execute(
        "DELETE FROM calm_notification_log t
          WHERE t.sent_at_ms < $1 AND EXISTS (SELECT 1 FROM calm_notification_log n
                WHERE n.receiver = t.receiver AND n.group_key = t.group_key AND n.slot > t.slot)",
        &[&(now_ms - KEEP_NOTICES_MS)],
    )
    .await
    .map_err(db_error)
}

/// Every notice of `(receiver, group)`, oldest first (tests, diagnostics).
pub async fn notices(
    pool: &Pool,
    receiver: &str,
    group_key: &str,
) -> Result<Vec<LoggedNotice>, StorageError> {
    let c = client(pool).await?;
    let rows = c
        .query(
            &format!(
                "SELECT {NOTICE_COLUMNS} FROM calm_notification_log
                  WHERE receiver = $1 AND group_key = $2 ORDER BY slot"
            ),
            &[&receiver, &group_key],
        )
        .await
        .map_err(db_error)?;
    Ok(rows.iter().map(notice).collect())
}
