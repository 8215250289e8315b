//! The agent's sources. Each is a folder of its own; a new source never touches the
//! others.
//!
//! - [`host`]: host metrics with node_exporter names.

pub mod host;
