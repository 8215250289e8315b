//! The `[query]` section of the collector's configuration: bounds on PromQL text and on
//! how many queries run at once ([`super::limits`], [`super::pool`]).

use serde::Deserialize;

/// `[query]` section: bounds on PromQL text and on how many queries run at once
/// (`promql/limits.rs`, `promql/pool.rs`).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct QueryConfig {
    /// Longest query text, in bytes; longer is a 400 naming the limit.
    pub max_length: usize,
    /// Deepest expression (each bracket and each operator is one level); deeper is a
    /// 400 naming the limit, checked before parsing on every route and in rule files.
    pub max_depth: usize,
    /// Most queries (query, query_range, series/labels match[], format_query…)
    /// evaluated at once, each on a thread of its own.
    pub max_concurrency: usize,
    /// Most queries waiting for a thread; beyond it, 503 with Retry-After.
    pub max_queued: usize,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            max_length: super::limits::DEFAULT_MAX_LENGTH,
            max_depth: super::limits::DEFAULT_MAX_DEPTH,
            max_concurrency: super::pool::DEFAULT_MAX_CONCURRENCY,
            max_queued: super::pool::DEFAULT_MAX_QUEUED,
        }
    }
}

impl QueryConfig {
    /// Most depth allowed. Measured with `promql::tests::stack_probe` on a debug build:
    /// the worst shape (`abs(abs(…))`) needs ~13 KiB of stack a level through parse,
    /// evaluation, `prettify` and drop, so the 16 MiB runtime threads (rule evaluation)
    /// hold ~1300 levels and the 64 MiB query threads ~4500.
    pub const MAX_DEPTH_CEILING: usize = 512;

    /// Checks the values (keys under `[query]`), naming where a wrong one came from.
    pub fn check(
        &self,
        origin: &calm_serve::config::Origin,
    ) -> Result<(), calm_serve::config::ConfigError> {
        origin.range("query.max_length", self.max_length, 64, 1 << 30)?;
        origin.range(
            "query.max_depth",
            self.max_depth,
            8,
            Self::MAX_DEPTH_CEILING,
        )?;
        origin.range("query.max_concurrency", self.max_concurrency, 1, 1024)?;
        Ok(())
    }

    /// The text limits, for `promql::limits::set`.
    pub fn limits(&self) -> super::limits::QueryLimits {
        super::limits::QueryLimits {
            max_length: self.max_length,
            max_depth: self.max_depth,
        }
    }

    /// The pool's settings, for `promql::pool::init`.
    pub fn pool(&self) -> super::pool::QueryPoolOptions {
        super::pool::QueryPoolOptions {
            max_concurrency: self.max_concurrency,
            max_queued: self.max_queued,
            stack_bytes: super::pool::DEFAULT_STACK_BYTES,
        }
    }
}
