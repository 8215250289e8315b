//! Native histograms end to end: the same remote-write requests (integer histograms
//! with delta-encoded buckets, a counter reset, negative and zero buckets, a gauge
//! histogram) go to a real Prometheus (2.42, `--enable-feature=native-histograms`) and
//! to the collector; both must then answer the same queries with the same JSON:
//! `"histogram"`/`"histograms"` values, bucket boundaries and counts (1e-9 relative).
//! A histogram with custom buckets (schema −53, which 2.42 does not know) is checked
//! against its expected rendering on the collector alone, and everything must still
//! be there after a restart of the collector.

use calm_tests::write::{request, series, RemoteWriter};
use calm_tests::{fmt_ts, now_ms, require_peer, Collector, PromApi, Prometheus};
use calm_wire::prompb::{BucketSpan, Histogram, TimeSeries};
use serde_json::Value;

const STEP_MS: i64 = 15_000;
const N: i64 = 80;

/// Integer histogram `i` of a counter: schema 1, zero bucket, two positive spans and
/// a negative bucket, growing with `i`; `reset_at` restarts the counts (a reset).
fn counter_hist(t: i64, i: i64, reset_at: i64) -> Histogram {
    let k = if i >= reset_at { i - reset_at } else { i } as u64;
    // Absolute positive counts a, b, c and negative count d.
    let (a, b, c, d) = (k, 2 * k, k / 2, k / 3);
    Histogram {
        count_int: Some(a + b + c + d + k),
        sum: k as f64 * 3.25,
        schema: 1,
        zero_threshold: 0.001,
        zero_count_int: Some(k),
        positive_spans: vec![
            BucketSpan {
                offset: 0,
                length: 2,
            },
            BucketSpan {
                offset: 2,
                length: 1,
            },
        ],
        positive_deltas: vec![a as i64, b as i64 - a as i64, c as i64 - b as i64],
        negative_spans: vec![BucketSpan {
            offset: 1,
            length: 1,
        }],
        negative_deltas: vec![d as i64],
        timestamp: t,
        ..Default::default()
    }
}

/// A gauge histogram (reset hint 3) with float counts that go up and down.
fn gauge_hist(t: i64, i: i64) -> Histogram {
    let x = 5.0 + (i % 7) as f64;
    Histogram {
        count_float: Some(2.0 * x),
        sum: x * 1.5,
        schema: 0,
        zero_count_float: Some(0.0),
        positive_spans: vec![BucketSpan {
            offset: 1,
            length: 2,
        }],
        positive_counts: vec![x, x],
        reset_hint: 3,
        timestamp: t,
        ..Default::default()
    }
}

fn with_histograms(name: &str, job: &str, hs: Vec<Histogram>) -> TimeSeries {
    let mut s = series(name, &[("job", job)], &[]);
    s.histograms = hs;
    s
}

fn close(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan()) || ((a - b) / a.abs().max(b.abs())).abs() <= 1e-9
}

fn num(v: &Value) -> f64 {
    match v.as_str() {
        Some("+Inf") => f64::INFINITY,
        Some("-Inf") => f64::NEG_INFINITY,
        Some(s) => s.parse().unwrap_or(f64::NAN),
        None => v.as_f64().unwrap_or(f64::NAN),
    }
}

/// True when two rendered histograms (`{count, sum, buckets}`) agree.
fn same_histogram(a: &Value, b: &Value) -> bool {
    let empty = Value::Array(vec![]);
    let (ba, bb) = (
        a.get("buckets").unwrap_or(&empty),
        b.get("buckets").unwrap_or(&empty),
    );
    let (Some(ba), Some(bb)) = (ba.as_array(), bb.as_array()) else {
        return false;
    };
    close(num(&a["count"]), num(&b["count"]))
        && close(num(&a["sum"]), num(&b["sum"]))
        && ba.len() == bb.len()
        && ba
            .iter()
            .zip(bb)
            .all(|(x, y)| x[0] == y[0] && (1..4).all(|i| close(num(&x[i]), num(&y[i]))))
}

/// True when two `data` objects of /api/v1/query(_range) agree (series matched by
/// labels; floats and histograms compared with the tolerance).
fn same_data(a: &Value, b: &Value) -> bool {
    if a["resultType"] != b["resultType"] {
        return false;
    }
    let (Some(ra), Some(rb)) = (a["result"].as_array(), b["result"].as_array()) else {
        return a["result"] == b["result"];
    };
    if ra.len() != rb.len() {
        return false;
    }
    let point = |x: &Value, y: &Value, hist: bool| {
        x[0].as_f64() == y[0].as_f64()
            && if hist {
                same_histogram(&x[1], &y[1])
            } else {
                close(num(&x[1]), num(&y[1]))
            }
    };
    ra.iter().all(|sa| {
        let Some(sb) = rb.iter().find(|s| s["metric"] == sa["metric"]) else {
            return false;
        };
        ["value", "histogram"]
            .iter()
            .all(|k| match (sa.get(*k), sb.get(*k)) {
                (None, None) => true,
                (Some(x), Some(y)) => point(x, y, *k == "histogram"),
                _ => false,
            })
            && ["values", "histograms"].iter().all(|k| {
                match (
                    sa.get(*k).and_then(Value::as_array),
                    sb.get(*k).and_then(Value::as_array),
                ) {
                    (None, None) => true,
                    (Some(x), Some(y)) => {
                        x.len() == y.len()
                            && x.iter()
                                .zip(y)
                                .all(|(p, q)| point(p, q, *k == "histograms"))
                    }
                    _ => false,
                }
            })
    })
}

#[test]
fn native_histograms_match_prometheus() {
    let Some(bin) = require_peer("prometheus") else {
        return;
    };
    // Native histograms and the remote-write receiver on.
    let prom = Prometheus::start_with(
        &bin,
        "global:\n  scrape_interval: 1h\n",
        true,
        &["--enable-feature=native-histograms"],
    );
    let mut calm = Collector::start();
    let t0 = (now_ms() - (N + 4) * STEP_MS) / 1000 * 1000;
    let ts = |i: i64| t0 + i * STEP_MS;
    let reqs: Vec<_> = (0..N)
        .step_by(20)
        .map(|from| {
            let idx = from..(from + 20).min(N);
            request(vec![
                with_histograms(
                    "nh_requests",
                    "api",
                    idx.clone().map(|i| counter_hist(ts(i), i, 50)).collect(),
                ),
                with_histograms(
                    "nh_requests",
                    "web",
                    idx.clone()
                        .map(|i| counter_hist(ts(i), 2 * i, 1000))
                        .collect(),
                ),
                with_histograms(
                    "nh_queue",
                    "api",
                    idx.map(|i| gauge_hist(ts(i), i)).collect(),
                ),
            ])
        })
        .collect();
    for (url, who) in [
        (format!("{}/api/v1/write", prom.url()), "prometheus"),
        (calm.write_url(), "collector"),
    ] {
        let w = RemoteWriter::new(&url);
        for r in &reqs {
            let a = w.send(r).expect("send");
            assert!(a.ok(), "{who} refused the write: {} {}", a.status, a.body);
        }
    }
    // Evaluation times fall between sample timestamps.
    let at = ts(N - 1) + 7_000;
    // Both give the same answer.
    let same = [
        "nh_requests",
        "nh_queue",
        "nh_requests[2m]",
        "rate(nh_requests[5m])",
        "increase(nh_requests[10m])",
        "sum(nh_requests)",
        "sum by (job) (rate(nh_requests[5m]))",
        "count(nh_requests)",
        "histogram_count(nh_requests)",
        "histogram_sum(rate(nh_requests[5m]))",
        // Across the counter reset of job="api".
        "histogram_count(increase(nh_requests[15m]))",
        "delta(nh_queue[5m])",
        "count_over_time(nh_requests[10m])",
    ];
    // Prometheus 2.42 leaves histograms out of (or unchanged by) these; Prometheus 3
    // and the collector compute them. Each is compared with what 2.42 gives for an
    // equivalent float expression.
    let equivalent = [
        (
            "histogram_count(nh_requests * 2)",
            "2 * histogram_count(nh_requests)",
        ),
        (
            "histogram_count(0.5 * nh_requests)",
            "histogram_count(nh_requests) / 2",
        ),
        (
            "histogram_sum(nh_requests / 4)",
            "histogram_sum(nh_requests) / 4",
        ),
        (
            "histogram_count(nh_requests - nh_requests offset 1m)",
            "histogram_count(nh_requests) - histogram_count(nh_requests offset 1m)",
        ),
        (
            "histogram_count(irate(nh_requests[1m]))",
            "(histogram_count(nh_requests) - histogram_count(nh_requests offset 15s)) / 15",
        ),
        ("last_over_time(nh_queue[10m])", "nh_queue"),
    ];
    // And these against values worked out here: the api counter resets once (at
    // sample 50), the gauge changes at every sample, four gauge samples of count
    // 2·(5 + i mod 7) lie in the last minute.
    let worked_out: [(&str, &[(&str, f64)]); 3] = [
        ("resets(nh_requests[30m])", &[("api", 1.0), ("web", 0.0)]),
        ("changes(nh_queue[10m])", &[("api", 39.0)]),
        (
            "histogram_count(sum_over_time(nh_queue[1m]))",
            &[("api", 2.0 * (11.0 + 5.0 + 6.0 + 7.0))],
        ),
    ];
    let check = |calm: &Collector, label: &str| {
        let (p, c) = (PromApi::new(&prom.url()), calm.api());
        let mut diffs = Vec::new();
        let at_time = |q: &str| [("query", q.to_string()), ("time", fmt_ts(at))];
        for (cq, pq) in same.iter().map(|q| (*q, *q)).chain(equivalent) {
            let want = p
                .get_data("/api/v1/query", &at_time(pq))
                .expect("prometheus query");
            let got = c
                .get_data("/api/v1/query", &at_time(cq))
                .expect("collector query");
            if !same_data(&want, &got) {
                diffs.push(format!(
                    "{cq} (prometheus: {pq})\n  prometheus: {want}\n  collector:  {got}"
                ));
            }
        }
        for (q, want) in &worked_out {
            let got = c.query_vector(q, Some(at)).expect("collector query");
            let got: Vec<(String, f64)> = got
                .iter()
                .map(|s| (s.labels.get("job").cloned().unwrap_or_default(), s.value))
                .collect();
            let want: Vec<(String, f64)> = want.iter().map(|(j, v)| (j.to_string(), *v)).collect();
            let mut sorted = got.clone();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            if sorted != want {
                diffs.push(format!("{q}: collector {got:?}, worked out {want:?}"));
            }
        }
        // Aggregations of a selector over native histograms: the streamed path
        // (`promql/streamed.rs`) leaves them to the step path.
        for q in [
            "rate(nh_requests[5m])",
            "nh_queue",
            "sum(nh_requests)",
            "count by (job) (nh_requests)",
        ] {
            let params = [
                ("query", q.to_string()),
                ("start", fmt_ts(ts(40) + 3_000)),
                ("end", fmt_ts(at)),
                ("step", "45".to_string()),
            ];
            let want = p
                .get_data("/api/v1/query_range", &params)
                .expect("prometheus");
            let got = c
                .get_data("/api/v1/query_range", &params)
                .expect("collector");
            if !same_data(&want, &got) {
                diffs.push(format!(
                    "range {q}\n  prometheus: {want}\n  collector:  {got}"
                ));
            }
        }
        assert!(
            diffs.is_empty(),
            "{label}: {} differences:\n{}",
            diffs.len(),
            diffs.join("\n")
        );
    };
    check(&calm, "before restart");

    // Custom buckets (NHCB, schema -53): bounds 0.1, 1; the first bucket starts at -Inf.
    let nhcb = Histogram {
        count_int: Some(6),
        sum: 3.5,
        schema: -53,
        positive_spans: vec![BucketSpan {
            offset: 0,
            length: 3,
        }],
        positive_deltas: vec![1, 2, -1],
        custom_values: vec![0.1, 1.0],
        timestamp: ts(N - 1),
        ..Default::default()
    };
    let a = RemoteWriter::new(&calm.write_url())
        .send(&request(vec![with_histograms(
            "nh_custom",
            "api",
            vec![nhcb],
        )]))
        .expect("send");
    assert!(a.ok(), "{} {}", a.status, a.body);
    let want_custom = serde_json::json!({"count": "6", "sum": "3.5", "buckets": [
        [0, "-Inf", "0.1", "1"], [0, "0.1", "1", "3"], [0, "1", "+Inf", "2"]
    ]});
    let custom = |calm: &Collector| {
        let d = calm
            .api()
            .get_data(
                "/api/v1/query",
                &[("query", "nh_custom".into()), ("time", fmt_ts(at))],
            )
            .expect("query");
        d["result"][0]["histogram"][1].clone()
    };
    assert_eq!(custom(&calm), want_custom);
    let q = calm
        .api()
        .query_vector("histogram_quantile(0.5, nh_custom)", Some(at))
        .expect("quantile");
    // Rank 3 of 6 falls in (0.1, 1] after 1 observation: 0.1 + 0.9 · 2/3.
    assert!((q[0].value - 0.7).abs() < 1e-9, "{q:?}");

    // Everything is still there after a restart (WAL replay or checkpoint).
    calm.restart();
    check(&calm, "after restart");
    assert_eq!(custom(&calm), want_custom);
}
