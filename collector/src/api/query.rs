//! `/api/v1/query` and `/api/v1/query_range`, answered by the PromQL engine
//! ([`crate::promql`]) with Prometheus 3 semantics.
//!
//! ```text
//! query=<expr>&time=<t>                          instant query (time defaults to now)
//! query=<expr>&start=<t>&end=<t>&step=<dur>      range query (≤ 11,000 points per series)
//! timeout=<dur>                                  optional, capped at the engine's 2m default
//! ```
//! Errors use Prometheus' types: unparsable queries and bad parameters are `bad_data`
//! (400), failures while running (too many samples, matching errors) `execution`
//! (422), and running out of time `timeout` (503).

use super::params::{parse_duration, parse_time, Params};
use super::{format_time, format_value, success, ApiError, ErrorType};
use crate::promql::value::FloatHistogram;
use crate::promql::{self, Engine, EngineOptions, Labels, QueryValue};
use crate::tsdb::Db;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// Prometheus' default lookback delta.
pub const LOOKBACK_MS: i64 = 5 * 60 * 1000;
/// Most points a range query may return per series.
pub const MAX_POINTS: i64 = promql::engine::MAX_POINTS;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn api_err(e: promql::Error) -> ApiError {
    match e {
        promql::Error::BadData(m) => ApiError::bad_data(m),
        promql::Error::Execution(m) => ApiError::execution(m),
        promql::Error::Timeout(m) => ApiError {
            kind: ErrorType::Timeout,
            message: m,
        },
        promql::Error::Internal(m) => ApiError::internal(m),
    }
}

/// Engine options for a request: the TSDB's sample limit and the request's timeout
/// (never longer than the default).
fn options(db: &Db, p: &Params) -> Result<EngineOptions, ApiError> {
    let mut opts = EngineOptions {
        max_samples: db.opts.max_query_samples,
        ..EngineOptions::default()
    };
    if let Some(t) = p.get("timeout") {
        let ms = parse_duration(t)?;
        if ms <= 0 {
            return Err(ApiError::bad_data(
                "invalid parameter \"timeout\": must be positive",
            ));
        }
        opts.timeout = opts.timeout.min(Duration::from_millis(ms as u64));
    }
    Ok(opts)
}

fn metric_json(l: &Labels) -> Value {
    let mut m = serde_json::Map::new();
    for (n, v) in l.pairs() {
        m.insert(n.clone(), Value::String(v.clone()));
    }
    Value::Object(m)
}

/// Renders a query result as Prometheus' `data` object.
pub fn result_json(v: &QueryValue) -> Value {
    match v {
        QueryValue::Scalar(t, f) => {
            json!({"resultType": "scalar", "result": [format_time(*t), format_value(*f)]})
        }
        QueryValue::String(t, s) => json!({"resultType": "string", "result": [format_time(*t), s]}),
        QueryValue::Vector(samples) => {
            let result: Vec<Value> = samples
                .iter()
                .map(|(l, t, f, h)| match h {
                    Some(h) => json!({"metric": metric_json(l), "histogram": [format_time(*t), histogram_json(h)]}),
                    None => json!({"metric": metric_json(l), "value": [format_time(*t), format_value(*f)]}),
                })
                .collect();
            json!({"resultType": "vector", "result": result})
        }
        QueryValue::Matrix(series) => {
            let result: Vec<Value> = series
                .iter()
                .map(|(l, pts, hpts)| {
                    let mut o = serde_json::Map::new();
                    o.insert("metric".into(), metric_json(l));
                    if !pts.is_empty() {
                        let values: Vec<Value> = pts
                            .iter()
                            .map(|(t, f)| json!([format_time(*t), format_value(*f)]))
                            .collect();
                        o.insert("values".into(), Value::Array(values));
                    }
                    if !hpts.is_empty() {
                        let values: Vec<Value> = hpts
                            .iter()
                            .map(|(t, h)| json!([format_time(*t), histogram_json(h)]))
                            .collect();
                        o.insert("histograms".into(), Value::Array(values));
                    }
                    Value::Object(o)
                })
                .collect();
            json!({"resultType": "matrix", "result": result})
        }
    }
}

/// A native histogram as Prometheus 3 renders it: count and sum as strings, and the
/// non-empty buckets in ascending order as `[boundary rule, lower, upper, count]`.
///
/// ```text
/// {"count": "4", "sum": "5", "buckets": [[0, "0.5", "1", "1"], [3, "-0.001", "0.001", "2"]]}
/// boundary rule: 0 = (lower, upper]  1 = [lower, upper)  2 = (lower, upper)  3 = [lower, upper]
/// ```
pub fn histogram_json(h: &FloatHistogram) -> Value {
    let buckets: Vec<Value> = h
        .buckets_ascending()
        .into_iter()
        .map(|b| {
            let rule = match (b.lower_inclusive, b.upper_inclusive) {
                (false, true) => 0,
                (true, false) => 1,
                (false, false) => 2,
                (true, true) => 3,
            };
            json!([
                rule,
                format_value(b.lower),
                format_value(b.upper),
                format_value(b.count)
            ])
        })
        .collect();
    let mut o = serde_json::Map::new();
    o.insert("count".into(), Value::String(format_value(h.count)));
    o.insert("sum".into(), Value::String(format_value(h.sum)));
    if !buckets.is_empty() {
        o.insert("buckets".into(), Value::Array(buckets));
    }
    Value::Object(o)
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
        .ok_or_else(|| ApiError::bad_data("invalid parameter \"query\": missing"))?
        .to_string();
    let t = match p.get("time") {
        Some(s) => parse_time(s)?,
        None => now_ms(),
    };
    let opts = options(db, p)?;
    // Parse errors are answered before a blocking thread is taken.
    promql::engine::parse(&q).map_err(api_err)?;
    let db = db.clone();
    tokio::task::spawn_blocking(move || -> Result<Value, ApiError> {
        let engine = Engine::with_options(&db, opts);
        let v = engine.instant(&q, t).map_err(api_err)?;
        Ok(result_json(&v))
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
    let start = parse_time(
        p.get("start")
            .ok_or_else(|| ApiError::bad_data("invalid parameter \"start\": missing"))?,
    )?;
    let end = parse_time(
        p.get("end")
            .ok_or_else(|| ApiError::bad_data("invalid parameter \"end\": missing"))?,
    )?;
    let step = parse_duration(
        p.get("step")
            .ok_or_else(|| ApiError::bad_data("invalid parameter \"step\": missing"))?,
    )?;
    if end < start {
        return Err(ApiError::bad_data(
            "invalid parameter \"end\": end timestamp must not be before start time",
        ));
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
    let q = q.to_string();
    let opts = options(db, p)?;
    promql::engine::parse(&q).map_err(api_err)?;
    let db = db.clone();
    tokio::task::spawn_blocking(move || -> Result<Value, ApiError> {
        let engine = Engine::with_options(&db, opts);
        let v = engine.range(&q, start, end, step).map_err(api_err)?;
        Ok(result_json(&v))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_shapes() {
        let l = Labels::from_pairs(vec![("job".into(), "a".into())]);
        let v = result_json(&QueryValue::Vector(vec![(l.clone(), 1_000, 1.5, None)]));
        assert_eq!(
            v,
            json!({"resultType": "vector", "result": [{"metric": {"job": "a"}, "value": [1.0, "1.5"]}]})
        );
        let m = result_json(&QueryValue::Matrix(vec![(
            l.clone(),
            vec![(0, f64::NAN)],
            vec![],
        )]));
        assert_eq!(m["result"][0]["values"][0][1], "NaN");
        assert!(m["result"][0].get("histograms").is_none());
        // A native histogram: {{schema:0 sum:5 count:4 z_bucket:1 z_bucket_w:0.001
        // buckets:[1 2] n_buckets:[1]}} (index 0 is (0.5, 1], index 1 is (1, 2]).
        let mut h = FloatHistogram {
            schema: 0,
            sum: 5.0,
            count: 5.0,
            zero_count: 1.0,
            zero_threshold: 0.001,
            ..Default::default()
        };
        h.set_bucket_list(true, &[(0, 1.0), (1, 2.0)]);
        h.set_bucket_list(false, &[(0, 1.0)]);
        let h = std::sync::Arc::new(h);
        let v = result_json(&QueryValue::Vector(vec![(
            l.clone(),
            1_000,
            0.0,
            Some(h.clone()),
        )]));
        assert_eq!(
            v["result"][0]["histogram"],
            json!([1.0, {"count": "5", "sum": "5", "buckets": [
                [1, "-1", "-0.5", "1"],
                [3, "-0.001", "0.001", "1"],
                [0, "0.5", "1", "1"],
                [0, "1", "2", "2"]
            ]}])
        );
        let m = result_json(&QueryValue::Matrix(vec![(l, vec![], vec![(2_000, h)])]));
        assert!(m["result"][0].get("values").is_none());
        assert_eq!(m["result"][0]["histograms"][0][0], json!(2.0));
        let s = result_json(&QueryValue::Scalar(2_500, f64::INFINITY));
        assert_eq!(s, json!({"resultType": "scalar", "result": [2.5, "+Inf"]}));
    }

    #[test]
    fn error_types_map() {
        assert!(matches!(
            api_err(promql::Error::BadData("x".into())).kind,
            ErrorType::BadData
        ));
        assert!(matches!(
            api_err(promql::Error::exec("x")).kind,
            ErrorType::Execution
        ));
        assert!(matches!(
            api_err(promql::Error::Timeout("x".into())).kind,
            ErrorType::Timeout
        ));
    }
}
