//! The UI's login: with read tokens configured, the browser cannot add an
//! `Authorization` header to page loads, so the login form posts the token here and
//! gets it back as an HttpOnly, SameSite=Strict cookie, which the auth guard accepts
//! like a bearer token when a request has none (see [`cookie_token`] in
//! [`crate::auth`]). It takes a read or an admin token (an admin token lets the pages
//! resolve and ignore issues).
//!
//! ```text
//! POST   /api/calm/v1/session  {"token": "..."}   204 + Set-Cookie | 401 wrong token
//!                                                 | 400 not JSON | 403 foreign Origin
//! DELETE /api/calm/v1/session                     204, cookie cleared
//! ```
//!
//! The login itself must come from the collector's own pages (`Origin`); changes made
//! with the cookie pass the guard's cross-site check like any other.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use std::sync::Arc;

/// The cookie's name.
pub const COOKIE: &str = "calm_token";
/// How long the browser keeps it (30 days).
const MAX_AGE_SECS: u64 = 30 * 86_400;

/// The token of a `calm_token` cookie, if the request has one.
pub fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| percent_decode(v))
}

/// False for a state-changing request whose `Origin` (or, lacking it, `Referer`) is not
/// this collector (`Host`): a cookie must not let another site act for the user.
pub fn cookie_request_allowed(method: &Method, headers: &HeaderMap) -> bool {
    if method == Method::GET || method == Method::HEAD {
        return true;
    }
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let from = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    from.is_some_and(|o| {
        let rest = o
            .strip_prefix("http://")
            .or_else(|| o.strip_prefix("https://"));
        rest.is_some_and(|r| r.split('/').next() == Some(host))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn detail(status: StatusCode, msg: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "detail": msg }).to_string(),
    )
        .into_response()
}

fn set_cookie(value: &str, max_age: u64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}"
    ))
    .ok()
}

async fn login(
    State(tokens): State<Arc<Vec<String>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !cookie_request_allowed(&Method::POST, &headers) {
        return detail(
            StatusCode::FORBIDDEN,
            "the Origin of this request is not this collector",
        );
    }
    let token = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("token").and_then(|t| t.as_str()).map(str::to_string));
    let Some(token) = token else {
        return detail(
            StatusCode::BAD_REQUEST,
            "body must be JSON like {\"token\": \"<read token>\"}",
        );
    };
    if tokens.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    if !tokens.contains(&token) {
        return detail(
            StatusCode::UNAUTHORIZED,
            "this is not a read token of this collector",
        );
    }
    let mut h = HeaderMap::new();
    if let Some(v) = set_cookie(&crate::ui::path_segment(&token), MAX_AGE_SECS) {
        h.insert(header::SET_COOKIE, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    (StatusCode::NO_CONTENT, h).into_response()
}

async fn logout() -> Response {
    let mut h = HeaderMap::new();
    if let Some(v) = set_cookie("", 0) {
        h.insert(header::SET_COOKIE, v);
    }
    (StatusCode::NO_CONTENT, h).into_response()
}

/// `POST|DELETE /api/calm/v1/session`, taking any of `tokens` (read and admin).
pub fn routes(tokens: Vec<String>) -> Router {
    Router::new()
        .route("/api/calm/v1/session", post(login).delete(logout))
        .with_state(Arc::new(tokens))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_round_trip() {
        let t = "a b;c=d%é";
        let mut h = HeaderMap::new();
        let v = format!("x=1; {COOKIE}={}; y=2", crate::ui::path_segment(t));
        h.insert(header::COOKIE, HeaderValue::from_str(&v).unwrap());
        assert_eq!(cookie_token(&h).as_deref(), Some(t));
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn origin_must_match_for_changes() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:9400"));
        assert!(cookie_request_allowed(&Method::GET, &h));
        assert!(!cookie_request_allowed(&Method::PUT, &h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(!cookie_request_allowed(&Method::PUT, &h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:9400"),
        );
        assert!(cookie_request_allowed(&Method::PUT, &h));
    }
}
