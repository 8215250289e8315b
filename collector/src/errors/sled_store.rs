//! The embedded event store on its own sled database (`<data_dir>/events`).
//!
//! ```text
//! issues     id                      → Issue (JSON)
//! hashes     project ‖ hash          → id
//! events     id ‖ seq                → event body (JSON, bounded)
//! event_ids  project ‖ event_id      → id ‖ seq          (duplicates are not recounted)
//! users      id ‖ user key           → ()                (distinct users)
//! series     id ‖ level ‖ 0 ‖ env    → count ‖ last ts   (the counter series)
//! meta       "next_issue_id"         → u64
//! ```
//! One event updates all of them in one sled transaction, under one lock (so counts
//! are exact and transactions never conflict), then waits for a flush before it is
//! acknowledged. Integers are big-endian so keys sort numerically.

use super::store::{
    EventPage, EventStore, Ingested, Issue, IssuePage, IssueQuery, IssueSort, IssueStatus,
    NewEvent, StoreError, StoreFuture,
};
use parking_lot::Mutex;
use serde_json::Value;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::{Transactional, Tree};
use std::path::Path;

/// Most environments and releases remembered per issue.
const MAX_NAMES: usize = 100;

/// Bounds of the sled store.
#[derive(Debug, Clone, Copy)]
pub struct SledOptions {
    /// Largest stored event body (JSON bytes); larger ones lose their bulkiest parts.
    pub max_event_bytes: usize,
    /// Most events kept per issue (the oldest are dropped; counts stay exact).
    pub max_events_per_issue: u64,
}

impl Default for SledOptions {
    fn default() -> Self {
        SledOptions {
            max_event_bytes: 256 << 10,
            max_events_per_issue: 10_000,
        }
    }
}

/// The sled event store.
pub struct SledEventStore {
    db: sled::Db,
    issues: Tree,
    hashes: Tree,
    events: Tree,
    event_ids: Tree,
    users: Tree,
    series: Tree,
    meta: Tree,
    lock: Mutex<()>,
    opts: SledOptions,
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
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path, opts: SledOptions) -> Result<SledEventStore, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(64 << 20)
            .open()?;
        Ok(SledEventStore {
            issues: db.open_tree("issues")?,
            hashes: db.open_tree("hashes")?,
            events: db.open_tree("events")?,
            event_ids: db.open_tree("event_ids")?,
            users: db.open_tree("users")?,
            series: db.open_tree("series")?,
            meta: db.open_tree("meta")?,
            db,
            lock: Mutex::new(()),
            opts,
        })
    }

    fn ingest_sync(&self, ev: &NewEvent, body: &[u8]) -> Result<Ingested, StoreError> {
        let _g = self.lock.lock();
        let trees = (
            &self.issues,
            &self.hashes,
            &self.events,
            &self.event_ids,
            &self.users,
            &self.series,
            &self.meta,
        );
        let res = trees.transaction(|(issues, hashes, events, event_ids, users, series, meta)| {
            let eid_key = cat(&be(ev.project_id), ev.event_id.as_bytes());
            if let Some(v) = event_ids.get(&eid_key)? {
                return Ok(Ingested {
                    issue_id: read_u64(&v),
                    duplicate: true,
                    new_issue: false,
                    regressed: false,
                    series_count: 0,
                    series_ts_ms: 0,
                });
            }
            let hash_key = cat(&be(ev.project_id), ev.hash.as_bytes());
            let (mut issue, new_issue) = match hashes.get(&hash_key)? {
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
                    (new_issue(ev, id), true)
                }
            };
            let regressed = apply_event(&mut issue, ev, new_issue);
            if let Some(u) = &ev.user_key {
                if users
                    .insert(cat(&be(issue.id), u.as_bytes()), &[])?
                    .is_none()
                {
                    issue.user_count += 1;
                }
            }
            let seq = issue.count;
            events.insert(cat(&be(issue.id), &be(seq)), body)?;
            if seq > self.opts.max_events_per_issue {
                events.remove(cat(
                    &be(issue.id),
                    &be(seq - self.opts.max_events_per_issue),
                ))?;
            }
            event_ids.insert(eid_key, cat(&be(issue.id), &be(seq)))?;
            let (count, ts) = bump_series(series, issue.id, ev)?;
            issues.insert(&be(issue.id), encode(&issue))?;
            Ok(Ingested {
                issue_id: issue.id,
                duplicate: false,
                new_issue,
                regressed,
                series_count: count,
                series_ts_ms: ts,
            })
        });
        tx_result(res)
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
                || text.as_ref().is_some_and(|t| !matches_text(&issue, t))
            {
                continue;
            }
            all.push((sort_key(&issue, q.sort), issue));
        }
        all.sort_by_key(|(k, i)| std::cmp::Reverse((*k, i.id)));
        let after = q.cursor.as_deref().and_then(parse_cursor);
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
            let body: Value = serde_json::from_slice(&v)
                .map_err(|e| StoreError::Corrupt(format!("event record: {e}")))?;
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
        if issue.status != status {
            issue.status = status;
            issue.status_changed_ms = Some(now_ms);
        }
        if status == IssueStatus::Resolved {
            issue.regressed = false;
        }
        self.issues.insert(be(id), encode(&issue))?;
        Ok(Some(issue))
    }
}

fn tx_result<T>(res: Result<T, TransactionError<String>>) -> Result<T, StoreError> {
    match res {
        Ok(v) => Ok(v),
        Err(TransactionError::Abort(msg)) => Err(StoreError::Corrupt(msg)),
        Err(TransactionError::Storage(e)) => Err(StoreError::Sled(e)),
    }
}

fn new_issue(ev: &NewEvent, id: u64) -> Issue {
    Issue {
        id,
        project_id: ev.project_id,
        hash: ev.hash.clone(),
        event_type: ev.summary.event_type.clone(),
        title: ev.summary.title.clone(),
        culprit: ev.summary.culprit.clone(),
        metadata: ev.summary.metadata.clone(),
        level: ev.level.clone(),
        platform: ev.platform.clone(),
        status: IssueStatus::Unresolved,
        first_seen_ms: ev.timestamp_ms,
        last_seen_ms: ev.timestamp_ms,
        count: 0,
        user_count: 0,
        environments: Vec::new(),
        releases: Vec::new(),
        first_release: ev.release.clone(),
        last_release: None,
        last_event_id: ev.event_id.clone(),
        regressed: false,
        times_regressed: 0,
        last_regressed_ms: None,
        status_changed_ms: None,
    }
}

/// Counts `ev` into `issue`; returns true when this reopened a resolved issue.
fn apply_event(issue: &mut Issue, ev: &NewEvent, new: bool) -> bool {
    issue.count += 1;
    issue.first_seen_ms = issue.first_seen_ms.min(ev.timestamp_ms);
    if new || ev.timestamp_ms >= issue.last_seen_ms {
        issue.last_seen_ms = ev.timestamp_ms;
        issue.title = ev.summary.title.clone();
        issue.culprit = ev.summary.culprit.clone();
        issue.metadata = ev.summary.metadata.clone();
        issue.event_type = ev.summary.event_type.clone();
        issue.level = ev.level.clone();
        issue.platform = ev.platform.clone();
        issue.last_event_id = ev.event_id.clone();
        if ev.release.is_some() {
            issue.last_release = ev.release.clone();
        }
    }
    for (list, name) in [
        (&mut issue.environments, &ev.environment),
        (&mut issue.releases, &ev.release),
    ] {
        if let Some(n) = name {
            if !list.contains(n) && list.len() < MAX_NAMES {
                list.push(n.clone());
            }
        }
    }
    if issue.status == IssueStatus::Resolved {
        issue.status = IssueStatus::Unresolved;
        issue.regressed = true;
        issue.times_regressed += 1;
        issue.last_regressed_ms = Some(ev.received_ms);
        issue.status_changed_ms = Some(ev.received_ms);
        return true;
    }
    false
}

fn bump_series(series: &TransactionalTree, issue: u64, ev: &NewEvent) -> Result<(u64, i64), Tx> {
    let mut key = be(issue).to_vec();
    key.extend_from_slice(ev.level.as_bytes());
    key.push(0);
    key.extend_from_slice(ev.environment.as_deref().unwrap_or("").as_bytes());
    let (count, last_ts) = match series.get(&key)? {
        Some(v) if v.len() == 16 => (read_u64(&v[..8]), read_u64(&v[8..]) as i64),
        _ => (0, i64::MIN),
    };
    let count = count + 1;
    let ts = ev.received_ms.max(last_ts.saturating_add(1));
    series.insert(key, cat(&be(count), &be(ts as u64)))?;
    Ok((count, ts))
}

fn sort_key(i: &Issue, sort: IssueSort) -> i64 {
    match sort {
        IssueSort::LastSeen => i.last_seen_ms,
        IssueSort::FirstSeen => i.first_seen_ms,
        IssueSort::Count => i.count.min(i64::MAX as u64) as i64,
    }
}

fn parse_cursor(c: &str) -> Option<(i64, u64)> {
    let (k, id) = c.split_once(':')?;
    Some((k.parse().ok()?, id.parse().ok()?))
}

fn matches_text(i: &Issue, t: &str) -> bool {
    i.title.to_lowercase().contains(t)
        || i.culprit.to_lowercase().contains(t)
        || i.metadata.to_string().to_lowercase().contains(t)
}

/// The event body as stored: JSON, at most `max` bytes (the bulkiest parts dropped
/// first: frame variables, breadcrumbs, request, extra, contexts, modules).
pub fn bounded_body(body: &Value, max: usize) -> Vec<u8> {
    let bytes = encode(body);
    if bytes.len() <= max {
        return bytes;
    }
    let mut b = body.clone();
    if let Some(excs) = b
        .pointer_mut("/exception/values")
        .and_then(Value::as_array_mut)
    {
        for e in excs {
            if let Some(frames) = e
                .pointer_mut("/stacktrace/frames")
                .and_then(Value::as_array_mut)
            {
                for f in frames.iter_mut().filter_map(Value::as_object_mut) {
                    f.remove("vars");
                    f.remove("pre_context");
                    f.remove("post_context");
                }
            }
        }
    }
    let mut out = encode(&b);
    for key in [
        "breadcrumbs",
        "request",
        "extra",
        "contexts",
        "modules",
        "threads",
        "stacktrace",
        "exception",
    ] {
        if out.len() <= max {
            break;
        }
        if let Some(m) = b.as_object_mut() {
            m.remove(key);
            m.insert("_trimmed".into(), Value::Bool(true));
        }
        out = encode(&b);
    }
    out
}

impl EventStore for SledEventStore {
    fn ingest(&self, event: NewEvent) -> StoreFuture<'_, Ingested> {
        Box::pin(async move {
            let body = bounded_body(&event.body, self.opts.max_event_bytes);
            let r = self.ingest_sync(&event, &body)?;
            if !r.duplicate {
                self.db.flush_async().await?;
            }
            Ok(r)
        })
    }

    fn issues(&self, query: IssueQuery) -> StoreFuture<'_, IssuePage> {
        Box::pin(async move { self.issues_sync(&query) })
    }

    fn issue(&self, id: u64) -> StoreFuture<'_, Option<Issue>> {
        Box::pin(async move { self.issue_sync(id) })
    }

    fn events(
        &self,
        issue_id: u64,
        limit: usize,
        cursor: Option<String>,
    ) -> StoreFuture<'_, EventPage> {
        Box::pin(async move {
            let c = cursor.and_then(|c| c.parse().ok());
            self.events_sync(issue_id, limit, c)
        })
    }

    fn set_status(
        &self,
        id: u64,
        status: IssueStatus,
        now_ms: i64,
    ) -> StoreFuture<'_, Option<Issue>> {
        Box::pin(async move {
            let r = self.set_status_sync(id, status, now_ms)?;
            self.db.flush_async().await?;
            Ok(r)
        })
    }
}
