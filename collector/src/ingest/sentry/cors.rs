//! CORS for browser SDKs: `@sentry/browser` posts envelopes from the page's origin, so
//! every answer of the ingest endpoints says any origin may read it (the DSN key, not
//! the origin, authorises a write), and a preflight gets what Sentry answers.
//!
//! ```text
//! OPTIONS /api/1/envelope/
//! Origin: https://app.example
//! Access-Control-Request-Method: POST
//!
//! 200 OK
//! Access-Control-Allow-Origin: *
//! Access-Control-Allow-Methods: GET, POST, HEAD, OPTIONS
//! Access-Control-Allow-Headers: x-sentry-auth, x-requested-with, origin, accept, content-type, ...
//! Access-Control-Expose-Headers: x-sentry-error, x-sentry-rate-limits, retry-after
//! Access-Control-Max-Age: 3600
//! ```

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Headers a browser SDK may send.
const ALLOW_HEADERS: &str = "x-sentry-auth, x-requested-with, origin, accept, content-type, \
    authentication, authorization, content-encoding, transfer-encoding, sentry-trace, baggage";
/// Headers the SDK must be able to read (its rate limiting reads the last two).
const EXPOSE_HEADERS: &str = "x-sentry-error, x-sentry-rate-limits, retry-after";

/// `OPTIONS` on an ingest endpoint: the preflight answer.
pub async fn preflight() -> Response {
    let mut r = StatusCode::OK.into_response();
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, HEAD, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(ALLOW_HEADERS),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("3600"),
    );
    r
}

/// Adds `Access-Control-Allow-Origin: *` and the exposed headers to every answer
/// (errors and 429s included, so that the SDK can read why).
pub async fn allow_origin(req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSE_HEADERS),
    );
    r
}
