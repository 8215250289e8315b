//! The agent's OTLP receiver: the real OpenTelemetry Python SDK pushes to the agent (on
//! a free port given with `--otlp-listen`), and what reaches the collector is exactly
//! what the same SDK push stores when sent straight to a collector — the same series
//! (names and labels by OpenTelemetry's Prometheus-compatibility rules) with the same
//! values. Also OTLP/JSON through the agent, and gzip bodies.

use calm_tests::api::{show_labels, Labels};
use calm_tests::otel_sdk::python_sdk_push;
use calm_tests::write::post;
use calm_tests::{now_ms, wait_for, Agent, Collector};
use std::collections::BTreeMap;
use std::time::Duration;

/// Pushes the SDK's metrics to `endpoint`; false when the SDK is missing.
fn push(endpoint: &str, gzip: bool) -> bool {
    python_sdk_push(endpoint, gzip, String::new).is_some()
}

/// Every `calm_test_*` and `target_info` series of `job="otel-test"` with its value;
/// the native histogram (from the SDK's exponential histogram) by its count and sum,
/// under the function's name.
fn otel_series(c: &Collector) -> BTreeMap<Labels, f64> {
    let native = "calm_test_payload_bytes";
    let mut out = BTreeMap::new();
    for (query, name) in [
        (
            format!("{{job=\"otel-test\", __name__!=\"{native}\"}}"),
            None,
        ),
        (
            format!("histogram_count({native})"),
            Some("histogram_count"),
        ),
        (format!("histogram_sum({native})"), Some("histogram_sum")),
    ] {
        let v = c
            .api()
            .query_vector(&query, None)
            .unwrap_or_else(|e| panic!("query {query}: {e:#}"));
        for mut s in v {
            if let Some(name) = name {
                s.labels
                    .insert("__name__".into(), format!("{name}({native})"));
            }
            out.insert(s.labels, s.value);
        }
    }
    out
}

fn check_sdk_push(gzip: bool) {
    let via_agent = Collector::start();
    let direct = Collector::start();
    let agent = Agent::builder()
        .collector(&via_agent.url())
        .config("[host]\ninterval = \"1h\"\n")
        .start();
    if !push(&format!("{}/v1/metrics", agent.otlp_url()), gzip) {
        return;
    }
    assert!(push(&format!("{}/v1/metrics", direct.url()), gzip));
    let want = otel_series(&direct);
    assert!(
        want.len() >= 10,
        "the direct push stored too little to compare: {want:?}"
    );
    let got = wait_for(Duration::from_secs(30), Duration::from_millis(200), || {
        let got = otel_series(&via_agent);
        (got.len() >= want.len()).then_some(got)
    })
    .unwrap_or_else(|| {
        panic!(
            "the agent's collector has {:?}, want {} series; agent log:\n{}",
            otel_series(&via_agent),
            want.len(),
            agent.log_tail(20)
        )
    });
    println!("series via the agent (gzip: {gzip}):");
    for (l, v) in &got {
        println!("  {} {v}", show_labels(l));
    }
    // Values of the counter, the gauge and the histogram do not depend on timing; only
    // the label sets are compared for the rest (target_info is 1 either way).
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "the same series as a direct push"
    );
    for (l, v) in &want {
        assert_eq!(got[l], *v, "value of {}", show_labels(l));
    }
    let requests = got
        .iter()
        .find(|(l, _)| l["__name__"] == "calm_test_requests_total")
        .map(|(_, v)| *v);
    assert_eq!(requests, Some(7.0), "calm_test_requests_total");
    assert!(agent.metric("calm_agent_otlp_samples_total").unwrap_or(0.0) >= 8.0);
}

#[test]
fn python_sdk_push_through_the_agent_equals_a_direct_push() {
    check_sdk_push(false);
}

#[test]
fn python_sdk_gzip_push_through_the_agent_equals_a_direct_push() {
    check_sdk_push(true);
}

#[test]
fn otlp_json_through_the_agent_arrives_and_is_answered_in_json() {
    let c = Collector::start();
    let agent = Agent::builder()
        .collector(&c.url())
        .config("[host]\ninterval = \"1h\"\n")
        .start();
    let now_ns = (now_ms() as u128 * 1_000_000).to_string();
    let body = serde_json::json!({
        "resourceMetrics": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "json-agent"}},
                {"key": "service.instance.id", "value": {"stringValue": "j-1"}}
            ]},
            "scopeMetrics": [{
                "scope": {"name": "calm-tests-json"},
                "metrics": [
                    {"name": "calm_agent_json_queue", "unit": "1", "gauge": {"dataPoints": [
                        {"timeUnixNano": now_ns, "asDouble": 12.25,
                         "attributes": [{"key": "queue", "value": {"stringValue": "mail"}}]}
                    ]}},
                    {"name": "calm_agent_json_delta", "sum": {"aggregationTemporality": 1,
                        "isMonotonic": true, "dataPoints": [{"timeUnixNano": now_ns, "asInt": "3"}]}}
                ]
            }]
        }]
    });
    let ans = post(
        &format!("{}/v1/metrics", agent.otlp_url()),
        "application/json",
        serde_json::to_vec(&body).unwrap(),
    )
    .expect("post");
    assert_eq!(ans.status, 200, "{}", ans.body);
    // The delta sum is refused by the shared mapping, and the answer says so.
    let v: serde_json::Value = serde_json::from_str(&ans.body).expect("JSON answer");
    assert_eq!(
        v["partialSuccess"]["rejectedDataPoints"]
            .as_i64()
            .or_else(|| v["partialSuccess"]["rejectedDataPoints"]
                .as_str()
                .and_then(|s| s.parse().ok())),
        Some(1),
        "{v}"
    );
    let got = wait_for(Duration::from_secs(30), Duration::from_millis(200), || {
        c.api()
            .query_vector("calm_agent_json_queue_ratio", None)
            .ok()
            .filter(|v| !v.is_empty())
    })
    .expect("the JSON gauge arrives at the collector");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].value, 12.25);
    assert_eq!(got[0].labels["job"], "json-agent");
    assert_eq!(got[0].labels["queue"], "mail");
}
