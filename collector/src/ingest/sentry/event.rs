//! One event from payload to store: parse, normalise, group, summarise, store, and
//! count into `calm_error_events_total`. Also the legacy `store/` endpoint.

use super::limits::{Limited, Refusal};
use super::{auth, detail, SentryState};
use crate::errors::normalize::{normalize, Received};
use crate::errors::{grouping, summary};
use crate::storage::events::NewEvent;
use crate::storage::ErrorKind;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes as RawBytes;
use calm_wire::prompb::{Label, Sample, TimeSeries};
use calm_wire::sentry::event as wire_event;
use serde_json::{json, Map, Value};
use std::sync::atomic::Ordering;

/// The counter series written per stored event.
pub const METRIC: &str = "calm_error_events_total";

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

/// Stores one parsed event for `project`; returns its event id.
pub async fn ingest_event(
    st: &SentryState,
    project: u64,
    raw: Map<String, Value>,
    rx: Received,
) -> Result<String, Response> {
    let mut ev = normalize(raw, &rx);
    let hash = grouping::hash(&ev);
    let sum = summary::summarize(&ev);
    ev.insert("project".into(), json!(project));
    ev.insert("type".into(), sum.event_type.clone().into());
    ev.insert("title".into(), sum.title.clone().into());
    ev.insert("culprit".into(), sum.culprit.clone().into());
    ev.insert("metadata".into(), sum.metadata.clone());
    if let Some(l) = &sum.location {
        ev.insert("location".into(), l.clone().into());
    }
    ev.insert("hashes".into(), json!([hash]));
    let s = |k: &str| ev.get(k).and_then(Value::as_str).map(str::to_string);
    let user_key = ev.get("user").and_then(|u| {
        ["id", "email", "username", "ip_address"]
            .iter()
            .find_map(|k| {
                u.get(*k)
                    .and_then(Value::as_str)
                    .map(|v| format!("{k}:{v}"))
            })
    });
    let event_id = s("event_id").unwrap_or_default();
    let ts = ev.get("timestamp").and_then(Value::as_f64).unwrap_or(rx.at);
    let new = NewEvent {
        project_id: project,
        event_id: event_id.clone(),
        hash,
        timestamp_ms: (ts * 1000.0) as i64,
        received_ms: (rx.at * 1000.0) as i64,
        level: s("level").unwrap_or_else(|| "error".into()),
        environment: s("environment"),
        release: s("release"),
        platform: s("platform").unwrap_or_else(|| "other".into()),
        user_key,
        summary: sum,
        body: Value::Object(ev),
    };
    let (level, env) = (new.level.clone(), new.environment.clone());
    let done = match st.store.ingest(new).await {
        Ok(d) => d,
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
    let env = if done.overflow_environment {
        Some(crate::storage::events::OVERFLOW_ENVIRONMENT.to_string())
    } else {
        env
    };
    if !done.duplicate {
        let series = counter_series(
            project,
            done.issue_id,
            &level,
            env.as_deref(),
            done.series_count,
            done.series_ts_ms,
        );
        match st.sink.write(std::slice::from_ref(&series), None).await {
            Ok(s) if s.rejected > 0 => {
                tracing::warn!(errors = ?s.errors, "error counter sample refused")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot write the error counter series"),
        }
    }
    Ok(event_id)
}

/// `calm_error_events_total{environment,issue,level,project}` = `count` at `ts_ms`.
pub fn counter_series(
    project: u64,
    issue: u64,
    level: &str,
    env: Option<&str>,
    count: u64,
    ts_ms: i64,
) -> TimeSeries {
    let mut pairs: Vec<(&str, String)> = vec![("__name__", METRIC.to_string())];
    if let Some(e) = env.filter(|e| !e.is_empty()) {
        pairs.push(("environment", e.to_string()));
    }
    pairs.push(("issue", issue.to_string()));
    pairs.push(("level", level.to_string()));
    pairs.push(("project", project.to_string()));
    TimeSeries {
        labels: pairs
            .into_iter()
            .map(|(n, v)| Label {
                name: RawBytes::from(n.as_bytes().to_vec()),
                value: RawBytes::from(v.into_bytes()),
            })
            .collect(),
        samples: vec![Sample {
            value: count as f64,
            timestamp: ts_ms,
        }],
        ..Default::default()
    }
}
