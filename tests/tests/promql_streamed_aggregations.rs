//! Aggregations of a plain selector in a range query (`count by (__name__)
//! ({job="node"})`, Grafana's shape) stream the series in batches: the collector's
//! `max_query_samples` bounds the samples held at once, not all the samples the query
//! reads. Loaded through remote write with more samples than the limit allows in one
//! go, the aggregations answer, equal to a real Prometheus fed the same data, while a
//! query that must still preload every series (`topk`) is refused as before.

use calm_tests::api::{Labels, Series};
use calm_tests::write::{request, series, RemoteWriter};
use calm_tests::{now_ms, require_peer, Collector, Prometheus};

/// Scrape interval of the data.
const SCRAPE_MS: i64 = 15_000;
/// Samples per series (10 min).
const SAMPLES: i64 = 40;
/// The collector's sample limit: under the ~41,000 samples the query reads, over the
/// ≤ 512 × 40 = 20,480 of one batch of series.
const LIMIT: usize = 25_000;

/// 600 series of `node_a` (50 of them stop after 25 samples, without a stale marker)
/// and 500 of `node_b` (100 of them end with a stale marker at sample 20), all
/// `job="node"`, sampled at `base + k × 15 s`.
fn data(base: i64) -> Vec<calm_wire::prompb::TimeSeries> {
    let mut out = Vec::new();
    for (name, n) in [("node_a", 600), ("node_b", 500)] {
        for i in 0..n {
            let samples: Vec<(i64, f64)> = (0..SAMPLES)
                .filter_map(|k| {
                    let t = base + k * SCRAPE_MS;
                    match (name, i) {
                        ("node_a", i) if i % 12 == 0 && k >= 25 => None,
                        ("node_b", i) if i % 5 == 0 && k == 20 => {
                            Some((t, calm_wire::value::stale_nan()))
                        }
                        ("node_b", i) if i % 5 == 0 && k > 20 => None,
                        _ => Some((t, ((k * 7 + i) % 23) as f64 * 0.5)),
                    }
                })
                .collect();
            out.push(series(
                name,
                &[("i", &format!("{i:04}")), ("job", "node")],
                &samples,
            ));
        }
    }
    out
}

fn write_all(url: &str, all: &[calm_wire::prompb::TimeSeries]) {
    let w = RemoteWriter::new(url);
    for part in all.chunks(200) {
        let a = w.send(&request(part.to_vec())).expect("write");
        assert!(a.ok(), "POST {url}: HTTP {}: {}", a.status, a.body);
    }
}

fn value_at(rows: &[Series], name: &str, t: i64) -> Option<f64> {
    let row = rows
        .iter()
        .find(|s| s.labels.get("__name__").map(String::as_str) == Some(name))?;
    row.samples.iter().find(|p| p.0 == t).map(|p| p.1)
}

#[test]
fn selector_aggregations_answer_past_the_sample_limit_as_prometheus_does() {
    let prom_bin = require_peer("prometheus");
    let collector = Collector::start_with_config(&format!("max_query_samples = {LIMIT}\n"), &[]);
    // Samples at :03/:18/:33/:48 from 20 minutes ago; evaluation times 4.5 s after a
    // sample, so no lookback window starts on a sample (Prometheus 2 closes it there,
    // 3 does not).
    let base = (now_ms() - 20 * 60_000).div_euclid(SCRAPE_MS) * SCRAPE_MS + 3_000;
    let all = data(base);
    let read: usize = all.iter().map(|s| s.samples.len()).sum();
    assert!(
        read > LIMIT,
        "{read} samples: the old path would fit the limit"
    );
    write_all(&collector.write_url(), &all);

    let (start, step) = (base + 4_500, 30_000);
    // 31 steps: the last one over 5 min (the lookback delta) after the last sample.
    let end = start + 31 * step;
    let api = collector.api();

    // The counts, as the data says them.
    let counts = api
        .query_range("count by (__name__) ({job=\"node\"})", start, end, step)
        .expect("count by (__name__) answers under the limit");
    assert_eq!(counts.len(), 2, "{counts:?}");
    let names: Vec<_> = counts.iter().map(|s| s.labels.clone()).collect();
    let want_names: Vec<Labels> = ["node_a", "node_b"]
        .iter()
        .map(|n| Labels::from([("__name__".to_string(), n.to_string())]))
        .collect();
    assert_eq!(names, want_names);
    let at = |k: i64| start + k * step;
    // Step j (at base + 4.5 s + 30 s × j) sees sample 2j (at base + 15 s × 2j). Step 5:
    // every series. Step 12: node_b's stale markers (sample 20) ended 100 series.
    // Step 14: node_a's 50 stopped series (last sample 24) are within the lookback
    // delta; step 23 is 5 min 34.5 s after their last sample.
    assert_eq!(value_at(&counts, "node_a", at(5)), Some(600.0));
    assert_eq!(value_at(&counts, "node_b", at(5)), Some(500.0));
    assert_eq!(value_at(&counts, "node_b", at(12)), Some(400.0));
    assert_eq!(value_at(&counts, "node_a", at(14)), Some(600.0));
    assert_eq!(value_at(&counts, "node_a", at(23)), Some(550.0));
    // No sample within 5 min after the end of the data: no point.
    assert_eq!(value_at(&counts, "node_a", end), None);

    // A query that still preloads every series is refused, as before.
    let (status, body) = api
        .call(
            false,
            "/api/v1/query_range",
            &[
                ("query", "topk(1, {job=\"node\"})".to_string()),
                ("start", calm_tests::fmt_ts(start)),
                ("end", calm_tests::fmt_ts(end)),
                ("step", "30".to_string()),
            ],
        )
        .expect("topk");
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("too many samples"),
        "{body}"
    );

    // The same answers as Prometheus, fed the same data.
    let Some(prom_bin) = prom_bin else {
        return;
    };
    let prom = Prometheus::start(&prom_bin, "global:\n  scrape_interval: 15s\n", true);
    write_all(&format!("{}/api/v1/write", prom.url()), &all);
    let papi = prom.api();
    let queries = [
        "count by (__name__) ({job=\"node\"})",
        "group by (__name__) ({job=\"node\"})",
        "sum by (__name__) ({job=\"node\"})",
        "max({job=\"node\"})",
        "min by (__name__) ({job=\"node\"} offset 1m)",
        "avg by (__name__) ({job=\"node\"})",
        "count(node_b)",
    ];
    for q in queries {
        let c = api
            .query_range(q, start, end, step)
            .unwrap_or_else(|e| panic!("{q}: the collector: {e:#}"));
        let p = papi
            .query_range(q, start, end, step)
            .unwrap_or_else(|e| panic!("{q}: Prometheus: {e:#}"));
        assert!(!c.is_empty(), "{q}: empty");
        assert_eq!(
            c.iter().map(|s| &s.labels).collect::<Vec<_>>(),
            p.iter().map(|s| &s.labels).collect::<Vec<_>>(),
            "{q}: label sets"
        );
        for (cs, ps) in c.iter().zip(&p) {
            assert_eq!(
                cs.samples.len(),
                ps.samples.len(),
                "{q}: points of {:?}",
                cs.labels
            );
            for (a, b) in cs.samples.iter().zip(&ps.samples) {
                assert_eq!(a.0, b.0, "{q}: {:?}", cs.labels);
                assert!(
                    (a.1 - b.1).abs() <= 1e-9 * b.1.abs().max(1.0),
                    "{q}: {:?} at {}: {} vs Prometheus {}",
                    cs.labels,
                    a.0,
                    a.1,
                    b.1
                );
            }
        }
    }
    eprintln!(
        "{} range queries equal to Prometheus' answers",
        queries.len()
    );
}
