//! The host source: node_exporter 1.5's default Linux collectors (CPU, memory, load,
//! disks, filesystems, network devices and protocols, sockets, time, uname, os, …) and
//! its textfile collector, read from `/proc`, `/sys` and a few syscalls under
//! node_exporter's names, labels, units and types, so node_exporter dashboards work
//! unchanged.
//!
//! One file per node_exporter collector. Each has a `parse_*` function over the file's
//! text (unit-tested on captured text) and reads the real file in [`collect`]. The
//! files are parsed by hand rather than through the procfs crate's typed structs
//! because node_exporter exports every field a file has (e.g. all of /proc/meminfo),
//! including ones a typed struct does not know.
//!
//! [`source`] is the source behind [`crate::sources::Source`]: `/metrics`, the read
//! shipped every interval, and the stale markers on a clean shutdown.

pub mod cpu;
pub mod diskstats;
pub mod filefd;
pub mod filesystem;
pub mod loadavg;
pub mod meminfo;
pub mod netclass;
pub mod netdev;
pub mod netstat;
pub mod os;
pub mod pressure;
pub mod small;
pub mod sockstat;
pub mod softnet;
pub mod source;
pub mod textfile;
pub mod time;
pub mod timex;
pub mod uname;
pub mod vmstat;

use crate::family::{Family, Kind, Str};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub use source::{hostname, Host};

/// Where the host's files are (overridable for tests, as node_exporter's
/// `--path.procfs`, `--path.sysfs`, `--path.rootfs`, `--path.udev.data`), the
/// textfile directory, and which collectors run.
#[derive(Debug, Clone)]
pub struct HostPaths {
    pub proc: PathBuf,
    pub sys: PathBuf,
    pub root: PathBuf,
    pub udev: PathBuf,
    /// `--textfile-dir`: the textfile collector's `*.prom` files.
    pub textfile_dir: Option<PathBuf>,
    /// Names of the collectors that run, in [`COLLECTORS`] order.
    pub enabled: Vec<&'static str>,
}

impl Default for HostPaths {
    fn default() -> Self {
        HostPaths {
            proc: PathBuf::from("/proc"),
            sys: PathBuf::from("/sys"),
            root: PathBuf::from("/"),
            udev: PathBuf::from("/run/udev/data"),
            textfile_dir: None,
            enabled: COLLECTORS
                .iter()
                .filter(|c| c.default_on)
                .map(|c| c.name)
                .collect(),
        }
    }
}

/// One node_exporter collector: its name (as in `node_scrape_collector_success`),
/// whether it runs unless the config says otherwise, and what it reads.
pub struct Collector {
    pub name: &'static str,
    pub default_on: bool,
    run: fn(&HostPaths) -> Result<Vec<Family>, String>,
}

fn read_err(p: &Path) -> Result<String, String> {
    read_file(p).map_err(|e| format!("{}: {e}", p.display()))
}

/// Every collector, in node_exporter's (alphabetical) order. All of node_exporter
/// 1.5's default-on Linux collectors that read something this agent knows how to read.
pub const COLLECTORS: &[Collector] = &[
    Collector {
        name: "arp",
        default_on: true,
        run: |p| small::arp(&p.proc),
    },
    Collector {
        name: "conntrack",
        default_on: true,
        run: |p| small::conntrack(&p.proc),
    },
    Collector {
        name: "cpu",
        default_on: true,
        run: |p| Ok(cpu::parse_cpu(&read_err(&p.proc.join("stat"))?)),
    },
    Collector {
        name: "diskstats",
        default_on: true,
        run: |p| {
            let udev = p.udev.is_dir().then_some(p.udev.as_path());
            Ok(diskstats::parse_with_udev(
                &read_err(&p.proc.join("diskstats"))?,
                udev,
            ))
        },
    },
    Collector {
        name: "entropy",
        default_on: true,
        run: |p| small::entropy(&p.proc),
    },
    Collector {
        name: "filefd",
        default_on: true,
        run: |p| Ok(filefd::parse(&read_err(&p.proc.join("sys/fs/file-nr"))?)),
    },
    Collector {
        name: "filesystem",
        default_on: true,
        run: |p| {
            let mounts =
                read_err(&p.proc.join("1/mounts")).or_else(|_| read_err(&p.proc.join("mounts")))?;
            Ok(filesystem::collect(&mounts))
        },
    },
    Collector {
        name: "loadavg",
        default_on: true,
        run: |p| Ok(loadavg::parse(&read_err(&p.proc.join("loadavg"))?)),
    },
    Collector {
        name: "meminfo",
        default_on: true,
        run: |p| Ok(meminfo::parse(&read_err(&p.proc.join("meminfo"))?)),
    },
    Collector {
        name: "netclass",
        default_on: true,
        run: |p| netclass::collect(&p.sys),
    },
    Collector {
        name: "netdev",
        default_on: true,
        run: |p| {
            let mut fams = netdev::parse(&read_err(&p.proc.join("net/dev"))?);
            if let Some(first) = fams.first() {
                let nh = netdev::nohandler(&p.sys, first);
                fams.push(nh);
            }
            Ok(fams)
        },
    },
    Collector {
        name: "netstat",
        default_on: true,
        run: |p| netstat::collect(&p.proc),
    },
    Collector {
        name: "os",
        default_on: true,
        run: |p| os::collect(&p.root),
    },
    Collector {
        name: "pressure",
        default_on: true,
        run: |p| {
            let mut psi = Vec::new();
            for res in ["cpu", "io", "memory"] {
                if let Ok(s) = read_file(p.proc.join("pressure").join(res)) {
                    psi.extend(pressure::parse(res, &s));
                }
            }
            if psi.is_empty() {
                return Err("no /proc/pressure (kernel without PSI)".into());
            }
            Ok(psi)
        },
    },
    Collector {
        name: "schedstat",
        default_on: true,
        run: |p| small::schedstat(&p.proc),
    },
    Collector {
        name: "selinux",
        default_on: true,
        run: |p| small::selinux(&p.sys, &p.root),
    },
    Collector {
        name: "sockstat",
        default_on: true,
        run: |p| sockstat::collect(&p.proc),
    },
    Collector {
        name: "softnet",
        default_on: true,
        run: |p| Ok(softnet::parse(&read_err(&p.proc.join("net/softnet_stat"))?)),
    },
    Collector {
        name: "stat",
        default_on: true,
        run: |p| Ok(cpu::parse_stat(&read_err(&p.proc.join("stat"))?)),
    },
    Collector {
        name: "textfile",
        default_on: true,
        run: |p| textfile::collect(p.textfile_dir.as_deref()),
    },
    Collector {
        name: "time",
        default_on: true,
        run: |p| time::collect(&p.sys),
    },
    Collector {
        name: "timex",
        default_on: true,
        run: |_| timex::collect(),
    },
    Collector {
        name: "udp_queues",
        default_on: true,
        run: |p| small::udp_queues(&p.proc),
    },
    Collector {
        name: "uname",
        default_on: true,
        run: |_| uname::collect(),
    },
    Collector {
        name: "vmstat",
        default_on: true,
        run: |p| Ok(vmstat::parse(&read_err(&p.proc.join("vmstat"))?)),
    },
];

/// The collectors that run: the default-on ones, switched on or off by the config's
/// `[host.collectors]` table (`name = true|false`). An unknown name is an error that
/// lists the known ones.
pub fn select(switches: &BTreeMap<String, bool>) -> Result<Vec<&'static str>, String> {
    for name in switches.keys() {
        if !COLLECTORS.iter().any(|c| c.name == name) {
            let known: Vec<_> = COLLECTORS.iter().map(|c| c.name).collect();
            return Err(format!(
                "[host.collectors] {name:?} is not a collector; known: {}",
                known.join(", ")
            ));
        }
    }
    Ok(COLLECTORS
        .iter()
        .filter(|c| switches.get(c.name).copied().unwrap_or(c.default_on))
        .map(|c| c.name)
        .collect())
}

/// Runs every enabled collector. Each one's time and outcome are reported in
/// `node_scrape_collector_duration_seconds` and `node_scrape_collector_success`, as
/// node_exporter does; a collector that fails (its file missing) adds no families.
pub fn collect(paths: &HostPaths) -> Vec<Family> {
    let mut out = Vec::new();
    let mut duration = Family::new(
        "node_scrape_collector_duration_seconds",
        "node_exporter: Duration of a collector scrape.",
        Kind::Gauge,
    );
    let mut success = Family::new(
        "node_scrape_collector_success",
        "node_exporter: Whether a collector succeeded.",
        Kind::Gauge,
    );
    for c in COLLECTORS
        .iter()
        .filter(|c| paths.enabled.contains(&c.name))
    {
        let t0 = Instant::now();
        let r = (c.run)(paths);
        duration.push(&[("collector", c.name)], t0.elapsed().as_secs_f64());
        match r {
            Ok(fams) => {
                success.push(&[("collector", c.name)], 1.0);
                out.extend(fams);
            }
            Err(e) => {
                tracing::debug!(collector = c.name, error = %e, "collector failed");
                success.push(&[("collector", c.name)], 0.0);
            }
        }
    }
    out.push(duration);
    out.push(success);
    out
}

/// A file's text, as `std::fs::read_to_string` gives it but without its `statx` (it
/// sizes the buffer by the file's length, which /proc and /sys files do not have):
/// about 120 files are read per interval, so that is 120 system calls fewer. Read
/// through `Take`, whose `read_to_end` neither asks for the length nor zeroes the
/// buffer (the first version zeroed 4 KiB per file: more than the statx saved).
pub(crate) fn read_file(p: impl AsRef<Path>) -> std::io::Result<String> {
    use std::io::Read;
    let f = std::fs::File::open(p)?;
    let mut buf = Vec::with_capacity(4096);
    f.take(u64::MAX).read_to_end(&mut buf)?;
    String::from_utf8(buf).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// [`read_file`] into a buffer the caller keeps across files (no allocation per
/// file once it is large enough); the text, or `None` if it cannot be read or is not
/// UTF-8.
pub(crate) fn read_into<'a>(p: &Path, buf: &'a mut Vec<u8>) -> Option<&'a str> {
    use std::io::Read;
    buf.clear();
    let f = std::fs::File::open(p).ok()?;
    f.take(u64::MAX).read_to_end(buf).ok()?;
    std::str::from_utf8(buf).ok()
}

/// What a field filter (a regex) said about the fields of a file, by their position:
/// /proc files like vmstat and net/netstat list the same fields in the same order on
/// every read, so comparing a field's name with the one remembered at its position is
/// all a read costs, instead of a regex match (a few hundred per read were the largest
/// share of the host read). A field that moved or is new is matched again and
/// remembered; at most [`MEMO_MAX`] positions are kept.
pub(crate) type FieldMemo = std::sync::Mutex<Vec<(String, bool)>>;

/// Most positions a [`FieldMemo`] remembers (a kernel's files have a few hundred).
const MEMO_MAX: usize = 4096;

/// Whether field `key`, the `i`th of its file, is selected, by `memo` or else `test`.
pub(crate) fn memo_selected(
    memo: &mut Vec<(String, bool)>,
    i: usize,
    key: &str,
    test: impl FnOnce(&str) -> bool,
) -> bool {
    if let Some((k, w)) = memo.get(i) {
        if k == key {
            return *w;
        }
    }
    let w = test(key);
    if i < memo.len() {
        memo[i] = (key.to_string(), w);
    } else if i == memo.len() && i < MEMO_MAX {
        memo.push((key.to_string(), w));
    }
    w
}

/// A family's name and help made from the `i`th field of a file, remembered by
/// position as [`FieldMemo`] remembers selections: after the first read a field costs
/// a name compare and two reference-count increments instead of two formats.
pub(crate) type NameMemo = std::sync::Mutex<Vec<(String, Str, Str)>>;

/// The name and help for field `key`, the `i`th of its file, by `memo` or else `build`.
pub(crate) fn memo_names(
    memo: &mut Vec<(String, Str, Str)>,
    i: usize,
    key: &str,
    build: impl FnOnce() -> (Str, Str),
) -> (Str, Str) {
    if let Some((k, n, h)) = memo.get(i) {
        if k == key {
            return (n.clone(), h.clone());
        }
    }
    let (n, h) = build();
    if i < memo.len() {
        memo[i] = (key.to_string(), n.clone(), h.clone());
    } else if i == memo.len() && i < MEMO_MAX {
        memo.push((key.to_string(), n.clone(), h.clone()));
    }
    (n, h)
}

/// Locks a [`FieldMemo`] or [`NameMemo`] (a panic while it was held left nothing half-done that
/// matters: every entry is checked against the name before it is trusted).
pub(crate) fn lock_memo<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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

#[cfg(test)]
mod memo_tests {
    use super::memo_selected;

    #[test]
    fn name_memo_follows_moved_fields() {
        use super::memo_names;
        use crate::family::Str;
        let mut memo = Vec::new();
        let built = std::cell::Cell::new(0);
        let get = |memo: &mut Vec<_>, i, k: &'static str| {
            memo_names(memo, i, k, || {
                built.set(built.get() + 1);
                (Str::lit(k), Str::copy(&format!("help {k}")))
            })
        };
        assert_eq!(get(&mut memo, 0, "a").0, "a");
        assert_eq!(get(&mut memo, 0, "a").1, "help a");
        assert_eq!(get(&mut memo, 0, "b").0, "b");
        assert_eq!(get(&mut memo, 0, "b").1, "help b");
        assert_eq!(built.get(), 2);
    }

    #[test]
    fn memo_follows_moved_and_new_fields() {
        let mut memo = Vec::new();
        let tests = std::cell::Cell::new(0);
        let sel = |memo: &mut Vec<(String, bool)>, i, k: &str| {
            memo_selected(memo, i, k, |k| {
                tests.set(tests.get() + 1);
                k.starts_with("pg")
            })
        };
        assert!(sel(&mut memo, 0, "pgfault"));
        assert!(!sel(&mut memo, 1, "nr_free"));
        assert!(sel(&mut memo, 0, "pgfault"));
        // A field at another position is matched again, and remembered there.
        assert!(!sel(&mut memo, 0, "nr_free"));
        assert!(sel(&mut memo, 1, "pgmajfault"));
        assert!(sel(&mut memo, 1, "pgmajfault"));
        // A position past the end (a gap) is matched, not remembered.
        assert!(sel(&mut memo, 5, "pgsteal"));
        assert_eq!(memo.len(), 2);
        assert_eq!(tests.get(), 5);
    }
}
