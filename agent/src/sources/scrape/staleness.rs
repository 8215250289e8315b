//! Staleness: which series of a target disappeared since its last scrape, so they get
//! Prometheus' stale marker (a special NaN) and queries stop returning them at once
//! instead of five minutes later.
//!
//! ```text
//! scrape 1: a b c       scrape 2: a c   → b gets a stale marker at scrape 2's time
//! scrape 3 fails (down) → a and c get stale markers; up = 0
//! ```
//!
//! Per target, only the label sets of the last successful scrape are kept (and a hash of
//! every series for `scrape_series_added`); no values, no history. Series whose sample
//! carried its own timestamp are not tracked, as in Prometheus.

use calm_wire::prompb::Label;
use std::collections::{HashMap, HashSet};

/// What one target remembers between scrapes.
#[derive(Debug, Default)]
pub struct SeriesCache {
    /// Series of the last successful scrape that get stale markers when they vanish.
    tracked: HashMap<u64, Vec<Label>>,
    /// Every series of the last successful scrape (for `scrape_series_added`).
    seen: HashSet<u64>,
}

impl SeriesCache {
    /// Records a successful scrape: `current` holds every series as (hash, labels,
    /// tracked for staleness). Returns the label sets that disappeared (to be marked
    /// stale) and how many series are new since the last scrape.
    pub fn update<'a>(
        &mut self,
        current: impl Iterator<Item = (u64, &'a [Label], bool)>,
    ) -> (Vec<Vec<Label>>, usize) {
        let mut tracked = HashMap::with_capacity(self.tracked.len());
        let mut seen = HashSet::with_capacity(self.seen.len());
        let mut added = 0;
        for (hash, labels, track) in current {
            if !seen.insert(hash) {
                continue;
            }
            if !self.seen.contains(&hash) {
                added += 1;
            }
            if track {
                let labels = self
                    .tracked
                    .remove(&hash)
                    .unwrap_or_else(|| labels.to_vec());
                tracked.insert(hash, labels);
            }
        }
        // What is left of the old map vanished.
        let gone = std::mem::replace(&mut self.tracked, tracked)
            .into_values()
            .collect();
        self.seen = seen;
        (gone, added)
    }

    /// A failed scrape: every tracked series goes stale. `seen` is kept, so a target
    /// that comes back does not count all its series as added.
    pub fn fail(&mut self) -> Vec<Vec<Label>> {
        std::mem::take(&mut self.tracked).into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(v: &str) -> Vec<Label> {
        vec![Label::new("__name__", v)]
    }

    #[test]
    fn vanished_series_go_stale_and_failures_stale_everything() {
        let mut c = SeriesCache::default();
        let (a, b, x) = (l("a"), l("b"), l("x"));
        let (gone, added) =
            c.update([(1, &a[..], true), (2, &b[..], true), (3, &x[..], false)].into_iter());
        assert!(gone.is_empty());
        assert_eq!(added, 3);
        let (gone, added) = c.update([(1, &a[..], true)].into_iter());
        assert_eq!(gone, vec![b.clone()]);
        assert_eq!(added, 0);
        assert_eq!(c.fail(), vec![a.clone()]);
        assert!(c.fail().is_empty());
        let (gone, added) = c.update([(1, &a[..], true), (2, &b[..], true)].into_iter());
        assert!(gone.is_empty());
        assert_eq!(added, 1, "a was seen before the failure, b was not");
    }
}
