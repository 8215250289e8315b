//! Sentry projects and their DSN keys: from `[[projects]]`, or a default project 1
//! with a random key, created on first start and kept in `<data_dir>/projects.json`.
//!
//! [`ProjectStore`] is where that list is kept (embedded: [`FileProjectStore`], the
//! file; cluster mode: the PostgreSQL table `calm_projects`, so every collector on one
//! database serves the same default project and key). [`Projects`] is the loaded,
//! read-only index the Sentry endpoints authenticate with.

use crate::config::ProjectConfig;
use anyhow::{bail, Context};
use std::collections::HashMap;
use std::path::Path;

/// The file the default project is kept in, inside the data dir.
pub const DEFAULT_FILE: &str = "projects.json";

/// Where the project list is kept.
pub trait ProjectStore: Send + Sync + 'static {
    /// The `configured` projects, or (none configured) the default project kept by the
    /// store, created with a random key by the first start. The flag says whether the
    /// default project was just created.
    fn load(
        &self,
        configured: Vec<ProjectConfig>,
    ) -> super::events::StoreFuture<'_, (Projects, bool)>;
}

/// The project list of the embedded mode: `<data_dir>/projects.json`.
pub struct FileProjectStore {
    data_dir: std::path::PathBuf,
}

impl FileProjectStore {
    /// The store in `data_dir`.
    pub fn new(data_dir: impl Into<std::path::PathBuf>) -> FileProjectStore {
        FileProjectStore {
            data_dir: data_dir.into(),
        }
    }
}

impl ProjectStore for FileProjectStore {
    fn load(
        &self,
        configured: Vec<ProjectConfig>,
    ) -> super::events::StoreFuture<'_, (Projects, bool)> {
        Box::pin(async move {
            Projects::load(&configured, &self.data_dir).map_err(|e| {
                super::StorageError::new(super::ErrorKind::Unavailable, format!("{e:#}"))
            })
        })
    }
}

/// A new default project: id 1, a random 32-hex-digit key.
pub fn default_project() -> ProjectConfig {
    ProjectConfig {
        id: 1,
        name: "default".into(),
        public_key: format!("{:032x}", rand::random::<u128>()),
        rate_limit: None,
    }
}

/// The projects events may be sent to.
#[derive(Debug, Clone)]
pub struct Projects {
    list: Vec<ProjectConfig>,
}

impl Projects {
    /// Checks `list` (ids and keys unique, keys non-empty) and indexes it by key.
    pub fn new(list: Vec<ProjectConfig>) -> anyhow::Result<Projects> {
        let mut by_key = HashMap::new();
        let mut ids = std::collections::HashSet::new();
        for (i, p) in list.iter().enumerate() {
            if p.public_key.trim().is_empty() {
                bail!("project {} has an empty public_key", p.id);
            }
            if !ids.insert(p.id) {
                bail!("project id {} is configured twice", p.id);
            }
            if by_key.insert(p.public_key.clone(), i).is_some() {
                bail!(
                    "public_key of project {} is used by another project too",
                    p.id
                );
            }
        }
        Ok(Projects { list })
    }

    /// The configured projects, or the default one from (or newly written to) the data
    /// dir. The flag says whether the default project was just created.
    pub fn load(configured: &[ProjectConfig], data_dir: &Path) -> anyhow::Result<(Projects, bool)> {
        if !configured.is_empty() {
            return Ok((Projects::new(configured.to_vec())?, false));
        }
        let path = data_dir.join(DEFAULT_FILE);
        if path.exists() {
            let text =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            let list: Vec<ProjectConfig> = serde_json::from_slice(&text)
                .with_context(|| format!("{} is not valid", path.display()))?;
            return Ok((Projects::new(list)?, false));
        }
        let list = vec![default_project()];
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create {}", data_dir.display()))?;
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(&list)?;
        std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
        Ok((Projects::new(list)?, true))
    }

    /// All projects.
    pub fn list(&self) -> &[ProjectConfig] {
        &self.list
    }

    /// The project a public key belongs to. Every key is compared, in constant time,
    /// so the answer's timing says nothing about how close a guess was.
    pub fn by_key(&self, key: &str) -> Option<&ProjectConfig> {
        use subtle::ConstantTimeEq;
        let mut found = None;
        for p in &self.list {
            if bool::from(p.public_key.as_bytes().ct_eq(key.as_bytes())) {
                found = Some(p);
            }
        }
        found
    }

    /// A project by id.
    pub fn get(&self, id: u64) -> Option<&ProjectConfig> {
        self.list.iter().find(|p| p.id == id)
    }
}

/// The DSN SDKs use to send a project's events to `listen` (`HOST:PORT`).
pub fn dsn(project: &ProjectConfig, listen: &str) -> String {
    format!("http://{}@{}/{}", project.public_key, listen, project.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_project_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let (a, created) = Projects::load(&[], dir.path()).unwrap();
        assert!(created);
        let (b, created) = Projects::load(&[], dir.path()).unwrap();
        assert!(!created);
        assert_eq!(a.list(), b.list());
        let key = a.list()[0].public_key.clone();
        assert_eq!(b.by_key(&key).map(|p| p.id), Some(1));
        let dup = vec![a.list()[0].clone(), a.list()[0].clone()];
        assert!(Projects::new(dup).is_err());
    }
}
