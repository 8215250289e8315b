//! `/proc/net/softnet_stat` → node_exporter 1.5's `softnet` collector: one line per
//! CPU, hexadecimal columns processed, dropped, time_squeezed.
//!
//! ```text
//! 00000013 00000000 00000000 00000000 …   → node_softnet_processed_total{cpu="0"} 19
//! ```

use crate::family::{Family, Kind};

fn hex(s: &str) -> f64 {
    u64::from_str_radix(s, 16).map(|v| v as f64).unwrap_or(0.0)
}

/// The three counter families.
pub fn parse(text: &str) -> Vec<Family> {
    let mut processed = Family::new(
        "node_softnet_processed_total",
        "Number of processed packets",
        Kind::Counter,
    );
    let mut dropped = Family::new(
        "node_softnet_dropped_total",
        "Number of dropped packets",
        Kind::Counter,
    );
    let mut squeezed = Family::new(
        "node_softnet_times_squeezed_total",
        "Number of times processing packets ran out of quota",
        Kind::Counter,
    );
    for (cpu, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 {
            continue;
        }
        let cpu = cpu.to_string();
        processed.push(&[("cpu", &cpu)], hex(f[0]));
        dropped.push(&[("cpu", &cpu)], hex(f[1]));
        squeezed.push(&[("cpu", &cpu)], hex(f[2]));
    }
    vec![processed, dropped, squeezed]
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_columns() {
        let f = super::parse("00000013 00000001 00000002 0\n0000ff00 0 0 0\n");
        assert_eq!(f[0].samples[1], (vec![("cpu".into(), "1".into())], 65280.0));
        assert_eq!(f[2].samples[0].1, 2.0);
    }
}
