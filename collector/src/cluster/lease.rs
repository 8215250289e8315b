//! Leases and the cluster's records in the JetStream KV bucket [`super::BUCKET`].
//!
//! | key | value | written |
//! | --- | --- | --- |
//! | `generation` | [`Generation`]: partitions and generation number | once, by the first collector (create) |
//! | `node.<id>` | [`NodeRecord`]: URL, heartbeat time | every `lease_renew` by its node |
//! | `lease.<gen>.<p>.<slot>` | [`Lease`]: holder, expiry, ready, applied position | by its holder, compare-and-set on the revision |
//! | `history.<gen>.<p>` | [`History`]: who held partition p from when to when | compare-and-set, on every acquire and release |
//!
//! A lease is taken with `create` (no such key) or `update(key, value, revision)`
//! (compare-and-set on the revision seen, when the lease has expired or was released),
//! and renewed with `update` on the holder's revision: the revision is the fencing
//! token, and a holder whose renewal fails (another took it, or NATS is unreachable
//! past `lease_ttl - lease_renew` on its own clock) stops acting on its own.

use async_nats::jetstream::kv;
use serde::{Deserialize, Serialize};

/// The partition-generation record: how the series are split now. A later change of
/// the partition count starts a new generation (new streams) without touching the old.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Generation {
    pub generation: u32,
    pub partitions: u32,
    pub since_ms: i64,
}

/// A collector's heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeRecord {
    pub node: String,
    pub url: String,
    pub heartbeat_ms: i64,
}

/// One owner slot of a partition.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Lease {
    /// Holder's node id; empty when released.
    pub node: String,
    pub url: String,
    /// The holder's clock: past it, the slot is free for another collector.
    pub expires_ms: i64,
    /// When the holder took it.
    pub since_ms: i64,
    /// The holder has caught up with the stream and answers reads for the partition.
    pub ready: bool,
    /// Stream sequence applied by the holder.
    pub applied: u64,
}

impl Lease {
    /// Held by someone, and not expired at `now`.
    pub fn live(&self, now: i64) -> bool {
        !self.node.is_empty() && self.expires_ms > now
    }
}

/// One entry of a partition's ownership history.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Tenure {
    pub node: String,
    pub from_ms: i64,
    /// None while held.
    pub to_ms: Option<i64>,
}

/// A partition's ownership history (the last [`HISTORY_KEEP`] tenures).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct History {
    pub tenures: Vec<Tenure>,
}

/// Tenures kept per partition.
pub const HISTORY_KEEP: usize = 200;

pub fn node_key(node: &str) -> String {
    format!("node.{}", sanitize(node))
}

pub fn lease_key(gen: u32, p: u32, slot: u32) -> String {
    format!("lease.{gen}.{p}.{slot}")
}

pub fn history_key(gen: u32, p: u32) -> String {
    format!("history.{gen}.{p}")
}

/// KV keys allow `[-/_=.a-zA-Z0-9]`: node ids may hold ':' (a listen address).
fn sanitize(node: &str) -> String {
    node.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_=".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Reads `key` as JSON with its revision; a value that does not parse counts as absent
/// (with its revision, so it can be replaced).
pub async fn read<T: for<'de> Deserialize<'de>>(
    kv: &kv::Store,
    key: &str,
) -> Result<Option<(Option<T>, u64)>, String> {
    match kv.entry(key).await {
        Ok(Some(e)) => {
            if e.operation != kv::Operation::Put {
                return Ok(Some((None, e.revision)));
            }
            Ok(Some((serde_json::from_slice(&e.value).ok(), e.revision)))
        }
        Ok(None) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Compare-and-set: `create` when `revision` is None, else `update` on it. Returns the
/// new revision, or an error (another writer won, or NATS did not answer).
pub async fn cas<T: Serialize>(
    kv: &kv::Store,
    key: &str,
    value: &T,
    revision: Option<u64>,
) -> Result<u64, String> {
    let body = serde_json::to_vec(value).map_err(|e| e.to_string())?;
    match revision {
        None => kv.create(key, body.into()).await.map_err(|e| e.to_string()),
        Some(r) => kv
            .update(key, body.into(), r)
            .await
            .map_err(|e| e.to_string()),
    }
}

/// Appends (or closes) a tenure in `history.<gen>.<p>`, retrying a lost race a few times.
pub async fn record_history(kv: &kv::Store, gen: u32, p: u32, node: &str, now: i64, open: bool) {
    let key = history_key(gen, p);
    for _ in 0..5 {
        let (mut h, rev) = match read::<History>(kv, &key).await {
            Ok(Some((h, rev))) => (h.unwrap_or_default(), Some(rev)),
            Ok(None) => (History::default(), None),
            Err(e) => {
                tracing::warn!(error = %e, partition = p, "cannot read the ownership history");
                return;
            }
        };
        if open {
            h.tenures.push(Tenure {
                node: node.to_string(),
                from_ms: now,
                to_ms: None,
            });
        } else if let Some(t) = h
            .tenures
            .iter_mut()
            .rev()
            .find(|t| t.node == node && t.to_ms.is_none())
        {
            t.to_ms = Some(now);
        } else {
            return;
        }
        if h.tenures.len() > HISTORY_KEEP {
            let cut = h.tenures.len() - HISTORY_KEEP;
            h.tenures.drain(..cut);
        }
        if cas(kv, &key, &h, rev).await.is_ok() {
            return;
        }
    }
    tracing::warn!(
        partition = p,
        "cannot record the ownership history (contended)"
    );
}

/// Rendezvous (highest random weight) rank of `node` for partition `p`: the owners of
/// `p` are the `k` live nodes with the highest weight, so a node joining or leaving
/// moves only the partitions it gains or loses.
pub fn weight(node: &str, gen: u32, p: u32) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(node.as_bytes());
    h.update(&[0]);
    h.update(&gen.to_le_bytes());
    h.update(&p.to_le_bytes());
    h.digest()
}

/// The `k` preferred owners of partition `p` among `nodes`, best first.
pub fn preferred(nodes: &[String], gen: u32, p: u32, k: usize) -> Vec<String> {
    let mut v: Vec<(u64, &String)> = nodes.iter().map(|n| (weight(n, gen, p), n)).collect();
    v.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    v.into_iter().take(k).map(|(_, n)| n.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendezvous_spreads_and_moves_little() {
        let nodes: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let mut count = std::collections::HashMap::new();
        for p in 0..16 {
            let owners = preferred(&nodes, 1, p, 2);
            assert_eq!(owners.len(), 2);
            assert_ne!(owners[0], owners[1]);
            for o in owners {
                *count.entry(o).or_insert(0) += 1;
            }
        }
        // 32 ownerships over 3 nodes: none is left out or takes nearly all.
        assert!(count.values().all(|&c| (6..=16).contains(&c)), "{count:?}");
        // A 4th node: every partition keeps at least one of its owners.
        let mut four = nodes.clone();
        four.push("d".into());
        for p in 0..16 {
            let before = preferred(&nodes, 1, p, 2);
            let after = preferred(&four, 1, p, 2);
            assert!(after.iter().any(|n| before.contains(n)));
        }
    }
}
