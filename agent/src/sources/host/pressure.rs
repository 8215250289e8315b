//! `/proc/pressure/{cpu,io,memory}` (PSI) → node_exporter's `pressure` collector.
//!
//! ```text
//! some avg10=0.00 avg60=0.00 avg300=0.00 total=12345      (µs)
//! full avg10=0.00 avg60=0.00 avg300=0.00 total=678
//! ```
//! `some` → `node_pressure_<res>_waiting_seconds_total`, `full` →
//! `node_pressure_<res>_stalled_seconds_total` (not for cpu, as node_exporter 1.5).

use super::num;
use crate::family::{Family, Kind};

/// The families of one resource.
pub fn parse(resource: &str, text: &str) -> Vec<Family> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let kind = parts.next();
        let total = parts.find_map(|p| p.strip_prefix("total=")).map(num);
        let Some(total) = total else { continue };
        let (suffix, what) = match kind {
            Some("some") => ("waiting", "waiting"),
            Some("full") if resource != "cpu" => ("stalled", "stalled"),
            _ => continue,
        };
        out.push(Family::single(
            format!("node_pressure_{resource}_{suffix}_seconds_total"),
            format!("Total time in seconds that processes have {what} for {resource}"),
            Kind::Counter,
            total / 1e6,
        ));
    }
    out
}
