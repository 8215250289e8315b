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
//! errors: 4xx/5xx {"detail": "..."}
//! ```

use crate::ingest::sentry::{detail, Reject, SentryState};
use crate::storage::events::{Issue, IssueQuery, IssueSort, IssueStatus};
use crate::storage::projects::dsn;
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

#[derive(Clone)]
struct ApiState {
    sentry: SentryState,
    listen: String,
}

/// The issues API routes; `listen` (`HOST:PORT`) is used to write DSNs.
pub fn routes(sentry: SentryState, listen: String) -> Router {
    Router::new()
        .route("/api/calm/v1/projects", get(projects))
        .route("/api/calm/v1/issues", get(list))
        .route("/api/calm/v1/issues/{id}", get(one).put(update))
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

fn internal(e: impl std::fmt::Display) -> Response {
    detail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
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

async fn update(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    let status = serde_json::from_slice::<Value>(&body).ok().and_then(|v| {
        v.get("status")
            .and_then(Value::as_str)
            .and_then(IssueStatus::parse)
    });
    let Some(status) = status else {
        return detail(
            StatusCode::BAD_REQUEST,
            "body must be JSON like {\"status\": \"resolved\"} (unresolved, resolved or ignored)",
        );
    };
    let now = chrono::Utc::now().timestamp_millis();
    match st.sentry.store.set_status(id, status, now).await {
        Ok(Some(i)) => Json(issue_json(&i)).into_response(),
        Ok(None) => detail(StatusCode::NOT_FOUND, format!("no issue {id}")),
        Err(e) => internal(e),
    }
}
