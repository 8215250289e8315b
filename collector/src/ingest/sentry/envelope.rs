//! `POST /api/{project_id}/envelope/`: split the envelope, store its events, count the
//! rest. One unknown item type never fails an envelope; a lying length does (400,
//! nothing stored). An `event` item that is not a valid event is dropped and counted,
//! as Sentry's Relay does, and the answer names it:
//!
//! ```text
//! 200 {"id": "...", "discarded": [{"item": 0, "type": "event", "reason": "invalid_event", "detail": "..."}]}
//! ```
//! Only when nothing usable is left (every item was an invalid event) is the envelope
//! refused with 400, so that an SDK that sends broken events hears about it.
//! Before any event is parsed the project's and the collector's rate limits admit the
//! envelope's events or answer 429 (see `limits`).

use super::event::{ingest_event, now_secs};
use super::{auth, detail, SentryState};
use crate::errors::normalize::Received;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use calm_wire::sentry::envelope::{self, EnvelopeLimits};
use calm_wire::sentry::event as wire_event;
use serde_json::{json, Value};

/// The reason an invalid event item is counted under.
pub const INVALID_EVENT: &str = "invalid_event";

/// The envelope handler.
pub async fn handle(
    State(st): State<SentryState>,
    Path(project): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let first_line = body.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let header_dsn = serde_json::from_slice::<Value>(first_line)
        .ok()
        .and_then(|h| h.get("dsn").and_then(Value::as_str).map(str::to_string));
    let p = match auth::authenticate(
        &st.projects,
        &project,
        &headers,
        query.as_deref(),
        header_dsn.as_deref(),
    ) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let env = match envelope::parse(&body, &EnvelopeLimits::default()) {
        Ok(e) => e,
        Err(e) => return detail(StatusCode::BAD_REQUEST, format!("malformed envelope: {e}")),
    };
    for item in &env.items {
        st.stats.count(p.id, &item.ty);
    }
    let n_events = env.items.iter().filter(|i| i.ty == "event").count();
    if let Err(limited) = st.limits.admit(p.id, n_events) {
        st.stats
            .discard(limited.why.reason(), "event", n_events as u64);
        return limited.response();
    }
    let mut events = Vec::new();
    let mut discarded = Vec::new();
    for (i, item) in env.items.iter().enumerate() {
        if item.ty != "event" {
            continue;
        }
        match wire_event::parse(item.payload, st.max_event_bytes) {
            Ok(m) => events.push(m),
            Err(e) => discarded.push((i, e.to_string())),
        }
    }
    if !discarded.is_empty() && discarded.len() == env.items.len() {
        let (i, e) = &discarded[0];
        return detail(
            StatusCode::BAD_REQUEST,
            format!("item {i} (event): {e}; nothing else in the envelope to take"),
        );
    }
    st.stats
        .discard(INVALID_EVENT, "event", discarded.len() as u64);
    let rx = Received {
        at: now_secs(),
        envelope_event_id: env.event_id().map(str::to_string),
        client_ip: auth::client_ip(&headers),
    };
    let mut id = rx.envelope_event_id.clone();
    for raw in events {
        match ingest_event(&st, p.id, raw, rx.clone()).await {
            Ok(eid) => id = Some(eid),
            Err(r) => return r,
        }
    }
    let mut answer = serde_json::Map::new();
    if let Some(id) = id {
        answer.insert("id".into(), id.into());
    }
    if !discarded.is_empty() {
        let list: Vec<Value> = discarded
            .iter()
            .map(|(i, e)| json!({"item": i, "type": "event", "reason": INVALID_EVENT, "detail": e}))
            .collect();
        answer.insert("discarded".into(), Value::Array(list));
    }
    axum::Json(Value::Object(answer)).into_response()
}
