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
//! - [`file_sd`]: targets from `file_sd_configs` files, re-read without a restart.
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
pub mod file_sd;
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
    let (discovered, fixed): (Vec<&ScrapeConfig>, Vec<&ScrapeConfig>) =
        configs.iter().partition(|c| !c.file_sd_configs.is_empty());
    // A section with file_sd_configs and a url scrapes that url too.
    let with_url: Vec<ScrapeConfig> = discovered
        .iter()
        .filter(|c| !c.url.is_empty())
        .map(|c| ScrapeConfig {
            file_sd_configs: Vec::new(),
            ..(*c).clone()
        })
        .collect();
    let targets = fixed
        .into_iter()
        .chain(with_url.iter())
        .map(|c| c.resolve().map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let client = fetch::client()
        .map_err(|e| anyhow::anyhow!("cannot build the HTTP client for scraping: {e}"))?;
    for c in &discovered {
        file_sd::check(c).map_err(anyhow::Error::msg)?;
        tokio::spawn(file_sd::run((*c).clone(), client.clone(), sink.clone()));
    }
    let (dropped, targets): (Vec<_>, Vec<_>) = targets.into_iter().partition(|t| t.dropped);
    for t in dropped {
        tracing::info!(url = %t.url, "target dropped by its relabel_configs: not scraped");
    }
    for t in &targets {
        // Static targets are never stopped.
        let stop = std::sync::Arc::new(tokio::sync::Notify::new());
        tokio::spawn(scraper::run(t.clone(), client.clone(), sink.clone(), stop));
    }
    Ok(targets.len() + discovered.len())
}

/// The scrape source behind [`crate::sources::Source`]; its section is the `[[scrape]]`
/// list with the `--scrape` flags' targets.
pub struct Scrape;

impl crate::sources::Source for Scrape {
    const NAME: &'static str = "scrape";
    type Config = Vec<ScrapeConfig>;

    fn section(cfg: &crate::config::Config) -> Vec<ScrapeConfig> {
        cfg.scrape.clone()
    }

    fn run(
        section: Vec<ScrapeConfig>,
        ctx: &crate::sources::Context,
    ) -> anyhow::Result<crate::sources::Started> {
        let stats = std::sync::Arc::new(ScrapeStats::default());
        ctx.metrics
            .register(stats.clone(), crate::selfmetrics::scrape);
        if ctx.common.collectors.is_empty() && !section.is_empty() {
            tracing::warn!("no --collector given: scrape targets are not scraped");
            return Ok(crate::sources::Started::default());
        }
        let n = start(
            &section,
            Sink {
                spool: ctx.ship.spool.clone(),
                wake: ctx.ship.wake.clone(),
                stats,
            },
        )?;
        if n > 0 {
            tracing::info!(targets = n, "scrape source started");
        }
        Ok(crate::sources::Started::default())
    }
}
