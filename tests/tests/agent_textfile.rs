//! The agent's textfile collector against the real node_exporter 1.5 reading the same
//! directory at the same moment: files written atomically (temp name + rename) and in
//! place, a half-written file, bad lines, a second TYPE line, client-side timestamps,
//! the same family in two files (same and different types), the same series in two
//! files, histograms, summaries, a missing HELP, series lacking a label, a file not
//! ending in `.prom`. Both must expose the same families, types, HELP texts, label
//! sets and values, the same `node_textfile_mtime_seconds` and
//! `node_textfile_scrape_error`; then after files change (one renamed into place, the
//! bad ones removed) again. The agent runs with every other collector switched off in
//! `[host.collectors]`, which is checked too.

use calm_tests::peers::{require_peer, NodeExporter};
use calm_tests::Agent;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

type Labels = Vec<(String, String)>;

#[derive(Default, Debug, PartialEq)]
struct Family {
    kind: String,
    help: String,
    samples: BTreeMap<Labels, String>,
}

/// The families of an exposition text, keyed by the family name of the TYPE line (or
/// the sample name); sample names kept in the label set as `__name__`.
fn parse(text: &str) -> BTreeMap<String, Family> {
    let mut out: BTreeMap<String, Family> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (n, h) = rest.split_once(' ').unwrap_or((rest, ""));
            current = n.to_string();
            out.entry(current.clone()).or_default().help = h.to_string();
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (n, k) = rest.split_once(' ').unwrap_or((rest, ""));
            current = n.to_string();
            out.entry(current.clone()).or_default().kind = k.to_string();
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..name_end];
        let (mut labels, value) = match line[name_end..].strip_prefix('{') {
            Some(rest) => {
                let close = rest.rfind('}').expect("closing brace");
                (parse_labels(&rest[..close]), rest[close + 1..].trim())
            }
            None => (Labels::new(), line[name_end..].trim()),
        };
        labels.push(("__name__".into(), name.to_string()));
        labels.sort();
        let fam = if name.starts_with(&current) && !current.is_empty() {
            current.clone()
        } else {
            name.to_string()
        };
        out.entry(fam)
            .or_default()
            .samples
            .insert(labels, number(value));
    }
    out
}

/// A sample value in one spelling (Go writes 1.7e+09 where the agent writes 1700000000).
fn number(v: &str) -> String {
    match v {
        "+Inf" => "+Inf".into(),
        "-Inf" => "-Inf".into(),
        v => v
            .parse::<f64>()
            .map_or_else(|_| v.to_string(), |x| format!("{x:?}")),
    }
}

fn parse_labels(s: &str) -> Labels {
    let mut out = Labels::new();
    let mut rest = s;
    while let Some(eq) = rest.find("=\"") {
        let name = rest[..eq].trim_start_matches([',', ' ']).to_string();
        let mut value = String::new();
        let mut chars = rest[eq + 2..].char_indices();
        let mut end = rest.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, e)) = chars.next() {
                        value.push(if e == 'n' { '\n' } else { e });
                    }
                }
                '"' => {
                    end = eq + 2 + i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.push((name, value));
        rest = &rest[end.min(rest.len())..];
    }
    out
}

/// The textfile families (anything not of node_exporter itself nor the agent's own `calm_*`)
/// and node_textfile_*.
fn textfile_part(all: BTreeMap<String, Family>) -> BTreeMap<String, Family> {
    all.into_iter()
        .filter(|(n, _)| {
            n.starts_with("node_textfile_")
                || !(n.starts_with("node_")
                    || n.starts_with("go_")
                    || n.starts_with("process_")
                    || n.starts_with("promhttp_")
                    || n.starts_with("calm_"))
        })
        .collect()
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

fn write_atomic(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).expect("write temp");
    std::fs::rename(&tmp, dir.join(name)).expect("rename into place");
}

fn compare(agent: &Agent, ne: &NodeExporter, round: &str) -> BTreeMap<String, Family> {
    let ne_url = format!("http://{}/metrics", ne.target());
    let t = std::thread::spawn(move || get(&ne_url));
    let ours = textfile_part(parse(&agent.metrics_text()));
    let theirs = textfile_part(parse(&t.join().expect("node_exporter read")));
    println!("{round}: node_exporter's textfile families:");
    for (n, f) in &theirs {
        println!("  {n:<32} {:<10} {} series", f.kind, f.samples.len());
    }
    let mut diffs = Vec::new();
    let names: BTreeSet<_> = ours.keys().chain(theirs.keys()).collect();
    for n in names {
        match (ours.get(n), theirs.get(n)) {
            (Some(a), Some(b)) if a == b => {}
            (Some(a), Some(b)) => diffs.push(format!(
                "{n}:\n  agent:         {a:?}\n  node_exporter: {b:?}"
            )),
            (Some(_), None) => diffs.push(format!("{n}: only the agent has it")),
            (None, Some(_)) => diffs.push(format!("{n}: only node_exporter has it")),
            (None, None) => {}
        }
    }
    assert!(
        diffs.is_empty(),
        "{round}: {} differences with node_exporter:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
    ours
}

#[test]
fn textfile_matches_node_exporter() {
    let Some(ne_bin) = require_peer("prometheus-node-exporter") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("textfiles");
    std::fs::create_dir(&dir).expect("mkdir");
    // Written atomically: a temp name node_exporter ignores, then renamed.
    write_atomic(
        &dir,
        "atomic.prom",
        "# HELP backup_last_success_seconds When the last backup succeeded.\n\
         # TYPE backup_last_success_seconds gauge\n\
         backup_last_success_seconds{job=\"db\"} 1.7e9\n\
         backup_last_success_seconds 1.6e9\n\
         # TYPE backup_runs_total counter\n\
         backup_runs_total{result=\"ok\"} 41\n\
         backup_runs_total{result=\"failed\",host=\"a\"} 2\n",
    );
    // Written in place, complete.
    std::fs::write(
        dir.join("inplace.prom"),
        "# TYPE job_duration_seconds histogram\n\
         job_duration_seconds_bucket{le=\"0.5\"} 3\n\
         job_duration_seconds_bucket{le=\"1\"} 5\n\
         job_duration_seconds_bucket{le=\"+Inf\"} 6\n\
         job_duration_seconds_sum 4.5\n\
         job_duration_seconds_count 6\n\
         # TYPE rpc_latency summary\n\
         rpc_latency{quantile=\"0.5\"} 0.1\n\
         rpc_latency{quantile=\"0.99\"} 0.9\n\
         rpc_latency_sum 12\n\
         rpc_latency_count 100\n\
         untyped_thing{a=\"x\\\"y\"} NaN\n",
    )
    .expect("write");
    // Written in place and read half-way: the last line is cut.
    std::fs::write(dir.join("half.prom"), "half_metric{a=\"1\"} 1\nhalf_metr").expect("write");
    std::fs::write(
        dir.join("badline.prom"),
        "good_before_bad 1\nthis is not a sample\n",
    )
    .expect("write");
    std::fs::write(
        dir.join("twotypes.prom"),
        "# TYPE tw gauge\ntw 1\n# TYPE tw gauge\ntw{a=\"b\"} 2\n",
    )
    .expect("write");
    std::fs::write(dir.join("timestamps.prom"), "with_ts 1 1700000000000\n").expect("write");
    // The same family in two files, with different types; the same series twice.
    std::fs::write(
        dir.join("dup1.prom"),
        "dup_family 1\nsame_series{x=\"1\"} 1\n",
    )
    .expect("write");
    std::fs::write(
        dir.join("dup2.prom"),
        "# TYPE dup_family counter\ndup_family{f=\"2\"} 2\nsame_series{x=\"1\"} 2\nsame_series{x=\"2\"} 3\n",
    )
    .expect("write");
    std::fs::write(dir.join("notes.txt"), "ignored_metric 1\n").expect("write");

    let ne = NodeExporter::start(
        &ne_bin,
        &[&format!("--collector.textfile.directory={}", dir.display())],
    );
    let others: String = [
        "arp",
        "conntrack",
        "cpu",
        "diskstats",
        "entropy",
        "filefd",
        "filesystem",
        "loadavg",
        "meminfo",
        "netclass",
        "netdev",
        "netstat",
        "os",
        "pressure",
        "schedstat",
        "selinux",
        "sockstat",
        "softnet",
        "stat",
        "time",
        "timex",
        "udp_queues",
        "uname",
        "vmstat",
    ]
    .iter()
    .map(|c| format!("{c} = false\n"))
    .collect();
    let agent = Agent::builder()
        .config(&format!("[host.collectors]\n{others}"))
        .args(&["--textfile-dir", &dir.display().to_string()])
        .start();

    let first = compare(&agent, &ne, "round 1");
    assert_eq!(
        first["node_textfile_scrape_error"]
            .samples
            .values()
            .next()
            .map(String::as_str),
        Some("1.0"),
        "bad files must set node_textfile_scrape_error"
    );
    assert!(first.contains_key("backup_runs_total") && first.contains_key("job_duration_seconds"));
    assert!(!first.contains_key("ignored_metric") && !first.contains_key("with_ts"));
    // Only the textfile collector ran in the agent.
    let all = parse(&agent.metrics_text());
    let ran: Vec<_> = all
        .get("node_scrape_collector_success")
        .map(|f| {
            f.samples
                .keys()
                .flat_map(|l| {
                    l.iter()
                        .filter(|(n, _)| n == "collector")
                        .map(|(_, v)| v.clone())
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        ran,
        vec!["textfile".to_string()],
        "[host.collectors] switches"
    );
    assert!(!all.contains_key("node_cpu_seconds_total") && !all.contains_key("node_uname_info"));

    // The writer fixes things: a new version renamed into place, the bad files gone.
    for f in [
        "half.prom",
        "badline.prom",
        "twotypes.prom",
        "timestamps.prom",
        "dup2.prom",
    ] {
        std::fs::remove_file(dir.join(f)).expect("remove");
    }
    std::thread::sleep(Duration::from_millis(1100)); // a new whole-second mtime
    write_atomic(
        &dir,
        "atomic.prom",
        "# TYPE backup_runs_total counter\nbackup_runs_total{result=\"ok\"} 42\n",
    );
    let second = compare(&agent, &ne, "round 2");
    assert_eq!(
        second["node_textfile_scrape_error"]
            .samples
            .values()
            .next()
            .map(String::as_str),
        Some("0.0")
    );
    assert!(!second.contains_key("backup_last_success_seconds"));
}
