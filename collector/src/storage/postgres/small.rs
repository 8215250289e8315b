//! The small stores on PostgreSQL: projects, agents, alert state, and the lease and
//! notification-log rows the one-evaluator rule builds on.

use super::{client, db_error};
use crate::config::ProjectConfig;
use crate::storage::agents::{
    fleet_view, foreign_token, too_many_agents, AgentStore, Refused, UpsertFuture,
};
use crate::storage::alert_state::AlertStateStore;
use crate::storage::events::StoreFuture;
use crate::storage::projects::{default_project, ProjectStore, Projects};
use crate::storage::{ErrorKind, StorageError};
use deadpool_postgres::Pool;
use serde_json::{Map, Value};
use std::future::Future;

/// Projects in `calm_projects`: the default project is created once for the whole
/// cluster (the first collector to start wins; the others read its key).
pub struct PgProjects {
    pool: Pool,
}

impl PgProjects {
    /// The store on `pool`.
    pub fn new(pool: Pool) -> PgProjects {
        PgProjects { pool }
    }
}

impl ProjectStore for PgProjects {
    fn load(&self, configured: Vec<ProjectConfig>) -> StoreFuture<'_, (Projects, bool)> {
        Box::pin(async move {
            let bad = |e: anyhow::Error| StorageError::new(ErrorKind::BadInput, format!("{e:#}"));
            if !configured.is_empty() {
                return Ok((Projects::new(configured).map_err(bad)?, false));
            }
            let c = client(&self.pool).await?;
            let d = default_project();
            let created = c
                .execute(
                    "INSERT INTO calm_projects (id, name, public_key) VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING",
                    &[&(d.id as i64), &d.name, &d.public_key],
                )
                .await
                .map_err(db_error)?
                == 1;
            let rows = c
                .query(
                    "SELECT id, name, public_key, rate_limit FROM calm_projects ORDER BY id",
                    &[],
                )
                .await
                .map_err(db_error)?;
            let list = rows
                .iter()
                .map(|r| ProjectConfig {
                    id: r.get::<_, i64>(0) as u64,
                    name: r.get(1),
                    public_key: r.get(2),
                    rate_limit: r.get(3),
                })
                .collect();
            Ok((Projects::new(list).map_err(bad)?, created))
        })
    }
}

/// The fleet list in `calm_agents`, shared by every collector: an agent's heartbeats
/// may reach any of them.
pub struct PgAgents {
    pool: Pool,
    max_agents: usize,
}

impl PgAgents {
    /// The store on `pool`, tracking at most `max_agents` agents.
    pub fn new(pool: Pool, max_agents: usize) -> PgAgents {
        PgAgents { pool, max_agents }
    }
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl AgentStore for PgAgents {
    fn upsert(
        &self,
        id: String,
        obj: Map<String, Value>,
        owner: Option<String>,
        admin: bool,
    ) -> UpsertFuture<'_> {
        Box::pin(async move {
            let st = |e: StorageError| Refused::Storage(e);
            let mut c = client(&self.pool).await.map_err(st)?;
            let tx = c.transaction().await.map_err(|e| st(db_error(e)))?;
            let row = tx
                .query_opt(
                    "SELECT owner FROM calm_agents WHERE id = $1 FOR UPDATE",
                    &[&id],
                )
                .await
                .map_err(|e| st(db_error(e)))?;
            let owner = match row {
                Some(r) => {
                    let bound: Option<String> = r.get(0);
                    if let Some(b) = &bound {
                        if !admin && owner.as_ref() != Some(b) {
                            return Err(foreign_token(&id));
                        }
                    }
                    bound.or(owner)
                }
                None => {
                    let n: i64 = tx
                        .query_one("SELECT count(*) FROM calm_agents", &[])
                        .await
                        .map_err(|e| st(db_error(e)))?
                        .get(0);
                    if n as usize >= self.max_agents {
                        return Err(too_many_agents(self.max_agents));
                    }
                    owner
                }
            };
            tx.execute(
                "INSERT INTO calm_agents (id, heartbeat, last_seen_unix, owner) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO UPDATE SET heartbeat = EXCLUDED.heartbeat,
                    last_seen_unix = EXCLUDED.last_seen_unix, owner = EXCLUDED.owner",
                &[&id, &Value::Object(obj), &now_secs(), &owner],
            )
            .await
            .map_err(|e| st(db_error(e)))?;
            tx.commit().await.map_err(|e| st(db_error(e)))?;
            Ok(())
        })
    }

    fn list(&self) -> StoreFuture<'_, Value> {
        Box::pin(async move {
            let c = client(&self.pool).await?;
            let rows = c
                .query(
                    "SELECT heartbeat, last_seen_unix FROM calm_agents ORDER BY id COLLATE \"C\"",
                    &[],
                )
                .await
                .map_err(db_error)?;
            let list: Vec<(Map<String, Value>, f64)> = rows
                .iter()
                .filter_map(|r| match r.get::<_, Value>(0) {
                    Value::Object(o) => Some((o, r.get(1))),
                    _ => None,
                })
                .collect();
            Ok(fleet_view(list.iter().map(|(o, s)| (o, *s))))
        })
    }
}

/// Alert state in `calm_alert_state`, one row a rule group.
pub struct PgAlertState {
    pool: Pool,
    rt: tokio::runtime::Handle,
}

impl PgAlertState {
    /// The store on `pool`; its blocking calls run their queries on `rt`.
    pub fn new(pool: Pool, rt: tokio::runtime::Handle) -> PgAlertState {
        PgAlertState { pool, rt }
    }

    /// Runs `f` to completion from a blocking caller, whatever thread it is on (a
    /// runtime worker may not block on the runtime itself: a scoped thread does).
    fn block<T: Send>(&self, f: impl Future<Output = T> + Send) -> T {
        std::thread::scope(|s| {
            let h = s.spawn(|| self.rt.block_on(f));
            match h.join() {
                Ok(v) => v,
                Err(p) => std::panic::resume_unwind(p),
            }
        })
    }
}

impl AlertStateStore for PgAlertState {
    fn load(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.block(async {
            let c = client(&self.pool).await?;
            let row = c
                .query_opt("SELECT state FROM calm_alert_state WHERE key = $1", &[&key])
                .await
                .map_err(db_error)?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn save(&self, key: &str, state: &[u8]) -> Result<(), StorageError> {
        self.block(async {
            let c = client(&self.pool).await?;
            c.execute(
                "INSERT INTO calm_alert_state (key, state) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET state = EXCLUDED.state, updated_at = now()",
                &[&key, &state],
            )
            .await
            .map_err(db_error)?;
            Ok(())
        })
    }

    fn save_fenced(
        &self,
        key: &str,
        state: &[u8],
        node: &str,
        epoch: i64,
    ) -> Result<bool, StorageError> {
        self.block(super::evaluator::save_state_fenced(
            &self.pool, key, state, node, epoch,
        ))
    }

    fn describe(&self, key: &str) -> String {
        format!("PostgreSQL calm_alert_state[{key}]")
    }
}
