//! `/proc/net/dev` → node_exporter's `netdev` collector.
//!
//! ```text
//! Inter-|   Receive                                                |  Transmit
//!  face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier compressed
//!   eth0: 1234 12 0 0 0 0 0 0 5678 34 0 0 0 0 0 0
//! ```
//! → `node_network_receive_bytes_total{device="eth0"}` … `node_network_transmit_compressed_total`.
//! The loopback device is left out, as node_exporter's default `--collector.netdev.device-exclude=^lo$`.

use super::{fields, num};
use crate::family::{Family, Kind};

const RX: [&str; 8] = [
    "bytes",
    "packets",
    "errs",
    "drop",
    "fifo",
    "frame",
    "compressed",
    "multicast",
];
const TX: [&str; 8] = [
    "bytes",
    "packets",
    "errs",
    "drop",
    "fifo",
    "colls",
    "carrier",
    "compressed",
];

/// Sixteen counter families, one sample per device.
pub fn parse(text: &str) -> Vec<Family> {
    let mut fams: Vec<Family> = RX
        .iter()
        .map(|k| {
            Family::new(
                format!("node_network_receive_{k}_total"),
                format!("Network device statistic receive_{k}."),
                Kind::Counter,
            )
        })
        .chain(TX.iter().map(|k| {
            Family::new(
                format!("node_network_transmit_{k}_total"),
                format!("Network device statistic transmit_{k}."),
                Kind::Counter,
            )
        }))
        .collect();
    for line in text.lines().skip(2) {
        let Some((dev, rest)) = line.split_once(':') else {
            continue;
        };
        let dev = dev.trim();
        if dev == "lo" {
            continue;
        }
        let v = fields(rest);
        for (i, fam) in fams.iter_mut().enumerate() {
            if let Some(x) = v.get(i) {
                fam.push(&[("device", dev)], num(x));
            }
        }
    }
    fams
}

/// `node_network_receive_nohandler_total`: node_exporter 1.5 reads netdev through
/// netlink, whose stats have `rx_nohandler` (not in /proc/net/dev); sysfs has the same
/// counter per device.
pub fn nohandler(sys: &std::path::Path, devices: &Family) -> Family {
    let mut f = Family::new(
        "node_network_receive_nohandler_total",
        "Network device statistic receive_nohandler.",
        Kind::Counter,
    );
    for (labels, _) in &devices.samples {
        let Some((_, dev)) = labels.first() else {
            continue;
        };
        let p = sys
            .join("class/net")
            .join(dev)
            .join("statistics/rx_nohandler");
        if let Ok(s) = super::read_file(p) {
            f.push(&[("device", dev)], num(s.trim()));
        }
    }
    f
}

#[cfg(test)]
mod tests {
    #[test]
    fn devices_and_fields() {
        let text = "h1\nh2\n    lo: 10 1 0 0 0 0 0 0 10 1 0 0 0 0 0 0\n  eth0: 1234 12 0 0 0 0 0 3 5678 34 0 0 0 0 0 0\n";
        let f = super::parse(text);
        assert_eq!(f[0].name, "node_network_receive_bytes_total");
        assert_eq!(f[0].samples.len(), 1, "lo is left out");
        assert_eq!(
            f[0].samples[0],
            (vec![("device".to_string(), "eth0".to_string())], 1234.0)
        );
        assert_eq!(f[7].samples[0].1, 3.0);
        assert_eq!(f[8].name, "node_network_transmit_bytes_total");
        assert_eq!(f[8].samples[0].1, 5678.0);
    }
}
