//! [`PgEventStore`]: the [`EventStore`] on PostgreSQL (see `mod.rs` for the tables).
//! The issue rules are the shared ones (`errors/issue.rs`); this file only loads the
//! rows a batch touches, applies the rules in memory in event order, and writes each
//! changed row back once per batch.

use super::{client, db_error, ensure_partition};
use crate::errors::issue::{self, IssueRules};
use crate::storage::events::{
    BulkStatus, EventPage, EventStore, Ingested, Issue, IssuePage, IssueQuery, IssueSort,
    IssueStatus, NewEvent, StoreFuture, TagCounts, TagValueCount, OTHER_TAG_KEY, OTHER_TAG_VALUE,
    OVERFLOW_ENVIRONMENT, OVERFLOW_HASH,
};
use crate::storage::{ErrorKind, StorageError};
use deadpool_postgres::{Pool, Transaction};
use parking_lot::Mutex;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Most events applied in one transaction.
const MAX_BATCH: usize = 512;
/// Tries of a batch that lost a race with another collector (deadlock, duplicate id).
const TRIES: usize = 4;
/// One hour: the bucket of `calm_issue_counts`.
const HOUR_MS: i64 = 3_600_000;

/// Bounds of the PostgreSQL event store (the same as the sled store's).
#[derive(Debug, Clone, Copy)]
pub struct PgOptions {
    /// The issue rules' bounds.
    pub rules: IssueRules,
    /// Most events waiting for the writer; beyond it `ingest` answers 429.
    pub queue_events: usize,
    /// Most environments per project.
    pub max_environments_per_project: u64,
    /// Most tag keys counted per issue.
    pub max_tag_keys_per_issue: u64,
    /// Most values counted per tag key of an issue.
    pub max_tag_values_per_key: u64,
    /// Longest a batch may take before its events are answered 503.
    pub write_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        let d = crate::errors::sled_store::SledOptions::default();
        PgOptions {
            rules: d.rules(),
            queue_events: d.queue_events,
            max_environments_per_project: d.max_environments_per_project,
            max_tag_keys_per_issue: d.max_tag_keys_per_issue,
            max_tag_values_per_key: d.max_tag_values_per_key,
            write_timeout: Duration::from_secs(15),
        }
    }
}

struct Job {
    event: NewEvent,
    reply: oneshot::Sender<Result<Ingested, StorageError>>,
}

/// The PostgreSQL event store: a pool, and a writer task fed by a bounded queue.
pub struct PgEventStore {
    pool: Pool,
    queue: mpsc::Sender<Job>,
}

impl PgEventStore {
    /// The store on `pool` (migrated: [`super::migrate`]); starts its writer on the
    /// current runtime.
    pub fn new(pool: Pool, opts: PgOptions) -> PgEventStore {
        let (tx, rx) = mpsc::channel(opts.queue_events.max(1));
        let w = Writer {
            pool: pool.clone(),
            opts,
            partitions: Mutex::new(HashSet::new()),
        };
        tokio::spawn(w.run(rx));
        PgEventStore { pool, queue: tx }
    }
}

struct Writer {
    pool: Pool,
    opts: PgOptions,
    /// Days whose partition is known to exist.
    partitions: Mutex<HashSet<i64>>,
}

fn retryable(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code().map(|c| c.code()),
        Some("40001") | Some("40P01") | Some("23505")
    )
}

impl Writer {
    async fn run(self, mut rx: mpsc::Receiver<Job>) {
        let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = rx.recv().await {
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(j) => batch.push(j),
                    Err(_) => break,
                }
            }
            let events: Vec<&NewEvent> = batch.iter().map(|j| &j.event).collect();
            let result =
                match tokio::time::timeout(self.opts.write_timeout, self.write(&events)).await {
                    Ok(r) => r,
                    Err(_) => Err(StorageError::new(
                        ErrorKind::Unavailable,
                        "PostgreSQL did not finish the write in time; retry shortly",
                    )),
                };
            if let Err(e) = &result {
                tracing::warn!(error = %e, events = batch.len(), "event batch not written");
            }
            for (i, job) in batch.drain(..).enumerate() {
                let r = match &result {
                    Ok(list) => Ok(list[i].clone()),
                    Err(e) => Err(e.clone()),
                };
                let _ = job.reply.send(r);
            }
        }
    }

    async fn write(&self, events: &[&NewEvent]) -> Result<Vec<Ingested>, StorageError> {
        let days: HashSet<i64> = events
            .iter()
            .map(|e| e.received_ms.div_euclid(super::DAY_MS))
            .collect();
        for d in days {
            if !self.partitions.lock().contains(&d) {
                ensure_partition(&self.pool, d * super::DAY_MS).await?;
                self.partitions.lock().insert(d);
            }
        }
        let mut c = client(&self.pool).await?;
        let mut tries = 0;
        loop {
            tries += 1;
            let tx = c.transaction().await.map_err(db_error)?;
            let res = Batch::new(&self.opts, &tx).apply(events).await;
            let res = match res {
                Ok(out) => tx.commit().await.map(|_| out),
                Err(e) => Err(e),
            };
            match res {
                Ok(out) => return Ok(out),
                Err(e) if retryable(&e) && tries < TRIES => {
                    tracing::debug!(error = %e, "event batch raced another writer; retrying");
                }
                Err(e) => return Err(db_error(e)),
            }
        }
    }
}

/// What one batch holds of an issue.
struct IssueRow {
    issue: Issue,
    dirty: bool,
    /// Tag keys with their values counted (all of the issue's).
    keys: HashMap<String, i64>,
    keys_loaded: bool,
    dirty_keys: HashSet<String>,
}

type PgResult<T> = Result<T, tokio_postgres::Error>;

/// One batch's state: what it loaded and what it will write.
struct Batch<'a, 't> {
    opts: &'a PgOptions,
    tx: &'a Transaction<'t>,
    issues: HashMap<(i64, String), IssueRow>,
    by_id: HashMap<i64, (i64, String)>,
    issue_counts: HashMap<i64, i64>,
    envs: HashMap<i64, HashSet<String>>,
    new_envs: Vec<(i64, String)>,
    series: HashMap<(i64, String, String), (u64, i64)>,
    buckets: HashMap<(i64, i64), i64>,
    tags: HashMap<(i64, String, String), (i64, i64, i64)>,
    tags_loaded: HashSet<(i64, String)>,
    dirty_tags: HashSet<(i64, String, String)>,
    bodies: Vec<(i64, i64, i64, Vec<u8>)>,
    evict: Vec<(i64, i64)>,
    event_ids: Vec<(i64, String, i64, i64)>,
}

fn decode(v: Value) -> Result<Issue, String> {
    serde_json::from_value(v).map_err(|e| format!("issue record: {e}"))
}

impl<'a, 't> Batch<'a, 't> {
    fn new(opts: &'a PgOptions, tx: &'a Transaction<'t>) -> Self {
        Batch {
            opts,
            tx,
            issues: HashMap::new(),
            by_id: HashMap::new(),
            issue_counts: HashMap::new(),
            envs: HashMap::new(),
            new_envs: Vec::new(),
            series: HashMap::new(),
            buckets: HashMap::new(),
            tags: HashMap::new(),
            tags_loaded: HashSet::new(),
            dirty_tags: HashSet::new(),
            bodies: Vec::new(),
            evict: Vec::new(),
            event_ids: Vec::new(),
        }
    }

    async fn apply(mut self, events: &[&NewEvent]) -> PgResult<Vec<Ingested>> {
        // 1. Event ids seen before (by any collector).
        let (pids, eids): (Vec<i64>, Vec<String>) = events
            .iter()
            .map(|e| (e.project_id as i64, e.event_id.clone()))
            .unzip();
        let mut seen: HashMap<(i64, String), i64> = HashMap::new();
        for r in self
            .tx
            .query(
                "SELECT e.project_id, e.event_id, e.issue_id FROM calm_event_ids e
                   JOIN unnest($1::bigint[], $2::text[]) AS k(p, i)
                     ON e.project_id = k.p AND e.event_id = k.i",
                &[&pids, &eids],
            )
            .await?
        {
            seen.insert((r.get(0), r.get(1)), r.get(2));
        }
        // 2. Lock the batch's existing issues in one fixed order (no deadlock between
        //    collectors taking the same issues).
        let mut keys: Vec<(i64, String)> = events
            .iter()
            .map(|e| (e.project_id as i64, e.hash.clone()))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        keys.sort();
        let (kp, kh): (Vec<i64>, Vec<String>) = keys.into_iter().unzip();
        for r in self
            .tx
            .query(
                "SELECT i.id, i.project_id, i.hash, i.data FROM calm_issues i
                   JOIN unnest($1::bigint[], $2::text[]) AS k(p, h)
                     ON i.project_id = k.p AND i.hash = k.h
                  ORDER BY i.project_id, i.hash FOR UPDATE OF i",
                &[&kp, &kh],
            )
            .await?
        {
            let (id, p, h, data): (i64, i64, String, Value) =
                (r.get(0), r.get(1), r.get(2), r.get(3));
            let mut issue = match decode(data) {
                Ok(i) => i,
                Err(e) => {
                    tracing::error!(issue = id, error = %e, "damaged issue record; starting it again");
                    continue;
                }
            };
            issue.id = id as u64;
            self.by_id.insert(id, (p, h.clone()));
            self.issues.insert(
                (p, h),
                IssueRow {
                    issue,
                    dirty: false,
                    keys: HashMap::new(),
                    keys_loaded: false,
                    dirty_keys: HashSet::new(),
                },
            );
        }
        // 3. Resolve each event: duplicate, environment, issue (created if new).
        struct Resolved {
            ev: NewEvent,
            key: (i64, String),
            new_issue: bool,
            overflow_issue: bool,
            overflow_environment: bool,
        }
        let mut plan: Vec<Result<Resolved, Ingested>> = Vec::with_capacity(events.len());
        let mut in_batch: HashSet<(i64, String)> = HashSet::new();
        for ev in events {
            let eid = (ev.project_id as i64, ev.event_id.clone());
            if let Some(issue_id) = seen.get(&eid) {
                plan.push(Err(Ingested::duplicate(*issue_id as u64)));
                continue;
            }
            if in_batch.contains(&eid) {
                // Its issue id is known once the first one is applied: set below.
                plan.push(Err(Ingested::duplicate(0)));
                continue;
            }
            let p = ev.project_id as i64;
            let (ev, overflow_environment) = self.environment(p, ev).await?;
            let (key, new_issue, overflow_issue) = self.issue_for(p, &ev).await?;
            in_batch.insert(eid);
            plan.push(Ok(Resolved {
                ev,
                key,
                new_issue,
                overflow_issue,
                overflow_environment,
            }));
        }
        // 4. New users of the batch (one statement).
        let mut pairs: (Vec<i64>, Vec<String>) = (Vec::new(), Vec::new());
        for r in plan.iter().flatten() {
            if let Some(u) = &r.ev.user_key {
                pairs.0.push(self.issues[&r.key].issue.id as i64);
                pairs.1.push(u.clone());
            }
        }
        let mut new_users: HashSet<(i64, String)> = HashSet::new();
        if !pairs.0.is_empty() {
            for r in self
                .tx
                .query(
                    "INSERT INTO calm_issue_users (issue_id, user_key)
                     SELECT * FROM unnest($1::bigint[], $2::text[])
                     ON CONFLICT DO NOTHING RETURNING issue_id, user_key",
                    &[&pairs.0, &pairs.1],
                )
                .await?
            {
                new_users.insert((r.get(0), r.get(1)));
            }
        }
        // 5. Apply the rules in event order.
        let rules = self.opts.rules;
        let mut out = Vec::with_capacity(plan.len());
        let mut first_of: HashMap<(i64, String), u64> = HashMap::new();
        let mut created_applied: HashSet<(i64, String)> = HashSet::new();
        for (ev, step) in events.iter().zip(plan) {
            let r = match step {
                Err(mut dup) => {
                    if dup.issue_id == 0 {
                        dup.issue_id = first_of
                            .get(&(ev.project_id as i64, ev.event_id.clone()))
                            .copied()
                            .unwrap_or(0);
                    }
                    out.push(dup);
                    continue;
                }
                Ok(r) => r,
            };
            let first_event_of_new = r.new_issue && created_applied.insert(r.key.clone());
            let row = self
                .issues
                .get_mut(&r.key)
                .expect("resolved issues are loaded");
            let id = row.issue.id as i64;
            let new_user =
                r.ev.user_key
                    .as_ref()
                    .is_some_and(|u| new_users.remove(&(id, u.clone())));
            let applied = issue::apply(
                &mut row.issue,
                &r.ev,
                first_event_of_new,
                r.overflow_issue,
                new_user,
                &rules,
            );
            row.dirty = true;
            let body_stored = applied.body.is_some();
            if let Some((seq, body)) = applied.body {
                self.bodies.push((id, seq as i64, r.ev.received_ms, body));
            }
            if let Some(old) = applied.evict {
                let old = old as i64;
                // Evicting a body written by this same batch: drop it before it is written.
                if let Some(pos) = self.bodies.iter().position(|b| b.0 == id && b.1 == old) {
                    self.bodies.remove(pos);
                } else {
                    self.evict.push((id, old));
                }
            }
            self.event_ids.push((
                r.ev.project_id as i64,
                r.ev.event_id.clone(),
                id,
                r.ev.received_ms,
            ));
            first_of.insert((r.ev.project_id as i64, r.ev.event_id.clone()), id as u64);
            let (count, ts) = self.bump_series(id, &r.ev).await?;
            *self
                .buckets
                .entry((id, r.ev.received_ms.div_euclid(HOUR_MS) * HOUR_MS))
                .or_default() += 1;
            self.count_tags(&r.key, &r.ev).await?;
            out.push(Ingested {
                issue_id: id as u64,
                duplicate: false,
                new_issue: first_event_of_new,
                regressed: applied.regressed,
                series_count: count,
                series_ts_ms: ts,
                body_stored,
                overflow_issue: r.overflow_issue,
                overflow_environment: r.overflow_environment,
            });
        }
        self.flush().await?;
        Ok(out)
    }

    /// The event with its environment as counted: a new environment beyond the
    /// project's limit counts as [`OVERFLOW_ENVIRONMENT`].
    async fn environment(&mut self, p: i64, ev: &NewEvent) -> PgResult<(NewEvent, bool)> {
        let Some(env) = ev
            .environment
            .as_deref()
            .filter(|e| *e != OVERFLOW_ENVIRONMENT)
        else {
            return Ok(((*ev).clone(), false));
        };
        if !self.envs.contains_key(&p) {
            let rows = self
                .tx
                .query(
                    "SELECT name FROM calm_project_environments WHERE project_id = $1",
                    &[&p],
                )
                .await?;
            self.envs
                .insert(p, rows.iter().map(|r| r.get::<_, String>(0)).collect());
        }
        let known = self.envs.get_mut(&p).expect("loaded above");
        if known.contains(env) {
            return Ok(((*ev).clone(), false));
        }
        if (known.len() as u64) < self.opts.max_environments_per_project {
            known.insert(env.to_string());
            self.new_envs.push((p, env.to_string()));
            return Ok(((*ev).clone(), false));
        }
        Ok((
            NewEvent {
                environment: Some(OVERFLOW_ENVIRONMENT.to_string()),
                ..(*ev).clone()
            },
            true,
        ))
    }

    /// The issue `ev` counts into (loaded and locked; created if new): its key, whether
    /// this batch created it, whether it is the project's overflow issue.
    async fn issue_for(&mut self, p: i64, ev: &NewEvent) -> PgResult<((i64, String), bool, bool)> {
        let key = (p, ev.hash.clone());
        if self.issues.contains_key(&key) {
            return Ok((key, false, ev.hash == OVERFLOW_HASH));
        }
        let n = match self.issue_counts.get(&p) {
            Some(n) => *n,
            None => {
                let n: i64 = self
                    .tx
                    .query_one(
                        "SELECT count(*) FROM calm_issues WHERE project_id = $1 AND hash <> $2",
                        &[&p, &OVERFLOW_HASH],
                    )
                    .await?
                    .get(0);
                self.issue_counts.insert(p, n);
                n
            }
        };
        let (key, overflow) = if n as u64 >= self.opts.rules.max_issues_per_project {
            ((p, OVERFLOW_HASH.to_string()), true)
        } else {
            (key, false)
        };
        if self.issues.contains_key(&key) {
            return Ok((key, false, overflow));
        }
        // The overflow issue (not locked above: most batches never touch it), or an issue
        // created by another collector since the lock above: lock and load it.
        if let Some(r) = self
            .tx
            .query_opt(
                "SELECT id, data FROM calm_issues WHERE project_id = $1 AND hash = $2 FOR UPDATE",
                &[&p, &key.1],
            )
            .await?
        {
            let mut i = decode(r.get(1)).unwrap_or_else(|_| issue::new_issue(ev, 0));
            i.id = r.get::<_, i64>(0) as u64;
            self.by_id.insert(i.id as i64, key.clone());
            self.issues.insert(
                key.clone(),
                IssueRow {
                    issue: i,
                    dirty: false,
                    keys: HashMap::new(),
                    keys_loaded: false,
                    dirty_keys: HashSet::new(),
                },
            );
            return Ok((key, false, overflow));
        }
        let row = self
            .tx
            .query_opt(
                "INSERT INTO calm_issues (project_id, hash, status, first_seen_ms, last_seen_ms, count, data)
                 VALUES ($1, $2, 'unresolved', $3, $3, 0, '{}'::jsonb)
                 ON CONFLICT (project_id, hash) DO NOTHING RETURNING id",
                &[&p, &key.1, &ev.timestamp_ms],
            )
            .await?;
        let created = row.is_some();
        let issue = match row {
            Some(r) => {
                if !overflow {
                    *self.issue_counts.entry(p).or_default() += 1;
                }
                issue::new_issue(ev, r.get::<_, i64>(0) as u64)
            }
            None => {
                let r = self
                    .tx
                    .query_one(
                        "SELECT id, data FROM calm_issues WHERE project_id = $1 AND hash = $2 FOR UPDATE",
                        &[&p, &key.1],
                    )
                    .await?;
                let mut i = decode(r.get(1)).unwrap_or_else(|_| issue::new_issue(ev, 0));
                i.id = r.get::<_, i64>(0) as u64;
                i
            }
        };
        self.by_id.insert(issue.id as i64, key.clone());
        self.issues.insert(
            key.clone(),
            IssueRow {
                issue,
                dirty: true,
                keys: HashMap::new(),
                keys_loaded: created,
                dirty_keys: HashSet::new(),
            },
        );
        Ok((key, created, overflow))
    }

    async fn bump_series(&mut self, id: i64, ev: &NewEvent) -> PgResult<(u64, i64)> {
        let k = (
            id,
            ev.level.clone(),
            ev.environment.clone().unwrap_or_default(),
        );
        let prev = match self.series.get(&k) {
            Some(v) => Some(*v),
            None => self
                .tx
                .query_opt(
                    "SELECT count, last_ts_ms FROM calm_issue_series
                      WHERE issue_id = $1 AND level = $2 AND environment = $3",
                    &[&k.0, &k.1, &k.2],
                )
                .await?
                .map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, i64>(1))),
        };
        let next = issue::next_series_point(prev, ev.received_ms);
        self.series.insert(k, next);
        Ok(next)
    }

    /// [`issue::event_tags`] counted into the issue's tag values, keys and values
    /// bounded exactly as the sled store does.
    async fn count_tags(&mut self, key: &(i64, String), ev: &NewEvent) -> PgResult<()> {
        let tags = issue::event_tags(ev);
        let (id, need_keys) = {
            let row = &self.issues[key];
            (row.issue.id as i64, !row.keys_loaded)
        };
        if need_keys {
            let rows = self
                .tx
                .query(
                    "SELECT key, values_count FROM calm_issue_tag_keys WHERE issue_id = $1",
                    &[&id],
                )
                .await?;
            let row = self.issues.get_mut(key).expect("loaded");
            row.keys = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
            row.keys_loaded = true;
        }
        // The values of the keys this event names (and the overflow key), once a batch.
        let want: Vec<String> = tags
            .iter()
            .map(|(k, _)| k.clone())
            .chain(std::iter::once(OTHER_TAG_KEY.to_string()))
            .filter(|k| !self.tags_loaded.contains(&(id, k.clone())))
            .collect();
        if !want.is_empty() {
            for r in self
                .tx
                .query(
                    "SELECT key, value, count, first_seen_ms, last_seen_ms FROM calm_issue_tags
                      WHERE issue_id = $1 AND key = ANY($2)",
                    &[&id, &want],
                )
                .await?
            {
                self.tags
                    .entry((id, r.get(0), r.get(1)))
                    .or_insert((r.get(2), r.get(3), r.get(4)));
            }
            for k in want {
                self.tags_loaded.insert((id, k));
            }
        }
        let o = self.opts;
        let row = self.issues.get_mut(key).expect("loaded");
        for (tkey, value) in tags {
            let (tkey, value) = if tkey == OTHER_TAG_KEY || row.keys.contains_key(&tkey) {
                (tkey, value)
            } else {
                let n = row.keys.keys().filter(|k| *k != OTHER_TAG_KEY).count() as u64;
                if n >= o.max_tag_keys_per_issue {
                    (OTHER_TAG_KEY.to_string(), tkey)
                } else {
                    row.keys.insert(tkey.clone(), 0);
                    row.dirty_keys.insert(tkey.clone());
                    (tkey, value)
                }
            };
            let mut rec = (id, tkey.clone(), value.clone());
            if !self.tags.contains_key(&rec) && value != OTHER_TAG_VALUE {
                let n = row.keys.get(&tkey).copied().unwrap_or(0);
                if n as u64 >= o.max_tag_values_per_key {
                    rec = (id, tkey.clone(), OTHER_TAG_VALUE.to_string());
                } else {
                    row.keys.insert(tkey.clone(), n + 1);
                    row.dirty_keys.insert(tkey.clone());
                }
            }
            let t = ev.timestamp_ms;
            let e = self.tags.entry(rec.clone()).or_insert((0, t, t));
            e.0 += 1;
            e.1 = e.1.min(t);
            e.2 = e.2.max(t);
            self.dirty_tags.insert(rec);
        }
        Ok(())
    }

    /// Writes back what the batch changed, one statement a table.
    async fn flush(self) -> PgResult<()> {
        let tx = self.tx;
        for row in self.issues.values().filter(|r| r.dirty) {
            let i = &row.issue;
            let data = serde_json::to_value(i).unwrap_or(Value::Null);
            tx.execute(
                "UPDATE calm_issues SET status = $2, first_seen_ms = $3, last_seen_ms = $4,
                        count = $5, data = $6, hash = $7 WHERE id = $1",
                &[
                    &(i.id as i64),
                    &status_name(i.status),
                    &i.first_seen_ms,
                    &i.last_seen_ms,
                    &(i.count.min(i64::MAX as u64) as i64),
                    &data,
                    &i.hash,
                ],
            )
            .await?;
        }
        if !self.new_envs.is_empty() {
            let (p, n): (Vec<i64>, Vec<String>) = self.new_envs.into_iter().unzip();
            tx.execute(
                "INSERT INTO calm_project_environments SELECT * FROM unnest($1::bigint[], $2::text[])
                 ON CONFLICT DO NOTHING",
                &[&p, &n],
            )
            .await?;
        }
        if !self.event_ids.is_empty() {
            let mut cols = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for (p, e, i, r) in self.event_ids {
                cols.0.push(p);
                cols.1.push(e);
                cols.2.push(i);
                cols.3.push(r);
            }
            // A plain insert: an id committed meanwhile by another collector fails the
            // batch (unique violation), which is retried and then finds it.
            tx.execute(
                "INSERT INTO calm_event_ids SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[])",
                &[&cols.0, &cols.1, &cols.2, &cols.3],
            )
            .await?;
        }
        if !self.evict.is_empty() {
            let (i, s): (Vec<i64>, Vec<i64>) = self.evict.into_iter().unzip();
            tx.execute(
                "DELETE FROM calm_events e USING unnest($1::bigint[], $2::bigint[]) AS k(i, s)
                  WHERE e.issue_id = k.i AND e.seq = k.s",
                &[&i, &s],
            )
            .await?;
        }
        if !self.bodies.is_empty() {
            let mut cols = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for (i, s, r, b) in self.bodies {
                cols.0.push(i);
                cols.1.push(s);
                cols.2.push(r);
                cols.3.push(b);
            }
            tx.execute(
                "INSERT INTO calm_events SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bytea[])",
                &[&cols.0, &cols.1, &cols.2, &cols.3],
            )
            .await?;
        }
        if !self.series.is_empty() {
            let mut cols = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for ((i, l, e), (c, t)) in self.series {
                cols.0.push(i);
                cols.1.push(l);
                cols.2.push(e);
                cols.3.push(c as i64);
                cols.4.push(t);
            }
            tx.execute(
                "INSERT INTO calm_issue_series
                 SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::bigint[])
                 ON CONFLICT (issue_id, level, environment)
                 DO UPDATE SET count = EXCLUDED.count, last_ts_ms = EXCLUDED.last_ts_ms",
                &[&cols.0, &cols.1, &cols.2, &cols.3, &cols.4],
            )
            .await?;
        }
        if !self.buckets.is_empty() {
            let mut cols = (Vec::new(), Vec::new(), Vec::new());
            for ((i, b), n) in self.buckets {
                cols.0.push(i);
                cols.1.push(b);
                cols.2.push(n);
            }
            tx.execute(
                "INSERT INTO calm_issue_counts SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[])
                 ON CONFLICT (issue_id, bucket_ms) DO UPDATE SET count = calm_issue_counts.count + EXCLUDED.count",
                &[&cols.0, &cols.1, &cols.2],
            )
            .await?;
        }
        let mut kcols = (Vec::new(), Vec::new(), Vec::new());
        for row in self.issues.values() {
            for k in &row.dirty_keys {
                kcols.0.push(row.issue.id as i64);
                kcols.1.push(k.clone());
                kcols.2.push(row.keys.get(k).copied().unwrap_or(0));
            }
        }
        if !kcols.0.is_empty() {
            tx.execute(
                "INSERT INTO calm_issue_tag_keys SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[])
                 ON CONFLICT (issue_id, key) DO UPDATE SET values_count = EXCLUDED.values_count",
                &[&kcols.0, &kcols.1, &kcols.2],
            )
            .await?;
        }
        if !self.dirty_tags.is_empty() {
            let mut cols = (
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
            );
            for rec in self.dirty_tags {
                let (c, f, l) = self.tags[&rec];
                cols.0.push(rec.0);
                cols.1.push(rec.1);
                cols.2.push(rec.2);
                cols.3.push(c);
                cols.4.push(f);
                cols.5.push(l);
            }
            tx.execute(
                "INSERT INTO calm_issue_tags
                 SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[])
                 ON CONFLICT (issue_id, key, value) DO UPDATE SET count = EXCLUDED.count,
                    first_seen_ms = EXCLUDED.first_seen_ms, last_seen_ms = EXCLUDED.last_seen_ms",
                &[&cols.0, &cols.1, &cols.2, &cols.3, &cols.4, &cols.5],
            )
            .await?;
        }
        Ok(())
    }
}

fn status_name(s: IssueStatus) -> &'static str {
    match s {
        IssueStatus::Unresolved => "unresolved",
        IssueStatus::Resolved => "resolved",
        IssueStatus::Ignored => "ignored",
    }
}

fn corrupt(e: String) -> StorageError {
    StorageError::new(ErrorKind::Corrupt, e)
}

fn issue_of(r: &tokio_postgres::Row) -> Result<Issue, StorageError> {
    let mut i = decode(r.get("data")).map_err(corrupt)?;
    i.id = r.get::<_, i64>("id") as u64;
    Ok(i)
}

async fn set_statuses_in(
    pool: &Pool,
    ids: &[u64],
    status: IssueStatus,
    now_ms: i64,
) -> Result<(BulkStatus, Vec<Issue>), StorageError> {
    let mut c = client(pool).await?;
    let tx = c.transaction().await.map_err(db_error)?;
    let mut out = BulkStatus::default();
    let mut changed_issues = Vec::new();
    let mut seen = HashSet::new();
    let mut sorted: Vec<i64> = ids
        .iter()
        .filter(|i| seen.insert(**i))
        .map(|i| *i as i64)
        .collect();
    sorted.sort();
    let rows = tx
        .query(
            "SELECT id, data FROM calm_issues WHERE id = ANY($1) ORDER BY id FOR UPDATE",
            &[&sorted],
        )
        .await
        .map_err(db_error)?;
    let mut found: HashMap<u64, Issue> = HashMap::new();
    for r in &rows {
        let i = issue_of(r)?;
        found.insert(i.id, i);
    }
    let mut seen = HashSet::new();
    for &id in ids.iter().filter(|id| seen.insert(**id)) {
        let Some(mut issue) = found.remove(&id) else {
            out.missing.push(id);
            continue;
        };
        if out.apply(&mut issue, status, now_ms) {
            let data = serde_json::to_value(&issue).unwrap_or(Value::Null);
            tx.execute(
                "UPDATE calm_issues SET status = $2, data = $3 WHERE id = $1",
                &[&(id as i64), &status_name(issue.status), &data],
            )
            .await
            .map_err(db_error)?;
        }
        changed_issues.push(issue);
    }
    tx.commit().await.map_err(db_error)?;
    Ok((out, changed_issues))
}

impl EventStore for PgEventStore {
    fn ingest(&self, event: NewEvent) -> StoreFuture<'_, Ingested> {
        Box::pin(async move {
            let (reply, rx) = oneshot::channel();
            match self.queue.try_send(Job { event, reply }) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    return Err(StorageError::new(
                        ErrorKind::Busy,
                        format!(
                            "the event store is busy: {} events are already waiting to be written; retry shortly",
                            self.queue.max_capacity()
                        ),
                    ))
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    return Err(StorageError::new(ErrorKind::Closed, "the event store is closed"))
                }
            }
            rx.await
                .map_err(|_| StorageError::new(ErrorKind::Closed, "the event store is closed"))?
        })
    }

    fn issues(&self, q: IssueQuery) -> StoreFuture<'_, IssuePage> {
        Box::pin(async move {
            let col = match q.sort {
                IssueSort::LastSeen => "last_seen_ms",
                IssueSort::FirstSeen => "first_seen_ms",
                IssueSort::Count => "count",
            };
            let (ck, cid) = match q.cursor.as_deref().and_then(issue::parse_cursor) {
                Some((k, id)) => (Some(k), Some(id as i64)),
                None => (None, None),
            };
            let project = q.project_id.map(|p| p as i64);
            let status = q.status.map(status_name);
            let text = q.text.as_ref().map(|t| t.to_lowercase());
            let limit = q.limit.min(10_000) as i64 + 1;
            let sql = format!(
                "SELECT id, data FROM calm_issues
                  WHERE ($1::bigint IS NULL OR project_id = $1)
                    AND ($2::text IS NULL OR status = $2)
                    AND ($3::text IS NULL OR data->'environments' ? $3)
                    AND ($4::text IS NULL OR data->'releases' ? $4)
                    AND ($5::text IS NULL OR strpos(lower(data->>'title'), $5) > 0
                         OR strpos(lower(data->>'culprit'), $5) > 0
                         OR strpos(lower((data->'metadata')::text), $5) > 0)
                    AND ($6::bigint IS NULL OR ({col}, id) < ($6, $7::bigint))
                  ORDER BY {col} DESC, id DESC LIMIT $8"
            );
            let c = client(&self.pool).await?;
            let rows = c
                .query(
                    &sql,
                    &[
                        &project,
                        &status,
                        &q.environment,
                        &q.release,
                        &text,
                        &ck,
                        &cid,
                        &limit,
                    ],
                )
                .await
                .map_err(db_error)?;
            let mut issues = Vec::with_capacity(rows.len());
            for r in &rows {
                issues.push(issue_of(r)?);
            }
            let more = issues.len() > q.limit;
            issues.truncate(q.limit);
            let next_cursor = match (more, issues.last()) {
                (true, Some(i)) => Some(format!("{}:{}", issue::sort_key(i, q.sort), i.id)),
                _ => None,
            };
            Ok(IssuePage {
                issues,
                next_cursor,
            })
        })
    }

    fn issue(&self, id: u64) -> StoreFuture<'_, Option<Issue>> {
        Box::pin(async move {
            let c = client(&self.pool).await?;
            let row = c
                .query_opt(
                    "SELECT id, data FROM calm_issues WHERE id = $1",
                    &[&(id.min(i64::MAX as u64) as i64)],
                )
                .await
                .map_err(db_error)?;
            row.as_ref().map(issue_of).transpose()
        })
    }

    fn events(
        &self,
        issue_id: u64,
        limit: usize,
        cursor: Option<String>,
    ) -> StoreFuture<'_, EventPage> {
        Box::pin(async move {
            let before: i64 = cursor
                .and_then(|c| c.parse::<i64>().ok())
                .unwrap_or(i64::MAX);
            let c = client(&self.pool).await?;
            let rows = c
                .query(
                    "SELECT seq, body FROM calm_events WHERE issue_id = $1 AND seq < $2
                      ORDER BY seq DESC LIMIT $3",
                    &[
                        &(issue_id.min(i64::MAX as u64) as i64),
                        &before,
                        &(limit.min(10_000) as i64 + 1),
                    ],
                )
                .await
                .map_err(db_error)?;
            let mut events = Vec::new();
            let mut last = None;
            for r in rows.iter().take(limit) {
                let body: Vec<u8> = r.get(1);
                events.push(
                    serde_json::from_slice(&body)
                        .map_err(|e| corrupt(format!("event record: {e}")))?,
                );
                last = Some(r.get::<_, i64>(0));
            }
            let next_cursor = if rows.len() > limit {
                last.map(|s| s.to_string())
            } else {
                None
            };
            Ok(EventPage {
                events,
                next_cursor,
            })
        })
    }

    fn set_status(
        &self,
        id: u64,
        status: IssueStatus,
        now_ms: i64,
    ) -> StoreFuture<'_, Option<Issue>> {
        Box::pin(async move {
            let (_, mut issues) = set_statuses_in(&self.pool, &[id], status, now_ms).await?;
            Ok(issues.pop())
        })
    }

    fn set_statuses(
        &self,
        ids: Vec<u64>,
        status: IssueStatus,
        now_ms: i64,
    ) -> StoreFuture<'_, BulkStatus> {
        Box::pin(async move { Ok(set_statuses_in(&self.pool, &ids, status, now_ms).await?.0) })
    }

    fn tags(&self, issue_id: u64) -> StoreFuture<'_, Vec<TagCounts>> {
        Box::pin(async move {
            let c = client(&self.pool).await?;
            let rows = c
                .query(
                    "SELECT key, value, count, first_seen_ms, last_seen_ms FROM calm_issue_tags
                      WHERE issue_id = $1 ORDER BY key COLLATE \"C\", count DESC, value COLLATE \"C\"",
                    &[&(issue_id.min(i64::MAX as u64) as i64)],
                )
                .await
                .map_err(db_error)?;
            let mut out: Vec<TagCounts> = Vec::new();
            for r in rows {
                let key: String = r.get(0);
                let v = TagValueCount {
                    value: r.get(1),
                    count: r.get::<_, i64>(2) as u64,
                    first_seen_ms: r.get(3),
                    last_seen_ms: r.get(4),
                };
                match out.last_mut() {
                    Some(t) if t.key == key => t.values.push(v),
                    _ => out.push(TagCounts {
                        key,
                        values: vec![v],
                    }),
                }
            }
            Ok(out)
        })
    }
}

/// The store as a trait object.
pub fn boxed(pool: Pool, opts: PgOptions) -> Arc<dyn EventStore> {
    Arc::new(PgEventStore::new(pool, opts))
}
