//! Alert state survives restarts: an alert pending in the middle of its `for` fires
//! on time after a `kill -9` and restart (not `for` after the restart), and a firing
//! alert stays firing with the same `activeAt` across a graceful restart.
//!
//! "On time" is checked exactly on the `ALERTS` series the collector writes back: the
//! first `alertstate="firing"` sample is at `activeAt + for` (evaluation slots are a
//! whole number of intervals apart, so that instant is itself a slot), and every
//! `ALERTS_FOR_STATE` sample, before and after both restarts, holds the same activeAt.

use calm_tests::webhook::rfc3339_ms;
use calm_tests::write::{request, series, RemoteWriter};
use calm_tests::{now_ms, Collector};
use std::time::Duration;

const RULES: &str = r#"groups:
  - name: restart
    interval: 1s
    rules:
      - alert: SlowBurn
        expr: calm_restart_value > 0
        for: 8s
        annotations:
          summary: "burning on {{ $labels.instance }}"
"#;

fn alert(c: &Collector) -> Option<(String, i64)> {
    let d = c.api().get_data("/api/v1/alerts", &[]).ok()?;
    let a = d["alerts"].as_array()?.first()?.clone();
    Some((
        a["state"].as_str()?.to_string(),
        rfc3339_ms(a["activeAt"].as_str()?),
    ))
}

#[test]
fn pending_alert_fires_on_time_and_firing_alert_keeps_active_at_across_restarts() {
    let dir = tempfile::tempdir().expect("tmp");
    let rules = dir.path().join("restart.yml");
    std::fs::write(&rules, RULES).expect("write rules");
    let mut c = Collector::start_with_config(
        &format!(
            "rule_files = [\"{}\"]\nevaluation_interval = \"1s\"\n",
            rules.display()
        ),
        &[],
    );
    let now = now_ms();
    let pts: Vec<(i64, f64)> = (0..200).map(|i| (now - 5_000 + i * 500, 1.0)).collect();
    let a = RemoteWriter::new(&c.write_url())
        .send(&request(vec![series(
            "calm_restart_value",
            &[("instance", "i1")],
            &pts,
        )]))
        .expect("write");
    assert!(a.ok(), "{} {}", a.status, a.body);

    let (state, active_at) =
        calm_tests::wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
            alert(&c)
        })
        .expect("the alert never became active");
    assert_eq!(state, "pending");
    // Kill in the middle of `for`.
    while now_ms() < active_at + 3_000 {
        std::thread::sleep(Duration::from_millis(50));
    }
    c.kill9();
    c.start_again();
    let restarted_at = now_ms();
    assert!(
        restarted_at < active_at + 8_000,
        "the restart took too long for this test to mean anything"
    );
    let (state, at) = alert(&c).expect("the alert is gone after the restart");
    assert_eq!(
        (state.as_str(), at),
        ("pending", active_at),
        "restored pending with the same activeAt"
    );

    let (state, at) =
        calm_tests::wait_for(Duration::from_secs(15), Duration::from_millis(100), || {
            alert(&c).filter(|(s, _)| s == "firing")
        })
        .expect("the alert never fired after the restart");
    assert_eq!((state.as_str(), at), ("firing", active_at));

    // Graceful restart while firing: still firing, same activeAt, straight away.
    c.restart();
    let (state, at) = alert(&c).expect("the alert is gone after the second restart");
    assert_eq!((state.as_str(), at), ("firing", active_at));
    std::thread::sleep(Duration::from_millis(2_500));

    let t = now_ms();
    let m = c.api().query_matrix("ALERTS[60s]", t).expect("ALERTS");
    let firing = m
        .iter()
        .find(|s| s.labels.get("alertstate").map(String::as_str) == Some("firing"))
        .expect("no firing ALERTS samples");
    let first_firing = firing.samples.first().map(|s| s.0).unwrap_or(0);
    assert_eq!(
        first_firing - active_at,
        8_000,
        "fired {} ms after activeAt; `for` is 8 s (activeAt {active_at}, restart at {restarted_at})",
        first_firing - active_at
    );
    let pending = m
        .iter()
        .find(|s| s.labels.get("alertstate").map(String::as_str) == Some("pending"))
        .expect("no pending ALERTS samples");
    assert!(
        pending
            .samples
            .iter()
            .all(|(ts, _)| *ts < active_at + 8_000),
        "pending after it fired: {:?}",
        pending.samples
    );
    let fs = c
        .api()
        .query_matrix("ALERTS_FOR_STATE[60s]", t)
        .expect("ALERTS_FOR_STATE");
    assert_eq!(fs.len(), 1);
    assert!(
        fs[0]
            .samples
            .iter()
            .all(|(_, v)| *v == (active_at / 1000) as f64),
        "ALERTS_FOR_STATE changed across restarts: {:?}",
        fs[0].samples
    );
}
