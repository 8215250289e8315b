//! `relabel_configs` and `metric_relabel_configs` in the agent against a real
//! Prometheus 2.42 with the same rules scraping the same app (tests/python/
//! scrape_app.py, text format): per job one set of rules covering Prometheus' actions
//! (replace with groups and separators, keep, drop, labelmap, labeldrop, labelkeep,
//! hashmod, lowercase, uppercase, keepequal, dropequal, and a target dropped by its
//! relabel_configs). Both must store exactly the same label sets in the last 10
//! minutes (report series `up`, `scrape_*` included, carrying the relabeled target
//! labels), and the same latest `scrape_samples_scraped` /
//! `scrape_samples_post_metric_relabeling`.

use calm_tests::api::{show_labels, Labels};
use calm_tests::process::ChildProcess;
use calm_tests::{
    now_ms, require_peer, require_python_modules, wait_for, workspace_root, Agent, Collector,
    PromApi, Prometheus,
};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// One relabel rule, written out for both programs.
#[derive(Default, Clone)]
struct Rule {
    action: &'static str,
    source_labels: &'static [&'static str],
    separator: Option<&'static str>,
    target_label: Option<&'static str>,
    regex: Option<&'static str>,
    replacement: Option<&'static str>,
    modulus: Option<u64>,
}

impl Rule {
    fn toml(&self, table: &str) -> String {
        let mut s = format!("[[scrape.{table}]]\naction = '{}'\n", self.action);
        if !self.source_labels.is_empty() {
            let l: Vec<String> = self
                .source_labels
                .iter()
                .map(|x| format!("'{x}'"))
                .collect();
            s.push_str(&format!("source_labels = [{}]\n", l.join(", ")));
        }
        for (k, v) in [
            ("separator", self.separator),
            ("target_label", self.target_label),
            ("regex", self.regex),
            ("replacement", self.replacement),
        ] {
            if let Some(v) = v {
                s.push_str(&format!("{k} = '{v}'\n"));
            }
        }
        if let Some(m) = self.modulus {
            s.push_str(&format!("modulus = {m}\n"));
        }
        s
    }

    fn yaml(&self) -> String {
        let mut s = format!("      - action: {}\n", self.action);
        if !self.source_labels.is_empty() {
            let l: Vec<String> = self
                .source_labels
                .iter()
                .map(|x| format!("'{x}'"))
                .collect();
            s.push_str(&format!("        source_labels: [{}]\n", l.join(", ")));
        }
        for (k, v) in [
            ("separator", self.separator),
            ("target_label", self.target_label),
            ("regex", self.regex),
            ("replacement", self.replacement),
        ] {
            if let Some(v) = v {
                s.push_str(&format!("        {k}: '{v}'\n"));
            }
        }
        if let Some(m) = self.modulus {
            s.push_str(&format!("        modulus: {m}\n"));
        }
        s
    }
}

fn r(action: &'static str) -> Rule {
    Rule {
        action,
        ..Rule::default()
    }
}

/// (job, relabel_configs, metric_relabel_configs)
fn jobs() -> Vec<(&'static str, Vec<Rule>, Vec<Rule>)> {
    vec![
        (
            "rl_replace",
            vec![
                Rule {
                    target_label: Some("env"),
                    replacement: Some("prod"),
                    ..r("replace")
                },
                Rule {
                    source_labels: &["__address__"],
                    regex: Some(r"127\.0\.0\.1:(\d+)"),
                    target_label: Some("port"),
                    replacement: Some("p$1"),
                    ..r("replace")
                },
                Rule {
                    source_labels: &["__scheme__", "__metrics_path__"],
                    separator: Some("|"),
                    regex: Some(r"(\w+)\|/(\w+)"),
                    target_label: Some("endpoint"),
                    replacement: Some("${2}@${1}"),
                    ..r("replace")
                },
            ],
            vec![
                Rule {
                    source_labels: &["method", "code"],
                    separator: Some("/"),
                    regex: Some("(.+)/(.+)"),
                    target_label: Some("route_key"),
                    replacement: Some("${2}-${1}"),
                    ..r("replace")
                },
                Rule {
                    source_labels: &["room"],
                    target_label: Some("room_lc"),
                    ..r("lowercase")
                },
                Rule {
                    source_labels: &["method"],
                    target_label: Some("method_uc"),
                    ..r("uppercase")
                },
                // An empty result deletes the label.
                Rule {
                    source_labels: &["room"],
                    regex: Some("attic"),
                    target_label: Some("note"),
                    replacement: Some(""),
                    ..r("replace")
                },
                // A target label made from the match.
                Rule {
                    source_labels: &["path"],
                    regex: Some("/(.*)"),
                    target_label: Some("p_${1}"),
                    replacement: Some("yes"),
                    ..r("replace")
                },
            ],
        ),
        (
            "rl_keepdrop",
            vec![],
            vec![
                Rule {
                    source_labels: &["__name__"],
                    regex: Some("app_(requests|latency_seconds|temperature_celsius).*"),
                    ..r("keep")
                },
                Rule {
                    source_labels: &["room"],
                    regex: Some("cellar"),
                    ..r("drop")
                },
                Rule {
                    regex: Some("note"),
                    ..r("labeldrop")
                },
            ],
        ),
        (
            "rl_map",
            vec![Rule {
                regex: Some("(job)"),
                replacement: Some("orig_${1}"),
                ..r("labelmap")
            }],
            vec![
                Rule {
                    regex: Some("(room|path)"),
                    replacement: Some("x_${1}"),
                    ..r("labelmap")
                },
                Rule {
                    regex: Some("__name__|job|instance|orig_job|x_.*|le|quantile|method|code"),
                    ..r("labelkeep")
                },
            ],
        ),
        (
            "rl_hash",
            vec![],
            vec![
                Rule {
                    source_labels: &["__name__"],
                    modulus: Some(4),
                    target_label: Some("shard"),
                    ..r("hashmod")
                },
                Rule {
                    source_labels: &["shard"],
                    regex: Some("[012]"),
                    ..r("keep")
                },
                Rule {
                    source_labels: &["method"],
                    target_label: Some("method_copy"),
                    ..r("replace")
                },
                Rule {
                    source_labels: &["method"],
                    target_label: Some("method_copy"),
                    ..r("keepequal")
                },
                Rule {
                    source_labels: &["code"],
                    target_label: Some("method"),
                    ..r("dropequal")
                },
            ],
        ),
        (
            "rl_dropped",
            vec![Rule {
                source_labels: &["job"],
                regex: Some("rl_dropped"),
                ..r("drop")
            }],
            vec![],
        ),
    ]
}

fn start_app(python: &Path) -> (ChildProcess, u16, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = calm_tests::ports::free_port();
    let mut cmd = Command::new(python);
    cmd.arg(workspace_root().join("tests/python/scrape_app.py"))
        .arg(port.to_string())
        .arg("--text-only");
    let p = ChildProcess::spawn("scrape_app", cmd, &dir.path().join("app.log")).expect("app");
    let up = wait_for(Duration::from_secs(20), Duration::from_millis(100), || {
        reqwest::blocking::get(format!("http://127.0.0.1:{port}/stats"))
            .ok()
            .filter(|r| r.status().is_success())
    });
    assert!(up.is_some(), "scrape_app.py did not answer");
    (p, port, dir)
}

fn label_sets(api: &PromApi, selector: &str) -> BTreeSet<Labels> {
    api.query_matrix(&format!("{selector}[10m]"), now_ms())
        .unwrap_or_else(|e| panic!("{}: {e}", api.base()))
        .into_iter()
        .map(|s| s.labels)
        .collect()
}

fn latest(api: &PromApi, q: &str) -> Vec<(Labels, f64)> {
    let mut v: Vec<_> = api
        .query_vector(q, Some(now_ms()))
        .unwrap_or_else(|e| panic!("{}: {q}: {e}", api.base()))
        .into_iter()
        .map(|s| (s.labels, s.value))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn relabeling_matches_prometheus() {
    let Some(prom_bin) = require_peer("prometheus") else {
        return;
    };
    let Some(python) = require_python_modules(&["prometheus_client"]) else {
        return;
    };
    let (_app, port, _dir) = start_app(&python);
    let collector = Collector::start();
    let mut agent_toml = String::from("[host]\ninterval = \"1h\"\n");
    let mut prom_yaml =
        String::from("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n");
    for (job, target_rules, metric_rules) in jobs() {
        agent_toml.push_str(&format!(
            "[[scrape]]\nurl = \"http://127.0.0.1:{port}/metrics\"\ninterval = \"1s\"\njob = \"{job}\"\n"
        ));
        prom_yaml.push_str(&format!(
            "  - job_name: {job}\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
        ));
        if !target_rules.is_empty() {
            prom_yaml.push_str("    relabel_configs:\n");
        }
        for rule in &target_rules {
            agent_toml.push_str(&rule.toml("relabel_configs"));
            prom_yaml.push_str(&rule.yaml());
        }
        if !metric_rules.is_empty() {
            prom_yaml.push_str("    metric_relabel_configs:\n");
        }
        for rule in &metric_rules {
            agent_toml.push_str(&rule.toml("metric_relabel_configs"));
            prom_yaml.push_str(&rule.yaml());
        }
        agent_toml.push('\n');
    }
    let agent = Agent::builder()
        .collector(&collector.url())
        .config(&agent_toml)
        .start();
    let prometheus = Prometheus::start(&prom_bin, &prom_yaml, false);
    let (calm, prom) = (collector.api(), prometheus.api());

    // Each of the 4 scraped jobs past 10 scrapes on both sides (values frozen after 8).
    let ready = wait_for(Duration::from_secs(90), Duration::from_millis(500), || {
        let n = |api: &PromApi| {
            latest(api, "count_over_time(up{job=~\"rl_.*\"}[10m])")
                .iter()
                .filter(|(_, v)| *v >= 10.0)
                .count()
        };
        (n(&calm) == 4 && n(&prom) == 4).then_some(())
    });
    assert!(
        ready.is_some(),
        "not enough scrapes; agent log:\n{}",
        agent.log_tail(30)
    );

    // app_session_active is in the first 3 scrapes *per client* only, and the four jobs
    // of one scraper share one client: which job got those 3 scrapes is chance.
    let selector = "{job=~\"rl_.*\",__name__!=\"app_session_active\"}";
    let ours = label_sets(&calm, selector);
    let theirs = label_sets(&prom, selector);
    let mut problems = Vec::new();
    for l in theirs.difference(&ours) {
        problems.push(format!("only Prometheus has {}", show_labels(l)));
    }
    for l in ours.difference(&theirs) {
        problems.push(format!("only calm has {}", show_labels(l)));
    }
    for q in [
        "scrape_samples_scraped{job=~\"rl_.*\"}",
        "scrape_samples_post_metric_relabeling{job=~\"rl_.*\"}",
        "app_temperature_celsius{job=~\"rl_.*\"}",
    ] {
        let (a, b) = (latest(&calm, q), latest(&prom, q));
        if format!("{a:?}") != format!("{b:?}") {
            problems.push(format!("{q}: calm {a:?}\n  Prometheus {b:?}"));
        }
    }
    let jobs_seen: BTreeSet<String> = theirs
        .iter()
        .filter_map(|l| l.get("job").cloned())
        .collect();
    println!(
        "{} label sets in Prometheus, {} in calm; jobs {jobs_seen:?}",
        theirs.len(),
        ours.len()
    );
    for l in theirs
        .iter()
        .filter(|l| l.get("__name__").is_some_and(|n| n == "app_requests_total"))
    {
        println!("  {}", show_labels(l));
    }
    assert!(
        !jobs_seen.contains("rl_dropped"),
        "the dropped target was scraped"
    );
    assert_eq!(jobs_seen.len(), 4, "{jobs_seen:?}");
    assert!(
        problems.is_empty(),
        "{} differences:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
