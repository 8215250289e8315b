//! The agent's configuration: a TOML file, then flags, then `CALM_*` variables, each
//! overriding the one before (DESIGN.md), merged by calm-serve's [`calm_serve::config`]
//! like the collector's. Each source receives its own section, typed at load (durations
//! parsed, sizes in bytes, numbers checked); anything wrong stops the start, naming the
//! key, the file and line (or the flag or variable) and the form expected.
//!
//! ```text
//! listen = "127.0.0.1:9401"
//! data_dir = "./data/agent"
//! collectors = ["http://collector:9400"]
//! token = "..."
//! otlp_listen = "127.0.0.1:4318"   # or "off"
//! max_body_bytes = 16777216
//! [host]
//! interval = "15s"
//! [spool]
//! max_bytes = "1GiB"
//! [heartbeat]
//! interval = "30s"
//! [sentry]
//! rate = 50
//! burst = 200
//! keys_refresh = "1m"
//! [limits]                          # calm-serve's keys (README, Limits)
//! [[scrape]]
//! url = "http://127.0.0.1:9100/metrics"
//! ```

use crate::sources;
use calm_serve::config::{ByteSize, ConfigError, Duration, Origin};
use clap::Parser;
use serde::Deserialize;
use std::path::PathBuf;

/// Flags; each overrides the config file when given.
#[derive(Debug, Parser, Default)]
#[command(
    name = "calm-agent",
    version,
    about = "Calm's per-host agent: host metrics (node_exporter names), spooled to disk and shipped to the collector."
)]
pub struct Flags {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:9401].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Data directory (the spool) [default: ./data/agent].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Collector base URL; repeat for failover.
    #[arg(long = "collector", value_name = "URL")]
    pub collectors: Vec<String>,
    /// Bearer token sent to the collector.
    #[arg(long)]
    pub token: Option<String>,
    /// Address of the OTLP/HTTP receiver, or "off" [default: 127.0.0.1:4318].
    #[arg(long, value_name = "ADDR")]
    pub otlp_listen: Option<String>,
    /// Largest request body accepted by the OTLP receiver and the Sentry relay, after
    /// decompression [default: 16777216].
    #[arg(long, value_name = "BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Scrape this URL's exposition-format metrics (repeatable; added to the
    /// `[[scrape]]` targets of the config file, with their defaults).
    #[arg(long = "scrape", value_name = "URL")]
    pub scrape: Vec<String>,
    /// Directory of `*.prom` files for the textfile collector (node_exporter's
    /// `--collector.textfile.directory`).
    #[arg(long, value_name = "DIR")]
    pub textfile_dir: Option<PathBuf>,
}

/// `[host]`: the host source.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostSection {
    /// How often the host is read and shipped.
    pub interval: Duration,
    /// Directory of `*.prom` files for the textfile collector.
    pub textfile_dir: Option<PathBuf>,
    /// `name = true|false`: switches a collector on or off (all of node_exporter's
    /// default ones are on).
    pub collectors: std::collections::BTreeMap<String, bool>,
}

impl Default for HostSection {
    fn default() -> Self {
        HostSection {
            interval: Duration::from_secs(15),
            textfile_dir: None,
            collectors: Default::default(),
        }
    }
}

/// `[spool]`: the on-disk queue.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpoolSection {
    /// Most bytes spooled; beyond it the oldest metrics go first.
    pub max_bytes: ByteSize,
}

impl Default for SpoolSection {
    fn default() -> Self {
        SpoolSection {
            max_bytes: ByteSize(1 << 30),
        }
    }
}

/// `[heartbeat]`: the agent's heartbeat to the collector (the fleet view).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeartbeatSection {
    /// How often a heartbeat is sent.
    pub interval: Duration,
}

impl Default for HeartbeatSection {
    fn default() -> Self {
        HeartbeatSection {
            interval: Duration::from_secs(30),
        }
    }
}

/// The whole configuration after merging.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub listen: String,
    pub data_dir: PathBuf,
    pub collectors: Vec<String>,
    pub token: Option<String>,
    pub otlp_listen: String,
    pub max_body_bytes: ByteSize,
    pub host: HostSection,
    pub spool: SpoolSection,
    pub sentry: sources::sentry::SentryConfig,
    pub heartbeat: HeartbeatSection,
    pub scrape: Vec<sources::scrape::ScrapeConfig>,
    /// `[limits]`: connections, header/body/idle timeouts, in-flight body bytes.
    pub limits: calm_serve::ServeConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:9401".into(),
            data_dir: PathBuf::from("./data/agent"),
            collectors: Vec::new(),
            token: None,
            otlp_listen: DEFAULT_OTLP_LISTEN.into(),
            max_body_bytes: ByteSize(16 << 20),
            host: HostSection::default(),
            spool: SpoolSection::default(),
            sentry: sources::sentry::SentryConfig::default(),
            heartbeat: HeartbeatSection::default(),
            scrape: Vec::new(),
            limits: calm_serve::ServeConfig::default(),
        }
    }
}

/// The OTLP receiver's default address.
pub const DEFAULT_OTLP_LISTEN: &str = "127.0.0.1:4318";

impl Config {
    /// File, then flags, then environment.
    pub fn load(flags: Flags) -> Result<Config, ConfigError> {
        Self::load_with_env(flags, |k| std::env::var(k).ok())
    }

    /// [`Config::load`] reading variables through `env`.
    pub fn load_with_env(
        flags: Flags,
        env: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Result<Config, ConfigError> {
        let (mut cfg, origin) = calm_serve::config::load_file::<Config>(flags.config.as_deref())?;
        let mut o = origin.with_env(env);
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
        if !flags.collectors.is_empty() {
            o.note(
                "collectors",
                format!("--collector {}", flags.collectors.join(" --collector ")),
            );
            cfg.collectors = flags.collectors;
        }
        o.flag(&mut cfg.token, "token", "--token", flags.token.as_deref())?;
        o.flag(
            &mut cfg.otlp_listen,
            "otlp_listen",
            "--otlp-listen",
            flags.otlp_listen.as_deref(),
        )?;
        cfg.scrape.extend(
            flags
                .scrape
                .iter()
                .map(|u| sources::scrape::ScrapeConfig::from_url(u)),
        );
        if let Some(d) = flags.textfile_dir.as_deref() {
            let mut p = PathBuf::new();
            o.flag_path(&mut p, "host.textfile_dir", "--textfile-dir", Some(d));
            cfg.host.textfile_dir = Some(p);
        }
        o.flag_value(
            &mut cfg.max_body_bytes,
            "max_body_bytes",
            "--max-body-bytes",
            flags.max_body_bytes.map(|v| ByteSize(v as u64)),
        );
        o.env(&mut cfg.listen, "listen", "CALM_LISTEN")?;
        o.env(&mut cfg.data_dir, "data_dir", "CALM_DATA_DIR")?;
        o.env(&mut cfg.collectors, "collectors", "CALM_COLLECTORS")?;
        o.env(&mut cfg.token, "token", "CALM_TOKEN")?;
        cfg.check(&o)?;
        Ok(cfg)
    }

    fn check(&self, o: &Origin) -> Result<(), ConfigError> {
        for (i, c) in self.collectors.iter().enumerate() {
            let ok =
                reqwest::Url::parse(c).is_ok_and(|u| u.scheme() == "http" || u.scheme() == "https");
            if !ok {
                return Err(o.refuse(
                    "collectors",
                    &format!("collectors[{i}]"),
                    "expected collector URLs like \"http://collector:9400\"",
                ));
            }
        }
        o.at_least("max_body_bytes", self.max_body_bytes.get(), 1024)?;
        let above_zero = "expected a duration above 0 like \"15s\"";
        o.check(
            !self.host.interval.is_zero(),
            "host.interval",
            &self.host.interval,
            above_zero,
        )?;
        if let Err(e) = sources::host::select(&self.host.collectors) {
            return Err(o.refuse(
                "host.collectors",
                &"",
                &format!("expected collector names: {e}"),
            ));
        }
        o.at_least("spool.max_bytes", self.spool.max_bytes.get(), 64 << 10)?;
        o.check(
            !self.heartbeat.interval.is_zero(),
            "heartbeat.interval",
            &self.heartbeat.interval,
            above_zero,
        )?;
        self.sentry.check(o)?;
        // Each [[scrape]] section resolves (URL, interval and timeout, labels, relabel
        // rules, file_sd_configs) before anything starts; the refusal names its line.
        for (i, c) in self.scrape.iter().enumerate() {
            let checked = if c.file_sd_configs.is_empty() {
                c.resolve().map(|_| ())
            } else if c.url.is_empty() {
                sources::scrape::file_sd::check(c)
            } else {
                // A section with file_sd_configs and a url scrapes that url too.
                let fixed = sources::scrape::ScrapeConfig {
                    file_sd_configs: Vec::new(),
                    ..c.clone()
                };
                sources::scrape::file_sd::check(c).and_then(|()| fixed.resolve().map(|_| ()))
            };
            if let Err(e) = checked {
                return Err(o.refuse(&format!("scrape.{i}.url"), &c.url, &e));
            }
        }
        self.limits.check("limits", o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, text).unwrap();
        let flags = Flags {
            config: Some(path.clone()),
            ..Default::default()
        };
        Config::load_with_env(flags, |_| None).map_err(|e| {
            e.0.strip_prefix(&format!("{}:", path.display()))
                .map(|s| format!("agent.toml:{s}"))
                .unwrap_or(e.0)
        })
    }

    #[test]
    fn sections_are_typed_at_load() {
        let c = load("[host]\ninterval = \"1s\"\n[spool]\nmax_bytes = \"64MiB\"\n[sentry]\nkeys_refresh = \"2m\"\n").unwrap();
        assert_eq!(c.host.interval.get().as_secs(), 1);
        assert_eq!(c.spool.max_bytes.get(), 64 << 20);
        assert_eq!(c.sentry.keys_refresh.get().as_secs(), 120);
        assert_eq!(c.heartbeat.interval.get().as_secs(), 30);
    }

    #[test]
    fn bad_values_name_the_line_and_the_form() {
        for (text, want) in [
            ("[host]\ninterval = \"15x\"\n", "agent.toml:2: interval = \"15x\": expected a duration like \"15d\", \"12h\", \"90s\""),
            ("[hots]\ninterval = \"15s\"\n", "agent.toml:1: [hots]: unknown field `hots`"),
            ("[spool]\nmax_byte = 5\n", "agent.toml:2: max_byte = 5: unknown field `max_byte`"),
            ("[spool]\nmax_bytes = 5\n", "agent.toml:2: max_bytes = 5: expected at least 65536"),
            ("[sentry]\nkeys_refresh = \"0s\"\n", "agent.toml:2: keys_refresh = \"0s\": expected a duration above 0"),
            ("[limits]\nmax_connections = 0\n", "agent.toml:2: max_connections = 0: expected a number from 1 to"),
            ("listen = 9401\n", "agent.toml:1: listen = 9401: invalid type: integer `9401`, expected a string"),
            ("[[scrape]]\nurl = \"http://a:1/m\"\n[[scrape]]\nurl = \"http://b:1/m\"\ninterval = \"1m\"\ntimeout = \"2m\"\n", "agent.toml:4: url = <hidden>: [[scrape]] url = \"http://b:1/m\": timeout"),
            ("[[scrape]]\nurl = \"http://a:1/m\"\ninterval = \"often\"\n", "agent.toml:3: interval = \"often\": expected a duration like"),
        ] {
            let err = load(text).unwrap_err();
            assert!(err.starts_with(want), "{text}\n got: {err}\nwant: {want}");
        }
    }

    #[test]
    fn variables_override_flags_and_name_themselves() {
        let flags = Flags {
            listen: Some("127.0.0.1:2".into()),
            collectors: vec!["http://a:9400".into()],
            ..Default::default()
        };
        let c = Config::load_with_env(flags, |k| {
            (k == "CALM_COLLECTORS").then(|| "http://b:9400,http://c:9400".to_string())
        })
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:2");
        assert_eq!(c.collectors, vec!["http://b:9400", "http://c:9400"]);
        let flags = Flags {
            collectors: vec!["collector:9400".into()],
            ..Default::default()
        };
        let e = Config::load_with_env(flags, |_| None).unwrap_err().0;
        assert!(
            e.starts_with("--collector collector:9400: expected collector URLs"),
            "{e}"
        );
    }
}
