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

use crate::alerts::config::AlertingConfig;
pub use crate::auth::AuthConfig;
use crate::ingest::sentry::limits::ErrorsConfig;
pub use crate::promql::config::QueryConfig;
use anyhow::Context;
use calm_serve::config::{ByteSize, ConfigError, Duration, Origin};
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
    /// This collector's name in a cluster (`[cluster] node_id`) [default: the listen address].
    #[arg(long, value_name = "NAME")]
    pub cluster_node_id: Option<String>,
    /// A subcommand (`check rules FILE...`); none runs the server.
    #[command(subcommand)]
    pub command: Option<crate::alerts::check::Command>,
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
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Most connections served at once.
    pub max_connections: usize,
    /// Longest wait for a complete request head.
    pub header_read_timeout: Duration,
    /// Longest time to receive a whole request body.
    pub body_read_timeout: Duration,
    /// Longest a keep-alive connection sits idle.
    pub idle_timeout: Duration,
    /// Most bytes of request bodies (decompressed) held at once.
    pub inflight_body_bytes: ByteSize,
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
    /// Most tag keys counted per issue; beyond it a tag counts under
    /// `calm:other_keys` (its key as the value).
    pub max_tag_keys_per_issue: u64,
    /// Most values counted per tag key of an issue; beyond it a value counts as
    /// `calm:other`.
    pub max_tag_values_per_key: u64,
}

impl Default for Limits {
    fn default() -> Self {
        let serve = calm_serve::ServeConfig::default();
        Limits {
            max_connections: serve.max_connections,
            header_read_timeout: serve.header_read_timeout,
            body_read_timeout: serve.body_read_timeout,
            idle_timeout: serve.idle_timeout,
            inflight_body_bytes: serve.inflight_body_bytes,
            // ~3.7 KB RSS per series at 10k series (bench/RESULTS.md, idle footprint
            // included): 2 M series stay within ~7 GiB.
            max_series: 2_000_000,
            max_series_per_metric: 200_000,
            max_new_series_per_sender_per_minute: 200_000,
            max_agents: 10_000,
            max_series_per_query: 100_000,
            max_issues_per_project: 10_000,
            max_environments_per_project: 100,
            max_tag_keys_per_issue: 50,
            max_tag_values_per_key: 100,
        }
    }
}

impl Limits {
    /// The serving layer's keys of `[limits]` (calm-serve's section, shared with the agent).
    pub fn serve(&self) -> calm_serve::ServeConfig {
        calm_serve::ServeConfig {
            max_connections: self.max_connections,
            header_read_timeout: self.header_read_timeout,
            body_read_timeout: self.body_read_timeout,
            idle_timeout: self.idle_timeout,
            inflight_body_bytes: self.inflight_body_bytes,
        }
    }

    fn check(&self, origin: &Origin) -> Result<(), ConfigError> {
        self.serve().check("limits", origin)?;
        for (key, v) in [
            ("max_series", self.max_series as u64),
            ("max_series_per_metric", self.max_series_per_metric as u64),
            (
                "max_new_series_per_sender_per_minute",
                self.max_new_series_per_sender_per_minute,
            ),
            ("max_agents", self.max_agents as u64),
            ("max_series_per_query", self.max_series_per_query as u64),
            ("max_issues_per_project", self.max_issues_per_project),
            (
                "max_environments_per_project",
                self.max_environments_per_project,
            ),
            ("max_tag_keys_per_issue", self.max_tag_keys_per_issue),
            ("max_tag_values_per_key", self.max_tag_values_per_key),
        ] {
            origin.at_least(&format!("limits.{key}"), v, 1)?;
        }
        Ok(())
    }
}

/// The whole configuration after merging: the file's keys, each room's section typed
/// (durations parsed, sizes in bytes, numbers checked) once at load.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub listen: String,
    pub data_dir: PathBuf,
    /// How long samples are kept.
    pub retention: Duration,
    /// How far behind a series' newest sample an older one is still accepted.
    pub ooo_window: Duration,
    /// Samples stamped later than now + this are refused, per sample and counted
    /// (Mimir's creation grace period); so are samples older than `retention`.
    pub future_grace: Duration,
    /// How often TSDB maintenance runs.
    pub maintenance_interval: Duration,
    pub max_body_bytes: ByteSize,
    pub max_labels_per_series: usize,
    /// Most samples one query may hold at once (Prometheus' `query.max-samples`): all
    /// the samples of the selectors it preloads, or one batch of series of an
    /// aggregation streamed over a range query's steps (`promql/streamed.rs`).
    pub max_query_samples: usize,
    pub cache_bytes: ByteSize,
    /// `[auth]`: tokens and browser checks (the auth room's section).
    pub auth: AuthConfig,
    /// `[query]`: PromQL length, depth and concurrency limits.
    pub query: QueryConfig,
    /// Sentry projects (`[[projects]]`); none means a default project 1 is created.
    pub projects: Vec<ProjectConfig>,
    /// Error ingest limits (`[errors]`): rates, queue bounds, body sampling.
    pub errors: ErrorsConfig,
    /// `[limits]`: connections, timeouts, in-flight body bytes, cardinality, agents.
    pub limits: Limits,
    /// Prometheus rule files (globs allowed), relative to the config file's directory.
    pub rule_files: Vec<String>,
    /// Default interval of rule groups (Prometheus' `evaluation_interval`).
    pub evaluation_interval: Duration,
    /// `[alerting]`: notifiers, external URL and labels, error rules.
    pub alerting: AlertingConfig,
    /// `[self_metrics]`: the collector's own metrics written into its TSDB.
    pub self_metrics: crate::selfmetrics::SelfMetricsConfig,
    /// `[cluster]`: cluster mode (NATS JetStream log, partition owners, query fan-out);
    /// absent means embedded mode.
    pub cluster: crate::cluster::config::ClusterConfig,
    /// `[postgres]`: cluster mode's PostgreSQL stores (events and issues, projects,
    /// agents, alert state); unset `url` keeps the embedded stores.
    pub postgres: crate::storage::postgres::PostgresConfig,
    /// Directory of the config file (relative rule_files are resolved against it).
    #[serde(skip)]
    pub config_dir: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:9400".into(),
            data_dir: PathBuf::from("./data/collector"),
            retention: Duration::from_secs(15 * 86_400),
            ooo_window: Duration::from_secs(600),
            future_grace: Duration::from_secs(600),
            maintenance_interval: Duration::from_secs(10),
            max_body_bytes: ByteSize(32 << 20),
            max_labels_per_series: 64,
            max_query_samples: 50_000_000,
            cache_bytes: ByteSize(128 << 20),
            auth: AuthConfig::default(),
            query: QueryConfig::default(),
            projects: Vec::new(),
            errors: Default::default(),
            limits: Limits::default(),
            rule_files: Vec::new(),
            evaluation_interval: Duration::from_secs(60),
            alerting: Default::default(),
            self_metrics: Default::default(),
            cluster: Default::default(),
            postgres: Default::default(),
            config_dir: None,
        }
    }
}

impl Config {
    /// File, then flags, then environment (`CALM_*`), merged by calm-serve's
    /// [`calm_serve::config`]; anything wrong is refused naming the key, where it came
    /// from (file and line, flag or variable) and the form expected.
    pub fn load(flags: &Flags) -> anyhow::Result<Config> {
        Self::load_with_env(flags, |k| std::env::var(k).ok())
    }

    /// [`Config::load`] reading variables through `env`.
    pub fn load_with_env(
        flags: &Flags,
        env: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> anyhow::Result<Config> {
        let (mut cfg, origin) = calm_serve::config::load_file::<Config>(flags.config.as_deref())?;
        let mut o = origin.with_env(env);
        cfg.config_dir = o.file_dir();
        o.flag(
            &mut cfg.listen,
            "listen",
            "--listen",
            flags.listen.as_deref(),
        )?;
        o.flag_path(
            &mut cfg.data_dir,
            "data_dir",
            "--data-dir",
            flags.data_dir.as_deref(),
        );
        o.flag(
            &mut cfg.retention,
            "retention",
            "--retention",
            flags.retention.as_deref(),
        )?;
        o.flag(
            &mut cfg.ooo_window,
            "ooo_window",
            "--ooo-window",
            flags.ooo_window.as_deref(),
        )?;
        o.flag(
            &mut cfg.future_grace,
            "future_grace",
            "--future-grace",
            flags.future_grace.as_deref(),
        )?;
        o.flag(
            &mut cfg.maintenance_interval,
            "maintenance_interval",
            "--maintenance-interval",
            flags.maintenance_interval.as_deref(),
        )?;
        o.flag_value(
            &mut cfg.max_body_bytes,
            "max_body_bytes",
            "--max-body-bytes",
            flags.max_body_bytes.map(|v| ByteSize(v as u64)),
        );
        o.flag_value(
            &mut cfg.max_labels_per_series,
            "max_labels_per_series",
            "--max-labels-per-series",
            flags.max_labels_per_series,
        );
        o.flag_value(
            &mut cfg.query.max_length,
            "query.max_length",
            "--query-max-length",
            flags.query_max_length,
        );
        o.flag_value(
            &mut cfg.query.max_depth,
            "query.max_depth",
            "--query-max-depth",
            flags.query_max_depth,
        );
        o.flag_value(
            &mut cfg.query.max_concurrency,
            "query.max_concurrency",
            "--query-max-concurrency",
            flags.query_max_concurrency,
        );
        o.flag_value(
            &mut cfg.query.max_queued,
            "query.max_queued",
            "--query-max-queued",
            flags.query_max_queued,
        );
        o.env(&mut cfg.listen, "listen", "CALM_LISTEN")?;
        o.env(&mut cfg.data_dir, "data_dir", "CALM_DATA_DIR")?;
        o.env(&mut cfg.retention, "retention", "CALM_RETENTION")?;
        o.env(&mut cfg.ooo_window, "ooo_window", "CALM_OOO_WINDOW")?;
        o.env(&mut cfg.future_grace, "future_grace", "CALM_FUTURE_GRACE")?;
        o.env(
            &mut cfg.self_metrics.store,
            "self_metrics.store",
            "CALM_SELF_METRICS_STORE",
        )?;
        o.env(
            &mut cfg.self_metrics.interval,
            "self_metrics.interval",
            "CALM_SELF_METRICS_INTERVAL",
        )?;
        o.env(
            &mut cfg.maintenance_interval,
            "maintenance_interval",
            "CALM_MAINTENANCE_INTERVAL",
        )?;
        o.env(
            &mut cfg.max_body_bytes,
            "max_body_bytes",
            "CALM_MAX_BODY_BYTES",
        )?;
        o.env(
            &mut cfg.auth.agent_tokens,
            "auth.agent_tokens",
            "CALM_AGENT_TOKENS",
        )?;
        o.env(
            &mut cfg.auth.read_tokens,
            "auth.read_tokens",
            "CALM_READ_TOKENS",
        )?;
        o.env(
            &mut cfg.auth.admin_tokens,
            "auth.admin_tokens",
            "CALM_ADMIN_TOKENS",
        )?;
        o.flag(
            &mut cfg.cluster.node_id,
            "cluster.node_id",
            "--cluster-node-id",
            flags.cluster_node_id.as_deref(),
        )?;
        cfg.cluster.apply_env(&mut o)?;
        if let Some(url) = cfg.cluster.postgres.take() {
            o.check(
                cfg.postgres.url.as_ref().is_none_or(|u| *u == url),
                "cluster.postgres",
                &"<hidden>",
                "expected the same URL as [postgres] url, or only one of the two",
            )?;
            cfg.postgres.url = Some(url);
        }
        let listen = cfg.listen.clone();
        cfg.cluster.finish(&listen, &o)?;
        cfg.check(&o)?;
        Ok(cfg)
    }

    /// Checks every value that its type alone does not, naming where it came from.
    fn check(&self, o: &Origin) -> anyhow::Result<()> {
        o.check(
            self.listen.parse::<SocketAddr>().is_ok(),
            "listen",
            &self.listen,
            "expected an address HOST:PORT like \"127.0.0.1:9400\"",
        )?;
        o.check(
            self.retention >= Duration::from_secs(60),
            "retention",
            &self.retention,
            "expected a duration of at least 1m like \"15d\"",
        )?;
        o.check(
            self.maintenance_interval >= Duration::from_millis(100),
            "maintenance_interval",
            &self.maintenance_interval,
            "expected a duration of at least 100ms like \"10s\"",
        )?;
        o.check(
            !self.evaluation_interval.is_zero(),
            "evaluation_interval",
            &self.evaluation_interval,
            "expected a duration above 0 like \"1m\"",
        )?;
        o.at_least("max_body_bytes", self.max_body_bytes.get(), 1024)?;
        o.range("postgres.pool_size", self.postgres.pool_size, 1, 1000)?;
        o.check(
            self.postgres.timeout >= Duration::from_millis(100),
            "postgres.timeout",
            &self.postgres.timeout,
            "expected a duration of at least 100ms like \"5s\"",
        )?;
        o.check(
            self.postgres.event_retention >= Duration::from_secs(86_400),
            "postgres.event_retention",
            &self.postgres.event_retention,
            "expected a duration of at least 1d like \"90d\" (bodies are dropped a day at a time)",
        )?;
        if let Some(url) = &self.postgres.url {
            o.check(
                url.parse::<tokio_postgres::Config>().is_ok(),
                "postgres.url",
                &"<hidden>",
                "expected a PostgreSQL URL like \"postgres://user:password@host:5432/db\"",
            )?;
        }
        o.range(
            "max_labels_per_series",
            self.max_labels_per_series,
            1,
            10_000,
        )?;
        o.at_least("max_query_samples", self.max_query_samples, 1)?;
        self.limits.check(o)?;
        self.alerting.check(o)?;
        self.errors.check(o)?;
        self.query.check(o)?;
        self.self_metrics.check(o)?;
        crate::auth::validate(&self.auth)?;
        for (i, p) in self.projects.iter().enumerate() {
            if let Some(r) = p.rate_limit {
                o.check(
                    r > 0.0 && r.is_finite(),
                    &format!("projects.{i}.rate_limit"),
                    &r,
                    "expected a number of events/s above 0",
                )?;
            }
        }
        Ok(())
    }

    /// The listen address (checked at load).
    pub fn listen_addr(&self) -> anyhow::Result<SocketAddr> {
        self.listen
            .parse()
            .with_context(|| format!("listen address {:?} is not HOST:PORT", self.listen))
    }

    /// The alerts room's top-level keys.
    pub fn rules(&self) -> crate::alerts::config::RulesConfig {
        crate::alerts::config::RulesConfig {
            rule_files: self.rule_files.clone(),
            base_dir: self.config_dir.clone().unwrap_or_default(),
            evaluation_interval: self.evaluation_interval,
        }
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
        let cfg = Config::load_with_env(&flags, |_| None).unwrap();
        assert_eq!(cfg.listen, "127.0.0.1:2");
        assert_eq!(cfg.retention.get().as_secs(), 86_400);
        assert_eq!(cfg.auth.agent_tokens, vec!["t"]);
        let cfg = Config::load_with_env(&flags, |k| {
            (k == "CALM_LISTEN").then(|| "127.0.0.1:3".to_string())
        })
        .unwrap();
        assert_eq!(cfg.listen, "127.0.0.1:3");
        let err = Config::load_with_env(&flags, |k| {
            (k == "CALM_RETENTION").then(|| "soon".to_string())
        })
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            format!("CALM_RETENTION=soon: {}", calm_serve::config::DURATION_FORM)
        );
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
            ("[limits]\nmax_series = 5\nmax_seris = 5\n", "max_seris", 3),
            (
                "[limits]\nidle_timeout = \"5s\"\nidle_timeut = \"5s\"\n",
                "idle_timeut",
                3,
            ),
        ] {
            let path = dir.path().join("c.toml");
            std::fs::write(&path, text).unwrap();
            let flags = Flags {
                config: Some(path.clone()),
                ..Default::default()
            };
            let err = format!("{:#}", Config::load_with_env(&flags, |_| None).unwrap_err());
            assert!(err.contains(key), "{err}");
            assert!(
                err.starts_with(&format!("{}:{line}: ", path.display())),
                "{err}"
            );
        }
    }

    #[test]
    fn values_are_typed_and_checked_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("calm.toml");
        let load = |text: &str| {
            std::fs::write(&path, text).unwrap();
            let flags = Flags {
                config: Some(path.clone()),
                ..Default::default()
            };
            Config::load_with_env(&flags, |_| None).map_err(|e| format!("{e:#}"))
        };
        let c = load("max_body_bytes = \"64MiB\"\n[errors]\nbody_window = \"2m\"\n[limits]\nheader_read_timeout = \"3s\"\n").unwrap();
        assert_eq!(c.max_body_bytes.get(), 64 << 20);
        assert_eq!(c.errors.body_window.get().as_secs(), 120);
        assert_eq!(c.limits.serve().limits().header_read_timeout.as_secs(), 3);
        let p = path.display();
        for (text, want) in [
            ("retention = \"30x\"\n".to_string(), format!("{p}:1: retention = \"30x\": expected a duration like \"15d\", \"12h\", \"90s\"")),
            ("\n[query]\nmax_depth = 4096\n".into(), format!("{p}:3: max_depth = 4096: expected a number from 8 to 512")),
            ("[limits]\nmax_series = 0\n".into(), format!("{p}:2: max_series = 0: expected at least 1")),
            ("[[alerting.webhooks]]\nurl = \"http://a\"\n[[alerting.webhooks]]\nurl = \"ftp://secret@b\"\n".into(), format!("{p}:4: url = <hidden>: ")),
            ("listen = 9400\n".into(), format!("{p}:1: listen = 9400: invalid type: integer `9400`, expected a string")),
            ("[postgres]\npool_size = 0\n".into(), format!("{p}:2: pool_size = 0: expected a number from 1 to 1000")),
            ("[postgres]\ntimeout = \"1ms\"\n".into(), format!("{p}:2: timeout = \"1ms\": expected a duration of at least 100ms")),
            ("[postgres]\nurl = \"postgres://u:secret@h:notaport/db\"\n".into(), format!("{p}:2: url = <hidden>: expected a PostgreSQL URL")),
        ] {
            let err = load(&text).unwrap_err();
            assert!(err.starts_with(&want), "{text}\n got: {err}\nwant: {want}");
            assert!(!err.contains("secret"), "{err}");
        }
    }
}
