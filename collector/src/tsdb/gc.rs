//! Series GC: removing series that hold no data anywhere any more.
//!
//! Retention deletes old pages, but a series that stopped (a pod that went away, a
//! label value that changed) kept its labels, its index postings, its raw-label keys
//! and its head slot forever: a collector under label churn grew without bound. After
//! retention deletes pages, a series is removed when
//!
//! ```text
//! head holds none of its samples   (MemSeries::is_empty)
//! and no remaining page holds any  (the refs listed in each generation's mark, store.rs)
//! ```
//! Removing it: a tombstone in the series log (synced first, so a restart does not
//! bring it back), then out of the head's hash table, the index and the raw-label
//! keys. Its slot stays as an empty placeholder and its ref is never handed out again,
//! so nothing that still names the ref (an old WAL record, an old checkpoint) can be
//! taken for another series; load skips what those hold of it.
//!
//! Writers are held off meanwhile (`Db::gc_guard`): a writer that found the ref by its
//! raw label bytes just before would otherwise append to the removed slot. A series
//! that comes back later is a new series with a new ref.

use super::head::{make_ref, SHARDS};
use super::series_log::SeriesLog;
use super::{Db, DbError, SeriesRef};
use std::collections::HashSet;
use std::sync::atomic::Ordering;

/// Removes every series with no data left in the head or in pages. Returns how many.
/// Does nothing while some bucket was persisted before pages listed their refs.
pub fn collect_series(db: &Db) -> Result<usize, DbError> {
    let _maintenance = db.maintenance.lock();
    let started = std::time::Instant::now();
    let Some(in_pages) = db.store.refs_in_pages().map_err(DbError::Corrupt)? else {
        tracing::debug!("series GC skipped: some pages predate ref lists");
        return Ok(0);
    };
    let _writers = db.gc_guard.write();
    let mut dead: Vec<(SeriesRef, Box<[u8]>)> = Vec::new();
    for sh in 0..SHARDS {
        let shard = db.head.shards[sh].lock();
        for (slot, ms) in shard.series.iter().enumerate() {
            let r = make_ref(sh, slot as u32);
            if !ms.labels.is_empty() && ms.is_empty() && !in_pages.contains(r) {
                dead.push((r, ms.labels.clone()));
            }
        }
    }
    if dead.is_empty() {
        return Ok(0);
    }
    let refs: Vec<SeriesRef> = dead.iter().map(|d| d.0).collect();
    SeriesLog::new(&db.opts.dir).append_tombstones(&refs)?;
    for (r, _) in &dead {
        let (sh, slot) = super::head::split_ref(*r);
        db.head.shards[sh].lock().remove(slot);
    }
    let set: HashSet<SeriesRef> = refs.iter().copied().collect();
    db.index.write().remove_all(
        &set,
        dead.iter()
            .flat_map(|(_, labels)| super::labels::iter(labels)),
    );
    db.raw_refs.forget(&set);
    db.stats
        .series_removed
        .fetch_add(dead.len() as u64, Ordering::Relaxed);
    tracing::info!(
        series = dead.len(),
        seconds = format!("{:.2}", started.elapsed().as_secs_f64()),
        "series GC removed series with no data left"
    );
    Ok(dead.len())
}
