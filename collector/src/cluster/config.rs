//! `[cluster]`: cluster mode's section. No `nats_urls` (the default) means embedded
//! mode, and nothing else here is read.
//!
//! ```text
//! [cluster]
//! nats_urls = ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222", "nats://10.0.0.3:4222"]
//! node_id = "collector-1"              # unique and stable per collector
//! advertise_url = "http://10.0.0.11:9400"  # where the other collectors reach this one
//! partitions = 16
//! owners_per_partition = 2
//! replicas = 3
//! stream_max_age = "24h"
//! publish_timeout = "10s"
//! lease_ttl = "15s"
//! lease_renew = "3s"
//! strict_reads = false
//! evaluator_lease_ttl = "15s"            # with [postgres]: the one alert evaluator
//! evaluator_lease_renew = "3s"
//! rule_read_after_write_wait = "5s"      # 0 turns the wait off (read_after_write.rs)
//! ```

use calm_serve::config::{ConfigError, Duration, Origin};
use serde::Deserialize;

/// `[cluster]` (see the module doc and README `## Cluster mode`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// NATS servers (JetStream ≥ 2.12 with `sync_interval: always`). Empty: embedded mode.
    /// `nats = [...]` (DESIGN.md's spelling) is the same key.
    #[serde(alias = "nats")]
    pub nats_urls: Vec<String>,
    /// This collector's name in the cluster: unique, and the same across restarts
    /// (leases and the ownership history name it). Default: the listen address.
    pub node_id: String,
    /// The URL the other collectors reach this one at (query fan-out). Default:
    /// `http://<listen>`.
    pub advertise_url: String,
    /// Partitions of the metrics log (one stream each), for a new cluster; a running
    /// cluster keeps the count in its generation record.
    pub partitions: u32,
    /// Collectors that consume (own) each partition, once there are that many.
    pub owners_per_partition: u32,
    /// Copies of each stream and of the KV buckets in NATS (1, 3 or 5).
    pub replicas: usize,
    /// How long the log keeps messages: an owner down longer than this cannot catch up
    /// from the log (it is alarmed: `calm_cluster_partition_gap`).
    pub stream_max_age: Duration,
    /// Longest wait for the log to acknowledge a write; past it 503 + Retry-After.
    pub publish_timeout: Duration,
    /// A lease not renewed for this long is free for another collector; its holder
    /// steps down on its own clock before then.
    pub lease_ttl: Duration,
    /// How often leases are renewed (well inside `lease_ttl`).
    pub lease_renew: Duration,
    /// A query with a partition that has no ready owner: `false` answers with a
    /// Prometheus `warnings` entry, `true` answers 503.
    pub strict_reads: bool,
    /// Longest wait for one owner's answer in the query fan-out.
    pub fanout_timeout: Duration,
    /// The alert evaluator's lease (in PostgreSQL, with `[postgres]`): not renewed for
    /// this long, another collector takes over evaluation. Default: `lease_ttl`.
    pub evaluator_lease_ttl: Option<Duration>,
    /// How often the evaluator lease is renewed or tried. Default: `lease_renew`.
    pub evaluator_lease_renew: Option<Duration>,
    /// Longest time a rule group's round waits for the owners it reads from to apply
    /// the log up to where it stood when the round began (`read_after_write.rs`);
    /// never more than half the group's interval. On timeout the round runs anyway
    /// (`calm_rule_read_after_write_timeouts_total`). `0s`: no wait.
    pub rule_read_after_write_wait: Duration,
    /// `postgres = "postgres://…"` (DESIGN.md's spelling): the same as `[postgres] url`,
    /// moved there at load (PostgreSQL — events, projects, agents, alert state — is its
    /// own `[postgres]` section, `storage/postgres/`, because it also serves without
    /// `[cluster]`). Always `None` after the config is loaded, so it is never printed.
    pub postgres: Option<String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            nats_urls: Vec::new(),
            node_id: String::new(),
            advertise_url: String::new(),
            partitions: 16,
            owners_per_partition: 2,
            replicas: 3,
            stream_max_age: Duration::from_secs(24 * 3600),
            publish_timeout: Duration::from_secs(10),
            lease_ttl: Duration::from_secs(15),
            lease_renew: Duration::from_secs(3),
            strict_reads: false,
            fanout_timeout: Duration::from_secs(30),
            evaluator_lease_ttl: None,
            evaluator_lease_renew: None,
            rule_read_after_write_wait: Duration::from_secs(5),
            postgres: None,
        }
    }
}

impl ClusterConfig {
    /// True when `[cluster] nats_urls` is set: the collector runs in cluster mode.
    pub fn enabled(&self) -> bool {
        !self.nats_urls.is_empty()
    }

    /// The evaluator lease's time to live (`evaluator_lease_ttl`, else `lease_ttl`).
    pub fn evaluator_lease_ttl(&self) -> Duration {
        self.evaluator_lease_ttl.unwrap_or(self.lease_ttl)
    }

    /// How often the evaluator lease is renewed (`evaluator_lease_renew`, else
    /// `lease_renew`).
    pub fn evaluator_lease_renew(&self) -> Duration {
        self.evaluator_lease_renew.unwrap_or(self.lease_renew)
    }

    /// Applies the `CALM_CLUSTER_*` variables (after the file and flags).
    pub fn apply_env(&mut self, o: &mut Origin) -> Result<(), ConfigError> {
        o.env(
            &mut self.nats_urls,
            "cluster.nats_urls",
            "CALM_CLUSTER_NATS_URLS",
        )?;
        o.env(&mut self.node_id, "cluster.node_id", "CALM_CLUSTER_NODE_ID")?;
        o.env(
            &mut self.advertise_url,
            "cluster.advertise_url",
            "CALM_CLUSTER_ADVERTISE_URL",
        )?;
        Ok(())
    }

    /// Fills the defaults that depend on the listen address, then checks every value.
    pub fn finish(&mut self, listen: &str, o: &Origin) -> Result<(), ConfigError> {
        if !self.enabled() {
            return Ok(());
        }
        if self.node_id.is_empty() {
            self.node_id = listen.to_string();
        }
        if self.advertise_url.is_empty() {
            self.advertise_url = format!("http://{listen}");
        }
        for (i, u) in self.nats_urls.iter().enumerate() {
            o.check(
                u.starts_with("nats://") || u.starts_with("tls://"),
                &format!("cluster.nats_urls.{i}"),
                u,
                "expected a NATS URL like \"nats://127.0.0.1:4222\"",
            )?;
        }
        o.check(
            !self.node_id.is_empty()
                && self.node_id.len() <= 64
                && self
                    .node_id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)),
            "cluster.node_id",
            &self.node_id,
            "expected 1 to 64 characters of letters, digits, '-', '_', '.', ':'",
        )?;
        o.check(
            self.advertise_url.starts_with("http://") || self.advertise_url.starts_with("https://"),
            "cluster.advertise_url",
            &self.advertise_url,
            "expected an URL like \"http://10.0.0.11:9400\"",
        )?;
        o.range("cluster.partitions", self.partitions, 1, 1024)?;
        o.range(
            "cluster.owners_per_partition",
            self.owners_per_partition,
            1,
            5,
        )?;
        o.check(
            matches!(self.replicas, 1 | 3 | 5),
            "cluster.replicas",
            &self.replicas,
            "expected 1, 3 or 5",
        )?;
        o.check(
            self.stream_max_age >= Duration::from_secs(10),
            "cluster.stream_max_age",
            &self.stream_max_age,
            "expected a duration of at least 10s like \"24h\"",
        )?;
        o.check(
            self.publish_timeout >= Duration::from_millis(100),
            "cluster.publish_timeout",
            &self.publish_timeout,
            "expected a duration of at least 100ms like \"10s\"",
        )?;
        o.check(
            self.lease_renew >= Duration::from_millis(100),
            "cluster.lease_renew",
            &self.lease_renew,
            "expected a duration of at least 100ms like \"3s\"",
        )?;
        o.check(
            self.lease_ttl.get() >= self.lease_renew.get() * 3,
            "cluster.lease_ttl",
            &self.lease_ttl,
            "expected at least three times cluster.lease_renew",
        )?;
        o.check(
            self.evaluator_lease_renew() >= Duration::from_millis(100),
            "cluster.evaluator_lease_renew",
            &self.evaluator_lease_renew(),
            "expected a duration of at least 100ms like \"3s\"",
        )?;
        o.check(
            self.evaluator_lease_ttl().get() >= self.evaluator_lease_renew().get() * 3,
            "cluster.evaluator_lease_ttl",
            &self.evaluator_lease_ttl(),
            "expected at least three times cluster.evaluator_lease_renew",
        )?;
        o.check(
            self.fanout_timeout >= Duration::from_millis(100),
            "cluster.fanout_timeout",
            &self.fanout_timeout,
            "expected a duration of at least 100ms like \"30s\"",
        )?;
        o.check(
            self.rule_read_after_write_wait <= Duration::from_secs(600),
            "cluster.rule_read_after_write_wait",
            &self.rule_read_after_write_wait,
            "expected a duration of at most 10m like \"5s\" (0s: no wait)",
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Flags};

    fn load(text: &str, env: &'static [(&'static str, &'static str)]) -> anyhow::Result<Config> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text)?;
        let flags = Flags {
            config: Some(path),
            ..Default::default()
        };
        Config::load_with_env(&flags, move |k| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn no_cluster_section_is_embedded_mode() {
        let cfg = load("listen = \"127.0.0.1:9\"\n", &[]).unwrap();
        assert!(!cfg.cluster.enabled());
    }

    #[test]
    fn the_cluster_section_takes_defaults_and_variables() {
        let cfg = load(
            "listen = \"127.0.0.1:9\"\n[cluster]\nnats_urls = [\"nats://127.0.0.1:4222\"]\n",
            &[("CALM_CLUSTER_NODE_ID", "c-7")],
        )
        .unwrap();
        let c = &cfg.cluster;
        assert!(c.enabled());
        assert_eq!(c.node_id, "c-7");
        assert_eq!(c.advertise_url, "http://127.0.0.1:9");
        assert_eq!(
            (c.partitions, c.owners_per_partition, c.replicas),
            (16, 2, 3)
        );
        assert_eq!(c.stream_max_age.get().as_secs(), 86_400);
        assert_eq!(c.rule_read_after_write_wait.get().as_secs(), 5);
    }

    #[test]
    fn the_rules_read_after_write_wait_can_be_off_and_is_bounded() {
        let base = "[cluster]\nnats_urls = [\"nats://a:1\"]\n";
        let off = load(&format!("{base}rule_read_after_write_wait = \"0s\"\n"), &[]).unwrap();
        assert!(off.cluster.rule_read_after_write_wait.is_zero());
        let err = load(&format!("{base}rule_read_after_write_wait = \"1h\"\n"), &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("c.toml:3") && err.contains("at most 10m"),
            "{err}"
        );
    }

    #[test]
    fn design_spelling_nats_and_postgres_keys_are_taken() {
        let cfg = load(
            "[cluster]\nnats = [\"nats://127.0.0.1:4222\"]\npostgres = \"postgres://u:p@127.0.0.1:5432/calm\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(cfg.cluster.nats_urls, ["nats://127.0.0.1:4222"]);
        assert_eq!(
            cfg.postgres.url.as_deref(),
            Some("postgres://u:p@127.0.0.1:5432/calm")
        );
        assert!(cfg.cluster.postgres.is_none(), "moved, never printed");
        let err = load(
            "[cluster]\nnats = [\"nats://a:1\"]\npostgres = \"postgres://u@a/x\"\n[postgres]\nurl = \"postgres://u@b/y\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("c.toml:3: postgres = <hidden>"), "{err}");
        assert!(!err.contains("postgres://u@a"), "the URL is hidden: {err}");
    }

    #[test]
    fn bad_cluster_values_are_refused_naming_the_line() {
        for (text, want) in [
            ("[cluster]\nnats_urls = [\"nats://a:1\"]\npartitons = 4\n", "unknown field `partitons`"),
            ("[cluster]\nnats_urls = [\"nats://a:1\"]\npartitions = 0\n", "c.toml:3"),
            ("[cluster]\nnats_urls = [\"http://a:1\"]\n", "expected a NATS URL"),
            ("[cluster]\nnats_urls = [\"nats://a:1\"]\nreplicas = 2\n", "expected 1, 3 or 5"),
            (
                "[cluster]\nnats_urls = [\"nats://a:1\"]\nlease_ttl = \"2s\"\nlease_renew = \"1s\"\n",
                "three times cluster.lease_renew",
            ),
        ] {
            let err = load(text, &[]).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
