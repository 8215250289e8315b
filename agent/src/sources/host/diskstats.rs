//! `/proc/diskstats` → node_exporter's `diskstats` collector.
//!
//! ```text
//!  8 0 sda 1000 10 20000 500 2000 20 40000 900 0 1200 1400 [discards: 4 fields] [flush: 2 fields]
//!        reads merged sectors ms writes merged sectors ms in_flight io_ms weighted_ms
//! ```
//! Sectors are 512 bytes, times in ms. Partitions and virtual devices are left out
//! with node_exporter's default exclude.

use super::{fields, num};
use crate::family::{Family, Kind};
use std::sync::OnceLock;

/// node_exporter 1.5's `--collector.diskstats.device-exclude` default.
const DEVICE_EXCLUDE: &str = r"^(ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$";

fn excluded(dev: &str) -> bool {
    static RE: OnceLock<Option<regex::Regex>> = OnceLock::new();
    RE.get_or_init(|| regex::Regex::new(DEVICE_EXCLUDE).ok())
        .as_ref()
        .is_some_and(|re| re.is_match(dev))
}

/// (field index after the device name, name, help, kind, scale)
const FIELDS: [(usize, &str, &str, Kind, f64); 17] = [
    (
        0,
        "node_disk_reads_completed_total",
        "The total number of reads completed successfully.",
        Kind::Counter,
        1.0,
    ),
    (
        1,
        "node_disk_reads_merged_total",
        "The total number of reads merged.",
        Kind::Counter,
        1.0,
    ),
    (
        2,
        "node_disk_read_bytes_total",
        "The total number of bytes read successfully.",
        Kind::Counter,
        512.0,
    ),
    (
        3,
        "node_disk_read_time_seconds_total",
        "The total number of seconds spent by all reads.",
        Kind::Counter,
        0.001,
    ),
    (
        4,
        "node_disk_writes_completed_total",
        "The total number of writes completed successfully.",
        Kind::Counter,
        1.0,
    ),
    (
        5,
        "node_disk_writes_merged_total",
        "The number of writes merged.",
        Kind::Counter,
        1.0,
    ),
    (
        6,
        "node_disk_written_bytes_total",
        "The total number of bytes written successfully.",
        Kind::Counter,
        512.0,
    ),
    (
        7,
        "node_disk_write_time_seconds_total",
        "This is the total number of seconds spent by all writes.",
        Kind::Counter,
        0.001,
    ),
    (
        8,
        "node_disk_io_now",
        "The number of I/Os currently in progress.",
        Kind::Gauge,
        1.0,
    ),
    (
        9,
        "node_disk_io_time_seconds_total",
        "Total seconds spent doing I/Os.",
        Kind::Counter,
        0.001,
    ),
    (
        10,
        "node_disk_io_time_weighted_seconds_total",
        "The weighted # of seconds spent doing I/Os.",
        Kind::Counter,
        0.001,
    ),
    (
        11,
        "node_disk_discards_completed_total",
        "The total number of discards completed successfully.",
        Kind::Counter,
        1.0,
    ),
    (
        12,
        "node_disk_discards_merged_total",
        "The total number of discards merged.",
        Kind::Counter,
        1.0,
    ),
    (
        13,
        "node_disk_discarded_sectors_total",
        "The total number of sectors discarded successfully.",
        Kind::Counter,
        1.0,
    ),
    (
        14,
        "node_disk_discard_time_seconds_total",
        "This is the total number of seconds spent by all discards.",
        Kind::Counter,
        0.001,
    ),
    (
        15,
        "node_disk_flush_requests_total",
        "The total number of flush requests completed successfully",
        Kind::Counter,
        1.0,
    ),
    (
        16,
        "node_disk_flush_requests_time_seconds_total",
        "This is the total number of seconds spent by all flush requests.",
        Kind::Counter,
        0.001,
    ),
];

/// udev's properties of a block device (`/run/udev/data/b<major>:<minor>`,
/// `E:KEY=value` lines) in `node_disk_info`'s label names.
fn udev_info(
    udev: Option<&std::path::Path>,
    major: &str,
    minor: &str,
) -> [(&'static str, String); 5] {
    let mut out = [
        ("model", String::new()),
        ("path", String::new()),
        ("revision", String::new()),
        ("serial", String::new()),
        ("wwn", String::new()),
    ];
    let Some(text) = udev.and_then(|d| super::read_file(d.join(format!("b{major}:{minor}"))).ok())
    else {
        return out;
    };
    for line in text.lines() {
        let Some((k, v)) = line.strip_prefix("E:").and_then(|kv| kv.split_once('=')) else {
            continue;
        };
        let slot = match k {
            "ID_MODEL" => 0,
            "ID_PATH" => 1,
            "ID_REVISION" => 2,
            "ID_SERIAL_SHORT" => 3,
            "ID_WWN" => 4,
            _ => continue,
        };
        out[slot].1 = v.to_string();
    }
    out
}

/// One family per field, one sample per device.
#[cfg(test)]
pub fn parse(text: &str) -> Vec<Family> {
    parse_with_udev(text, None)
}

/// `parse`, plus `node_disk_info` with udev's properties read from `udev`
/// (`/run/udev/data`; empty labels when it is missing, as node_exporter).
pub fn parse_with_udev(text: &str, udev: Option<&std::path::Path>) -> Vec<Family> {
    let mut info = Family::new(
        "node_disk_info",
        "Info of /sys/block/<block_device>.",
        Kind::Gauge,
    );
    let mut fams: Vec<Family> = FIELDS
        .iter()
        .map(|(_, n, h, k, _)| Family::new(*n, *h, *k))
        .collect();
    for line in text.lines() {
        let f = fields(line);
        let Some(dev) = f.get(2) else { continue };
        if excluded(dev) {
            continue;
        }
        let (major, minor) = (f[0], f[1]);
        let u = udev_info(udev, major, minor);
        let mut labels: Vec<(&str, &str)> =
            vec![("device", dev), ("major", major), ("minor", minor)];
        labels.extend(u.iter().map(|(k, v)| (*k, v.as_str())));
        info.push(&labels, 1.0);
        let vals = &f[3..];
        for (fam, (i, _, _, _, scale)) in fams.iter_mut().zip(FIELDS.iter()) {
            if let Some(v) = vals.get(*i) {
                fam.push(&[("device", dev)], num(v) * scale);
            }
        }
    }
    fams.push(info);
    fams
}

#[cfg(test)]
mod tests {
    #[test]
    fn devices_partitions_and_units() {
        let text = "   8       0 sda 1000 10 20000 500 2000 20 40000 900 0 1200 1400 0 0 0 0 7 8\n   8       1 sda1 1 1 1 1 1 1 1 1 1 1 1\n 7 0 loop0 1 1 1 1 1 1 1 1 1 1 1\n";
        let f = super::parse(text);
        assert_eq!(f[0].samples.len(), 1);
        assert_eq!(f[2].samples[0].1, 20000.0 * 512.0);
        assert_eq!(f[3].samples[0].1, 0.5);
        assert_eq!(f[15].samples[0].1, 7.0);
    }
}
