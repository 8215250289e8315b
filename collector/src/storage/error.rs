//! [`StorageError`]: what any backend reports, in Calm's terms, and the one place that
//! turns it into an HTTP answer ([`StorageError::status`], [`StorageError::response`]).

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// What kind of failure a storage backend reports. Handlers decide on the kind only,
/// never on a backend's own error type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The backend cannot take the request now (reopening after a failed write, a log
    /// or database that does not answer): retry shortly. 503 with Retry-After.
    Unavailable,
    /// A bounded queue in front of the backend is full: nothing was stored; retry
    /// shortly. 429 with Retry-After.
    Busy,
    /// The request itself is wrong (the backend refuses it whatever its state). 400.
    BadInput,
    /// The disk (or the backend's quota) is full. 503 with Retry-After: it passes once
    /// space is back.
    Full,
    /// Stored data could not be read back, or the data directory is damaged. 503.
    Corrupt,
    /// A read would pass a configured limit (samples per query). 422.
    Limit,
    /// The backend is shutting down. 503 with Retry-After.
    Closed,
}

/// A storage failure: its kind and a message for the client and the log (the
/// backend's own words, e.g. `storage: …` or `the event store is busy: …`).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct StorageError {
    kind: ErrorKind,
    message: String,
}

/// Seconds a client is told to wait before retrying a refused write.
pub const RETRY_AFTER_SECS: u64 = 1;

impl StorageError {
    /// A failure of `kind` described by `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> StorageError {
        StorageError {
            kind,
            message: message.into(),
        }
    }

    /// Its kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The HTTP status that answers a request this error stopped.
    pub fn status(&self) -> StatusCode {
        match self.kind {
            ErrorKind::Busy => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::BadInput => StatusCode::BAD_REQUEST,
            ErrorKind::Limit => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::Unavailable | ErrorKind::Full | ErrorKind::Corrupt | ErrorKind::Closed => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// Seconds to wait before retrying, when a retry can succeed.
    pub fn retry_after(&self) -> Option<u64> {
        match self.kind {
            ErrorKind::BadInput | ErrorKind::Limit => None,
            // A damaged store is not fixed by waiting, but a write refused by it is
            // safe to retry (it was not stored), and clients that honour Retry-After
            // back off instead of hammering.
            _ => Some(RETRY_AFTER_SECS),
        }
    }

    /// The answer to a write this error stopped: [`Self::status`], `Retry-After` when
    /// a retry can succeed, and `body` (the endpoint's own wording around the message).
    pub fn response(&self, body: String) -> Response {
        let mut r = (self.status(), body).into_response();
        if let Some(s) = self.retry_after() {
            r.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_answers_with_its_status_and_retry_after() {
        let cases = [
            (ErrorKind::Unavailable, 503, Some(1)),
            (ErrorKind::Busy, 429, Some(1)),
            (ErrorKind::BadInput, 400, None),
            (ErrorKind::Full, 503, Some(1)),
            (ErrorKind::Corrupt, 503, Some(1)),
            (ErrorKind::Limit, 422, None),
            (ErrorKind::Closed, 503, Some(1)),
        ];
        for (kind, status, retry) in cases {
            let e = StorageError::new(kind, "x");
            assert_eq!(e.status().as_u16(), status, "{kind:?}");
            assert_eq!(e.retry_after(), retry, "{kind:?}");
            let r = e.response(format!("storage error, retry: {e}\n"));
            assert_eq!(r.status().as_u16(), status);
            assert_eq!(
                r.headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .map(|v| v.to_string()),
                retry.map(|s| s.to_string())
            );
        }
    }
}
