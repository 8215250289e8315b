//! `/proc/sys/fs/file-nr` → `node_filefd_allocated`, `node_filefd_maximum`.
//!
//! ```text
//! 1024    0    9223372036854775807
//! ```

use super::{fields, num};
use crate::family::{Family, Kind};

/// The two gauges.
pub fn parse(text: &str) -> Vec<Family> {
    let f = fields(text);
    let mut out = Vec::new();
    if let Some(a) = f.first() {
        out.push(Family::single(
            "node_filefd_allocated",
            "File descriptor statistics: allocated.",
            Kind::Gauge,
            num(a),
        ));
    }
    if let Some(m) = f.get(2) {
        out.push(Family::single(
            "node_filefd_maximum",
            "File descriptor statistics: maximum.",
            Kind::Gauge,
            num(m),
        ));
    }
    out
}
