//! The path of one event, whatever the store: normalise → group → summarise → store
//! (the issue rules run inside the store, `issue.rs`) → hooks (the
//! `calm_error_events_total` sample). The HTTP handlers (`ingest/sentry/`) only
//! authenticate, limit, parse and turn the outcome into an answer.
//!
//! ```text
//! raw event ─normalize─▶ grouping::hash ─summary─▶ NewEvent ─EventStore::ingest─▶ Ingested
//!                                                        └─ not a duplicate ─▶ SampleSink: counter
//! ```

use super::normalize::{normalize, Received};
use super::{grouping, summary};
use crate::storage::events::{EventStore, Ingested, NewEvent, OVERFLOW_ENVIRONMENT};
use crate::storage::{SampleSink, StorageError};
use bytes::Bytes as RawBytes;
use calm_wire::prompb::{Label, Sample, TimeSeries};
use serde_json::{json, Map, Value};

/// The counter series written per stored event.
pub const METRIC: &str = "calm_error_events_total";

/// An event on its way to the store: normalised, grouped and summarised.
pub fn prepare(project: u64, raw: Map<String, Value>, rx: &Received) -> NewEvent {
    let mut ev = normalize(raw, rx);
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
    NewEvent {
        project_id: project,
        event_id,
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
    }
}

/// What [`ingest`] did with one event.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The event's id (32 hex digits).
    pub event_id: String,
    /// What the store did.
    pub ingested: Ingested,
}

/// Runs one parsed event for `project` through the pipeline: resolves once the store
/// has made it durable (the counter sample after it is best effort, logged when it
/// fails: the store's count stays exact and the next event writes the running total).
pub async fn ingest(
    store: &dyn EventStore,
    sink: &dyn SampleSink,
    project: u64,
    raw: Map<String, Value>,
    rx: &Received,
) -> Result<Outcome, StorageError> {
    let new = prepare(project, raw, rx);
    let event_id = new.event_id.clone();
    let (level, env) = (new.level.clone(), new.environment.clone());
    let done = store.ingest(new).await?;
    if !done.duplicate {
        let env = if done.overflow_environment {
            Some(OVERFLOW_ENVIRONMENT.to_string())
        } else {
            env
        };
        let series = counter_series(
            project,
            done.issue_id,
            &level,
            env.as_deref(),
            done.series_count,
            done.series_ts_ms,
        );
        match sink.write(std::slice::from_ref(&series), None).await {
            Ok(s) if s.rejected > 0 => {
                tracing::warn!(errors = ?s.errors, "error counter sample refused")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot write the error counter series"),
        }
    }
    Ok(Outcome {
        event_id,
        ingested: done,
    })
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
