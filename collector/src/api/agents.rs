//! The agents API: the fleet view. Each `calm-agent` posts a heartbeat (its spool depth,
//! counters and last error); the collector keeps the latest one per agent with the time
//! it was seen, in memory and in `<data_dir>/agents.json` (rewritten at most every 10 s,
//! so a restart keeps the fleet list; a lost write only loses a heartbeat that the next
//! one replaces).
//!
//! ```text
//! POST /api/calm/v1/agents/heartbeat   (agent token when configured)
//! {"id": "web-1 127.0.0.1:9401", "host": "web-1", "version": "0.1.0", "uptime_seconds": 12.5,
//!  "spool_bytes": 0, "spool_entries": 0, "spool_dropped": 0, "shipped": 10, "rejected": 0,
//!  "retries": 0, "last_error": null}
//! 204                     kept
//! 400 {"detail": "..."}   not JSON, or no string "id"
//!
//! GET /api/calm/v1/agents              (read token when configured)
//! 200 {"agents": [{...the last heartbeat..., "last_seen": "2026-11-26T02:00:00.000Z",
//!                  "seconds_since_seen": 3.2}]}          sorted by id
//! ```

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Most agents kept; heartbeats of new agents beyond it are refused (429).
pub const MAX_AGENTS: usize = 100_000;
/// Largest heartbeat body.
pub const MAX_HEARTBEAT_BYTES: usize = 64 * 1024;
const SAVE_EVERY: Duration = Duration::from_secs(10);

/// An agent's last heartbeat and when it came (seconds since the epoch).
type Seen = (Map<String, Value>, f64);

/// The latest heartbeat of each agent.
pub struct AgentStore {
    path: PathBuf,
    agents: Mutex<BTreeMap<String, Seen>>,
    last_save: Mutex<Option<Instant>>,
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
                        agents.insert(id, (obj, seen));
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
        }
    }

    /// Keeps a heartbeat. `Err` says what is wrong with it.
    pub fn record(&self, body: &[u8]) -> Result<(), (StatusCode, String)> {
        let v: Value = serde_json::from_slice(body).map_err(|e| {
            (
                StatusCode::BAD_REQUEST,
                format!("heartbeat is not JSON: {e}"),
            )
        })?;
        let Value::Object(obj) = v else {
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
        {
            let mut agents = self.agents.lock();
            if agents.len() >= MAX_AGENTS && !agents.contains_key(&id) {
                return Err((
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("the collector already tracks {MAX_AGENTS} agents"),
                ));
            }
            agents.insert(id, (obj, now_secs()));
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
            .map(|(obj, seen)| {
                let mut o = obj.clone();
                o.insert("last_seen_unix".into(), json!(seen));
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
            .map(|(obj, seen)| {
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

async fn heartbeat(State(store): State<Arc<AgentStore>>, body: Bytes) -> Response {
    match store.record(&body) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err((code, msg)) => (code, axum::Json(json!({ "detail": msg }))).into_response(),
    }
}

async fn list(State(store): State<Arc<AgentStore>>) -> Response {
    axum::Json(store.list()).into_response()
}

/// `POST /api/calm/v1/agents/heartbeat` (to put behind the agent tokens).
pub fn write_routes(store: Arc<AgentStore>) -> Router {
    Router::new()
        .route("/api/calm/v1/agents/heartbeat", post(heartbeat))
        .with_state(store)
}

/// `GET /api/calm/v1/agents` (to put behind the read tokens).
pub fn read_routes(store: Arc<AgentStore>) -> Router {
    Router::new()
        .route("/api/calm/v1/agents", get(list))
        .with_state(store)
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
}
