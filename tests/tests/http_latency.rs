//! Request and query latency histograms, and the collector's own metrics stored in its
//! TSDB (issue 15, "Self-metrics stored"), against the real binaries:
//!
//! - after requests to a few routes, `/metrics` of the collector and of the agent shows
//!   `calm_http_request_duration_seconds{handler,method,code}` with the route template
//!   as `handler` (never the raw path; `unmatched` for no route) and counts that grew
//!   by exactly the number of requests made;
//! - `calm_query_duration_seconds{kind="instant"|"range"}` grew by the queries run;
//! - with `[self_metrics] interval = "1s"`, `calm_*` series come back from PromQL with
//!   `job="calm-collector"` and `instance=<listen address>`; with `store = false`,
//!   none do.

use calm_tests::agent::Agent;
use calm_tests::{now_ms, wait_for, Collector};
use calm_wire::exposition::{parse, Format};
use std::time::Duration;

fn get(url: &str) -> (u16, String) {
    let r = reqwest::blocking::get(url).unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let code = r.status().as_u16();
    (code, r.text().unwrap_or_default())
}

/// The value of sample `name` whose labels include every pair of `want`, summed over
/// the matching samples (0 when none).
fn value(text: &str, name: &str, want: &[(&str, &str)]) -> f64 {
    let families = parse(text, Format::Text).expect("/metrics parses as the text format");
    families
        .iter()
        .flat_map(|f| f.samples.iter())
        .filter(|s| s.name == name)
        .filter(|s| {
            want.iter()
                .all(|(n, v)| s.labels.iter().any(|(ln, lv)| ln == n && lv == v))
        })
        .map(|s| s.value)
        .sum()
}

fn count(text: &str, handler: &str, method: &str, code: &str) -> f64 {
    value(
        text,
        "calm_http_request_duration_seconds_count",
        &[("handler", handler), ("method", method), ("code", code)],
    )
}

fn inf_bucket(text: &str, handler: &str, method: &str, code: &str) -> f64 {
    value(
        text,
        "calm_http_request_duration_seconds_bucket",
        &[
            ("handler", handler),
            ("method", method),
            ("code", code),
            ("le", "+Inf"),
        ],
    )
}

#[test]
fn collector_histograms_count_requests_and_its_metrics_are_stored() {
    let c = Collector::start_with_config("[self_metrics]\nstore = true\ninterval = \"1s\"\n", &[]);
    let base = c.url();
    let metrics = format!("{base}/metrics");
    let before = get(&metrics).1;
    let q_before = value(
        &before,
        "calm_query_duration_seconds_count",
        &[("kind", "instant")],
    );
    let r_before = value(
        &before,
        "calm_query_duration_seconds_count",
        &[("kind", "range")],
    );

    let now_s = now_ms() / 1000;
    for _ in 0..3 {
        assert_eq!(get(&format!("{base}/api/v1/query?query=1%2B1")).0, 200);
    }
    for _ in 0..2 {
        let url = format!(
            "{base}/api/v1/query_range?query=vector(1)&start={}&end={now_s}&step=15",
            now_s - 300
        );
        assert_eq!(get(&url).0, 200);
    }
    // A bad request: counted under its code, and never reaches the engine.
    assert_eq!(get(&format!("{base}/api/v1/query")).0, 400);
    // Two raw paths of one route template.
    assert_eq!(get(&format!("{base}/api/v1/label/job/values")).0, 200);
    assert_eq!(
        get(&format!("{base}/api/v1/label/zzz_raw_path/values")).0,
        200
    );
    // No route at all.
    for p in ["/nope/one", "/nope/two"] {
        let code = get(&format!("{base}{p}")).0;
        assert_eq!(code, 404, "GET {p}");
    }

    let after = get(&metrics).1;
    let delta =
        |h: &str, code: &str| count(&after, h, "GET", code) - count(&before, h, "GET", code);
    assert_eq!(delta("/api/v1/query", "200"), 3.0, "{after}");
    assert_eq!(delta("/api/v1/query", "400"), 1.0);
    assert_eq!(delta("/api/v1/query_range", "200"), 2.0);
    assert_eq!(delta("/api/v1/label/{name}/values", "200"), 2.0);
    assert_eq!(delta("unmatched", "404"), 2.0);
    // The /metrics read before, itself counted once it was answered.
    assert!(count(&after, "/metrics", "GET", "200") >= 1.0);
    assert_eq!(
        inf_bucket(&after, "/api/v1/query", "GET", "200"),
        count(&after, "/api/v1/query", "GET", "200"),
        "the +Inf bucket holds every observation"
    );
    assert!(
        !after.contains("zzz_raw_path") && !after.contains("/nope/"),
        "raw paths never become label values:\n{after}"
    );
    assert_eq!(
        value(
            &after,
            "calm_query_duration_seconds_count",
            &[("kind", "instant")]
        ) - q_before,
        3.0,
        "three instant queries evaluated"
    );
    assert_eq!(
        value(
            &after,
            "calm_query_duration_seconds_count",
            &[("kind", "range")]
        ) - r_before,
        2.0,
        "two range queries evaluated"
    );

    // The collector writes its registry into its TSDB every second.
    let api = c.api();
    let instance = format!("127.0.0.1:{}", c.port());
    let stored = wait_for(Duration::from_secs(30), Duration::from_millis(250), || {
        let v = api
            .query_vector(
                "calm_http_request_duration_seconds_count{job=\"calm-collector\",handler=\"/api/v1/query\",code=\"200\"}",
                None,
            )
            .ok()?;
        (!v.is_empty()).then_some(v)
    })
    .expect("calm_http_request_duration_seconds_count{job=\"calm-collector\"} is queryable within 30 s");
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].labels.get("instance"), Some(&instance));
    assert_eq!(
        stored[0].labels.get("method").map(String::as_str),
        Some("GET")
    );
    assert!(stored[0].value >= 3.0, "{stored:?}");
    let q = api
        .query_vector(
            "calm_query_duration_seconds_count{job=\"calm-collector\",kind=\"range\"}",
            None,
        )
        .expect("query");
    assert_eq!(q.len(), 1, "{q:?}");
    assert!(q[0].value >= 2.0, "{q:?}");
    // A histogram stored whole: histogram_quantile over its buckets gives a number.
    let p99 = api
        .query_vector(
            "histogram_quantile(0.99, sum by (le) (calm_http_request_duration_seconds_bucket{job=\"calm-collector\"}))",
            None,
        )
        .expect("query");
    assert_eq!(p99.len(), 1, "{p99:?}");
    assert!(p99[0].value.is_finite() && p99[0].value >= 0.0, "{p99:?}");
}

#[test]
fn self_metrics_store_false_writes_nothing() {
    let c = Collector::start_with_config("[self_metrics]\nstore = false\ninterval = \"1s\"\n", &[]);
    assert_eq!(get(&format!("{}/api/v1/query?query=1", c.url())).0, 200);
    // Three intervals: had the writer run, its series would be there.
    std::thread::sleep(Duration::from_secs(3));
    let v = c
        .api()
        .query_vector("{job=\"calm-collector\"}", None)
        .expect("query");
    assert!(v.is_empty(), "store = false stored {v:?}");
    // /metrics still has the histogram: the query above and the API client's.
    let text = get(&format!("{}/metrics", c.url())).1;
    assert_eq!(count(&text, "/api/v1/query", "GET", "200"), 2.0, "{text}");
}

#[test]
fn agent_histogram_counts_requests_by_route_template() {
    let c = Collector::start();
    let a = Agent::builder().collector(&c.url()).start();
    let base = a.url();
    let metrics = format!("{base}/metrics");
    let before = get(&metrics).1;
    for _ in 0..4 {
        assert_eq!(get(&format!("{base}/healthz")).0, 200);
    }
    assert_eq!(get(&format!("{base}/no/such/route")).0, 404);
    // The Sentry relay's store route, twice with a body it refuses: a 4xx under the
    // route's template, whatever the project id in the path.
    let client = reqwest::blocking::Client::new();
    let mut codes = Vec::new();
    for project in ["1", "2"] {
        let r = client
            .post(format!("{base}/api/{project}/store/"))
            .body("not json")
            .send()
            .expect("POST store");
        codes.push(r.status().as_u16());
    }
    assert_eq!(codes[0], codes[1]);
    assert!((400..500).contains(&codes[0]), "{codes:?}");
    let after = get(&metrics).1;
    let delta =
        |h: &str, m: &str, code: &str| count(&after, h, m, code) - count(&before, h, m, code);
    assert_eq!(delta("/healthz", "GET", "200"), 4.0, "{after}");
    assert_eq!(delta("unmatched", "GET", "404"), 1.0);
    assert_eq!(delta("/metrics", "GET", "200"), 1.0, "the read before");
    assert_eq!(
        delta("/api/{project_id}/store/", "POST", &codes[0].to_string()),
        2.0,
        "{after}"
    );
    assert!(!after.contains("/no/such/route"));
}
