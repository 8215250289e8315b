//! No timestamp stops ingest (issue 12, class 3).
//!
//! Samples stamped in 2100, at 0, before 1970, at `i64::MAX`/`i64::MIN`, just past
//! the future grace (10 m) and just past the retention (15 d), through every ingest
//! path: remote-write, OTLP protobuf and JSON, the agent's OTLP port, and Sentry
//! events. Each bad sample is refused on its own, with a counted reason
//! (`calm_ingest_samples_rejected_total{reason}`), while the good samples of the same
//! request are stored; normal writes keep succeeding, also after many maintenance runs
//! (`--maintenance-interval 200ms`) and after `kill -9` and a graceful restart.
//!
//! What would fail without the fix: a sample in 2100 moved the head's "newest sample"
//! to 2100, so maintenance persisted the live bucket and every later normal write got
//! 400 "out of bounds", across restarts.

use calm_tests::write::{post, request, series, RemoteWriter};
use calm_tests::{now_ms, wait_for, Agent, Collector};
use std::time::Duration;

const KEY: &str = "0123456789abcdef0123456789abcdef";
const Y2100_MS: i64 = 4_102_444_800_000;
const MIN_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;

fn start() -> Collector {
    let projects = format!("[[projects]]\nid = 1\nname = \"web\"\npublic_key = \"{KEY}\"\n");
    Collector::start_with_config(&projects, &["--maintenance-interval", "200ms"])
}

/// `calm_ingest_samples_rejected_total{reason="..."}`.
fn rejected(c: &Collector, reason: &str) -> f64 {
    let (_, text) = c.api().get("/metrics").expect("GET /metrics");
    let prefix = format!("calm_ingest_samples_rejected_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in /metrics"))
}

fn metric(c: &Collector, name: &str) -> f64 {
    c.metric(name)
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

/// The value of the instant query `q` (one series expected), or None.
fn value(c: &Collector, q: &str) -> Option<f64> {
    let v = c.api().query_vector(q, None).ok()?;
    v.first().map(|s| s.value)
}

/// A normal write of `calm_clock_normal` = `v` at now: must be acknowledged.
fn normal_write(c: &Collector, v: f64) {
    let w = RemoteWriter::new(&c.write_url());
    let a = w
        .send(&request(vec![series(
            "calm_clock_normal",
            &[],
            &[(now_ms(), v)],
        )]))
        .expect("normal write");
    assert_eq!(
        a.status, 204,
        "a normal write after clock abuse: {}",
        a.body
    );
    assert_eq!(value(c, "calm_clock_normal"), Some(v));
}

/// Bad remote-write timestamps, each with the reason it must be counted under.
fn bad_times() -> Vec<(&'static str, i64, &'static str)> {
    let now = now_ms();
    vec![
        ("2100", Y2100_MS, "too_far_in_future"),
        ("i64::MAX", i64::MAX, "too_far_in_future"),
        ("now + 1h", now + 60 * MIN_MS, "too_far_in_future"),
        ("zero", 0, "older_than_retention"),
        ("negative", -1000, "older_than_retention"),
        ("i64::MIN", i64::MIN, "older_than_retention"),
        ("now - 16d", now - 16 * DAY_MS, "older_than_retention"),
    ]
}

fn remote_write_abuse(c: &Collector) {
    let w = RemoteWriter::new(&c.write_url());
    for (i, (what, t, reason)) in bad_times().into_iter().enumerate() {
        let before = rejected(c, reason);
        let case = i.to_string();
        let good_t = now_ms();
        // The bad sample in its own series and next to a good one in the same series.
        let a = w
            .send(&request(vec![
                series("calm_clock_bad", &[("case", &case)], &[(t, 1.0)]),
                series("calm_clock_rw", &[("case", &case)], &[(good_t, i as f64)]),
                series(
                    "calm_clock_rw_mixed",
                    &[("case", &case)],
                    &[(good_t, i as f64), (t, 2.0)],
                ),
            ]))
            .expect("send");
        // Prometheus-style senders drop a batch answered 400 and retry one answered
        // 5xx; the good samples are stored either way, so 400 (naming the refusals)
        // ends the retries of samples that can never be stored.
        assert_eq!(a.status, 400, "{what}: {}", a.body);
        assert!(
            a.body.contains("2 samples refused") && a.body.contains("the rest was stored"),
            "{what}: {}",
            a.body
        );
        let why = if reason == "too_far_in_future" {
            "too far in the future"
        } else {
            "too old"
        };
        assert!(a.body.contains(why), "{what}: {}", a.body);
        assert_eq!(
            rejected(c, reason),
            before + 2.0,
            "{what}: counted as {reason}"
        );
        for q in ["calm_clock_rw", "calm_clock_rw_mixed"] {
            assert_eq!(
                value(c, &format!("{q}{{case=\"{case}\"}}")),
                Some(i as f64),
                "{what}: the good sample of {q} is stored"
            );
        }
        normal_write(c, i as f64);
    }
}

/// An OTLP/JSON request with a gauge point at `bad_ns` and one at now.
fn otlp_json(name: &str, bad_ns: u64, v: f64) -> serde_json::Value {
    let now_ns = (now_ms() as u64 * 1_000_000).to_string();
    serde_json::json!({
        "resourceMetrics": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "clock"}}
            ]},
            "scopeMetrics": [{
                "metrics": [
                    {"name": format!("{name}_bad"), "gauge": {"dataPoints": [
                        {"timeUnixNano": bad_ns.to_string(), "asDouble": 1.0}
                    ]}},
                    {"name": name, "gauge": {"dataPoints": [
                        {"timeUnixNano": now_ns, "asDouble": v}
                    ]}}
                ]
            }]
        }]
    })
}

fn bad_nanos() -> Vec<(&'static str, u64, &'static str)> {
    let now_ns = now_ms() as u64 * 1_000_000;
    vec![
        ("2100", Y2100_MS as u64 * 1_000_000, "too_far_in_future"),
        ("u64::MAX ns", u64::MAX, "too_far_in_future"),
        ("now + 1h", now_ns + 3_600_000_000_000, "too_far_in_future"),
        ("1 ns after 1970", 1, "older_than_retention"),
    ]
}

fn rejected_points(body: &[u8], json: bool) -> i64 {
    if json {
        let v: serde_json::Value = serde_json::from_slice(body).expect("JSON answer");
        let r = &v["partialSuccess"]["rejectedDataPoints"];
        r.as_i64()
            .or_else(|| r.as_str().and_then(|s| s.parse().ok()))
            .unwrap_or(0)
    } else {
        decode_rejected(body)
    }
}

/// Reads `partial_success.rejected_data_points` from a protobuf
/// `ExportMetricsServiceResponse` (field 1 → field 1, varint).
fn decode_rejected(b: &[u8]) -> i64 {
    fn varint(b: &[u8], i: &mut usize) -> u64 {
        let mut v = 0u64;
        let mut shift = 0;
        while *i < b.len() {
            let x = b[*i];
            *i += 1;
            v |= ((x & 0x7f) as u64) << shift;
            if x & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        v
    }
    let mut i = 0;
    if b.is_empty() || varint(b, &mut i) != 0x0a {
        return 0;
    }
    let len = varint(b, &mut i) as usize;
    let inner = &b[i.min(b.len())..(i + len).min(b.len())];
    let mut j = 0;
    while j < inner.len() {
        let k = varint(inner, &mut j);
        if k == 0x08 {
            return varint(inner, &mut j) as i64;
        } else if k & 7 == 2 {
            let l = varint(inner, &mut j) as usize;
            j += l;
        } else {
            varint(inner, &mut j);
        }
    }
    0
}

fn otlp_abuse(c: &Collector) {
    let url = format!("{}/v1/metrics", c.url());
    for json in [true, false] {
        let kind = if json { "OTLP/JSON" } else { "OTLP/protobuf" };
        for (i, (what, ns, reason)) in bad_nanos().into_iter().enumerate() {
            let before = rejected(c, reason);
            let name = if json {
                "calm_clock_oj"
            } else {
                "calm_clock_op"
            };
            let body = otlp_json(name, ns, i as f64);
            let (ct, bytes) = if json {
                ("application/json", serde_json::to_vec(&body).expect("json"))
            } else {
                let raw = serde_json::to_vec(&body).expect("json");
                let (_, req) = calm_wire::otlp::read_request(Some("application/json"), &raw)
                    .expect("our JSON is valid OTLP");
                (
                    "application/x-protobuf",
                    prost::Message::encode_to_vec(&req),
                )
            };
            let a = post(&url, ct, bytes).expect("post");
            assert_eq!(a.status, 200, "{kind} {what}: {}", a.body);
            assert_eq!(
                rejected_points(a.body.as_bytes(), json),
                1,
                "{kind} {what}: one point refused: {}",
                a.body
            );
            assert_eq!(rejected(c, reason), before + 1.0, "{kind} {what}: {reason}");
            assert_eq!(
                value(c, &format!("{name}_ratio")).or_else(|| value(c, name)),
                Some(i as f64),
                "{kind} {what}: the good point is stored"
            );
            normal_write(c, 100.0 + i as f64);
        }
    }
}

fn agent_abuse(c: &Collector) {
    let agent = Agent::builder()
        .collector(&c.url())
        .config("[host]\ninterval = \"1h\"\n")
        .start();
    let url = format!("{}/v1/metrics", agent.otlp_url());
    for (i, (what, ns, _)) in bad_nanos().into_iter().enumerate() {
        let body = otlp_json("calm_clock_agent", ns, i as f64);
        let a = post(
            &url,
            "application/json",
            serde_json::to_vec(&body).expect("json"),
        )
        .expect("post to the agent");
        assert_eq!(a.status, 200, "agent {what}: {}", a.body);
        let got = wait_for(Duration::from_secs(30), Duration::from_millis(200), || {
            value(c, "calm_clock_agent").filter(|v| *v == i as f64)
        });
        assert_eq!(
            got,
            Some(i as f64),
            "agent {what}: the good point arrives behind the bad one"
        );
        normal_write(c, 200.0 + i as f64);
    }
}

fn sentry_abuse(c: &Collector) {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let year_now = 1970 + now_ms() / 31_556_952_000;
    let cases: [(&str, serde_json::Value); 5] = [
        ("2100", serde_json::json!(4_102_444_800.0)),
        ("zero", serde_json::json!(0)),
        ("negative", serde_json::json!(-1_000_000_000)),
        ("huge", serde_json::json!(9.2e18)),
        ("2100 as text", serde_json::json!("2100-01-01T00:00:00Z")),
    ];
    for (i, (what, ts)) in cases.into_iter().enumerate() {
        let body = serde_json::json!({
            "event_id": format!("{:032x}", 0xc10c_0000_u64 + i as u64),
            "timestamp": ts,
            "level": "error",
            "platform": "python",
            "exception": {"values": [{"type": format!("ClockAbuse{i}"), "value": what}]},
        });
        let r = client
            .post(format!("{}/api/1/store/?sentry_key={KEY}", c.url()))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .expect("post event");
        assert_eq!(r.status().as_u16(), 200, "Sentry {what}");
        normal_write(c, 300.0 + i as f64);
    }
    let (_, body) = c
        .api()
        .get("/api/calm/v1/issues?limit=100")
        .expect("issues");
    let v: serde_json::Value = serde_json::from_str(&body).expect("issues JSON");
    let list = v["data"].as_array().cloned().unwrap_or_default();
    let abused: Vec<&serde_json::Value> = list
        .iter()
        .filter(|i| {
            i["title"]
                .as_str()
                .is_some_and(|t| t.starts_with("ClockAbuse"))
        })
        .collect();
    assert_eq!(abused.len(), 5, "{body}");
    for i in abused {
        let seen = i["lastSeen"].as_str().unwrap_or_default();
        assert!(
            seen.starts_with(&year_now.to_string()),
            "a Sentry timestamp far off is replaced by the time received: {seen} ({})",
            i["title"]
        );
    }
    // The error counter series are written at the time received: still queryable.
    assert!(value(c, "sum(calm_error_events_total)").is_some_and(|v| v >= 5.0));
}

#[test]
fn no_timestamp_stops_ingest_on_any_path_across_maintenance_and_restarts() {
    let mut c = start();
    normal_write(&c, -1.0);
    remote_write_abuse(&c);
    otlp_abuse(&c);
    agent_abuse(&c);
    sentry_abuse(&c);
    // Many maintenance runs (every 200 ms): none writes out the live bucket.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        metric(&c, "calm_tsdb_buckets_persisted_total"),
        0.0,
        "no bucket persisted because of an outlier"
    );
    normal_write(&c, 400.0);
    let future = rejected(&c, "too_far_in_future");
    let old = rejected(&c, "older_than_retention");
    eprintln!("refused: {future} too far in the future, {old} older than the retention");
    assert!(
        future >= 3.0 * 2.0 + 3.0 * 2.0 && old >= 4.0 * 2.0 + 2.0,
        "{future} {old}"
    );
    // kill -9, then a graceful restart: writes still succeed, good samples kept, no
    // bad one anywhere.
    c.kill9();
    c.start_again();
    std::thread::sleep(Duration::from_secs(1));
    normal_write(&c, 401.0);
    c.restart();
    std::thread::sleep(Duration::from_secs(1));
    normal_write(&c, 402.0);
    assert_eq!(value(&c, "count(calm_clock_rw)"), Some(7.0));
    for bad in ["calm_clock_bad", "calm_clock_oj_bad", "calm_clock_op_bad"] {
        let q = format!("count(count_over_time({bad}[30d]))");
        assert_eq!(value(&c, &q), None, "no sample of {bad} was stored");
    }
    assert_eq!(
        metric(&c, "calm_tsdb_buckets_persisted_total"),
        0.0,
        "no bucket persisted after the restarts either"
    );
}
