//! The agent's sources. Each is a folder of its own; a new source never touches the
//! others.
//!
//! - [`host`]: host metrics with node_exporter names.
//! - [`otlp`]: the OTLP/HTTP metrics receiver (`POST /v1/metrics`).
//! - [`scrape`]: apps' `/metrics` pulled as Prometheus pulls them.
//! - [`sentry`]: the Sentry relay (`/api/{project_id}/envelope/`, `store/`).

pub mod host;
pub mod otlp;
pub mod scrape;
pub mod sentry;
