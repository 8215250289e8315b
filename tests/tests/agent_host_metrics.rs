//! The agent's host metrics against the real node_exporter on the same machine at the
//! same moment: every node_exporter family the agent exposes has the same name, type
//! and label sets, and values within 1% (counters) or 5% (gauges), with the few
//! gauges that legitimately jump between two reads named below. Prints the table.

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
];

/// Agent families that node_exporter names the same but fills from its own state.
const OWN: &[&str] = &["node_scrape_collector_success", "node_time_seconds"];

fn close(kind: &str, name: &str, a: f64, b: f64) -> bool {
    if a == b || (a.is_nan() && b.is_nan()) {
        return true;
    }
    let rel = (a - b).abs() / a.abs().max(b.abs());
    match kind {
        // Counters keep growing between the two reads; tiny counters move by whole units.
        "counter" => rel <= 0.01 || (a - b).abs() <= 2.0,
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
    let mut compared = BTreeSet::new();
    for (name, fam) in ours
        .iter()
        .filter(|(n, _)| n.starts_with("node_") && !OWN.contains(&n.as_str()))
    {
        let Some(ne_fam) = theirs.get(name) else {
            failures.push(format!("{name}: node_exporter has no such family"));
            continue;
        };
        compared.insert(name.clone());
        if fam.kind != ne_fam.kind {
            failures.push(format!(
                "{name}: type {} but node_exporter says {}",
                fam.kind, ne_fam.kind
            ));
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
    println!(
        "agent vs node_exporter ({} families compared):",
        compared.len()
    );
    for r in &rows {
        println!("  {r}");
    }
    // The families of node_exporter's default collectors the issue names.
    for must in [
        "node_cpu_seconds_total",
        "node_memory_MemAvailable_bytes",
        "node_load1",
        "node_disk_read_bytes_total",
        "node_filesystem_avail_bytes",
        "node_network_receive_bytes_total",
        "node_context_switches_total",
        "node_boot_time_seconds",
        "node_filefd_allocated",
    ] {
        if theirs.contains_key(must) && !compared.contains(must) {
            failures.push(format!("{must}: node_exporter has it, the agent does not"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
