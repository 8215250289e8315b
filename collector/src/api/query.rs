//! `/api/v1/query` and `/api/v1/query_range`.
//!
//! Until the PromQL engine lands, these answer the two expressions the storage can
//! answer directly, with Prometheus 3 semantics:
//!
//! ```text
//! metric{l="v"}        instant: newest sample in (t − 5m, t], unless it is a stale marker
//!                      range:   the same at start, start+step, …, end
//! metric{l="v"}[5m]    instant only: every sample in (t − 5m, t] (stale markers left out)
//! ```
//! Anything else gets a `bad_data` error that says so.

use super::params::{parse_duration, parse_time, to_matchers, Params};
use super::{format_time, format_value, labels_json, success, ApiError};
use crate::tsdb::Db;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use calm_wire::value::is_stale_nan;
use promql_parser::parser::{Expr, VectorSelector};
use serde_json::{json, Value};
use std::sync::Arc;

/// Prometheus' default lookback delta.
pub const LOOKBACK_MS: i64 = 5 * 60 * 1000;
/// Most points a range query may return per series.
pub const MAX_POINTS: i64 = 11_000;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

enum Selector {
    Vector(VectorSelector),
    Matrix(VectorSelector, i64),
}

fn parse(q: &str) -> Result<Selector, ApiError> {
    let expr = promql_parser::parser::parse(q)
        .map_err(|e| ApiError::bad_data(format!("invalid parameter \"query\": {e}")))?;
    let expr = match expr {
        Expr::Paren(p) => *p.expr,
        e => e,
    };
    match expr {
        Expr::VectorSelector(vs) => Ok(Selector::Vector(vs)),
        Expr::MatrixSelector(ms) => Ok(Selector::Matrix(ms.vs, ms.range.as_millis() as i64)),
        _ => Err(ApiError::bad_data(
            "this collector answers plain vector and range selectors only (the PromQL engine is not built yet)",
        )),
    }
}

fn offsets(vs: &VectorSelector) -> Result<i64, ApiError> {
    if vs.at.is_some() {
        return Err(ApiError::bad_data("the @ modifier is not supported yet"));
    }
    Ok(match &vs.offset {
        None => 0,
        Some(promql_parser::parser::Offset::Pos(d)) => d.as_millis() as i64,
        Some(promql_parser::parser::Offset::Neg(d)) => -(d.as_millis() as i64),
    })
}

fn db_err(e: crate::tsdb::DbError) -> ApiError {
    match e {
        crate::tsdb::DbError::TooManySamples(_) => ApiError::execution(e.to_string()),
        other => ApiError::internal(other.to_string()),
    }
}

/// Newest sample at or before `t` within the lookback, unless stale.
fn value_at(samples: &[(i64, f64)], t: i64) -> Option<f64> {
    let idx = samples.partition_point(|s| s.0 <= t);
    let (st, v) = *samples.get(idx.checked_sub(1)?)?;
    (st > t - LOOKBACK_MS && !is_stale_nan(v)).then_some(v)
}

/// `GET|POST /api/v1/query`.
pub async fn instant(State(db): State<Arc<Db>>, RawQuery(q): RawQuery, body: Bytes) -> Response {
    let p = Params::parse(q.as_deref(), &body);
    match instant_inner(&db, &p).await {
        Ok(v) => success(v),
        Err(e) => e.into_response(),
    }
}

async fn instant_inner(db: &Arc<Db>, p: &Params) -> Result<Value, ApiError> {
    let q = p
        .get("query")
        .ok_or_else(|| ApiError::bad_data("invalid parameter \"query\": missing"))?;
    let t = match p.get("time") {
        Some(s) => parse_time(s)?,
        None => now_ms(),
    };
    let sel = parse(q)?;
    let db = db.clone();
    tokio::task::spawn_blocking(move || -> Result<Value, ApiError> {
        match sel {
            Selector::Vector(vs) => {
                let off = offsets(&vs)?;
                let ms = to_matchers(vs.name.as_deref(), &vs.matchers)?;
                let at = t - off;
                let series = db.select(&ms, at - LOOKBACK_MS + 1, at).map_err(db_err)?;
                let result: Vec<Value> = series
                    .iter()
                    .filter_map(|s| {
                        value_at(&s.samples, at).map(|v| {
                            json!({"metric": labels_json(&s.labels), "value": [format_time(t), format_value(v)]})
                        })
                    })
                    .collect();
                Ok(json!({"resultType": "vector", "result": result}))
            }
            Selector::Matrix(vs, range) => {
                let off = offsets(&vs)?;
                let ms = to_matchers(vs.name.as_deref(), &vs.matchers)?;
                let at = t - off;
                // Left-open range, as in Prometheus 3.
                let series = db.select(&ms, at - range + 1, at).map_err(db_err)?;
                let result: Vec<Value> = series
                    .iter()
                    .filter_map(|s| {
                        let values: Vec<Value> = s
                            .samples
                            .iter()
                            .filter(|(_, v)| !is_stale_nan(*v))
                            .map(|(st, v)| json!([format_time(*st), format_value(*v)]))
                            .collect();
                        (!values.is_empty()).then(|| json!({"metric": labels_json(&s.labels), "values": values}))
                    })
                    .collect();
                Ok(json!({"resultType": "matrix", "result": result}))
            }
        }
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
}

/// `GET|POST /api/v1/query_range`.
pub async fn range(State(db): State<Arc<Db>>, RawQuery(q): RawQuery, body: Bytes) -> Response {
    let p = Params::parse(q.as_deref(), &body);
    match range_inner(&db, &p).await {
        Ok(v) => success(v),
        Err(e) => e.into_response(),
    }
}

async fn range_inner(db: &Arc<Db>, p: &Params) -> Result<Value, ApiError> {
    let q = p
        .get("query")
        .ok_or_else(|| ApiError::bad_data("invalid parameter \"query\": missing"))?;
    let start = parse_time(p.get("start").ok_or_else(|| ApiError::bad_data("invalid parameter \"start\": missing"))?)?;
    let end = parse_time(p.get("end").ok_or_else(|| ApiError::bad_data("invalid parameter \"end\": missing"))?)?;
    let step = parse_duration(p.get("step").ok_or_else(|| ApiError::bad_data("invalid parameter \"step\": missing"))?)?;
    if end < start {
        return Err(ApiError::bad_data("invalid parameter \"end\": end timestamp must not be before start time"));
    }
    if step <= 0 {
        return Err(ApiError::bad_data(
            "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    if (end - start) / step > MAX_POINTS {
        return Err(ApiError::bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ));
    }
    let Selector::Vector(vs) = parse(q)? else {
        return Err(ApiError::bad_data(
            "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector",
        ));
    };
    let db = db.clone();
    tokio::task::spawn_blocking(move || -> Result<Value, ApiError> {
        let off = offsets(&vs)?;
        let ms = to_matchers(vs.name.as_deref(), &vs.matchers)?;
        let series = db
            .select(&ms, start - off - LOOKBACK_MS + 1, end - off)
            .map_err(db_err)?;
        let mut result = Vec::new();
        for s in &series {
            let mut values = Vec::new();
            let mut t = start;
            while t <= end {
                if let Some(v) = value_at(&s.samples, t - off) {
                    values.push(json!([format_time(t), format_value(v)]));
                }
                t += step;
            }
            if !values.is_empty() {
                result.push(json!({"metric": labels_json(&s.labels), "values": values}));
            }
        }
        Ok(json!({"resultType": "matrix", "result": result}))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookback_and_staleness() {
        let s = vec![(1000, 1.0), (2000, calm_wire::value::stale_nan()), (400_000, 3.0)];
        assert_eq!(value_at(&s, 1500), Some(1.0));
        assert_eq!(value_at(&s, 2500), None);
        assert_eq!(value_at(&s, 500), None);
        assert_eq!(value_at(&s, 400_000 + LOOKBACK_MS - 1), Some(3.0));
        assert_eq!(value_at(&s, 400_000 + LOOKBACK_MS), None);
    }
}
