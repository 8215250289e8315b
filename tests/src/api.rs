//! A client for the Prometheus HTTP API, served by both the collector and Prometheus,
//! so one test can ask both the same question and compare the answers.
//!
//! Timestamps are milliseconds (the API's float seconds are rounded to ms); values are
//! `f64` parsed from the API's strings (`"NaN"`, `"+Inf"`, `"-Inf"` included).

use anyhow::{anyhow, bail, Context as _, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// A label set, sorted by name.
pub type Labels = BTreeMap<String, String>;

/// One series of a matrix: its labels and its `(timestamp ms, value)` samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub samples: Vec<(i64, f64)>,
}

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct InstantSample {
    pub labels: Labels,
    pub timestamp: i64,
    pub value: f64,
}

/// The `data` of a query answer.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryResult {
    Vector(Vec<InstantSample>),
    Matrix(Vec<Series>),
    Scalar(i64, f64),
    String(i64, String),
}

impl QueryResult {
    /// The vector, or an error naming what came instead.
    pub fn into_vector(self) -> Result<Vec<InstantSample>> {
        match self {
            QueryResult::Vector(v) => Ok(v),
            other => bail!("expected a vector result, got {other:?}"),
        }
    }

    /// The matrix, or an error naming what came instead.
    pub fn into_matrix(self) -> Result<Vec<Series>> {
        match self {
            QueryResult::Matrix(m) => Ok(m),
            other => bail!("expected a matrix result, got {other:?}"),
        }
    }
}

/// Parses an API sample value.
pub fn parse_value(s: &str) -> Result<f64> {
    match s {
        "NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => s.parse().with_context(|| format!("bad sample value {s:?}")),
    }
}

/// True when two sample values are the same (NaN equals NaN).
pub fn same_value(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

fn parse_ts(v: &Value) -> Result<i64> {
    let secs = v
        .as_f64()
        .ok_or_else(|| anyhow!("timestamp is not a number: {v}"))?;
    Ok((secs * 1000.0).round() as i64)
}

fn parse_point(v: &Value) -> Result<(i64, f64)> {
    let arr = v
        .as_array()
        .filter(|a| a.len() == 2)
        .ok_or_else(|| anyhow!("sample is not [time, \"value\"]: {v}"))?;
    let value = arr[1]
        .as_str()
        .ok_or_else(|| anyhow!("sample value is not a string: {v}"))?;
    Ok((parse_ts(&arr[0])?, parse_value(value)?))
}

fn parse_labels(v: &Value) -> Result<Labels> {
    let obj = v
        .as_object()
        .ok_or_else(|| anyhow!("metric is not an object: {v}"))?;
    obj.iter()
        .map(|(k, v)| {
            let s = v
                .as_str()
                .ok_or_else(|| anyhow!("label {k} is not a string: {v}"))?;
            Ok((k.clone(), s.to_string()))
        })
        .collect()
}

/// Parses the `data` object of a query answer.
pub fn parse_query_data(data: &Value) -> Result<QueryResult> {
    let kind = data["resultType"]
        .as_str()
        .ok_or_else(|| anyhow!("no data.resultType in {data}"))?;
    let result = &data["result"];
    Ok(match kind {
        "vector" => {
            let items = result
                .as_array()
                .ok_or_else(|| anyhow!("vector result is not an array"))?;
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                let (timestamp, value) = parse_point(&item["value"])?;
                out.push(InstantSample {
                    labels: parse_labels(&item["metric"])?,
                    timestamp,
                    value,
                });
            }
            QueryResult::Vector(out)
        }
        "matrix" => {
            let items = result
                .as_array()
                .ok_or_else(|| anyhow!("matrix result is not an array"))?;
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                let points = item["values"].as_array().map(Vec::as_slice).unwrap_or(&[]);
                out.push(Series {
                    labels: parse_labels(&item["metric"])?,
                    samples: points.iter().map(parse_point).collect::<Result<_>>()?,
                });
            }
            QueryResult::Matrix(out)
        }
        "scalar" => {
            let (t, v) = parse_point(result)?;
            QueryResult::Scalar(t, v)
        }
        "string" => {
            let arr = result
                .as_array()
                .filter(|a| a.len() == 2)
                .ok_or_else(|| anyhow!("bad string result {result}"))?;
            QueryResult::String(parse_ts(&arr[0])?, arr[1].as_str().unwrap_or("").into())
        }
        other => bail!("unknown resultType {other:?}"),
    })
}

/// A Prometheus HTTP API client (blocking, every call with a timeout).
#[derive(Clone)]
pub struct PromApi {
    base: String,
    client: reqwest::blocking::Client,
}

impl PromApi {
    /// A client for the API at `base` (e.g. `http://127.0.0.1:9090`), 30 s per call.
    pub fn new(base: &str) -> PromApi {
        PromApi::with_timeout(base, Duration::from_secs(30))
    }

    /// A client with another per-call timeout.
    pub fn with_timeout(base: &str, timeout: Duration) -> PromApi {
        PromApi {
            base: base.trim_end_matches('/').to_string(),
            client: reqwest::blocking::Client::builder()
                .timeout(timeout)
                .connect_timeout(Duration::from_secs(5))
                .build()
                .expect("http client"),
        }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// GETs `path` with query parameters and returns the `data` of a success envelope;
    /// an error (with status and body) for anything else.
    pub fn get_data(&self, path: &str, params: &[(&str, String)]) -> Result<Value> {
        let url = format!("{}{}", self.base, path);
        let resp = self
            .client
            .get(&url)
            .query(params)
            .send()
            .with_context(|| format!("GET {url} {params:?}"))?;
        let status = resp.status();
        let body = resp.text().with_context(|| format!("GET {url}: body"))?;
        if !status.is_success() {
            bail!("GET {url} {params:?}: HTTP {status}: {body}");
        }
        let v: Value = serde_json::from_str(&body)
            .with_context(|| format!("GET {url} {params:?}: not JSON: {body:.300}"))?;
        if v["status"] != "success" {
            bail!("GET {url} {params:?}: status is not success: {body:.500}");
        }
        Ok(v["data"].clone())
    }

    /// `/api/v1/query` at `time` (ms), or at the server's now when `None`.
    pub fn query(&self, query: &str, time: Option<i64>) -> Result<QueryResult> {
        let mut params = vec![("query", query.to_string())];
        if let Some(t) = time {
            params.push(("time", crate::fmt_ts(t)));
        }
        parse_query_data(&self.get_data("/api/v1/query", &params)?)
    }

    /// An instant query that must answer a vector.
    pub fn query_vector(&self, query: &str, time: Option<i64>) -> Result<Vec<InstantSample>> {
        self.query(query, time)?.into_vector()
    }

    /// An instant query that must answer a matrix (a range selector), series sorted by labels.
    pub fn query_matrix(&self, query: &str, time: i64) -> Result<Vec<Series>> {
        let mut m = self.query(query, Some(time))?.into_matrix()?;
        m.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(m)
    }

    /// `/api/v1/query_range` (times in ms, step in ms), series sorted by labels.
    pub fn query_range(&self, query: &str, start: i64, end: i64, step: i64) -> Result<Vec<Series>> {
        let params = [
            ("query", query.to_string()),
            ("start", crate::fmt_ts(start)),
            ("end", crate::fmt_ts(end)),
            ("step", format!("{}", step as f64 / 1000.0)),
        ];
        let mut m =
            parse_query_data(&self.get_data("/api/v1/query_range", &params)?)?.into_matrix()?;
        m.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(m)
    }

    /// `/api/v1/series?match[]=...`, sorted.
    pub fn series(&self, matchers: &[&str]) -> Result<Vec<Labels>> {
        let params: Vec<(&str, String)> = matchers
            .iter()
            .map(|m| ("match[]", m.to_string()))
            .collect();
        let data = self.get_data("/api/v1/series", &params)?;
        let arr = data
            .as_array()
            .ok_or_else(|| anyhow!("series data is not an array: {data}"))?;
        let mut out = arr.iter().map(parse_labels).collect::<Result<Vec<_>>>()?;
        out.sort();
        Ok(out)
    }

    /// `/api/v1/labels`.
    pub fn labels(&self) -> Result<Vec<String>> {
        string_list(self.get_data("/api/v1/labels", &[])?)
    }

    /// `/api/v1/label/NAME/values`.
    pub fn label_values(&self, name: &str) -> Result<Vec<String>> {
        string_list(self.get_data(&format!("/api/v1/label/{name}/values"), &[])?)
    }

    /// Calls `path` with `params` (a GET query string, or with `post` a form-encoded
    /// POST body, as Grafana sends them) and returns the status and the whole JSON
    /// answer (envelope included), whatever the status.
    pub fn call(&self, post: bool, path: &str, params: &[(&str, String)]) -> Result<(u16, Value)> {
        let url = format!("{}{}", self.base, path);
        let req = if post {
            let body = form_urlencode(params);
            self.client
                .post(&url)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(body)
        } else {
            self.client.get(&url).query(params)
        };
        let resp = req.send().with_context(|| format!("{url} {params:?}"))?;
        let status = resp.status().as_u16();
        let body = resp.text().with_context(|| format!("{url}: body"))?;
        let v: Value = serde_json::from_str(&body)
            .with_context(|| format!("{url} {params:?}: HTTP {status}, not JSON: {body:.300}"))?;
        Ok((status, v))
    }

    /// A plain GET: status and body text.
    pub fn get(&self, path: &str) -> Result<(u16, String)> {
        let url = format!("{}{}", self.base, path);
        let resp = self
            .client
            .get(&url)
            .send()
            .with_context(|| format!("GET {url}"))?;
        let status = resp.status().as_u16();
        Ok((status, resp.text().unwrap_or_default()))
    }
}

/// Encodes parameters as an `application/x-www-form-urlencoded` body.
pub fn form_urlencode(params: &[(&str, String)]) -> String {
    fn enc(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    }
    params
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn string_list(v: Value) -> Result<Vec<String>> {
    v.as_array()
        .ok_or_else(|| anyhow!("not an array: {v}"))?
        .iter()
        .map(|s| {
            s.as_str()
                .map(str::to_string)
                .ok_or_else(|| anyhow!("not a string: {s}"))
        })
        .collect()
}

/// Renders a label set as `{a="b", c="d"}`.
pub fn show_labels(labels: &Labels) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}
