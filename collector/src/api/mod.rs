//! The Prometheus HTTP API (`/api/v1/...`), as Grafana and promtool call it.
//!
//! Every answer uses Prometheus' JSON envelope and status codes:
//!
//! ```text
//! 200 {"status":"success","data":...}
//! 400 {"status":"error","errorType":"bad_data","error":"..."}
//! 422 {"status":"error","errorType":"execution","error":"..."}
//! 503 {"status":"error","errorType":"timeout","error":"..."}
//! 503 {"status":"error","errorType":"unavailable","error":"..."}   + Retry-After: the
//!     query pool is full (`promql/pool.rs`)
//! ```
//! Parameters come from the query string and, for POST, from a form body, as in
//! Prometheus.

pub mod agent_projects;
pub mod agents;
pub mod expression;
pub mod issues;
pub mod metadata;
pub mod params;
pub mod parse_query;
pub mod query;
pub mod rules;
pub mod series;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// Prometheus' error types.
#[derive(Debug, Clone, Copy)]
pub enum ErrorType {
    BadData,
    Execution,
    Timeout,
    Internal,
    /// Overloaded: 503 with `Retry-After`.
    Unavailable,
}

/// An API error: type plus message.
#[derive(Debug)]
pub struct ApiError {
    pub kind: ErrorType,
    pub message: String,
}

impl ApiError {
    /// A 400 bad_data error.
    pub fn bad_data(msg: impl Into<String>) -> ApiError {
        ApiError {
            kind: ErrorType::BadData,
            message: msg.into(),
        }
    }

    /// A 422 execution error.
    pub fn execution(msg: impl Into<String>) -> ApiError {
        ApiError {
            kind: ErrorType::Execution,
            message: msg.into(),
        }
    }

    /// A 500 internal error.
    pub fn internal(msg: impl Into<String>) -> ApiError {
        ApiError {
            kind: ErrorType::Internal,
            message: msg.into(),
        }
    }
}

/// A query's error as the API answers it (bad_data 400, execution 422, timeout 503,
/// internal 500).
impl From<crate::promql::Error> for ApiError {
    fn from(e: crate::promql::Error) -> ApiError {
        use crate::promql::Error;
        match e {
            Error::BadData(m) => ApiError::bad_data(m),
            Error::Execution(m) => ApiError::execution(m),
            Error::Timeout(message) => ApiError {
                kind: ErrorType::Timeout,
                message,
            },
            Error::Internal(m) => ApiError::internal(m),
            Error::Unavailable(message) => ApiError {
                kind: ErrorType::Unavailable,
                message,
            },
        }
    }
}

/// A query the pool could not run: full (503 `unavailable` with Retry-After) or a
/// panic inside it (500).
impl From<crate::promql::pool::PoolError> for ApiError {
    fn from(e: crate::promql::pool::PoolError) -> ApiError {
        use crate::promql::pool::PoolError;
        match e {
            PoolError::Busy { .. } => ApiError {
                kind: ErrorType::Unavailable,
                message: e.to_string(),
            },
            PoolError::Panicked | PoolError::NoThreads(_) => ApiError::internal(e.to_string()),
        }
    }
}

/// Runs `f` (parsing, regexes, evaluation) on the query pool, off the async workers.
pub async fn on_query_pool<T, F>(f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
{
    crate::promql::pool::run(f).await?
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, name) = match self.kind {
            ErrorType::BadData => (StatusCode::BAD_REQUEST, "bad_data"),
            ErrorType::Execution => (StatusCode::UNPROCESSABLE_ENTITY, "execution"),
            ErrorType::Timeout => (StatusCode::SERVICE_UNAVAILABLE, "timeout"),
            ErrorType::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            ErrorType::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        };
        let body = axum::Json(json!({"status": "error", "errorType": name, "error": self.message}));
        if matches!(self.kind, ErrorType::Unavailable) {
            let retry = crate::promql::pool::RETRY_AFTER_SECS.to_string();
            return (code, [(axum::http::header::RETRY_AFTER, retry)], body).into_response();
        }
        (code, body).into_response()
    }
}

/// A success envelope around `data`.
pub fn success(data: Value) -> Response {
    axum::Json(json!({"status": "success", "data": data})).into_response()
}

pub use calm_wire::value::format_value;

/// Labels as a JSON object.
pub fn labels_json(labels: &[u8]) -> Value {
    let mut m = serde_json::Map::new();
    for (n, v) in crate::tsdb::labels::iter(labels) {
        m.insert(n.to_string(), Value::String(v.to_string()));
    }
    Value::Object(m)
}
