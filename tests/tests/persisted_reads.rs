//! Queries over persisted buckets answer exactly what was written, before and after a
//! restart: 12 hours of three hosts' series (scraped at each host's own jittered
//! instants, so a page stores each host's timestamps once as a shared column), of
//! counters, noisy gauges, constants and special values, go in; maintenance (every
//! second here) persists the old buckets as pages; the raw samples read back from
//! `/api/v1/query` (`x[13h]`) equal the samples sent, bit for bit, and a `rate` range
//! query gives the same answer after a clean restart and after a `kill -9`.

use calm_tests::api::Series;
use calm_tests::write::{request, series, RemoteWriter};
use calm_tests::{now_ms, wait_for, Collector, PromApi};
use std::collections::BTreeMap;
use std::time::Duration;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

/// The collector's `calm_tsdb_buckets_persisted_total`.
fn persisted(c: &Collector) -> f64 {
    let text = reqwest::blocking::get(format!("{}/metrics", c.url()))
        .and_then(|r| r.text())
        .unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("calm_tsdb_buckets_persisted_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(-1.0)
}

type Sent = BTreeMap<(String, String), Vec<(i64, f64)>>;

/// Every series' samples: host × kind, 12 h at 15 s ending at `end`.
fn load(end: i64) -> Sent {
    let start = end - 12 * HOUR;
    let mut out = Sent::new();
    for (h, host) in ["a", "b", "c"].iter().enumerate() {
        // The host's scrape instants: 15 s apart with a few ms of jitter.
        let ts: Vec<i64> = (0..12 * 240)
            .map(|i| start + i * 15_000 + h as i64 * 1_000 + (i * 7 + h as i64) % 13)
            .collect();
        for kind in ["counter", "gauge", "constant", "special", "sparse"] {
            let samples: Vec<(i64, f64)> = match kind {
                "counter" => ts
                    .iter()
                    .enumerate()
                    .map(|(i, &t)| (t, 1000.0 + i as f64 * 12.5 + h as f64))
                    .collect(),
                "gauge" => ts
                    .iter()
                    .enumerate()
                    .map(|(i, &t)| (t, (i as f64 * 0.37 + h as f64).sin() * 1e9 / 7.0))
                    .collect(),
                "constant" => ts.iter().map(|&t| (t, 42.0)).collect(),
                "special" => ts
                    .iter()
                    .enumerate()
                    .map(|(i, &t)| {
                        let v = [f64::NAN, 0.1, f64::INFINITY, 1e-300, -5.5][i % 5];
                        (t, v)
                    })
                    .collect(),
                // Its own instants, one a minute, not shared with the host's.
                _ => ts
                    .iter()
                    .step_by(4)
                    .map(|&t| (t + 17, (t / 1000 % 97) as f64))
                    .collect(),
            };
            out.insert((host.to_string(), kind.to_string()), samples);
        }
    }
    out
}

/// The raw samples of every `calm_persist_test` series over the last 13 h, by host and
/// kind, values as bits (NaN compares equal to NaN).
fn raw(api: &PromApi, at: i64) -> BTreeMap<(String, String), Vec<(i64, u64)>> {
    let m: Vec<Series> = api
        .query_matrix("calm_persist_test[13h]", at)
        .expect("raw range query");
    m.into_iter()
        .map(|s| {
            let key = (s.labels["host"].clone(), s.labels["kind"].clone());
            let v = s
                .samples
                .iter()
                .map(|(t, v)| (*t, if v.is_nan() { u64::MAX } else { v.to_bits() }))
                .collect();
            (key, v)
        })
        .collect()
}

fn rates(api: &PromApi, start: i64, end: i64) -> Vec<Series> {
    api.query_range(
        "sum by (host) (rate(calm_persist_test{kind=~\"counter|sparse\"}[5m]))",
        start,
        end,
        60_000,
    )
    .expect("range query")
}

#[test]
fn persisted_pages_read_back_bit_for_bit_across_restarts() {
    let mut c = Collector::start_with(&["--maintenance-interval", "1s"]);
    let w = RemoteWriter::new(&c.write_url());
    let end = now_ms() - MINUTE;
    let sent = load(end);
    // In time order, an hour of every series per request.
    for hour in 0..12 {
        let lo = end - (12 - hour) * HOUR;
        let hi = lo + HOUR;
        let s: Vec<_> = sent
            .iter()
            .map(|((host, kind), samples)| {
                let part: Vec<(i64, f64)> = samples
                    .iter()
                    .copied()
                    .filter(|s| s.0 >= lo && s.0 < hi)
                    .collect();
                series(
                    "calm_persist_test",
                    &[("host", host), ("kind", kind)],
                    &part,
                )
            })
            .collect();
        let a = w.send(&request(s)).expect("remote write");
        assert!(a.ok(), "write refused: {} {}", a.status, a.body);
    }
    // 12 h: the buckets that ended more than 1 h 10 min before the newest sample
    // are persisted (at least three of the six or seven buckets touched).
    let n = wait_for(Duration::from_secs(90), Duration::from_millis(500), || {
        let n = persisted(&c);
        (n >= 3.0).then_some(n)
    });
    assert!(
        n.is_some(),
        "buckets were not persisted ({}); log:\n{}",
        persisted(&c),
        c.log_tail(20)
    );

    let want: BTreeMap<(String, String), Vec<(i64, u64)>> = sent
        .iter()
        .map(|(k, v)| {
            let bits = v
                .iter()
                .map(|(t, v)| (*t, if v.is_nan() { u64::MAX } else { v.to_bits() }))
                .collect();
            (k.clone(), bits)
        })
        .collect();
    let at = end + MINUTE;
    let got = raw(&c.api(), at);
    assert_eq!(got.len(), want.len(), "series found");
    for (k, v) in &want {
        let g = got.get(k).map(Vec::as_slice).unwrap_or(&[]);
        let first = g.iter().zip(v).position(|(a, b)| a != b);
        assert!(
            g == &v[..],
            "samples of {k:?} read back from pages: {} of {} sent; first difference at \
             {first:?}: got {:?}, sent {:?}",
            g.len(),
            v.len(),
            first.and_then(|i| g.get(i)),
            first.and_then(|i| v.get(i)),
        );
    }
    let (q0, q1) = (end - 11 * HOUR, end);
    let before = rates(&c.api(), q0, q1);
    assert_eq!(before.len(), 3, "{before:?}");
    assert!(before.iter().all(|s| s.samples.len() > 600), "{before:?}");

    c.restart();
    assert_eq!(raw(&c.api(), at), got, "after a clean restart");
    assert_eq!(
        rates(&c.api(), q0, q1),
        before,
        "rate after a clean restart"
    );

    c.kill9();
    c.start_again();
    assert_eq!(raw(&c.api(), at), got, "after kill -9");
    assert_eq!(rates(&c.api(), q0, q1), before, "rate after kill -9");
}
