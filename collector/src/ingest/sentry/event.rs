//! The HTTP side of one event: the legacy `store/` endpoint, and [`ingest_event`]
//! (shared with envelopes), which runs the error pipeline (`errors/pipeline.rs`:
//! normalise, group, store, count) and turns its outcome into counters and an answer.

use super::limits::{Limited, Refusal};
use super::{auth, detail, SentryState};
use crate::errors::normalize::Received;
use crate::errors::pipeline;
use crate::storage::ErrorKind;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use calm_wire::sentry::event as wire_event;
use serde_json::{json, Map, Value};
use std::sync::atomic::Ordering;

/// The counter series written per stored event.
pub use pipeline::METRIC;

/// `POST /api/{project_id}/store/`: one event as JSON.
pub async fn store_handle(
    State(st): State<SentryState>,
    Path(project): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = match auth::authenticate(&st.projects, &project, &headers, query.as_deref(), None) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    st.stats.count(p.id, "event");
    if let Err(limited) = st.limits.admit(p.id, 1) {
        st.stats.discard(limited.why.reason(), "event", 1);
        return limited.response();
    }
    let raw = match wire_event::parse(&body, st.max_event_bytes) {
        Ok(m) => m,
        Err(e) => return detail(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let rx = Received {
        at: now_secs(),
        envelope_event_id: None,
        client_ip: auth::client_ip(&headers),
    };
    match ingest_event(&st, p.id, raw, rx).await {
        Ok(id) => axum::Json(json!({ "id": id })).into_response(),
        Err(r) => r,
    }
}

/// Seconds since the epoch, now.
pub fn now_secs() -> f64 {
    chrono::Utc::now().timestamp_micros() as f64 / 1e6
}

/// Stores one parsed event for `project` through the error pipeline
/// ([`crate::errors::pipeline`]); returns its event id, or the answer for a refusal.
pub async fn ingest_event(
    st: &SentryState,
    project: u64,
    raw: Map<String, Value>,
    rx: Received,
) -> Result<String, Response> {
    let out = match pipeline::ingest(&*st.store, &*st.sink, project, raw, &rx).await {
        Ok(o) => o,
        Err(e) if e.kind() == ErrorKind::Busy => {
            st.stats.discard(Refusal::Overloaded.reason(), "event", 1);
            return Err(Limited::overloaded(e.to_string()).response());
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot store a Sentry event");
            let mut resp = detail(e.status(), format!("cannot store the event: {e}"));
            // A storage error (a full disk) passes once space is back: say when to retry.
            if let Some(s) = e.retry_after() {
                resp.headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, s.into());
            }
            return Err(resp);
        }
    };
    let done = &out.ingested;
    if done.duplicate {
        st.stats.events_duplicate.fetch_add(1, Ordering::Relaxed);
    } else {
        st.stats.events_stored.fetch_add(1, Ordering::Relaxed);
        if !done.body_stored {
            st.stats.bodies_sampled_out.fetch_add(1, Ordering::Relaxed);
        }
    }
    if done.overflow_issue {
        st.stats.issues_overflowed.fetch_add(1, Ordering::Relaxed);
    }
    if done.overflow_environment {
        st.stats
            .environments_overflowed
            .fetch_add(1, Ordering::Relaxed);
    }
    Ok(out.event_id)
}
