//! `/sys/class/net/<device>/*` → node_exporter 1.5's `netclass` collector: one gauge
//! (or counter) per attribute the kernel lets us read, `node_network_up` from
//! `operstate`, and `node_network_info` with the address, broadcast, duplex, ifalias
//! and operstate labels. Attributes whose read fails (EINVAL for `speed` on a link that
//! is down, say) are left out, as node_exporter does.

use crate::family::{Family, Kind};
use std::path::Path;

/// (attribute file, family suffix, kind, scale)
const ATTRS: [(&str, &str, Kind, f64); 16] = [
    ("addr_assign_type", "address_assign_type", Kind::Gauge, 1.0),
    ("carrier", "carrier", Kind::Gauge, 1.0),
    (
        "carrier_changes",
        "carrier_changes_total",
        Kind::Counter,
        1.0,
    ),
    (
        "carrier_up_count",
        "carrier_up_changes_total",
        Kind::Counter,
        1.0,
    ),
    (
        "carrier_down_count",
        "carrier_down_changes_total",
        Kind::Counter,
        1.0,
    ),
    ("dev_id", "device_id", Kind::Gauge, 1.0),
    ("dormant", "dormant", Kind::Gauge, 1.0),
    ("flags", "flags", Kind::Gauge, 1.0),
    ("ifindex", "iface_id", Kind::Gauge, 1.0),
    ("iflink", "iface_link", Kind::Gauge, 1.0),
    ("link_mode", "iface_link_mode", Kind::Gauge, 1.0),
    ("mtu", "mtu_bytes", Kind::Gauge, 1.0),
    ("name_assign_type", "name_assign_type", Kind::Gauge, 1.0),
    ("netdev_group", "net_dev_group", Kind::Gauge, 1.0),
    // Mbit/s → bytes/s.
    ("speed", "speed_bytes", Kind::Gauge, 125_000.0),
    ("tx_queue_len", "transmit_queue_length", Kind::Gauge, 1.0),
];

/// An integer as Go's `strconv.ParseInt(s, 0, 64)` reads sysfs values (`0x1003`).
fn int(s: &str) -> Option<f64> {
    let s = s.trim();
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let v = match body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        Some(h) => i64::from_str_radix(h, 16).ok()?,
        None => body.parse::<i64>().ok()?,
    };
    Some(if neg { -(v as f64) } else { v as f64 })
}

fn attr(dir: &Path, name: &str) -> Option<String> {
    super::read_file(dir.join(name))
        .ok()
        .map(|s| s.trim_end_matches('\n').to_string())
}

/// The collector.
pub fn collect(sys: &Path) -> Result<Vec<Family>, String> {
    let base = sys.join("class/net");
    let mut devs: Vec<String> = std::fs::read_dir(&base)
        .map_err(|e| format!("{}: {e}", base.display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    devs.sort();
    let mut up = Family::new(
        "node_network_up",
        "Value is 1 if operstate is 'up', 0 otherwise.",
        Kind::Gauge,
    );
    let mut info = Family::new(
        "node_network_info",
        "Non-numeric data from /sys/class/net/<iface>, value is always 1.",
        Kind::Gauge,
    );
    let mut fams: Vec<Family> = ATTRS
        .iter()
        .map(|(_, suffix, kind, _)| {
            Family::new(
                format!("node_network_{suffix}"),
                format!("Network device property: {suffix}"),
                *kind,
            )
        })
        .collect();
    let mut protocol = Family::new(
        "node_network_protocol_type",
        "Network device property: protocol_type",
        Kind::Gauge,
    );
    for dev in &devs {
        let dir = base.join(dev);
        let operstate = attr(&dir, "operstate").unwrap_or_default();
        up.push(
            &[("device", dev)],
            if operstate == "up" { 1.0 } else { 0.0 },
        );
        info.push(
            &[
                ("address", &attr(&dir, "address").unwrap_or_default()),
                ("broadcast", &attr(&dir, "broadcast").unwrap_or_default()),
                ("device", dev),
                ("duplex", &attr(&dir, "duplex").unwrap_or_default()),
                ("ifalias", &attr(&dir, "ifalias").unwrap_or_default()),
                ("operstate", &operstate),
            ],
            1.0,
        );
        for (i, (file, _, _, scale)) in ATTRS.iter().enumerate() {
            if let Some(v) = attr(&dir, file).as_deref().and_then(int) {
                fams[i].push(&[("device", dev)], v * scale);
            }
        }
        if let Some(v) = attr(&dir, "type").as_deref().and_then(int) {
            protocol.push(&[("device", dev)], v);
        }
    }
    let mut out = vec![up, info];
    out.extend(fams);
    out.push(protocol);
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ints_as_go_reads_them() {
        assert_eq!(super::int("0x1003\n"), Some(4099.0));
        assert_eq!(super::int("-1"), Some(-1.0));
        assert_eq!(super::int(""), None);
    }
}
