//! `POST /api/{project_id}/envelope/`: split the envelope, store its events, count the
//! rest. One unknown item type never fails an envelope; a lying length or an event
//! that is not JSON does (400, nothing stored).

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
    let mut events = Vec::new();
    for (i, item) in env.items.iter().enumerate() {
        if item.ty != "event" {
            continue;
        }
        match wire_event::parse(item.payload, st.max_event_bytes) {
            Ok(m) => events.push(m),
            Err(e) => return detail(StatusCode::BAD_REQUEST, format!("item {i} (event): {e}")),
        }
    }
    for item in &env.items {
        st.stats.count(p.id, &item.ty);
    }
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
    match id {
        Some(id) => axum::Json(json!({ "id": id })).into_response(),
        None => axum::Json(json!({})).into_response(),
    }
}
