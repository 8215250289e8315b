//! The OTLP receiver: apps push OTLP/HTTP metrics to the agent (the OpenTelemetry SDKs'
//! default endpoint, `http://127.0.0.1:4318/v1/metrics`); they are mapped to Prometheus
//! series by `calm_wire::otlp` (the collector's own mapping) and spooled as remote-write.
//!
//! - [`receiver`]: the `POST /v1/metrics` handler.
//!
//! Config (agent TOML): `otlp_listen = "127.0.0.1:4318"` (`"off"` disables it), flag
//! `--otlp-listen`.

pub mod receiver;

use axum::routing::post;
use axum::Router;

/// The receiver's routes (decompression and body limits are the caller's layers).
pub fn routes(state: receiver::OtlpState) -> Router {
    Router::new()
        .route("/v1/metrics", post(receiver::handle))
        .with_state(state)
}
