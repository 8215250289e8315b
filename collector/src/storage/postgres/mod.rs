//! Cluster mode's PostgreSQL stores: the same traits as the embedded ones, on one
//! database that every collector of the cluster shares.
//!
//! | trait | here | tables |
//! | --- | --- | --- |
//! | [`EventStore`](super::EventStore) | [`events::PgEventStore`] | `calm_issues`, `calm_events` (bodies, partitioned by receive day), `calm_event_ids`, `calm_issue_users`, `calm_issue_series`, `calm_issue_counts` (hourly buckets), `calm_issue_tag_keys`, `calm_issue_tags`, `calm_project_environments` |
//! | [`ProjectStore`](super::projects::ProjectStore) | [`small::PgProjects`] | `calm_projects` |
//! | [`AgentStore`](super::agents::AgentStore) | [`small::PgAgents`] | `calm_agents` |
//! | [`AlertStateStore`](super::alert_state::AlertStateStore) | [`small::PgAlertState`] | `calm_alert_state`; `calm_leases` and `calm_notification_log` (with the lease epoch) for the one alert evaluator ([`evaluator`]) |
//!
//! - **Migrations** are embedded ([`MIGRATIONS`]) and run at start by [`migrate`]: each
//!   once, in order, recorded in `calm_schema_migrations`, under a transaction-scoped
//!   advisory lock so that collectors starting together do not race. A database with a
//!   newer schema than this binary knows is refused.
//! - **Events by time**: `calm_events` is partitioned by range of `received_ms`, one
//!   partition a UTC day (`calm_events_pYYYYMMDD`), created ahead by [`maintain`] and on
//!   demand by the writer; partitions wholly older than the event retention are dropped
//!   by [`maintain`] (a `DROP TABLE`, not a slow `DELETE`). Event ids for dedup are
//!   deleted after the dedup window.
//! - **Batched writes**: one writer task per collector takes whatever events wait in its
//!   bounded queue and applies them in one transaction: each issue row is locked once,
//!   updated once per batch (not once per event), counts go to hourly buckets with
//!   additive upserts. Concurrent collectors serialise on the issue rows' locks (taken
//!   in a fixed order); a deadlock, a serialisation failure or a duplicate event id
//!   committed meanwhile by another collector retries the batch.
//! - **Errors** map to [`StorageError`]: no connection, a shutting-down server, a
//!   statement timeout → `Unavailable` (503 with Retry-After); a full disk → `Full`;
//!   the writer's queue full → `Busy` (429).
//!
//! The contract tests (`storage/contract.rs`) run on these stores against a real
//! PostgreSQL in `tests.rs` (started by `tests/src/postgres.rs`, which this crate's unit
//! tests include by path).

pub mod evaluator;
pub mod events;
pub mod small;
#[cfg(test)]
mod tests;

use super::{ErrorKind, StorageError};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use std::str::FromStr;
use std::time::Duration;

pub use events::{PgEventStore, PgOptions};
pub use small::{PgAgents, PgAlertState, PgProjects};

/// A day in ms: the span of one `calm_events` partition.
pub const DAY_MS: i64 = 86_400_000;

/// `[postgres]`: where cluster mode keeps errors, projects, agents and alert state.
///
/// ```toml
/// [postgres]
/// url = "postgres://calm:secret@db.internal:5432/calm"
/// pool_size = 16
/// timeout = "5s"
/// event_retention = "90d"
/// ```
#[derive(Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresConfig {
    /// The database's URL; unset: the embedded stores.
    pub url: Option<String>,
    /// Most connections one collector opens.
    pub pool_size: usize,
    /// Longest wait for a connection or a statement; beyond it the request is
    /// answered 503 with Retry-After.
    pub timeout: calm_serve::config::Duration,
    /// Event bodies older than this are dropped (a day partition at a time); issues
    /// and their counts stay.
    pub event_retention: calm_serve::config::Duration,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            url: None,
            pool_size: 16,
            timeout: calm_serve::config::Duration::from_secs(5),
            event_retention: calm_serve::config::Duration::from_secs(90 * 86_400),
        }
    }
}

impl std::fmt::Debug for PostgresConfig {
    // The URL may hold a password: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &self.url.as_ref().map(|_| "<set>"))
            .field("pool_size", &self.pool_size)
            .field("timeout", &self.timeout)
            .field("event_retention", &self.event_retention)
            .finish()
    }
}

/// Connection settings.
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// `postgres://user:password@host:port/db` (libpq URL or key=value form).
    pub url: String,
    /// Most connections this collector opens.
    pub pool_size: usize,
    /// Longest a statement may run (server side) and a connection may take to open.
    pub timeout: Duration,
}

fn url_error(e: impl std::fmt::Display) -> StorageError {
    StorageError::new(
        ErrorKind::BadInput,
        format!("postgres_url is not a valid PostgreSQL URL: {e}"),
    )
}

/// A pool of connections (none opened yet: the first use opens them).
pub fn pool(cfg: &PgConfig) -> Result<Pool, StorageError> {
    let mut pg = tokio_postgres::Config::from_str(&cfg.url).map_err(url_error)?;
    let ms = cfg.timeout.as_millis().max(1);
    pg.connect_timeout(cfg.timeout)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(10))
        .application_name("calm-collector")
        .options(format!("-c statement_timeout={ms} -c lock_timeout={ms}"));
    let mgr = Manager::from_config(
        pg,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(mgr)
        .max_size(cfg.pool_size.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(cfg.timeout))
        .create_timeout(Some(cfg.timeout))
        .recycle_timeout(Some(cfg.timeout))
        .build()
        .map_err(|e| url_error(e.to_string()))
}

/// A PostgreSQL error in Calm's terms.
pub fn db_error(e: tokio_postgres::Error) -> StorageError {
    let kind = match e.code().map(|c| c.code()) {
        // disk_full, insufficient_resources, out_of_memory
        Some("53100") => ErrorKind::Full,
        Some(c) if c.starts_with("22") => ErrorKind::BadInput,
        Some("XX001") | Some("XX002") => ErrorKind::Corrupt,
        // connection exceptions, shutdown, cannot connect now, statement timeout,
        // lock timeout, too many connections, …
        _ => ErrorKind::Unavailable,
    };
    let msg = match e.as_db_error() {
        Some(d) => format!("PostgreSQL: {}", d.message()),
        None => format!("PostgreSQL is unreachable: {e}"),
    };
    StorageError::new(kind, msg)
}

/// A pool failure (no connection could be had) in Calm's terms.
pub fn pool_error(e: deadpool_postgres::PoolError) -> StorageError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => db_error(e),
        deadpool_postgres::PoolError::Timeout(_) => StorageError::new(
            ErrorKind::Unavailable,
            "PostgreSQL did not answer in time (no connection available)",
        ),
        other => StorageError::new(ErrorKind::Unavailable, format!("PostgreSQL: {other}")),
    }
}

/// A connection from the pool.
pub async fn client(pool: &Pool) -> Result<deadpool_postgres::Object, StorageError> {
    pool.get().await.map_err(pool_error)
}

/// The schema, one migration a version (1, 2, …); never edit one that has shipped:
/// add the next.
pub const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("migrations/0001_init.sql")),
    (2, include_str!("migrations/0002_notification_slots.sql")),
];

/// Brings the database's schema up to date (idempotent; safe when several
/// collectors start at once). Refuses a database migrated by a newer Calm.
pub async fn migrate(pool: &Pool) -> Result<(), StorageError> {
    let mut c = client(pool).await?;
    let tx = c.transaction().await.map_err(db_error)?;
    // One migrator at a time across the cluster (released at commit).
    tx.execute("SELECT pg_advisory_xact_lock(7243519001)", &[])
        .await
        .map_err(db_error)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS calm_schema_migrations (
            version INT PRIMARY KEY,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .await
    .map_err(db_error)?;
    let done: Vec<i32> = tx
        .query("SELECT version FROM calm_schema_migrations", &[])
        .await
        .map_err(db_error)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let newest = MIGRATIONS.last().map_or(0, |m| m.0);
    if let Some(v) = done.iter().find(|v| **v > newest) {
        return Err(StorageError::new(
            ErrorKind::Corrupt,
            format!(
                "the PostgreSQL schema is at version {v}, newer than this calm-collector knows ({newest}): upgrade the collector"
            ),
        ));
    }
    for (v, sql) in MIGRATIONS {
        if done.contains(v) {
            continue;
        }
        tx.batch_execute(sql).await.map_err(db_error)?;
        tx.execute(
            "INSERT INTO calm_schema_migrations (version) VALUES ($1)",
            &[v],
        )
        .await
        .map_err(db_error)?;
        tracing::info!(version = v, "PostgreSQL schema migrated");
    }
    tx.commit().await.map_err(db_error)?;
    Ok(())
}

/// The name of the `calm_events` partition of the UTC day that holds `ms`.
pub fn partition_name(ms: i64) -> String {
    let day = ms.div_euclid(DAY_MS);
    let date = chrono::DateTime::from_timestamp(day * 86_400, 0)
        .map(|d| d.format("%Y%m%d").to_string())
        .unwrap_or_else(|| format!("d{day}"));
    format!("calm_events_p{date}")
}

/// Creates the partition of the day holding `ms` if it is missing.
pub async fn ensure_partition(pool: &Pool, ms: i64) -> Result<(), StorageError> {
    let day = ms.div_euclid(DAY_MS);
    let (from, to) = (day * DAY_MS, (day + 1) * DAY_MS);
    let name = partition_name(ms);
    let mut c = client(pool).await?;
    let tx = c.transaction().await.map_err(db_error)?;
    // Two collectors creating the same partition at once would fail on the catalog's
    // unique index: one at a time.
    tx.execute("SELECT pg_advisory_xact_lock(7243519002)", &[])
        .await
        .map_err(db_error)?;
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {name} PARTITION OF calm_events FOR VALUES FROM ({from}) TO ({to})"
    ))
    .await
    .map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    Ok(())
}

/// What one maintenance round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Maintained {
    /// Partitions dropped (wholly older than the retention).
    pub dropped: Vec<String>,
    /// Event ids forgotten (older than the dedup window).
    pub event_ids_deleted: u64,
}

/// Periodic maintenance: the partitions of today and the next two days exist,
/// partitions wholly older than `now - retention_ms` are dropped, event ids older
/// than `now - dedup_window_ms` are deleted (in bounded chunks).
pub async fn maintain(
    pool: &Pool,
    now_ms: i64,
    retention_ms: i64,
    dedup_window_ms: i64,
) -> Result<Maintained, StorageError> {
    for d in 0..3 {
        ensure_partition(pool, now_ms + d * DAY_MS).await?;
    }
    let c = client(pool).await?;
    let rows = c
        .query(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid)
               FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = 'calm_events'::regclass",
            &[],
        )
        .await
        .map_err(db_error)?;
    let cutoff = now_ms.saturating_sub(retention_ms);
    let mut out = Maintained::default();
    for r in rows {
        let name: String = r.get(0);
        let bound: String = r.get(1);
        // "FOR VALUES FROM ('…') TO ('…')": the upper bound is the last number.
        let upper = bound
            .rsplit(|ch: char| !ch.is_ascii_digit() && ch != '-')
            .find(|s| !s.is_empty())
            .and_then(|s| s.parse::<i64>().ok());
        if upper.is_some_and(|u| u <= cutoff) && name.starts_with("calm_events_p") {
            c.batch_execute(&format!("DROP TABLE IF EXISTS {name}"))
                .await
                .map_err(db_error)?;
            tracing::info!(partition = %name, "event bodies past the retention dropped");
            out.dropped.push(name);
        }
    }
    let before = now_ms.saturating_sub(dedup_window_ms);
    loop {
        let n = c
            .execute(
                "DELETE FROM calm_event_ids WHERE ctid = ANY(ARRAY(
                    SELECT ctid FROM calm_event_ids WHERE received_ms < $1 LIMIT 10000))",
                &[&before],
            )
            .await
            .map_err(db_error)?;
        out.event_ids_deleted += n;
        if n < 10_000 {
            break;
        }
    }
    Ok(out)
}
