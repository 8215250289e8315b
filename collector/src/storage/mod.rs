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
//! | [`EventStore`] | issues and events (the rules that change them: `errors/issue.rs`) | sled (`errors/sled_store.rs`) | PostgreSQL ([`postgres::PgEventStore`]) |
//! | small stores | [`projects::ProjectStore`], [`agents::AgentStore`], [`alert_state::AlertStateStore`]; [`metadata`] (in memory, per collector, as Prometheus keeps it) | files in the data dir | PostgreSQL ([`postgres`]) |
//!
//! Every backend reports a [`StorageError`] (unavailable, busy, bad input, full,
//! corrupt, limit, closed), which turns into the HTTP answer in one place
//! ([`StorageError::response`]). [`Stores::embedded`] builds the embedded set from the
//! config; [`Stores::postgres`] (`[postgres] url` set) puts events, projects, agents and
//! alert state on PostgreSQL; [`Stores::cluster`] (`[cluster] nats_urls` set) then puts
//! metrics on the JetStream log and the fan-out (`cluster/`). `main.rs` picks with
//! [`Stores::open`]. The contract tests of every trait are in `contract.rs` and run on
//! the embedded and PostgreSQL stores. Outside `storage/`, `tsdb/`, the
//! sled event store (`errors/sled_store.rs`, `errors/integrity.rs`) and `main.rs`, no
//! file names `sled::` or the concrete TSDB type (checked by `collector/tests/layout_seam.rs`).

pub mod agents;
pub mod alert_state;
#[cfg(test)]
pub mod contract;
pub mod embedded;
pub mod error;
pub mod evaluator;
pub mod events;
pub mod metadata;
pub mod postgres;
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
use projects::ProjectStore as _;
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
    /// Sentry projects and their DSN keys (loaded at start from the project store).
    pub projects: Arc<projects::Projects>,
    /// Whether the default project was created by this start.
    pub projects_created: bool,
    /// The fleet list (agents' heartbeats).
    pub agents: Arc<dyn agents::AgentStore>,
    /// Where alert state (`for` timers, firing alerts) survives restarts.
    pub alert_state: Arc<dyn alert_state::AlertStateStore>,
    /// Cluster mode with `[postgres]`: the alert evaluator lease and the notification
    /// log (`evaluator.rs`); `None` otherwise (this collector evaluates its rules).
    pub cluster_alerting: Option<evaluator::ClusterAlerting>,
    /// Cluster mode: what a rule round waits on so it reads the writes acknowledged
    /// before it (`cluster/read_after_write.rs`); `None` otherwise (no wait).
    pub read_barrier: Option<Arc<dyn reader::ReadBarrier>>,
    backend: Backend,
}

/// What only the composition root touches: maintenance, shutdown and cluster mode's
/// parts. The TSDB is always there (in cluster mode it holds the owned partitions).
struct Backend {
    tsdb: Arc<Db>,
    /// `[postgres] url` set: the pool and what its maintenance needs.
    postgres: Option<PgMaintenance>,
    /// `[cluster] nats_urls` set: membership, leases, consumers and the log's counters.
    cluster: Option<ClusterParts>,
}

struct PgMaintenance {
    pool: deadpool_postgres::Pool,
    /// The last probe's error (`SELECT 1` every 2 s), for `/readyz`.
    health: Arc<parking_lot::Mutex<Option<String>>>,
    retention_ms: i64,
    dedup_window_ms: i64,
}

struct ClusterParts {
    node: Arc<crate::cluster::owner::Node>,
    log: Arc<crate::cluster::log::LogStats>,
}

impl Stores {
    /// Opens the embedded stores in `cfg.data_dir`: the TSDB, the sled event store
    /// (`events/`), projects (`projects.json`), agents (`agents.json`) and the alert
    /// state directory (`alerts/`). Blocking (it replays the WAL): call it from a
    /// blocking context.
    pub fn embedded(cfg: &Config) -> anyhow::Result<Stores> {
        let tsdb = open_tsdb(cfg)?;
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
        let agents = agents::FileAgentStore::open_with(&cfg.data_dir, cfg.limits.max_agents);
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
            cluster_alerting: None,
            read_barrier: None,
            backend: Backend {
                tsdb,
                postgres: None,
                cluster: None,
            },
        })
    }

    /// The stores of cluster mode's PostgreSQL part (`[postgres] url` set): events and
    /// issues, projects, agents and alert state in PostgreSQL (migrated here), metrics
    /// still on the embedded TSDB in `cfg.data_dir`. Fails when the database cannot be
    /// reached at start (the collector refuses to start rather than serve without it).
    pub async fn postgres(cfg: &Config) -> anyhow::Result<Stores> {
        let pc = &cfg.postgres;
        let url = pc.url.clone().context("[postgres] url is not set")?;
        let pool = postgres::pool(&postgres::PgConfig {
            url,
            pool_size: pc.pool_size,
            timeout: pc.timeout.get(),
        })?;
        // Wait for the database (saying so in `/readyz`); refuse what waiting cannot fix
        // (a schema newer than this binary, a bad URL).
        let mut attempt = 0u32;
        loop {
            match postgres::migrate(&pool).await {
                Ok(()) => break,
                Err(e) if e.kind() == ErrorKind::Unavailable => {
                    attempt += 1;
                    crate::startup::set(format!("waiting for PostgreSQL ([postgres] url): {e}"));
                    tracing::warn!(error = %e, attempt, "cannot reach PostgreSQL ([postgres] url); retrying in 2s");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e)
                        .context("cannot prepare the PostgreSQL database ([postgres] url)"))
                }
            }
        }
        let pg_health = Arc::new(parking_lot::Mutex::new(None::<String>));
        {
            let (pool, health) = (pool.clone(), pg_health.clone());
            tokio::spawn(async move {
                loop {
                    let r = match postgres::client(&pool).await {
                        Ok(c) => c
                            .simple_query("SELECT 1")
                            .await
                            .map(|_| ())
                            .map_err(postgres::db_error),
                        Err(e) => Err(e),
                    };
                    *health.lock() = r.err().map(|e| e.to_string());
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            });
        }
        let open_cfg = cfg.clone();
        let tsdb = tokio::task::spawn_blocking(move || open_tsdb(&open_cfg)).await??;
        let (projects, projects_created) = postgres::PgProjects::new(pool.clone())
            .load(cfg.projects.clone())
            .await?;
        let e = &cfg.errors;
        let sled_defaults = SledOptions::default();
        let opts = postgres::PgOptions {
            rules: crate::errors::issue::IssueRules {
                max_event_bytes: sled_defaults.max_event_bytes,
                max_events_per_issue: e.max_events_per_issue,
                bodies_per_window: e.bodies_per_issue,
                sample_window_ms: e.body_window.as_millis_i64(),
                max_issues_per_project: cfg.limits.max_issues_per_project,
            },
            queue_events: e.queue_events,
            max_environments_per_project: cfg.limits.max_environments_per_project,
            max_tag_keys_per_issue: cfg.limits.max_tag_keys_per_issue,
            max_tag_values_per_key: cfg.limits.max_tag_values_per_key,
            write_timeout: pc.timeout.get() * 3,
        };
        Ok(Stores {
            sink: tsdb.clone(),
            reader: tsdb.clone(),
            events: Arc::new(postgres::PgEventStore::new(pool.clone(), opts)),
            metadata: Arc::new(metadata::MetadataStore::new()),
            projects: Arc::new(projects),
            projects_created,
            agents: Arc::new(postgres::PgAgents::new(pool.clone(), cfg.limits.max_agents)),
            alert_state: Arc::new(postgres::PgAlertState::new(
                pool.clone(),
                tokio::runtime::Handle::current(),
            )),
            cluster_alerting: None,
            read_barrier: None,
            backend: Backend {
                tsdb,
                postgres: Some(PgMaintenance {
                    health: pg_health,
                    pool,
                    retention_ms: pc.event_retention.as_millis_i64(),
                    dedup_window_ms: sled_defaults.dedup_window_ms,
                }),
                cluster: None,
            },
        })
    }

    /// Whether the stores are the PostgreSQL ones.
    pub fn is_postgres(&self) -> bool {
        self.backend.postgres.is_some()
    }

    fn tsdb(&self) -> &Arc<Db> {
        &self.backend.tsdb
    }

    /// The stores `cfg` asks for, opened: PostgreSQL's for events and state when
    /// `[postgres] url` is set (else the embedded ones), then cluster mode's metrics
    /// path when `[cluster] nats_urls` is set. The one place the backends are picked.
    pub async fn open(cfg: &Config) -> anyhow::Result<Stores> {
        let stores = if cfg.postgres.url.is_some() {
            Stores::postgres(cfg).await?
        } else {
            let open_cfg = cfg.clone();
            tokio::task::spawn_blocking(move || Stores::embedded(&open_cfg)).await??
        };
        if cfg.cluster.enabled() {
            tracing::info!(node = %cfg.cluster.node_id, nats = ?cfg.cluster.nats_urls, "cluster mode");
            stores.cluster(cfg).await
        } else {
            Ok(stores)
        }
    }

    /// Cluster mode (`[cluster] nats_urls` set) on top of `self` (the embedded or the
    /// PostgreSQL stores, which keep events, projects, agents and alert state): the
    /// local TSDB for the partitions this collector owns, the metrics log as the sink
    /// ([`crate::cluster::log::LogSink`]) and the fan-out as the reader
    /// ([`crate::cluster::fanout::FanoutReader`]). Waits until NATS answers. Call inside
    /// the runtime.
    pub async fn cluster(mut self, cfg: &Config) -> anyhow::Result<Stores> {
        let tsdb = self.backend.tsdb.clone();
        let cc = &cfg.cluster;
        crate::startup::set(format!("waiting for NATS ({:?})", cc.nats_urls));
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
        if let Some(b) =
            crate::cluster::read_after_write::RuleReadBarrier::new(node.clone(), reader.clone())
        {
            self.read_barrier = Some(b);
        }
        match &self.backend.postgres {
            Some(pg) => {
                let lease = postgres::evaluator::PgEvaluatorLease::new(
                    pg.pool.clone(),
                    &cc.node_id,
                    cc.evaluator_lease_ttl().get(),
                    cc.evaluator_lease_renew().get(),
                );
                lease.start();
                self.cluster_alerting = Some(evaluator::ClusterAlerting {
                    lease,
                    log: Arc::new(postgres::evaluator::PgNotificationLog::new(
                        pg.pool.clone(),
                        &cc.node_id,
                    )),
                });
            }
            None => tracing::warn!(
                "cluster mode without [postgres]: every collector evaluates the rules and sends notifications on its own (set [postgres] url for one evaluator and one notification per group interval)"
            ),
        }
        self.sink = sink.clone();
        self.reader = reader;
        self.backend.cluster = Some(ClusterParts {
            node,
            log: sink.stats.clone(),
        });
        Ok(self)
    }

    /// Gives up the alert evaluator lease (cluster mode), so another collector takes
    /// over at once instead of after the lease's TTL. For a clean stop.
    pub async fn release_leases(&self) {
        if let Some(c) = &self.cluster_alerting {
            match tokio::time::timeout(Duration::from_secs(2), c.lease.release()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot release the alert evaluator lease (it expires by itself)")
                }
                Err(_) => tracing::warn!(
                    "releasing the alert evaluator lease timed out (it expires by itself)"
                ),
            }
        }
    }

    /// Cluster mode's self-metrics (none in embedded mode).
    pub fn cluster_metrics(&self) -> Option<Box<dyn prometheus_client::collector::Collector>> {
        let c = self.backend.cluster.as_ref()?;
        Some(Box::new(crate::cluster::owner::ClusterCollector {
            node: c.node.clone(),
            log: c.log.clone(),
        }))
    }

    /// Cluster mode's routes: the fan-out's internal select and
    /// `GET /api/calm/v1/cluster` (none in embedded mode).
    pub fn cluster_routes(&self) -> Option<axum::Router> {
        let c = self.backend.cluster.as_ref()?;
        Some(crate::cluster::fanout::routes(
            c.node.clone(),
            self.backend.tsdb.clone(),
        ))
    }

    /// A clean stop's first step in cluster mode (nothing in embedded mode): hand the
    /// owned partitions over to their next owners while still answering
    /// ([`crate::cluster::owner::Node::leave`]), at most twice `lease_ttl`. Run it
    /// before the server stops taking requests.
    pub fn leave_cluster(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let node = self.backend.cluster.as_ref().map(|c| c.node.clone());
        async move {
            if let Some(node) = node {
                let wait = node.cfg.lease_ttl.get() * 2;
                node.leave(wait).await;
            }
        }
    }

    /// What `/readyz` asks: `Ok` when this collector can serve (embedded: always;
    /// cluster: it owns its partitions and has caught up), else why not.
    /// With `[postgres]`, also: the database answered the last probe (every 2 s).
    pub fn readiness(&self) -> Arc<dyn Fn() -> Result<(), String> + Send + Sync> {
        let node = self.backend.cluster.as_ref().map(|c| c.node.clone());
        let pg = self.backend.postgres.as_ref().map(|p| p.health.clone());
        Arc::new(move || {
            if let Some(h) = &pg {
                if let Some(e) = h.lock().clone() {
                    return Err(format!("PostgreSQL ([postgres] url) is unreachable: {e}"));
                }
            }
            match &node {
                Some(n) => n.readiness(),
                None => Ok(()),
            }
        })
    }
}

/// Opens the TSDB in `cfg.data_dir`. Blocking (it replays the WAL).
fn open_tsdb(cfg: &Config) -> anyhow::Result<Arc<Db>> {
    {
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
        Db::open(opts)
            .with_context(|| format!("cannot open the data directory {}", cfg.data_dir.display()))
    }
}

impl Stores {
    /// The backend's own self-metrics, for [`crate::selfmetrics::SelfMetrics::register_boxed`].
    pub fn metrics(&self) -> Box<dyn prometheus_client::collector::Collector> {
        Box::new(embedded::TsdbCollector(self.tsdb().clone()))
    }

    /// Starts the backend's periodic maintenance (TSDB: persist buckets, checkpoint,
    /// retention, series GC) every `every`, on the current runtime.
    pub fn start_maintenance(&self, every: Duration) {
        if let Some(pg) = &self.backend.postgres {
            let (pool, retention_ms, dedup_window_ms) =
                (pg.pool.clone(), pg.retention_ms, pg.dedup_window_ms);
            tokio::spawn(async move {
                // Partitions are made days ahead: once a minute is plenty.
                let mut tick = tokio::time::interval(Duration::from_secs(60));
                loop {
                    tick.tick().await;
                    let now = chrono::Utc::now().timestamp_millis();
                    if let Err(e) =
                        postgres::maintain(&pool, now, retention_ms, dedup_window_ms).await
                    {
                        tracing::warn!(error = %e, "PostgreSQL maintenance failed; retrying in a minute");
                    }
                }
            });
        }
        {
            {
                let maint = self.tsdb().clone();
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
        let tsdb = self.tsdb().clone();
        move || Ok(tsdb.close()?)
    }
}
