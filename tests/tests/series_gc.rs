//! Series that stopped go away once retention has deleted their data: the collector
//! (restarted with `--retention 4h`) has a series that stopped ten hours ago and one that goes
//! on to now. Within a few maintenance rounds the stopped one is gone from
//! `/api/v1/series` and the label APIs, counted in `calm_tsdb_series_removed_total`,
//! and stays gone across a `kill -9`; the other keeps every sample inside retention;
//! the stopped series may come back later as a new series.

use calm_tests::write::{request, series, RemoteWriter};
use calm_tests::{now_ms, wait_for, Collector, PromApi};
use std::time::Duration;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

/// The collector's `calm_tsdb_series_removed_total`.
fn removed(c: &Collector) -> f64 {
    let text = reqwest::blocking::get(format!("{}/metrics", c.url()))
        .and_then(|r| r.text())
        .unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("calm_tsdb_series_removed_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(-1.0)
}

fn jobs(api: &PromApi) -> Vec<String> {
    let mut v: Vec<String> = api
        .series(&["{__name__=\"calm_gc_test\"}"])
        .expect("/api/v1/series")
        .into_iter()
        .filter_map(|l| l.get("job").cloned())
        .collect();
    v.sort();
    v
}

#[test]
fn stopped_series_are_removed_after_retention_and_stay_removed() {
    // Writes older than the retention are refused, so the history goes in under a
    // 12 h retention; then the collector restarts with 4 h.
    let mut c = Collector::start_with(&["--retention", "12h"]);
    let w = RemoteWriter::new(&c.write_url());
    let now = now_ms() / MINUTE * MINUTE;
    let start = now - 10 * HOUR;
    // "gone" stopped after its first hour; "stays" goes on to now, a sample a minute.
    let gone: Vec<(i64, f64)> = (0..60).map(|i| (start + i * MINUTE, 1.0)).collect();
    let stays: Vec<(i64, f64)> = (0..=600).map(|i| (start + i * MINUTE, i as f64)).collect();
    for (i, part) in stays.chunks(60).enumerate() {
        let mut s = vec![series("calm_gc_test", &[("job", "stays")], part)];
        if i == 0 {
            s.push(series("calm_gc_test", &[("job", "gone")], &gone));
        }
        let a = w.send(&request(s)).expect("remote write");
        assert!(a.ok(), "write refused: {} {}", a.status, a.body);
    }
    assert_eq!(jobs(&c.api()), vec!["gone", "stays"]);
    c.kill9();
    c.set_args(&["--retention", "4h"]);
    c.start_again();
    let api = c.api();

    // Maintenance runs every 10 s: it persists the old buckets, retention deletes the
    // ones before now − 4h, and series GC removes "gone".
    let removed_now = wait_for(Duration::from_secs(60), Duration::from_millis(500), || {
        (jobs(&api) == vec!["stays"]).then(|| removed(&c))
    });
    assert_eq!(
        removed_now,
        Some(1.0),
        "\"gone\" was not removed (calm_tsdb_series_removed_total {}); log:\n{}",
        removed(&c),
        c.log_tail(20)
    );
    let jobs_values = api
        .get_data("/api/v1/label/job/values", &[])
        .expect("label values");
    assert_eq!(jobs_values, serde_json::json!(["stays"]));
    // "stays" keeps everything inside retention (a bucket is 2 h, so at least the
    // last 4 h are there, and nothing that old is lost early).
    let m = api
        .query_matrix("calm_gc_test{job=\"stays\"}[4h]", now)
        .expect("range query");
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(m[0].samples.len(), 240, "samples of the last 4 h");

    // A crash and a restart do not bring it back.
    c.kill9();
    c.start_again();
    let api = c.api();
    assert_eq!(jobs(&api), vec!["stays"], "after kill -9 and restart");

    // It may come back: a new series, stored and read like any other.
    let back = series("calm_gc_test", &[("job", "gone")], &[(now_ms(), 7.0)]);
    let a = w.send(&request(vec![back])).expect("remote write");
    assert!(a.ok(), "write refused: {} {}", a.status, a.body);
    assert_eq!(jobs(&api), vec!["gone", "stays"]);
    let v = api
        .query_vector("calm_gc_test{job=\"gone\"}", None)
        .expect("query");
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].value, 7.0);
}
