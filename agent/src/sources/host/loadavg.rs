//! `/proc/loadavg` → `node_load1`, `node_load5`, `node_load15`.
//!
//! ```text
//! 0.21 0.35 0.40 1/234 5678
//! ```

use super::{fields, num};
use crate::family::{Family, Kind};

/// The three load gauges.
pub fn parse(text: &str) -> Vec<Family> {
    let f = fields(text);
    let mut out = Vec::new();
    for (i, (name, help)) in [
        ("node_load1", "1m load average."),
        ("node_load5", "5m load average."),
        ("node_load15", "15m load average."),
    ]
    .iter()
    .enumerate()
    {
        if let Some(v) = f.get(i) {
            out.push(Family::single(*name, *help, Kind::Gauge, num(v)));
        }
    }
    out
}
