//! Partition owners: this collector's membership (heartbeat), its leases, and one
//! consumer per owned partition applying the stream to the local TSDB.
//!
//! Assignment: the `owners_per_partition` (k) live nodes with the highest rendezvous
//! weight ([`super::lease::preferred`]) are a partition's preferred owners. Each
//! partition has 2k lease slots, so a preferred newcomer takes a free slot while the
//! old owner still holds its own (make-before-break); a holder that is no longer
//! preferred releases only once every preferred owner holds a ready lease. A released
//! partition's data stays in the TSDB (the ownership history says who held it when).
//!
//! Exactly-once apply: each batch of messages is written to the TSDB in one `write`
//! (one WAL record) together with a sample of the position series
//! ([`super::POSITION_METRIC`]) whose value is the last stream sequence of the batch. A
//! crash either keeps both or neither; a restart resumes after the stored position,
//! and a message applied twice anyway (a consumer recreated mid-batch) is skipped by
//! sequence, and identical samples are no-ops in the TSDB (`samples_duplicate`).

use super::config::ClusterConfig;
use super::lease::{self, Generation, Lease, NodeRecord};
use super::{now_ms, stream_name, BUCKET, POSITION_METRIC};
use crate::selfmetrics::{counter, gauge};
use crate::storage::reader::Matcher;
use crate::tsdb::Db;
use async_nats::jetstream::{self, consumer, kv, stream};
use calm_wire::prompb::{Label, Sample, TimeSeries, WriteRequest};
use futures_util::StreamExt as _;
use parking_lot::Mutex;
use prometheus_client::encoding::DescriptorEncoder;
use prost::Message as _;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// No applied message for this long while the stream has more: the consumer is
/// recreated (pull consumers are known to stall; nats.rs #1285, nats-server #6290).
const STALL_AFTER: Duration = Duration::from_secs(10);

/// Most messages applied in one TSDB write.
const MAX_BATCH: usize = 256;

/// A partition's consumer progress, shared with the lease loop and `/metrics`.
#[derive(Debug, Default)]
pub struct Progress {
    /// Last stream sequence applied (durable with the samples).
    pub applied: AtomicU64,
    /// Last stream sequence the stream reported.
    pub last: AtomicU64,
    /// Caught up once since the consumer started.
    pub ready: AtomicBool,
    /// Messages lost to retention before this owner applied them.
    pub gap: AtomicU64,
    stop: AtomicBool,
}

impl Progress {
    /// Caught up and without a gap: this copy may answer reads.
    pub fn complete(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && self.gap.load(Ordering::Relaxed) == 0
    }
}

/// Counters of the owner side (`/metrics`).
#[derive(Debug, Default)]
pub struct OwnerStats {
    pub applied_messages: AtomicU64,
    pub applied_samples: AtomicU64,
    pub lease_changes: AtomicU64,
    pub lease_renew_failures: AtomicU64,
    pub consumer_restarts: AtomicU64,
    pub apply_failures: AtomicU64,
    pub partial_answers: AtomicU64,
    /// Rule rounds that found an owner behind the log's end and waited for it
    /// (`read_after_write.rs`).
    pub rule_waits: AtomicU64,
    /// Rule rounds that ran before every owner caught up (the wait's bound passed).
    pub rule_wait_timeouts: AtomicU64,
}

struct Held {
    slot: u32,
    revision: u64,
    since_ms: i64,
    renewed: Instant,
    progress: Arc<Progress>,
}

#[derive(Default)]
struct State {
    held: HashMap<u32, Held>,
    /// Live leases by partition, as seen in the last round.
    view: Vec<Vec<Lease>>,
    nodes: Vec<NodeRecord>,
    desired: HashSet<u32>,
    rounds: u64,
    first_round: Option<Instant>,
    /// A clean stop began ([`Node::leave`]): no heartbeat, nothing wanted, the
    /// partitions handed over to their next owners before the process exits.
    leaving: bool,
    /// When NATS last took this node's heartbeat: without it for `lease_ttl -
    /// lease_renew`, the node has stepped down and `/readyz` says so.
    last_contact: Option<Instant>,
}

/// One collector's part of the cluster.
pub struct Node {
    pub cfg: ClusterConfig,
    pub gen: Generation,
    pub js: jetstream::Context,
    kv: kv::Store,
    db: Arc<Db>,
    state: Mutex<State>,
    pub stats: OwnerStats,
}

/// What a released lease slot holds (free for anyone, no fencing value kept).
fn released_lease() -> Lease {
    Lease {
        node: String::new(),
        url: String::new(),
        expires_ms: 0,
        since_ms: 0,
        ready: false,
        applied: 0,
    }
}

/// An owner of a partition, for the fan-out.
#[derive(Debug, Clone)]
pub struct Owner {
    pub node: String,
    pub url: String,
    /// Its lease (or this node's own progress) says it has caught up.
    pub ready: bool,
}

impl Node {
    /// Connects to NATS, creates (or finds) the KV bucket, the generation record and
    /// the streams. Retries until NATS answers, logging why.
    pub async fn connect(cfg: &ClusterConfig, db: Arc<Db>) -> anyhow::Result<Arc<Node>> {
        let mut attempt = 0u32;
        loop {
            match Self::try_connect(cfg, db.clone()).await {
                Ok(n) => return Ok(n),
                Err(e) => {
                    attempt += 1;
                    crate::startup::set(format!("waiting for NATS ({:?}): {e}", cfg.nats_urls));
                    tracing::warn!(error = %e, attempt, urls = ?cfg.nats_urls, "cluster: cannot set up the metrics log on NATS; retrying in 2s");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
    }

    async fn try_connect(cfg: &ClusterConfig, db: Arc<Db>) -> anyhow::Result<Arc<Node>> {
        let client = async_nats::ConnectOptions::new()
            .name(format!("calm-collector {}", cfg.node_id))
            .connection_timeout(Duration::from_secs(5))
            .request_timeout(Some(Duration::from_secs(5)))
            .connect(cfg.nats_urls.clone())
            .await?;
        let js = jetstream::new(client);
        let kv = match js.get_key_value(BUCKET).await {
            Ok(kv) => kv,
            Err(_) => match js
                .create_key_value(kv::Config {
                    bucket: BUCKET.into(),
                    description: "Calm cluster: leases, nodes, generation, ownership history"
                        .into(),
                    history: 1,
                    num_replicas: cfg.replicas,
                    storage: stream::StorageType::File,
                    ..Default::default()
                })
                .await
            {
                Ok(kv) => kv,
                Err(_) => js.get_key_value(BUCKET).await?,
            },
        };
        let gen = match lease::read::<Generation>(&kv, "generation")
            .await
            .map_err(anyhow::Error::msg)?
        {
            Some((Some(g), _)) => g,
            _ => {
                let g = Generation {
                    generation: 1,
                    partitions: cfg.partitions,
                    since_ms: now_ms(),
                };
                match lease::cas(&kv, "generation", &g, None).await {
                    Ok(_) => g,
                    Err(_) => lease::read::<Generation>(&kv, "generation")
                        .await
                        .map_err(anyhow::Error::msg)?
                        .and_then(|(g, _)| g)
                        .ok_or_else(|| anyhow::anyhow!("the generation record cannot be read"))?,
                }
            }
        };
        if gen.partitions != cfg.partitions {
            tracing::warn!(
                configured = cfg.partitions,
                running = gen.partitions,
                "cluster: [cluster] partitions differs from the running cluster's generation record; using the cluster's"
            );
        }
        for p in 0..gen.partitions {
            js.get_or_create_stream(stream::Config {
                name: stream_name(gen.generation, p),
                subjects: vec![super::subject(gen.generation, p)],
                num_replicas: cfg.replicas,
                max_age: cfg.stream_max_age.get(),
                storage: stream::StorageType::File,
                // JetStream refuses a dedup window longer than the retention.
                duplicate_window: Duration::from_secs(120).min(cfg.stream_max_age.get()),
                max_message_size: (super::log::MAX_MESSAGE_BYTES * 2) as i32,
                ..Default::default()
            })
            .await?;
        }
        tracing::info!(
            node = %cfg.node_id,
            generation = gen.generation,
            partitions = gen.partitions,
            "cluster: the metrics log is set up"
        );
        Ok(Arc::new(Node {
            cfg: cfg.clone(),
            gen,
            js,
            kv,
            db,
            state: Mutex::new(State::default()),
            stats: OwnerStats::default(),
        }))
    }

    /// Runs the lease loop (heartbeat, acquire, renew, release, step down) forever.
    pub fn start(self: &Arc<Self>) {
        let node = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(node.cfg.lease_renew.get());
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                // A round never hangs the loop: the step-down clock runs on regardless.
                let limit = node.cfg.lease_ttl.get();
                if tokio::time::timeout(limit, node.round()).await.is_err() {
                    tracing::warn!(
                        "cluster: a lease round took longer than lease_ttl; starting another"
                    );
                    node.step_down_stale().await;
                }
            }
        });
    }

    fn ttl_ms(&self) -> i64 {
        self.cfg.lease_ttl.as_millis_i64()
    }

    /// One round of the lease loop.
    async fn round(self: &Arc<Self>) {
        let now = now_ms();
        let me = self.cfg.node_id.clone();
        let url = self.cfg.advertise_url.clone();
        let leaving = self.state.lock().leaving;
        let hb = NodeRecord {
            node: me.clone(),
            url: url.clone(),
            heartbeat_ms: now,
        };
        if leaving {
            // Gone from the membership: the others pick this node's successors.
            if self.kv.delete(lease::node_key(&me)).await.is_ok() {
                self.state.lock().last_contact = Some(Instant::now());
            }
        } else if let Ok(body) = serde_json::to_vec(&hb) {
            match self.kv.put(lease::node_key(&me), body.into()).await {
                Ok(_) => self.state.lock().last_contact = Some(Instant::now()),
                Err(e) => {
                    tracing::warn!(error = %e, "cluster: cannot write this node's heartbeat")
                }
            }
        }
        // Listing keys runs a consumer that can stall when NATS fails over: bounded,
        // and the last list is kept when it does not finish.
        let listing = async {
            let mut nodes = Vec::new();
            let mut keys = self.kv.keys().await.map_err(|e| e.to_string())?;
            while let Some(k) = keys.next().await {
                let k = k.map_err(|e| e.to_string())?;
                if !k.starts_with("node.") {
                    continue;
                }
                if let Ok(Some((Some(rec), _))) = lease::read::<NodeRecord>(&self.kv, &k).await {
                    if rec.heartbeat_ms > now - self.ttl_ms() {
                        nodes.push(rec);
                    }
                }
            }
            Ok::<_, String>(nodes)
        };
        let mut nodes = match tokio::time::timeout(self.cfg.lease_renew.get() * 2, listing).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cluster: cannot list the nodes; keeping the last list");
                self.state.lock().nodes.clone()
            }
            Err(_) => {
                tracing::warn!("cluster: listing the nodes timed out; keeping the last list");
                self.state.lock().nodes.clone()
            }
        };
        if leaving {
            nodes.retain(|n| n.node != me);
        } else if !nodes.iter().any(|n| n.node == me) {
            nodes.push(hb);
        }
        nodes.sort_by(|a, b| a.node.cmp(&b.node));
        let ids: Vec<String> = nodes.iter().map(|n| n.node.clone()).collect();
        let k = self.cfg.owners_per_partition as usize;
        let slots = (2 * k) as u32;
        let mut view = vec![Vec::new(); self.gen.partitions as usize];
        let mut desired = HashSet::new();
        for p in 0..self.gen.partitions {
            let preferred = lease::preferred(&ids, self.gen.generation, p, k);
            let want = preferred.contains(&me);
            if want {
                desired.insert(p);
            }
            // The slots as they are now.
            let mut seen: Vec<Option<(Option<Lease>, u64)>> = Vec::new();
            let mut failed = false;
            for s in 0..slots {
                match lease::read::<Lease>(&self.kv, &lease::lease_key(self.gen.generation, p, s))
                    .await
                {
                    Ok(v) => seen.push(v),
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            let now = now_ms();
            if !failed {
                self.tend(p, &me, &url, want, &preferred, &seen, now).await;
            }
            // Live leases after this round's changes.
            let mut live = Vec::new();
            for s in 0..slots {
                let mine = self
                    .state
                    .lock()
                    .held
                    .get(&p)
                    .filter(|h| h.slot == s)
                    .map(|h| self.my_lease(h, now));
                if let Some(l) = mine {
                    live.push(l);
                } else if let Some(Some((Some(l), _))) = seen.get(s as usize) {
                    if l.live(now) && l.node != me {
                        live.push(l.clone());
                    }
                }
            }
            view[p as usize] = live;
        }
        self.step_down_stale().await;
        let mut st = self.state.lock();
        st.view = view;
        st.nodes = nodes;
        st.desired = desired;
        st.rounds += 1;
        st.first_round.get_or_insert_with(Instant::now);
    }

    /// Steps down on our own clock: a lease not renewed for ttl - renew may already
    /// be someone else's.
    async fn step_down_stale(&self) {
        let limit = self
            .cfg
            .lease_ttl
            .get()
            .saturating_sub(self.cfg.lease_renew.get());
        let stale: Vec<u32> = self
            .state
            .lock()
            .held
            .iter()
            .filter(|(_, h)| h.renewed.elapsed() > limit)
            .map(|(p, _)| *p)
            .collect();
        for p in stale {
            tracing::warn!(
                partition = p,
                "cluster: lease not renewed in time; stepping down"
            );
            self.drop_partition(p, false).await;
        }
    }

    fn my_lease(&self, h: &Held, now: i64) -> Lease {
        Lease {
            node: self.cfg.node_id.clone(),
            url: self.cfg.advertise_url.clone(),
            expires_ms: now + self.ttl_ms(),
            since_ms: h.since_ms,
            ready: h.progress.complete(),
            applied: h.progress.applied.load(Ordering::Relaxed),
        }
    }

    /// Renews, releases or takes this node's lease on partition `p`.
    #[allow(clippy::too_many_arguments)]
    async fn tend(
        self: &Arc<Self>,
        p: u32,
        me: &str,
        url: &str,
        want: bool,
        preferred: &[String],
        seen: &[Option<(Option<Lease>, u64)>],
        now: i64,
    ) {
        let gen = self.gen.generation;
        let held = self
            .state
            .lock()
            .held
            .get(&p)
            .map(|h| (h.slot, h.revision, self.my_lease(h, now)));
        if let Some((slot, rev, lease)) = held {
            let key = lease::lease_key(gen, p, slot);
            if !want {
                // Make-before-break: release once every preferred owner is ready.
                let ready_preferred = preferred.iter().all(|n| {
                    seen.iter().flatten().any(|(l, _)| {
                        l.as_ref()
                            .is_some_and(|l| &l.node == n && l.ready && l.live(now))
                    })
                });
                // All slots may be held by owners that are no longer preferred (two
                // collectors joined at once): the least preferred of them also lets
                // go once k others are ready, so a preferred one gets a slot.
                let others: Vec<&Lease> = seen
                    .iter()
                    .flatten()
                    .filter_map(|(l, _)| l.as_ref())
                    .filter(|l| l.live(now) && l.node != me)
                    .collect();
                let others_ready = others.iter().filter(|l| l.ready).count();
                let my_weight = lease::weight(me, gen, p);
                let least = others
                    .iter()
                    .filter(|l| !preferred.contains(&l.node))
                    .all(|l| lease::weight(&l.node, gen, p) > my_weight);
                if ready_preferred || (others_ready >= preferred.len().max(1) && least) {
                    let _ = lease::cas(&self.kv, &key, &released_lease(), Some(rev)).await;
                    tracing::info!(
                        partition = p,
                        "cluster: partition handed over; releasing it (its data stays here)"
                    );
                    self.drop_partition(p, true).await;
                    return;
                }
            }
            match lease::cas(&self.kv, &key, &lease, Some(rev)).await {
                Ok(new_rev) => {
                    if let Some(h) = self.state.lock().held.get_mut(&p) {
                        h.revision = new_rev;
                        h.renewed = Instant::now();
                    }
                }
                Err(e) => {
                    self.stats
                        .lease_renew_failures
                        .fetch_add(1, Ordering::Relaxed);
                    // Another holder now (the revision moved): fenced, stop at once.
                    let taken = matches!(lease::read::<Lease>(&self.kv, &key).await,
                        Ok(Some((Some(l), _))) if l.node != me);
                    if taken {
                        tracing::warn!(
                            partition = p,
                            "cluster: lease taken by another collector; stopping"
                        );
                        self.drop_partition(p, true).await;
                    } else {
                        tracing::warn!(partition = p, error = %e, "cluster: cannot renew the lease");
                    }
                }
            }
            return;
        }
        if !want {
            return;
        }
        // Adopt our own lease from before a restart, else take a free or expired slot.
        let mut order: Vec<usize> = (0..seen.len()).collect();
        order.sort_by_key(|&s| match &seen[s] {
            Some((Some(l), _)) if l.node == me => 0,
            _ => 1,
        });
        for s in order {
            let (free, rev) = match &seen[s] {
                None => (true, None),
                Some((None, r)) => (true, Some(*r)),
                Some((Some(l), r)) => (l.node == me || !l.live(now), Some(*r)),
            };
            if !free {
                continue;
            }
            let lease = Lease {
                node: me.to_string(),
                url: url.to_string(),
                expires_ms: now + self.ttl_ms(),
                since_ms: now,
                ready: false,
                applied: 0,
            };
            let key = lease::lease_key(gen, p, s as u32);
            if let Ok(new_rev) = lease::cas(&self.kv, &key, &lease, rev).await {
                let progress = Arc::new(Progress::default());
                self.state.lock().held.insert(
                    p,
                    Held {
                        slot: s as u32,
                        revision: new_rev,
                        since_ms: now,
                        renewed: Instant::now(),
                        progress: progress.clone(),
                    },
                );
                self.stats.lease_changes.fetch_add(1, Ordering::Relaxed);
                tracing::info!(partition = p, slot = s, "cluster: partition acquired");
                lease::record_history(&self.kv, gen, p, me, now, true).await;
                let node = self.clone();
                tokio::spawn(async move { node.consume(p, progress).await });
                return;
            }
        }
    }

    /// Stops owning `p` (the consumer stops; the data stays).
    async fn drop_partition(&self, p: u32, record: bool) {
        let held = self.state.lock().held.remove(&p);
        if let Some(h) = held {
            h.progress.stop.store(true, Ordering::Relaxed);
            self.stats.lease_changes.fetch_add(1, Ordering::Relaxed);
            if record {
                lease::record_history(
                    &self.kv,
                    self.gen.generation,
                    p,
                    &self.cfg.node_id,
                    now_ms(),
                    false,
                )
                .await;
            }
        }
    }

    /// The last position of partition `p` stored with its samples (0: none).
    fn stored_position(db: &Db, p: u32) -> u64 {
        let m = [
            Matcher::equal("__name__", POSITION_METRIC),
            Matcher::equal("partition", &p.to_string()),
        ];
        let now = now_ms();
        for mint in [now - 3_600_000, i64::MIN / 2] {
            if let Ok(found) = db.select(&m, mint, i64::MAX / 2) {
                if let Some(v) = found
                    .iter()
                    .filter_map(|s| s.samples.last())
                    .map(|s| s.1 as u64)
                    .max()
                {
                    return v;
                }
            }
        }
        0
    }

    /// Applies partition `p`'s stream to the TSDB until told to stop.
    async fn consume(self: Arc<Self>, p: u32, prog: Arc<Progress>) {
        let name = stream_name(self.gen.generation, p);
        let db = self.db.clone();
        let applied = tokio::task::spawn_blocking(move || Self::stored_position(&db, p))
            .await
            .unwrap_or(0);
        prog.applied.store(applied, Ordering::Relaxed);
        tracing::info!(
            partition = p,
            applied,
            "cluster: consuming from the stored position"
        );
        let mut last_ts = 0i64;
        while !prog.stop.load(Ordering::Relaxed) {
            if let Err(e) = self.consume_once(p, &name, &prog, &mut last_ts).await {
                tracing::warn!(partition = p, error = %e, "cluster: consumer stopped; recreating it");
                self.stats.consumer_restarts.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        prog.ready.store(false, Ordering::Relaxed);
    }

    async fn consume_once(
        &self,
        p: u32,
        name: &str,
        prog: &Progress,
        last_ts: &mut i64,
    ) -> anyhow::Result<()> {
        let mut stream = self.js.get_stream(name).await?;
        let info = stream.info().await?.state.clone();
        let applied = prog.applied.load(Ordering::Relaxed);
        prog.last.store(info.last_sequence, Ordering::Relaxed);
        // Also when every message aged out (messages 0, first = last + 1); a first
        // tenure (nothing applied yet) starts where the log starts and misses nothing
        // of its own.
        if applied > 0 && info.first_sequence > applied + 1 {
            let lost = info.first_sequence - applied - 1;
            prog.gap.store(lost, Ordering::Relaxed);
            tracing::error!(
                partition = p,
                applied,
                first_in_log = info.first_sequence,
                lost,
                "cluster: this owner was away longer than [cluster] stream_max_age: {lost} messages of partition {p} (stream sequences {} to {}) left the log before it applied them, so this collector's copy of partition {p} misses them. It no longer answers reads of partition {p} nor says ready (/readyz); the other owner answers them if it holds them. What to do: stop this collector, remove its data directory and start it again (it then owns its partitions afresh from what the log holds), and raise [cluster] stream_max_age above the longest time a collector may be down.",
                applied + 1,
                info.first_sequence - 1
            );
        }
        if applied >= info.last_sequence {
            prog.ready.store(true, Ordering::Relaxed);
        }
        let start = applied.max(info.first_sequence.saturating_sub(1)) + 1;
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: start,
                },
                ..Default::default()
            })
            .await?;
        let mut msgs = consumer.messages().await?;
        let mut last_progress = Instant::now();
        let mut last_info = Instant::now();
        loop {
            if prog.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let first = match tokio::time::timeout(Duration::from_secs(1), msgs.next()).await {
                Ok(Some(Ok(m))) => m,
                Ok(Some(Err(e))) => return Err(e.into()),
                Ok(None) => anyhow::bail!("the consumer ended"),
                Err(_) => {
                    // Idle: refresh the stream's end; a stalled consumer is recreated.
                    if last_info.elapsed() > Duration::from_secs(2) {
                        last_info = Instant::now();
                        let last = stream.info().await?.state.last_sequence;
                        prog.last.store(last, Ordering::Relaxed);
                        let applied = prog.applied.load(Ordering::Relaxed);
                        if applied >= last {
                            prog.ready.store(true, Ordering::Relaxed);
                            last_progress = Instant::now();
                        } else if last_progress.elapsed() > STALL_AFTER {
                            anyhow::bail!("no progress for {STALL_AFTER:?} with {} messages waiting (stalled consumer)", last - applied);
                        }
                    }
                    continue;
                }
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match tokio::time::timeout(Duration::ZERO, msgs.next()).await {
                    Ok(Some(Ok(m))) => batch.push(m),
                    _ => break,
                }
            }
            self.apply(p, name, prog, batch, last_ts).await?;
            last_progress = Instant::now();
            if last_info.elapsed() > Duration::from_secs(2) {
                last_info = Instant::now();
                let last = stream.info().await?.state.last_sequence;
                prog.last.store(last, Ordering::Relaxed);
            }
            if prog.applied.load(Ordering::Relaxed) >= prog.last.load(Ordering::Relaxed) {
                prog.ready.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Writes a batch of messages and the position after it in one TSDB write.
    async fn apply(
        &self,
        p: u32,
        name: &str,
        prog: &Progress,
        batch: Vec<jetstream::Message>,
        last_ts: &mut i64,
    ) -> anyhow::Result<()> {
        let applied = prog.applied.load(Ordering::Relaxed);
        let mut series: Vec<TimeSeries> = Vec::new();
        let mut last_seq = applied;
        let mut n = 0u64;
        for m in &batch {
            let seq = m
                .info()
                .map_err(|e| anyhow::anyhow!("message without stream info: {e}"))?
                .stream_sequence;
            if seq <= last_seq {
                continue; // applied already (a recreated consumer)
            }
            last_seq = seq;
            n += 1;
            let raw = match snap::raw::Decoder::new().decompress_vec(&m.payload) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(partition = p, seq, error = %e, "cluster: a log message is not snappy; skipped");
                    continue;
                }
            };
            match WriteRequest::decode(raw.as_slice()) {
                Ok(req) => series.extend(req.timeseries),
                Err(e) => {
                    tracing::error!(partition = p, seq, error = %e, "cluster: a log message does not decode; skipped")
                }
            }
        }
        if last_seq == applied {
            return Ok(());
        }
        let samples: u64 = series
            .iter()
            .map(|s| (s.samples.len() + s.histograms.len()) as u64)
            .sum();
        let ts = now_ms().max(*last_ts + 1);
        series.push(TimeSeries {
            labels: vec![
                Label::new("__name__", POSITION_METRIC),
                Label::new("partition", p.to_string()),
                Label::new("stream", name),
            ],
            samples: vec![Sample {
                value: last_seq as f64,
                timestamp: ts,
            }],
            ..Default::default()
        });
        if let Some(d) = crate::failpoint::delay("cluster.apply.delay") {
            tokio::time::sleep(d).await;
        }
        crate::failpoint::check("cluster.apply")?;
        match self.db.write(&series).await {
            Ok(summary) => {
                if summary.rejected > 1 {
                    tracing::debug!(partition = p, rejected = summary.rejected, errors = ?summary.errors, "cluster: samples refused while applying the log");
                }
            }
            Err(e) => {
                self.stats.apply_failures.fetch_add(1, Ordering::Relaxed);
                anyhow::bail!("cannot apply to the TSDB: {e}");
            }
        }
        *last_ts = ts;
        prog.applied.store(last_seq, Ordering::Relaxed);
        self.stats.applied_messages.fetch_add(n, Ordering::Relaxed);
        self.stats
            .applied_samples
            .fetch_add(samples, Ordering::Relaxed);
        Ok(())
    }

    /// Whether this node owns what it should and has caught up; else why not.
    pub fn readiness(&self) -> Result<(), String> {
        let st = self.state.lock();
        if st.leaving {
            return Err("cluster: leaving (handing its partitions over before it stops)".into());
        }
        let Some(first) = st.first_round else {
            return Err("cluster: joining (no lease round yet)".into());
        };
        let limit = self
            .cfg
            .lease_ttl
            .get()
            .saturating_sub(self.cfg.lease_renew.get());
        match st.last_contact {
            Some(t) if t.elapsed() <= limit => {}
            Some(t) => {
                return Err(format!(
                    "cluster: no contact with NATS for {}s (over lease_ttl - lease_renew): leases given up, serving no partition until NATS answers again",
                    t.elapsed().as_secs()
                ))
            }
            None => return Err("cluster: NATS has not taken this node's heartbeat yet".into()),
        }
        let mut behind = Vec::new();
        for (p, h) in &st.held {
            if !h.progress.ready.load(Ordering::Relaxed) {
                behind.push(*p);
            }
        }
        if !behind.is_empty() {
            behind.sort_unstable();
            return Err(format!("cluster: catching up on partitions {behind:?}"));
        }
        let mut gaps: Vec<(u32, u64)> = st
            .held
            .iter()
            .map(|(p, h)| (*p, h.progress.gap.load(Ordering::Relaxed)))
            .filter(|(_, g)| *g > 0)
            .collect();
        if !gaps.is_empty() {
            gaps.sort_unstable();
            return Err(format!(
                "cluster: incomplete copy: (partition, messages lost) {gaps:?} left the log (stream_max_age) before this collector applied them; stop it, remove its data directory and start it again (see the log)"
            ));
        }
        let missing: Vec<u32> = st
            .desired
            .iter()
            .filter(|p| !st.held.contains_key(p))
            .copied()
            .collect();
        // Give the previous holders' leases time to expire before becoming ready
        // without them (they may belong to a node that is gone for good).
        if !missing.is_empty() && first.elapsed() < self.cfg.lease_ttl.get() * 3 {
            return Err(format!(
                "cluster: waiting for leases on partitions {missing:?}"
            ));
        }
        Ok(())
    }

    /// Owners to ask for each partition, best first: this node when it serves the
    /// partition, then the other holders whose lease said ready, then the holders of a
    /// live lease not known ready yet (the view is up to one `lease_renew` old, and an
    /// owner answers only for what it serves on its own clock, [`Node::serves`], so
    /// asking one that has not caught up yields "not served", never a short answer).
    pub fn owners(&self) -> Vec<Vec<Owner>> {
        let st = self.state.lock();
        let now = now_ms();
        let me = &self.cfg.node_id;
        (0..self.gen.partitions as usize)
            .map(|p| {
                let mut v: Vec<Owner> = Vec::new();
                if let Some(h) = st.held.get(&(p as u32)) {
                    if h.progress.complete() {
                        v.push(Owner {
                            node: me.clone(),
                            url: self.cfg.advertise_url.clone(),
                            ready: true,
                        });
                    }
                }
                let others = st
                    .view
                    .get(p)
                    .into_iter()
                    .flatten()
                    .filter(|l| &l.node != me && l.live(now));
                let (ready, unready): (Vec<&Lease>, Vec<&Lease>) = others.partition(|l| l.ready);
                for (l, r) in ready
                    .into_iter()
                    .map(|l| (l, true))
                    .chain(unready.into_iter().map(|l| (l, false)))
                {
                    if !v.iter().any(|o| o.node == l.node) {
                        v.push(Owner {
                            node: l.node.clone(),
                            url: l.url.clone(),
                            ready: r,
                        });
                    }
                }
                v
            })
            .collect()
    }

    /// A clean stop: leaves the membership (no heartbeat, so the other collectors pick
    /// the successors of this one's partitions), keeps consuming and answering while
    /// they catch up, releases each partition once its preferred owners are ready
    /// (make-before-break, as in a rebalance), and gives up waiting after `max_wait`,
    /// releasing what it still holds. `/readyz` answers 503 ("leaving") meanwhile, so
    /// a proxy stops sending it requests. Returns the partitions released unhanded.
    pub async fn leave(self: &Arc<Self>, max_wait: Duration) -> Vec<u32> {
        let held = {
            let mut st = self.state.lock();
            st.leaving = true;
            st.held.len()
        };
        tracing::info!(
            partitions = held,
            "cluster: leaving; handing the partitions over before stopping"
        );
        let _ = self.kv.delete(lease::node_key(&self.cfg.node_id)).await;
        let started = Instant::now();
        while started.elapsed() < max_wait && !self.state.lock().held.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let left: Vec<(u32, u32, u64)> = self
            .state
            .lock()
            .held
            .iter()
            .map(|(p, h)| (*p, h.slot, h.revision))
            .collect();
        for (p, slot, rev) in &left {
            let key = lease::lease_key(self.gen.generation, *p, *slot);
            let _ = lease::cas(&self.kv, &key, &released_lease(), Some(*rev)).await;
            self.drop_partition(*p, true).await;
        }
        let mut unhanded: Vec<u32> = left.iter().map(|l| l.0).collect();
        unhanded.sort_unstable();
        if unhanded.is_empty() {
            tracing::info!(took = ?started.elapsed(), "cluster: every partition handed over");
        } else {
            tracing::warn!(partitions = ?unhanded, waited = ?max_wait, "cluster: stopping before these partitions had a ready successor; their other owner serves them");
        }
        unhanded
    }

    /// Whether this node holds a ready lease on `p` now (its own clock).
    pub fn serves(&self, p: u32) -> bool {
        let limit = self
            .cfg
            .lease_ttl
            .get()
            .saturating_sub(self.cfg.lease_renew.get());
        let st = self.state.lock();
        // Out of touch with NATS (no heartbeat taken) past the same limit: serve
        // nothing, even a lease renewed a moment after the last heartbeat.
        let in_touch = st.last_contact.is_some_and(|t| t.elapsed() <= limit);
        in_touch
            && st
                .held
                .get(&p)
                .is_some_and(|h| h.progress.complete() && h.renewed.elapsed() <= limit)
    }

    /// The stream sequence applied to partition `p` when this node serves it now
    /// ([`Node::serves`]), else `None`.
    pub fn applied_if_served(&self, p: u32) -> Option<u64> {
        if !self.serves(p) {
            return None;
        }
        let st = self.state.lock();
        st.held
            .get(&p)
            .map(|h| h.progress.applied.load(Ordering::Relaxed))
    }

    /// `GET /api/calm/v1/cluster`: nodes, partitions, owners, lag.
    pub fn status(&self) -> Value {
        let ready = self.readiness().is_ok();
        let st = self.state.lock();
        let now = now_ms();
        let nodes: Vec<Value> = st
            .nodes
            .iter()
            .map(|n| json!({"node": n.node, "url": n.url, "heartbeat_ms": n.heartbeat_ms}))
            .collect();
        let mut parts = Vec::new();
        for p in 0..self.gen.partitions {
            let owners: Vec<Value> = st
                .view
                .get(p as usize)
                .into_iter()
                .flatten()
                .map(|l| json!({"node": l.node, "url": l.url, "ready": l.ready, "applied": l.applied, "since_ms": l.since_ms, "expires_ms": l.expires_ms}))
                .collect();
            let mine = st.held.get(&p).map(|h| {
                let applied = h.progress.applied.load(Ordering::Relaxed);
                let last = h.progress.last.load(Ordering::Relaxed);
                json!({"applied": applied, "stream_last": last, "lag": last.saturating_sub(applied), "ready": h.progress.ready.load(Ordering::Relaxed), "gap": h.progress.gap.load(Ordering::Relaxed)})
            });
            let ids: Vec<String> = st.nodes.iter().map(|n| n.node.clone()).collect();
            let preferred = lease::preferred(
                &ids,
                self.gen.generation,
                p,
                self.cfg.owners_per_partition as usize,
            );
            parts.push(json!({
                "partition": p,
                "preferred": preferred,
                "stream": stream_name(self.gen.generation, p),
                "owners": owners,
                "ready_owners": owners.iter().filter(|o| o["ready"] == true && o["expires_ms"].as_i64().unwrap_or(0) > now).count(),
                "this_node": mine,
            }));
        }
        json!({
            "node": self.cfg.node_id,
            "url": self.cfg.advertise_url,
            "generation": self.gen.generation,
            "partitions_count": self.gen.partitions,
            "owners_per_partition": self.cfg.owners_per_partition,
            "ready": ready,
            "nodes": nodes,
            "partitions": parts,
        })
    }

    /// This node's per-partition lag, for `/metrics`.
    fn lags(&self) -> BTreeMap<u32, (u64, u64)> {
        self.state
            .lock()
            .held
            .iter()
            .map(|(p, h)| {
                let a = h.progress.applied.load(Ordering::Relaxed);
                let l = h.progress.last.load(Ordering::Relaxed);
                (
                    *p,
                    (l.saturating_sub(a), h.progress.gap.load(Ordering::Relaxed)),
                )
            })
            .collect()
    }
}

/// The cluster's self-metrics (`/metrics`).
#[derive(Debug)]
pub struct ClusterCollector {
    pub node: Arc<Node>,
    pub log: Arc<super::log::LogStats>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("node_id", &self.cfg.node_id)
            .finish()
    }
}

impl prometheus_client::collector::Collector for ClusterCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let s = &self.node.stats;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let lags = self.node.lags();
        gauge(
            &mut enc,
            "calm_cluster_partitions_owned",
            "Partitions this collector holds a lease on.",
            lags.len() as f64,
        )?;
        gauge(
            &mut enc,
            "calm_cluster_lag_messages",
            "Messages in the owned partitions' streams not yet applied here (sum over partitions).",
            lags.values().map(|v| v.0).sum::<u64>() as f64,
        )?;
        gauge(&mut enc, "calm_cluster_partition_gap_messages", "Messages that left the log (stream_max_age) before this owner applied them; above 0 this copy is incomplete (see the log for what to do).", lags.values().map(|v| v.1).sum::<u64>() as f64)?;
        gauge(
            &mut enc,
            "calm_cluster_ready",
            "1 when this collector owns its partitions and has caught up (/readyz).",
            if self.node.readiness().is_ok() {
                1.0
            } else {
                0.0
            },
        )?;
        counter(
            &mut enc,
            "calm_cluster_applied_messages",
            "Log messages applied to the local TSDB (the replay rate is its rate).",
            l(&s.applied_messages),
        )?;
        counter(
            &mut enc,
            "calm_cluster_applied_samples",
            "Samples in the log messages applied.",
            l(&s.applied_samples),
        )?;
        counter(
            &mut enc,
            "calm_cluster_lease_changes",
            "Partition leases taken, released or lost by this collector.",
            l(&s.lease_changes),
        )?;
        counter(
            &mut enc,
            "calm_cluster_lease_renew_failures",
            "Lease renewals that failed.",
            l(&s.lease_renew_failures),
        )?;
        counter(
            &mut enc,
            "calm_cluster_consumer_restarts",
            "Partition consumers recreated (errors, stalls caught by the watchdog).",
            l(&s.consumer_restarts),
        )?;
        counter(
            &mut enc,
            "calm_cluster_apply_failures",
            "Batches of log messages the local TSDB refused to store (retried).",
            l(&s.apply_failures),
        )?;
        counter(
            &mut enc,
            "calm_rule_read_after_write_waits",
            "Rule group rounds that waited for an owner to apply the log up to where it stood when the round began.",
            l(&s.rule_waits),
        )?;
        counter(
            &mut enc,
            "calm_rule_read_after_write_timeouts",
            "Rule group rounds evaluated before every owner read had applied the log up to the round's start ([cluster] rule_read_after_write_wait passed).",
            l(&s.rule_wait_timeouts),
        )?;
        counter(&mut enc, "calm_cluster_partial_answers", "Reads answered without some partition (no ready owner): with a warning, or 503 when strict.", l(&s.partial_answers))?;
        counter(
            &mut enc,
            "calm_cluster_published_messages",
            "Messages the metrics log acknowledged.",
            l(&self.log.published),
        )?;
        counter(
            &mut enc,
            "calm_cluster_published_samples",
            "Samples in acknowledged messages.",
            l(&self.log.samples),
        )?;
        counter(
            &mut enc,
            "calm_cluster_publish_failures",
            "Publishes that failed or timed out (the write got 503).",
            l(&self.log.failures),
        )?;
        counter(
            &mut enc,
            "calm_cluster_publish_duplicates",
            "Publishes the log recognised as duplicates (Nats-Msg-Id) of a retried write.",
            l(&self.log.duplicates),
        )?;
        Ok(())
    }
}
