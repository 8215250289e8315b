//! `/sys/class/net/<device>/*` → node_exporter 1.5's `netclass` collector: one gauge
//! (or counter) per attribute the kernel lets us read, `node_network_up` from
//! `operstate`, and `node_network_info` with the address, broadcast, duplex, ifalias
//! and operstate labels. Attributes whose read fails (EINVAL for `speed` on a link that
//! is down, say) are left out, as node_exporter does.

use crate::family::{Family, Kind};
use std::path::{Path, PathBuf};

/// An [`ATTRS`] entry: attribute file, then the family name and help made from its
/// suffix (at compile time), kind, scale.
macro_rules! attr_entry {
    ($file:literal, $suffix:literal, $kind:ident, $scale:expr) => {
        (
            $file,
            concat!("node_network_", $suffix),
            concat!("Network device property: ", $suffix),
            Kind::$kind,
            $scale,
        )
    };
}

/// (attribute file, family name, help, kind, scale)
#[rustfmt::skip]
const ATTRS: [(&str, &str, &str, Kind, f64); 16] = [
    attr_entry!("addr_assign_type", "address_assign_type", Gauge, 1.0),
    attr_entry!("carrier", "carrier", Gauge, 1.0),
    attr_entry!("carrier_changes", "carrier_changes_total", Counter, 1.0),
    attr_entry!("carrier_up_count", "carrier_up_changes_total", Counter, 1.0),
    attr_entry!("carrier_down_count", "carrier_down_changes_total", Counter, 1.0),
    attr_entry!("dev_id", "device_id", Gauge, 1.0),
    attr_entry!("dormant", "dormant", Gauge, 1.0),
    attr_entry!("flags", "flags", Gauge, 1.0),
    attr_entry!("ifindex", "iface_id", Gauge, 1.0),
    attr_entry!("iflink", "iface_link", Gauge, 1.0),
    attr_entry!("link_mode", "iface_link_mode", Gauge, 1.0),
    attr_entry!("mtu", "mtu_bytes", Gauge, 1.0),
    attr_entry!("name_assign_type", "name_assign_type", Gauge, 1.0),
    attr_entry!("netdev_group", "net_dev_group", Gauge, 1.0),
    // Mbit/s → bytes/s.
    attr_entry!("speed", "speed_bytes", Gauge, 125_000.0),
    attr_entry!("tx_queue_len", "transmit_queue_length", Gauge, 1.0),
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

/// A device's attribute files, read through one path and one buffer.
struct Attrs {
    path: PathBuf,
    buf: Vec<u8>,
}

impl Attrs {
    /// Attribute `name` of the device whose directory `path` is, without its newline.
    fn get(&mut self, name: &str) -> Option<&str> {
        self.path.push(name);
        let r = super::read_into(&self.path, &mut self.buf);
        self.path.pop();
        r.map(|s| s.trim_end_matches('\n'))
    }

    fn owned(&mut self, name: &str) -> String {
        self.get(name).unwrap_or_default().to_string()
    }
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
        .map(|(_, name, help, kind, _)| Family::new(*name, *help, *kind))
        .collect();
    let mut protocol = Family::new(
        "node_network_protocol_type",
        "Network device property: protocol_type",
        Kind::Gauge,
    );
    let mut a = Attrs {
        path: base.clone(),
        buf: Vec::with_capacity(4096),
    };
    for dev in &devs {
        // A name from read_dir: one component, so pop() below takes it off again.
        a.path.push(dev);
        let operstate = a.owned("operstate");
        up.push(
            &[("device", dev)],
            if operstate == "up" { 1.0 } else { 0.0 },
        );
        info.push(
            &[
                ("address", &a.owned("address")),
                ("broadcast", &a.owned("broadcast")),
                ("device", dev),
                ("duplex", &a.owned("duplex")),
                ("ifalias", &a.owned("ifalias")),
                ("operstate", &operstate),
            ],
            1.0,
        );
        for (i, (file, _, _, _, scale)) in ATTRS.iter().enumerate() {
            if let Some(v) = a.get(file).and_then(int) {
                fams[i].push(&[("device", dev)], v * scale);
            }
        }
        if let Some(v) = a.get("type").and_then(int) {
            protocol.push(&[("device", dev)], v);
        }
        a.path.pop();
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
