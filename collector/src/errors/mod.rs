//! Errors: Sentry events normalised, grouped into issues, and stored.
//!
//! ```text
//! raw event ─▶ normalize ─▶ grouping (hash) ─▶ summary (title, culprit, metadata)
//!                                      └──────▶ EventStore (issues, events, counts)
//! ```
//! - [`normalize`]: one canonical shape for every SDK's payload.
//! - [`mask`]: numbers, hex and UUIDs masked so values that vary group together.
//! - [`grouping`]: the issue hash (in-app frames, exception type and value, message
//!   template, SDK `fingerprint` with `{{ default }}`).
//! - [`summary`]: title, culprit, type, location and metadata as Sentry computes them.
//! - [`crate::storage::events`]: the [`crate::storage::EventStore`] trait and its
//!   records; [`sled_store`] (with [`integrity`]) its embedded implementation.

pub mod grouping;
pub mod hook;
pub mod integrity;
pub mod issue;
pub mod mask;
pub mod normalize;
pub mod pipeline;
pub mod sled_store;
pub mod summary;

#[cfg(test)]
mod tests;
