//! The real OpenTelemetry Python SDK pushes a counter, a gauge and a histogram over
//! OTLP/HTTP (protobuf); a hand-written OTLP/JSON request covers the JSON encoding.
//! The collector must store them under the names, labels and values that
//! OpenTelemetry's Prometheus-compatibility rules give.

use calm_tests::api::{show_labels, InstantSample, Labels};
use calm_tests::otel_sdk::python_sdk_push;
use calm_tests::write::post;
use calm_tests::{now_ms, Collector, PromApi};

/// Queries `query` at the server's now and returns the vector, sorted by labels.
fn vector(api: &PromApi, query: &str) -> Vec<InstantSample> {
    let mut v = api
        .query_vector(query, None)
        .unwrap_or_else(|e| panic!("query {query}: {e:#}"));
    v.sort_by(|a, b| a.labels.cmp(&b.labels));
    v
}

/// `otel_scope_*` labels are allowed (the spec says they SHOULD be added); when present
/// they must name the SDK's meter. Returns the labels without them.
fn without_scope(labels: &Labels, scope: &str) -> Labels {
    if let Some(name) = labels.get("otel_scope_name") {
        assert_eq!(name, scope, "otel_scope_name in {}", show_labels(labels));
    }
    labels
        .iter()
        .filter(|(k, _)| !k.starts_with("otel_scope_"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Asserts exactly one series for `query`, with these labels (scope labels aside) and value.
fn expect_one(api: &PromApi, query: &str, scope: &str, want: &[(&str, &str)], value: f64) {
    let got = vector(api, query);
    assert_eq!(
        got.len(),
        1,
        "{query}: expected exactly one series, got {}: {got:?}",
        got.len()
    );
    assert_eq!(
        without_scope(&got[0].labels, scope),
        labels(want),
        "{query}: labels"
    );
    assert!(
        (got[0].value - value).abs() < 1e-9,
        "{query}: expected value {value}, got {}",
        got[0].value
    );
}

/// Pushes the Python SDK's metrics to the collector (with gzip bodies if asked).
/// Returns the time just before the push, or None when the SDK is not installed.
fn push_with_python_sdk(collector: &Collector, gzip: bool) -> Option<i64> {
    let endpoint = format!("{}/v1/metrics", collector.url());
    let before = now_ms();
    python_sdk_push(&endpoint, gzip, || {
        format!("collector log:\n{}", collector.log_tail(20))
    })?;
    Some(before)
}

#[test]
fn python_sdk_metrics_arrive_with_prometheus_names() {
    let collector = Collector::start();
    let Some(before) = push_with_python_sdk(&collector, false) else {
        return;
    };
    check_python_sdk_metrics(&collector, before);
}

#[test]
fn python_sdk_gzip_export_is_accepted() {
    let collector = Collector::start();
    let Some(before) = push_with_python_sdk(&collector, true) else {
        return;
    };
    check_python_sdk_metrics(&collector, before);
}

/// What the Python SDK's push must have produced, by the compatibility rules.
fn check_python_sdk_metrics(collector: &Collector, before: i64) {
    let api = collector.api();
    let job = ("job", "otel-test");
    let instance = ("instance", "i-1");
    let scope = "calm-tests";

    // Counter `calm.test.requests` (unit "1"): `_total`, no unit suffix; attribute
    // names sanitised (http.method → http_method).
    expect_one(
        &api,
        "calm_test_requests_total",
        scope,
        &[
            ("__name__", "calm_test_requests_total"),
            job,
            instance,
            ("http_method", "GET"),
            ("route", "/api"),
        ],
        7.0,
    );

    // Observable gauge `calm.test.memory` (unit "By" → `_bytes`).
    expect_one(
        &api,
        "calm_test_memory_bytes",
        scope,
        &[
            ("__name__", "calm_test_memory_bytes"),
            job,
            instance,
            ("pool", "heap"),
        ],
        42.5,
    );

    // Histogram `calm.test.latency` (unit "s" → `_seconds`): cumulative buckets.
    let buckets = vector(&api, "calm_test_latency_seconds_bucket");
    let mut by_le: Vec<(f64, f64)> = Vec::new();
    for b in &buckets {
        let le = b
            .labels
            .get("le")
            .unwrap_or_else(|| panic!("bucket without le: {}", show_labels(&b.labels)));
        let bound =
            calm_tests::api::parse_value(le).unwrap_or_else(|e| panic!("bad le {le:?}: {e:#}"));
        let mut rest = without_scope(&b.labels, scope);
        rest.remove("le");
        assert_eq!(
            rest,
            labels(&[
                ("__name__", "calm_test_latency_seconds_bucket"),
                job,
                instance,
                ("route", "/api"),
            ]),
            "bucket labels"
        );
        by_le.push((bound, b.value));
    }
    by_le.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert_eq!(
        by_le,
        vec![(0.5, 1.0), (1.0, 2.0), (5.0, 3.0), (f64::INFINITY, 3.0)],
        "calm_test_latency_seconds_bucket (le, cumulative count) for 0.1, 0.7, 3"
    );
    let hist_labels =
        |name: &'static str| vec![("__name__", name), job, instance, ("route", "/api")];
    expect_one(
        &api,
        "calm_test_latency_seconds_sum",
        scope,
        &hist_labels("calm_test_latency_seconds_sum"),
        3.8,
    );
    expect_one(
        &api,
        "calm_test_latency_seconds_count",
        scope,
        &hist_labels("calm_test_latency_seconds_count"),
        3.0,
    );

    // Exponential histogram `calm.test.payload` (unit "By"): one native histogram
    // series under the family name. The SDK sent scale 20; stored at schema 8, whose
    // buckets are 0.27 % wide, so a quantile lands within half a percent.
    let series = api
        .series(&["{__name__=~\"calm_test_payload.*\"}"])
        .expect("/api/v1/series");
    let series: Vec<Labels> = series.iter().map(|l| without_scope(l, scope)).collect();
    assert_eq!(
        series,
        vec![labels(&[
            ("__name__", "calm_test_payload_bytes"),
            job,
            instance,
            ("route", "/api")
        ])],
        "the exponential histogram's series"
    );
    for (query, want, tolerance) in [
        ("histogram_count(calm_test_payload_bytes)", 4.0, 1e-9),
        ("histogram_sum(calm_test_payload_bytes)", 301.5, 1e-9),
        ("histogram_quantile(1, calm_test_payload_bytes)", 101.0, 0.5),
        (
            "histogram_quantile(0.6, calm_test_payload_bytes)",
            100.5,
            0.5,
        ),
        // The zero observation sits in the zero bucket, 100 in the bucket that ends at
        // 100.047, well below 100.2.
        (
            "histogram_fraction(-1, 1e-30, calm_test_payload_bytes)",
            0.25,
            1e-9,
        ),
        (
            "histogram_fraction(0, 100.2, calm_test_payload_bytes)",
            0.5,
            1e-9,
        ),
    ] {
        let got = vector(&api, query);
        assert_eq!(got.len(), 1, "{query}: {got:?}");
        assert!(
            (got[0].value - want).abs() <= tolerance,
            "{query}: expected {want} ± {tolerance}, got {}",
            got[0].value
        );
    }

    // Resource attributes other than service.name / service.instance.id go to
    // target_info, which carries job and instance instead of those two.
    let info = vector(&api, "target_info{job=\"otel-test\"}");
    assert_eq!(info.len(), 1, "target_info: {info:?}");
    let l = &info[0].labels;
    assert_eq!(info[0].value, 1.0, "target_info value");
    for (k, v) in [
        ("instance", "i-1"),
        ("deployment_environment", "ci"),
        ("telemetry_sdk_language", "python"),
        ("telemetry_sdk_name", "opentelemetry"),
    ] {
        assert_eq!(
            l.get(k).map(String::as_str),
            Some(v),
            "target_info label {k}: {}",
            show_labels(l)
        );
    }
    for k in ["service_name", "service_instance_id"] {
        assert!(
            !l.contains_key(k),
            "target_info must not repeat {k} (it is job/instance): {}",
            show_labels(l)
        );
    }

    // The samples carry the SDK's timestamps (now-ish), not zero or the start time.
    let c = vector(&api, "calm_test_requests_total");
    let ts = c[0].timestamp;
    let raw = api
        .query_matrix("calm_test_requests_total{job=\"otel-test\"}[5m]", now_ms())
        .expect("range query");
    assert_eq!(raw.len(), 1, "{raw:?}");
    for (t, _) in &raw[0].samples {
        assert!(
            *t >= before - 1_000 && *t <= now_ms(),
            "sample timestamp {t} is not the export time (test ran from {before}); \
             instant query said {ts}"
        );
    }
}

#[test]
fn otlp_json_is_accepted() {
    let collector = Collector::start();
    let now_ns = (now_ms() as u128 * 1_000_000).to_string();
    let start_ns = ((now_ms() - 60_000) as u128 * 1_000_000).to_string();
    // OTLP/JSON: camelCase fields, 64-bit integers as strings, enums as numbers.
    let body = serde_json::json!({
        "resourceMetrics": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "json-test"}},
                {"key": "service.instance.id", "value": {"stringValue": "j-1"}}
            ]},
            "scopeMetrics": [{
                "scope": {"name": "calm-tests-json"},
                "metrics": [
                    {
                        "name": "calm_json_events",
                        "sum": {
                            "aggregationTemporality": 2,
                            "isMonotonic": true,
                            "dataPoints": [{
                                "startTimeUnixNano": start_ns,
                                "timeUnixNano": now_ns,
                                "asInt": "5",
                                "attributes": [{"key": "kind", "value": {"stringValue": "a"}}]
                            }]
                        }
                    },
                    {
                        "name": "calm_json_level",
                        "gauge": {"dataPoints": [{"timeUnixNano": now_ns, "asDouble": 1.25}]}
                    }
                ]
            }]
        }]
    });
    let ans = post(
        &format!("{}/v1/metrics", collector.url()),
        "application/json",
        serde_json::to_vec(&body).unwrap(),
    )
    .expect("POST /v1/metrics");
    assert!(
        ans.status == 200,
        "OTLP/JSON export refused: HTTP {} {}",
        ans.status,
        ans.body
    );
    let api = collector.api();
    let scope = "calm-tests-json";
    expect_one(
        &api,
        "calm_json_events_total",
        scope,
        &[
            ("__name__", "calm_json_events_total"),
            ("job", "json-test"),
            ("instance", "j-1"),
            ("kind", "a"),
        ],
        5.0,
    );
    expect_one(
        &api,
        "calm_json_level",
        scope,
        &[
            ("__name__", "calm_json_level"),
            ("job", "json-test"),
            ("instance", "j-1"),
        ],
        1.25,
    );
}
