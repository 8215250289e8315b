//! The alert state store (a small store): what a rule group's alerts were (state,
//! `activeAt`, …) so that a restart resumes them. The alerts room encodes a group's
//! state (`alerts/state.rs`); the store keeps the bytes under the group's key.

use super::{ErrorKind, StorageError};
use std::io::Write as _;
use std::path::PathBuf;

/// Where alert state survives restarts.
pub trait AlertStateStore: Send + Sync + 'static {
    /// The state saved for the group `key`, if any. Blocking.
    fn load(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError>;
    /// Saves the group's state durably (replacing what was there). Blocking.
    fn save(&self, key: &str, state: &[u8]) -> Result<(), StorageError>;
    /// Saves only while `(node, epoch)` holds the alert evaluator lease (cluster mode:
    /// the check and the write are one transaction); `Ok(false)` when fenced, nothing
    /// written. Stores without leases save unconditionally. Blocking.
    fn save_fenced(
        &self,
        key: &str,
        state: &[u8],
        node: &str,
        epoch: i64,
    ) -> Result<bool, StorageError> {
        let _ = (node, epoch);
        self.save(key, state).map(|()| true)
    }
    /// Where the group's state is, for log lines.
    fn describe(&self, key: &str) -> String;
}

/// Alert state as one JSON file per group in a directory (`<data_dir>/alerts/`),
/// rewritten with a temp file, fsync and rename:
/// `group-<xxh3(key) hex>.json`.
pub struct FileAlertState {
    dir: PathBuf,
}

impl FileAlertState {
    /// The store in `dir` (created on the first save).
    pub fn new(dir: impl Into<PathBuf>) -> FileAlertState {
        FileAlertState { dir: dir.into() }
    }

    fn path_for(&self, key: &str) -> PathBuf {
        let h = xxhash_rust::xxh3::xxh3_64(key.as_bytes());
        self.dir.join(format!("group-{h:016x}.json"))
    }
}

fn io(e: std::io::Error) -> StorageError {
    let kind = if e.raw_os_error() == Some(28) {
        ErrorKind::Full
    } else {
        ErrorKind::Unavailable
    };
    StorageError::new(kind, e.to_string())
}

impl AlertStateStore for FileAlertState {
    fn load(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        match std::fs::read(self.path_for(key)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(e)),
        }
    }

    fn save(&self, key: &str, state: &[u8]) -> Result<(), StorageError> {
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let path = self.path_for(key);
        let tmp = path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(state).map_err(io)?;
        f.sync_data().map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        Ok(())
    }

    fn describe(&self, key: &str) -> String {
        self.path_for(key).display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_replaces_and_loads_per_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = FileAlertState::new(dir.path().join("alerts"));
        assert_eq!(s.load("a").expect("load"), None);
        s.save("a", b"1").expect("save");
        s.save("b", b"2").expect("save");
        s.save("a", b"3").expect("save");
        let again = FileAlertState::new(dir.path().join("alerts"));
        assert_eq!(again.load("a").expect("load").as_deref(), Some(&b"3"[..]));
        assert_eq!(again.load("b").expect("load").as_deref(), Some(&b"2"[..]));
    }
}
