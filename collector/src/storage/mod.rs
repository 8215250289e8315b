//! Storage: the seam between the rooms and the backends. Read this first.
//!
//! Handlers, PromQL and the rules never know which backend runs: they hold the
//! traits below, and only this module and `main.rs` (the one composition root) pick
//! and build the implementations.
//!
//! | trait | what it is | embedded (today) | cluster mode (issue 14) |
//! | --- | --- | --- | --- |
//! | [`SampleSink`] | where validated samples go; 2xx after it resolves | the TSDB (`tsdb/`, WAL group commit) | a NATS JetStream log per partition (`write_remote_body` publishes the request as it came) |
//! | [`SeriesReader`] | series + samples for a time range, label names/values, series look-up | the TSDB's querier | a fan-out over one ready owner per partition, merged |
//! | [`EventStore`] | issues and events (the rules that change them: `errors/issue.rs`) | sled (`errors/sled_store.rs`) | PostgreSQL |
//! | small stores | [`metadata`], [`projects`], [`agents`], [`alert_state::AlertStateStore`] | memory and files in the data dir | PostgreSQL |
//!
//! Every backend reports a [`StorageError`] (unavailable, busy, bad input, full,
//! corrupt, limit, closed), which turns into the HTTP answer in one place
//! ([`StorageError::response`]). [`Stores::embedded`] builds the embedded set from the
//! config; [`Stores::cluster`] builds cluster mode's (`cluster/`). Outside `storage/`, `tsdb/`, the
//! sled event store (`errors/sled_store.rs`, `errors/integrity.rs`) and `main.rs`, no
//! file names `sled::` or the concrete TSDB type (checked by `collector/tests/layout_seam.rs`).

pub mod agents;
pub mod alert_state;
#[cfg(test)]
pub mod contract;
pub mod embedded;
pub mod error;
pub mod events;
pub mod metadata;
pub mod projects;
pub mod reader;
pub mod sink;

pub use error::{ErrorKind, StorageError};
pub use events::EventStore;
pub use reader::SeriesReader;
pub use sink::SampleSink;

use crate::config::Config;
use crate::errors::sled_store::{SledEventStore, SledOptions};
use crate::tsdb::{Db, Options};
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;

/// The stores one collector runs on, built once by the composition root (`main.rs`)
/// and handed to the rooms as traits.
pub struct Stores {
    /// Where samples go (ingest, rule results, error counters).
    pub sink: Arc<dyn SampleSink>,
    /// What PromQL, the series API and the rules read.
    pub reader: Arc<dyn SeriesReader>,
    /// Issues and events.
    pub events: Arc<dyn EventStore>,
    /// Metric metadata (`/api/v1/metadata`).
    pub metadata: Arc<metadata::MetadataStore>,
    /// Sentry projects and their DSN keys.
    pub projects: Arc<projects::Projects>,
    /// Whether the default project was created by this start.
    pub projects_created: bool,
    /// The fleet list (agents' heartbeats).
    pub agents: Arc<agents::AgentStore>,
    /// Where alert state (`for` timers, firing alerts) survives restarts.
    pub alert_state: Arc<dyn alert_state::AlertStateStore>,
    backend: Backend,
}

/// What only the composition root touches: maintenance and shutdown.
enum Backend {
    Embedded {
        tsdb: Arc<Db>,
    },
    /// Cluster mode: the local TSDB holds the owned partitions' data; `node` the
    /// membership, leases and consumers (`cluster/`).
    Cluster {
        tsdb: Arc<Db>,
        node: Arc<crate::cluster::owner::Node>,
        log: Arc<crate::cluster::log::LogStats>,
    },
}

impl Stores {
    /// Opens the embedded stores in `cfg.data_dir`: the TSDB, the sled event store
    /// (`events/`), projects (`projects.json`), agents (`agents.json`) and the alert
    /// state directory (`alerts/`). Blocking (it replays the WAL): call it from a
    /// blocking context.
    pub fn embedded(cfg: &Config) -> anyhow::Result<Stores> {
        // Durations and sizes are typed (and checked) when the config is loaded.
        let mut opts = Options::new(&cfg.data_dir);
        opts.retention_ms = cfg.retention.as_millis_i64();
        opts.ooo_window_ms = cfg.ooo_window.as_millis_i64();
        opts.future_grace_ms = Some(cfg.future_grace.as_millis_i64());
        opts.max_query_samples = cfg.max_query_samples;
        opts.cache_bytes = cfg.cache_bytes.get();
        opts.max_series = cfg.limits.max_series;
        opts.max_series_per_metric = cfg.limits.max_series_per_metric;
        opts.max_series_per_query = cfg.limits.max_series_per_query;
        let tsdb = Db::open(opts).with_context(|| {
            format!("cannot open the data directory {}", cfg.data_dir.display())
        })?;

        let (projects, projects_created) = projects::Projects::load(&cfg.projects, &cfg.data_dir)?;
        let dir = cfg.data_dir.join("events");
        let e = &cfg.errors;
        let event_opts = SledOptions {
            max_events_per_issue: e.max_events_per_issue,
            bodies_per_window: e.bodies_per_issue,
            sample_window_ms: e.body_window.as_millis_i64(),
            queue_events: e.queue_events,
            max_issues_per_project: cfg.limits.max_issues_per_project,
            max_environments_per_project: cfg.limits.max_environments_per_project,
            max_tag_keys_per_issue: cfg.limits.max_tag_keys_per_issue,
            max_tag_values_per_key: cfg.limits.max_tag_values_per_key,
            ..Default::default()
        };
        let events = SledEventStore::open(&dir, event_opts)
            .with_context(|| format!("cannot open the event store {}", dir.display()))?;
        let agents = agents::AgentStore::open_with(&cfg.data_dir, cfg.limits.max_agents);
        Ok(Stores {
            sink: tsdb.clone(),
            reader: tsdb.clone(),
            events: Arc::new(events),
            metadata: Arc::new(metadata::MetadataStore::new()),
            projects: Arc::new(projects),
            projects_created,
            agents: Arc::new(agents),
            alert_state: Arc::new(alert_state::FileAlertState::new(
                cfg.data_dir.join("alerts"),
            )),
            backend: Backend::Embedded { tsdb },
        })
    }

    /// Cluster mode (`[cluster] nats_urls` set): the embedded stores for what is not
    /// clustered yet (events, projects, agents, alert state: PostgreSQL comes with task
    /// Q2), the local TSDB for the partitions this collector owns, the metrics log as
    /// the sink ([`crate::cluster::log::LogSink`]) and the fan-out as the reader
    /// ([`crate::cluster::fanout::FanoutReader`]). Waits until NATS answers. Call inside
    /// the runtime.
    pub async fn cluster(cfg: &Config) -> anyhow::Result<Stores> {
        let c = cfg.clone();
        let mut stores = tokio::task::spawn_blocking(move || Stores::embedded(&c)).await??;
        let tsdb = match &stores.backend {
            Backend::Embedded { tsdb } | Backend::Cluster { tsdb, .. } => tsdb.clone(),
        };
        let cc = &cfg.cluster;
        let node = crate::cluster::owner::Node::connect(cc, tsdb.clone()).await?;
        let sink = Arc::new(crate::cluster::log::LogSink::new(
            node.js.clone(),
            node.gen.generation,
            node.gen.partitions,
            cc.publish_timeout.get(),
            cfg.retention.as_millis_i64(),
            cfg.future_grace.as_millis_i64(),
        ));
        let token = cfg
            .auth
            .read_tokens
            .first()
            .or(cfg.auth.admin_tokens.first())
            .cloned();
        let reader = Arc::new(crate::cluster::fanout::FanoutReader::new(
            node.clone(),
            tsdb.clone(),
            token,
            cfg.max_query_samples,
            cfg.limits.max_series_per_query,
        )?);
        node.start();
        stores.sink = sink.clone();
        stores.reader = reader;
        stores.backend = Backend::Cluster {
            tsdb,
            node,
            log: sink.stats.clone(),
        };
        Ok(stores)
    }

    /// Cluster mode's self-metrics (none in embedded mode).
    pub fn cluster_metrics(&self) -> Option<Box<dyn prometheus_client::collector::Collector>> {
        match &self.backend {
            Backend::Embedded { .. } => None,
            Backend::Cluster { node, log, .. } => {
                Some(Box::new(crate::cluster::owner::ClusterCollector {
                    node: node.clone(),
                    log: log.clone(),
                }))
            }
        }
    }

    /// Cluster mode's routes: the fan-out's internal select and
    /// `GET /api/calm/v1/cluster` (none in embedded mode).
    pub fn cluster_routes(&self) -> Option<axum::Router> {
        match &self.backend {
            Backend::Embedded { .. } => None,
            Backend::Cluster { tsdb, node, .. } => {
                Some(crate::cluster::fanout::routes(node.clone(), tsdb.clone()))
            }
        }
    }

    /// What `/readyz` asks: `Ok` when this collector can serve (embedded: always;
    /// cluster: it owns its partitions and has caught up), else why not.
    pub fn readiness(&self) -> Arc<dyn Fn() -> Result<(), String> + Send + Sync> {
        match &self.backend {
            Backend::Embedded { .. } => Arc::new(|| Ok(())),
            Backend::Cluster { node, .. } => {
                let node = node.clone();
                Arc::new(move || node.readiness())
            }
        }
    }

    /// The backend's own self-metrics, for [`crate::selfmetrics::SelfMetrics::register_boxed`].
    pub fn metrics(&self) -> Box<dyn prometheus_client::collector::Collector> {
        match &self.backend {
            Backend::Embedded { tsdb } | Backend::Cluster { tsdb, .. } => {
                Box::new(embedded::TsdbCollector(tsdb.clone()))
            }
        }
    }

    /// Starts the backend's periodic maintenance (TSDB: persist buckets, checkpoint,
    /// retention, series GC) every `every`, on the current runtime.
    pub fn start_maintenance(&self, every: Duration) {
        match &self.backend {
            Backend::Embedded { tsdb } | Backend::Cluster { tsdb, .. } => {
                let maint = tsdb.clone();
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(every);
                    loop {
                        tick.tick().await;
                        let db = maint.clone();
                        let now = chrono::Utc::now().timestamp_millis();
                        match tokio::task::spawn_blocking(move || db.maintain(now)).await {
                            Ok(Err(e)) => tracing::error!(error = %e, "TSDB maintenance failed"),
                            Err(e) => tracing::error!(error = %e, "TSDB maintenance panicked"),
                            Ok(Ok(())) => {}
                        }
                    }
                });
            }
        }
    }

    /// A closer for a clean stop (TSDB: a head checkpoint and a flush), to run once the
    /// server has stopped taking requests. Blocking.
    pub fn closer(&self) -> impl FnOnce() -> Result<(), StorageError> + Send + 'static {
        let tsdb = match &self.backend {
            Backend::Embedded { tsdb } | Backend::Cluster { tsdb, .. } => tsdb.clone(),
        };
        move || Ok(tsdb.close()?)
    }
}
