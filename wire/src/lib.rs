//! What Calm's agent and collector both speak.
//!
//! This crate is protocol only: no sockets, no storage. The agent and the collector
//! (and the fuzz targets) call into it, so a byte that crosses the network is read by
//! exactly one piece of code.
//!
//! - [`prompb`]: the Prometheus remote-write v1 protobuf messages.
//! - [`remote_write`]: decoding a snappy-compressed `WriteRequest` with size limits.
//! - [`remote_write_view`]: the same request read in place, without copying labels (the collector's hot path).
//! - [`exposition`]: the Prometheus text format and OpenMetrics, as a scraper reads them.
//! - [`labels`]: label-set rules (names, duplicates, limits) shared by every ingest path.
//! - [`otlp`]: OTLP metrics → Prometheus series, by OpenTelemetry's compatibility rules.
//! - [`sentry`]: Sentry envelopes, DSN auth and lenient event reading.
//! - [`value`]: special float values (the staleness marker).

pub mod exposition;
pub mod labels;
pub mod otlp;
pub mod prompb;
pub mod remote_write;
pub mod remote_write_view;
pub mod sentry;
pub mod value;
