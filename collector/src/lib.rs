//! calm-collector: stores metrics and answers for them.
//!
//! ```text
//! ingest/ (remote-write, OTLP) ─▶ SampleSink ─▶ tsdb/ ◀── api/ (Prometheus HTTP API)
//! ingest/sentry ─▶ errors/ (normalise, group, EventStore) ◀── api/issues
//! ```
//! [`server`] wires the rooms into one axum router; [`config`] reads the file, flags
//! and environment; [`selfmetrics`] serves the collector's own `/metrics`.

pub mod alerts;
pub mod api;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod data_dir_lock;
pub mod errors;
pub mod failpoint;
pub mod ingest;
pub mod promql;
pub mod secrets;
pub mod selfmetrics;
pub mod server;
pub mod startup;
pub mod storage;
pub mod tsdb;
pub mod ui;
