//! Detects a damaged event store at start, instead of starting with a fraction of it.
//!
//! sled recovers from damage in its log by treating it as the end of the log: a store
//! with a garbled segment opens without an error and silently holds only what came
//! before. So every flushed write batch bumps `write_seq` in the store's `meta` tree,
//! and once sled has flushed it, the number is also written to `<store>.mark` next to
//! the store (at most once a second, and at a clean stop). At start the store must hold at least the mark's number; less means sled
//! lost acknowledged writes, and the collector refuses to start, naming the store and
//! what to do. The mark is written after sled's fsync (never ahead of what is durable)
//! and atomically (rename), so a crash leaves it behind the store, never ahead.
//!
//! At start every issue record is also read back: a record that does not decode, or a
//! read error from sled, refuses the start the same way.

use super::sled_store::StoreError;
use parking_lot::Mutex;
use sled::Tree;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const KEY: &[u8] = b"write_seq";

/// How often the mark is rewritten at most while batches are flushed (it may trail the
/// store by this much; a clean stop writes the last one).
const MARK_EVERY: Duration = Duration::from_secs(1);

/// The mark file of the store in `dir`.
#[derive(Debug)]
pub struct Mark {
    path: PathBuf,
    /// When the mark was last written, and the newest flushed sequence number.
    state: Mutex<(Option<Instant>, u64, u64)>,
}

fn read_seq(meta: &Tree) -> Result<u64, sled::Error> {
    Ok(meta
        .get(KEY)?
        .map(|v| {
            let mut a = [0u8; 8];
            let n = v.len().min(8);
            a[..n].copy_from_slice(&v[..n]);
            u64::from_be_bytes(a)
        })
        .unwrap_or(0))
}

fn damaged(dir: &Path, what: &str) -> StoreError {
    StoreError::Corrupt(format!(
        "the event store {} is damaged: {what}. The collector does not start on a damaged \
         store (it would silently serve part of it). Stop here and either restore {} from a \
         backup, or move it aside (mv {} {}.damaged) to start with an empty store; if you \
         restored an older copy on purpose, delete {} first.",
        dir.display(),
        dir.display(),
        dir.display(),
        dir.display(),
        mark_path(dir).display()
    ))
}

fn mark_path(dir: &Path) -> PathBuf {
    let mut p = dir.as_os_str().to_owned();
    p.push(".mark");
    PathBuf::from(p)
}

/// Opens the sled database in `dir`: a panic inside sled (it has some for damaged
/// files) or its `Corruption` error becomes the "damaged" refusal, naming the store. A
/// lock still held by a dropped handle of this process is waited for
/// ([`crate::tsdb::sled_open`]).
pub fn open_sled(config: sled::Config, dir: &Path) -> Result<sled::Db, StoreError> {
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        crate::tsdb::sled_open::open(&config)
    }));
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(sled::Error::Corruption { at, .. })) => Err(damaged(
            dir,
            &format!(
                "sled reports corruption{}",
                at.map(|a| format!(" at {a:?}")).unwrap_or_default()
            ),
        )),
        Ok(Err(e)) => Err(StoreError::Sled(e)),
        Err(panic) => {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            Err(damaged(dir, &format!("sled failed reading it ({why})")))
        }
    }
}

impl Mark {
    /// Checks the freshly opened store in `dir` against its mark and reads every issue
    /// record (decoded with `decode`) back.
    pub fn check(
        dir: &Path,
        meta: &Tree,
        issues: &Tree,
        decode: impl Fn(&[u8]) -> Result<(), String>,
    ) -> Result<Mark, StoreError> {
        let path = mark_path(dir);
        let have = read_seq(meta)
            .map_err(|e| damaged(dir, &format!("its meta tree cannot be read ({e})")))?;
        match std::fs::read_to_string(&path) {
            Ok(text) => match text.trim().parse::<u64>() {
                Ok(want) if have < want => {
                    return Err(damaged(
                        dir,
                        &format!(
                            "it holds write batches up to #{have}, but #{want} were written and \
                             acknowledged before (recorded in {}): the end of its log was lost",
                            path.display()
                        ),
                    ))
                }
                Ok(_) => {}
                // A crash can leave an empty mark behind; it only ever trails the store.
                Err(_) => {
                    tracing::warn!(path = %path.display(), "the event store's mark file is unreadable; rewriting it")
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the event store's mark file")
            }
        }
        for kv in issues.iter() {
            let (k, v) =
                kv.map_err(|e| damaged(dir, &format!("reading its issues failed ({e})")))?;
            if let Err(e) = decode(&v) {
                let id = k.get(..8).map(|b| {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    u64::from_be_bytes(a)
                });
                return Err(damaged(dir, &format!("issue {id:?} cannot be read ({e})")));
            }
        }
        let m = Mark {
            path,
            state: Mutex::new((None, have, 0)),
        };
        m.flushed(have);
        Ok(m)
    }

    /// Bumps `write_seq` in `meta` (before the flush that makes it durable).
    pub fn bump(meta: &Tree) -> Result<u64, sled::Error> {
        let next = read_seq(meta)? + 1;
        meta.insert(KEY, &next.to_be_bytes())?;
        Ok(next)
    }

    /// Records `seq` as flushed (call after the flush): rewrites the mark at most every
    /// `MARK_EVERY`. A failure is logged, not fatal: the mark then trails the store,
    /// which the start-up check accepts.
    pub fn flushed(&self, seq: u64) {
        let mut st = self.state.lock();
        st.1 = st.1.max(seq);
        if st.0.is_some_and(|t| t.elapsed() < MARK_EVERY) {
            return;
        }
        st.0 = Some(Instant::now());
        st.2 = st.1;
        self.write(st.1);
    }

    fn write(&self, seq: u64) {
        let tmp = self.path.with_extension("mark.tmp");
        let r = std::fs::write(&tmp, format!("{seq}\n"))
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = r {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot write the event store's mark file");
        }
    }
}

impl Drop for Mark {
    /// A clean stop records the newest flushed batch.
    fn drop(&mut self) {
        let st = *self.state.lock();
        if st.1 > st.2 {
            self.write(st.1);
        }
    }
}
