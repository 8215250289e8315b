//! Sentry ingest: what any Sentry SDK sends, authenticated by the DSN key.
//!
//! ```text
//! POST /api/{project_id}/envelope/   application/x-sentry-envelope (gzip/deflate ok)
//! POST /api/{project_id}/store/      one event as JSON (legacy)
//! auth: X-Sentry-Auth: Sentry sentry_key=KEY, …  |  ?sentry_key=KEY  |  envelope `dsn`
//!
//! 200 {"id": "<event_id>"}
//! 400 {"detail": "..."}   malformed envelope, lying item length, bad event JSON
//! 401 {"detail": "..."}   missing or unknown DSN key
//! 403 {"detail": "..."}   key of another project
//! 404 {"detail": "..."}   unknown project
//! 429 {"detail": "..."}   rate limit or overload; Retry-After + X-Sentry-Rate-Limits
//! ```
//! `event` items are normalised, grouped and stored; every other item type (transaction,
//! session, attachment, client_report, …, and types not known yet) is counted and
//! skipped. Each stored event also bumps `calm_error_events_total` in the TSDB.
//! An `event` item that is not a valid event is dropped and counted (as Relay does),
//! and the envelope's other items are still taken; only an envelope with nothing usable
//! left is refused with 400. Limits: see [`limits`].

pub mod auth;
pub mod cors;
pub mod envelope;
pub mod event;
pub mod limits;
pub use crate::storage::projects;
pub mod stats;

use crate::ingest::SampleSink;
use crate::storage::events::EventStore;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use limits::{Limited, RateLimiter};
use projects::Projects;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Largest event payload accepted (bytes, after decompression).
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// What the Sentry handlers (and the issues API) share.
#[derive(Clone)]
pub struct SentryState {
    /// Projects and their keys.
    pub projects: Arc<Projects>,
    /// Where events and issues go.
    pub store: Arc<dyn EventStore>,
    /// Where the error counter series go.
    pub sink: Arc<dyn SampleSink>,
    /// Items received, by project and type.
    pub stats: Arc<stats::ItemStats>,
    /// Largest event payload accepted.
    pub max_event_bytes: usize,
    /// Event rate limits per project and overall.
    pub limits: Arc<RateLimiter>,
    /// Permits for requests in flight (bounds memory: no permit, no body read).
    pub in_flight: Arc<Semaphore>,
    /// How many permits there are.
    pub max_in_flight: usize,
}

impl SentryState {
    /// The ingest counters for the collector's `/metrics`.
    pub fn metrics(&self) -> stats::SentryMetrics {
        stats::SentryMetrics {
            stats: self.stats.clone(),
            in_flight: self.in_flight.clone(),
            max_in_flight: self.max_in_flight,
        }
    }
}

/// The ingest routes (body limit and decompression are the caller's layers).
pub fn routes(state: SentryState) -> Router {
    Router::new()
        .route(
            "/api/{project_id}/envelope/",
            post(envelope::handle).options(cors::preflight),
        )
        .route(
            "/api/{project_id}/envelope",
            post(envelope::handle).options(cors::preflight),
        )
        .route(
            "/api/{project_id}/store/",
            post(event::store_handle).options(cors::preflight),
        )
        .route(
            "/api/{project_id}/store",
            post(event::store_handle).options(cors::preflight),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), admit))
        .layer(middleware::from_fn(cors::allow_origin))
        .with_state(state)
}

/// Holds an in-flight permit for the whole request, taken before its body is read;
/// without one the request is answered 429 at once, so memory stays bounded however
/// many SDKs send at the same time.
async fn admit(State(st): State<SentryState>, req: Request, next: Next) -> Response {
    if req.method() == axum::http::Method::OPTIONS {
        return next.run(req).await;
    }
    let Ok(_permit) = st.in_flight.clone().try_acquire_owned() else {
        st.stats
            .discard(limits::Refusal::Overloaded.reason(), "request", 1);
        return Limited::overloaded(format!(
            "the collector is busy: {} Sentry requests are being processed; retry after 1 s",
            st.max_in_flight
        ))
        .response();
    };
    next.run(req).await
}

/// A Sentry-style error answer: `{"detail": "..."}`.
pub fn detail(code: StatusCode, msg: impl Into<String>) -> Response {
    (
        code,
        axum::Json(serde_json::json!({ "detail": msg.into() })),
    )
        .into_response()
}

/// A refusal not yet turned into a response (small, so `Result`s stay small).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// The status code.
    pub code: StatusCode,
    /// What is wrong, for the `detail` field.
    pub msg: String,
}

impl Reject {
    /// A refusal with `code` and `msg`.
    pub fn new(code: StatusCode, msg: impl Into<String>) -> Reject {
        Reject {
            code,
            msg: msg.into(),
        }
    }
}

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        detail(self.code, self.msg)
    }
}

/// The Sentry ingest state for its section `e` (`[errors]`) and the largest body the
/// server takes (`max_body_bytes`), over the stores the composition root built:
/// `projects` (DSN keys), `store` (issues and events) and `sink` (the error counter
/// series).
pub fn new(
    e: &limits::ErrorsConfig,
    max_body_bytes: usize,
    projects: Arc<Projects>,
    store: Arc<dyn EventStore>,
    sink: Arc<dyn SampleSink>,
) -> SentryState {
    let rates = projects
        .list()
        .iter()
        .filter_map(|p| p.rate_limit.map(|r| (p.id, r)))
        .collect();
    SentryState {
        projects,
        store,
        sink,
        stats: Arc::new(stats::ItemStats::default()),
        max_event_bytes: MAX_EVENT_BYTES.min(max_body_bytes),
        limits: Arc::new(RateLimiter::new(e, rates)),
        in_flight: Arc::new(Semaphore::new(e.max_in_flight)),
        max_in_flight: e.max_in_flight,
    }
}
