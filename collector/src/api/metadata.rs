//! `/api/v1/metadata`: per-metric-family metadata (type, help, unit) as remote-write
//! requests carry it (`WriteRequest.metadata`, sent periodically by Prometheus'
//! `send_metadata`) and as the OTLP mapping produces it.
//!
//! ```text
//! GET /api/v1/metadata                         → {"up":[{"type":"gauge","help":"…","unit":""}], …}
//! GET /api/v1/metadata?metric=up               → only that family
//! GET /api/v1/metadata?limit=10                → at most 10 families
//! GET /api/v1/metadata?limit_per_metric=1      → at most 1 entry per family
//! ```
//! Answered from [`crate::storage::metadata::MetadataStore`] (in memory, bounded).

use super::params::Params;
use super::{success, ApiError};
use crate::storage::metadata::MetadataStore;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::sync::Arc;

/// Reads a limit parameter as Prometheus does: absent, empty or negative means no
/// limit; anything but an integer is `bad_data`.
fn limit_param(p: &Params, key: &str) -> Result<Option<usize>, ApiError> {
    match p.get(key) {
        None | Some("") => Ok(None),
        Some(s) => {
            let n: i64 = s.parse().map_err(|_| {
                ApiError::bad_data(format!(
                    "invalid parameter \"{key}\": {s:?} is not a number"
                ))
            })?;
            Ok(usize::try_from(n).ok())
        }
    }
}

/// `GET /api/v1/metadata?metric=&limit=&limit_per_metric=`: families in name order.
pub async fn metadata(State(store): State<Arc<MetadataStore>>, RawQuery(q): RawQuery) -> Response {
    let p = Params::parse(q.as_deref(), b"");
    let run = || -> Result<Value, ApiError> {
        let limit = limit_param(&p, "limit")?;
        // As in Prometheus, `limit=0` answers nothing but `limit_per_metric=0` is no limit.
        let per_metric = limit_param(&p, "limit_per_metric")?.filter(|&n| n > 0);
        let metric = p.get("metric").filter(|m| !m.is_empty());
        Ok(store.query(metric, limit, per_metric))
    };
    match run() {
        Ok(v) => success(v),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_like_prometheus() {
        let p = Params::parse(Some("limit=-1&limit_per_metric=2&x=a"), b"");
        assert_eq!(limit_param(&p, "limit").ok(), Some(None));
        assert_eq!(limit_param(&p, "limit_per_metric").ok(), Some(Some(2)));
        assert!(limit_param(&p, "x").is_err());
        assert_eq!(limit_param(&p, "absent").ok(), Some(None));
    }
}
