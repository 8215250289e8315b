//! The same rule file (tests/rules/compare.yml: alerts with `for`, `keep_firing_for`,
//! templated labels and annotations, a recording rule and an alert on it) given to a
//! real Prometheus 2.42 and to Calm, over the same data remote-written to both.
//!
//! How the timing is made comparable without flakiness: both read the rule file from
//! the same absolute path, so both put the group on the same evaluation slots (Calm
//! uses Prometheus' slot offset, a hash of file and group name); the data for the
//! whole test (including the next 30 s) is written before the transitions, so every
//! evaluation sees the same samples whenever it runs. The same alerts must then go
//! pending and firing at the same evaluation steps, which the test checks exactly on
//! the `ALERTS`, `ALERTS_FOR_STATE` and recorded series both write back (every
//! sample's timestamp is an evaluation step), and on `/api/v1/alerts` (labels,
//! annotations, state, activeAt, value) and `/api/v1/rules` of both at several points.
//!
//! Tolerated differences, each named: `evaluationTime` and `lastEvaluation` (wall
//! clock of each process; only their presence and type are compared); Prometheus'
//! `activeAt` carries nanoseconds, Calm's milliseconds (compared at ms).

use calm_tests::api::Series;
use calm_tests::write::{request, series, RemoteWriter};
use calm_tests::{now_ms, require_peer, workspace_root, Collector, PromApi, Prometheus};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// The value of each instance's `calm_test_value` at `t`, relative to the transition
/// time `tr` (ms).
fn value(instance: &str, t: i64, tr: i64) -> f64 {
    let d = t - tr;
    match instance {
        "a" if (0..7_000).contains(&d) => 7.0,
        "a" if (7_000..14_000).contains(&d) => 9.5,
        "a" => 1.0,
        "b" if (2_000..4_000).contains(&d) => 6.0,
        "b" => 2.0,
        _ => 3.0,
    }
}

fn sleep_until(t_ms: i64) {
    let now = now_ms();
    if t_ms > now {
        std::thread::sleep(Duration::from_millis((t_ms - now) as u64));
    }
}

/// `/api/v1/alerts` reduced to what must be equal: sorted by labels, activeAt at ms.
fn alerts(api: &PromApi) -> Vec<Value> {
    let data = api
        .get_data("/api/v1/alerts", &[])
        .expect("GET /api/v1/alerts");
    let mut list: Vec<Value> = data["alerts"].as_array().cloned().unwrap_or_default();
    for a in &mut list {
        let at = a["activeAt"].as_str().unwrap_or("");
        let ms = chrono_ms(at);
        a["activeAt"] = Value::from(ms);
    }
    list.sort_by_key(|a| a["labels"].to_string());
    list
}

fn chrono_ms(s: &str) -> i64 {
    calm_tests::webhook::rfc3339_ms(s)
}

/// Waits (≤ 3 s) until both answer the same alerts: they evaluate the same slots, so
/// a difference can only be a read that fell between the two processes' evaluation of
/// one slot.
fn compare_alerts(prom: &PromApi, calm: &PromApi, at: &str) -> Vec<Value> {
    let mut last = (Vec::new(), Vec::new());
    for _ in 0..30 {
        let (p, c) = (alerts(prom), alerts(calm));
        if p == c {
            return p;
        }
        last = (p, c);
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "/api/v1/alerts differ {at}:\nPrometheus: {}\nCalm:       {}",
        serde_json::to_string_pretty(&last.0).unwrap_or_default(),
        serde_json::to_string_pretty(&last.1).unwrap_or_default()
    );
}

fn states(list: &[Value]) -> BTreeMap<String, String> {
    list.iter()
        .map(|a| {
            let l = &a["labels"];
            (
                format!(
                    "{}{{{}}}",
                    l["alertname"].as_str().unwrap_or(""),
                    l["instance"].as_str().or(l["job"].as_str()).unwrap_or("")
                ),
                a["state"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Raw samples of `selector[40s]` at `t`, only those at or after `from`.
fn raw(api: &PromApi, selector: &str, t: i64, from: i64) -> Vec<Series> {
    let mut m = api
        .query_matrix(&format!("{selector}[40s]"), t)
        .unwrap_or_else(|e| panic!("{selector}: {e}"));
    for s in &mut m {
        s.samples.retain(|(ts, _)| *ts >= from);
    }
    m.retain(|s| !s.samples.is_empty());
    m
}

/// `/api/v1/rules` with the wall-clock fields replaced by their JSON type.
fn rules_shape(api: &PromApi) -> Value {
    let mut d = api
        .get_data("/api/v1/rules", &[])
        .expect("GET /api/v1/rules");
    fn scrub(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    match k.as_str() {
                        "evaluationTime" => {
                            *x = Value::from(if x.is_number() {
                                "number"
                            } else {
                                "not a number"
                            })
                        }
                        "lastEvaluation" | "activeAt" => {
                            *x = Value::from(if x.as_str().is_some_and(|s| s.ends_with('Z')) {
                                "time"
                            } else {
                                "not a time"
                            })
                        }
                        "file" => *x = Value::from("<file>"),
                        _ => scrub(x),
                    }
                }
            }
            Value::Array(a) => {
                for x in a.iter_mut() {
                    scrub(x);
                }
                a.sort_by_key(|x| x.to_string());
            }
            _ => {}
        }
    }
    scrub(&mut d);
    d
}

#[test]
fn same_alerts_at_the_same_evaluation_steps_as_prometheus() {
    let Some(prom_bin) = require_peer("prometheus") else {
        return;
    };
    let rule_file = workspace_root().join("tests/rules/compare.yml");
    let rule_path = rule_file.display().to_string();
    let prom = Prometheus::start(
        &prom_bin,
        &format!("global:\n  evaluation_interval: 1s\nrule_files:\n  - {rule_path}\n"),
        true,
    );
    let calm = Collector::start_with_config(
        &format!("rule_files = [\"{rule_path}\"]\nevaluation_interval = \"1s\"\n"),
        &[],
    );
    let (papi, capi) = (prom.api(), calm.api());

    // The whole data set, transitions included, is written now.
    let start = now_ms();
    let tr = (start / 1000 + 6) * 1000 + 250;
    let mut ts = Vec::new();
    for inst in ["a", "b", "c"] {
        let mut samples = Vec::new();
        let mut t = tr - 30_000;
        while t <= tr + 30_000 {
            samples.push((t, value(inst, t, tr)));
            t += 500;
        }
        ts.push(series(
            "calm_test_value",
            &[("instance", inst), ("job", "app")],
            &samples,
        ));
    }
    let req = request(ts);
    for (name, url) in [
        ("Prometheus", format!("{}/api/v1/write", prom.url())),
        ("Calm", calm.write_url()),
    ] {
        let a = RemoteWriter::new(&url)
            .send(&req)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(a.ok(), "{name} refused the data: {} {}", a.status, a.body);
    }

    // Checkpoints: before, while pending, firing, critical, after resolution.
    let mut seen: Vec<BTreeMap<String, String>> = Vec::new();
    for (offset, label) in [
        (-1_000, "before the transition"),
        (1_500, "1.5 s after the transition"),
        (3_500, "3.5 s after"),
        (5_500, "5.5 s after"),
        (9_500, "9.5 s after"),
        (13_500, "13.5 s after"),
        (17_500, "17.5 s after (resolved)"),
    ] {
        sleep_until(tr + offset);
        let list = compare_alerts(&papi, &capi, label);
        seen.push(states(&list));
    }
    let _ = seen;
    // Every evaluation step, exactly: the series both wrote back.
    sleep_until(tr + 20_000);
    let at = tr + 19_000;
    for selector in ["ALERTS", "ALERTS_FOR_STATE", "job:calm_test_value:sum"] {
        let (p, c) = (
            raw(&papi, selector, at, tr - 3_000),
            raw(&capi, selector, at, tr - 3_000),
        );
        assert!(!p.is_empty(), "Prometheus wrote no {selector}");
        assert_eq!(
            p, c,
            "{selector}: Prometheus and Calm differ in the evaluation steps (timestamps) or values"
        );
        if selector == "ALERTS" {
            // Not vacuous: the alerts went through their states (exact, from the
            // series, not from wall-clock checkpoints).
            let have: Vec<String> = p
                .iter()
                .map(|s| {
                    let l = &s.labels;
                    format!(
                        "{}{{{}}}={}",
                        l.get("alertname").map(String::as_str).unwrap_or(""),
                        l.get("instance")
                            .or(l.get("job"))
                            .map(String::as_str)
                            .unwrap_or(""),
                        l.get("alertstate").map(String::as_str).unwrap_or("")
                    )
                })
                .collect();
            for want in [
                "ValueHigh{a}=pending",
                "ValueHigh{a}=firing",
                "ValueHigh{b}=pending",
                "ValueCritical{a}=pending",
                "ValueCritical{a}=firing",
                "JobSumHigh{app}=pending",
                "JobSumHigh{app}=firing",
                "KeepFiring{b}=firing",
            ] {
                assert!(
                    have.iter().any(|s| s == want),
                    "never {want}; ALERTS has {have:?}"
                );
            }
            assert!(
                !have.iter().any(|s| s == "ValueHigh{b}=firing"),
                "b was above 5 for 2 s only, less than `for: 3s`"
            );
            let keep = p
                .iter()
                .find(|s| s.labels.get("alertname").map(String::as_str) == Some("KeepFiring"))
                .map(|s| s.samples.len())
                .unwrap_or(0);
            assert!(
                keep >= 5,
                "KeepFiring held for 2 s of data + 3 s keep_firing_for: {keep} steps"
            );
        }
    }
    let (p, c) = (rules_shape(&papi), rules_shape(&capi));
    assert_eq!(
        p,
        c,
        "/api/v1/rules differ:\nPrometheus: {}\nCalm:       {}",
        serde_json::to_string_pretty(&p).unwrap_or_default(),
        serde_json::to_string_pretty(&c).unwrap_or_default()
    );
    drop(prom);
}
