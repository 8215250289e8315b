//! One alert: a label set an alerting rule's expression returned, and where it is in
//! the state machine, as in Prometheus' `rules/alerting.go`.
//!
//! ```text
//!            expr returns it                      for elapsed
//! inactive ───────────────────▶ pending ─────────────────────▶ firing
//!    ▲                             │ expr stops returning it      │ expr stops returning it
//!    │        (dropped at once) ◀──┘                              │ (and keep_firing_for is over)
//!    └──────────── resolved: kept 15 m (resolvedAt) ◀─────────────┘
//! ```

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Labels or annotations, sorted by name.
pub type LabelMap = BTreeMap<String, String>;

/// How long a resolved alert is kept (and re-sent) after it resolved.
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;

/// Where an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// Resolved (kept for [`RESOLVED_RETENTION_MS`] to re-send the resolution).
    Inactive,
    /// Active, waiting for `for`.
    Pending,
    /// Active for at least `for`.
    Firing,
}

impl AlertState {
    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// An alert of one alerting rule. Times are ms since the epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Its labels: the sample's (without `__name__`), the rule's, and `alertname`.
    pub labels: LabelMap,
    /// Expanded annotations.
    pub annotations: LabelMap,
    /// Where it is.
    pub state: AlertState,
    /// The last value of the expression for it (not persisted: JSON has no NaN; the
    /// next evaluation sets it).
    #[serde(skip, default)]
    pub value: f64,
    /// When the expression first returned it (this activation).
    pub active_at: i64,
    /// When it went firing.
    pub fired_at: Option<i64>,
    /// When it resolved.
    pub resolved_at: Option<i64>,
    /// When it was last handed to the notifiers.
    #[serde(default)]
    pub last_sent_at: Option<i64>,
    /// When the last notification stops being valid (notifiers resolve it then).
    #[serde(default)]
    pub valid_until: i64,
    /// Since when the expression no longer returns it while `keep_firing_for` holds
    /// it firing.
    #[serde(default)]
    pub keep_firing_since: Option<i64>,
}

impl Alert {
    /// Prometheus' `needsSending`: firing alerts every `resend_delay`, resolved ones
    /// once more as soon as they resolve; never pending ones.
    pub fn needs_sending(&self, ts: i64, resend_delay_ms: i64) -> bool {
        if self.state == AlertState::Pending {
            return false;
        }
        let last = self.last_sent_at.unwrap_or(i64::MIN);
        if self.resolved_at.is_some_and(|r| r > last) {
            return true;
        }
        self.last_sent_at.is_none() || last + resend_delay_ms < ts
    }
}

/// The hash that identifies an alert's label set within its rule.
pub fn labels_hash(l: &LabelMap) -> u64 {
    let mut buf = Vec::with_capacity(128);
    for (n, v) in l {
        buf.extend_from_slice(n.as_bytes());
        buf.push(0xff);
        buf.extend_from_slice(v.as_bytes());
        buf.push(0xff);
    }
    xxhash_rust::xxh3::xxh3_64(&buf)
}

/// Alertmanager's fingerprint of a label set (`model.LabelSet.Fingerprint`): FNV-1a
/// 64 over sorted names and values, each followed by the 0xff separator, printed as
/// 16 hex digits in payloads.
pub fn fingerprint(l: &LabelMap) -> u64 {
    const OFFSET: u64 = 14695981039346656037;
    const PRIME: u64 = 1099511628211;
    let mut h = OFFSET;
    let mut add = |b: u8| {
        h ^= b as u64;
        h = h.wrapping_mul(PRIME);
    };
    for (n, v) in l {
        n.bytes().for_each(&mut add);
        add(0xff);
        v.bytes().for_each(&mut add);
        add(0xff);
    }
    h
}

/// A time as Go's `time.Time` marshals to JSON (RFC 3339, nanoseconds with trailing
/// zeros trimmed, UTC `Z`).
pub fn rfc3339(ms: i64) -> String {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => {
            let frac = ms.rem_euclid(1000);
            let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
            if frac == 0 {
                format!("{base}Z")
            } else {
                let mut f = format!("{frac:03}");
                while f.ends_with('0') {
                    f.pop();
                }
                format!("{base}.{f}Z")
            }
        }
        None => "0001-01-01T00:00:00Z".into(),
    }
}

/// Go's zero `time.Time` in JSON.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_alertmanagers() {
        // The empty label set's fingerprint is the FNV offset basis, as in common/model.
        assert_eq!(fingerprint(&LabelMap::new()), 0xcbf29ce484222325);
        assert_eq!(rfc3339(1_435_781_451_781), "2015-07-01T20:10:51.781Z");
        assert_eq!(rfc3339(1_435_781_451_000), "2015-07-01T20:10:51Z");
        assert_eq!(rfc3339(1_435_781_451_500), "2015-07-01T20:10:51.5Z");
    }

    #[test]
    fn sends_like_prometheus() {
        let mut a = Alert {
            labels: LabelMap::new(),
            annotations: LabelMap::new(),
            state: AlertState::Pending,
            value: 1.0,
            active_at: 0,
            fired_at: None,
            resolved_at: None,
            last_sent_at: None,
            valid_until: 0,
            keep_firing_since: None,
        };
        assert!(!a.needs_sending(10, 60_000));
        a.state = AlertState::Firing;
        assert!(a.needs_sending(10, 60_000));
        a.last_sent_at = Some(10);
        assert!(!a.needs_sending(20, 60_000));
        assert!(a.needs_sending(60_011, 60_000));
        a.resolved_at = Some(30);
        a.state = AlertState::Inactive;
        assert!(a.needs_sending(31, 60_000));
    }
}
