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
use crate::tsdb::Db;
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

fn matched_label_sets(db: &Db, p: &Params) -> Result<Vec<Box<[u8]>>, ApiError> {
    let mut all: BTreeSet<Box<[u8]>> = BTreeSet::new();
    for m in p.all("match[]") {
        let ms = parse_selector(m)?;
        all.extend(
            db.series(&ms)
                .map_err(|e| ApiError::internal(e.to_string()))?,
        );
    }
    Ok(all.into_iter().collect())
}

/// `GET|POST /api/v1/series`.
pub async fn series(State(db): State<Arc<Db>>, RawQuery(q): RawQuery, body: Bytes) -> Response {
    let p = Params::parse(q.as_deref(), &body);
    let run = move || -> Result<Value, ApiError> {
        if p.all("match[]").is_empty() {
            return Err(ApiError::bad_data("no match[] parameter provided"));
        }
        let lim = limit(&p)?;
        let mut sets: Vec<Value> = matched_label_sets(&db, &p)?
            .iter()
            .map(|l| labels_json(l))
            .collect();
        sets.sort_by_key(|v| v.to_string());
        sets.truncate(lim);
        Ok(Value::Array(sets))
    };
    // `match[]` is PromQL (parsed, regexes compiled): on the query pool.
    match on_query_pool(run).await {
        Ok(v) => success(v),
        Err(e) => e.into_response(),
    }
}

/// `GET|POST /api/v1/labels`.
pub async fn labels(State(db): State<Arc<Db>>, RawQuery(q): RawQuery, body: Bytes) -> Response {
    let p = Params::parse(q.as_deref(), &body);
    let run = move || -> Result<Value, ApiError> {
        let lim = limit(&p)?;
        let mut names: Vec<String> = if p.all("match[]").is_empty() {
            db.label_names()
        } else {
            let mut set = BTreeSet::new();
            for l in matched_label_sets(&db, &p)? {
                for (n, _) in crate::tsdb::labels::iter(&l) {
                    set.insert(n.to_string());
                }
            }
            set.into_iter().collect()
        };
        names.truncate(lim);
        Ok(json!(names))
    };
    // `match[]` is PromQL (parsed, regexes compiled): on the query pool.
    match on_query_pool(run).await {
        Ok(v) => success(v),
        Err(e) => e.into_response(),
    }
}

/// `GET /api/v1/label/{name}/values`.
pub async fn label_values(
    State(db): State<Arc<Db>>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let p = Params::parse(q.as_deref(), b"");
    let run = move || -> Result<Value, ApiError> {
        let lim = limit(&p)?;
        let mut values: Vec<String> = if p.all("match[]").is_empty() {
            db.label_values(&name)
        } else {
            let mut set = BTreeSet::new();
            for l in matched_label_sets(&db, &p)? {
                if let Some(v) = crate::tsdb::labels::get(&l, &name) {
                    set.insert(v.to_string());
                }
            }
            set.into_iter().collect()
        };
        values.truncate(lim);
        Ok(json!(values))
    };
    // `match[]` is PromQL (parsed, regexes compiled): on the query pool.
    match on_query_pool(run).await {
        Ok(v) => success(v),
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
