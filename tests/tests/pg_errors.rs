//! Errors on PostgreSQL (cluster mode's stores), end to end with real processes: a real
//! PostgreSQL server, two collectors on the same database (`[postgres] url`), the real
//! Python `sentry-sdk`, and an agent whose Sentry relay forwards to a collector.
//!
//! - events sent to one collector are issues with exact counts, read the same (same
//!   ids, same counts) through the other collector;
//! - PostgreSQL stopped: event ingest answers 503 with Retry-After (nothing stored),
//!   the issues API 503 too; events sent through the agent meanwhile wait in its spool;
//! - PostgreSQL back: the spooled events arrive, a retried refused event is accepted,
//!   and the counts are exactly what was sent, nothing lost and nothing twice.

use calm_tests::postgres::Postgres;
use calm_tests::sentry_sdk::run_sdk_script;
use calm_tests::{require_python_modules, wait_for, workspace_root, Agent, Collector};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

const KEY: &str = "fedcba9876543210fedcba9876543210";

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

fn config(url: &str) -> String {
    format!(
        "[postgres]\nurl = \"{url}\"\npool_size = 4\ntimeout = \"2s\"\n\
         [[projects]]\nid = 2\nname = \"jobs\"\npublic_key = \"{KEY}\"\n"
    )
}

/// The issues of project 2 (status, list).
fn issues(c: &Collector) -> (u16, Vec<Value>) {
    match client()
        .get(format!(
            "{}/api/calm/v1/issues?project=2&limit=100",
            c.url()
        ))
        .send()
    {
        Ok(r) => {
            let s = r.status().as_u16();
            let v: Value = r.json().unwrap_or(Value::Null);
            (s, v["data"].as_array().cloned().unwrap_or_default())
        }
        Err(_) => (0, Vec::new()),
    }
}

/// `(id, count)` of project 2's issues, by id.
fn counts(c: &Collector) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = issues(c)
        .1
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap_or("").to_string(),
                i["count"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    v.sort();
    v
}

fn total(c: &Collector) -> u64 {
    counts(c).iter().map(|(_, n)| n).sum()
}

/// Runs tests/python/sentry_relay.py: `count` exceptions tagged `tag` (one issue).
fn run_sdk(python: &std::path::Path, dsn: &str, tag: &str, count: usize) -> Value {
    let mut cmd = Command::new(python);
    cmd.arg(workspace_root().join("tests/python/sentry_relay.py"))
        .arg(dsn)
        .arg(tag)
        .arg(count.to_string());
    run_sdk_script(cmd, Duration::from_secs(120))
}

/// POSTs one envelope with a fixed event id; status, Retry-After, body.
fn post_event(c: &Collector, message: &str) -> (u16, Option<String>, String) {
    let mut body =
        b"{\"event_id\":\"5a1e0f3c2b4d4e6f8a9b0c1d2e3f4a5b\"}\n{\"type\":\"event\"}\n".to_vec();
    body.extend_from_slice(
        format!("{{\"message\":\"{message}\",\"level\":\"error\"}}\n").as_bytes(),
    );
    let r = client()
        .post(format!("{}/api/2/envelope/", c.url()))
        .header("Content-Type", "application/x-sentry-envelope")
        .header(
            "X-Sentry-Auth",
            format!("Sentry sentry_key={KEY}, sentry_version=7, sentry_client=calm-tests/1"),
        )
        .body(body)
        .send()
        .expect("POST envelope");
    let s = r.status().as_u16();
    let ra = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (s, ra, r.text().unwrap_or_default())
}

#[test]
fn errors_on_postgres_survive_an_outage_and_are_shared_by_two_collectors() {
    let Some(python) = require_python_modules(&["sentry_sdk"]) else {
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
    let url = pg.create_db().expect("create database");
    let a = Collector::start_with_config(&config(&url), &[]);
    let b = Collector::start_with_config(&config(&url), &[]);

    // 1. Thirty exceptions through collector A: one issue of 30, the same through B.
    run_sdk(
        &python,
        &format!("http://{KEY}@127.0.0.1:{}/2", a.port()),
        "pg-direct",
        30,
    );
    let got = wait_for(Duration::from_secs(30), Duration::from_millis(200), || {
        Some(counts(&a)).filter(|c| c.iter().map(|x| x.1).sum::<u64>() == 30)
    });
    let on_a =
        got.unwrap_or_else(|| panic!("30 events on A: {:?}\n{}", counts(&a), a.log_tail(30)));
    assert_eq!(on_a.len(), 1, "one issue: {on_a:?}");
    assert_eq!(
        counts(&b),
        on_a,
        "collector B reads the same issues from PostgreSQL"
    );

    // 2. PostgreSQL down: ingest 503 with Retry-After, on both collectors.
    pg.stop().expect("stop PostgreSQL");
    for c in [&a, &b] {
        let (s, ra, body) = post_event(c, "refused while down");
        assert_eq!(s, 503, "event ingest with PostgreSQL down: {body}");
        assert!(ra.is_some(), "503 carries Retry-After");
        assert_eq!(issues(c).0, 503, "the issues API says it cannot read");
    }
    // The agent's relay acknowledges the SDK's events and keeps them in its spool.
    let agent = Agent::builder()
        .collector(&a.url())
        .config("[host]\ninterval = \"1h\"\n")
        .start();
    run_sdk(
        &python,
        &format!("http://{KEY}@127.0.0.1:{}/2", agent.port()),
        "pg-relay-down",
        20,
    );
    let spooled = wait_for(Duration::from_secs(30), Duration::from_millis(200), || {
        agent
            .metric("calm_agent_spool_entries")
            .filter(|n| *n >= 1.0)
    });
    assert!(
        spooled.is_some(),
        "events wait in the agent's spool:\n{}",
        agent.log_tail(20)
    );

    // 3. PostgreSQL back: the spool drains into it, the refused event is accepted on a
    //    retry, and the counts are exact.
    pg.start().expect("start PostgreSQL again");
    let drained = wait_for(Duration::from_secs(90), Duration::from_millis(500), || {
        Some(total(&b)).filter(|n| *n == 50)
    });
    assert_eq!(
        drained,
        Some(50),
        "30 + the 20 spooled events; issues {:?}\nagent log:\n{}\ncollector log:\n{}",
        counts(&b),
        agent.log_tail(20),
        a.log_tail(20)
    );
    let retried = wait_for(Duration::from_secs(30), Duration::from_millis(300), || {
        let (s, _, _) = post_event(&b, "refused while down");
        (s == 200).then_some(s)
    });
    assert_eq!(
        retried,
        Some(200),
        "the refused event is accepted once PostgreSQL is back"
    );
    // The same event id again is a duplicate, not counted twice.
    assert_eq!(post_event(&a, "refused while down").0, 200);
    let final_counts = wait_for(Duration::from_secs(10), Duration::from_millis(200), || {
        Some(counts(&a)).filter(|c| c.iter().map(|x| x.1).sum::<u64>() == 51)
    })
    .unwrap_or_else(|| panic!("51 events: {:?}", counts(&a)));
    assert_eq!(
        final_counts.len(),
        2,
        "the SDK's issue and the message's: {final_counts:?}"
    );
    assert_eq!(counts(&b), final_counts, "both collectors agree");
    assert!(final_counts.iter().any(|(_, n)| *n == 50));
}
