//! The issues API: errors grouped into issues, their events, and triage.
//!
//! ```text
//! GET /api/calm/v1/projects                  projects with their DSNs (admin; else the
//!                                            key masked, dsn null) and item counts
//! GET /api/calm/v1/issues?project=&status=&environment=&release=&query=&sort=&limit=&cursor=
//!     sort: last_seen (default) | first_seen | count; 200 {"data": [...], "nextCursor": ...}
//! GET /api/calm/v1/issues/{id}               200 issue | 404
//! GET /api/calm/v1/issues/{id}/events?limit=&cursor=   newest first
//! PUT /api/calm/v1/issues/{id}  {"status": "resolved" | "unresolved" | "ignored"}
//! PUT /api/calm/v1/issues?id=1&id=2…  {"status": …}   bulk (at most MAX_BULK_IDS ids):
//!     200 {"status": …, "changed": ["1"], "unchanged": [...], "notFound": [...]}
//! GET /api/calm/v1/issues/{id}/tags?limit=   per tag key: {"key", "name", "totalValues",
//!     "uniqueValues", "topValues": [{"key", "name", "value", "count", "firstSeen",
//!     "lastSeen"}]} (most frequent first, `limit` values per key, default 10)
//! GET /api/calm/v1/issues/{id}/tags/{key}    one key with all its values | 404
//! errors: 4xx/5xx {"detail": "..."}
//! ```

use crate::ingest::sentry::{detail, Reject, SentryState};
use crate::storage::events::{Issue, IssueQuery, IssueSort, IssueStatus, TagCounts};
use crate::storage::projects::dsn;
use crate::storage::StorageError;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use calm_wire::sentry::timestamp;
use serde_json::{json, Value};
use std::collections::HashMap;

/// Default and largest page sizes.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;
/// Most issue ids one bulk status change may name (Sentry's bulk-mutation limit).
pub const MAX_BULK_IDS: usize = 1000;
/// Values per key `GET …/tags` shows by default.
const DEFAULT_TAG_VALUES: usize = 10;

#[derive(Clone)]
struct ApiState {
    sentry: SentryState,
    listen: String,
}

/// The issues API routes; `listen` (`HOST:PORT`) is used to write DSNs.
pub fn routes(sentry: SentryState, listen: String) -> Router {
    Router::new()
        .route("/api/calm/v1/projects", get(projects))
        .route("/api/calm/v1/issues", get(list).put(bulk_update))
        .route("/api/calm/v1/issues/{id}", get(one).put(update))
        .route("/api/calm/v1/issues/{id}/tags", get(tags))
        .route("/api/calm/v1/issues/{id}/tags/{key}", get(tag))
        .route("/api/calm/v1/issues/{id}/events", get(events))
        .with_state(ApiState { sentry, listen })
}

/// An issue as the API shows it.
pub fn issue_json(i: &Issue) -> Value {
    let t = |ms: i64| timestamp::format(ms as f64 / 1000.0);
    json!({
        "id": i.id.to_string(),
        "project": i.project_id,
        "title": i.title,
        "culprit": i.culprit,
        "type": i.event_type,
        "metadata": i.metadata,
        "level": i.level,
        "platform": i.platform,
        "status": i.status,
        "firstSeen": t(i.first_seen_ms),
        "lastSeen": t(i.last_seen_ms),
        "count": i.count,
        "userCount": i.user_count,
        "environments": i.environments,
        "releases": i.releases,
        "firstRelease": i.first_release,
        "lastRelease": i.last_release,
        "lastEventId": i.last_event_id,
        "isRegression": i.regressed,
        "timesRegressed": i.times_regressed,
        "lastRegressed": i.last_regressed_ms.map(t),
        "hash": i.hash,
    })
}

/// Projects; their DSN keys only for an admin (or with auth off), else masked.
async fn projects(
    State(st): State<ApiState>,
    caller: Option<axum::Extension<crate::auth::Caller>>,
) -> Response {
    let admin = caller.is_some_and(|c| c.admin);
    let list: Vec<Value> = st
        .sentry
        .projects
        .list()
        .iter()
        .map(|p| {
            let (key, dsn) = if admin {
                (p.public_key.clone(), Value::from(dsn(p, &st.listen)))
            } else {
                (crate::secrets::mask_key(&p.public_key), Value::Null)
            };
            json!({
                "id": p.id,
                "name": p.name,
                "public_key": key,
                "dsn": dsn,
                "items_received": st.sentry.stats.of(p.id),
            })
        })
        .collect();
    Json(json!({ "data": list })).into_response()
}

fn parse_id(id: &str) -> Result<u64, Reject> {
    id.parse().map_err(|_| {
        Reject::new(
            StatusCode::BAD_REQUEST,
            format!("issue id {id:?} is not a number"),
        )
    })
}

fn limit(q: &HashMap<String, String>, default: usize) -> Result<usize, Reject> {
    match q.get("limit") {
        None => Ok(default),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(Reject::new(
                StatusCode::BAD_REQUEST,
                format!("limit must be a number from 1 to {MAX_LIMIT}"),
            )),
        },
    }
}

fn query_of(q: &HashMap<String, String>) -> Result<IssueQuery, Reject> {
    let bad = |m: String| Reject::new(StatusCode::BAD_REQUEST, m);
    let project_id = match q.get("project") {
        Some(p) => Some(
            p.parse()
                .map_err(|_| bad(format!("project {p:?} is not a number")))?,
        ),
        None => None,
    };
    let status = match q.get("status").map(String::as_str) {
        None | Some("") | Some("all") => None,
        Some(s) => Some(
            IssueStatus::parse(s)
                .ok_or_else(|| bad(format!("status {s:?}: use unresolved, resolved or ignored")))?,
        ),
    };
    let sort = match q.get("sort").map(String::as_str) {
        None | Some("last_seen") | Some("date") => IssueSort::LastSeen,
        Some("first_seen") | Some("new") => IssueSort::FirstSeen,
        Some("count") | Some("freq") => IssueSort::Count,
        Some(s) => {
            return Err(bad(format!(
                "sort {s:?}: use last_seen, first_seen or count"
            )))
        }
    };
    let non_empty = |k: &str| q.get(k).filter(|v| !v.is_empty()).cloned();
    Ok(IssueQuery {
        project_id,
        status,
        environment: non_empty("environment"),
        release: non_empty("release"),
        text: non_empty("query"),
        sort,
        limit: limit(q, DEFAULT_LIMIT)?,
        cursor: non_empty("cursor"),
    })
}

/// A store failure: its status (503/429 with Retry-After when a retry can succeed,
/// else 500) and `{"detail": …}`.
fn internal(e: StorageError) -> Response {
    let mut r = e.response(json!({ "detail": e.to_string() }).to_string());
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    r
}

async fn list(State(st): State<ApiState>, Query(q): Query<HashMap<String, String>>) -> Response {
    let query = match query_of(&q) {
        Ok(q) => q,
        Err(r) => return r.into_response(),
    };
    match st.sentry.store.issues(query).await {
        Ok(page) => {
            let data: Vec<Value> = page.issues.iter().map(issue_json).collect();
            Json(json!({ "data": data, "nextCursor": page.next_cursor })).into_response()
        }
        Err(e) => internal(e),
    }
}

async fn one(State(st): State<ApiState>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    match st.sentry.store.issue(id).await {
        Ok(Some(i)) => Json(issue_json(&i)).into_response(),
        Ok(None) => detail(StatusCode::NOT_FOUND, format!("no issue {id}")),
        Err(e) => internal(e),
    }
}

async fn events(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    let limit = match limit(&q, 50) {
        Ok(l) => l,
        Err(r) => return r.into_response(),
    };
    match st.sentry.store.issue(id).await {
        Ok(Some(_)) => {}
        Ok(None) => return detail(StatusCode::NOT_FOUND, format!("no issue {id}")),
        Err(e) => return internal(e),
    }
    match st
        .sentry
        .store
        .events(id, limit, q.get("cursor").cloned())
        .await
    {
        Ok(page) => {
            let mut data = page.events;
            for e in &mut data {
                if let Some(m) = e.as_object_mut() {
                    m.insert("issue".into(), id.to_string().into());
                }
            }
            Json(json!({ "data": data, "nextCursor": page.next_cursor })).into_response()
        }
        Err(e) => internal(e),
    }
}

/// One tag key as Sentry's `issues/{id}/tags/` shows it, with at most `limit` values.
pub fn tag_json(t: &TagCounts, limit: usize) -> Value {
    let ts = |ms: i64| timestamp::format(ms as f64 / 1000.0);
    let top: Vec<Value> = t
        .values
        .iter()
        .take(limit)
        .map(|v| {
            json!({
                "key": t.key,
                "name": v.value,
                "value": v.value,
                "count": v.count,
                "firstSeen": ts(v.first_seen_ms),
                "lastSeen": ts(v.last_seen_ms),
            })
        })
        .collect();
    json!({
        "key": t.key,
        "name": t.key,
        "totalValues": t.total(),
        "uniqueValues": t.values.len(),
        "topValues": top,
    })
}

/// Why an issue's tags cannot be shown.
enum TagsError {
    /// A bad id or no such issue.
    Bad(Reject),
    /// The store failed.
    Store(StorageError),
}

impl IntoResponse for TagsError {
    fn into_response(self) -> Response {
        match self {
            TagsError::Bad(r) => r.into_response(),
            TagsError::Store(e) => internal(e),
        }
    }
}

/// The issue's tag counts, or why not (bad id, no issue, failure).
async fn tag_counts(st: &ApiState, id: &str) -> Result<Vec<TagCounts>, TagsError> {
    let id = parse_id(id).map_err(TagsError::Bad)?;
    match st.sentry.store.issue(id).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return Err(TagsError::Bad(Reject::new(
                StatusCode::NOT_FOUND,
                format!("no issue {id}"),
            )))
        }
        Err(e) => return Err(TagsError::Store(e)),
    }
    st.sentry.store.tags(id).await.map_err(TagsError::Store)
}

async fn tags(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let limit = match limit(&q, DEFAULT_TAG_VALUES) {
        Ok(l) => l,
        Err(r) => return r.into_response(),
    };
    match tag_counts(&st, &id).await {
        Ok(list) => Json(Value::Array(
            list.iter().map(|t| tag_json(t, limit)).collect(),
        ))
        .into_response(),
        Err(r) => r.into_response(),
    }
}

async fn tag(State(st): State<ApiState>, Path((id, key)): Path<(String, String)>) -> Response {
    match tag_counts(&st, &id).await {
        Ok(list) => match list.iter().find(|t| t.key == key) {
            Some(t) => Json(tag_json(t, usize::MAX)).into_response(),
            None => detail(
                StatusCode::NOT_FOUND,
                format!("issue {id} has no tag {key:?}"),
            ),
        },
        Err(r) => r.into_response(),
    }
}

/// The status a PUT body asks for.
fn status_of(body: &[u8]) -> Result<IssueStatus, Reject> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v.get("status")
                .and_then(Value::as_str)
                .and_then(IssueStatus::parse)
        })
        .ok_or_else(|| {
            Reject::new(
                StatusCode::BAD_REQUEST,
                "body must be JSON like {\"status\": \"resolved\"} (unresolved, resolved or ignored)",
            )
        })
}

/// `PUT /api/calm/v1/issues?id=1&id=2…`: the status of several issues at once.
async fn bulk_update(
    State(st): State<ApiState>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    body: axum::body::Bytes,
) -> Response {
    let mut ids = Vec::new();
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if k != "id" {
            continue;
        }
        match parse_id(&v) {
            Ok(id) => ids.push(id),
            Err(r) => return r.into_response(),
        }
    }
    if ids.is_empty() {
        return detail(
            StatusCode::BAD_REQUEST,
            "name the issues to change: PUT /api/calm/v1/issues?id=1&id=2",
        );
    }
    if ids.len() > MAX_BULK_IDS {
        return detail(
            StatusCode::BAD_REQUEST,
            format!(
                "{} issue ids: at most {MAX_BULK_IDS} per request (bulk id limit)",
                ids.len()
            ),
        );
    }
    let status = match status_of(&body) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let now = chrono::Utc::now().timestamp_millis();
    let strs = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>();
    match st.sentry.store.set_statuses(ids, status, now).await {
        Ok(b) => Json(json!({
            "status": status,
            "changed": strs(&b.changed),
            "unchanged": strs(&b.unchanged),
            "notFound": strs(&b.missing),
        }))
        .into_response(),
        Err(e) => internal(e),
    }
}

async fn update(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    let status = match status_of(&body) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let now = chrono::Utc::now().timestamp_millis();
    match st.sentry.store.set_status(id, status, now).await {
        Ok(Some(i)) => Json(issue_json(&i)).into_response(),
        Ok(None) => detail(StatusCode::NOT_FOUND, format!("no issue {id}")),
        Err(e) => internal(e),
    }
}
