//! The host source: CPU, memory, load, disks, filesystems, network, file descriptors,
//! pressure and boot time, read from `/proc` and `/sys` under node_exporter's names,
//! labels, units and types, so node_exporter dashboards work unchanged.
//!
//! One file per node_exporter collector. Each has a `parse_*` function over the file's
//! text (unit-tested on captured text) and reads the real file in [`collect`]. The
//! files are parsed by hand rather than through the procfs crate's typed structs
//! because node_exporter exports every field a file has (e.g. all of /proc/meminfo),
//! including ones a typed struct does not know.

pub mod cpu;
pub mod diskstats;
pub mod filefd;
pub mod filesystem;
pub mod loadavg;
pub mod meminfo;
pub mod netdev;
pub mod pressure;

use crate::family::{Family, Kind};
use std::path::{Path, PathBuf};

/// Where `/proc` is (overridable for tests, as node_exporter's `--path.procfs`).
#[derive(Debug, Clone)]
pub struct HostPaths {
    pub proc: PathBuf,
}

impl Default for HostPaths {
    fn default() -> Self {
        HostPaths {
            proc: PathBuf::from("/proc"),
        }
    }
}

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

/// Reads every collector; a collector whose file is missing is skipped and counted in
/// `node_scrape_collector_success`, as node_exporter does.
pub fn collect(paths: &HostPaths) -> Vec<Family> {
    let mut out = Vec::new();
    let mut success = Family::new(
        "node_scrape_collector_success",
        "node_exporter: Whether a collector succeeded.",
        Kind::Gauge,
    );
    let mut note =
        |name: &str, ok: bool| success.push(&[("collector", name)], if ok { 1.0 } else { 0.0 });

    let stat = read(&paths.proc.join("stat"));
    note("cpu", stat.is_some());
    note("stat", stat.is_some());
    if let Some(s) = &stat {
        out.extend(cpu::parse_cpu(s));
        out.extend(cpu::parse_stat(s));
    }
    let mem = read(&paths.proc.join("meminfo"));
    note("meminfo", mem.is_some());
    if let Some(s) = &mem {
        out.extend(meminfo::parse(s));
    }
    let load = read(&paths.proc.join("loadavg"));
    note("loadavg", load.is_some());
    if let Some(s) = &load {
        out.extend(loadavg::parse(s));
    }
    let net = read(&paths.proc.join("net/dev"));
    note("netdev", net.is_some());
    if let Some(s) = &net {
        out.extend(netdev::parse(s));
    }
    let disk = read(&paths.proc.join("diskstats"));
    note("diskstats", disk.is_some());
    if let Some(s) = &disk {
        out.extend(diskstats::parse(s));
    }
    let mounts = read(&paths.proc.join("1/mounts")).or_else(|| read(&paths.proc.join("mounts")));
    note("filesystem", mounts.is_some());
    if let Some(s) = &mounts {
        out.extend(filesystem::collect(s));
    }
    let fd = read(&paths.proc.join("sys/fs/file-nr"));
    note("filefd", fd.is_some());
    if let Some(s) = &fd {
        out.extend(filefd::parse(s));
    }
    let mut psi = Vec::new();
    for res in ["cpu", "io", "memory"] {
        if let Some(s) = read(&paths.proc.join("pressure").join(res)) {
            psi.extend(pressure::parse(res, &s));
        }
    }
    note("pressure", !psi.is_empty());
    out.extend(psi);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    note("time", true);
    out.push(Family::single(
        "node_time_seconds",
        "System time in seconds since epoch (1970).",
        Kind::Gauge,
        now,
    ));
    out.push(success);
    out
}

/// Splits a line into whitespace-separated fields.
pub(crate) fn fields(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// Parses a number, 0 when it is not one (the kernel's files are well-formed; a
/// missing value must not stop the other families).
pub(crate) fn num(s: &str) -> f64 {
    s.parse::<f64>().unwrap_or(0.0)
}
