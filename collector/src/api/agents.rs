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
//! 400 {"detail": "..."}   not JSON, no string "id", more than 64 fields, a field
//!                         (other than a string, which is cut to 1024 bytes) over 1024
//!                         bytes of JSON
//! 403 {"detail": "..."}   the id was first sent with another agent token
//! 429 {"detail": "..."}   a new id while limits.max_agents agents are tracked
//! ```
//! Each agent id is bound to the agent token that first sent it (kept as a fingerprint,
//! never the token): another agent token cannot overwrite its row (an admin token can). Rows are bounded in number
//! (`limits.max_agents`) and size (64 fields of at most 1 KiB each).
//!
//! ```text
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
use serde_json::json;
use std::sync::Arc;

pub use crate::storage::agents::{
    token_fingerprint, AgentStats, AgentStore, Refused, MAX_AGENTS, MAX_FIELDS, MAX_FIELD_BYTES,
    MAX_HEARTBEAT_BYTES,
};

async fn heartbeat(
    State((store, stats)): State<(Arc<dyn AgentStore>, Arc<AgentStats>)>,
    caller: Option<axum::Extension<crate::auth::Caller>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    // The token was checked by the auth layer; an id is bound to the first agent token
    // that sends it. An admin token (or no auth at all) may write any row, binding none.
    let admin = caller.is_some_and(|c| c.0.admin);
    let owner = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .map(|(_, t)| token_fingerprint(t.trim()))
        .filter(|_| !admin);
    match crate::storage::agents::record_as(store.as_ref(), &stats, &body, owner, admin).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(Refused::Status(code, msg)) => {
            (code, axum::Json(json!({ "detail": msg }))).into_response()
        }
        Err(Refused::Storage(e)) => {
            let mut r = e.response(String::new());
            *r.body_mut() = axum::body::Body::from(json!({ "detail": e.to_string() }).to_string());
            r.headers_mut().insert(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/json"),
            );
            r
        }
    }
}

async fn list(State(store): State<Arc<dyn AgentStore>>) -> Response {
    match store.list().await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => e.response(format!("cannot read the fleet list: {e}\n")),
    }
}

/// `POST /api/calm/v1/agents/heartbeat` (to put behind the agent tokens); refusals
/// are counted in `stats`.
pub fn write_routes(store: Arc<dyn AgentStore>, stats: Arc<AgentStats>) -> Router {
    Router::new()
        .route("/api/calm/v1/agents/heartbeat", post(heartbeat))
        .with_state((store, stats))
}

/// `GET /api/calm/v1/agents` (to put behind the read tokens).
pub fn read_routes(store: Arc<dyn AgentStore>) -> Router {
    Router::new()
        .route("/api/calm/v1/agents", get(list))
        .with_state(store)
}
