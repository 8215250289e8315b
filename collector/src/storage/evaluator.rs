//! The one alert evaluator of a cluster (issue 14): a lease that says which collector
//! evaluates the rules, and the notification log that keeps notifications to one per
//! receiver, alert group and group-interval slot across a change of evaluator.
//!
//! ```text
//! lease (calm_leases 'alert-evaluator': holder, epoch, expires_at)
//!   acquire: free or expired → holder = me, epoch + 1        (the epoch: fencing token)
//!   renew every evaluator_lease_renew; held on my own clock until
//!   (start of the last successful renewal) + ttl − renew, so I stop before anyone
//!   else can take it
//! notification log (calm_notification_log: receiver, group_key, slot, epoch, …)
//!   claim (one transaction): lease row FOR SHARE still (me, epoch)? else Fenced
//!       latest entry of (receiver, group) in this slot? → AlreadySent
//!       nothing to say (Alertmanager's dedup stage, against the latest entry)? → Skip
//!       else insert (receiver, group, slot, epoch, firing, resolved) → Send
//!   then POST, then mark delivered
//! ```
//! At most one notice per receiver, group and slot: a notice claimed by an older epoch
//! and never confirmed is not sent again in its slot (its evaluator may be paused in
//! the middle of the POST); the next slot compares with the last *delivered* notice,
//! so it is sent then.
//! Only the alerts room and `storage/` use these traits; the PostgreSQL
//! implementation is `postgres/evaluator.rs`. Embedded mode has none of this (one
//! collector evaluates its own rules).

use super::events::StoreFuture;
use tokio::sync::watch;

/// The evaluator lease, from this collector's point of view.
pub trait EvaluatorLease: Send + Sync + 'static {
    /// The epoch (fencing token) while this collector holds the lease, judged on its
    /// own clock (never on a read): `None` when it does not, or cannot be sure.
    fn held(&self) -> Option<i64>;
    /// Changes of [`EvaluatorLease::held`] (acquired with a new epoch, lost).
    fn watch(&self) -> watch::Receiver<Option<i64>>;
    /// This collector's node id (recorded in the notification log).
    fn node(&self) -> &str;
    /// Times this collector became or stopped being the holder.
    fn changes(&self) -> u64;
    /// Gives the lease up for good (a clean stop), so another collector takes over
    /// without waiting for it to expire.
    fn release(&self) -> StoreFuture<'_, ()>;
}

/// A notification as the log recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedNotice {
    /// Group-interval slot: `floor(sent_at_ms / group_interval_ms)`.
    pub slot: i64,
    /// The evaluator lease epoch it was sent under.
    pub epoch: i64,
    /// Who sent it.
    pub node: String,
    /// When it was claimed, ms since the epoch.
    pub sent_at_ms: i64,
    /// Fingerprints of the firing alerts it carried.
    pub firing: Vec<u64>,
    /// Fingerprints of the resolved alerts it carried.
    pub resolved: Vec<u64>,
    /// The receiver answered 2xx.
    pub delivered: bool,
}

/// Decides from the latest logged notice of the group (if any) whether there is
/// something to say (Alertmanager's dedup stage).
pub type NeedsUpdate = Box<dyn FnOnce(Option<&LoggedNotice>) -> bool + Send>;

/// What a claim asks.
pub struct ClaimRequest {
    pub receiver: String,
    pub group_key: String,
    pub slot: i64,
    pub epoch: i64,
    pub now_ms: i64,
    pub firing: Vec<u64>,
    pub resolved: Vec<u64>,
    pub needs_update: NeedsUpdate,
}

/// The log's answer to a claim.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// Recorded under this epoch: send it (then [`NotificationLog::delivered`]).
    Send,
    /// This slot's notice of the group was already claimed (by this or another
    /// evaluator): do not send.
    AlreadySent(LoggedNotice),
    /// Nothing new to say since the latest notice: do not send.
    Skip(Option<LoggedNotice>),
    /// The epoch is not the lease's current one (another collector evaluates now):
    /// never send.
    Fenced,
}

/// Where notifications are recorded before they are sent.
pub trait NotificationLog: Send + Sync + 'static {
    /// Claims the slot's notification of `(receiver, group)` (see the module doc).
    fn claim(&self, req: ClaimRequest) -> StoreFuture<'_, Claim>;
    /// Records that the claimed notice reached the receiver.
    fn delivered<'a>(
        &'a self,
        receiver: &'a str,
        group_key: &'a str,
        slot: i64,
        epoch: i64,
    ) -> StoreFuture<'a, ()>;
}

/// The evaluator's lease and log, handed to the alerts room in cluster mode.
#[derive(Clone)]
pub struct ClusterAlerting {
    pub lease: std::sync::Arc<dyn EvaluatorLease>,
    pub log: std::sync::Arc<dyn NotificationLog>,
}
