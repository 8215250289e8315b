//! Failpoints: injected I/O failures at chosen points, **for tests only**.
//!
//! The black-box fault-injection tests (`tests/tests/fault_injection.rs`) start the
//! real binary with
//!
//! ```text
//! CALM_FAILPOINTS=wal.write=fail@3,wal.sync=fail@5-6,events.flush=fail@2
//! ```
//!
//! meaning: the 3rd time the WAL writes, it fails (after writing half its buffer, as a
//! full disk does); the 5th and 6th WAL fsyncs fail; the 2nd event-store flush fails.
//! Hits are counted per name from 1. `fail@N-` fails every hit from the Nth on; a name
//! given again adds its range (`wal.write=fail@4,wal.write=fail@14`).
//! Points: `wal.write`, `wal.sync`, `events.flush`, `cluster.apply` (an owner's batch
//! of log messages).
//!
//! Delays: `NAME=delay(MS)@N-M` makes the chosen hits of a delay point wait MS
//! milliseconds ([`delay`]). Point: `cluster.apply.delay` (an owner applies each
//! batch of log messages that much later: a lagging owner).
//!
//! Unset (production), [`check`] costs one relaxed atomic load. Nothing else reads the
//! variable; never set it in production.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;

static ENABLED: AtomicBool = AtomicBool::new(false);
static POINTS: OnceLock<HashMap<String, Point>> = OnceLock::new();

struct Point {
    /// Inclusive ranges of hit numbers that fail.
    ranges: Vec<(u64, u64)>,
    /// `delay(MS)`: the chosen hits wait this long instead of failing.
    delay_ms: Option<u64>,
    hits: AtomicU64,
}

/// Reads `CALM_FAILPOINTS` (call once at start). Returns an error naming a malformed
/// entry.
pub fn init_from_env() -> Result<(), String> {
    let Ok(spec) = std::env::var("CALM_FAILPOINTS") else {
        return Ok(());
    };
    let points = parse(&spec)?;
    if points.is_empty() {
        return Ok(());
    }
    tracing::warn!(spec = %spec, "CALM_FAILPOINTS is set: injecting I/O failures (tests only)");
    let _ = POINTS.set(points);
    ENABLED.store(true, Ordering::Release);
    Ok(())
}

fn parse(spec: &str) -> Result<HashMap<String, Point>, String> {
    let mut out = HashMap::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bad = || {
            format!(
                "CALM_FAILPOINTS: {item:?} is not NAME=fail@N, fail@N-M, fail@N- or delay(MS)@…"
            )
        };
        let (name, action) = item.split_once('=').ok_or_else(bad)?;
        let action = action.trim();
        let (delay_ms, range) = match action.strip_prefix("fail@") {
            Some(r) => (None, r),
            None => {
                let rest = action.strip_prefix("delay(").ok_or_else(bad)?;
                let (ms, r) = rest.split_once(")@").ok_or_else(bad)?;
                (Some(ms.parse::<u64>().map_err(|_| bad())?), r)
            }
        };
        let (from, to) = match range.split_once('-') {
            None => {
                let n: u64 = range.parse().map_err(|_| bad())?;
                (n, n)
            }
            Some((a, "")) => (a.parse().map_err(|_| bad())?, u64::MAX),
            Some((a, b)) => (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?),
        };
        let p = out.entry(name.trim().to_string()).or_insert_with(|| Point {
            ranges: Vec::new(),
            delay_ms: None,
            hits: AtomicU64::new(0),
        });
        p.ranges.push((from, to));
        p.delay_ms = delay_ms.or(p.delay_ms);
    }
    Ok(out)
}

/// Counts a hit of `name`; an error when this hit is one chosen to fail.
#[inline]
pub fn check(name: &str) -> io::Result<()> {
    if !ENABLED.load(Ordering::Relaxed) {
        return Ok(());
    }
    check_slow(name)
}

/// Counts a hit of the delay point `name`; how long to wait when this hit is one
/// chosen to (`NAME=delay(MS)@…`).
#[inline]
pub fn delay(name: &str) -> Option<std::time::Duration> {
    if !ENABLED.load(Ordering::Relaxed) {
        return None;
    }
    let p = POINTS.get().and_then(|m| m.get(name))?;
    let ms = p.delay_ms?;
    let n = p.hits.fetch_add(1, Ordering::Relaxed) + 1;
    p.ranges
        .iter()
        .any(|&(from, to)| n >= from && n <= to)
        .then(|| std::time::Duration::from_millis(ms))
}

#[cold]
fn check_slow(name: &str) -> io::Result<()> {
    let Some(p) = POINTS
        .get()
        .and_then(|m| m.get(name))
        .filter(|p| p.delay_ms.is_none())
    else {
        return Ok(());
    };
    let n = p.hits.fetch_add(1, Ordering::Relaxed) + 1;
    if p.ranges.iter().any(|&(from, to)| n >= from && n <= to) {
        tracing::warn!(
            failpoint = name,
            hit = n,
            "failpoint: injecting an I/O error"
        );
        Err(io::Error::new(
            io::ErrorKind::StorageFull,
            format!("injected failure at failpoint {name} (hit {n})"),
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_points() {
        let m = parse("wal.write=fail@3, wal.sync=fail@5-6,events.flush=fail@2-,wal.write=fail@9")
            .unwrap();
        assert_eq!(m["wal.write"].ranges, vec![(3, 3), (9, 9)]);
        assert_eq!(m["wal.sync"].ranges, vec![(5, 6)]);
        assert_eq!(m["events.flush"].ranges, vec![(2, u64::MAX)]);
        let d = parse("cluster.apply.delay=delay(1500)@2-").unwrap();
        assert_eq!(d["cluster.apply.delay"].delay_ms, Some(1500));
        assert_eq!(d["cluster.apply.delay"].ranges, vec![(2, u64::MAX)]);
        assert_eq!(m["wal.write"].delay_ms, None);
        assert!(parse("x=delay(abc)@1").is_err());
        assert!(parse("wal.write=boom").is_err());
        assert!(parse("wal.write").is_err());
    }
}
