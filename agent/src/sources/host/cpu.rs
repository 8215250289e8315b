//! `/proc/stat` → node_exporter's `cpu` and `stat` collectors.
//!
//! ```text
//! cpu0 4705 356 584 3699176 23060 0 277 0 0 0     user nice system idle iowait irq softirq steal guest guest_nice (USER_HZ)
//! ctxt 1990473 · btime 1062191376 · processes 2915 · procs_running 1 · procs_blocked 0 · intr 114930548 …
//! ```

use super::{fields, num};
use crate::family::{Family, Kind};

/// Clock ticks per second of `/proc/stat` (USER_HZ is 100 on every Linux ABI).
const USER_HZ: f64 = 100.0;

/// `node_cpu_seconds_total{cpu,mode}` and `node_cpu_guest_seconds_total{cpu,mode}`.
pub fn parse_cpu(text: &str) -> Vec<Family> {
    let mut secs = Family::new(
        "node_cpu_seconds_total",
        "Seconds the CPUs spent in each mode.",
        Kind::Counter,
    );
    let mut guest = Family::new(
        "node_cpu_guest_seconds_total",
        "Seconds the CPUs spent in guests (VMs) for each mode.",
        Kind::Counter,
    );
    const MODES: [&str; 8] = [
        "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
    ];
    for line in text.lines() {
        let f = fields(line);
        let Some(cpu) = f.first().and_then(|c| c.strip_prefix("cpu")) else {
            continue;
        };
        if cpu.is_empty() {
            continue; // the "cpu" total line
        }
        for (i, mode) in MODES.iter().enumerate() {
            if let Some(v) = f.get(i + 1) {
                secs.push(&[("cpu", cpu), ("mode", mode)], num(v) / USER_HZ);
            }
        }
        if let (Some(g), Some(gn)) = (f.get(9), f.get(10)) {
            guest.push(&[("cpu", cpu), ("mode", "user")], num(g) / USER_HZ);
            guest.push(&[("cpu", cpu), ("mode", "nice")], num(gn) / USER_HZ);
        }
    }
    vec![secs, guest]
}

/// The `stat` collector: boot time, context switches, forks, interrupts, processes.
pub fn parse_stat(text: &str) -> Vec<Family> {
    let mut out = Vec::new();
    for line in text.lines() {
        let f = fields(line);
        let (Some(key), Some(v)) = (f.first(), f.get(1)) else {
            continue;
        };
        let v = num(v);
        let fam = match *key {
            "btime" => Family::single(
                "node_boot_time_seconds",
                "Node boot time, in unixtime.",
                Kind::Gauge,
                v,
            ),
            "ctxt" => Family::single(
                "node_context_switches_total",
                "Total number of context switches.",
                Kind::Counter,
                v,
            ),
            "processes" => Family::single(
                "node_forks_total",
                "Total number of forks.",
                Kind::Counter,
                v,
            ),
            "intr" => Family::single(
                "node_intr_total",
                "Total number of interrupts serviced.",
                Kind::Counter,
                v,
            ),
            "procs_running" => Family::single(
                "node_procs_running",
                "Number of processes in runnable state.",
                Kind::Gauge,
                v,
            ),
            "procs_blocked" => Family::single(
                "node_procs_blocked",
                "Number of processes blocked waiting for I/O to complete.",
                Kind::Gauge,
                v,
            ),
            _ => continue,
        };
        out.push(fam);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  100 0 50 1000 5 0 1 0 0 0\ncpu0 4705 356 584 3699176 23060 0 277 0 10 20\nintr 114930548 0\nctxt 1990473\nbtime 1062191376\nprocesses 2915\nprocs_running 1\nprocs_blocked 0\n";

    #[test]
    fn cpu_seconds_per_mode() {
        let f = parse_cpu(STAT);
        assert_eq!(f[0].samples.len(), 8);
        assert_eq!(
            f[0].samples[0].0,
            vec![("cpu".into(), "0".into()), ("mode".into(), "user".into())]
        );
        assert_eq!(f[0].samples[0].1, 47.05);
        assert_eq!(f[1].samples[1].1, 0.2);
        let s = parse_stat(STAT);
        let names: Vec<_> = s.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "node_intr_total",
                "node_context_switches_total",
                "node_boot_time_seconds",
                "node_forks_total",
                "node_procs_running",
                "node_procs_blocked"
            ]
        );
    }
}
