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
//! [[scrape.relabel_configs]]          # on the target's labels (__address__, __scheme__,
//! …                                   # __metrics_path__, job, labels): Prometheus' rules
//! [[scrape.metric_relabel_configs]]   # on every scraped series (see relabel.rs)
//! …
//! [[scrape.file_sd_configs]]          # targets from files, re-read (see file_sd.rs)
//! files = ["/etc/calm/targets/*.json"]
//! refresh_interval = "5m"
//! ```
//! Target relabeling runs once, when the config is read: it may drop the target, change
//! the URL (`__scheme__`, `__address__`, `__metrics_path__`) and the target labels;
//! `instance` defaults to `__address__`; labels starting with `__` are then removed.

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
    pub interval: Option<calm_serve::config::Duration>,
    /// How long one scrape may take, body included.
    pub timeout: Option<calm_serve::config::Duration>,
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
    /// Relabeling of the target's labels.
    pub relabel_configs: Vec<super::relabel::RelabelConfig>,
    /// Relabeling of each scraped series.
    pub metric_relabel_configs: Vec<super::relabel::RelabelConfig>,
    /// Targets from files (Prometheus' `file_sd_configs`); `url` is then optional.
    pub file_sd_configs: Vec<super::file_sd::FileSdConfig>,
    /// Scheme of file_sd targets (default http).
    pub scheme: Option<String>,
    /// Path of file_sd targets (default /metrics).
    pub metrics_path: Option<String>,
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
    /// `metric_relabel_configs`, compiled.
    pub metric_relabel: std::sync::Arc<[super::relabel::Rule]>,
    /// True when `relabel_configs` dropped the target: it is not scraped.
    pub dropped: bool,
}

fn duration(
    what: &str,
    d: Option<calm_serve::config::Duration>,
    default: Duration,
) -> Result<Duration, String> {
    match d {
        None => Ok(default),
        Some(d) if d.is_zero() => Err(format!("{what} {d} must be more than zero")),
        Some(d) => Ok(d.get()),
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
        let interval = duration("interval", self.interval, DEFAULT_INTERVAL).map_err(ctx)?;
        let timeout =
            duration("timeout", self.timeout, DEFAULT_TIMEOUT.min(interval)).map_err(ctx)?;
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
        let target_rules =
            super::relabel::compile_all("relabel_configs", &self.relabel_configs).map_err(ctx)?;
        let metric_rules =
            super::relabel::compile_all("metric_relabel_configs", &self.metric_relabel_configs)
                .map_err(ctx)?;
        let mut t = Target {
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
            metric_relabel: metric_rules.into(),
            dropped: false,
        };
        if !target_rules.is_empty() {
            t.relabel(&target_rules).map_err(ctx)?;
        }
        // Labels starting with "__" (file_sd's __meta_filepath) are for relabeling only.
        t.labels.retain(|k, _| !k.starts_with("__"));
        Ok(t)
    }
}

/// Formats a duration as Prometheus writes `__scrape_interval__` (`15s`, `1m30s`).
fn prom_duration(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let (h, m, s) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

impl Target {
    /// Applies `relabel_configs` to the target's labels, as Prometheus does before a
    /// target is scraped.
    fn relabel(&mut self, rules: &[super::relabel::Rule]) -> Result<(), String> {
        let mut path = self.url.path().to_string();
        if path.is_empty() {
            path = "/".into();
        }
        let mut labels: Vec<(String, String)> = vec![
            ("__address__".into(), self.instance.clone()),
            ("__scheme__".into(), self.url.scheme().to_string()),
            ("__metrics_path__".into(), path),
            ("__scrape_interval__".into(), prom_duration(self.interval)),
            ("__scrape_timeout__".into(), prom_duration(self.timeout)),
            ("job".into(), self.job.clone()),
        ];
        for (k, v) in &self.labels {
            labels.retain(|(n, _)| n != k);
            labels.push((k.clone(), v.clone()));
        }
        if !super::relabel::process(&mut labels, rules) {
            self.dropped = true;
            return Ok(());
        }
        let get = |n: &str| labels.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let address = get("__address__")
            .ok_or("relabel_configs removed __address__: no address to scrape")?;
        let scheme = get("__scheme__").unwrap_or_else(|| "http".into());
        let path = get("__metrics_path__").unwrap_or_else(|| "/metrics".into());
        let mut url = reqwest::Url::parse(&format!("{scheme}://{address}{path}")).map_err(|e| {
            format!("relabel_configs made {scheme}://{address}{path}, not a URL: {e}")
        })?;
        url.set_query(self.url.query());
        self.url = url;
        self.instance = get("instance").unwrap_or(address);
        self.job = get("job").unwrap_or_default();
        self.labels = labels
            .into_iter()
            .filter(|(n, _)| !n.starts_with("__") && n != "job" && n != "instance")
            .collect();
        Ok(())
    }

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
        c.interval = Some(calm_serve::config::Duration::from_secs(5));
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
        // A malformed duration is refused when the file is read, naming the form.
        let e = toml::from_str::<ScrapeConfig>("url = \"http://a:1/m\"\ninterval = \"soon\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("interval = \"soon\"") && e.contains("expected a duration"),
            "{e}"
        );
        let mut c = ScrapeConfig::from_url("http://a:1/m");
        c.interval = Some(calm_serve::config::Duration::from_secs(5));
        c.timeout = Some(calm_serve::config::Duration::from_secs(10));
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
