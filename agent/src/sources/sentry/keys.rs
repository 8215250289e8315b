//! The projects' DSN keys, fetched from the collector so the relay refuses a wrong key
//! itself, as Sentry's Relay does with the project configs it fetches upstream.
//!
//! ```text
//! GET <collector>/api/calm/v1/agent/projects   Authorization: Bearer <agent token>
//! 200 {"projects": [{"id": 1, "public_key": "…", "rate_limit": 50.0}, …]}
//! ```
//! Fetched at start and every `[sentry] keys_refresh` (default 60 s) from the first
//! collector that answers; each answer replaces the list and is written to
//! `<data_dir>/projects.json` (mode 0600, temp file + rename), which is read back at
//! start, so an agent restarted during a collector outage still knows the keys.
//!
//! The relay's verdict, with the collector's status codes and messages:
//!
//! ```text
//! keys known, key unknown                  → 401 {"detail": "invalid DSN key: no project has this public key"}
//! keys known, key of another project       → 403 {"detail": "this DSN key belongs to project 2, not 1"}
//! keys known, key right                    → accepted (also with the collector down)
//! keys never known (no answer since boot,  → accepted and spooled: the collector checks the
//!   no projects.json)                        key when the event is shipped (Relay buffers
//!                                            while a project's state is pending)
//! ```
//! A project's `rate_limit` lowers the relay's own per-project rate to it, so SDKs
//! get the collector's limit at the agent (429 + Retry-After + X-Sentry-Rate-Limits)
//! before the events are spooled.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One project as the collector lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectKey {
    pub id: u64,
    pub public_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct Answer {
    projects: Vec<ProjectKey>,
}

/// Why the relay refuses a key.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No project has it: 401.
    Unknown,
    /// It is the key of another project: 403.
    OtherProject(u64),
}

/// The keys as last known (none: never known).
#[derive(Default)]
pub struct Keys {
    known: parking_lot::RwLock<Option<HashMap<String, ProjectKey>>>,
    /// Successful fetches.
    pub refreshes: AtomicU64,
    /// Failed fetches (no collector answered with a list).
    pub failures: AtomicU64,
}

impl Keys {
    /// Keys from `<data_dir>/projects.json` when it is there and valid, else unknown.
    pub fn load(path: &Path) -> Keys {
        let keys = Keys::default();
        if let Ok(bytes) = std::fs::read(path) {
            match serde_json::from_slice::<Vec<ProjectKey>>(&bytes) {
                Ok(list) => {
                    tracing::info!(projects = list.len(), file = %path.display(), "DSN keys loaded from the last fetch");
                    keys.set(list);
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "ignoring an unreadable DSN key cache")
                }
            }
        }
        keys
    }

    fn set(&self, list: Vec<ProjectKey>) {
        let map = list
            .into_iter()
            .map(|p| (p.public_key.clone(), p))
            .collect();
        *self.known.write() = Some(map);
    }

    /// Whether the keys were ever known.
    pub fn is_known(&self) -> bool {
        self.known.read().is_some()
    }

    /// How many projects are known.
    pub fn count(&self) -> usize {
        self.known.read().as_ref().map_or(0, HashMap::len)
    }

    /// The relay's check of `key` for `project`: `Ok` when it may go on (right key, or
    /// keys never known).
    pub fn check(&self, key: &str, project: u64) -> Result<(), Refusal> {
        let known = self.known.read();
        let Some(map) = known.as_ref() else {
            return Ok(());
        };
        match map.get(key) {
            None => Err(Refusal::Unknown),
            Some(p) if p.id != project => Err(Refusal::OtherProject(p.id)),
            Some(_) => Ok(()),
        }
    }

    /// The per-project rates the collector set.
    pub fn rates(&self) -> HashMap<u64, f64> {
        self.known
            .read()
            .as_ref()
            .map(|m| {
                m.values()
                    .filter_map(|p| p.rate_limit.map(|r| (p.id, r)))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Writes the list to `path` readable by the agent's user only.
fn save(path: &Path, list: &[ProjectKey]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(list).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// What the refresher needs.
pub struct Refresher {
    pub keys: Arc<Keys>,
    pub collectors: Vec<String>,
    pub token: Option<String>,
    pub every: Duration,
    pub file: PathBuf,
    pub limits: Arc<super::limits::Limits>,
}

impl Refresher {
    async fn fetch(&self, client: &reqwest::Client) -> Result<Vec<ProjectKey>, String> {
        let mut errors = Vec::new();
        for base in &self.collectors {
            let url = format!("{}/api/calm/v1/agent/projects", base.trim_end_matches('/'));
            let mut req = client.get(&url);
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            match req.send().await {
                Ok(r) if r.status().is_success() => match r.json::<Answer>().await {
                    Ok(a) => return Ok(a.projects),
                    Err(e) => errors.push(format!("{url}: not a project list: {e}")),
                },
                Ok(r) => errors.push(format!("{url}: {}", r.status())),
                Err(e) => errors.push(format!("{url}: {e}")),
            }
        }
        Err(errors.join("; "))
    }

    /// Fetches now and every `every`, forever.
    pub async fn run(self) {
        let client = match reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "no HTTP client: DSN keys are not fetched");
                return;
            }
        };
        self.limits.set_project_rates(self.keys.rates());
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut saved: Option<Vec<ProjectKey>> = None;
        loop {
            tick.tick().await;
            match self.fetch(&client).await {
                Ok(list) => {
                    self.keys.refreshes.fetch_add(1, Ordering::Relaxed);
                    // Written (and fsynced) on this run's first fetch and when the list
                    // changes, not on every refresh: the same list every minute cost a
                    // file write and an fsync for nothing.
                    if saved.as_ref() != Some(&list) {
                        match save(&self.file, &list) {
                            Ok(()) => saved = Some(list.clone()),
                            Err(e) => {
                                saved = None;
                                tracing::warn!(file = %self.file.display(), error = %e, "cannot keep the DSN keys on disk");
                            }
                        }
                    }
                    self.keys.set(list);
                    self.limits.set_project_rates(self.keys.rates());
                }
                Err(e) => {
                    self.keys.failures.fetch_add(1, Ordering::Relaxed);
                    let known = self.keys.is_known();
                    tracing::warn!(error = %e, keys_known = known,
                        "cannot fetch the projects' DSN keys; {}",
                        if known { "keeping the last known ones" } else { "accepting every key until the collector answers" });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_and_cache() {
        let k = Keys::default();
        assert_eq!(k.check("x", 1), Ok(()), "unknown keys: accept");
        let list = vec![
            ProjectKey {
                id: 1,
                public_key: "a".into(),
                rate_limit: None,
            },
            ProjectKey {
                id: 2,
                public_key: "b".into(),
                rate_limit: Some(5.0),
            },
        ];
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("projects.json");
        save(&path, &list).expect("save");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let k = Keys::load(&path);
        assert_eq!(k.check("a", 1), Ok(()));
        assert_eq!(k.check("a", 2), Err(Refusal::OtherProject(1)));
        assert_eq!(k.check("zz", 1), Err(Refusal::Unknown));
        assert_eq!(k.rates().get(&2), Some(&5.0));
    }
}
