//! The HTTP server: one axum router for ingest, the API and the collector's own
//! endpoints, with body limits and bearer-token checks.
//!
//! ```text
//! POST /api/v1/write            remote-write            (write scope)
//! POST /v1/metrics              OTLP/HTTP               (write scope)
//! GET|POST /api/v1/query, /api/v1/query_range, /api/v1/series, /api/v1/labels
//! GET  /api/v1/label/{name}/values, /api/v1/status/buildinfo, /api/v1/metadata
//!                                                     (read scope)
//! POST /api/{project}/envelope/, /api/{project}/store/   Sentry SDKs (DSN key)
//! GET  /api/calm/v1/projects, /api/calm/v1/issues[/{id}[/events|/tags[/{key}]]]
//!                                                     (read scope; DSN keys shown to
//!                                                     admin only)
//! PUT  /api/calm/v1/issues/{id}, /api/calm/v1/issues?id=…  (admin scope)
//! POST /api/calm/v1/agents/heartbeat                  (write scope)
//! GET  /api/calm/v1/agent/projects (DSN keys for relays) (write scope)
//! GET  /api/calm/v1/agents                            (read scope)
//! GET|POST /api/v1/rules, /api/v1/alerts (read scope); POST /-/reload (admin scope)
//! GET  /metrics /healthz /readyz                     (public)
//! GET  / /fleet /explore /graph /hosts/{host} /issues[/{id}] /alerts /rules, /ui/…
//!      the built-in UI's shell and assets (public: no data), [`crate::ui`]
//! POST|DELETE /api/calm/v1/session                    the UI's login cookie (public)
//! ```
//! Scopes, tokens and the browser checks: [`crate::auth`], applied by [`with_auth`].

use crate::api;
use crate::ingest::{self, IngestState};
use crate::storage::Stores;
use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::middleware;
use axum::routing::{get, post};
use axum::Router;
use calm_wire::labels::LabelLimits;
use std::sync::Arc;
use tower_http::decompression::RequestDecompressionLayer;

/// Puts the auth guard ([`crate::auth::guard`]) in front of every route of `app`;
/// `bound` is the address actually listened on.
pub fn with_auth(
    app: Router,
    auth: &crate::auth::AuthConfig,
    bound: std::net::SocketAddr,
) -> Router {
    app.layer(middleware::from_fn_with_state(
        Arc::new(crate::auth::Guard::new(auth, bound)),
        crate::auth::guard,
    ))
}

/// What [`router`] takes of the configuration (`main.rs` builds it).
#[derive(Debug, Clone, Copy)]
pub struct RouterConfig<'a> {
    /// `max_body_bytes`: the largest request body (after decompression).
    pub max_body_bytes: usize,
    /// `max_labels_per_series`.
    pub max_labels_per_series: usize,
    /// `[limits] max_new_series_per_sender_per_minute`.
    pub max_new_series_per_sender_per_minute: u64,
    /// `[auth]`: which tokens the UI's login takes.
    pub auth: &'a crate::auth::AuthConfig,
}

/// Builds the router over `stores` (metrics ingest, the Prometheus API, the fleet
/// view and the collector's own endpoints); `/metrics` serves `metrics`.
pub fn router(
    cfg: RouterConfig<'_>,
    stores: &Stores,
    metrics: crate::selfmetrics::SelfMetrics,
) -> Router {
    let max_body_bytes = cfg.max_body_bytes;
    let metadata = stores.metadata.clone();
    let db = stores.reader.clone();
    let ready = stores.readiness();
    let ingest_state = IngestState {
        sink: stores.sink.clone(),
        limits: LabelLimits {
            max_labels: cfg.max_labels_per_series,
            ..LabelLimits::default()
        },
        max_body_bytes,
        metadata: metadata.clone(),
        senders: Arc::new(ingest::SenderLimiter::new(
            cfg.max_new_series_per_sender_per_minute,
        )),
    };
    // Remote-write bodies are snappy blocks that the handler decompresses itself (with
    // its own limit check); only OTLP goes through the gzip/deflate layer, which would
    // answer 415 to `Content-Encoding: snappy`.
    let write = Router::new()
        .route("/api/v1/write", post(ingest::remote_write::handle))
        .route(
            "/v1/metrics",
            post(ingest::otlp::handle)
                .layer::<_, std::convert::Infallible>(calm_serve::count_layer())
                .layer(RequestDecompressionLayer::new()),
        )
        .with_state(ingest_state)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn_with_state(
            max_body_bytes,
            calm_serve::explain_too_large,
        ));
    let query = Router::new()
        .route(
            "/api/v1/query",
            get(api::query::instant).post(api::query::instant),
        )
        .route(
            "/api/v1/query_range",
            get(api::query::range).post(api::query::range),
        )
        .with_state(api::query::QueryState {
            db: db.clone(),
            durations: metrics.query_durations(),
        });
    let agent_stats = metrics.agent_stats();
    let read = Router::new()
        .merge(query)
        .route(
            "/api/v1/series",
            get(api::series::series).post(api::series::series),
        )
        .route(
            "/api/v1/labels",
            get(api::series::labels).post(api::series::labels),
        )
        .route(
            "/api/v1/label/{name}/values",
            get(api::series::label_values),
        )
        .route("/api/v1/status/buildinfo", get(api::series::buildinfo))
        .route(
            "/api/v1/format_query",
            get(api::expression::format_query).post(api::expression::format_query),
        )
        .route(
            "/api/v1/parse_query",
            get(api::parse_query::parse_query).post(api::parse_query::parse_query),
        )
        .route(
            "/api/v1/query_exemplars",
            get(api::expression::query_exemplars).post(api::expression::query_exemplars),
        )
        .merge(
            Router::new()
                .route("/api/v1/metadata", get(api::metadata::metadata))
                .with_state(metadata),
        )
        .with_state(db.clone())
        .layer(DefaultBodyLimit::max(1 << 20));
    let own = Router::new()
        .route(
            "/metrics",
            get(move || {
                let r = metrics.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        r.render(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    match ready() {
                        Ok(()) => (axum::http::StatusCode::OK, "ready\n".to_string()),
                        Err(why) => (
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            format!("not ready: {why}\n"),
                        ),
                    }
                }
            }),
        );
    Router::new()
        .merge(write)
        .merge(read)
        .merge(own)
        .merge(agents_router(stores.agents.clone(), agent_stats))
        .merge(crate::ui::routes(cfg.auth))
}

/// The fleet view: agents' heartbeats (write scope) and `GET /api/calm/v1/agents`
/// (read scope), kept in the agents store.
fn agents_router(
    store: Arc<dyn api::agents::AgentStore>,
    stats: Arc<api::agents::AgentStats>,
) -> Router {
    let write = api::agents::write_routes(store.clone(), stats)
        .layer(DefaultBodyLimit::max(api::agents::MAX_HEARTBEAT_BYTES));
    let read = api::agents::read_routes(store);
    write.merge(read)
}

/// The Sentry ingest routes (DSN-key auth, gzip/deflate bodies up to `max_body_bytes`
/// decompressed) and the issues API (read and admin scopes), to merge into [`router`]'s.
pub fn errors_router(
    max_body_bytes: usize,
    sentry: ingest::sentry::SentryState,
    listen: String,
) -> Router {
    let ingest =
        calm_serve::with_body_limits(ingest::sentry::routes(sentry.clone()), max_body_bytes);
    let keys = api::agent_projects::routes(sentry.projects.clone());
    let read = api::issues::routes(sentry, listen).layer(DefaultBodyLimit::max(1 << 20));
    ingest.merge(read).merge(keys)
}

/// `/api/v1/rules`, `/api/v1/alerts` (read scope) and `POST /-/reload` (admin
/// scope), to merge into [`router`]'s.
pub fn alerts_router(manager: Arc<crate::alerts::manager::Manager>) -> Router {
    api::rules::routes(manager).layer(DefaultBodyLimit::max(1 << 20))
}
