//! Series refs by the label bytes a remote-write sender sent.
//!
//! A sender sends the same series the same way request after request (same labels,
//! same order), so the protobuf bytes of its label fields name the series. Looking
//! those bytes up here skips, for every series seen before, what only a new series
//! needs: building label structs, validating, sorting, encoding the canonical label
//! set and hashing it again. A miss falls back to that full path, which then adds the
//! bytes here.
//!
//! ```text
//! key   = the TimeSeries' label fields as sent (tag · len · Label, repeated)
//! shard = xxh3(key) >> 60        (16 shards, each a mutex over a hash table)
//! entry = (xxh3(key), key, series ref)
//! ```
//! A key is only added after the series validated, and validation depends only on the
//! labels, so a hit is a valid series. The same series sent with its labels in another
//! order is another key for the same ref; the number of keys is capped (see
//! [`RawRefs::insert`]) so permutations cannot grow memory without bound. Series GC
//! drops the keys of the series it removes ([`RawRefs::forget`]) while writers are
//! held off (`Db::gc_guard`), so a ref found here is always live.

use super::shard_groups::ShardGroups;
use super::SeriesRef;
use hashbrown::HashTable;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

const SHARDS: usize = 16;

struct Entry {
    hash: u64,
    key: Box<[u8]>,
    r: SeriesRef,
}

/// The map from raw label bytes to series refs.
pub struct RawRefs {
    shards: Box<[Mutex<HashTable<Entry>>]>,
    len: AtomicUsize,
}

impl Default for RawRefs {
    fn default() -> Self {
        RawRefs {
            shards: (0..SHARDS).map(|_| Mutex::new(HashTable::new())).collect(),
            len: AtomicUsize::new(0),
        }
    }
}

fn shard_of(hash: u64) -> usize {
    (hash >> 60) as usize % SHARDS
}

impl RawRefs {
    /// Looks up many keys at once, taking each shard's lock once. `out[i]` is the ref
    /// of `keys[i]` (whose hash is `hashes[i]`), or `None`.
    pub fn lookup_many<K: AsRef<[u8]>>(
        &self,
        keys: &[K],
        hashes: &[u64],
    ) -> Vec<Option<SeriesRef>> {
        let mut out = vec![None; keys.len()];
        if self.len.load(Ordering::Relaxed) == 0 {
            return out;
        }
        let groups = ShardGroups::<SHARDS>::new(hashes, |h| shard_of(*h));
        for (sh, members) in groups.iter() {
            let table = self.shards[sh].lock();
            // Two passes, for memory-level parallelism: each probe and each key
            // comparison is a cache miss (10k+ series), and a loop whose iterations do
            // not depend on each other lets the CPU wait for many misses at once. The
            // first pass matches by the 64-bit hash alone; the second compares the keys
            // and, on the rare hash collision, searches again the slow way. Measured in
            // bench/RESULTS.md (ingest, 2026-12-07): see the ingest section.
            let mut found: Vec<Option<&Entry>> = Vec::with_capacity(members.len());
            for &i in members {
                let h = hashes[i as usize];
                found.push(table.find(h, |e| e.hash == h));
            }
            for (&i, e) in members.iter().zip(found) {
                let i = i as usize;
                let key = keys[i].as_ref();
                out[i] = match e {
                    Some(e) if &*e.key == key => Some(e.r),
                    Some(_) => table
                        .find(hashes[i], |e| e.hash == hashes[i] && &*e.key == key)
                        .map(|e| e.r),
                    None => None,
                };
            }
        }
        out
    }

    /// Remembers that `key` names series `r`. Does nothing once `cap` keys are held
    /// (the caller passes a multiple of the number of series): a sender that permutes
    /// its labels then takes the full path, correct and slower.
    pub fn insert(&self, hash: u64, key: &[u8], r: SeriesRef, cap: usize) {
        if self.len.load(Ordering::Relaxed) >= cap {
            return;
        }
        let mut table = self.shards[shard_of(hash)].lock();
        if table
            .find(hash, |e| e.hash == hash && &*e.key == key)
            .is_some()
        {
            return;
        }
        table.insert_unique(
            hash,
            Entry {
                hash,
                key: key.into(),
                r,
            },
            |e| e.hash,
        );
        self.len.fetch_add(1, Ordering::Relaxed);
    }

    /// Drops every key that names one of `dead`. Returns how many.
    pub fn forget(&self, dead: &std::collections::HashSet<SeriesRef>) -> usize {
        let mut n = 0;
        for shard in self.shards.iter() {
            let mut table = shard.lock();
            let before = table.len();
            table.retain(|e| !dead.contains(&e.r));
            n += before - table.len();
        }
        self.len.fetch_sub(n, Ordering::Relaxed);
        n
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_was_inserted_and_respects_the_cap() {
        let m = RawRefs::default();
        let keys: Vec<Vec<u8>> = (0..100u32).map(|i| i.to_le_bytes().to_vec()).collect();
        let hashes: Vec<u64> = keys.iter().map(|k| xxhash_rust::xxh3::xxh3_64(k)).collect();
        for i in 0..50 {
            m.insert(hashes[i], &keys[i], i as u32, 60);
        }
        m.insert(hashes[0], &keys[0], 0, 60);
        assert_eq!(m.len(), 50);
        let got = m.lookup_many(&keys, &hashes);
        for (i, g) in got.iter().enumerate() {
            assert_eq!(*g, (i < 50).then_some(i as u32));
        }
        for i in 50..100 {
            m.insert(hashes[i], &keys[i], i as u32, 60);
        }
        assert_eq!(m.len(), 60);
    }
}
