//! `/api/v1/series`, `/api/v1/labels`, `/api/v1/label/{name}/values`,
//! `/api/v1/status/buildinfo`.
//!
//! ```text
//! GET /api/v1/series?match[]=up&start=…&end=…   → [{"__name__":"up","job":"x"}, …]
//! GET /api/v1/labels                            → ["__name__","job", …]
//! GET /api/v1/label/job/values                  → ["node", …]
//! ```
//! Look-ups answer from the index (series known at any time in the retention).

use super::params::{parse_selector, Params};
use super::{labels_json, on_query_pool, success, ApiError};
use crate::storage::SeriesReader;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;

fn limit(p: &Params) -> Result<usize, ApiError> {
    match p.get("limit") {
        None | Some("") | Some("0") => Ok(usize::MAX),
        Some(s) => s.parse().map_err(|_| {
            ApiError::bad_data(format!(
                "invalid parameter \"limit\": {s:?} is not a number"
            ))
        }),
    }
}

fn selectors(p: &Params) -> Result<Vec<Vec<crate::tsdb::index::Matcher>>, ApiError> {
    p.all("match[]").into_iter().map(parse_selector).collect()
}

/// `{"status":"success","data":…,"warnings":[…]}` (warnings only when there are some).
fn success_warn(data: Value, warnings: Vec<String>) -> Response {
    if warnings.is_empty() {
        return success(data);
    }
    axum::Json(json!({"status": "success", "data": data, "warnings": warnings})).into_response()
}

/// `GET|POST /api/v1/series`. Answers at most `limit` series (Prometheus' parameter)
/// and at most `limits.max_series_per_query`, the first ones in label order, with a
/// warning when there were more; never holds more than that many label sets.
pub async fn series(
    State(db): State<Arc<dyn SeriesReader>>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let p = Params::parse(q.as_deref(), &body);
    let run = move || -> Result<(Value, Vec<String>), ApiError> {
        if p.all("match[]").is_empty() {
            return Err(ApiError::bad_data("no match[] parameter provided"));
        }
        let lim = limit(&p)?;
        let cap = db.max_series_per_query();
        let k = lim.min(cap);
        let (sets, more) = db.series_first(&selectors(&p)?, k);
        let mut warnings = Vec::new();
        if more {
            warnings.push(if lim <= cap {
                "results truncated due to limit".to_string()
            } else {
                format!(
                    "results truncated to {cap} series (limits.max_series_per_query); narrow match[] or pass limit"
                )
            });
        }
        Ok((
            Value::Array(sets.iter().map(|l| labels_json(l)).collect()),
            warnings,
        ))
    };
    // `match[]` is PromQL (parsed, regexes compiled): on the query pool.
    match on_query_pool(run).await {
        Ok((v, w)) => success_warn(v, w),
        Err(e) => e.into_response(),
    }
}

fn truncate_warn<T>(v: &mut Vec<T>, lim: usize) -> Vec<String> {
    if v.len() > lim {
        v.truncate(lim);
        vec!["results truncated due to limit".to_string()]
    } else {
        Vec::new()
    }
}

/// `GET|POST /api/v1/labels`.
pub async fn labels(
    State(db): State<Arc<dyn SeriesReader>>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let p = Params::parse(q.as_deref(), &body);
    let run = move || -> Result<(Value, Vec<String>), ApiError> {
        let lim = limit(&p)?;
        let mut names: Vec<String> = if p.all("match[]").is_empty() {
            db.label_names()
        } else {
            let mut set = BTreeSet::new();
            db.for_each_series(&selectors(&p)?, &mut |l| {
                for (n, _) in crate::tsdb::labels::iter(l) {
                    if !set.contains(n) {
                        set.insert(n.to_string());
                    }
                }
            });
            set.into_iter().collect()
        };
        let w = truncate_warn(&mut names, lim);
        Ok((json!(names), w))
    };
    // `match[]` is PromQL (parsed, regexes compiled): on the query pool.
    match on_query_pool(run).await {
        Ok((v, w)) => success_warn(v, w),
        Err(e) => e.into_response(),
    }
}

/// `GET /api/v1/label/{name}/values`.
pub async fn label_values(
    State(db): State<Arc<dyn SeriesReader>>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let p = Params::parse(q.as_deref(), b"");
    let run = move || -> Result<(Value, Vec<String>), ApiError> {
        let lim = limit(&p)?;
        let mut values: Vec<String> = if p.all("match[]").is_empty() {
            db.label_values(&name)
        } else {
            let mut set = BTreeSet::new();
            db.for_each_series(&selectors(&p)?, &mut |l| {
                if let Some(v) = crate::tsdb::labels::get(l, &name) {
                    if !set.contains(v) {
                        set.insert(v.to_string());
                    }
                }
            });
            set.into_iter().collect()
        };
        let w = truncate_warn(&mut values, lim);
        Ok((json!(values), w))
    };
    // `match[]` is PromQL (parsed, regexes compiled): on the query pool.
    match on_query_pool(run).await {
        Ok((v, w)) => success_warn(v, w),
        Err(e) => e.into_response(),
    }
}

/// `GET /api/v1/status/buildinfo`.
pub async fn buildinfo() -> Response {
    success(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "revision": "",
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
        "application": "calm-collector",
    }))
}
