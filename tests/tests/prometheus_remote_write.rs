//! A real Prometheus scrapes a real node_exporter every second and remote-writes to the
//! collector. Over a window both fully have, the collector must return exactly what
//! Prometheus itself returns: the same series (label sets) and the same raw samples
//! (timestamps and values), and the same `query_range` answers.

use calm_tests::api::{same_value, show_labels, Series};
use calm_tests::peers::node_remote_write_config;
use calm_tests::{now_ms, require_peer, wait_for, Collector, NodeExporter, Prometheus};
use std::time::Duration;

/// Series compared between the two sides: node_exporter's and Prometheus' own.
const METRICS: &[&str] = &[
    "node_cpu_seconds_total",
    "node_memory_MemAvailable_bytes",
    "node_load1",
    "node_network_receive_bytes_total",
    "node_network_transmit_bytes_total",
    "node_network_up",
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
];

/// Raw-sample window compared: (T - WINDOW, T].
const WINDOW_MS: i64 = 12_000;

/// Describes the first difference between two sorted matrices, or None if equal.
fn diff(metric: &str, prom: &[Series], calm: &[Series]) -> Option<String> {
    let p_labels: Vec<_> = prom.iter().map(|s| &s.labels).collect();
    let c_labels: Vec<_> = calm.iter().map(|s| &s.labels).collect();
    if p_labels != c_labels {
        let missing: Vec<String> = p_labels
            .iter()
            .filter(|l| !c_labels.contains(l))
            .map(|l| show_labels(l))
            .collect();
        let extra: Vec<String> = c_labels
            .iter()
            .filter(|l| !p_labels.contains(l))
            .map(|l| show_labels(l))
            .collect();
        return Some(format!(
            "{metric}: label sets differ: Prometheus has {} series, the collector {}; \
             missing in the collector: {missing:?}; only in the collector: {extra:?}",
            prom.len(),
            calm.len()
        ));
    }
    for (p, c) in prom.iter().zip(calm) {
        let equal = p.samples.len() == c.samples.len()
            && p.samples
                .iter()
                .zip(&c.samples)
                .all(|(a, b)| a.0 == b.0 && same_value(a.1, b.1));
        if !equal {
            let first = p
                .samples
                .iter()
                .zip(&c.samples)
                .position(|(a, b)| a.0 != b.0 || !same_value(a.1, b.1))
                .unwrap_or(p.samples.len().min(c.samples.len()));
            return Some(format!(
                "{}: samples differ (Prometheus {} samples, collector {}); first difference \
                 at index {first}: Prometheus {:?}, collector {:?}\n  Prometheus: {:?}\n  collector:  {:?}",
                show_labels(&p.labels),
                p.samples.len(),
                c.samples.len(),
                p.samples.get(first),
                c.samples.get(first),
                p.samples,
                c.samples
            ));
        }
    }
    None
}

#[test]
fn collector_matches_prometheus_for_node_exporter_data() {
    let Some(prom_bin) = require_peer("prometheus") else {
        return;
    };
    let Some(ne_bin) = require_peer("prometheus-node-exporter") else {
        return;
    };
    let collector = Collector::start();
    // No systemd here: its collector (on in Debian's build) would only log errors.
    let node = NodeExporter::start(&ne_bin, &["--no-collector.systemd"]);
    let config = node_remote_write_config(&node.target(), &collector.write_url());
    let prom = Prometheus::start(&prom_bin, &config, false);
    let (papi, capi) = (prom.api(), collector.api());

    // Wait until the first remote-written samples reach the collector; the earliest one
    // bounds what the collector can have (Prometheus only sends what it scraped after
    // its WAL watcher started).
    let first = wait_for(Duration::from_secs(40), Duration::from_millis(500), || {
        let m = capi.query_matrix("up[1m]", now_ms()).ok()?;
        m.iter()
            .filter_map(|s| s.samples.first())
            .map(|s| s.0)
            .min()
    })
    .unwrap_or_else(|| {
        panic!(
            "no `up` sample reached the collector within 40 s of Prometheus starting.\n\
             Prometheus log:\n{}\ncollector log:\n{}",
            prom.log_tail(20),
            collector.log_tail(20)
        )
    });

    // The window (T - 12 s, T] starts at least 3 s after the collector's first sample
    // and ends 5 s before we compare, so both sides have all of it. Its ends fall half
    // way between scrapes (all samples share the first one's phase within 1 s): the
    // Debian Prometheus (2.x) selects [T - 12 s, T], Prometheus 3 and the collector
    // (T - 12 s, T], and no sample must sit on the boundary where they differ.
    let mid = |x: i64| x - (x - first).rem_euclid(1_000) + 500;
    let t = mid((first + 3_000 + WINDOW_MS).max(now_ms() - 5_000));
    let wait_until = t + 5_000;
    while now_ms() < wait_until {
        std::thread::sleep(Duration::from_millis(200));
    }
    // Remote-write has delivered past T for `up` (the same scrape's other series may
    // travel through other shards; the comparison below retries for that).
    let delivered = wait_for(Duration::from_secs(20), Duration::from_millis(500), || {
        let m = capi.query_matrix("up[30s]", now_ms()).ok()?;
        m.iter()
            .filter_map(|s| s.samples.last())
            .any(|s| s.0 > t)
            .then_some(())
    });
    assert!(
        delivered.is_some(),
        "the collector has no `up` sample after T={t} 20 s later; Prometheus log:\n{}",
        prom.log_tail(20)
    );

    let window_s = WINDOW_MS / 1000;
    for metric in METRICS {
        let q = format!("{metric}[{window_s}s]");
        let expected = papi
            .query_matrix(&q, t)
            .unwrap_or_else(|e| panic!("Prometheus {q}: {e:#}"));
        assert!(
            !expected.is_empty()
                && expected
                    .iter()
                    .all(|s| s.samples.len() >= window_s as usize - 2),
            "Prometheus itself has too few samples for {q} at {t}: {expected:?}; its log:\n{}",
            prom.log_tail(20)
        );
        // A sample may still be in flight through another shard: retry a few times.
        let mut last_diff = None;
        for _ in 0..5 {
            let got = capi
                .query_matrix(&q, t)
                .unwrap_or_else(|e| panic!("collector {q}: {e:#}"));
            last_diff = diff(metric, &expected, &got);
            if last_diff.is_none() {
                break;
            }
            std::thread::sleep(Duration::from_secs(2));
        }
        if let Some(d) = last_diff {
            panic!("raw samples of {q} at T={t} differ between Prometheus and the collector:\n{d}");
        }

        // Graph queries (what Grafana sends) agree too: 1 s steps over the window.
        let start = t - WINDOW_MS + 2_000;
        let expected = papi
            .query_range(metric, start, t, 1_000)
            .unwrap_or_else(|e| panic!("Prometheus query_range {metric}: {e:#}"));
        let got = capi
            .query_range(metric, start, t, 1_000)
            .unwrap_or_else(|e| panic!("collector query_range {metric}: {e:#}"));
        if let Some(d) = diff(metric, &expected, &got) {
            panic!("query_range {metric} start={start} end={t} step=1s differs:\n{d}");
        }
    }

    // The series API agrees on the label sets too.
    let matcher = "node_network_up";
    let expected = papi
        .series(&[matcher])
        .unwrap_or_else(|e| panic!("Prometheus series: {e:#}"));
    let got = capi
        .series(&[matcher])
        .unwrap_or_else(|e| panic!("collector series: {e:#}"));
    assert_eq!(got, expected, "/api/v1/series?match[]={matcher}");

    // Label names and values: everything the collector lists, Prometheus has too (it
    // may have more: what it scraped before remote-write started), and the collector
    // lists what it was sent.
    let p_names = papi
        .label_values("__name__")
        .expect("Prometheus __name__ values");
    let c_names = capi
        .label_values("__name__")
        .expect("collector __name__ values");
    for m in METRICS {
        assert!(
            c_names.iter().any(|n| n == m),
            "/api/v1/label/__name__/values of the collector lacks {m}"
        );
    }
    let foreign: Vec<_> = c_names.iter().filter(|n| !p_names.contains(n)).collect();
    assert!(
        foreign.is_empty(),
        "metric names Prometheus never had: {foreign:?}"
    );
    let mut sorted = c_names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(c_names, sorted, "label values must be sorted and unique");
    let c_labels = capi.labels().expect("collector labels");
    let p_labels = papi.labels().expect("Prometheus labels");
    for l in ["__name__", "job", "instance", "cpu", "mode", "device"] {
        assert!(
            c_labels.iter().any(|x| x == l),
            "/api/v1/labels lacks {l}: {c_labels:?}"
        );
    }
    let foreign: Vec<_> = c_labels.iter().filter(|n| !p_labels.contains(n)).collect();
    assert!(
        foreign.is_empty(),
        "label names Prometheus never had: {foreign:?}"
    );
    assert_eq!(
        capi.label_values("job").expect("collector job values"),
        vec!["node".to_string()]
    );
}
