//! Counts of envelope items received, by project and item type (kept in memory).

use parking_lot::Mutex;
use std::collections::BTreeMap;

/// Item types Sentry SDKs send today; anything else is counted as `unknown`.
pub const KNOWN_TYPES: &[&str] = &[
    "event",
    "transaction",
    "session",
    "sessions",
    "attachment",
    "user_report",
    "feedback",
    "client_report",
    "profile",
    "profile_chunk",
    "replay_event",
    "replay_recording",
    "replay_video",
    "check_in",
    "statsd",
    "metric_buckets",
    "span",
    "log",
    "otel_log",
    "security",
    "raw_security",
    "form_data",
    "nel",
];

/// Item counters.
#[derive(Debug, Default)]
pub struct ItemStats {
    counts: Mutex<BTreeMap<(u64, &'static str), u64>>,
}

impl ItemStats {
    /// Counts one item of type `ty` for `project`.
    pub fn count(&self, project: u64, ty: &str) {
        let ty = KNOWN_TYPES
            .iter()
            .find(|k| **k == ty)
            .copied()
            .unwrap_or("unknown");
        *self.counts.lock().entry((project, ty)).or_insert(0) += 1;
    }

    /// The counts of one project, by type.
    pub fn of(&self, project: u64) -> BTreeMap<&'static str, u64> {
        self.counts
            .lock()
            .iter()
            .filter(|((p, _), _)| *p == project)
            .map(|((_, t), n)| (*t, *n))
            .collect()
    }
}
