//! The relay's handlers: check what the SDK sent just enough that the collector will
//! take it, put it durably in the spool, answer at once.
//!
//! ```text
//! POST /api/{project_id}/envelope/   application/x-sentry-envelope (gzip/deflate ok)
//! POST /api/{project_id}/store/      one event as JSON (legacy)
//!
//! 200 {"id": "<event_id>"}   durably spooled; shipped to the collector later
//! 400 {"detail": "..."}      malformed envelope, lying item length, event not JSON
//! 401 {"detail": "..."}      no DSN key anywhere (X-Sentry-Auth, Authorization, ?sentry_key, envelope dsn),
//!                            or a key no project has (once the keys are known: see keys.rs)
//! 403 {"detail": "..."}      the key of another project
//! 404 {"detail": "..."}      project id that is not a number
//! 413 {"detail": "..."}      entry larger than the whole spool
//! 429 {"detail": "..."}      Retry-After + X-Sentry-Rate-Limits: the project is over its rate
//!                            here, or the collector limits it
//! 503 {"detail": "..."}      the spool cannot write (disk); Retry-After
//! ```
//! Keys are checked against the list fetched from the collector ([`super::keys`]);
//! until that list was ever known, the collector checks them when the event is shipped.

use super::entry::{Endpoint, EventEntry};
use super::limits::Limits;
use crate::spool::{EntryKind, Spool, SpoolError};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use calm_wire::sentry::envelope::{self, EnvelopeLimits};
use calm_wire::sentry::rate_limits::{retry_after_secs, RateLimit};
use calm_wire::sentry::{auth, event as wire_event, ids};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Largest event payload accepted (bytes, after decompression), as the collector's.
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// What the relay handlers share.
#[derive(Clone)]
pub struct RelayState {
    /// Where accepted requests go.
    pub spool: Arc<Spool>,
    /// Per-project limits (own bucket and the collector's).
    pub limits: Arc<Limits>,
    /// Wakes the shipper.
    pub wake: Arc<tokio::sync::Notify>,
    /// Counters for `/metrics`.
    pub stats: Arc<RelayStats>,
    /// The projects' DSN keys as last fetched from the collector.
    pub keys: Arc<super::keys::Keys>,
}

/// The relay's counters.
#[derive(Default, Debug)]
pub struct RelayStats {
    /// Requests accepted into the spool.
    pub accepted: AtomicU64,
    /// Requests answered 429.
    pub rate_limited: AtomicU64,
    /// Requests refused as invalid (4xx other than 429).
    pub invalid: AtomicU64,
}

fn detail(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, axum::Json(json!({ "detail": msg.into() }))).into_response()
}

impl RelayState {
    fn invalid(&self, code: StatusCode, msg: impl Into<String>) -> Response {
        self.stats.invalid.fetch_add(1, Ordering::Relaxed);
        detail(code, msg)
    }
}

/// The request's project id and the SDK's credentials as they came (the auth header
/// value to forward, empty when the key is in the query or the envelope's `dsn`),
/// checked readable; or the status and detail refusing the request.
fn addressed(
    path_project: &str,
    headers: &HeaderMap,
    query: Option<&str>,
    envelope_dsn: Option<&str>,
    keys: &super::keys::Keys,
) -> Result<(u64, String), (StatusCode, String)> {
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let found = auth::find(h, query, envelope_dsn)
        .map_err(|e| (StatusCode::UNAUTHORIZED, e.to_string()))?;
    let project =
        ids::project_id(path_project).map_err(|e| (StatusCode::NOT_FOUND, e.to_string()))?;
    // The collector's verdicts and words (ingest/sentry/auth.rs).
    match keys.check(found.public_key(), project) {
        Ok(()) => {}
        Err(super::keys::Refusal::Unknown) => {
            return Err((
                StatusCode::UNAUTHORIZED,
                "invalid DSN key: no project has this public key".into(),
            ))
        }
        Err(super::keys::Refusal::OtherProject(owner)) => {
            return Err((
                StatusCode::FORBIDDEN,
                format!("this DSN key belongs to project {owner}, not {project}"),
            ))
        }
    }
    let header = auth::auth_header(h).map_or("", |(v, _)| v);
    if header.len() > 4096 || query.is_some_and(|q| q.len() > 4096) {
        return Err((
            StatusCode::BAD_REQUEST,
            "auth header or query string longer than 4096 bytes".into(),
        ));
    }
    Ok((project, header.to_string()))
}

async fn accept(st: &RelayState, entry: EventEntry, id: Option<String>) -> Response {
    if let Err(wait) = st.limits.admit(entry.project) {
        st.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
        let secs = retry_after_secs(wait);
        let limit = RateLimit {
            retry_after: secs,
            categories: "",
            scope: "project",
            reason: None,
        };
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [
                ("Retry-After", secs.to_string()),
                ("X-Sentry-Rate-Limits", limit.to_string()),
            ],
            axum::Json(json!({
                "detail": format!("project {} is over its event rate; retry in {secs} s", entry.project)
            })),
        )
            .into_response();
    }
    match st
        .spool
        .push_durable(EntryKind::Event, &entry.encode())
        .await
    {
        Ok(_) => {
            st.stats.accepted.fetch_add(1, Ordering::Relaxed);
            st.wake.notify_one();
            match id {
                Some(id) => axum::Json(json!({ "id": id })).into_response(),
                None => axum::Json(json!({})).into_response(),
            }
        }
        Err(e @ SpoolError::TooLarge(..)) => {
            st.invalid(StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot spool a Sentry request");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [("Retry-After", "5")],
                axum::Json(json!({ "detail": format!("the agent cannot store the event now ({e}); retry later") })),
            )
                .into_response()
        }
    }
}

/// `POST /api/{project_id}/envelope/`.
pub async fn envelope_handle(
    State(st): State<RelayState>,
    Path(project): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let env = match envelope::parse(&body, &EnvelopeLimits::default()) {
        Ok(e) => e,
        Err(e) => return st.invalid(StatusCode::BAD_REQUEST, format!("malformed envelope: {e}")),
    };
    let (project, auth) = match addressed(&project, &headers, query.as_deref(), env.dsn(), &st.keys)
    {
        Ok(a) => a,
        Err((code, msg)) => return st.invalid(code, msg),
    };
    for (i, item) in env.items.iter().enumerate() {
        if item.ty == "event" {
            if let Err(e) = wire_event::parse(item.payload, MAX_EVENT_BYTES) {
                return st.invalid(StatusCode::BAD_REQUEST, format!("item {i} (event): {e}"));
            }
        }
    }
    let id = env.event_id().map(str::to_string);
    let entry = EventEntry {
        endpoint: Endpoint::Envelope,
        project,
        auth,
        query: query.unwrap_or_default(),
        body: body.to_vec(),
    };
    accept(&st, entry, id).await
}

/// `POST /api/{project_id}/store/`.
pub async fn store_handle(
    State(st): State<RelayState>,
    Path(project): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (project, auth) = match addressed(&project, &headers, query.as_deref(), None, &st.keys) {
        Ok(a) => a,
        Err((code, msg)) => return st.invalid(code, msg),
    };
    let event = match wire_event::parse(&body, MAX_EVENT_BYTES) {
        Ok(m) => m,
        Err(e) => return st.invalid(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let id = event
        .get("event_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    let entry = EventEntry {
        endpoint: Endpoint::Store,
        project,
        auth,
        query: query.unwrap_or_default(),
        body: body.to_vec(),
    };
    accept(&st, entry, id).await
}
