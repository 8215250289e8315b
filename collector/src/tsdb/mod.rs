//! Calm's time-series database: series index, head, XOR chunks, WAL, persistence on
//! sled, retention.
//!
//! ```text
//! write ─▶ head (memory, per-series XOR chunks) ─▶ WAL (group commit) ─▶ 2xx
//!             │ every bucket (2 h) once it is past the out-of-order window
//!             ▼
//!          sled `pages` (packed chunks of many series) ─▶ deleted after retention
//!                                                         ─▶ series GC: series with no
//!                                                            data left are removed
//! checkpoint: head state → `checkpoint.N` (a plain file), then the WAL before it is
//!             dropped, so a restart loads the checkpoint and replays only the WAL tail.
//! series.log: every series' labels, appended once (sled held gigabytes of memory for
//!             a million small inserts; see series_log.rs).
//! sled keeps what it is good at: large packed pages, few keys.
//! ```
//! Native histograms ([`histogram`]) ride along: kept sorted per series in the head,
//! a WAL entry of their own, and `ENC_HISTOGRAM` chunks in checkpoints and pages.
//!
//! One concept a file: [`chunkenc`] (chunk encodings: bit stream, XOR, decimal), [`labels`] (label encoding),
//! [`index`] (postings), [`head`], [`wal`], [`store`] (sled), [`checkpoint`],
//! [`compact`] (bucket persistence and retention), [`gc`] (removing series with no data left), [`series_log`] (labels of every series), [`append`] (the write path),
//! [`raw_refs`] (series by the label bytes a sender sent) and
//! [`querier`] (the read interface).

pub mod append;
pub mod checkpoint;
pub mod chunkenc;
pub mod compact;

pub mod gc;
pub mod head;
pub mod histogram;
pub mod index;
pub mod labels;
pub mod querier;
pub mod raw_refs;
pub mod series_log;
pub mod shard_groups;
pub mod sled_open;
pub mod store;
#[cfg(test)]
mod study;
pub mod ts_columns;
pub mod wal;

use parking_lot::{Mutex, RwLock};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

pub use calm_wire::value::stale_nan;
pub use index::{MatchOp, Matcher};
pub use querier::SeriesData;

/// A series' number inside this TSDB.
pub type SeriesRef = u32;

/// Width of a bucket: chunks are cut at bucket boundaries and persisted a bucket at a
/// time.
pub const BUCKET_MS: i64 = 2 * 3600 * 1000;

/// The bucket (its start, ms) that holds timestamp `t`.
pub fn bucket_of(t: i64) -> i64 {
    t.div_euclid(BUCKET_MS) * BUCKET_MS
}

/// How the TSDB is set up.
#[derive(Debug, Clone)]
pub struct Options {
    pub dir: PathBuf,
    /// Data older than this is deleted.
    pub retention_ms: i64,
    /// How far behind a series' newest sample an older sample is still accepted.
    pub ooo_window_ms: i64,
    /// WAL bytes after which a checkpoint is taken.
    pub checkpoint_wal_bytes: u64,
    /// sled page cache.
    pub cache_bytes: u64,
    /// Most samples one query may read.
    pub max_query_samples: usize,
    /// Most series in the index; new series beyond it are refused.
    pub max_series: usize,
    /// Most series of one metric name; new ones beyond it are refused.
    pub max_series_per_metric: usize,
    /// Most series one `/api/v1/series` answer holds.
    pub max_series_per_query: usize,
    /// `Some(grace)`: writes refuse (per sample, counted) samples stamped outside
    /// `[now − retention, now + grace]`. `None` accepts any timestamp (unit tests that
    /// write fixed, old timestamps); the collector always sets it (`future_grace`).
    pub future_grace_ms: Option<i64>,
}

impl Options {
    /// Defaults for a data directory.
    pub fn new(dir: impl Into<PathBuf>) -> Options {
        Options {
            dir: dir.into(),
            retention_ms: 15 * 24 * 3600 * 1000,
            ooo_window_ms: 10 * 60 * 1000,
            checkpoint_wal_bytes: 256 << 20,
            cache_bytes: 128 << 20,
            max_query_samples: 50_000_000,
            max_series: usize::MAX,
            max_series_per_metric: usize::MAX,
            max_series_per_query: 100_000,
            future_grace_ms: None,
        }
    }
}

/// Errors the TSDB reports to its callers.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    #[error("write-ahead log: {0}")]
    Io(#[from] std::io::Error),
    #[error("data directory is damaged: {0}")]
    Corrupt(String),
    #[error("query would read more than {0} samples; narrow the selector or the time range")]
    TooManySamples(usize),
}

/// Counters the TSDB keeps about itself (exported at `/metrics`).
#[derive(Default)]
pub struct DbStats {
    pub samples_appended: AtomicU64,
    pub samples_out_of_order: AtomicU64,
    pub samples_duplicate: AtomicU64,
    pub samples_rejected: AtomicU64,
    /// Of `samples_rejected`, by reason (the rest: out of bounds, behind persisted
    /// data).
    pub rejected_future: AtomicU64,
    pub rejected_retention: AtomicU64,
    pub rejected_conflict: AtomicU64,
    pub rejected_ooo_window: AtomicU64,
    pub rejected_invalid_histogram: AtomicU64,
    pub series_created: AtomicU64,
    pub checkpoints: AtomicU64,
    pub buckets_persisted: AtomicU64,
    /// Series removed by series GC (see `gc.rs`).
    pub series_removed: AtomicU64,
    /// Samples refused because their series would have passed a series limit, by
    /// [`append::SeriesLimit`].
    pub series_limit_rejections: [AtomicU64; 3],
}

/// The TSDB.
pub struct Db {
    pub opts: Options,
    pub head: head::Head,
    pub index: RwLock<index::Index>,
    pub wal: wal::Wal,
    pub store: store::Store,
    /// Buckets with persisted pages, and their generations.
    pub catalog: RwLock<BTreeMap<i64, Vec<u32>>>,
    /// Bumped by a persist between adding its bucket to `catalog` and dropping the
    /// bucket's chunks from the head: a read that took the catalog before and read the
    /// head after would miss the bucket in both, so a read that sees it change reads
    /// again (`querier.rs`).
    pub(crate) head_moves: AtomicU64,
    /// Series whose definition is not yet durable in the WAL: a writer that appends to
    /// one of them repeats the definition in its own record (see `append.rs`).
    pending_defs: Mutex<hashbrown::HashSet<SeriesRef>>,
    pending_count: AtomicUsize,
    /// Series admitted by the series limits but not yet in the index (see `append.rs`).
    admitted: Mutex<append::Admitted>,
    /// Series refs by the label bytes a remote-write sender sent (see `raw_refs.rs`).
    pub raw_refs: raw_refs::RawRefs,
    /// Held while a checkpoint, a bucket persist or series GC runs (one at a time).
    maintenance: Mutex<()>,
    /// Writers hold it shared while they find series and append to the head; series GC
    /// holds it exclusively while it removes series (see `gc.rs`).
    gc_guard: RwLock<()>,
    /// Writers hold it shared from their head append until their WAL record is
    /// queued; a writer whose samples the head already held takes it exclusively for
    /// an instant before its barrier (see `wal.rs`, rule 2).
    commit_gate: RwLock<()>,
    pub stats: DbStats,
    /// Seconds the last open took (load + replay).
    pub open_seconds: f64,
}

impl Db {
    /// Opens the TSDB in `opts.dir`: loads the series, the last checkpoint, and replays
    /// the WAL after it.
    pub fn open(opts: Options) -> Result<Arc<Db>, DbError> {
        let started = std::time::Instant::now();
        std::fs::create_dir_all(&opts.dir)?;
        let store = store::Store::open(
            &opts.dir.join("sled"),
            &opts.dir.join("pages"),
            opts.cache_bytes,
        )?;
        let head = head::Head::default();
        let mut index = index::Index::default();
        let persisted_until = store.meta_i64("persisted_until")?.unwrap_or(i64::MIN);
        head.min_valid.store(persisted_until, Ordering::Relaxed);
        if let Some(grace) = opts.future_grace_ms {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            if persisted_until > now.saturating_add(grace) {
                tracing::warn!(
                    persisted_until,
                    now,
                    "buckets up to a time in the future are already persisted (a sample \
                     from the future, accepted by an earlier version, made maintenance write \
                     out live buckets): samples before that time are refused as out of \
                     bounds until the clock gets there; to take writes now, move this data \
                     directory aside and start with a fresh one"
                );
            }
        }
        let (loaded, removed) = checkpoint::load_series(&opts.dir, &head, &mut index)?;
        let (ckpt_series, wal_from) = checkpoint::load_head(&opts.dir, &head, persisted_until)?;
        let wal_dir = opts.dir.join("wal");
        let replayed = checkpoint::replay_wal(
            &wal_dir,
            wal_from,
            &head,
            &mut index,
            persisted_until,
            &removed,
        )?;
        if let Some(t) = &replayed.torn {
            // A crash mid-write: nothing from that record on was acknowledged. Cut it
            // off so that records appended from now on never sit behind it.
            tracing::warn!(
                file = %t.path.display(),
                offset = t.offset,
                bytes = t.bytes,
                "the WAL ends in a torn record (a crash mid-write; nothing from there on was acknowledged); cutting it off"
            );
            wal::cut_torn_tail(t)?;
        }
        let (wal, _seg) = wal::Wal::open(&wal_dir)?;
        let catalog = store.catalog()?;
        let db = Db {
            opts,
            head,
            index: RwLock::new(index),
            wal,
            store,
            catalog: RwLock::new(catalog),
            head_moves: AtomicU64::new(0),
            pending_defs: Mutex::new(hashbrown::HashSet::new()),
            pending_count: AtomicUsize::new(0),
            admitted: Mutex::new(append::Admitted::default()),
            raw_refs: raw_refs::RawRefs::default(),
            maintenance: Mutex::new(()),
            gc_guard: RwLock::new(()),
            commit_gate: RwLock::new(()),
            stats: DbStats::default(),
            open_seconds: 0.0,
        };
        let secs = started.elapsed().as_secs_f64();
        tracing::info!(
            series = loaded,
            checkpointed_series = ckpt_series,
            wal_records = replayed.records,
            wal_samples = replayed.samples,
            torn_tail = replayed.torn.is_some(),
            seconds = format!("{secs:.2}"),
            "TSDB opened"
        );
        Ok(Arc::new(Db {
            open_seconds: secs,
            ..db
        }))
    }

    /// Number of series known.
    pub fn series_count(&self) -> usize {
        self.index.read().len()
    }

    /// Persists due buckets, takes a checkpoint if the WAL grew past its threshold,
    /// applies retention, and once retention deleted pages removes the series left
    /// with no data (series GC). Call periodically from a blocking context.
    pub fn maintain(&self, now_ms: i64) -> Result<(), DbError> {
        compact::persist_due_buckets(self)?;
        if self.wal.bytes_since_roll.load(Ordering::Relaxed) >= self.opts.checkpoint_wal_bytes {
            checkpoint::checkpoint(self)?;
        }
        if compact::apply_retention(self, now_ms)? > 0 {
            gc::collect_series(self)?;
        }
        Ok(())
    }

    /// Checkpoints the head and flushes everything (graceful shutdown).
    pub fn close(&self) -> Result<(), DbError> {
        checkpoint::checkpoint(self)?;
        self.store.db.flush()?;
        Ok(())
    }

    /// Bytes used on disk: sled, WAL, checkpoint and series log.
    pub fn disk_bytes(&self) -> u64 {
        fn files(dir: &std::path::Path) -> u64 {
            std::fs::read_dir(dir)
                .map(|d| {
                    d.filter_map(|e| e.ok())
                        .filter_map(|e| e.metadata().ok())
                        .filter(|m| m.is_file())
                        .map(|m| m.len())
                        .sum()
                })
                .unwrap_or(0)
        }
        self.store.size_on_disk() + files(&self.opts.dir.join("wal")) + files(&self.opts.dir)
    }
}

#[cfg(test)]
mod tests;
