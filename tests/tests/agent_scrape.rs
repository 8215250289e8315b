//! The agent's scrape source against a real Prometheus 2.42 scraping the same app.
//!
//! The app (tests/python/scrape_app.py) is built on the real `prometheus_client` and
//! exposes counters (with `_created`), gauges (NaN, ±Inf, escaped label values, a label
//! named `job`), a histogram, a summary with quantiles, an info metric and a sample with
//! its own timestamp; one instance answers in OpenMetrics (Accept negotiation), one only
//! in the text format. Its values depend only on how many times the asking client (by
//! User-Agent) has scraped it, so the N-th scrape of calm-agent and of Prometheus see the
//! same body whatever the moment: the test compares, series by series, the same label
//! sets and the same first values in order (timestamps too where the body gives them),
//! up and the scrape_* report series included. Then one app goes away: both show up = 0
//! and, through the stale markers, no value for its series at once (not after the
//! 5-minute lookback); a series that vanished from the body while the app was up is gone
//! the same way.
//!
//! `agent_scrape_bad_targets`: garbage, a 100 MB body, a body that never ends, a target
//! that never answers, more samples than sample_limit: each scrape fails (up = 0 in the
//! collector) with a clear log line and a counter, the agent's peak RSS stays below what
//! buffering the 100 MB body would take, and it keeps serving /healthz.

use calm_tests::api::{same_value, show_labels, Labels, Series};
use calm_tests::process::ChildProcess;
use calm_tests::{
    now_ms, require_peer, require_python_modules, wait_for, workspace_root, Agent, Collector,
    PromApi, Prometheus,
};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Values stop changing after this many scrapes (scrape_app.py's FREEZE_AT).
const FREEZE_AT: usize = 8;

/// A running scrape_app.py.
struct App {
    process: ChildProcess,
    port: u16,
    _dir: tempfile::TempDir,
}

impl App {
    fn start(python: &Path, text_only: bool) -> App {
        let dir = tempfile::Builder::new()
            .prefix("calm-scrape-app-")
            .tempdir()
            .expect("temp dir");
        let port = calm_tests::ports::free_port();
        let mut cmd = Command::new(python);
        cmd.arg(workspace_root().join("tests/python/scrape_app.py"))
            .arg(port.to_string());
        if text_only {
            cmd.arg("--text-only");
        }
        let mut process = ChildProcess::spawn("scrape_app", cmd, &dir.path().join("app.log"))
            .expect("start scrape_app.py");
        let up = wait_for(Duration::from_secs(20), Duration::from_millis(100), || {
            if let Some(s) = process.exited() {
                panic!(
                    "scrape_app.py exited: {}\n{}",
                    ChildProcess::describe_status(&s),
                    process.log_tail(20)
                );
            }
            http()
                .get(format!("http://127.0.0.1:{port}/stats"))
                .send()
                .ok()
                .filter(|r| r.status().is_success())
        });
        assert!(
            up.is_some(),
            "scrape_app.py did not answer:\n{}",
            process.log_tail(20)
        );
        App {
            process,
            port,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Scrapes served so far, per client.
    fn scrapes(&self) -> HashMap<String, usize> {
        http()
            .get(self.url("/stats"))
            .send()
            .and_then(|r| r.json())
            .unwrap_or_default()
    }
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

/// Every raw sample of the app jobs' series in the last 10 minutes, by label set.
fn raw(api: &PromApi, selector: &str) -> BTreeMap<Labels, Vec<(i64, f64)>> {
    api.query_matrix(&format!("{selector}[10m]"), now_ms())
        .unwrap_or_else(|e| panic!("{}: {selector}[10m]: {e}", api.base()))
        .into_iter()
        .map(|Series { labels, samples }| (labels, samples))
        .collect()
}

fn instant(api: &PromApi, q: &str) -> Vec<(Labels, f64)> {
    api.query_vector(q, Some(now_ms()))
        .unwrap_or_else(|e| panic!("{}: {q}: {e}", api.base()))
        .into_iter()
        .map(|s| (s.labels, s.value))
        .collect()
}

/// The log without terminal colour codes (ESC [ ... m).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn values(samples: &[(i64, f64)]) -> Vec<String> {
    samples.iter().map(|(_, v)| format!("{v}")).collect()
}

#[test]
fn agent_scrape_matches_prometheus() {
    let Some(prom_bin) = require_peer("prometheus") else {
        return;
    };
    let Some(python) = require_python_modules(&["prometheus_client"]) else {
        return;
    };
    let collector = Collector::start();
    let om_app = App::start(&python, false);
    let text_app = App::start(&python, true);
    let targets = [("app_om", &om_app), ("app_text", &text_app)];
    let mut agent_toml = String::new();
    let mut prom_yaml =
        String::from("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n");
    for (job, app) in &targets {
        agent_toml.push_str(&format!(
            "[[scrape]]\nurl = \"{}\"\ninterval = \"1s\"\njob = \"{job}\"\n\n",
            app.url("/metrics")
        ));
        prom_yaml.push_str(&format!(
            "  - job_name: {job}\n    static_configs: [{{targets: ['127.0.0.1:{}']}}]\n",
            app.port
        ));
    }
    let agent = Agent::builder()
        .collector(&collector.url())
        .config(&agent_toml)
        .start();
    let prometheus = Prometheus::start(&prom_bin, &prom_yaml, false);
    let (calm, prom) = (collector.api(), prometheus.api());

    // Both scrapers past the point where values freeze, and the agent's samples shipped.
    let enough = wait_for(Duration::from_secs(60), Duration::from_millis(500), || {
        let done = targets.iter().all(|(_, app)| {
            let s = app.scrapes();
            s.get("calm-agent").is_some_and(|n| *n > FREEZE_AT + 1)
                && s.get("prometheus").is_some_and(|n| *n > FREEZE_AT + 1)
        });
        let shipped = || {
            let r = raw(&calm, "up{job=~\"app_.*\"}");
            r.len() == 2 && r.values().all(|s| s.len() > FREEZE_AT)
        };
        (done && shipped()).then_some(())
    });
    assert!(
        enough.is_some(),
        "scrapes: om {:?}, text {:?}; agent log:\n{}",
        om_app.scrapes(),
        text_app.scrapes(),
        agent.log_tail(30)
    );

    // 1. Same series, same first values in the same order.
    let selector = "{job=~\"app_.*\"}";
    let ours = raw(&calm, selector);
    let theirs = raw(&prom, selector);
    let mut problems = Vec::new();
    for labels in theirs.keys().filter(|l| !ours.contains_key(*l)) {
        problems.push(format!("only Prometheus has {}", show_labels(labels)));
    }
    for labels in ours.keys().filter(|l| !theirs.contains_key(*l)) {
        problems.push(format!("only calm has {}", show_labels(labels)));
    }
    let mut compared = 0;
    for (labels, p) in &theirs {
        let Some(c) = ours.get(labels) else { continue };
        let name = labels.get("__name__").map(String::as_str).unwrap_or("");
        if name == "scrape_duration_seconds" {
            continue; // a measurement, not a value of the app
        }
        // app_session_active exists in 3 scrapes only; everything else in all of them.
        let n = if name == "app_session_active" {
            3
        } else {
            FREEZE_AT
        };
        if p.len() < n || c.len() < n {
            problems.push(format!(
                "{}: fewer than {n} samples (calm {}, Prometheus {})",
                show_labels(labels),
                c.len(),
                p.len()
            ));
            continue;
        }
        let same = (0..n).all(|i| same_value(p[i].1, c[i].1));
        if !same {
            problems.push(format!(
                "{}: calm {:?} vs Prometheus {:?}",
                show_labels(labels),
                values(&c[..n]),
                values(&p[..n])
            ));
        }
        // A timestamp written in the body is kept by both.
        if name == "app_batch_size" && (0..n).any(|i| p[i].0 != c[i].0) {
            problems.push(format!(
                "{}: timestamps calm {:?} vs Prometheus {:?}",
                show_labels(labels),
                &c[..n],
                &p[..n]
            ));
        }
        compared += 1;
    }
    let names: std::collections::BTreeSet<&str> = theirs
        .keys()
        .filter_map(|l| l.get("__name__").map(String::as_str))
        .collect();
    println!(
        "compared {compared} series ({} in Prometheus, {} in calm): {names:?}",
        theirs.len(),
        ours.len()
    );
    assert!(
        problems.is_empty(),
        "{} differences:\n{}",
        problems.len(),
        problems.join("\n")
    );
    // The comparison covered what it claims to.
    for must in [
        "app_requests_total",
        "app_requests_created",
        "app_latency_seconds_bucket",
        "app_payload_bytes",
        "app_payload_bytes_sum",
        "app_build_info",
        "app_batch_size",
        "app_clash",
        "up",
        "scrape_samples_scraped",
        "scrape_series_added",
    ] {
        assert!(names.contains(must), "{must} missing from {names:?}");
    }
    assert!(theirs
        .keys()
        .any(|l| l.get("exported_job").is_some_and(|v| v == "inner")));
    assert!(
        theirs.len() >= 2 * 20,
        "too few series compared: {}",
        theirs.len()
    );

    // 2. A series that left the body is stale now in both (not 5 minutes later).
    for api in [&calm, &prom] {
        let left = instant(api, "app_session_active");
        assert!(
            left.is_empty(),
            "{}: app_session_active still there: {left:?}",
            api.base()
        );
    }

    // 3. The OpenMetrics app goes away: up = 0 and its series are stale in both.
    let App { process, .. } = om_app;
    drop(process);
    let gone = wait_for(Duration::from_secs(20), Duration::from_millis(500), || {
        let down = |api: &PromApi| {
            instant(api, "up{job=\"app_om\"}")
                .first()
                .is_some_and(|(_, v)| *v == 0.0)
        };
        (down(&calm) && down(&prom)).then_some(())
    });
    assert!(
        gone.is_some(),
        "up did not turn 0; agent log:\n{}",
        agent.log_tail(20)
    );
    for api in [&calm, &prom] {
        let left = instant(api, "app_requests_total{job=\"app_om\"}");
        assert!(
            left.is_empty(),
            "{}: series of the dead target still answer: {left:?}",
            api.base()
        );
        let alive = instant(api, "app_requests_total{job=\"app_text\"}");
        assert_eq!(alive.len(), 2, "{}: the other target's series", api.base());
    }
    assert!(
        agent.log().contains("scrape failed"),
        "the agent logs the failed scrape:\n{}",
        agent.log_tail(20)
    );
}

#[test]
fn agent_scrape_bad_targets() {
    let Some(python) = require_python_modules(&["prometheus_client"]) else {
        return;
    };
    let collector = Collector::start();
    let app = App::start(&python, false);
    let bad = [
        ("garbage", "/garbage", "", "not valid exposition format"),
        ("huge", "/huge", "", "larger than body_size_limit"),
        // Whichever comes first: the byte limit or the timeout.
        ("endless", "/endless", "", "body_size_limit|timed out"),
        ("hang", "/hang", "", "timed out"),
        (
            "many",
            "/many",
            "sample_limit = 1000\n",
            "sample limit exceeded",
        ),
    ];
    let mut toml = format!(
        "[[scrape]]\nurl = \"{}\"\ninterval = \"2s\"\njob = \"good\"\n\n",
        app.url("/metrics")
    );
    for (job, path, extra, _) in &bad {
        toml.push_str(&format!(
            "[[scrape]]\nurl = \"{}\"\ninterval = \"2s\"\ntimeout = \"2s\"\njob = \"{job}\"\n{extra}\n",
            app.url(path)
        ));
    }
    // One more target from the command line: added to the file's, with the defaults.
    let flag_target = app.url("/metrics?from=flag");
    let agent = Agent::builder()
        .collector(&collector.url())
        .config(&toml)
        .args(&["--scrape", &flag_target])
        .start();
    let calm = collector.api();
    // At least two scrapes of every target have reached the collector.
    let seen = wait_for(Duration::from_secs(60), Duration::from_millis(500), || {
        let ups = raw(&calm, "up");
        let by_job: HashMap<String, usize> = ups
            .iter()
            .filter_map(|(l, s)| l.get("job").map(|j| (j.clone(), s.len())))
            .collect();
        let all = std::iter::once("good")
            .chain(bad.iter().map(|b| b.0))
            .all(|j| by_job.get(j).is_some_and(|n| *n >= 2));
        all.then_some(ups)
    });
    let ups = seen.unwrap_or_else(|| {
        panic!(
            "not every target reported twice; agent log:\n{}",
            agent.log_tail(40)
        )
    });
    let log = strip_ansi(&agent.log());
    for (labels, samples) in &ups {
        let job = labels.get("job").map(String::as_str).unwrap_or("");
        if job == "node" {
            continue;
        }
        let want = if job == "good" || job == "scrape" {
            1.0
        } else {
            0.0
        };
        assert!(
            samples.iter().all(|(_, v)| *v == want),
            "up{{job={job:?}}} = {:?}, want {want}",
            values(samples)
        );
    }
    for (job, _, _, message) in &bad {
        let line = log.lines().find(|l| {
            l.contains("scrape failed")
                && message.split('|').any(|m| l.contains(m))
                && l.contains(&format!("job={job} "))
        });
        assert!(
            line.is_some(),
            "no log line for {job} containing {message:?}:\n{}",
            agent.log_tail(40)
        );
        println!("{job}: {}", line.unwrap_or_default().trim());
    }
    let from_flag = format!("scraping target url={flag_target} job=scrape interval=15s");
    assert!(
        log.contains(&from_flag),
        "--scrape target not started:\n{}",
        agent.log_tail(40)
    );
    let scraped = instant(&calm, "scrape_samples_scraped{job=\"many\"}");
    assert_eq!(
        scraped.first().map(|s| s.1),
        Some(5000.0),
        "samples counted though refused"
    );
    for (counter, at_least) in [
        ("calm_agent_scrape_parse_errors_total", 1.0),
        ("calm_agent_scrape_body_too_large_total", 1.0),
        ("calm_agent_scrape_timeouts_total", 1.0),
        ("calm_agent_scrape_sample_limit_exceeded_total", 1.0),
    ] {
        let v = agent.metric(counter).unwrap_or(0.0);
        assert!(v >= at_least, "{counter} = {v}, want >= {at_least}");
    }
    // Nothing of the refused bodies was stored.
    assert!(
        instant(&calm, "big_metric").is_empty(),
        "samples of a failed scrape were stored"
    );
    let hwm = agent.peak_rss_kib().expect("agent VmHWM");
    println!("agent peak RSS (VmHWM): {} MiB", hwm / 1024);
    // The idle debug agent peaks at ~35 MiB (host source, sled cache); two bodies held
    // at the 16 MiB body_size_limit at once add ~32 MiB, allocator slack some more
    // (62-75 MiB seen). Buffering the 100 MB body alone would take it past 135 MiB.
    assert!(
        hwm < 128 * 1024,
        "agent peak RSS {} MiB: a 100 MB or endless body must not be buffered",
        hwm / 1024
    );
    let health = http().get(format!("{}/healthz", agent.url())).send();
    assert!(
        health.is_ok_and(|r| r.status().is_success()),
        "agent /healthz"
    );
}
