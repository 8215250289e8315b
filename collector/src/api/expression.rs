//! Prometheus API calls about an expression that read no samples: Grafana's "format
//! query" button and its exemplar look-ups.
//!
//! ```text
//! GET|POST /api/v1/format_query?query=sum(rate(x[5m]))by(job)
//!   → {"status":"success","data":"sum by (job) (rate(x[5m]))"}
//! GET|POST /api/v1/query_exemplars?query=x&start=…&end=…
//!   → {"status":"success","data":[]}
//! ```
//! Calm stores no exemplars (remote-write exemplars and OTLP exemplars are dropped at
//! ingest), so the exemplar answer is always empty; it still checks its parameters as
//! Prometheus does, so a broken query gets the same 400 as from `/api/v1/query`. An
//! answer of 404 instead would show as an error on every Grafana panel that has
//! exemplars switched on.

use super::params::{parse_time, Params};
use super::{on_query_pool, success, ApiError};
use crate::promql;
use axum::body::Bytes;
use axum::extract::RawQuery;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// The `query` parameter, parsed; a missing or unparsable one is a 400 `bad_data`.
fn parsed_query(p: &Params) -> Result<promql_parser::parser::Expr, ApiError> {
    Ok(promql::engine::parse(p.required("query")?)?)
}

/// `GET|POST /api/v1/format_query`: the query pretty-printed as Prometheus prints it
/// (lines split past 100 characters, two-space indent).
pub async fn format_query(RawQuery(q): RawQuery, body: Bytes) -> Response {
    let p = Params::parse(q.as_deref(), &body);
    // Parsing and printing recurse over the tree: on the query pool's big stacks.
    match on_query_pool(move || parsed_query(&p).map(|expr| expr.prettify())).await {
        Ok(text) => success(Value::String(text)),
        Err(e) => e.into_response(),
    }
}

/// `GET|POST /api/v1/query_exemplars`: always an empty list once the parameters check.
pub async fn query_exemplars(RawQuery(q): RawQuery, body: Bytes) -> Response {
    let p = Params::parse(q.as_deref(), &body);
    match on_query_pool(move || check_exemplar_params(&p)).await {
        Ok(()) => success(json!([])),
        Err(e) => e.into_response(),
    }
}

fn check_exemplar_params(p: &Params) -> Result<(), ApiError> {
    let start = p.get("start").map(parse_time).transpose()?;
    let end = p.get("end").map(parse_time).transpose()?;
    if let (Some(s), Some(e)) = (start, end) {
        if e < s {
            return Err(ApiError::bad_data(
                "invalid parameter \"end\": end timestamp must not be before start timestamp",
            ));
        }
    }
    parsed_query(p).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn exemplar_parameters_are_checked_like_a_query() {
        assert!(
            check_exemplar_params(&params(&[("query", "up"), ("start", "1"), ("end", "2")]))
                .is_ok()
        );
        assert!(check_exemplar_params(&params(&[("query", "up")])).is_ok());
        for bad in [
            params(&[]),
            params(&[("query", "sum(")]),
            params(&[("query", "up"), ("start", "2"), ("end", "1")]),
            params(&[("query", "up"), ("start", "yesterday")]),
        ] {
            let e = check_exemplar_params(&bad).expect_err("should be refused");
            assert!(matches!(e.kind, super::super::ErrorType::BadData), "{e:?}");
        }
    }
}
