//! The collector's configuration: a TOML file, then flags, then `CALM_*` variables,
//! each overriding the one before (DESIGN.md).
//!
//! ```text
//! listen = "127.0.0.1:9400"
//! data_dir = "./data/collector"
//! retention = "15d"
//! ooo_window = "10m"
//! future_grace = "10m"
//! max_body_bytes = 33554432
//! [auth]
//! agent_tokens = ["..."]
//! read_tokens = ["..."]
//! admin_tokens = ["..."]
//! allow_anonymous_reads = false
//! allowed_hosts = ["calm.internal"]
//! [[projects]]
//! id = 1
//! name = "web"
//! public_key = "0123456789abcdef0123456789abcdef"
//! ```

use anyhow::{bail, Context};
use clap::Parser;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Command-line flags. Every one is optional so that it overrides the file only when
/// given.
#[derive(Debug, Parser, Default)]
#[command(
    name = "calm-collector",
    version,
    about = "Calm's collector: stores metrics, answers PromQL through the Prometheus HTTP API."
)]
pub struct Flags {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:9400].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Data directory [default: ./data/collector].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// How long samples are kept, as a Prometheus duration [default: 15d].
    #[arg(long, value_name = "DURATION")]
    pub retention: Option<String>,
    /// How far behind a series' newest sample an older one is still accepted [default: 10m].
    #[arg(long, value_name = "DURATION")]
    pub ooo_window: Option<String>,
    /// Samples stamped further than this ahead of the clock are refused [default: 10m].
    #[arg(long, value_name = "DURATION")]
    pub future_grace: Option<String>,
    /// How often TSDB maintenance runs (bucket persistence, checkpoints, retention)
    /// [default: 10s].
    #[arg(long, value_name = "DURATION")]
    pub maintenance_interval: Option<String>,
    /// Largest request body accepted, after decompression, in bytes [default: 33554432].
    #[arg(long, value_name = "BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Most labels one series may have [default: 64].
    #[arg(long, value_name = "N")]
    pub max_labels_per_series: Option<usize>,
    /// Longest PromQL query accepted, in bytes [default: 65536].
    #[arg(long, value_name = "BYTES")]
    pub query_max_length: Option<usize>,
    /// Deepest PromQL expression accepted (brackets plus operators) [default: 256].
    #[arg(long, value_name = "N")]
    pub query_max_depth: Option<usize>,
    /// Most queries evaluated at once [default: 20].
    #[arg(long, value_name = "N")]
    pub query_max_concurrency: Option<usize>,
    /// Most queries waiting for a query thread; beyond it 503 [default: 100].
    #[arg(long, value_name = "N")]
    pub query_max_queued: Option<usize>,
    /// A subcommand (`check rules FILE...`); none runs the server.
    #[command(subcommand)]
    pub command: Option<crate::alerts::check::Command>,
}

/// `[auth]` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// Bearer tokens accepted on write endpoints.
    #[serde(default)]
    pub agent_tokens: Vec<String>,
    /// Bearer tokens accepted on read endpoints.
    #[serde(default)]
    pub read_tokens: Vec<String>,
    /// Bearer tokens for issue status changes, `/-/reload` and DSN keys; they may also
    /// read and write.
    #[serde(default)]
    pub admin_tokens: Vec<String>,
    /// Reads need no token (writes and admin calls still do); logged at WARN on every
    /// start.
    #[serde(default)]
    pub allow_anonymous_reads: bool,
    /// Host names (besides localhost and IP literals) that requests may be addressed to;
    /// checked on a loopback address always, elsewhere when set (DNS rebinding).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
}

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
            max_length: crate::promql::limits::DEFAULT_MAX_LENGTH,
            max_depth: crate::promql::limits::DEFAULT_MAX_DEPTH,
            max_concurrency: crate::promql::pool::DEFAULT_MAX_CONCURRENCY,
            max_queued: crate::promql::pool::DEFAULT_MAX_QUEUED,
        }
    }
}

impl QueryConfig {
    /// Most depth allowed. Measured with `promql::tests::stack_probe` on a debug build:
    /// the worst shape (`abs(abs(…))`) needs ~13 KiB of stack a level through parse,
    /// evaluation, `prettify` and drop, so the 16 MiB runtime threads (rule evaluation)
    /// hold ~1300 levels and the 64 MiB query threads ~4500.
    pub const MAX_DEPTH_CEILING: usize = 512;

    fn validate(&self) -> anyhow::Result<()> {
        if self.max_length < 64 {
            bail!("[query] max_length must be at least 64 bytes");
        }
        if self.max_depth < 8 || self.max_depth > Self::MAX_DEPTH_CEILING {
            bail!(
                "[query] max_depth must be between 8 and {}",
                Self::MAX_DEPTH_CEILING
            );
        }
        if self.max_concurrency == 0 || self.max_concurrency > 1024 {
            bail!("[query] max_concurrency must be between 1 and 1024");
        }
        Ok(())
    }

    /// The text limits, for `promql::limits::set`.
    pub fn limits(&self) -> crate::promql::limits::QueryLimits {
        crate::promql::limits::QueryLimits {
            max_length: self.max_length,
            max_depth: self.max_depth,
        }
    }

    /// The pool's settings, for `promql::pool::init`.
    pub fn pool(&self) -> crate::promql::pool::QueryPoolOptions {
        crate::promql::pool::QueryPoolOptions {
            max_concurrency: self.max_concurrency,
            max_queued: self.max_queued,
            stack_bytes: crate::promql::pool::DEFAULT_STACK_BYTES,
        }
    }
}

/// One `[[projects]]` entry: a Sentry project that events are sent to with its DSN key.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    /// The project id (the number in the DSN's path).
    pub id: u64,
    /// A name for people.
    pub name: String,
    /// The DSN's public key.
    pub public_key: String,
    /// Events per second this project may send (default: `[errors] rate_limit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<f64>,
}

/// `[limits]` section: the ceilings of the server (see README `## Limits`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Connections, header/body/idle timeouts, in-flight body bytes.
    #[serde(flatten)]
    pub serve: calm_serve::ServeConfig,
    /// Most series in the head (all metrics); new series beyond it are refused (400).
    pub max_series: usize,
    /// Most series of one metric name; new ones beyond it are refused (400).
    pub max_series_per_metric: usize,
    /// Most new series one sender (bearer token, else remote address) may create per
    /// minute; beyond it 429 + Retry-After.
    pub max_new_series_per_sender_per_minute: u64,
    /// Most agents tracked by heartbeats; heartbeats of new agents beyond it get 429.
    pub max_agents: usize,
    /// Most series one `/api/v1/series` answer holds (more: truncated, with a warning).
    pub max_series_per_query: usize,
    /// Most issues per project; events of new groups beyond it are counted in one
    /// overflow issue per project.
    pub max_issues_per_project: u64,
    /// Most environments per project; events of new ones beyond it count as
    /// `other_environments`.
    pub max_environments_per_project: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            serve: calm_serve::ServeConfig::default(),
            // ~3.7 KB RSS per series at 10k series (bench/RESULTS.md, idle footprint
            // included): 2 M series stay within ~7 GiB.
            max_series: 2_000_000,
            max_series_per_metric: 200_000,
            max_new_series_per_sender_per_minute: 200_000,
            max_agents: 10_000,
            max_series_per_query: 100_000,
            max_issues_per_project: 10_000,
            max_environments_per_project: 100,
        }
    }
}

/// The whole configuration after merging.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub listen: String,
    pub data_dir: PathBuf,
    pub retention: String,
    pub ooo_window: String,
    /// Samples stamped later than now + this are refused, per sample and counted
    /// (Mimir's creation grace period); so are samples older than `retention`.
    pub future_grace: String,
    /// How often TSDB maintenance runs.
    pub maintenance_interval: String,
    pub max_body_bytes: usize,
    pub max_labels_per_series: usize,
    pub max_query_samples: usize,
    pub cache_bytes: u64,
    pub auth: Auth,
    /// `[query]`: PromQL length, depth and concurrency limits.
    pub query: QueryConfig,
    /// Sentry projects (`[[projects]]`); none means a default project 1 is created.
    pub projects: Vec<ProjectConfig>,
    /// Error ingest limits (`[errors]`): rates, queue bounds, body sampling.
    pub errors: crate::ingest::sentry::limits::ErrorsConfig,
    /// `[limits]`: connections, timeouts, in-flight body bytes, cardinality, agents.
    pub limits: Limits,
    /// Prometheus rule files (globs allowed), relative to the config file's directory.
    pub rule_files: Vec<String>,
    /// Default interval of rule groups (Prometheus' `evaluation_interval`).
    pub evaluation_interval: String,
    /// `[alerting]`: notifiers, external URL and labels, error rules.
    pub alerting: crate::alerts::config::AlertingConfig,
    /// Directory of the config file (relative rule_files are resolved against it).
    #[serde(skip)]
    pub config_dir: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:9400".into(),
            data_dir: PathBuf::from("./data/collector"),
            retention: "15d".into(),
            ooo_window: "10m".into(),
            future_grace: "10m".into(),
            maintenance_interval: "10s".into(),
            max_body_bytes: 32 << 20,
            max_labels_per_series: 64,
            max_query_samples: 50_000_000,
            cache_bytes: 128 << 20,
            auth: Auth::default(),
            query: QueryConfig::default(),
            projects: Vec::new(),
            errors: Default::default(),
            limits: Limits::default(),
            rule_files: Vec::new(),
            evaluation_interval: "1m".into(),
            alerting: Default::default(),
            config_dir: None,
        }
    }
}

/// Parses a Prometheus duration (`15d`, `1h30m`, `500ms`) into milliseconds.
pub fn parse_duration_ms(s: &str) -> anyhow::Result<i64> {
    let d = promql_parser::util::parse_duration(s)
        .map_err(|e| anyhow::anyhow!("invalid duration {s:?}: {e} (use e.g. 15d, 1h30m, 500ms)"))?;
    Ok(d.as_millis() as i64)
}

impl Config {
    /// File, then flags, then environment.
    pub fn load(flags: &Flags) -> anyhow::Result<Config> {
        let mut cfg = match &flags.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                let mut c = toml::from_str::<Config>(&text)
                    .with_context(|| format!("config file {} is not valid", path.display()))?;
                c.config_dir = path.parent().map(|d| d.to_path_buf());
                c
            }
            None => Config::default(),
        };
        if let Some(v) = &flags.listen {
            cfg.listen = v.clone();
        }
        if let Some(v) = &flags.data_dir {
            cfg.data_dir = v.clone();
        }
        if let Some(v) = &flags.retention {
            cfg.retention = v.clone();
        }
        if let Some(v) = &flags.ooo_window {
            cfg.ooo_window = v.clone();
        }
        if let Some(v) = &flags.future_grace {
            cfg.future_grace = v.clone();
        }
        if let Some(v) = &flags.maintenance_interval {
            cfg.maintenance_interval = v.clone();
        }
        if let Some(v) = flags.max_body_bytes {
            cfg.max_body_bytes = v;
        }
        if let Some(v) = flags.max_labels_per_series {
            cfg.max_labels_per_series = v;
        }
        if let Some(v) = flags.query_max_length {
            cfg.query.max_length = v;
        }
        if let Some(v) = flags.query_max_depth {
            cfg.query.max_depth = v;
        }
        if let Some(v) = flags.query_max_concurrency {
            cfg.query.max_concurrency = v;
        }
        if let Some(v) = flags.query_max_queued {
            cfg.query.max_queued = v;
        }
        cfg.apply_env(|k| std::env::var(k).ok())?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        if let Some(v) = get("CALM_LISTEN") {
            self.listen = v;
        }
        if let Some(v) = get("CALM_DATA_DIR") {
            self.data_dir = v.into();
        }
        if let Some(v) = get("CALM_RETENTION") {
            self.retention = v;
        }
        if let Some(v) = get("CALM_OOO_WINDOW") {
            self.ooo_window = v;
        }
        if let Some(v) = get("CALM_FUTURE_GRACE") {
            self.future_grace = v;
        }
        if let Some(v) = get("CALM_MAINTENANCE_INTERVAL") {
            self.maintenance_interval = v;
        }
        if let Some(v) = get("CALM_MAX_BODY_BYTES") {
            self.max_body_bytes = v
                .parse()
                .context("CALM_MAX_BODY_BYTES must be a number of bytes")?;
        }
        if let Some(v) = get("CALM_AGENT_TOKENS") {
            self.auth.agent_tokens = v
                .split(',')
                .map(str::to_string)
                .filter(|s| !s.is_empty())
                .collect();
        }
        if let Some(v) = get("CALM_READ_TOKENS") {
            self.auth.read_tokens = v
                .split(',')
                .map(str::to_string)
                .filter(|s| !s.is_empty())
                .collect();
        }
        if let Some(v) = get("CALM_ADMIN_TOKENS") {
            self.auth.admin_tokens = v
                .split(',')
                .map(str::to_string)
                .filter(|s| !s.is_empty())
                .collect();
        }
        Ok(())
    }

    fn validate(&self) -> anyhow::Result<()> {
        self.listen_addr()?;
        parse_duration_ms(&self.retention).context("retention")?;
        parse_duration_ms(&self.ooo_window).context("ooo_window")?;
        parse_duration_ms(&self.future_grace).context("future_grace")?;
        if parse_duration_ms(&self.maintenance_interval).context("maintenance_interval")? < 100 {
            bail!("maintenance_interval must be at least 100ms");
        }
        if self.max_body_bytes < 1024 {
            bail!("max_body_bytes must be at least 1024");
        }
        parse_duration_ms(&self.evaluation_interval).context("evaluation_interval")?;
        self.limits.serve.limits().map_err(anyhow::Error::msg)?;
        for (key, v) in [
            ("max_series", self.limits.max_series),
            ("max_series_per_metric", self.limits.max_series_per_metric),
            ("max_agents", self.limits.max_agents),
            ("max_series_per_query", self.limits.max_series_per_query),
            (
                "max_issues_per_project",
                self.limits.max_issues_per_project as usize,
            ),
            (
                "max_environments_per_project",
                self.limits.max_environments_per_project as usize,
            ),
        ] {
            if v == 0 {
                bail!("limits.{key} must be at least 1");
            }
        }
        self.alerting.validate()?;
        self.errors.validate()?;
        self.query.validate()?;
        crate::auth::validate(&self.auth)?;
        for p in &self.projects {
            if p.rate_limit.is_some_and(|r| r.is_nan() || r <= 0.0) {
                bail!("project {}: rate_limit must be above 0 (events/s)", p.id);
            }
        }
        Ok(())
    }

    /// The listen address.
    pub fn listen_addr(&self) -> anyhow::Result<SocketAddr> {
        self.listen
            .parse()
            .with_context(|| format!("listen address {:?} is not HOST:PORT", self.listen))
    }

    /// True when no credential of any kind is configured.
    pub fn has_no_credentials(&self) -> bool {
        self.auth.agent_tokens.is_empty()
            && self.auth.read_tokens.is_empty()
            && self.auth.admin_tokens.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_flags_which_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:1\"\nretention = \"1d\"\n[auth]\nagent_tokens = [\"t\"]\n",
        )
        .unwrap();
        let flags = Flags {
            config: Some(path),
            listen: Some("127.0.0.1:2".into()),
            ..Default::default()
        };
        let mut cfg = Config::load(&flags).unwrap();
        assert_eq!(cfg.listen, "127.0.0.1:2");
        assert_eq!(cfg.retention, "1d");
        assert_eq!(cfg.auth.agent_tokens, vec!["t"]);
        cfg.apply_env(|k| (k == "CALM_LISTEN").then(|| "127.0.0.1:3".to_string()))
            .unwrap();
        assert_eq!(cfg.listen, "127.0.0.1:3");
        assert_eq!(parse_duration_ms("1h30m").unwrap(), 5_400_000);
        assert!(parse_duration_ms("soon").is_err());
    }

    #[test]
    fn unknown_keys_are_refused_with_the_key_and_the_line() {
        let dir = tempfile::tempdir().unwrap();
        for (text, key, line) in [
            (
                "listen = \"127.0.0.1:1\"\nretenion = \"30d\"\n",
                "retenion",
                2,
            ),
            (
                "[auth]\nagent_tokens = []\nread_token = [\"x\"]\n",
                "read_token",
                3,
            ),
            ("[errors]\n\nrate_limt = 3\n", "rate_limt", 3),
        ] {
            let path = dir.path().join("c.toml");
            std::fs::write(&path, text).unwrap();
            let flags = Flags {
                config: Some(path.clone()),
                ..Default::default()
            };
            let err = format!("{:#}", Config::load(&flags).unwrap_err());
            assert!(err.contains(key), "{err}");
            assert!(err.contains(&format!("line {line}")), "{err}");
            assert!(err.contains(&path.display().to_string()), "{err}");
        }
    }
}
