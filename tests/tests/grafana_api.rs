//! Grafana's calls: the requests Grafana 10/11's Prometheus data source sends (health
//! check, metric browser, query editor, dashboards) go to the collector and to a real
//! Prometheus 2.42 holding the same data, and the answers are compared field by field:
//! the same JSON structure and types everywhere, and the same data where data must be
//! equal (label names and values, series, samples to 1e-9 relative). For
//! `status/buildinfo` only the field set and types are compared.
//!
//! The samples sit 3 s off the minute grid that Grafana aligns its queries to: on the
//! grid, Prometheus 2.x (range windows `[t-r, t]`) and Prometheus 3 and the collector
//! (`(t-r, t]`) legitimately disagree about the sample on the left boundary.
//!
//! `/api/v1/metadata` is checked against Prometheus' own answer too: Prometheus scrapes
//! itself and remote-writes (with `send_metadata`) to the collector, which must then
//! answer Prometheus' metadata for the families it received.

use calm_tests::api::same_value;
use calm_tests::write::{request, series, RemoteWriter};
use calm_tests::{fmt_ts, now_ms, require_peer, wait_for, Collector, PromApi, Prometheus};
use serde_json::Value;
use std::time::Duration;

/// Sample interval of the written data.
const STEP_MS: i64 = 15_000;
/// Samples per series: 30 minutes.
const POINTS: i64 = 121;

/// Fields the collector's buildinfo may have beyond Prometheus': `application` is how
/// Prometheus-compatible servers (Mimir, Cortex) name themselves to Grafana.
const EXTRA_BUILDINFO_FIELDS: &[&str] = &["application"];

/// How two answers are compared.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Structure, types and data.
    Data,
    /// Structure and types only.
    Types,
}

/// Values equal to 1e-9 relative (NaN equals NaN).
fn close(a: f64, b: f64) -> bool {
    same_value(a, b)
        || (a.is_finite() && b.is_finite() && (a - b).abs() <= 1e-9 * a.abs().max(b.abs()))
}

/// The JSON type's name, for messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Sorts arrays of objects (series, query results) by their text, so that answers
/// listing the same things in another order compare equal; arrays of strings (label
/// names and values) keep their order, which the API defines (sorted).
fn normalise(v: &Value) -> Value {
    match v {
        Value::Array(a) => {
            let mut items: Vec<Value> = a.iter().map(normalise).collect();
            if items.iter().all(Value::is_object) {
                items.sort_by_key(|x| x.to_string());
            }
            Value::Array(items)
        }
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), normalise(v))).collect())
        }
        other => other.clone(),
    }
}

/// Compares `c` (the collector) with `p` (Prometheus) at `path`, appending each
/// difference to `errs`. Strings that are sample values ("1.5", "NaN") compare as
/// numbers.
fn compare(path: &str, p: &Value, c: &Value, mode: Mode, errs: &mut Vec<String>) {
    match (p, c) {
        (Value::Object(po), Value::Object(co)) => {
            for k in po.keys().filter(|k| !co.contains_key(*k)) {
                errs.push(format!("{path}: the collector lacks field {k:?}"));
            }
            for k in co.keys().filter(|k| !po.contains_key(*k)) {
                if !(path == "buildinfo.data" && EXTRA_BUILDINFO_FIELDS.contains(&k.as_str())) {
                    errs.push(format!("{path}: the collector has extra field {k:?}"));
                }
            }
            for (k, pv) in po {
                if let Some(cv) = co.get(k) {
                    compare(&format!("{path}.{k}"), pv, cv, mode, errs);
                }
            }
        }
        (Value::Array(pa), Value::Array(ca)) => {
            if mode == Mode::Data && pa.len() != ca.len() {
                errs.push(format!(
                    "{path}: {} elements in Prometheus' answer, {} in the collector's",
                    pa.len(),
                    ca.len()
                ));
            }
            for (i, (pv, cv)) in pa.iter().zip(ca).enumerate() {
                compare(&format!("{path}[{i}]"), pv, cv, mode, errs);
            }
        }
        (Value::String(ps), Value::String(cs)) if mode == Mode::Data && ps != cs => {
            let as_num = |s: &str| calm_tests::api::parse_value(s).ok();
            match (as_num(ps), as_num(cs)) {
                (Some(a), Some(b)) if close(a, b) => {}
                _ => errs.push(format!("{path}: Prometheus {ps:?}, the collector {cs:?}")),
            }
        }
        (Value::Number(pn), Value::Number(cn)) if mode == Mode::Data => {
            let (a, b) = (
                pn.as_f64().unwrap_or(f64::NAN),
                cn.as_f64().unwrap_or(f64::NAN),
            );
            if !close(a, b) {
                errs.push(format!("{path}: Prometheus {pn}, the collector {cn}"));
            }
        }
        _ if kind(p) != kind(c) => errs.push(format!(
            "{path}: Prometheus has a {} ({p}), the collector a {} ({c})",
            kind(p),
            kind(c)
        )),
        _ => {}
    }
}

/// One of Grafana's requests.
struct Call {
    name: &'static str,
    post: bool,
    path: String,
    params: Vec<(&'static str, String)>,
    mode: Mode,
    /// Both must fail (same status and error type; messages are worded differently).
    fails: bool,
}

impl Call {
    fn get(name: &'static str, path: &str, params: Vec<(&'static str, String)>) -> Call {
        Call {
            name,
            post: false,
            path: path.into(),
            params,
            mode: Mode::Data,
            fails: false,
        }
    }

    fn post(name: &'static str, path: &str, params: Vec<(&'static str, String)>) -> Call {
        Call {
            post: true,
            ..Call::get(name, path, params)
        }
    }
}

/// Sends `call` to both and compares status and body; returns the differences.
fn check(papi: &PromApi, capi: &PromApi, call: &Call) -> Vec<String> {
    let params: Vec<(&str, String)> = call.params.iter().map(|(k, v)| (*k, v.clone())).collect();
    let ask = |api: &PromApi| {
        api.call(call.post, &call.path, &params)
            .unwrap_or_else(|e| panic!("{} {}: {e:#}", call.name, call.path))
    };
    let ((ps, pv), (cs, cv)) = (ask(papi), ask(capi));
    let mut errs = Vec::new();
    if ps != cs {
        errs.push(format!(
            "{}: HTTP {ps} from Prometheus, {cs} from the collector",
            call.name
        ));
    }
    let expected = if call.fails { "error" } else { "success" };
    if pv["status"] != expected {
        errs.push(format!(
            "{}: Prometheus' status is not {expected}: {pv}",
            call.name
        ));
    }
    if call.fails && pv["errorType"] != cv["errorType"] {
        errs.push(format!("{}: error types differ", call.name));
    }
    compare(
        call.name,
        &normalise(&pv),
        &normalise(&cv),
        call.mode,
        &mut errs,
    );
    if !errs.is_empty() {
        errs.push(format!(
            "{} {} {:?}\n  Prometheus: {pv}\n  collector:  {cv}",
            if call.post { "POST" } else { "GET" },
            call.path,
            call.params
        ));
    }
    errs
}

/// A small data set: counters, a gauge and a histogram over 30 minutes ending at `end`.
fn data(end: i64) -> Vec<calm_wire::prompb::WriteRequest> {
    let start = end - (POINTS - 1) * STEP_MS;
    let ts = |i: i64| start + i * STEP_MS;
    let mut all = Vec::new();
    for (job, k) in [("api", 1.0), ("web", 2.0)] {
        for inst in ["a:9100", "b:9100"] {
            for method in ["GET", "POST"] {
                let s: Vec<(i64, f64)> = (0..POINTS).map(|i| (ts(i), (i * i) as f64 * k)).collect();
                let l = [("job", job), ("instance", inst), ("method", method)];
                all.push(series("http_requests_total", &l, &s));
            }
            let s: Vec<(i64, f64)> = (0..POINTS)
                .map(|i| (ts(i), 1e9 + (i as f64 * 0.7).sin() * 1e8 * k))
                .collect();
            all.push(series(
                "memory_bytes",
                &[("job", job), ("instance", inst)],
                &s,
            ));
        }
    }
    for (le, share) in [("0.1", 0.3), ("1", 0.8), ("+Inf", 1.0)] {
        let s: Vec<(i64, f64)> = (0..POINTS)
            .map(|i| (ts(i), (i as f64 * 40.0 * share).floor()))
            .collect();
        all.push(series(
            "latency_seconds_bucket",
            &[("job", "api"), ("le", le)],
            &s,
        ));
    }
    // Prometheus takes samples at most an hour older than its newest: one request
    // per 5 minutes of data, in time order.
    let chunk = 20usize;
    (0..POINTS as usize)
        .step_by(chunk)
        .map(|first| {
            request(
                all.iter()
                    .map(|s| {
                        let mut s = s.clone();
                        s.samples = s.samples.iter().skip(first).take(chunk).cloned().collect();
                        s
                    })
                    .collect(),
            )
        })
        .collect()
}

/// Grafana's requests, in the order a data source test, the metric browser, the query
/// editor and a dashboard panel send them.
fn grafana_calls(start: i64, end: i64) -> Vec<Call> {
    let (s, e) = (fmt_ts(start), fmt_ts(end));
    let range = |extra: Vec<(&'static str, String)>| {
        let mut v = extra;
        v.push(("start", s.clone()));
        v.push(("end", e.clone()));
        v
    };
    // Panel queries: start and end aligned to the step, as Grafana sends them.
    let step = 60_000;
    let (qs, qe) = (
        start.div_euclid(step) * step + step,
        end.div_euclid(step) * step,
    );
    let query_range = |q: &str| {
        vec![
            ("query", q.to_string()),
            ("start", fmt_ts(qs)),
            ("end", fmt_ts(qe)),
            ("step", "60".to_string()),
        ]
    };
    let mut buildinfo = Call::get("buildinfo", "/api/v1/status/buildinfo", vec![]);
    buildinfo.mode = Mode::Types;
    vec![
        buildinfo,
        Call::get("labels", "/api/v1/labels", range(vec![])),
        Call::post("labels (POST)", "/api/v1/labels", range(vec![])),
        Call::get(
            "metric names",
            "/api/v1/label/__name__/values",
            range(vec![]),
        ),
        Call::get(
            "metric names matching",
            "/api/v1/label/__name__/values",
            range(vec![("match[]", "{job=\"api\"}".into())]),
        ),
        Call::get("job values", "/api/v1/label/job/values", vec![]),
        Call::get(
            "instance values matching",
            "/api/v1/label/instance/values",
            range(vec![("match[]", "http_requests_total{job=\"web\"}".into())]),
        ),
        Call::get(
            "series",
            "/api/v1/series",
            range(vec![("match[]", "http_requests_total{job=\"api\"}".into())]),
        ),
        Call::get(
            "series, two matchers",
            "/api/v1/series",
            range(vec![
                ("match[]", "memory_bytes".into()),
                ("match[]", "latency_seconds_bucket{le=\"1\"}".into()),
            ]),
        ),
        Call::get("metadata", "/api/v1/metadata", vec![]),
        Call::get(
            "metadata of a metric",
            "/api/v1/metadata",
            vec![("metric", "http_requests_total".into())],
        ),
        Call::get(
            "metadata, limit",
            "/api/v1/metadata",
            vec![("limit", "1".into())],
        ),
        Call::post(
            "query_range rate",
            "/api/v1/query_range",
            query_range("sum by (job) (rate(http_requests_total[5m]))"),
        ),
        Call::post(
            "query_range gauge",
            "/api/v1/query_range",
            query_range("memory_bytes"),
        ),
        Call::post(
            "query_range histogram_quantile",
            "/api/v1/query_range",
            query_range("histogram_quantile(0.9, sum by (le) (rate(latency_seconds_bucket[5m])))"),
        ),
        Call::post(
            "query_range scalar",
            "/api/v1/query_range",
            query_range("1 + 1"),
        ),
        Call::post(
            "query instant",
            "/api/v1/query",
            vec![
                ("query", "topk(2, rate(http_requests_total[5m]))".into()),
                ("time", fmt_ts(qe)),
            ],
        ),
        Call::post(
            "query instant matrix",
            "/api/v1/query",
            vec![
                ("query", "memory_bytes{instance=\"a:9100\"}[1m]".into()),
                ("time", fmt_ts(qe)),
            ],
        ),
        Call::post(
            "query scalar",
            "/api/v1/query",
            vec![
                ("query", "scalar(count(up or vector(1)))".into()),
                ("time", fmt_ts(qe)),
            ],
        ),
        Call::get(
            "format_query",
            "/api/v1/format_query",
            vec![(
                "query",
                "sum(rate(http_requests_total{job=\"api\"}[5m]))by(instance)/ on(instance) group_left count(up)"
                    .into(),
            )],
        ),
        Call::post(
            "format_query long",
            "/api/v1/format_query",
            vec![(
                "query",
                "histogram_quantile(0.9, sum by (le, handler, instance) (rate(latency_seconds_bucket{job=\"api\",handler=~\"/api/.*\"}[5m]))) > 0.5".into(),
            )],
        ),
        Call {
            mode: Mode::Types,
            fails: true,
            ..Call::get(
                "format_query syntax error",
                "/api/v1/format_query",
                vec![("query", "sum(".into())],
            )
        },
        Call::get(
            "query_exemplars",
            "/api/v1/query_exemplars",
            range(vec![("query", "http_requests_total".into())]),
        ),
        Call {
            mode: Mode::Types,
            fails: true,
            ..Call::post(
                "query syntax error",
                "/api/v1/query",
                vec![("query", "sum(rate(x[5m])".into()), ("time", fmt_ts(qe))],
            )
        },
    ]
}

#[test]
fn grafana_requests_are_answered_like_prometheus() {
    let Some(prom_bin) = require_peer("prometheus") else {
        return;
    };
    let collector = Collector::start();
    let prom = Prometheus::start(&prom_bin, "global:\n  scrape_interval: 15s\n", true);
    let end = (now_ms() - 60_000).div_euclid(STEP_MS) * STEP_MS + 3_000;
    for (side, url) in [
        ("Prometheus", format!("{}/api/v1/write", prom.url())),
        ("the collector", collector.write_url()),
    ] {
        let w = RemoteWriter::new(&url);
        for r in data(end) {
            let a = w.send(&r).unwrap_or_else(|e| panic!("{side}: {e:#}"));
            assert!(
                a.ok(),
                "{side} refused the data: HTTP {}: {}",
                a.status,
                a.body
            );
        }
    }
    let (papi, capi) = (prom.api(), collector.api());
    let start = end - (POINTS - 1) * STEP_MS;
    let mut errs = Vec::new();
    for call in grafana_calls(start - 60_000, end + 60_000) {
        errs.extend(check(&papi, &capi, &call));
    }
    assert!(
        errs.is_empty(),
        "the collector's answers differ from Prometheus':\n{}",
        errs.join("\n")
    );
}

/// Waits until the collector knows the metadata of `family`.
fn wait_for_metadata(capi: &PromApi, family: &str) -> bool {
    wait_for(Duration::from_secs(60), Duration::from_millis(500), || {
        let data = capi
            .get_data("/api/v1/metadata", &[("metric", family.to_string())])
            .ok()?;
        data.get(family).is_some().then_some(())
    })
    .is_some()
}

#[test]
fn metadata_sent_by_prometheus_equals_its_own() {
    let Some(prom_bin) = require_peer("prometheus") else {
        return;
    };
    let collector = Collector::start();
    let config = format!(
        r#"
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["127.0.0.1:{port}"]
remote_write:
  - url: {write_url}
    queue_config:
      batch_send_deadline: 1s
    metadata_config:
      send: true
      send_interval: 1s
"#,
        write_url = collector.write_url(),
        port = Prometheus::PORT_PLACEHOLDER,
    );
    // Prometheus scrapes itself.
    let prom = Prometheus::start(&prom_bin, &config, false);
    let (papi, capi) = (prom.api(), collector.api());
    let families = [
        "prometheus_http_requests_total",
        "prometheus_build_info",
        "go_goroutines",
        "prometheus_http_request_duration_seconds",
        "go_gc_duration_seconds",
    ];
    assert!(
        wait_for_metadata(&capi, families[0]),
        "no metadata reached the collector within 60 s; Prometheus log:\n{}",
        prom.log_tail(20)
    );
    let mut errs = Vec::new();
    for f in families {
        let call = Call::get(
            "metadata of a family",
            "/api/v1/metadata",
            vec![("metric", f.into())],
        );
        errs.extend(check(&papi, &capi, &call));
    }
    // Every family the collector lists, Prometheus lists the same way.
    let all = capi
        .get_data("/api/v1/metadata", &[])
        .expect("collector metadata");
    let theirs = papi
        .get_data("/api/v1/metadata", &[])
        .expect("Prometheus metadata");
    let ours = all.as_object().expect("metadata is an object");
    assert!(ours.len() >= 20, "only {} families: {all}", ours.len());
    for (name, entries) in ours {
        compare(
            &format!("metadata[{name}]"),
            &theirs[name.as_str()],
            entries,
            Mode::Data,
            &mut errs,
        );
    }
    for (params, max_families, max_entries) in [
        (vec![("limit", "2".to_string())], 2, usize::MAX),
        (vec![("limit_per_metric", "1".to_string())], usize::MAX, 1),
    ] {
        let data = capi
            .get_data("/api/v1/metadata", &params)
            .expect("metadata with limits");
        let m = data.as_object().expect("object");
        assert!(
            m.len() <= max_families && !m.is_empty(),
            "{params:?}: {data}"
        );
        assert!(
            m.values()
                .all(|l| l.as_array().is_some_and(|l| l.len() <= max_entries)),
            "{params:?}: {data}"
        );
    }
    assert!(errs.is_empty(), "metadata differs:\n{}", errs.join("\n"));
}
