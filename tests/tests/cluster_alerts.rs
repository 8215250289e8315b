//! Cluster mode, alerts (issue 14 item 4): 3 real collectors on a 3-node NATS
//! JetStream cluster and one PostgreSQL, one rule that fires on ingested data, one
//! webhook receiver in the test that records every notification with the
//! group-interval slot the collector claimed it for (`X-Calm-Notification-Slot`).
//!
//! - one notification per group interval, not three: every slot from the first
//!   notification to the last holds exactly one, across everything below;
//! - one evaluator: at any time at most one collector reports
//!   `calm_alert_evaluator 1`, and the collectors that do not evaluate answer
//!   `/api/v1/alerts` and `/api/v1/rules` from the shared state (same `activeAt`);
//! - `SIGSTOP` of the evaluator past its lease: another collector takes over within
//!   the lease TTL plus two evaluation intervals, the alert keeps its `activeAt`
//!   (firing since, not reset to pending or resolved and re-fired), no slot is missed
//!   or doubled;
//! - `SIGCONT`: the old evaluator finds its lease gone (on its own clock) and sends
//!   nothing: every later notification carries the new epoch.

use calm_tests::nats::NatsCluster;
use calm_tests::postgres::Postgres;
use calm_tests::webhook::{rfc3339_ms, Received, WebhookReceiver};
use calm_tests::write::{request, series, RemoteWriter};
use calm_tests::{now_ms, wait_for, Collector};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const GROUP_INTERVAL_S: i64 = 10;
const EVAL_INTERVAL_S: u64 = 2;
const EVALUATOR_TTL_S: u64 = 3;

const RULES: &str = r#"groups:
  - name: cluster
    interval: 2s
    rules:
      - alert: ClusterHot
        expr: calm_cluster_alert_value > 0
        for: 4s
        labels:
          severity: page
        annotations:
          summary: "hot on {{ $labels.instance }}"
"#;

fn config(nats: &NatsCluster, pg_url: &str, rules: &str, hook: &str, node: &str) -> String {
    format!(
        "rule_files = [\"{rules}\"]\nevaluation_interval = \"{EVAL_INTERVAL_S}s\"\n\
         [alerting]\nresend_delay = \"2s\"\n\
         [[alerting.webhooks]]\nurl = \"{hook}\"\ngroup_by = [\"alertname\"]\n\
         group_wait = \"1s\"\ngroup_interval = \"{GROUP_INTERVAL_S}s\"\n\
         repeat_interval = \"{GROUP_INTERVAL_S}s\"\n\
         [cluster]\nnats_urls = {}\nnode_id = \"{node}\"\npartitions = 2\n\
         lease_ttl = \"8s\"\nlease_renew = \"1s\"\npublish_timeout = \"3s\"\n\
         fanout_timeout = \"1s\"\n\
         evaluator_lease_ttl = \"{EVALUATOR_TTL_S}s\"\nevaluator_lease_renew = \"500ms\"\n\
         [postgres]\nurl = \"{pg_url}\"\npool_size = 4\ntimeout = \"2s\"\n",
        nats.toml_urls()
    )
}

/// `calm_alert_evaluator` of a collector's `/metrics` (None when it does not answer).
fn evaluator_gauge(c: &Collector, name: &str) -> Option<f64> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_millis(800))
        .build()
        .ok()?;
    let text = client
        .get(format!("{}/metrics", c.url()))
        .send()
        .ok()?
        .text()
        .ok()?;
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Sends `sig` to `pid`.
fn signal(pid: libc::pid_t, sig: libc::c_int) {
    // SAFETY: kill(2) takes plain integers and touches no memory; `pid` is a child this
    // test started and has not reaped, so it names that process.
    unsafe { libc::kill(pid, sig) };
}

fn header(r: &Received, name: &str) -> Option<i64> {
    r.headers
        .iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.parse().ok())
}

/// The firing alert as `/api/v1/alerts` of `c` shows it: (state, activeAt ms).
fn api_alert(c: &Collector) -> Option<(String, i64)> {
    let d = c.api().get_data("/api/v1/alerts", &[]).ok()?;
    let a = d["alerts"].as_array()?.first()?.clone();
    Some((
        a["state"].as_str()?.to_string(),
        rfc3339_ms(a["activeAt"].as_str()?),
    ))
}

/// Notifications by slot; panics naming the slot when one holds two, or when a slot
/// between the first and the last holds none.
fn check_slots(got: &[Received]) -> BTreeMap<i64, i64> {
    let mut by_slot: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for r in got {
        let slot = header(r, "x-calm-notification-slot").expect("a slot header");
        let epoch = header(r, "x-calm-evaluator-epoch").expect("an epoch header");
        by_slot.entry(slot).or_default().push(epoch);
    }
    for (slot, epochs) in &by_slot {
        assert_eq!(
            epochs.len(),
            1,
            "slot {slot} was notified {} times (epochs {epochs:?}); all: {by_slot:?}",
            epochs.len()
        );
    }
    let (first, last) = (
        *by_slot.keys().next().expect("notifications"),
        *by_slot.keys().last().expect("notifications"),
    );
    for s in first..=last {
        assert!(
            by_slot.contains_key(&s),
            "slot {s} was never notified; all: {by_slot:?}"
        );
    }
    by_slot.into_iter().map(|(s, e)| (s, e[0])).collect()
}

#[test]
fn one_evaluator_notifies_once_per_group_interval_and_a_paused_one_is_replaced_and_fenced() {
    let Some(nats) = NatsCluster::start(3) else {
        return;
    };
    let mut pg = match Postgres::start_new() {
        Ok(pg) => pg,
        Err(e) => {
            calm_tests::skip_or_fail::<()>(
                &format!("PostgreSQL: {e}"),
                "run scripts/install-peers",
            );
            return;
        }
    };
    let pg_url = pg.create_db().expect("create database");
    let dir = tempfile::tempdir().expect("tmp");
    let rules = dir.path().join("cluster.yml");
    std::fs::write(&rules, RULES).expect("rules");
    let hook = WebhookReceiver::start();
    let cs: Vec<Collector> = (1..=3)
        .map(|i| {
            Collector::start_with_config(
                &config(
                    &nats,
                    &pg_url,
                    &rules.display().to_string(),
                    &hook.url("/hook"),
                    &format!("c{i}"),
                ),
                &[],
            )
        })
        .collect();

    // Data that keeps the rule true, written round-robin (a paused collector only
    // delays its own writes).
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (stop, acked) = (stop.clone(), acked.clone());
        let urls: Vec<String> = cs.iter().map(|c| c.write_url()).collect();
        std::thread::spawn(move || {
            let ws: Vec<RemoteWriter> = urls
                .iter()
                .map(|u| RemoteWriter::with_timeout(u, Duration::from_secs(2)))
                .collect();
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let req = request(vec![series(
                    "calm_cluster_alert_value",
                    &[("instance", "i1")],
                    &[(now_ms(), 1.0)],
                )]);
                if ws[i % ws.len()].send(&req).is_ok_and(|a| a.ok()) {
                    acked.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };

    let first = hook.wait_for("/hook", Duration::from_secs(90), |b| {
        b["status"] == "firing"
    });
    let Some(first) = first else {
        panic!(
            "no notification within 90 s (writes acknowledged: {}); logs:\n{}\n{}\n{}",
            acked.load(Ordering::Relaxed),
            cs[0].log_tail(30),
            cs[1].log_tail(30),
            cs[2].log_tail(30)
        );
    };
    let starts_at = first.body["alerts"][0]["startsAt"]
        .as_str()
        .expect("startsAt")
        .to_string();

    // One evaluator; the others answer the API from the shared state.
    let evaluator = |cs: &[Collector], skip: Option<usize>| -> Vec<usize> {
        (0..cs.len())
            .filter(|i| Some(*i) != skip)
            .filter(|i| evaluator_gauge(&cs[*i], "calm_alert_evaluator") == Some(1.0))
            .collect()
    };
    let holders = evaluator(&cs, None);
    assert_eq!(holders.len(), 1, "exactly one evaluator: {holders:?}");
    let old = holders[0];
    let old_epoch = evaluator_gauge(&cs[old], "calm_alert_evaluator_epoch").expect("epoch") as i64;
    let (state, active_at) = api_alert(&cs[old]).expect("the evaluator's alert");
    assert_eq!(state, "firing");
    for (i, c) in cs.iter().enumerate() {
        let seen = wait_for(Duration::from_secs(10), Duration::from_millis(200), || {
            api_alert(c).filter(|a| a.0 == "firing" && a.1 == active_at)
        });
        assert!(
            seen.is_some(),
            "collector {i} shows {:?}, the evaluator ({active_at}, firing)",
            api_alert(c)
        );
        let rules = c.api().get_data("/api/v1/rules", &[]).expect("rules");
        let r = &rules["groups"][0]["rules"][0];
        assert_eq!(r["health"], "ok", "collector {i}: {r}");
        assert_eq!(r["state"], "firing", "collector {i}: {r}");
    }

    // A few group intervals with three collectors up: one notification a slot.
    let before = hook.delivered("/hook").len();
    let more = wait_for(
        Duration::from_secs(3 * GROUP_INTERVAL_S as u64 + 15),
        Duration::from_millis(100),
        || (hook.delivered("/hook").len() >= before + 2).then_some(()),
    );
    assert!(
        more.is_some(),
        "notifications stopped: {:?}",
        hook.delivered("/hook").len()
    );
    check_slots(&hook.delivered("/hook"));

    // SIGSTOP the evaluator just after a notification, past its lease.
    let n = hook.delivered("/hook").len();
    wait_for(
        Duration::from_secs(GROUP_INTERVAL_S as u64 + 5),
        Duration::from_millis(20),
        || (hook.delivered("/hook").len() > n).then_some(()),
    )
    .expect("the next notification");
    let pid = cs[old].pid().expect("pid") as libc::pid_t;
    signal(pid, libc::SIGSTOP);
    let paused_at = Instant::now();
    let took = wait_for(Duration::from_secs(30), Duration::from_millis(100), || {
        let h = evaluator(&cs, Some(old));
        (h.len() == 1).then(|| h[0])
    });
    let takeover = paused_at.elapsed();
    let Some(new) = took else {
        signal(pid, libc::SIGCONT);
        panic!("no collector took over within 30 s");
    };
    let bound = Duration::from_secs(EVALUATOR_TTL_S + 2 * EVAL_INTERVAL_S);
    eprintln!("takeover after {takeover:?} (bound {bound:?})");
    assert!(takeover <= bound, "takeover took {takeover:?}, more than the lease TTL + two evaluation intervals ({bound:?})");
    let new_epoch = evaluator_gauge(&cs[new], "calm_alert_evaluator_epoch").expect("epoch") as i64;
    assert!(new_epoch > old_epoch, "epoch {new_epoch} after {old_epoch}");
    let kept = wait_for(Duration::from_secs(10), Duration::from_millis(200), || {
        api_alert(&cs[new]).filter(|a| a.1 == active_at)
    });
    assert_eq!(
        kept.map(|a| a.0),
        Some("firing".to_string()),
        "the new evaluator continues the alert (firing since {active_at})"
    );
    // Hold the old evaluator stopped well past its lease, then let it run again.
    let hold = Duration::from_secs(EVALUATOR_TTL_S + 2);
    if let Some(rest) = hold.checked_sub(paused_at.elapsed()) {
        std::thread::sleep(rest);
    }
    signal(pid, libc::SIGCONT);
    let resumed = hook.delivered("/hook").len();
    let gone = wait_for(Duration::from_secs(10), Duration::from_millis(200), || {
        (evaluator_gauge(&cs[old], "calm_alert_evaluator") == Some(0.0)).then_some(())
    });
    assert!(
        gone.is_some(),
        "the old evaluator still claims the lease; log:\n{}",
        cs[old].log_tail(30)
    );
    assert_eq!(
        evaluator(&cs, None),
        vec![new],
        "one evaluator after SIGCONT"
    );

    // Three more slots: still one notification each, all from the new epoch.
    let more = wait_for(
        Duration::from_secs(3 * GROUP_INTERVAL_S as u64 + 15),
        Duration::from_millis(100),
        || (hook.delivered("/hook").len() >= resumed + 3).then_some(()),
    );
    assert!(more.is_some(), "notifications stopped after the takeover");
    stop.store(true, Ordering::Relaxed);
    let _ = writer.join();
    let all = hook.delivered("/hook");
    let slots = check_slots(&all);
    for r in &all[resumed..] {
        assert_eq!(
            header(r, "x-calm-evaluator-epoch"),
            Some(new_epoch),
            "after SIGCONT only the new evaluator sends: {:?}",
            r.headers
        );
    }
    for r in &all {
        assert_eq!(r.body["status"], "firing", "never resolved: {}", r.body);
        assert_eq!(
            r.body["alerts"][0]["startsAt"].as_str(),
            Some(starts_at.as_str()),
            "firing since the same instant across the takeover"
        );
    }
    assert!(
        cs[old].log().contains("alert evaluator lease lost"),
        "the old evaluator says it stepped down:\n{}",
        cs[old].log_tail(30)
    );
    eprintln!(
        "slots notified: {} ({}..={}), epochs {old_epoch} → {new_epoch}",
        slots.len(),
        slots.keys().next().unwrap_or(&0),
        slots.keys().last().unwrap_or(&0)
    );
    drop(pg);
}
