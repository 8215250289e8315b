//! PromQL evaluation over the TSDB, with Prometheus 3 semantics.
//!
//! ```text
//! query string ─parse (promql-parser)─▶ Expr ─plan─▶ one SeriesReader::select per selector
//!                                             └─eval per step─▶ Value ─▶ QueryValue
//! ```
//! [`engine`] is the entry point (limits, instant and range queries); [`eval`] walks the
//! tree at one evaluation time; [`selectors`] reads the preloaded series (lookback,
//! offset, `@`, staleness); [`binary`], [`aggregations`] and [`functions`] implement
//! the operators, aggregations and functions.

pub mod aggregations;
pub mod binary;
pub mod blocks;
pub mod config;
pub mod engine;
pub mod eval;
pub mod functions;
pub mod histograms;
pub mod intern;
pub mod limits;
pub mod pool;
pub mod selectors;
pub mod series_rows;
pub mod streamed;
pub mod string_escapes;
pub mod value;

pub use engine::{Engine, EngineOptions};
pub use value::{Labels, QueryValue};

/// Why a query failed. The API maps these to Prometheus' error types.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The query cannot be parsed or is not valid (`bad_data`, 400).
    #[error("{0}")]
    BadData(String),
    /// The query failed while running (`execution`, 422).
    #[error("{0}")]
    Execution(String),
    /// The query ran out of time (`timeout`, 503).
    #[error("{0}")]
    Timeout(String),
    /// Storage failed (`internal`, 500).
    #[error("{0}")]
    Internal(String),
    /// Storage cannot answer completely now (cluster mode, `strict_reads`: a partition
    /// without a ready owner): `unavailable`, 503 with Retry-After.
    #[error("{0}")]
    Unavailable(String),
}

impl Error {
    /// An execution error.
    pub fn exec(msg: impl Into<String>) -> Error {
        Error::Execution(msg.into())
    }
}

/// Result of an evaluation step.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests;
