//! The agents store (a small store): the latest heartbeat of each agent with the time
//! it was seen, in memory and in `<data_dir>/agents.json` (rewritten at most every 10 s,
//! so a restart keeps the fleet list; a lost write only loses a heartbeat that the next
//! one replaces). Each agent id is bound to the agent token that first sent it (kept as
//! a fingerprint, never the token). Rows are bounded in number (`limits.max_agents`)
//! and size (64 fields of at most 1 KiB each). The HTTP side is `api/agents.rs`.
//!
//! [`AgentStore`] is the trait (embedded: [`FileAgentStore`]; cluster mode: the
//! PostgreSQL table `calm_agents`, `storage/postgres/small.rs`); [`record_as`] checks
//! a heartbeat the same way for every store, and [`fleet_view`] shapes the list.

use super::events::StoreFuture;
use super::StorageError;
use axum::http::StatusCode;
use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Default of `limits.max_agents`.
pub const MAX_AGENTS: usize = 10_000;
/// Largest heartbeat body.
pub const MAX_HEARTBEAT_BYTES: usize = 64 * 1024;
/// Most fields of one heartbeat.
pub const MAX_FIELDS: usize = 64;
/// Largest field (JSON bytes); longer strings are cut to it.
pub const MAX_FIELD_BYTES: usize = 1024;
const SAVE_EVERY: Duration = Duration::from_secs(10);

/// An agent's last heartbeat, when it came (seconds since the epoch), and the
/// fingerprint of the token that owns the id (`None` without agent tokens).
type Seen = (Map<String, Value>, f64, Option<String>);

/// Heartbeats refused, by reason (for `/metrics`).
#[derive(Debug, Default)]
pub struct AgentStats {
    /// New ids refused at `limits.max_agents`.
    pub over_max_agents: std::sync::atomic::AtomicU64,
    /// Ids owned by another token.
    pub foreign_token: std::sync::atomic::AtomicU64,
    /// Malformed or oversized heartbeats.
    pub invalid: std::sync::atomic::AtomicU64,
}

/// Why a heartbeat was not kept.
#[derive(Debug, Clone)]
pub enum Refused {
    /// The heartbeat is wrong or not allowed (400, 403 foreign token, 429 at
    /// `limits.max_agents`), with what to tell the agent.
    Status(StatusCode, String),
    /// The store failed (503 with Retry-After).
    Storage(StorageError),
}

impl Refused {
    /// The HTTP status of the answer.
    pub fn status(&self) -> StatusCode {
        match self {
            Refused::Status(c, _) => *c,
            Refused::Storage(e) => e.status(),
        }
    }
}

/// A boxed future of an upsert.
pub type UpsertFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Refused>> + Send + 'a>>;

/// Where the fleet list lives.
pub trait AgentStore: Send + Sync + 'static {
    /// Keeps agent `id`'s checked heartbeat `obj` (see [`record_as`]), sent with the
    /// token whose fingerprint is `owner` (`admin`: may write any row, binds none).
    /// Refuses an id bound to another token (403) and a new id beyond the store's
    /// `max_agents` (429).
    fn upsert(
        &self,
        id: String,
        obj: Map<String, Value>,
        owner: Option<String>,
        admin: bool,
    ) -> UpsertFuture<'_>;
    /// The fleet view (`{"agents": [...]}`, by id), see [`fleet_view`].
    fn list(&self) -> StoreFuture<'_, Value>;
}

/// The fleet view of `(heartbeat, last seen in seconds since the epoch)` rows.
pub fn fleet_view<'a>(rows: impl Iterator<Item = (&'a Map<String, Value>, f64)>) -> Value {
    let now = now_secs();
    let agents: Vec<Value> = rows
        .map(|(obj, seen)| {
            let mut o = obj.clone();
            o.insert(
                "last_seen".into(),
                json!(calm_wire::sentry::timestamp::format(seen)),
            );
            o.insert("seconds_since_seen".into(), json!((now - seen).max(0.0)));
            Value::Object(o)
        })
        .collect();
    json!({ "agents": agents })
}

/// Checks a heartbeat and keeps it in `store`; counts refusals in `stats` (for
/// `/metrics`, [`crate::selfmetrics::SelfMetrics::agent_stats`]).
pub async fn record_as(
    store: &dyn AgentStore,
    stats: &AgentStats,
    body: &[u8],
    owner: Option<String>,
    admin: bool,
) -> Result<(), Refused> {
    let res = match check(body) {
        Ok((id, obj)) => store.upsert(id, obj, owner, admin).await,
        Err((c, m)) => Err(Refused::Status(c, m)),
    };
    if let Err(Refused::Status(code, _)) = &res {
        let c = match *code {
            StatusCode::TOO_MANY_REQUESTS => &stats.over_max_agents,
            StatusCode::FORBIDDEN => &stats.foreign_token,
            _ => &stats.invalid,
        };
        c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    res
}

/// A heartbeat's id and fields, checked and cut to the bounds; `Err` says what is
/// wrong with it (400).
pub fn check(body: &[u8]) -> Result<(String, Map<String, Value>), (StatusCode, String)> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            format!("heartbeat is not JSON: {e}"),
        )
    })?;
    let Value::Object(mut obj) = v else {
        return Err((
            StatusCode::BAD_REQUEST,
            "heartbeat must be a JSON object".into(),
        ));
    };
    let Some(id) = obj.get("id").and_then(Value::as_str).map(str::to_string) else {
        return Err((
            StatusCode::BAD_REQUEST,
            "heartbeat needs a string \"id\"".into(),
        ));
    };
    if id.is_empty() || id.len() > 512 {
        return Err((
            StatusCode::BAD_REQUEST,
            "heartbeat \"id\" must be 1 to 512 bytes".into(),
        ));
    }
    if obj.len() > MAX_FIELDS {
        return Err((
            StatusCode::BAD_REQUEST,
            format!(
                "heartbeat has {} fields; at most {MAX_FIELDS} are kept",
                obj.len()
            ),
        ));
    }
    for (k, v) in obj.iter_mut() {
        if k.len() > 128 {
            return Err((
                StatusCode::BAD_REQUEST,
                "heartbeat field names must be at most 128 bytes".into(),
            ));
        }
        if let Value::String(s) = v {
            cut(s, MAX_FIELD_BYTES);
        } else if serde_json::to_vec(v).map_or(0, |b| b.len()) > MAX_FIELD_BYTES {
            return Err((
                StatusCode::BAD_REQUEST,
                format!("heartbeat field {k:?} is over {MAX_FIELD_BYTES} bytes of JSON"),
            ));
        }
    }
    Ok((id, obj))
}

/// The refusal of a heartbeat whose id belongs to another token.
pub fn foreign_token(id: &str) -> Refused {
    Refused::Status(
        StatusCode::FORBIDDEN,
        format!("agent id {id:?} belongs to another agent token; each agent needs its own id"),
    )
}

/// The refusal of a new agent's heartbeat at `max` agents.
pub fn too_many_agents(max: usize) -> Refused {
    Refused::Status(
        StatusCode::TOO_MANY_REQUESTS,
        format!(
            "the collector already tracks {max} agents (limits.max_agents); heartbeats of new agents are refused"
        ),
    )
}

/// The latest heartbeat of each agent, in memory and in `<data_dir>/agents.json`.
pub struct FileAgentStore {
    path: PathBuf,
    agents: Mutex<BTreeMap<String, Seen>>,
    last_save: Mutex<Option<Instant>>,
    max_agents: usize,
}

/// A token's fingerprint (enough to tell tokens apart; not the token).
pub fn token_fingerprint(token: &str) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(token.as_bytes()))
}

/// Cuts `s` to at most `max` bytes at a character boundary.
fn cut(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl FileAgentStore {
    /// Opens the store kept in `<data_dir>/agents.json` (empty if absent or unreadable).
    pub fn open(data_dir: &std::path::Path) -> FileAgentStore {
        Self::open_with(data_dir, MAX_AGENTS)
    }

    /// Opens the store, tracking at most `max_agents` agents.
    pub fn open_with(data_dir: &std::path::Path, max_agents: usize) -> FileAgentStore {
        let path = data_dir.join("agents.json");
        let mut agents = BTreeMap::new();
        if let Ok(bytes) = std::fs::read(&path) {
            match serde_json::from_slice::<Vec<Value>>(&bytes) {
                Ok(list) => {
                    for v in list {
                        let seen = v
                            .get("last_seen_unix")
                            .and_then(Value::as_f64)
                            .unwrap_or(0.0);
                        let Value::Object(mut obj) = v else { continue };
                        let Some(id) = obj.get("id").and_then(Value::as_str).map(str::to_string)
                        else {
                            continue;
                        };
                        obj.remove("last_seen_unix");
                        let owner = obj
                            .remove("owner_token_fingerprint")
                            .and_then(|v| v.as_str().map(str::to_string));
                        agents.insert(id, (obj, seen, owner));
                    }
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "agents.json unreadable; starting with an empty fleet list")
                }
            }
        }
        FileAgentStore {
            path,
            agents: Mutex::new(agents),
            last_save: Mutex::new(None),
            max_agents,
        }
    }

    /// Keeps a heartbeat (without agent tokens: owned by nobody). Blocking-free.
    pub fn record(&self, body: &[u8]) -> Result<(), Refused> {
        self.record_sync(body, None, false)
    }

    /// [`record_as`] without a runtime (the store itself never waits).
    pub fn record_sync(
        &self,
        body: &[u8],
        owner: Option<String>,
        admin: bool,
    ) -> Result<(), Refused> {
        let (id, obj) = check(body).map_err(|(c, m)| Refused::Status(c, m))?;
        self.upsert_sync(id, obj, owner, admin)
    }

    fn upsert_sync(
        &self,
        id: String,
        obj: Map<String, Value>,
        owner: Option<String>,
        admin: bool,
    ) -> Result<(), Refused> {
        {
            let mut agents = self.agents.lock();
            match agents.get(&id) {
                Some((_, _, Some(o))) if !admin && owner.as_ref() != Some(o) => {
                    return Err(foreign_token(&id));
                }
                None if agents.len() >= self.max_agents => {
                    return Err(too_many_agents(self.max_agents));
                }
                _ => {}
            }
            let owner = match agents.get(&id) {
                Some((_, _, o @ Some(_))) => o.clone(),
                _ => owner,
            };
            agents.insert(id, (obj, now_secs(), owner));
        }
        self.maybe_save();
        Ok(())
    }

    fn maybe_save(&self) {
        {
            let mut last = self.last_save.lock();
            if last.is_some_and(|t| t.elapsed() < SAVE_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        let list: Vec<Value> = self
            .agents
            .lock()
            .values()
            .map(|(obj, seen, owner)| {
                let mut o = obj.clone();
                o.insert("last_seen_unix".into(), json!(seen));
                if let Some(f) = owner {
                    o.insert("owner_token_fingerprint".into(), json!(f));
                }
                Value::Object(o)
            })
            .collect();
        let tmp = self.path.with_extension("json.tmp");
        let res = serde_json::to_vec(&list)
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(&tmp, b))
            .and_then(|_| std::fs::rename(&tmp, &self.path));
        if let Err(e) = res {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot save the fleet list");
        }
    }

    /// The fleet view.
    pub fn list_now(&self) -> Value {
        let agents = self.agents.lock();
        fleet_view(agents.values().map(|(obj, seen, _)| (obj, *seen)))
    }
}

impl AgentStore for FileAgentStore {
    fn upsert(
        &self,
        id: String,
        obj: Map<String, Value>,
        owner: Option<String>,
        admin: bool,
    ) -> UpsertFuture<'_> {
        Box::pin(async move { self.upsert_sync(id, obj, owner, admin) })
    }

    fn list(&self) -> StoreFuture<'_, Value> {
        Box::pin(async move { Ok(self.list_now()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_heartbeat_per_agent_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileAgentStore::open(dir.path());
        s.record(br#"{"id":"a","spool_entries":3}"#).unwrap();
        s.record(br#"{"id":"b","spool_entries":1}"#).unwrap();
        assert!(s.record(b"nope").is_err());
        assert!(s.record(br#"{"spool_entries":1}"#).is_err());
        *s.last_save.lock() = None;
        s.record(br#"{"id":"a","spool_entries":0}"#).unwrap();
        let v = s.list_now();
        assert_eq!(v["agents"].as_array().unwrap().len(), 2);
        assert_eq!(v["agents"][0]["spool_entries"], 0);
        let s2 = FileAgentStore::open(dir.path());
        assert_eq!(s2.list_now()["agents"][0]["spool_entries"], 0);
        assert!(s2.list_now()["agents"][1]["last_seen"].is_string());
    }

    #[test]
    fn ids_are_bound_to_their_token_and_rows_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileAgentStore::open_with(dir.path(), 2);
        let a = Some(token_fingerprint("a"));
        let b = Some(token_fingerprint("b"));
        s.record_sync(br#"{"id":"x"}"#, a.clone(), false).unwrap();
        assert_eq!(
            s.record_sync(br#"{"id":"x"}"#, b.clone(), false)
                .unwrap_err()
                .status(),
            StatusCode::FORBIDDEN
        );
        s.record_sync(br#"{"id":"x","n":1}"#, a.clone(), false)
            .unwrap();
        s.record_sync(br#"{"id":"y"}"#, b.clone(), false).unwrap();
        assert_eq!(
            s.record_sync(br#"{"id":"z"}"#, b, false)
                .unwrap_err()
                .status(),
            StatusCode::TOO_MANY_REQUESTS
        );
        let long = format!(r#"{{"id":"x","last_error":"{}"}}"#, "e".repeat(5000));
        s.record_sync(long.as_bytes(), a.clone(), false).unwrap();
        let v = s.list_now();
        assert_eq!(
            v["agents"][0]["last_error"].as_str().unwrap().len(),
            MAX_FIELD_BYTES
        );
        assert!(v["agents"][0].get("owner_token_fingerprint").is_none());
        let nested = format!(r#"{{"id":"x","o":[{}]}}"#, vec!["1"; 600].join(","));
        assert_eq!(
            s.record_sync(nested.as_bytes(), a.clone(), false)
                .unwrap_err()
                .status(),
            StatusCode::BAD_REQUEST
        );
    }
}
