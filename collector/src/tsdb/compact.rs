//! Moving old buckets out of memory into sled pages, and deleting expired ones.
//!
//! A bucket is due once the newest sample seen is past its end by the out-of-order
//! window plus one hour (so late samples still land in the head). "The newest sample
//! seen" is capped at the clock plus `future_grace`, so one outlier stamped in 2100
//! cannot make the live bucket due (writes refuse such samples in the first place). Persisting a bucket:
//! raise the head's `min_valid` to the bucket's end (later samples for it are refused
//! as out of bounds), copy its chunks from every series, save the series they belong
//! to, write the pages and `persisted_until`, flush, and only then drop the chunks from
//! memory. A crash in between leaves them in the WAL/checkpoint, and start-up skips
//! what `persisted_until` says is already in pages.

use super::checkpoint::save_new_series;
use super::head::{make_ref, SHARDS};
use super::{bucket_of, Db, DbError, SeriesRef, BUCKET_MS};
use std::sync::atomic::Ordering;

/// Persists every bucket that is due. Returns how many.
pub fn persist_due_buckets(db: &Db) -> Result<usize, DbError> {
    let mut done = 0;
    loop {
        let mut max_t = db.head.max_t.load(Ordering::Relaxed);
        if max_t == i64::MIN {
            return Ok(done);
        }
        if let Some(grace) = db.opts.future_grace_ms {
            // The newest sample seen says how far time has gone, but never further than
            // the clock plus the grace: writes refuse later samples, and one that got in
            // anyway (a WAL written before that rule) must not push the live bucket out.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(i64::MAX);
            max_t = max_t.min(now.saturating_add(grace));
        }
        let Some(oldest) = oldest_bucket(db) else {
            return Ok(done);
        };
        let grace = db.opts.ooo_window_ms + 3600 * 1000;
        if oldest + BUCKET_MS + grace > max_t {
            return Ok(done);
        }
        persist_bucket(db, oldest)?;
        done += 1;
    }
}

fn oldest_bucket(db: &Db) -> Option<i64> {
    db.head
        .shards
        .iter()
        .filter_map(|s| {
            s.lock()
                .series
                .iter()
                .filter_map(|m| m.oldest_bucket())
                .min()
        })
        .min()
}

/// Persists one bucket (it must be the oldest in the head).
pub fn persist_bucket(db: &Db, bucket: i64) -> Result<(), DbError> {
    let _guard = db.maintenance.lock();
    let started = std::time::Instant::now();
    let end = bucket + BUCKET_MS;
    db.head.min_valid.fetch_max(end, Ordering::SeqCst);
    let mut series: Vec<(SeriesRef, Vec<super::chunkenc::Chunk>)> = Vec::new();
    for sh in 0..SHARDS {
        let shard = db.head.shards[sh].lock();
        for (slot, ms) in shard.series.iter().enumerate() {
            if ms.oldest_bucket().is_some_and(|b| b <= bucket) {
                let chunks = ms.copy_bucket(bucket);
                if !chunks.is_empty() {
                    series.push((make_ref(sh, slot as u32), chunks));
                }
            }
        }
    }
    series.sort_unstable_by_key(|s| s.0);
    save_new_series(db)?;
    let gen = next_gen(db)?;
    let pages = db.store.write_pages(bucket, gen, &series)?;
    db.store.db.flush()?;
    // Only now is the generation complete; a crash before this leaves orphan pages
    // that the next start deletes (the bucket is still in the WAL/checkpoint).
    let refs: Vec<SeriesRef> = series.iter().map(|s| s.0).collect();
    db.store.mark_complete(bucket, gen, &refs)?;
    db.store
        .meta
        .insert("persisted_until", &end.to_le_bytes())?;
    db.store.db.flush()?;
    db.catalog.write().entry(bucket).or_default().push(gen);
    // Readers that took the catalog before the line above read again (querier.rs).
    db.head_moves.fetch_add(1, Ordering::SeqCst);
    for sh in 0..SHARDS {
        let mut shard = db.head.shards[sh].lock();
        for ms in shard.series.iter_mut() {
            ms.drop_before(end);
        }
    }
    db.stats.buckets_persisted.fetch_add(1, Ordering::Relaxed);
    tracing::info!(
        bucket,
        series = series.len(),
        pages = pages.pages,
        bytes = pages.bytes,
        raw_bytes = pages.raw_bytes,
        column_bytes = pages.column_bytes,
        whole_pages = pages.whole_pages,
        seconds = format!("{:.2}", started.elapsed().as_secs_f64()),
        "bucket persisted"
    );
    Ok(())
}

fn next_gen(db: &Db) -> Result<u32, DbError> {
    let cur = db
        .store
        .meta
        .get("next_gen")?
        .and_then(|v| v.as_ref().try_into().ok().map(u32::from_le_bytes))
        .unwrap_or(1);
    db.store.meta.insert("next_gen", &(cur + 1).to_le_bytes())?;
    Ok(cur)
}

/// Deletes pages of buckets that ended before `now − retention`.
pub fn apply_retention(db: &Db, now_ms: i64) -> Result<usize, DbError> {
    let cutoff = bucket_of(now_ms.saturating_sub(db.opts.retention_ms));
    let expired = db.catalog.read().range(..cutoff).next().is_some();
    if !expired {
        return Ok(0);
    }
    let _guard = db.maintenance.lock();
    let n = db.store.delete_buckets_before(cutoff)?;
    db.catalog.write().retain(|b, _| *b >= cutoff);
    tracing::info!(pages = n, before = cutoff, "retention deleted old pages");
    Ok(n)
}
