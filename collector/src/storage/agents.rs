//! The agents store (a small store): the latest heartbeat of each agent with the time
//! it was seen, in memory and in `<data_dir>/agents.json` (rewritten at most every 10 s,
//! so a restart keeps the fleet list; a lost write only loses a heartbeat that the next
//! one replaces). Each agent id is bound to the agent token that first sent it (kept as
//! a fingerprint, never the token). Rows are bounded in number (`limits.max_agents`)
//! and size (64 fields of at most 1 KiB each). The HTTP side is `api/agents.rs`.

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

/// The process' heartbeat counters.
pub static STATS: AgentStats = AgentStats {
    over_max_agents: std::sync::atomic::AtomicU64::new(0),
    foreign_token: std::sync::atomic::AtomicU64::new(0),
    invalid: std::sync::atomic::AtomicU64::new(0),
};

/// The latest heartbeat of each agent.
pub struct AgentStore {
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

impl AgentStore {
    /// Opens the store kept in `<data_dir>/agents.json` (empty if absent or unreadable).
    pub fn open(data_dir: &std::path::Path) -> AgentStore {
        Self::open_with(data_dir, MAX_AGENTS)
    }

    /// Opens the store, tracking at most `max_agents` agents.
    pub fn open_with(data_dir: &std::path::Path, max_agents: usize) -> AgentStore {
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
        AgentStore {
            path,
            agents: Mutex::new(agents),
            last_save: Mutex::new(None),
            max_agents,
        }
    }

    /// Keeps a heartbeat (without agent tokens: owned by nobody).
    pub fn record(&self, body: &[u8]) -> Result<(), (StatusCode, String)> {
        self.record_as(body, None, false)
    }

    /// Keeps a heartbeat sent with the token whose fingerprint is `owner` (`admin`: an
    /// admin token, which may write any row and binds none). `Err` says what is wrong
    /// with it.
    pub fn record_as(
        &self,
        body: &[u8],
        owner: Option<String>,
        admin: bool,
    ) -> Result<(), (StatusCode, String)> {
        let res = self.record_inner(body, owner, admin);
        if let Err((code, _)) = &res {
            let c = match *code {
                StatusCode::TOO_MANY_REQUESTS => &STATS.over_max_agents,
                StatusCode::FORBIDDEN => &STATS.foreign_token,
                _ => &STATS.invalid,
            };
            c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        res
    }

    fn record_inner(
        &self,
        body: &[u8],
        owner: Option<String>,
        admin: bool,
    ) -> Result<(), (StatusCode, String)> {
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
        {
            let mut agents = self.agents.lock();
            match agents.get(&id) {
                Some((_, _, Some(o))) if !admin && owner.as_ref() != Some(o) => {
                    return Err((
                        StatusCode::FORBIDDEN,
                        format!(
                            "agent id {id:?} belongs to another agent token; each agent needs its own id"
                        ),
                    ));
                }
                None if agents.len() >= self.max_agents => {
                    return Err((
                        StatusCode::TOO_MANY_REQUESTS,
                        format!(
                            "the collector already tracks {} agents (limits.max_agents); heartbeats of new agents are refused",
                            self.max_agents
                        ),
                    ));
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
    pub fn list(&self) -> Value {
        let now = now_secs();
        let agents: Vec<Value> = self
            .agents
            .lock()
            .values()
            .map(|(obj, seen, _)| {
                let mut o = obj.clone();
                o.insert(
                    "last_seen".into(),
                    json!(calm_wire::sentry::timestamp::format(*seen)),
                );
                o.insert("seconds_since_seen".into(), json!((now - seen).max(0.0)));
                Value::Object(o)
            })
            .collect();
        json!({ "agents": agents })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_heartbeat_per_agent_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let s = AgentStore::open(dir.path());
        s.record(br#"{"id":"a","spool_entries":3}"#).unwrap();
        s.record(br#"{"id":"b","spool_entries":1}"#).unwrap();
        assert!(s.record(b"nope").is_err());
        assert!(s.record(br#"{"spool_entries":1}"#).is_err());
        *s.last_save.lock() = None;
        s.record(br#"{"id":"a","spool_entries":0}"#).unwrap();
        let v = s.list();
        assert_eq!(v["agents"].as_array().unwrap().len(), 2);
        assert_eq!(v["agents"][0]["spool_entries"], 0);
        let s2 = AgentStore::open(dir.path());
        assert_eq!(s2.list()["agents"][0]["spool_entries"], 0);
        assert!(s2.list()["agents"][1]["last_seen"].is_string());
    }

    #[test]
    fn ids_are_bound_to_their_token_and_rows_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let s = AgentStore::open_with(dir.path(), 2);
        let a = Some(token_fingerprint("a"));
        let b = Some(token_fingerprint("b"));
        s.record_as(br#"{"id":"x"}"#, a.clone(), false).unwrap();
        assert_eq!(
            s.record_as(br#"{"id":"x"}"#, b.clone(), false)
                .unwrap_err()
                .0,
            StatusCode::FORBIDDEN
        );
        s.record_as(br#"{"id":"x","n":1}"#, a.clone(), false)
            .unwrap();
        s.record_as(br#"{"id":"y"}"#, b.clone(), false).unwrap();
        assert_eq!(
            s.record_as(br#"{"id":"z"}"#, b, false).unwrap_err().0,
            StatusCode::TOO_MANY_REQUESTS
        );
        let long = format!(r#"{{"id":"x","last_error":"{}"}}"#, "e".repeat(5000));
        s.record_as(long.as_bytes(), a.clone(), false).unwrap();
        let v = s.list();
        assert_eq!(
            v["agents"][0]["last_error"].as_str().unwrap().len(),
            MAX_FIELD_BYTES
        );
        assert!(v["agents"][0].get("owner_token_fingerprint").is_none());
        let nested = format!(r#"{{"id":"x","o":[{}]}}"#, vec!["1"; 600].join(","));
        assert_eq!(
            s.record_as(nested.as_bytes(), a.clone(), false)
                .unwrap_err()
                .0,
            StatusCode::BAD_REQUEST
        );
    }
}
