//! `/api/v1/rules` and `/api/v1/alerts` in Prometheus' shapes.
//!
//! ```text
//! GET|POST /api/v1/rules?type=alert|record&rule_name[]=…&rule_group[]=…&file[]=…
//! {"status":"success","data":{"groups":[{"name":"g","file":"r.yml","interval":15,
//!   "limit":0,"evaluationTime":0.001,"lastEvaluation":"2024-…Z","rules":[
//!   {"state":"firing","name":"Down","query":"up == 0","duration":60,"keepFiringFor":0,
//!    "labels":{…},"annotations":{…},"alerts":[…],"health":"ok",
//!    "evaluationTime":0.0002,"lastEvaluation":"…","type":"alerting"},
//!   {"name":"job:up","query":"sum by (job) (up)","health":"ok",
//!    "evaluationTime":…,"lastEvaluation":"…","type":"recording"}]}]}}
//! GET|POST /api/v1/alerts
//! {"status":"success","data":{"alerts":[{"labels":{…},"annotations":{…},
//!   "state":"pending","activeAt":"2024-…Z","value":"1e+00"}]}}
//! ```

use super::params::Params;
use super::{success, ApiError};
use crate::alerts::alert::{rfc3339, Alert, AlertState, ZERO_TIME};
use crate::alerts::gofmt::format_e_shortest;
use crate::alerts::manager::Manager;
use crate::alerts::rule::Rule;
use crate::alerts::rules::RuleKind;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use std::sync::Arc;

fn alert_json(a: &Alert) -> Value {
    let mut m = Map::new();
    m.insert("labels".into(), json!(a.labels));
    m.insert("annotations".into(), json!(a.annotations));
    m.insert("state".into(), json!(a.state.as_str()));
    m.insert("activeAt".into(), json!(rfc3339(a.active_at)));
    if let Some(k) = a.keep_firing_since {
        m.insert("keepFiringSince".into(), json!(rfc3339(k)));
    }
    m.insert("value".into(), json!(format_e_shortest(a.value)));
    Value::Object(m)
}

/// The active (pending or firing) alerts of a rule, sorted by labels.
fn active_alerts(r: &Rule) -> Vec<&Alert> {
    let mut v: Vec<&Alert> = r
        .active
        .values()
        .filter(|a| a.state != AlertState::Inactive)
        .collect();
    v.sort_by(|a, b| a.labels.cmp(&b.labels));
    v
}

/// Seconds as Go's encoding/json writes a float64: whole numbers without `.0`.
fn secs(ms: i64) -> Value {
    if ms % 1000 == 0 {
        json!(ms / 1000)
    } else {
        json!(ms as f64 / 1000.0)
    }
}

fn last_eval(ms: Option<i64>) -> Value {
    json!(ms.map(rfc3339).unwrap_or_else(|| ZERO_TIME.to_string()))
}

fn rule_json(r: &Rule) -> Value {
    let mut m = Map::new();
    match &r.spec.kind {
        RuleKind::Alerting {
            for_ms,
            keep_firing_for_ms,
            annotations,
        } => {
            m.insert("state".into(), json!(r.state().as_str()));
            m.insert("name".into(), json!(r.spec.name));
            m.insert("query".into(), json!(r.spec.expr.to_string()));
            m.insert("duration".into(), secs(*for_ms));
            m.insert("keepFiringFor".into(), secs(*keep_firing_for_ms));
            m.insert("labels".into(), json!(r.spec.labels));
            m.insert("annotations".into(), json!(annotations));
            m.insert(
                "alerts".into(),
                Value::Array(active_alerts(r).into_iter().map(alert_json).collect()),
            );
        }
        RuleKind::Recording => {
            m.insert("name".into(), json!(r.spec.name));
            m.insert("query".into(), json!(r.spec.expr.to_string()));
            if !r.spec.labels.is_empty() {
                m.insert("labels".into(), json!(r.spec.labels));
            }
        }
    }
    m.insert("health".into(), json!(r.health.as_str()));
    if let Some(e) = &r.last_error {
        m.insert("lastError".into(), json!(e));
    }
    m.insert("evaluationTime".into(), json!(r.eval_seconds));
    m.insert("lastEvaluation".into(), last_eval(r.last_eval_ms));
    m.insert(
        "type".into(),
        json!(if r.spec.is_alert() {
            "alerting"
        } else {
            "recording"
        }),
    );
    Value::Object(m)
}

/// `GET|POST /api/v1/rules`.
pub async fn rules(State(m): State<Arc<Manager>>, RawQuery(q): RawQuery, body: Bytes) -> Response {
    let p = Params::parse(q.as_deref(), &body);
    // Rule locks may be held by evaluations: wait on a blocking thread (see `alerts`).
    match tokio::task::spawn_blocking(move || rules_blocking(&m, &p)).await {
        Ok(r) => r,
        Err(e) => ApiError::internal(format!("cannot list the rules: {e}")).into_response(),
    }
}

fn rules_blocking(m: &Manager, p: &Params) -> Response {
    let (want_alert, want_record) = match p.get("type").map(str::to_ascii_lowercase).as_deref() {
        None | Some("") => (true, true),
        Some("alert") => (true, false),
        Some("record") => (false, true),
        Some(other) => {
            return ApiError::bad_data(format!(
                "invalid parameter \"type\": not supported value {other:?} (use alert or record)"
            ))
            .into_response()
        }
    };
    let names = p.all("rule_name[]");
    let groups_f = p.all("rule_group[]");
    let files = p.all("file[]");
    let mut out = Vec::new();
    for g in m.groups() {
        if !groups_f.is_empty() && !groups_f.contains(&g.name.as_str()) {
            continue;
        }
        if !files.is_empty() && !files.contains(&g.file.as_str()) {
            continue;
        }
        let mut rules = Vec::new();
        for r in &g.rules {
            let r = r.lock();
            if (r.spec.is_alert() && !want_alert) || (!r.spec.is_alert() && !want_record) {
                continue;
            }
            if !names.is_empty() && !names.contains(&r.spec.name.as_str()) {
                continue;
            }
            rules.push(rule_json(&r));
        }
        // Prometheus leaves out groups that filters emptied.
        if rules.is_empty() && (!names.is_empty() || !want_alert || !want_record) {
            continue;
        }
        out.push(json!({
            "name": g.name,
            "file": g.file,
            "rules": rules,
            "interval": secs(g.interval_ms),
            "limit": g.limit,
            "evaluationTime": *g.eval_seconds.lock(),
            "lastEvaluation": last_eval(*g.last_eval_ms.lock()),
        }));
    }
    success(json!({ "groups": out }))
}

/// `GET|POST /api/v1/alerts`.
pub async fn alerts(State(m): State<Arc<Manager>>) -> Response {
    // Each rule's lock may be held by its group's evaluation for a while: wait for
    // them on a blocking thread, never on the runtime's workers.
    let collected = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for g in m.groups() {
            for r in &g.rules {
                let r = r.lock();
                out.extend(active_alerts(&r).into_iter().map(alert_json));
            }
        }
        out
    })
    .await;
    match collected {
        Ok(out) => success(json!({ "alerts": out })),
        Err(e) => ApiError::internal(format!("cannot list the alerts: {e}")).into_response(),
    }
}

/// `POST /-/reload` (and `PUT`): reloads the rule files; 500 with every problem
/// (file:line: reason) when they are invalid, the previous rules kept running.
pub async fn reload(State(m): State<Arc<Manager>>) -> Response {
    match m.reload().await {
        Ok(n) => (
            axum::http::StatusCode::OK,
            format!("rule files reloaded: {n} rules\n"),
        )
            .into_response(),
        Err(errors) => {
            let list: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "failed to reload the rule files; the previous rules keep running:\n{}\n",
                    list.join("\n")
                ),
            )
                .into_response()
        }
    }
}

/// The routes (the caller adds auth).
pub fn routes(m: Arc<Manager>) -> axum::Router {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/api/v1/rules", get(rules).post(rules))
        .route("/api/v1/alerts", get(alerts).post(alerts))
        .route("/-/reload", post(reload).put(reload))
        .with_state(m)
}
