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
use super::{format_value, ApiError};
use crate::promql::value::FloatHistogram;
use crate::promql::{self, Engine, EngineOptions, Labels, QueryValue};
use crate::storage::SeriesReader;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use calm_wire::value::ValueBuf;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
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

/// Engine options for a request: the TSDB's sample limit and the request's timeout
/// (never longer than the default).
fn options(db: &dyn SeriesReader, p: &Params) -> Result<EngineOptions, ApiError> {
    let mut opts = EngineOptions {
        max_samples: db.max_query_samples(),
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

/// A query result as Prometheus' `data` object, serialised straight from the engine's
/// value: a range query over a day can hold hundreds of thousands of points, and a JSON
/// tree of them cost more than the query.
///
/// ```text
/// {"resultType": "matrix", "result": [{"metric": {"job": "node"}, "values": [[1700000000, "1.5"], …]}]}
/// {"resultType": "vector", "result": [{"metric": {…}, "value": [1700000000, "1.5"]}]}
/// {"resultType": "scalar", "result": [1700000000, "1.5"]}
/// ```
/// Series with native histograms carry `"histograms"` (`"histogram"` in a vector) with
/// the values of [`histogram_json`].
pub struct ResultBody<'a>(pub &'a QueryValue);

/// A timestamp in ms as the JSON number of seconds Prometheus writes.
struct Time(i64);

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Whole seconds as integers, as Prometheus writes them (`1700000000`, not
        // `1700000000.0`); fractions as a float (`1700000000.5`).
        if self.0 % 1000 == 0 {
            s.serialize_i64(self.0 / 1000)
        } else {
            s.serialize_f64(self.0 as f64 / 1000.0)
        }
    }
}

/// A label set as a JSON object.
struct Metric<'a>(&'a Labels);

impl Serialize for Metric<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (n, v) in self.0.pairs() {
            m.serialize_entry(n, v)?;
        }
        m.end()
    }
}

/// A sample value as the JSON string Prometheus writes ([`format_value`]), formatted
/// on the stack: no allocation per value.
struct FloatStr(f64);

impl Serialize for FloatStr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(ValueBuf::new().format(self.0))
    }
}

/// `[t, "value"]` pairs.
struct FloatPoints<'a>(&'a [(i64, f64)]);

impl Serialize for FloatPoints<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|(t, v)| (Time(*t), FloatStr(*v))))
    }
}

/// `[t, {histogram}]` pairs.
struct HistPoints<'a>(&'a [(i64, promql::value::Hist)]);

impl Serialize for HistPoints<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|(t, h)| (Time(*t), histogram_json(h))))
    }
}

/// One element of a vector result.
struct VectorSample<'a>(&'a (Labels, i64, f64, Option<promql::value::Hist>));

impl Serialize for VectorSample<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (l, t, f, h) = self.0;
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("metric", &Metric(l))?;
        match h {
            Some(h) => m.serialize_entry("histogram", &(Time(*t), histogram_json(h)))?,
            None => m.serialize_entry("value", &(Time(*t), FloatStr(*f)))?,
        }
        m.end()
    }
}

/// One series of a matrix result.
struct MatrixSeries<'a>(&'a promql::value::MatrixRow);

impl Serialize for MatrixSeries<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (l, pts, hpts) = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("metric", &Metric(l))?;
        if !pts.is_empty() {
            m.serialize_entry("values", &FloatPoints(pts))?;
        }
        if !hpts.is_empty() {
            m.serialize_entry("histograms", &HistPoints(hpts))?;
        }
        m.end()
    }
}

/// The elements of a vector result.
struct VectorResult<'a>(&'a [(Labels, i64, f64, Option<promql::value::Hist>)]);

impl Serialize for VectorResult<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(VectorSample))
    }
}

/// The series of a matrix result.
struct MatrixResult<'a>(&'a [promql::value::MatrixRow]);

impl Serialize for MatrixResult<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(MatrixSeries))
    }
}

impl Serialize for ResultBody<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        match self.0 {
            QueryValue::Scalar(t, f) => {
                m.serialize_entry("resultType", "scalar")?;
                m.serialize_entry("result", &(Time(*t), FloatStr(*f)))?;
            }
            QueryValue::String(t, v) => {
                m.serialize_entry("resultType", "string")?;
                m.serialize_entry("result", &(Time(*t), v))?;
            }
            QueryValue::Vector(samples) => {
                m.serialize_entry("resultType", "vector")?;
                m.serialize_entry("result", &VectorResult(samples))?;
            }
            QueryValue::Matrix(series) => {
                m.serialize_entry("resultType", "matrix")?;
                m.serialize_entry("result", &MatrixResult(series))?;
            }
        }
        m.end()
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

/// `{"status": "success", "data": <result>}`, serialised (on the query pool's thread).
/// A matrix of floats (every range query without native histograms) is written by
/// [`matrix_body`]; the rest by serde.
fn success_body(v: &QueryValue) -> Result<Vec<u8>, ApiError> {
    match v {
        QueryValue::Matrix(rows) if rows.iter().all(|r| r.2.is_empty()) => matrix_body(rows),
        _ => serde_body(v),
    }
}

/// Points above which [`matrix_body`] writes the two halves of the rows on two threads.
const PARALLEL_POINTS: usize = 50_000;

/// The answer to a range query whose rows hold only floats, written straight into
/// bytes: exactly what [`serde_body`] writes (a test compares them), at a fraction of
/// the cost, and on two threads for large answers. A day at one-minute steps over a
/// few hundred series is a quarter of a million `[t, "v"]` pairs, and going through
/// serde's serializer per pair was a tenth of such a query.
fn matrix_body(rows: &[promql::value::MatrixRow]) -> Result<Vec<u8>, ApiError> {
    const HEAD: &[u8] = br#"{"status":"success","data":{"resultType":"matrix","result":["#;
    let points: usize = rows.iter().map(|r| r.1.len()).sum();
    // About 24 bytes a point ("[1700000000,"12345.67"],") and the label sets.
    let size = |rows: &[promql::value::MatrixRow]| {
        rows.iter().map(|r| r.1.len() * 24 + 256).sum::<usize>()
    };
    let write = |rows: &[promql::value::MatrixRow], first: bool| -> Result<Vec<u8>, ApiError> {
        let mut out = Vec::with_capacity(size(rows) + HEAD.len() + 8);
        if first {
            out.extend_from_slice(HEAD);
        }
        for (i, row) in rows.iter().enumerate() {
            if i > 0 || !first {
                out.push(b',');
            }
            write_float_row(&mut out, row)?;
        }
        Ok(out)
    };
    let mut out = if points < PARALLEL_POINTS || rows.len() < 2 {
        write(rows, true)?
    } else {
        // Split where half the points are.
        let mut acc = 0;
        let mid = rows
            .iter()
            .position(|r| {
                acc += r.1.len();
                acc * 2 >= points
            })
            .map_or(rows.len() / 2, |i| (i + 1).min(rows.len() - 1))
            .max(1);
        let (a, b) = rows.split_at(mid);
        let (first, second) = std::thread::scope(|sc| {
            let h = sc.spawn(|| write(b, false));
            let first = write(a, true);
            let second = h
                .join()
                .unwrap_or_else(|_| Err(ApiError::internal("rendering thread panicked")));
            (first, second)
        });
        let mut out = first?;
        out.extend_from_slice(&second?);
        out
    };
    out.extend_from_slice(b"]}}");
    Ok(out)
}

/// `{"metric":{…},"values":[[t,"v"],…]}` for a row without histograms.
fn write_float_row(out: &mut Vec<u8>, row: &promql::value::MatrixRow) -> Result<(), ApiError> {
    let (labels, pts, _) = row;
    let err = |e: serde_json::Error| ApiError::internal(format!("cannot render the result: {e}"));
    out.extend_from_slice(br#"{"metric":"#);
    serde_json::to_writer(&mut *out, &Metric(labels)).map_err(err)?;
    if !pts.is_empty() {
        out.extend_from_slice(br#","values":["#);
        let mut buf = ValueBuf::new();
        out.reserve(pts.len() * 24);
        for (j, (t, v)) in pts.iter().enumerate() {
            // One point is assembled on the stack and copied once.
            let mut p = [0u8; 80];
            let mut n = 0;
            let mut put = |b: &[u8]| {
                p[n..n + b.len()].copy_from_slice(b);
                n += b.len();
            };
            if j > 0 {
                put(b",");
            }
            put(b"[");
            if t % 1000 == 0 {
                let mut digits = [0u8; 20];
                put(int_digits(&mut digits, t / 1000));
            } else {
                let mut frac = Vec::with_capacity(24);
                serde_json::to_writer(&mut frac, &Time(*t)).map_err(err)?;
                put(&frac);
            }
            put(b",\"");
            // Digits, '.', '-', '+', 'e', "NaN", "+Inf": nothing to escape.
            put(buf.format(*v).as_bytes());
            put(b"\"]");
            out.extend_from_slice(&p[..n]);
        }
        out.push(b']');
    }
    out.push(b'}');
    Ok(())
}

/// `n` in decimal, written at the end of `digits`.
fn int_digits(digits: &mut [u8; 20], n: i64) -> &[u8] {
    let mut i = digits.len();
    let mut u = n.unsigned_abs();
    loop {
        i -= 1;
        digits[i] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    if n < 0 {
        i -= 1;
        digits[i] = b'-';
    }
    &digits[i..]
}

/// [`success_body`] through serde: every shape of answer.
fn serde_body(v: &QueryValue) -> Result<Vec<u8>, ApiError> {
    #[derive(Serialize)]
    struct Envelope<'a> {
        status: &'static str,
        data: ResultBody<'a>,
    }
    serde_json::to_vec(&Envelope {
        status: "success",
        data: ResultBody(v),
    })
    .map_err(|e| ApiError::internal(format!("cannot render the result: {e}")))
}

/// Adds the reader's warnings of this query (`storage::reader::warn`: in cluster
/// mode, a partition without a ready owner) to a success body as Prometheus'
/// `"warnings": [...]`.
fn with_warnings(mut body: Vec<u8>) -> Result<Vec<u8>, ApiError> {
    let w = crate::storage::reader::take_warnings();
    if w.is_empty() || body.last() != Some(&b'}') {
        return Ok(body);
    }
    body.pop();
    body.extend_from_slice(b",\"warnings\":");
    serde_json::to_writer(&mut body, &w)
        .map_err(|e| ApiError::internal(format!("cannot render the warnings: {e}")))?;
    body.push(b'}');
    Ok(body)
}

/// A 200 answer with a JSON body.
fn json_response(body: Vec<u8>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// `GET|POST /api/v1/query`.
/// What the query handlers need: the series to read and the latency histogram.
#[derive(Clone)]
pub struct QueryState {
    pub db: Arc<dyn SeriesReader>,
    /// `calm_query_duration_seconds{kind="instant"|"range"}`.
    pub durations: crate::selfmetrics::QueryDurations,
}

pub async fn instant(
    State(QueryState { db, durations }): State<QueryState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let p = Params::parse(q.as_deref(), &body);
    match instant_inner(&db, &durations, &p).await {
        Ok(body) => json_response(body),
        Err(e) => e.into_response(),
    }
}

async fn instant_inner(
    db: &Arc<dyn SeriesReader>,
    durations: &crate::selfmetrics::QueryDurations,
    p: &Params,
) -> Result<Vec<u8>, ApiError> {
    let q = p.required("query")?.to_string();
    let t = match p.get("time") {
        Some(s) => parse_time(s)?,
        None => now_ms(),
    };
    let opts = options(&**db, p)?;
    let (db, durations) = (db.clone(), durations.clone());
    // Parsing too runs on the query pool: it compiles the matchers' regexes.
    super::on_query_pool(move || -> Result<Vec<u8>, ApiError> {
        let _ = crate::storage::reader::take_warnings();
        let engine = Engine::with_options(&*db, opts);
        let v = durations
            .time("instant", || engine.instant(&q, t))
            .map_err(ApiError::from)?;
        with_warnings(success_body(&v)?)
    })
    .await
}

/// `GET|POST /api/v1/query_range`.
pub async fn range(
    State(QueryState { db, durations }): State<QueryState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let p = Params::parse(q.as_deref(), &body);
    match range_inner(&db, &durations, &p).await {
        Ok(body) => json_response(body),
        Err(e) => e.into_response(),
    }
}

async fn range_inner(
    db: &Arc<dyn SeriesReader>,
    durations: &crate::selfmetrics::QueryDurations,
    p: &Params,
) -> Result<Vec<u8>, ApiError> {
    let q = p.required("query")?;
    let start = parse_time(p.required("start")?)?;
    let end = parse_time(p.required("end")?)?;
    let step = parse_duration(p.required("step")?)?;
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
    let opts = options(&**db, p)?;
    let (db, durations) = (db.clone(), durations.clone());
    // Parsing too runs on the query pool: it compiles the matchers' regexes.
    super::on_query_pool(move || -> Result<Vec<u8>, ApiError> {
        let _ = crate::storage::reader::take_warnings();
        let engine = Engine::with_options(&*db, opts);
        let v = durations
            .time("range", || engine.range(&q, start, end, step))
            .map_err(ApiError::from)?;
        with_warnings(success_body(&v)?)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `data` object of an answer, as a JSON tree to compare.
    fn result_json(v: &QueryValue) -> Value {
        serde_json::to_value(ResultBody(v)).unwrap()
    }

    #[test]
    fn times_print_like_prometheus() {
        let t = |ms| serde_json::to_string(&Time(ms)).unwrap();
        assert_eq!(t(1_435_781_451_781), "1435781451.781");
        assert_eq!(t(1_435_781_451_000), "1435781451");
        assert_eq!(t(-1_500), "-1.5");
    }

    #[test]
    fn renders_prometheus_shapes() {
        let l = Labels::from_pairs(vec![("job".into(), "a".into())]);
        let v = result_json(&QueryValue::Vector(vec![(l.clone(), 1_000, 1.5, None)]));
        assert_eq!(
            v,
            json!({"resultType": "vector", "result": [{"metric": {"job": "a"}, "value": [1, "1.5"]}]})
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
            json!([1, {"count": "5", "sum": "5", "buckets": [
                [1, "-1", "-0.5", "1"],
                [3, "-0.001", "0.001", "1"],
                [0, "0.5", "1", "1"],
                [0, "1", "2", "2"]
            ]}])
        );
        let m = result_json(&QueryValue::Matrix(vec![(l, vec![], vec![(2_000, h)])]));
        assert!(m["result"][0].get("values").is_none());
        assert_eq!(m["result"][0]["histograms"][0][0], json!(2));
        let s = result_json(&QueryValue::Scalar(2_500, f64::INFINITY));
        assert_eq!(s, json!({"resultType": "scalar", "result": [2.5, "+Inf"]}));
    }

    #[test]
    fn handwritten_matrix_is_what_serde_writes() {
        let names = ["job", "a\"b", "ünï", "x\\y\n"];
        let values = [
            1.5,
            -0.0,
            0.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e21,
            1e-7,
            5e-324,
            123456.789,
            1e15,
            0.1 + 0.2,
        ];
        let times = [
            0,
            1_000,
            -1_500,
            1_700_000_000_000,
            1_700_000_000_781,
            -3_000,
            999,
        ];
        let mut rows = vec![(Labels::default(), vec![], vec![])];
        for (i, n) in names.iter().enumerate() {
            let l = Labels::from_pairs(vec![
                ((*n).into(), format!("v{i}\"\u{7}")),
                ("__name__".into(), "m".into()),
            ]);
            let pts: Vec<(i64, f64)> = (0..40_000)
                .map(|k| {
                    (
                        times[k % times.len()] + k as i64 * 60_000,
                        values[k % values.len()] * k as f64,
                    )
                })
                .collect();
            rows.push((l, pts, vec![]));
        }
        rows.push((
            Labels::from_pairs(vec![("z".into(), "1".into())]),
            vec![(5, 2.0)],
            vec![],
        ));
        for n in [0, 1, 2, rows.len()] {
            let v = QueryValue::Matrix(rows[..n].to_vec());
            let hand = success_body(&v).unwrap();
            let serde = serde_body(&v).unwrap();
            assert!(
                hand == serde,
                "{n} rows: {}",
                String::from_utf8_lossy(&hand[..200.min(hand.len())])
            );
        }
    }

    #[test]
    fn error_types_map() {
        use crate::api::ErrorType;
        assert!(matches!(
            ApiError::from(promql::Error::BadData("x".into())).kind,
            ErrorType::BadData
        ));
        assert!(matches!(
            ApiError::from(promql::Error::exec("x")).kind,
            ErrorType::Execution
        ));
        assert!(matches!(
            ApiError::from(promql::Error::Timeout("x".into())).kind,
            ErrorType::Timeout
        ));
    }
}
