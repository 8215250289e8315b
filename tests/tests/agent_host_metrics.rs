//! The agent's host metrics against the real node_exporter on the same machine at the
//! same moment: EVERY family node_exporter exposes with its default collectors (minus
//! its Go runtime, process and build metrics) is exposed by the agent with the same
//! type and label sets, and values within 1% (counters) or 5% (gauges), with the
//! gauges that legitimately jump between two reads named below. Families of
//! collectors the agent does not have (hardware absent from the test host) are named
//! exceptions with their reason, printed. Prints the table.

use calm_tests::agent::agent_bin;
use calm_tests::peers::{require_peer, NodeExporter};
use calm_tests::process::ChildProcess;
use calm_tests::wait_for;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

type LabelSet = BTreeMap<String, String>;

#[derive(Default, Debug)]
struct Family {
    kind: String,
    samples: BTreeMap<Vec<(String, String)>, f64>,
}

/// Parses the text exposition format (enough of it for node_exporter's output).
fn parse(text: &str) -> BTreeMap<String, Family> {
    let mut out: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            if let (Some(n), Some(k)) = (it.next(), it.next()) {
                out.entry(n.to_string()).or_default().kind = k.to_string();
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (name, labels, rest) = match line.find('{') {
            Some(i) => {
                let (labels, after) = parse_labels(&line[i + 1..]);
                (&line[..i], labels, after)
            }
            None => {
                let sp = line.find(' ').unwrap_or(line.len());
                (&line[..sp], LabelSet::new(), &line[sp..])
            }
        };
        let value = rest.split_whitespace().next().unwrap_or("");
        let v = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or(f64::NAN),
        };
        out.entry(name.to_string())
            .or_default()
            .samples
            .insert(labels.into_iter().collect(), v);
    }
    out
}

fn parse_labels(s: &str) -> (LabelSet, &str) {
    let mut labels = LabelSet::new();
    let b = s.as_bytes();
    let mut i = 0;
    loop {
        while i < b.len() && (b[i] == b',' || b[i] == b' ') {
            i += 1;
        }
        if i >= b.len() || b[i] == b'}' {
            return (labels, &s[(i + 1).min(s.len())..]);
        }
        let eq = s[i..].find('=').map(|x| x + i).unwrap_or(b.len());
        let name = s[i..eq].to_string();
        i = eq + 2; // past ="
        let mut v = String::new();
        while i < b.len() && b[i] != b'"' {
            if b[i] == b'\\' && i + 1 < b.len() {
                v.push(match b[i + 1] {
                    b'n' => '\n',
                    c => c as char,
                });
                i += 2;
            } else {
                let ch = s[i..].chars().next().unwrap_or(' ');
                v.push(ch);
                i += ch.len_utf8();
            }
        }
        i += 1;
        labels.insert(name, v);
    }
}

fn get(url: &str) -> String {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
        .get(url)
        .send()
        .and_then(|r| r.text())
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// Gauges that can move by more than 5% between two reads a few ms apart.
const JUMPY: &[&str] = &[
    "node_procs_running",
    "node_procs_blocked",
    "node_disk_io_now",
    "node_memory_Dirty_bytes",
    "node_memory_Writeback_bytes",
    "node_memory_Active_file_bytes",
    "node_memory_Inactive_file_bytes",
    "node_memory_MemFree_bytes",
    "node_memory_Active_bytes",
    "node_memory_Inactive_bytes",
    "node_memory_Active_anon_bytes",
    "node_memory_AnonPages_bytes",
    "node_memory_Committed_AS_bytes",
    "node_memory_Mapped_bytes",
    "node_memory_Shmem_bytes",
    "node_memory_KReclaimable_bytes",
    "node_memory_SReclaimable_bytes",
    "node_memory_Slab_bytes",
    "node_memory_SUnreclaim_bytes",
    "node_memory_KernelStack_bytes",
    "node_memory_PageTables_bytes",
    "node_memory_Percpu_bytes",
    "node_filefd_allocated",
    // Sockets, connections and queues of every process on a machine shared with other
    // builds and tests: they change between the two reads.
    "node_sockstat_sockets_used",
    "node_sockstat_TCP_inuse",
    "node_sockstat_TCP_alloc",
    "node_sockstat_TCP_tw",
    "node_sockstat_TCP_orphan",
    "node_sockstat_TCP_mem",
    "node_sockstat_TCP_mem_bytes",
    "node_sockstat_UDP_inuse",
    "node_sockstat_UDP_mem",
    "node_sockstat_UDP_mem_bytes",
    "node_sockstat_TCP6_inuse",
    "node_sockstat_UDP6_inuse",
    "node_netstat_Tcp_CurrEstab",
    "node_nf_conntrack_entries",
    "node_udp_queues",
    "node_arp_entries",
    "node_entropy_available_bits",
    // The NTP discipline's offset moves every read.
    "node_timex_offset_seconds",
    "node_timex_maxerror_seconds",
    "node_timex_estimated_error_seconds",
];

/// Collectors node_exporter 1.5 runs by default that the agent does not have, and why.
/// Their families are printed as exceptions, never silently passed.
const NOT_IMPLEMENTED: &[(&str, &str)] = &[
    ("node_hwmon_", "hwmon: no /sys/class/hwmon on the test host, so nothing to compare against"),
    ("node_cpu_frequency_", "cpufreq: no cpufreq in sysfs on the test host"),
    ("node_cpu_scaling_", "cpufreq: no cpufreq in sysfs on the test host"),
    ("node_thermal_zone_", "thermal_zone: no thermal zones on the test host"),
    ("node_cooling_device_", "thermal_zone: no cooling devices on the test host"),
    ("node_power_supply_", "powersupplyclass: no power supplies on the test host"),
    ("node_edac_", "edac: no memory controllers in sysfs on the test host"),
    ("node_bcache_", "bcache: not on the test host"),
    ("node_btrfs_", "btrfs: not on the test host"),
    ("node_xfs_", "xfs: not on the test host"),
    ("node_zfs_", "zfs: not on the test host"),
    ("node_md_", "mdadm: no software RAID on the test host"),
    ("node_nfs_", "nfs: no NFS client on the test host"),
    ("node_nfsd_", "nfsd: no NFS server on the test host"),
    ("node_nvme_", "nvme: no NVMe devices on the test host"),
    ("node_infiniband_", "infiniband: not on the test host"),
    ("node_fibrechannel_", "fibrechannel: not on the test host"),
    ("node_tape_", "tapestats: not on the test host"),
    ("node_rapl_", "rapl: no powercap in sysfs on the test host"),
    ("node_dmi_", "dmi: no DMI tables in sysfs on the test host"),
    ("node_bonding_", "bonding: no bonded interfaces on the test host"),
    ("node_ipvs_", "ipvs: no IPVS on the test host"),
    ("node_systemd_", "systemd: Debian's build enables it; no systemd (D-Bus) in the test environment, and not a default collector upstream"),
];

/// Agent families that node_exporter names the same but fills from its own state:
/// compared by type and label names only.
const OWN: &[&str] = &[
    "node_scrape_collector_success",
    "node_scrape_collector_duration_seconds",
    "node_time_seconds",
];

/// node_exporter's own families that are not host metrics.
fn not_host(name: &str) -> bool {
    name.starts_with("go_")
        || name.starts_with("process_")
        || name.starts_with("promhttp_")
        || name == "node_exporter_build_info"
}

fn label_names(f: &Family) -> BTreeSet<String> {
    f.samples
        .keys()
        .flat_map(|l| l.iter().map(|(n, _)| n.clone()))
        .collect()
}

fn close(kind: &str, name: &str, a: f64, b: f64) -> bool {
    if a == b || (a.is_nan() && b.is_nan()) {
        return true;
    }
    let rel = (a - b).abs() / a.abs().max(b.abs());
    match kind {
        // Counters keep growing between the two reads; tiny counters move by whole units.
        "counter" => rel <= 0.01 || (a - b).abs() <= 2.0,
        // netstat and vmstat counters (untyped in node_exporter) count the whole
        // machine's packets and page faults, which other processes keep adding to.
        "untyped" if name.starts_with("node_vmstat_pg") => rel <= 0.01 || (a - b).abs() <= 5000.0,
        // Byte counters: the two /metrics answers themselves (~100 kB) go between reads.
        "untyped" if name.ends_with("Octets") => rel <= 0.01 || (a - b).abs() <= 2e6,
        "untyped" => rel <= 0.01 || (a - b).abs() <= 200.0,
        _ if JUMPY.contains(&name) => true,
        _ => rel <= 0.05,
    }
}

#[test]
fn host_metrics_match_node_exporter() {
    let Some(ne_bin) = require_peer("prometheus-node-exporter") else {
        return;
    };
    let ne = NodeExporter::start(&ne_bin, &[]);
    let port = calm_tests::ports::free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(agent_bin());
    cmd.arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir.path().join("agent"));
    let _agent =
        ChildProcess::spawn("calm-agent", cmd, &dir.path().join("agent.log")).expect("spawn agent");
    let agent_url = format!("http://127.0.0.1:{port}/metrics");
    let ready = wait_for(Duration::from_secs(30), Duration::from_millis(100), || {
        reqwest::blocking::get(&agent_url)
            .ok()
            .filter(|r| r.status().is_success())
    });
    assert!(ready.is_some(), "the agent never served /metrics");

    // Read both at the same moment.
    let ne_url = format!("http://{}/metrics", ne.target());
    let t = std::thread::spawn(move || get(&ne_url));
    let ours = parse(&get(&agent_url));
    let theirs = parse(&t.join().expect("node_exporter read"));

    let mut rows = Vec::new();
    let mut failures = Vec::new();
    let mut exceptions = Vec::new();
    let mut compared = BTreeSet::new();
    for (name, ne_fam) in theirs.iter().filter(|(n, _)| !not_host(n)) {
        let Some(fam) = ours.get(name) else {
            match NOT_IMPLEMENTED.iter().find(|(p, _)| name.starts_with(p)) {
                Some((_, why)) => exceptions.push(format!("{name}: {why}")),
                None => failures.push(format!("{name}: node_exporter has it, the agent does not")),
            }
            continue;
        };
        compared.insert(name.clone());
        if fam.kind != ne_fam.kind {
            failures.push(format!(
                "{name}: type {} but node_exporter says {}",
                fam.kind, ne_fam.kind
            ));
        }
        if OWN.contains(&name.as_str()) {
            if label_names(fam) != label_names(ne_fam) {
                failures.push(format!(
                    "{name}: label names {:?} but node_exporter has {:?}",
                    label_names(fam),
                    label_names(ne_fam)
                ));
            }
            rows.push(format!(
                "{name:<55} {:<8} {:>5} series  (the agent's own state: label names only)",
                fam.kind,
                fam.samples.len()
            ));
            continue;
        }
        let ours_sets: BTreeSet<_> = fam.samples.keys().collect();
        let theirs_sets: BTreeSet<_> = ne_fam.samples.keys().collect();
        if ours_sets != theirs_sets {
            failures.push(format!(
                "{name}: label sets differ\n  only agent: {:?}\n  only node_exporter: {:?}",
                ours_sets.difference(&theirs_sets).collect::<Vec<_>>(),
                theirs_sets.difference(&ours_sets).collect::<Vec<_>>()
            ));
        }
        let mut worst = 0f64;
        for (labels, v) in &fam.samples {
            if let Some(w) = ne_fam.samples.get(labels) {
                if !close(&fam.kind, name, *v, *w) {
                    failures.push(format!("{name}{labels:?}: agent {v} vs node_exporter {w}"));
                }
                if v != w && v.is_finite() && w.is_finite() {
                    worst = worst.max((v - w).abs() / v.abs().max(w.abs()));
                }
            }
        }
        rows.push(format!(
            "{name:<55} {:<8} {:>5} series  max rel diff {:.4}%",
            fam.kind,
            fam.samples.len(),
            worst * 100.0
        ));
    }
    // Families the agent has under node_exporter's prefix that node_exporter does not.
    for name in ours.keys().filter(|n| n.starts_with("node_")) {
        if !theirs.contains_key(name) {
            failures.push(format!("{name}: the agent has it, node_exporter does not"));
        }
    }
    println!(
        "agent vs node_exporter ({} families compared):",
        compared.len()
    );
    for r in &rows {
        println!("  {r}");
    }
    println!("exceptions ({}):", exceptions.len());
    for e in &exceptions {
        println!("  {e}");
    }
    // The families the dashboards' host pickers and the issue name.
    for must in [
        "node_uname_info",
        "node_os_info",
        "node_boot_time_seconds",
        "node_time_seconds",
        "node_cpu_seconds_total",
        "node_memory_MemAvailable_bytes",
        "node_load1",
        "node_disk_read_bytes_total",
        "node_filesystem_avail_bytes",
        "node_network_receive_bytes_total",
        "node_context_switches_total",
        "node_filefd_allocated",
        "node_netstat_Tcp_ActiveOpens",
        "node_sockstat_sockets_used",
        "node_vmstat_pgfault",
        "node_timex_sync_status",
        "node_textfile_scrape_error",
        "node_scrape_collector_duration_seconds",
    ] {
        if !compared.contains(must) {
            failures.push(format!("{must}: not compared (missing on either side)"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
