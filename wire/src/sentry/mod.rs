//! The Sentry protocol, read leniently: SDKs of every age send legacy shapes that the
//! strict `sentry-types` model (and its envelope parser) would reject.
//!
//! - [`envelope`]: envelope framing, split by hand (unknown item types kept, lying
//!   lengths reported).
//! - [`auth`]: the DSN key from `X-Sentry-Auth`, `Authorization: Sentry …`, the
//!   `sentry_key` query parameter or an envelope's `dsn` header (via `sentry-types`).
//! - [`event`]: an event payload as JSON with size and depth limits, legacy interface
//!   names and shapes ([`event::values_list`], [`event::tag_pairs`], …).
//! - [`rate_limits`]: the `X-Sentry-Rate-Limits` header, written and read.
//! - [`timestamp`], [`level`], [`stacktrace`], [`trimming`], [`ids`]: one normalisation
//!   concern each.

pub mod auth;
pub mod envelope;
pub mod event;
pub mod ids;
pub mod level;
pub mod rate_limits;
pub mod stacktrace;
pub mod timestamp;
pub mod trimming;

pub use sentry_types::{Auth, Dsn};
