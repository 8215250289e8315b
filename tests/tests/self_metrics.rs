//! The one list of Calm's own metric names, `dashboards/self-metrics.txt`, is true:
//!
//! - every name on it is exposed at `/metrics` of the real binary it names (a collector
//!   with a rule group, a webhook and an Alertmanager notifier configured, and an agent
//!   shipping to it), and every `calm_*` name either binary exposes is on it;
//! - every `calm_*` metric name a dashboard's query uses (`dashboards/*.json`) is on it.
//!
//! `CALM_WRITE_METRICS_LIST=1` rewrites the list's entries from what the binaries
//! expose (then review the diff).

use calm_tests::agent::Agent;
use calm_tests::{wait_for, workspace_root, Collector};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const LIST: &str = "dashboards/self-metrics.txt";

/// `program → names` from the list (lines `<program> <name>`, `#` comments).
fn read_list() -> BTreeMap<String, BTreeSet<String>> {
    let text = std::fs::read_to_string(workspace_root().join(LIST)).expect("read the list");
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(program), Some(name)) = (parts.next(), parts.next()) else {
            panic!("{LIST}: malformed line {line:?}");
        };
        out.entry(program.to_string())
            .or_default()
            .insert(name.to_string());
    }
    out
}

/// The `calm_*` names in an exposition: of its samples, and of its `# TYPE` lines (a
/// labelled family without samples yet, as a counter's `_total`).
fn exposed(text: &str) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .filter(|n| n.starts_with("calm_"))
        .map(str::to_string)
        .collect();
    for l in text.lines() {
        let mut p = l.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (p.next(), p.next(), p.next(), p.next())
        {
            if name.starts_with("calm_") {
                if kind == "counter" && !name.ends_with("_total") {
                    out.insert(format!("{name}_total"));
                } else {
                    out.insert(name.to_string());
                }
            }
        }
    }
    out
}

fn get(url: &str) -> String {
    reqwest::blocking::get(url)
        .and_then(|r| r.text())
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// Every string under a `expr`, `query` or `definition` key of a dashboard.
fn queries(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr" | "query" | "definition", serde_json::Value::String(s)) => {
                        out.push(s.clone())
                    }
                    _ => queries(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| queries(v, out)),
        _ => {}
    }
}

/// The `calm_*` metric names in a PromQL text: label values (quoted) and name
/// prefixes of regexes are not names.
fn names_in_query(q: &str) -> BTreeSet<String> {
    let mut unquoted = String::new();
    let mut in_quote = false;
    let mut prev = ' ';
    for c in q.chars() {
        if c == '"' && prev != '\\' {
            in_quote = !in_quote;
        } else if !in_quote {
            unquoted.push(c);
        }
        prev = c;
    }
    unquoted
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|t| t.starts_with("calm_") && !t.ends_with('_'))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_metric_list_matches_the_binaries_and_the_dashboards() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        "groups:\n- name: g\n  rules:\n  - record: one\n    expr: vector(1)\n",
    )
    .expect("write rules");
    // Notifiers on closed ports: their families exist from the start.
    let c = Collector::start_with_config(
        &format!(
            "rule_files = [{:?}]\nevaluation_interval = \"1s\"\n\
             [[alerting.webhooks]]\nurl = \"http://127.0.0.1:9/hook\"\n\
             [[alerting.alertmanagers]]\nurl = \"http://127.0.0.1:9\"\n",
            rules.display().to_string()
        ),
        &[],
    );
    let metrics_url = format!("{}/metrics", c.url());
    let collector = wait_for(Duration::from_secs(60), Duration::from_millis(200), || {
        let text = get(&metrics_url);
        text.contains("calm_rule_group_last_duration_seconds{")
            .then(|| exposed(&text))
    })
    .expect("the rule group's first evaluation shows on /metrics within 60 s");
    let a = Agent::builder().collector(&c.url()).start();
    let agent = exposed(&get(&format!("{}/metrics", a.url())));
    let got: BTreeMap<String, BTreeSet<String>> = [
        ("calm-collector".to_string(), collector),
        ("calm-agent".to_string(), agent),
    ]
    .into();

    if std::env::var_os("CALM_WRITE_METRICS_LIST").is_some() {
        let path = workspace_root().join(LIST);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        // The header and the TSDB series stay; the /metrics entries are rewritten.
        let mut out: String = text
            .lines()
            .filter(|l| {
                l.starts_with('#')
                    || l.trim().is_empty()
                    || l.starts_with("calm-collector-tsdb ")
                    || l.starts_with("calm-collector-cluster ")
            })
            .map(|l| format!("{l}\n"))
            .collect();
        for (program, names) in &got {
            for n in names {
                out.push_str(&format!("{program} {n}\n"));
            }
        }
        std::fs::write(&path, out).expect("write the list");
    }

    let list = read_list();
    for (program, exposed) in &got {
        let listed = list.get(program).cloned().unwrap_or_default();
        let missing: Vec<_> = listed.difference(exposed).collect();
        assert!(
            missing.is_empty(),
            "{LIST} lists names {program} does not expose at /metrics: {missing:?}"
        );
        let unlisted: Vec<_> = exposed.difference(&listed).collect();
        assert!(
            unlisted.is_empty(),
            "{program} exposes names that are not on {LIST}: {unlisted:?}"
        );
    }

    let all: BTreeSet<&String> = list.values().flatten().collect();
    let mut checked = 0;
    for entry in std::fs::read_dir(workspace_root().join("dashboards")).expect("dashboards/") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read dashboard"))
                .expect("dashboard JSON");
        let mut qs = Vec::new();
        queries(&v, &mut qs);
        for q in qs {
            for name in names_in_query(&q) {
                checked += 1;
                assert!(
                    all.contains(&name),
                    "{}: a query uses {name}, which is not on {LIST}:\n{q}",
                    path.display()
                );
            }
        }
    }
    assert!(
        checked > 20,
        "the dashboards' queries name calm_* metrics ({checked} found)"
    );
    println!(
        "{} names on the list exposed; {checked} dashboard uses checked",
        all.len()
    );
}
