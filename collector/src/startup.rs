//! Serving while starting: a collector answers `/healthz` (200: the process lives) and
//! `/readyz` (503, naming what it waits for: PostgreSQL, NATS, …) from the moment it
//! listens, before its stores are open; every other request gets 503 with Retry-After
//! until the full router is in place ([`Boot::ready`]), then everything is served by it.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::sync::{Arc, OnceLock};
use tower::ServiceExt as _;

static STATUS: parking_lot::RwLock<String> = parking_lot::RwLock::new(String::new());

/// Says what the start waits for now (shown by `/readyz` until the collector serves).
pub fn set(what: impl Into<String>) {
    *STATUS.write() = what.into();
}

/// What the start waits for now.
pub fn status() -> String {
    let s = STATUS.read().clone();
    if s.is_empty() {
        "opening the stores".to_string()
    } else {
        s
    }
}

/// The router served from the start: the full one once [`Boot::ready`] put it in.
#[derive(Clone, Default)]
pub struct Boot {
    app: Arc<OnceLock<Router>>,
}

impl Boot {
    /// A boot router with nothing behind it yet.
    pub fn new() -> Boot {
        Boot::default()
    }

    /// Puts the full router in place: from now on it answers every request.
    pub fn ready(&self, app: Router) {
        let _ = self.app.set(app);
    }

    /// The router to serve.
    pub fn router(&self) -> Router {
        let app = self.app.clone();
        Router::new().fallback(move |req: Request<Body>| {
            let app = app.clone();
            async move {
                if let Some(r) = app.get() {
                    return match r.clone().oneshot(req).await {
                        Ok(resp) => resp,
                        Err(never) => match never {},
                    };
                }
                starting(req.uri().path())
            }
        })
    }
}

fn starting(path: &str) -> Response {
    let why = status();
    match path {
        "/healthz" => (StatusCode::OK, "ok (starting)\n").into_response(),
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: starting: {why}\n"),
        )
            .into_response(),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "5")],
            format!("calm-collector is starting: {why}\n"),
        )
            .into_response(),
    }
}
