//! Read-after-write for the rules (issue 14): a rule group's round reads every write
//! acknowledged before the round began, unless an owner lags past a bound.
//!
//! A write is acknowledged (2xx) once the partitions' streams hold it (`log.rs`); the
//! owners apply the streams to their TSDBs a moment later (`owner.rs`). The evaluator
//! reads through the fan-out (one ready owner per partition, `fanout.rs`), so without
//! a wait a round that starts just after a write can miss it while that owner lags.
//!
//! ```text
//! round begins ─▶ high-water marks: the last sequence of every partition's stream
//!                 (JetStream stream info, one request per partition, concurrently)
//!              ─▶ for each partition, the owner the fan-out reads from, in its order
//!                 (this node when it serves the partition, then ready leases, owners
//!                 that failed lately last), asked once per owner:
//!                   POST /internal/calm/v1/applied
//!                     {"wait_ms": 4200, "partitions": [[p, high_water], …]}
//!                   answered once every partition it serves has applied its mark, or
//!                   wait_ms passed (long poll; at once when nothing lags):
//!                     {"waited": bool, "positions": [{"partition", "serves", "applied"}]}
//!                 a partition not served (or no answer) goes to its next owner, as in
//!                 the fan-out; a partition with no owner left is not waited for (the
//!                 fan-out answers it with a warning, or 503 when strict)
//!              ─▶ evaluate. Past the bound it evaluates anyway: one WARN naming the
//!                 lagging partitions and owners (again when that list changes or after
//!                 a minute), calm_rule_read_after_write_timeouts_total + 1
//! ```
//!
//! Why this way: the applied position is known first, and exactly, by the owner
//! itself (its progress, stored with the samples in one WAL record). The lease records
//! carry it too (`lease.rs`), but only as of the holder's last renewal, seen here a
//! lease round later: waiting on them would cost a round up to two `lease_renew`
//! periods even when the owner caught up at once. `GET /api/calm/v1/cluster` shows
//! only the answering node's own lag, one request per node and poll. One long-polled
//! request per owner costs a round one round trip when nothing lags and returns as
//! soon as the owner has caught up when one does, without polling over the network
//! (the owner polls its own counter every 10 ms).
//!
//! Bound: `min([cluster] rule_read_after_write_wait, half the group interval)`; `0s`
//! builds no barrier (no wait, no cost); embedded mode has none (a write is in the TSDB
//! once acknowledged). Left open: the fan-out's choice of owner can change between the
//! wait and the query (a lease view refresh); the round then reads an owner that was
//! not waited for (one that serves, so has caught up once, and may lag as before).

use super::fanout::FanoutReader;
use super::owner::{Node, Owner};
use super::stream_name;
use crate::storage::reader::ReadBarrier;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The internal endpoint's path.
pub const APPLIED_PATH: &str = "/internal/calm/v1/applied";

/// Longest wait an owner accepts from one request.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// How often an owner looks at its own applied position while a request waits.
const POLL: Duration = Duration::from_millis(10);

/// A lagging owner named again in the log after this long (else once per change).
const WARN_EVERY: Duration = Duration::from_secs(60);

/// What the evaluator asks an owner: wait until these partitions (those it serves)
/// have applied these stream sequences, at most `wait_ms`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppliedRequest {
    pub wait_ms: u64,
    /// `(partition, high-water mark)`.
    pub partitions: Vec<(u32, u64)>,
}

/// One partition in an owner's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Position {
    pub partition: u32,
    /// This owner serves the partition now (`Node::serves`); `applied` is 0 otherwise.
    pub serves: bool,
    /// The stream sequence applied (durable with the samples).
    pub applied: u64,
}

/// An owner's answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AppliedResponse {
    /// A partition it serves was behind its mark when the request came.
    pub waited: bool,
    pub positions: Vec<Position>,
}

/// Owner side: waits until every partition of `targets` this node serves has applied
/// its mark, or `wait` has passed; answers the positions then.
pub async fn wait_applied(node: &Node, targets: &[(u32, u64)], wait: Duration) -> AppliedResponse {
    let deadline = Instant::now() + wait.min(MAX_WAIT);
    let mut waited = false;
    loop {
        let positions: Vec<Position> = targets
            .iter()
            .map(|&(p, _)| {
                let applied = node.applied_if_served(p);
                Position {
                    partition: p,
                    serves: applied.is_some(),
                    applied: applied.unwrap_or(0),
                }
            })
            .collect();
        let behind = positions
            .iter()
            .zip(targets)
            .any(|(pos, &(_, mark))| pos.serves && pos.applied < mark);
        let now = Instant::now();
        if !behind || now >= deadline {
            return AppliedResponse { waited, positions };
        }
        waited = true;
        tokio::time::sleep(POLL.min(deadline - now)).await;
    }
}

/// `POST /internal/calm/v1/applied` (read scope, as every unnamed route).
pub fn routes(node: Arc<Node>) -> Router {
    Router::new()
        .route(APPLIED_PATH, post(applied_handler))
        .with_state(node)
}

async fn applied_handler(State(node): State<Arc<Node>>, body: axum::body::Bytes) -> Response {
    let req: AppliedRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return (
                axum::http::StatusCode::BAD_REQUEST,
                format!("bad applied request: {e}\n"),
            )
                .into_response()
        }
    };
    let wait = Duration::from_millis(req.wait_ms);
    axum::Json(wait_applied(&node, &req.partitions, wait).await).into_response()
}

/// A partition whose owner had not caught up when the bound passed.
struct Lagging {
    partition: u32,
    owner: String,
    applied: u64,
    mark: u64,
}

/// The evaluator side: the [`ReadBarrier`] a rule group's round waits on.
pub struct RuleReadBarrier {
    node: Arc<Node>,
    fanout: Arc<FanoutReader>,
    limit: Duration,
    /// The last lagging list logged at WARN, and when.
    warned: Mutex<Option<(Instant, String)>>,
}

impl RuleReadBarrier {
    /// The barrier over `fanout`'s owners, or `None` when `[cluster]
    /// rule_read_after_write_wait` is 0 (no wait).
    pub fn new(node: Arc<Node>, fanout: Arc<FanoutReader>) -> Option<Arc<RuleReadBarrier>> {
        let limit = node.cfg.rule_read_after_write_wait.get();
        if limit.is_zero() {
            return None;
        }
        Some(Arc::new(RuleReadBarrier {
            node,
            fanout,
            limit,
            warned: Mutex::new(None),
        }))
    }

    /// The last sequence of every partition's stream (partitions with an empty stream,
    /// or whose stream did not answer before `deadline`, are left out).
    async fn high_water_marks(&self, deadline: Instant) -> Vec<(u32, u64)> {
        let gen = self.node.gen.generation;
        let asks = (0..self.node.gen.partitions).map(|p| async move {
            let name = stream_name(gen, p);
            match self.node.js.get_stream(&name).await {
                Ok(s) => Ok((p, s.cached_info().state.last_sequence)),
                Err(e) => Err((p, e.to_string())),
            }
        });
        let all = futures_util::future::join_all(asks);
        let remaining = deadline.saturating_duration_since(Instant::now());
        let Ok(answers) = tokio::time::timeout(remaining, all).await else {
            tracing::warn!(
                "cluster: the metrics log did not say where its streams end in time; evaluating rules without waiting for the owners"
            );
            return Vec::new();
        };
        let mut marks = Vec::new();
        for a in answers {
            match a {
                Ok((p, last)) if last > 0 => marks.push((p, last)),
                Ok(_) => {}
                Err((p, e)) => {
                    tracing::debug!(partition = p, error = %e, "cluster: no high-water mark for a rule round")
                }
            }
        }
        marks
    }

    /// Asks one owner (this node directly, another over HTTP).
    async fn ask(
        &self,
        owner: &Owner,
        targets: &[(u32, u64)],
        wait: Duration,
    ) -> Result<AppliedResponse, String> {
        if owner.node == self.node.cfg.node_id {
            return Ok(wait_applied(&self.node, targets, wait).await);
        }
        let req = AppliedRequest {
            wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            partitions: targets.to_vec(),
        };
        let mut rq = self
            .fanout
            .http()
            .post(format!("{}{APPLIED_PATH}", owner.url))
            .timeout(wait + Duration::from_secs(2))
            .json(&req);
        if let Some(t) = self.fanout.token() {
            rq = rq.bearer_auth(t);
        }
        let resp = rq.send().await.map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("{}: HTTP {}", owner.url, resp.status()));
        }
        resp.json::<AppliedResponse>()
            .await
            .map_err(|e| e.to_string())
    }

    /// One round's wait (see the module doc).
    async fn wait(&self, max: Duration) {
        let limit = self.limit.min(max);
        if limit.is_zero() {
            return;
        }
        let deadline = Instant::now() + limit;
        let mut pending = self.high_water_marks(deadline).await;
        if pending.is_empty() {
            return;
        }
        let owners = self.fanout.owners();
        let mut tried: HashMap<u32, usize> = HashMap::new();
        let mut lagging: Vec<Lagging> = Vec::new();
        let mut waited = false;
        while !pending.is_empty() {
            let mut by_owner: HashMap<String, (Owner, Vec<(u32, u64)>)> = HashMap::new();
            for (p, mark) in pending.drain(..) {
                let i = tried.entry(p).or_insert(0);
                // No owner (left): not waited for; the fan-out warns about it.
                if let Some(o) = owners.get(p as usize).and_then(|o| o.get(*i)) {
                    by_owner
                        .entry(o.node.clone())
                        .or_insert_with(|| (o.clone(), Vec::new()))
                        .1
                        .push((p, mark));
                }
                *i += 1;
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            let asks = by_owner.into_values().map(|(o, targets)| async move {
                let r = self.ask(&o, &targets, remaining).await;
                (o, targets, r)
            });
            for (o, targets, r) in futures_util::future::join_all(asks).await {
                match r {
                    Ok(answer) => {
                        waited |= answer.waited;
                        for (p, mark) in targets {
                            match answer.positions.iter().find(|x| x.partition == p) {
                                Some(x) if x.serves && x.applied >= mark => {}
                                Some(x) if x.serves => lagging.push(Lagging {
                                    partition: p,
                                    owner: o.node.clone(),
                                    applied: x.applied,
                                    mark,
                                }),
                                _ => pending.push((p, mark)),
                            }
                        }
                    }
                    Err(e) => {
                        tracing::debug!(owner = %o.node, error = %e, "cluster: an owner did not say what it applied; asking the next");
                        pending.extend(targets);
                    }
                }
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        // Asked of an owner that did not answer or no longer served it, and the time
        // was up before the next one could be asked.
        for (p, mark) in pending {
            lagging.push(Lagging {
                partition: p,
                owner: "(no owner answered)".into(),
                applied: 0,
                mark,
            });
        }
        let stats = &self.node.stats;
        if lagging.is_empty() {
            if waited {
                stats.rule_waits.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        stats.rule_waits.fetch_add(1, Ordering::Relaxed);
        stats.rule_wait_timeouts.fetch_add(1, Ordering::Relaxed);
        lagging.sort_by_key(|l| l.partition);
        let list = lagging
            .iter()
            .map(|l| {
                format!(
                    "partition {} on {} (applied {} of {})",
                    l.partition, l.owner, l.applied, l.mark
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let key: String = lagging
            .iter()
            .map(|l| format!("{}@{} ", l.partition, l.owner))
            .collect();
        let mut warned = self.warned.lock();
        let again = warned
            .as_ref()
            .is_none_or(|(at, k)| *k != key || at.elapsed() >= WARN_EVERY);
        if again {
            *warned = Some((Instant::now(), key));
            tracing::warn!(waited = ?limit, lagging = %list, "cluster: rules evaluated before these owners applied the writes acknowledged before the round ([cluster] rule_read_after_write_wait passed); the round may miss them (calm_rule_read_after_write_timeouts_total)");
        } else {
            tracing::debug!(waited = ?limit, lagging = %list, "cluster: rule round evaluated before owners caught up");
        }
    }
}

impl ReadBarrier for RuleReadBarrier {
    fn wait_caught_up(&self, max: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.wait(max))
    }
}
