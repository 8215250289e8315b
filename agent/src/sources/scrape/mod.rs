//! The scrape source: the apps' `/metrics`, pulled on an interval as Prometheus pulls
//! them, stored as Prometheus would store them, and shipped through the spool.
//!
//! Targets come from `[[scrape]]` sections in the agent's TOML and from `--scrape URL`
//! flags (see [`config`]). Per target and scrape: `up`, `scrape_duration_seconds`,
//! `scrape_samples_scraped`, `scrape_samples_post_metric_relabeling`,
//! `scrape_series_added`; `job` and `instance` labels with `honor_labels`; stale markers
//! when a series or the whole target disappears; `sample_limit`, a timeout and a body
//! size limit, each of which fails the scrape (up = 0) with a logged reason and a counter.
//!
//! - [`config`]: targets and their defaults.
//! - [`fetch`]: the HTTP request (Accept, gzip, limits).
//! - [`series`]: parsed families → labelled series.
//! - [`staleness`]: what vanished since the last scrape.
//! - [`report`]: the per-scrape report series.
//! - [`scraper`]: the loop that ties them together.
//!
//! Parsing is `calm_wire::exposition`, the same code the fuzz target runs. OpenMetrics
//! exemplars are parsed and dropped, as Prometheus 2.42 drops them unless its exemplar
//! storage is switched on; `_created` series are stored as samples, as it stores them.
//! `relabel_configs` and `metric_relabel_configs` with Prometheus' semantics
//! ([`relabel`]); `scrape_samples_post_metric_relabeling` counts what the latter kept.

pub mod config;
pub mod fetch;
pub mod relabel;
pub mod report;
pub mod scraper;
pub mod series;
pub mod staleness;

pub use config::ScrapeConfig;
pub use scraper::{ScrapeStats, Sink};

/// Resolves every target (failing on the first bad one, naming it) and starts one
/// scrape task per target. Returns how many were started.
pub fn start(configs: &[ScrapeConfig], sink: Sink) -> anyhow::Result<usize> {
    let targets = configs
        .iter()
        .map(|c| c.resolve().map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (dropped, targets): (Vec<_>, Vec<_>) = targets.into_iter().partition(|t| t.dropped);
    for t in dropped {
        tracing::info!(url = %t.url, "target dropped by its relabel_configs: not scraped");
    }
    if targets.is_empty() {
        return Ok(0);
    }
    let client = fetch::client()
        .map_err(|e| anyhow::anyhow!("cannot build the HTTP client for scraping: {e}"))?;
    for t in &targets {
        tokio::spawn(scraper::run(t.clone(), client.clone(), sink.clone()));
    }
    Ok(targets.len())
}
