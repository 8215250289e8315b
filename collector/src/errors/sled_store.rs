//! The embedded event store on its own sled database (`<data_dir>/events`).
//!
//! ```text
//! issues     id                      → Issue (JSON)
//! hashes     project ‖ hash          → id
//! events     id ‖ body seq           → event body (JSON, bounded)
//! event_ids.G project ‖ event_id     → id                (duplicates are not recounted)
//! users      id ‖ user key           → ()                (distinct users)
//! series     id ‖ level ‖ 0 ‖ env    → count ‖ last ts   (the counter series)
//! tags       id ‖ 0 ‖ key ‖ 0 ‖ value → count ‖ first ms ‖ last ms   (tag value counts)
//!            id ‖ 1 ‖ key            → u64 values of key counted
//!            id ‖ 2                  → u64 keys counted
//! meta       "next_issue_id"         → u64
//!            "event_ids_gen"         → u64 G ‖ i64 ms the generation started
//! ```
//! Event ids are remembered in generations (tree `event_ids.G`; generation 0 is the
//! tree `event_ids` of earlier versions): a new one starts every `dedup_window_ms`,
//! the one before it is still looked in, older ones are dropped. So a retry is
//! recognised for at least one window (7 days by default: SDK retries come within
//! minutes, an agent's spool resends after an outage within hours), and the ids of a
//! year of events do not pile up on disk.
//! One writer thread owns every write (group commit): it takes whatever events are
//! waiting in its bounded queue, applies them all in one sled transaction, flushes
//! once, then answers each caller. So counts are exact, transactions never conflict,
//! an acknowledged event is durable, and a storm costs one fsync per batch rather than
//! per event. When the queue is full, [`EventStore::ingest`] fails at once with
//! [`StoreError::Overloaded`] (the handler answers 429 with Retry-After), so memory
//! stays bounded.
//!
//! After a failed write or flush (a full disk), sled keeps the failed batch in memory
//! and refuses every later write. So the writer drops the database and opens it again
//! from disk before it takes the next batch: what sled holds is then exactly what is
//! durable, and a retried event is recognised as a duplicate only if its original was
//! really written. While the disk is still full the reopen fails and events are answered
//! 503; the first batch after space is back reopens and goes through. Failpoint
//! `events.flush` (tests only, see `crate::failpoint`) fails a flush.
//!
//! Under a storm only a sample of bodies is kept: at most `bodies_per_window` per issue
//! per `sample_window_ms`; every event is still counted (issue count, users, series).
//! Integers are big-endian so keys sort numerically.

use super::issue;
use crate::storage::events::{
    BulkStatus, EventPage, EventStore, Ingested, Issue, IssuePage, IssueQuery, IssueStatus,
    NewEvent, StoreFuture, TagCounts, TagValueCount, OTHER_TAG_KEY, OTHER_TAG_VALUE,
    OVERFLOW_ENVIRONMENT, OVERFLOW_HASH,
};
use crate::storage::{ErrorKind, StorageError};
use parking_lot::Mutex;
use parking_lot::RwLock;
use serde_json::Value;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::{Transactional, Tree};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Most events applied in one transaction.
const MAX_BATCH: usize = 1024;

/// A failure of the sled event store (turned into a [`StorageError`] at the trait).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The embedded store failed.
    #[error("event store: {0}")]
    Sled(#[from] sled::Error),
    /// A stored record could not be read back.
    #[error("event store record is damaged: {0}")]
    Corrupt(String),
    /// The store's write queue is full: answer 429/503 with Retry-After, store nothing.
    #[error(
        "the event store is busy: {0} events are already waiting to be written; retry shortly"
    )]
    Overloaded(usize),
    /// The store is shutting down.
    #[error("the event store is closed")]
    Closed,
    /// The store is reopening after a failed write (a full disk): retry shortly.
    #[error("the event store is unavailable: {0}; retry shortly")]
    Unavailable(String),
}

impl From<StoreError> for StorageError {
    fn from(e: StoreError) -> StorageError {
        let kind = match &e {
            StoreError::Sled(_) | StoreError::Unavailable(_) => ErrorKind::Unavailable,
            StoreError::Corrupt(_) => ErrorKind::Corrupt,
            StoreError::Overloaded(_) => ErrorKind::Busy,
            StoreError::Closed => ErrorKind::Closed,
        };
        StorageError::new(kind, e.to_string())
    }
}

/// Bounds of the sled store.
#[derive(Debug, Clone, Copy)]
pub struct SledOptions {
    /// Largest stored event body (JSON bytes); larger ones lose their bulkiest parts.
    pub max_event_bytes: usize,
    /// Most event bodies kept per issue (the oldest are dropped; counts stay exact).
    pub max_events_per_issue: u64,
    /// Most event bodies stored per issue per sampling window (the rest are counted).
    pub bodies_per_window: u64,
    /// The sampling window, ms.
    pub sample_window_ms: i64,
    /// Most events waiting for the writer; beyond it `ingest` answers `Overloaded`.
    pub queue_events: usize,
    /// How long an event id is remembered at least (up to twice as long), ms.
    pub dedup_window_ms: i64,
    /// Most issues per project; events of new groups beyond it go to one overflow
    /// issue per project.
    pub max_issues_per_project: u64,
    /// Most environments per project; events of new environments beyond it count as
    /// `other_environments`.
    pub max_environments_per_project: u64,
    /// Most tag keys counted per issue; beyond it a tag counts under
    /// [`OTHER_TAG_KEY`] with its key as the value.
    pub max_tag_keys_per_issue: u64,
    /// Most values counted per tag key of an issue; beyond it a value counts as
    /// [`OTHER_TAG_VALUE`].
    pub max_tag_values_per_key: u64,
}

impl SledOptions {
    /// The bounds the issue rules apply.
    pub fn rules(&self) -> issue::IssueRules {
        issue::IssueRules {
            max_event_bytes: self.max_event_bytes,
            max_events_per_issue: self.max_events_per_issue,
            bodies_per_window: self.bodies_per_window,
            sample_window_ms: self.sample_window_ms,
            max_issues_per_project: self.max_issues_per_project,
        }
    }
}

impl Default for SledOptions {
    fn default() -> Self {
        SledOptions {
            max_event_bytes: 256 << 10,
            max_events_per_issue: 10_000,
            bodies_per_window: 100,
            sample_window_ms: 60_000,
            queue_events: 4096,
            dedup_window_ms: 7 * 24 * 3_600_000,
            max_issues_per_project: 10_000,
            max_environments_per_project: 100,
            max_tag_keys_per_issue: 50,
            max_tag_values_per_key: 100,
        }
    }
}

/// Counters of the store, for the collector's `/metrics`.
#[derive(Debug, Default)]
pub struct StoreStats {
    /// Events counted into issues (not duplicates).
    pub events_counted: AtomicU64,
    /// Events whose body was stored.
    pub bodies_stored: AtomicU64,
    /// Events counted whose body was sampled out.
    pub bodies_sampled_out: AtomicU64,
    /// Duplicate events (same project and event id) not counted again.
    pub duplicates: AtomicU64,
    /// Write batches committed (one flush each).
    pub batches: AtomicU64,
    /// Events refused because the write queue was full.
    pub overloaded: AtomicU64,
}

/// One event waiting for the writer.
struct Job {
    event: NewEvent,
    reply: oneshot::Sender<Result<Ingested, StoreError>>,
}

/// The sled event store.
pub struct SledEventStore {
    shared: Arc<Shared>,
    queue: Option<mpsc::Sender<Job>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

/// What outlives a reopen of the database.
struct Shared {
    /// The open database; `None` while it is being reopened (or could not be).
    current: RwLock<Option<Arc<Inner>>>,
    dir: PathBuf,
    opts: SledOptions,
    stats: Arc<StoreStats>,
}

impl Shared {
    fn inner(&self) -> Result<Arc<Inner>, StoreError> {
        self.current.read().clone().ok_or_else(|| {
            StoreError::Unavailable("reopening after a failed write (is the disk full?)".into())
        })
    }
}

struct Inner {
    db: sled::Db,
    issues: Tree,
    /// What was flushed, outside sled (see [`super::integrity`]).
    mark: super::integrity::Mark,
    hashes: Tree,
    events: Tree,
    /// Event-id generations; swapped by the writer under `lock`.
    event_ids: Mutex<EventIdGenerations>,
    users: Tree,
    series: Tree,
    tags: Tree,
    meta: Tree,
    lock: Mutex<()>,
    opts: SledOptions,
    stats: Arc<StoreStats>,
}

fn be(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

fn read_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    let n = b.len().min(8);
    a[..n].copy_from_slice(&b[..n]);
    u64::from_be_bytes(a)
}

fn cat(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(a.len() + b.len());
    v.extend_from_slice(a);
    v.extend_from_slice(b);
    v
}

type Tx = ConflictableTransactionError<String>;

fn decode_issue(bytes: &[u8]) -> Result<Issue, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("issue record: {e}"))
}

fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

impl SledEventStore {
    /// Opens (or creates) the store in `dir` and starts its writer thread.
    pub fn open(dir: &Path, opts: SledOptions) -> Result<SledEventStore, StoreError> {
        let stats = Arc::new(StoreStats::default());
        let inner = Inner::open(dir, opts, stats.clone())?;
        inner.count_existing()?;
        let shared = Arc::new(Shared {
            current: RwLock::new(Some(Arc::new(inner))),
            dir: dir.to_path_buf(),
            opts,
            stats,
        });
        let (tx, rx) = mpsc::channel(opts.queue_events.max(1));
        let w = shared.clone();
        let writer = std::thread::Builder::new()
            .name("calm-event-writer".into())
            .spawn(move || run_writer(&w, rx))
            .map_err(|e| StoreError::Corrupt(format!("cannot start the event writer: {e}")))?;
        Ok(SledEventStore {
            shared,
            queue: Some(tx),
            writer: Some(writer),
        })
    }

    /// The store's counters.
    pub fn stats(&self) -> &StoreStats {
        &self.shared.stats
    }

    /// Events waiting for the writer now.
    pub fn queued(&self) -> usize {
        self.queue
            .as_ref()
            .map(|q| q.max_capacity() - q.capacity())
            .unwrap_or(0)
    }
}

impl Inner {
    fn open(dir: &Path, opts: SledOptions, stats: Arc<StoreStats>) -> Result<Inner, StoreError> {
        let db = super::integrity::open_sled(
            sled::Config::new().path(dir).cache_capacity(64 << 20),
            dir,
        )?;
        let meta = db.open_tree("meta")?;
        let issues = db.open_tree("issues")?;
        // A damaged store refuses the start here (sled itself would open it quietly).
        let mark =
            super::integrity::Mark::check(dir, &meta, &issues, |b| decode_issue(b).map(|_| ()))?;
        Ok(Inner {
            issues,
            mark,
            hashes: db.open_tree("hashes")?,
            events: db.open_tree("events")?,
            event_ids: Mutex::new(EventIdGenerations::open(&db, &meta)?),
            users: db.open_tree("users")?,
            series: db.open_tree("series")?,
            tags: db.open_tree("tags")?,
            meta,
            db,
            lock: Mutex::new(()),
            opts,
            stats,
        })
    }
}

impl Drop for SledEventStore {
    fn drop(&mut self) {
        // Closing the queue ends the writer once it has written what is waiting; join
        // it so that the database is closed (and its lock released) when we return.
        self.queue.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// The writer thread: batches, one transaction and one flush each; after a failure,
/// reopens the database before the next batch (see the module comment).
fn run_writer(shared: &Shared, mut rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let result = match shared.inner().or_else(|_| reopen(shared)) {
            Ok(inner) => {
                let r = inner.write_batch(&batch);
                drop(inner);
                if let Err(e) = &r {
                    tracing::error!(error = %e, "event store write failed; reopening it before the next write");
                    close(shared);
                }
                r
            }
            Err(e) => Err(e),
        };
        for (i, job) in batch.drain(..).enumerate() {
            let r = match &result {
                Ok(list) => Ok(list[i].clone()),
                Err(StoreError::Unavailable(m)) => Err(StoreError::Unavailable(m.clone())),
                Err(e) => Err(StoreError::Unavailable(e.to_string())),
            };
            let _ = job.reply.send(r);
        }
    }
}

/// Takes the database out of service and drops it once no reader holds it.
fn close(shared: &Shared) {
    let Some(old) = shared.current.write().take() else {
        return;
    };
    // Readers hold a clone for the length of one read; wait for them (bounded).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while Arc::strong_count(&old) > 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    drop(old);
}

/// Opens the database again from disk and puts it in service.
fn reopen(shared: &Shared) -> Result<Arc<Inner>, StoreError> {
    match Inner::open(&shared.dir, shared.opts, shared.stats.clone()) {
        Ok(inner) => {
            let inner = Arc::new(inner);
            *shared.current.write() = Some(inner.clone());
            tracing::info!("event store reopened after a failed write");
            Ok(inner)
        }
        Err(e) => Err(StoreError::Unavailable(format!(
            "cannot reopen after a failed write ({e})"
        ))),
    }
}

impl Inner {
    /// Applies `jobs` in one transaction and flushes once.
    fn write_batch(&self, jobs: &[Job]) -> Result<Vec<Ingested>, StoreError> {
        let _g = self.lock.lock();
        let mut ids = self.event_ids.lock();
        let now = jobs.iter().map(|j| j.event.received_ms).max().unwrap_or(0);
        ids.rotate_if_due(&self.db, &self.meta, now, self.opts.dedup_window_ms)?;
        let trees = (
            &self.issues,
            &self.hashes,
            &self.events,
            &ids.current,
            &self.users,
            &self.series,
            &self.tags,
            &self.meta,
        );
        // The previous generation is read-only; it is read before the transaction (a
        // plain read inside a sled transaction waits for the transaction's own lock).
        let mut seen_before: Vec<Option<sled::IVec>> = Vec::with_capacity(jobs.len());
        for j in jobs {
            seen_before.push(match &ids.previous {
                Some(p) => p.get(event_id_key(&j.event))?,
                None => None,
            });
        }
        let res = trees.transaction(|t| {
            let mut out = Vec::with_capacity(jobs.len());
            for (j, seen) in jobs.iter().zip(&seen_before) {
                out.push(self.ingest_one(t, seen.clone(), &j.event)?);
            }
            Ok(out)
        });
        let out = tx_result(res)?;
        if out.iter().any(|r| !r.duplicate) {
            let seq = super::integrity::Mark::bump(&self.meta)?;
            crate::failpoint::check("events.flush").map_err(sled::Error::Io)?;
            self.db.flush()?;
            self.mark.flushed(seq);
        }
        let s = &self.stats;
        s.batches.fetch_add(1, Ordering::Relaxed);
        for r in &out {
            let c = if r.duplicate {
                &s.duplicates
            } else {
                s.events_counted.fetch_add(1, Ordering::Relaxed);
                if r.body_stored {
                    &s.bodies_stored
                } else {
                    &s.bodies_sampled_out
                }
            };
            c.fetch_add(1, Ordering::Relaxed);
        }
        Ok(out)
    }

    /// Counts the issues and environments of each project in a store written before
    /// these counts were kept (once; the per-project limits need them).
    fn count_existing(&self) -> Result<(), StoreError> {
        if self.meta.get(b"limit_counts_v1")?.is_some() {
            return Ok(());
        }
        let mut issues: std::collections::HashMap<u64, u64> = Default::default();
        let mut envs: std::collections::HashSet<(u64, String)> = Default::default();
        for kv in self.issues.iter() {
            let (_, v) = kv?;
            let Ok(i) = decode_issue(&v) else { continue };
            if i.hash != OVERFLOW_HASH {
                *issues.entry(i.project_id).or_default() += 1;
            }
            for e in i.environments {
                envs.insert((i.project_id, e));
            }
        }
        let mut env_counts: std::collections::HashMap<u64, u64> = Default::default();
        for (p, e) in &envs {
            *env_counts.entry(*p).or_default() += 1;
            self.meta
                .insert(cat(&cat(b"env/", &be(*p)), e.as_bytes()), &[])?;
        }
        for (p, n) in issues {
            self.meta.insert(cat(b"issue_count/", &be(p)), &be(n))?;
        }
        for (p, n) in env_counts {
            self.meta.insert(cat(b"env_count/", &be(p)), &be(n))?;
        }
        self.meta.insert(b"limit_counts_v1", &[])?;
        self.db.flush()?;
        Ok(())
    }

    /// Applies one event. `seen_before` is what the previous event-id generation
    /// holds for its id.
    fn ingest_one(
        &self,
        t: &TxTrees,
        seen_before: Option<sled::IVec>,
        ev: &NewEvent,
    ) -> Result<Ingested, Tx> {
        let (issues, hashes, events, event_ids, users, series, tags, meta) = t;
        let eid_key = event_id_key(ev);
        if let Some(v) = event_ids.get(&eid_key)?.or(seen_before) {
            return Ok(Ingested::duplicate(read_u64(&v)));
        }
        // Environments per project: a new one beyond the limit counts as the overflow one.
        let mut overflow_environment = false;
        let env_owned;
        let ev = match ev.environment.as_deref() {
            Some(e) if e != OVERFLOW_ENVIRONMENT => {
                let key = cat(&cat(b"env/", &be(ev.project_id)), e.as_bytes());
                if meta.get(&key)?.is_some() {
                    ev
                } else {
                    let count_key = cat(b"env_count/", &be(ev.project_id));
                    let n = meta.get(&count_key)?.map(|v| read_u64(&v)).unwrap_or(0);
                    if n >= self.opts.max_environments_per_project {
                        overflow_environment = true;
                        env_owned = NewEvent {
                            environment: Some(OVERFLOW_ENVIRONMENT.to_string()),
                            ..ev.clone()
                        };
                        &env_owned
                    } else {
                        meta.insert(count_key, &be(n + 1))?;
                        meta.insert(key, &[])?;
                        ev
                    }
                }
            }
            _ => ev,
        };
        let hash_key = cat(&be(ev.project_id), ev.hash.as_bytes());
        let mut overflow_issue = false;
        let found = match hashes.get(&hash_key)? {
            Some(id) => Some(id),
            None => {
                let count_key = cat(b"issue_count/", &be(ev.project_id));
                let n = meta.get(&count_key)?.map(|v| read_u64(&v)).unwrap_or(0);
                if n >= self.opts.max_issues_per_project {
                    overflow_issue = true;
                    None
                } else {
                    meta.insert(count_key, &be(n + 1))?;
                    None
                }
            }
        };
        let hash_key = if overflow_issue {
            cat(&be(ev.project_id), OVERFLOW_HASH.as_bytes())
        } else {
            hash_key
        };
        let found = match found {
            Some(id) => Some(id),
            None if overflow_issue => hashes.get(&hash_key)?,
            None => None,
        };
        let (mut issue, new_issue) = match found {
            Some(id) => {
                let raw = issues
                    .get(&id)?
                    .ok_or_else(|| Tx::Abort("issue hash points nowhere".into()))?;
                (decode_issue(&raw).map_err(Tx::Abort)?, false)
            }
            None => {
                let id = meta
                    .get(b"next_issue_id")?
                    .map(|v| read_u64(&v))
                    .unwrap_or(1);
                meta.insert(b"next_issue_id", &be(id + 1))?;
                hashes.insert(hash_key.as_slice(), &be(id))?;
                (issue::new_issue(ev, id), true)
            }
        };
        let new_user = match &ev.user_key {
            Some(u) => users
                .insert(cat(&be(issue.id), u.as_bytes()), &[])?
                .is_none(),
            None => false,
        };
        let applied = issue::apply(
            &mut issue,
            ev,
            new_issue,
            overflow_issue,
            new_user,
            &self.opts.rules(),
        );
        let body_stored = applied.body.is_some();
        if let Some((seq, body)) = &applied.body {
            events.insert(cat(&be(issue.id), &be(*seq)), pack_body(body))?;
        }
        if let Some(old) = applied.evict {
            events.remove(cat(&be(issue.id), &be(old)))?;
        }
        let regressed = applied.regressed;
        event_ids.insert(eid_key, &be(issue.id))?;
        let (count, ts) = bump_series(series, issue.id, ev)?;
        count_tags(tags, issue.id, ev, &self.opts)?;
        issues.insert(&be(issue.id), encode(&issue))?;
        Ok(Ingested {
            issue_id: issue.id,
            duplicate: false,
            new_issue,
            regressed,
            series_count: count,
            series_ts_ms: ts,
            body_stored,
            overflow_issue,
            overflow_environment,
        })
    }

    fn issues_sync(&self, q: &IssueQuery) -> Result<IssuePage, StoreError> {
        let text = q.text.as_ref().map(|t| t.to_lowercase());
        let mut all = Vec::new();
        for kv in self.issues.iter() {
            let (_, v) = kv?;
            let issue = decode_issue(&v).map_err(StoreError::Corrupt)?;
            if q.project_id.is_some_and(|p| p != issue.project_id)
                || q.status.is_some_and(|s| s != issue.status)
                || q.environment
                    .as_ref()
                    .is_some_and(|e| !issue.environments.contains(e))
                || q.release
                    .as_ref()
                    .is_some_and(|r| !issue.releases.contains(r))
                || text
                    .as_ref()
                    .is_some_and(|t| !issue::matches_text(&issue, t))
            {
                continue;
            }
            all.push((issue::sort_key(&issue, q.sort), issue));
        }
        all.sort_by_key(|(k, i)| std::cmp::Reverse((*k, i.id)));
        let after = q.cursor.as_deref().and_then(issue::parse_cursor);
        let mut rest = all
            .into_iter()
            .filter(|(k, i)| after.is_none_or(|c| (*k, i.id) < c));
        let issues: Vec<(i64, Issue)> = rest.by_ref().take(q.limit).collect();
        let next_cursor = match (rest.next(), issues.last()) {
            (Some(_), Some((k, i))) => Some(format!("{k}:{}", i.id)),
            _ => None,
        };
        Ok(IssuePage {
            issues: issues.into_iter().map(|(_, i)| i).collect(),
            next_cursor,
        })
    }

    fn issue_sync(&self, id: u64) -> Result<Option<Issue>, StoreError> {
        match self.issues.get(be(id))? {
            Some(v) => decode_issue(&v).map(Some).map_err(StoreError::Corrupt),
            None => Ok(None),
        }
    }

    fn events_sync(
        &self,
        id: u64,
        limit: usize,
        cursor: Option<u64>,
    ) -> Result<EventPage, StoreError> {
        let start = cat(&be(id), &be(0));
        let end = cat(&be(id), &be(cursor.unwrap_or(u64::MAX)));
        let mut events = Vec::new();
        let mut last_seq = None;
        let mut more = false;
        for kv in self.events.range(start..end).rev() {
            let (k, v) = kv?;
            if events.len() == limit {
                more = true;
                break;
            }
            let body = unpack_body(&v)?;
            events.push(body);
            last_seq = Some(read_u64(&k[8..]));
        }
        let next_cursor = if more {
            last_seq.map(|s| s.to_string())
        } else {
            None
        };
        Ok(EventPage {
            events,
            next_cursor,
        })
    }

    fn set_status_sync(
        &self,
        id: u64,
        status: IssueStatus,
        now_ms: i64,
    ) -> Result<Option<Issue>, StoreError> {
        let _g = self.lock.lock();
        let Some(mut issue) = self.issue_sync(id)? else {
            return Ok(None);
        };
        issue::set_status(&mut issue, status, now_ms);
        self.issues.insert(be(id), encode(&issue))?;
        Ok(Some(issue))
    }

    fn set_statuses_sync(
        &self,
        ids: &[u64],
        status: IssueStatus,
        now_ms: i64,
    ) -> Result<BulkStatus, StoreError> {
        let _g = self.lock.lock();
        let mut out = BulkStatus::default();
        let mut seen = std::collections::HashSet::new();
        for &id in ids.iter().filter(|id| seen.insert(**id)) {
            let Some(mut issue) = self.issue_sync(id)? else {
                out.missing.push(id);
                continue;
            };
            if out.apply(&mut issue, status, now_ms) {
                self.issues.insert(be(id), encode(&issue))?;
            }
        }
        Ok(out)
    }

    fn tags_sync(&self, id: u64) -> Result<Vec<TagCounts>, StoreError> {
        let mut out: Vec<TagCounts> = Vec::new();
        let prefix = cat(&be(id), &[0]);
        for kv in self.tags.scan_prefix(&prefix) {
            let (k, v) = kv?;
            let rest = &k[prefix.len()..];
            let bad = || StoreError::Corrupt("tag count record".into());
            let sep = rest.iter().position(|b| *b == 0).ok_or_else(bad)?;
            if v.len() != 24 {
                return Err(bad());
            }
            let key = String::from_utf8_lossy(&rest[..sep]).into_owned();
            let value = TagValueCount {
                value: String::from_utf8_lossy(&rest[sep + 1..]).into_owned(),
                count: read_u64(&v[..8]),
                first_seen_ms: read_u64(&v[8..16]) as i64,
                last_seen_ms: read_u64(&v[16..]) as i64,
            };
            match out.last_mut() {
                Some(t) if t.key == key => t.values.push(value),
                _ => out.push(TagCounts {
                    key,
                    values: vec![value],
                }),
            }
        }
        for t in &mut out {
            t.values
                .sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
        }
        Ok(out)
    }
}

type TxTrees = (
    TransactionalTree,
    TransactionalTree,
    TransactionalTree,
    TransactionalTree,
    TransactionalTree,
    TransactionalTree,
    TransactionalTree,
    TransactionalTree,
);

/// Key of an event in the event-id trees: project ‖ event id.
fn event_id_key(ev: &NewEvent) -> Vec<u8> {
    cat(&be(ev.project_id), ev.event_id.as_bytes())
}

/// The event-id generations in use (see the module comment).
struct EventIdGenerations {
    gen: u64,
    started_ms: i64,
    current: Tree,
    previous: Option<Tree>,
}

impl EventIdGenerations {
    fn tree_name(gen: u64) -> String {
        if gen == 0 {
            "event_ids".to_string()
        } else {
            format!("event_ids.{gen}")
        }
    }

    fn open(db: &sled::Db, meta: &Tree) -> Result<EventIdGenerations, StoreError> {
        let (gen, started_ms) = match meta.get(b"event_ids_gen")? {
            Some(v) if v.len() == 16 => (read_u64(&v[..8]), read_u64(&v[8..]) as i64),
            _ => (0, 0),
        };
        Ok(EventIdGenerations {
            gen,
            started_ms,
            current: db.open_tree(Self::tree_name(gen))?,
            previous: match gen.checked_sub(1) {
                Some(p) => Some(db.open_tree(Self::tree_name(p))?),
                None => None,
            },
        })
    }

    /// Starts a new generation when the current one is a window old (and drops the
    /// one before the current). A first event starts the clock.
    fn rotate_if_due(
        &mut self,
        db: &sled::Db,
        meta: &Tree,
        now_ms: i64,
        window_ms: i64,
    ) -> Result<(), StoreError> {
        if self.started_ms == 0 {
            self.started_ms = now_ms;
            self.save(meta)?;
            return Ok(());
        }
        if now_ms.saturating_sub(self.started_ms) < window_ms {
            return Ok(());
        }
        let next = self.gen + 1;
        let tree = db.open_tree(Self::tree_name(next))?;
        self.previous = Some(std::mem::replace(&mut self.current, tree));
        self.gen = next;
        self.started_ms = now_ms;
        self.save(meta)?;
        if let Some(old) = next.checked_sub(2) {
            db.drop_tree(Self::tree_name(old))?;
        }
        tracing::info!(
            generation = next,
            "event-id dedup: a new generation started, the oldest dropped"
        );
        Ok(())
    }

    fn save(&self, meta: &Tree) -> Result<(), StoreError> {
        let mut v = be(self.gen).to_vec();
        v.extend_from_slice(&be(self.started_ms as u64));
        meta.insert(b"event_ids_gen", v)?;
        Ok(())
    }
}

fn tx_result<T>(res: Result<T, TransactionError<String>>) -> Result<T, StoreError> {
    match res {
        Ok(v) => Ok(v),
        Err(TransactionError::Abort(msg)) => Err(StoreError::Corrupt(msg)),
        Err(TransactionError::Storage(e)) => Err(StoreError::Sled(e)),
    }
}

fn bump_series(series: &TransactionalTree, issue: u64, ev: &NewEvent) -> Result<(u64, i64), Tx> {
    let mut key = be(issue).to_vec();
    key.extend_from_slice(ev.level.as_bytes());
    key.push(0);
    key.extend_from_slice(ev.environment.as_deref().unwrap_or("").as_bytes());
    let prev = match series.get(&key)? {
        Some(v) if v.len() == 16 => Some((read_u64(&v[..8]), read_u64(&v[8..]) as i64)),
        _ => None,
    };
    let (count, ts) = issue::next_series_point(prev, ev.received_ms);
    series.insert(key, cat(&be(count), &be(ts as u64)))?;
    Ok((count, ts))
}

/// Counts the event's tags ([`issue::event_tags`]) into its issue's tag values, keys
/// and values bounded (see [`SledOptions`]).
fn count_tags(
    tags: &TransactionalTree,
    issue: u64,
    ev: &NewEvent,
    opts: &SledOptions,
) -> Result<(), Tx> {
    let id = be(issue);
    let values_key = |k: &str| cat(&cat(&id, &[1]), k.as_bytes());
    for (key, value) in issue::event_tags(ev) {
        // The key: known, or a new one within the limit, else counted under the
        // overflow key with the key as its value.
        let (key, value) = if key == OTHER_TAG_KEY || tags.get(values_key(&key))?.is_some() {
            (key, value)
        } else {
            let keys_key = cat(&id, &[2]);
            let n = tags.get(&keys_key)?.map(|v| read_u64(&v)).unwrap_or(0);
            if n >= opts.max_tag_keys_per_issue {
                (OTHER_TAG_KEY.to_string(), key)
            } else {
                tags.insert(keys_key, &be(n + 1))?;
                tags.insert(values_key(&key), &be(0))?;
                (key, value)
            }
        };
        let record = |v: &str| {
            cat(
                &cat(&cat(&cat(&id, &[0]), key.as_bytes()), &[0]),
                v.as_bytes(),
            )
        };
        let mut rec = record(&value);
        let mut prev = tags.get(&rec)?;
        if prev.is_none() && value != OTHER_TAG_VALUE {
            let vk = values_key(&key);
            let n = tags.get(&vk)?.map(|v| read_u64(&v)).unwrap_or(0);
            if n >= opts.max_tag_values_per_key {
                rec = record(OTHER_TAG_VALUE);
                prev = tags.get(&rec)?;
            } else {
                tags.insert(vk, &be(n + 1))?;
            }
        }
        let t = ev.timestamp_ms;
        let (count, first, last) = match prev {
            Some(v) if v.len() == 24 => (
                read_u64(&v[..8]),
                read_u64(&v[8..16]) as i64,
                read_u64(&v[16..]) as i64,
            ),
            _ => (0, t, t),
        };
        let mut val = be(count + 1).to_vec();
        val.extend_from_slice(&be(first.min(t) as u64));
        val.extend_from_slice(&be(last.max(t) as u64));
        tags.insert(rec, val)?;
    }
    Ok(())
}

/// Marks a snappy-compressed body (JSON bodies start with `{`).
const SNAPPY_BODY: u8 = 1;

/// The stored form of a body: `0x01` + the JSON snappy-compressed (event JSON shrinks
/// 3–5×, and sled's cost grows with the bytes it writes).
fn pack_body(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + snap::raw::max_compress_len(json.len()));
    out.push(SNAPPY_BODY);
    out.resize(1 + snap::raw::max_compress_len(json.len()), 0);
    match snap::raw::Encoder::new().compress(json, &mut out[1..]) {
        Ok(n) => {
            out.truncate(1 + n);
            out
        }
        Err(_) => json.to_vec(),
    }
}

/// A stored body back as JSON (plain JSON records are read as they are).
fn unpack_body(v: &[u8]) -> Result<Value, StoreError> {
    let bad = |e: String| StoreError::Corrupt(format!("event record: {e}"));
    if v.first() == Some(&SNAPPY_BODY) {
        let json = snap::raw::Decoder::new()
            .decompress_vec(&v[1..])
            .map_err(|e| bad(e.to_string()))?;
        serde_json::from_slice(&json).map_err(|e| bad(e.to_string()))
    } else {
        serde_json::from_slice(v).map_err(|e| bad(e.to_string()))
    }
}

impl EventStore for SledEventStore {
    fn ingest(&self, event: NewEvent) -> StoreFuture<'_, Ingested> {
        Box::pin(async move {
            let queue = self.queue.as_ref().ok_or(StoreError::Closed)?;
            let (reply, rx) = oneshot::channel();
            match queue.try_send(Job { event, reply }) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.shared.stats.overloaded.fetch_add(1, Ordering::Relaxed);
                    return Err(StoreError::Overloaded(queue.max_capacity()).into());
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(StoreError::Closed.into()),
            }
            Ok(rx.await.map_err(|_| StoreError::Closed)??)
        })
    }

    fn issues(&self, query: IssueQuery) -> StoreFuture<'_, IssuePage> {
        Box::pin(async move { Ok(self.shared.inner()?.issues_sync(&query)?) })
    }

    fn issue(&self, id: u64) -> StoreFuture<'_, Option<Issue>> {
        Box::pin(async move { Ok(self.shared.inner()?.issue_sync(id)?) })
    }

    fn events(
        &self,
        issue_id: u64,
        limit: usize,
        cursor: Option<String>,
    ) -> StoreFuture<'_, EventPage> {
        Box::pin(async move {
            let c = cursor.and_then(|c| c.parse().ok());
            Ok(self.shared.inner()?.events_sync(issue_id, limit, c)?)
        })
    }

    fn set_status(
        &self,
        id: u64,
        status: IssueStatus,
        now_ms: i64,
    ) -> StoreFuture<'_, Option<Issue>> {
        Box::pin(async move {
            let inner = self.shared.inner()?;
            let r = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
                let r = inner.set_status_sync(id, status, now_ms)?;
                inner.db.flush()?;
                Ok(r)
            })
            .await
            .map_err(|e| StoreError::Corrupt(format!("status update failed: {e}")))??;
            Ok(r)
        })
    }

    fn set_statuses(
        &self,
        ids: Vec<u64>,
        status: IssueStatus,
        now_ms: i64,
    ) -> StoreFuture<'_, BulkStatus> {
        Box::pin(async move {
            let inner = self.shared.inner()?;
            let r = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
                let r = inner.set_statuses_sync(&ids, status, now_ms)?;
                inner.db.flush()?;
                Ok(r)
            })
            .await
            .map_err(|e| StoreError::Corrupt(format!("status update failed: {e}")))??;
            Ok(r)
        })
    }

    fn tags(&self, issue_id: u64) -> StoreFuture<'_, Vec<TagCounts>> {
        Box::pin(async move {
            let inner = self.shared.inner()?;
            let r = tokio::task::spawn_blocking(move || inner.tags_sync(issue_id))
                .await
                .map_err(|e| StoreError::Corrupt(format!("tag read failed: {e}")))??;
            Ok(r)
        })
    }
}

#[cfg(test)]
#[path = "sled_store_tests.rs"]
mod tests;
