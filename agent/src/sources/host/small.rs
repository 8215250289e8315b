//! The small node_exporter collectors that read one or two short files each:
//! `entropy`, `conntrack`, `arp`, `udp_queues`, `selinux`, `schedstat`.

use super::{fields, num};
use crate::family::{Family, Kind};
use std::path::Path;

fn read(p: &Path) -> Result<String, String> {
    super::read_file(p).map_err(|e| format!("{}: {e}", p.display()))
}

fn read_num(p: &Path) -> Result<f64, String> {
    let s = read(p)?;
    s.trim()
        .parse::<f64>()
        .map_err(|e| format!("{}: {e}", p.display()))
}

/// `entropy`: `/proc/sys/kernel/random/{entropy_avail,poolsize}`.
pub fn entropy(proc: &Path) -> Result<Vec<Family>, String> {
    let dir = proc.join("sys/kernel/random");
    let avail = read_num(&dir.join("entropy_avail"))?;
    let mut out = vec![Family::single(
        "node_entropy_available_bits",
        "Bits of available entropy.",
        Kind::Gauge,
        avail,
    )];
    if let Ok(pool) = read_num(&dir.join("poolsize")) {
        out.push(Family::single(
            "node_entropy_pool_size_bits",
            "Bits of entropy pool.",
            Kind::Gauge,
            pool,
        ));
    }
    Ok(out)
}

/// The per-CPU lines of `/proc/net/stat/nf_conntrack` summed by column name
/// (hexadecimal values; the first line names the columns).
pub fn parse_conntrack_stat(text: &str) -> Vec<(String, f64)> {
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let mut sums: Vec<(String, f64)> = header
        .split_whitespace()
        .map(|h| (h.to_string(), 0.0))
        .collect();
    for line in lines {
        for (i, v) in line.split_whitespace().enumerate() {
            if let Some(s) = sums.get_mut(i) {
                s.1 += u64::from_str_radix(v, 16).map(|v| v as f64).unwrap_or(0.0);
            }
        }
    }
    sums
}

/// `conntrack`: entry count and limit, and the summed per-CPU statistics.
pub fn conntrack(proc: &Path) -> Result<Vec<Family>, String> {
    let nf = proc.join("sys/net/netfilter");
    let mut out = vec![
        Family::single(
            "node_nf_conntrack_entries",
            "Number of currently allocated flow entries for connection tracking.",
            Kind::Gauge,
            read_num(&nf.join("nf_conntrack_count"))?,
        ),
        Family::single(
            "node_nf_conntrack_entries_limit",
            "Maximum size of connection tracking table.",
            Kind::Gauge,
            read_num(&nf.join("nf_conntrack_max"))?,
        ),
    ];
    let stat = parse_conntrack_stat(&read(&proc.join("net/stat/nf_conntrack"))?);
    for (col, help) in [
        ("found", "Number of searched entries which were successful."),
        ("invalid", "Number of packets seen which can not be tracked."),
        ("ignore", "Number of packets seen which are already connected to a conntrack entry."),
        ("insert", "Number of entries inserted into the list."),
        ("insert_failed", "Number of entries for which list insertion was attempted but failed."),
        ("drop", "Number of packets dropped due to conntrack failure."),
        ("early_drop", "Number of dropped conntrack entries to make room for new ones, if maximum table size was reached."),
        ("search_restart", "Number of conntrack table lookups which had to be restarted due to hashtable resizes."),
    ] {
        if let Some((_, v)) = stat.iter().find(|(n, _)| n == col) {
            out.push(Family::single(
                format!("node_nf_conntrack_stat_{col}"),
                help,
                Kind::Gauge,
                *v,
            ));
        }
    }
    Ok(out)
}

/// `arp`: `/proc/net/arp` entries counted per device.
pub fn parse_arp(text: &str) -> Family {
    let mut counts: std::collections::BTreeMap<&str, f64> = Default::default();
    for line in text.lines().skip(1) {
        if let Some(dev) = fields(line).get(5) {
            *counts.entry(dev).or_default() += 1.0;
        }
    }
    let mut f = Family::new("node_arp_entries", "ARP entries by device", Kind::Gauge);
    for (dev, n) in counts {
        f.push(&[("device", dev)], n);
    }
    f
}

/// `arp`.
pub fn arp(proc: &Path) -> Result<Vec<Family>, String> {
    Ok(vec![parse_arp(&read(&proc.join("net/arp"))?)])
}

/// `(tx, rx)` queue bytes summed over the sockets of `/proc/net/udp{,6}`.
pub fn parse_udp_queues(text: &str) -> (f64, f64) {
    let (mut tx, mut rx) = (0.0, 0.0);
    for line in text.lines().skip(1) {
        let Some(q) = fields(line).get(4).copied() else {
            continue;
        };
        if let Some((t, r)) = q.split_once(':') {
            tx += u64::from_str_radix(t, 16).map(|v| v as f64).unwrap_or(0.0);
            rx += u64::from_str_radix(r, 16).map(|v| v as f64).unwrap_or(0.0);
        }
    }
    (tx, rx)
}

/// `udp_queues`: `node_udp_queues{ip,queue}` (v6 only when the file exists).
pub fn udp_queues(proc: &Path) -> Result<Vec<Family>, String> {
    let mut f = Family::new(
        "node_udp_queues",
        "Number of allocated memory in the kernel for UDP datagrams in bytes.",
        Kind::Gauge,
    );
    let (tx, rx) = parse_udp_queues(&read(&proc.join("net/udp"))?);
    f.push(&[("ip", "v4"), ("queue", "tx")], tx);
    f.push(&[("ip", "v4"), ("queue", "rx")], rx);
    if let Ok(s) = read(&proc.join("net/udp6")) {
        let (tx, rx) = parse_udp_queues(&s);
        f.push(&[("ip", "v6"), ("queue", "tx")], tx);
        f.push(&[("ip", "v6"), ("queue", "rx")], rx);
    }
    Ok(vec![f])
}

/// `selinux`: `node_selinux_enabled`, and when enabled the configured and current
/// modes (1 enforcing, 0 permissive, -1 disabled).
pub fn selinux(sys: &Path, root: &Path) -> Result<Vec<Family>, String> {
    let enforce = super::read_file(sys.join("fs/selinux/enforce")).ok();
    let Some(enforce) = enforce else {
        return Ok(vec![Family::single(
            "node_selinux_enabled",
            "SELinux is enabled, 1 is true, 0 is false",
            Kind::Gauge,
            0.0,
        )]);
    };
    let config = super::read_file(root.join("etc/selinux/config")).unwrap_or_default();
    let mode = super::os::parse_env(&config)
        .get("SELINUX")
        .map(|m| match m.as_str() {
            "enforcing" => 1.0,
            "permissive" => 0.0,
            _ => -1.0,
        })
        .unwrap_or(-1.0);
    Ok(vec![
        Family::single(
            "node_selinux_enabled",
            "SELinux is enabled, 1 is true, 0 is false",
            Kind::Gauge,
            1.0,
        ),
        Family::single(
            "node_selinux_config_mode",
            "Configured SELinux enforcement mode",
            Kind::Gauge,
            mode,
        ),
        Family::single(
            "node_selinux_current_mode",
            "Current SELinux enforcement mode",
            Kind::Gauge,
            num(enforce.trim()),
        ),
    ])
}

/// `schedstat`: `/proc/schedstat`'s per-CPU running and waiting time (ns) and
/// timeslices.
///
/// ```text
/// cpu0 0 0 0 0 0 0 2504433066 1283466 4052   → running 2.504433066 s, waiting 0.001283466 s, 4052 slices
/// ```
pub fn parse_schedstat(text: &str) -> Vec<Family> {
    let mut run = Family::new(
        "node_schedstat_running_seconds_total",
        "Number of seconds CPU spent running a process.",
        Kind::Counter,
    );
    let mut wait = Family::new(
        "node_schedstat_waiting_seconds_total",
        "Number of seconds spent by processing waiting for this CPU.",
        Kind::Counter,
    );
    let mut slices = Family::new(
        "node_schedstat_timeslices_total",
        "Number of timeslices executed by CPU.",
        Kind::Counter,
    );
    for line in text.lines() {
        let f = fields(line);
        let Some(cpu) = f.first().and_then(|c| c.strip_prefix("cpu")) else {
            continue;
        };
        if f.len() < 10 {
            continue;
        }
        run.push(&[("cpu", cpu)], num(f[7]) / 1e9);
        wait.push(&[("cpu", cpu)], num(f[8]) / 1e9);
        slices.push(&[("cpu", cpu)], num(f[9]));
    }
    vec![run, wait, slices]
}

/// `schedstat` (the file exists only with CONFIG_SCHEDSTATS).
pub fn schedstat(proc: &Path) -> Result<Vec<Family>, String> {
    Ok(parse_schedstat(&read(&proc.join("schedstat"))?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_files() {
        let s =
            parse_conntrack_stat("entries found drop\n00000001 0000000a 1\n00000001 00000001 0\n");
        assert_eq!(s[1], ("found".into(), 11.0));
        let a = parse_arp("IP address HW type Flags HW address Mask Device\n1.2.3.4 0x1 0x2 aa * eth0\n1.2.3.5 0x1 0x2 ab * eth0\n");
        assert_eq!(
            a.samples,
            vec![(vec![("device".into(), "eth0".into())], 2.0)]
        );
        let q = parse_udp_queues(
            "  sl  local rem st tx_queue:rx_queue\n 1: 0:0 0:0 07 00000010:00000200 00:0\n",
        );
        assert_eq!(q, (16.0, 512.0));
        let f =
            parse_schedstat("version 15\ncpu0 0 0 0 0 0 0 2504433066 1283466 4052\ndomain0 3 1\n");
        assert_eq!(f[0].samples[0].1, 2.504433066);
        assert_eq!(f[2].samples[0].1, 4052.0);
    }
}
