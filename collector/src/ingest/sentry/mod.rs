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
//! ```
//! `event` items are normalised, grouped and stored; every other item type (transaction,
//! session, attachment, client_report, …, and types not known yet) is counted and
//! skipped. Each stored event also bumps `calm_error_events_total` in the TSDB.

pub mod auth;
pub mod envelope;
pub mod event;
pub mod projects;
pub mod stats;

use crate::errors::store::EventStore;
use crate::ingest::SampleSink;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use projects::Projects;
use std::sync::Arc;

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
}

/// The ingest routes (body limit and decompression are the caller's layers).
pub fn routes(state: SentryState) -> Router {
    Router::new()
        .route("/api/{project_id}/envelope/", post(envelope::handle))
        .route("/api/{project_id}/envelope", post(envelope::handle))
        .route("/api/{project_id}/store/", post(event::store_handle))
        .route("/api/{project_id}/store", post(event::store_handle))
        .with_state(state)
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

/// Opens what Sentry ingest needs for `cfg`: the projects (creating the default one on
/// first start) and the sled event store in `<data_dir>/events`.
pub fn open(cfg: &crate::config::Config, sink: Arc<dyn SampleSink>) -> anyhow::Result<SentryState> {
    use anyhow::Context;
    let (projects, created) = Projects::load(&cfg.projects, &cfg.data_dir)?;
    if created {
        tracing::info!("no [[projects]] configured: created default project 1 with a random key");
    }
    let dir = cfg.data_dir.join("events");
    let store = crate::errors::sled_store::SledEventStore::open(&dir, Default::default())
        .with_context(|| format!("cannot open the event store {}", dir.display()))?;
    Ok(SentryState {
        projects: Arc::new(projects),
        store: Arc::new(store),
        sink,
        stats: Arc::new(stats::ItemStats::default()),
        max_event_bytes: MAX_EVENT_BYTES.min(cfg.max_body_bytes),
    })
}
