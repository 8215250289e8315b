//! Scrape targets: the `[[scrape]]` sections of the agent's TOML and `--scrape URL`
//! flags, resolved into [`Target`]s with Prometheus' defaults and meanings.
//!
//! ```text
//! [[scrape]]
//! url = "http://127.0.0.1:8000/metrics"
//! interval = "15s"            # default 15s
//! timeout = "10s"             # default 10s, at most the interval
//! job = "api"                 # default "scrape"
//! labels = { team = "web" }   # static labels added to every series
//! honor_labels = false        # scraped labels that clash become exported_<name>
//! honor_timestamps = true     # keep the timestamps the body gives
//! sample_limit = 0            # more samples fail the scrape (0: no limit)
//! body_size_limit = 16777216  # bytes, after decompression; more fails the scrape
//! ```

use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// One `[[scrape]]` section as written.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ScrapeConfig {
    /// The target's URL (`http://host:port/metrics`).
    pub url: String,
    /// How often to scrape (a Prometheus duration: `15s`, `1m`).
    pub interval: Option<String>,
    /// How long one scrape may take, body included.
    pub timeout: Option<String>,
    /// The `job` label.
    pub job: Option<String>,
    /// Static labels added to every series of the target.
    pub labels: BTreeMap<String, String>,
    /// Scraped labels win over target labels when true.
    pub honor_labels: bool,
    /// Timestamps in the body are kept when true (the default).
    pub honor_timestamps: Option<bool>,
    /// Most samples one scrape may hold; 0 means no limit.
    pub sample_limit: usize,
    /// Most bytes one body may have, after decompression.
    pub body_size_limit: Option<usize>,
}

/// Default interval, as Prometheus' `global.scrape_interval` is usually set.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);
/// Default timeout (Prometheus' `scrape_timeout` default), capped at the interval.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default body limit: far above any sane exposition (node_exporter is ~0.3 MB), far
/// below what would hurt a small host.
pub const DEFAULT_BODY_SIZE_LIMIT: usize = 16 << 20;
/// The job of targets that name none.
pub const DEFAULT_JOB: &str = "scrape";

/// A target ready to scrape.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: reqwest::Url,
    pub job: String,
    /// `host:port` of the URL (the port made explicit, as Prometheus does).
    pub instance: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub labels: BTreeMap<String, String>,
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    pub sample_limit: usize,
    pub body_size_limit: usize,
}

fn duration(what: &str, s: &Option<String>, default: Duration) -> Result<Duration, String> {
    match s {
        None => Ok(default),
        Some(s) => promql_parser::util::parse_duration(s)
            .map_err(|e| format!("{what} {s:?} is not a duration like 15s or 1m: {e}"))
            .and_then(|d| {
                if d.is_zero() {
                    Err(format!("{what} {s:?} must be more than zero"))
                } else {
                    Ok(d)
                }
            }),
    }
}

impl ScrapeConfig {
    /// A target from `--scrape URL`: every other setting at its default.
    pub fn from_url(url: &str) -> ScrapeConfig {
        ScrapeConfig {
            url: url.to_string(),
            ..ScrapeConfig::default()
        }
    }

    /// Checks the section and fills in defaults. The error names the target and the key.
    pub fn resolve(&self) -> Result<Target, String> {
        let ctx = |e: String| format!("[[scrape]] url = {:?}: {e}", self.url);
        let url = reqwest::Url::parse(&self.url).map_err(|e| {
            ctx(format!(
                "not a URL ({e}); write it as http://host:port/metrics"
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ctx(format!(
                "scheme {:?} is not http or https",
                url.scheme()
            )));
        }
        let host = url
            .host_str()
            .ok_or_else(|| ctx("the URL has no host".into()))?;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| ctx("the URL has no port".into()))?;
        let instance = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let interval = duration("interval", &self.interval, DEFAULT_INTERVAL).map_err(ctx)?;
        let timeout =
            duration("timeout", &self.timeout, DEFAULT_TIMEOUT.min(interval)).map_err(ctx)?;
        if timeout > interval {
            return Err(ctx(format!(
                "timeout {timeout:?} is longer than the interval {interval:?}"
            )));
        }
        for name in self.labels.keys() {
            if !calm_wire::labels::is_valid_label_name(name.as_bytes()) || name == "__name__" {
                return Err(ctx(format!("static label name {name:?} is not valid")));
            }
        }
        let job = self.job.clone().unwrap_or_else(|| DEFAULT_JOB.to_string());
        if job.is_empty() {
            return Err(ctx("job must not be empty".into()));
        }
        Ok(Target {
            url,
            job,
            instance,
            interval,
            timeout,
            labels: self.labels.clone(),
            honor_labels: self.honor_labels,
            honor_timestamps: self.honor_timestamps.unwrap_or(true),
            sample_limit: self.sample_limit,
            body_size_limit: self.body_size_limit.unwrap_or(DEFAULT_BODY_SIZE_LIMIT),
        })
    }
}

impl Target {
    /// The target's own labels, as Prometheus attaches them: `job`, `instance`, then the
    /// static ones (which may override `job`/`instance`, as `labels:` in Prometheus can).
    pub fn target_labels(&self) -> Vec<(String, String)> {
        let mut out: BTreeMap<String, String> = BTreeMap::new();
        out.insert("job".into(), self.job.clone());
        out.insert("instance".into(), self.instance.clone());
        for (k, v) in &self.labels {
            out.insert(k.clone(), v.clone());
        }
        out.into_iter().filter(|(_, v)| !v.is_empty()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_instance_like_prometheus() {
        let t = ScrapeConfig::from_url("http://localhost/metrics")
            .resolve()
            .unwrap();
        assert_eq!(t.instance, "localhost:80");
        assert_eq!(t.job, "scrape");
        assert_eq!(t.interval, DEFAULT_INTERVAL);
        assert_eq!(t.timeout, DEFAULT_TIMEOUT);
        assert!(t.honor_timestamps && !t.honor_labels);
        let mut c = ScrapeConfig::from_url("https://[::1]/m");
        c.interval = Some("5s".into());
        let t = c.resolve().unwrap();
        assert_eq!(t.instance, "[::1]:443");
        assert_eq!(
            t.timeout,
            Duration::from_secs(5),
            "timeout capped at the interval"
        );
    }

    #[test]
    fn bad_sections_name_the_problem() {
        let mut c = ScrapeConfig::from_url("http://a:1/m");
        c.interval = Some("soon".into());
        assert!(c.resolve().unwrap_err().contains("interval \"soon\""));
        let mut c = ScrapeConfig::from_url("http://a:1/m");
        c.interval = Some("5s".into());
        c.timeout = Some("10s".into());
        assert!(c
            .resolve()
            .unwrap_err()
            .contains("longer than the interval"));
        assert!(ScrapeConfig::from_url("ftp://a/b")
            .resolve()
            .unwrap_err()
            .contains("scheme"));
        assert!(ScrapeConfig::from_url("nope")
            .resolve()
            .unwrap_err()
            .contains("not a URL"));
    }
}
