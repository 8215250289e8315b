//! Cluster mode, faults (issue 14 item 5), with real processes on loopback: a 3-node
//! NATS JetStream cluster, PostgreSQL, 2 collectors, and a real `calm-agent` under a
//! small steady load (an OTLP gauge every 250 ms whose values are their sequence
//! numbers, a Sentry event every second, both through the agent).
//!
//! - `a_starting_collector_answers_healthz_and_says_what_it_waits_for`: before its
//!   stores are open a collector answers `/healthz` 200 and `/readyz` 503 naming what
//!   it waits for (PostgreSQL, then NATS); other requests 503 with Retry-After.
//! - `outages_lose_nothing_and_an_owner_back_after_the_retention_is_alarmed`:
//!   1. PostgreSQL stopped: error ingest answers 503 with Retry-After, `/readyz` 503
//!      naming PostgreSQL; the agent keeps acknowledging events and spools them.
//!   2. Every NATS node killed: metrics ingest answers 503 with Retry-After; the agent
//!      spools samples.
//!   3. Both back: every sample and event the agent acknowledged is there exactly once,
//!      through both collectors.
//!   4. A collector stopped longer than the stream's retention (`stream_max_age` 15 s):
//!      back, it logs an ERROR naming the lost messages, the partition and what to do,
//!      `calm_cluster_partition_gap_messages` > 0, `/readyz` stays 503 saying its copy
//!      is incomplete, and reads through it stay complete (the other owner answers).

use calm_tests::collector::collector_bin;
use calm_tests::nats::NatsCluster;
use calm_tests::postgres::Postgres;
use calm_tests::process::ChildProcess;
use calm_tests::write::{request, series};
use calm_tests::{now_ms, wait_for, Agent, Collector};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KEY: &str = "0123456789abcdef0123456789abcdef";

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

fn get(url: &str) -> (u16, String) {
    match client().get(url).send() {
        Ok(r) => (r.status().as_u16(), r.text().unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

fn postgres() -> Option<Postgres> {
    match Postgres::start_new() {
        Ok(pg) => Some(pg),
        Err(e) => {
            calm_tests::skip_or_fail(&format!("PostgreSQL: {e}"), "run scripts/install-peers")
        }
    }
}

fn cluster_config(nats: &str, pg_url: &str, node: &str) -> String {
    format!(
        "[[projects]]\nid = 1\nname = \"web\"\npublic_key = \"{KEY}\"\n\
         [cluster]\nnats_urls = {nats}\nnode_id = \"{node}\"\npartitions = 2\n\
         lease_ttl = \"6s\"\nlease_renew = \"1s\"\npublish_timeout = \"2s\"\n\
         fanout_timeout = \"2s\"\nstream_max_age = \"15s\"\n\
         [postgres]\nurl = \"{pg_url}\"\npool_size = 4\ntimeout = \"2s\"\n"
    )
}

#[test]
fn a_starting_collector_answers_healthz_and_says_what_it_waits_for() {
    let Some(mut pg) = postgres() else { return };
    let pg_url = pg.create_db().expect("database");
    let dir = tempfile::tempdir().expect("tmp");
    let dead = calm_tests::ports::free_port();
    let dead_pg = format!(
        "postgres://calm@127.0.0.1:{}/calm",
        calm_tests::ports::free_port()
    );
    for (pg, waits_for) in [(dead_pg.as_str(), "PostgreSQL"), (pg_url.as_str(), "NATS")] {
        let port = calm_tests::ports::free_port();
        let cfg = dir.path().join(format!("{waits_for}.toml"));
        std::fs::write(
            &cfg,
            cluster_config(&format!("[\"nats://127.0.0.1:{dead}\"]"), pg, "starting"),
        )
        .expect("config");
        let mut cmd = Command::new(collector_bin());
        cmd.arg("--config")
            .arg(&cfg)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(dir.path().join(format!("data-{waits_for}")));
        let log = dir.path().join(format!("{waits_for}.log"));
        let mut p = ChildProcess::spawn("calm-collector", cmd, &log).expect("spawn");
        let base = format!("http://127.0.0.1:{port}");
        let said = wait_for(Duration::from_secs(30), Duration::from_millis(100), || {
            let (s, body) = get(&format!("{base}/readyz"));
            (s == 503 && body.contains(waits_for)).then_some(body)
        });
        assert!(
            said.is_some(),
            "/readyz names {waits_for}: {:?}\nlog:\n{}",
            get(&format!("{base}/readyz")),
            calm_tests::file_tail(&log, 20)
        );
        assert_eq!(
            get(&format!("{base}/healthz")).0,
            200,
            "/healthz: the process lives"
        );
        let r = client()
            .get(format!("{base}/api/v1/query?query=up"))
            .send()
            .expect("answer");
        assert_eq!(r.status().as_u16(), 503, "nothing else is served yet");
        assert!(
            r.headers().get("retry-after").is_some(),
            "503 with Retry-After"
        );
        assert!(p.is_running(), "it waits, it does not exit");
        p.kill9();
    }
    drop(pg);
}

fn otlp_body(ts_ms: i64, value: f64) -> Vec<u8> {
    let ns = (ts_ms as u128 * 1_000_000).to_string();
    serde_json::to_vec(&json!({
        "resourceMetrics": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "faults"}},
                {"key": "service.instance.id", "value": {"stringValue": "load-1"}}
            ]},
            "scopeMetrics": [{"metrics": [{"name": "calm_faults_seq", "gauge": {"dataPoints": [
                {"timeUnixNano": ns, "asDouble": value}
            ]}}]}]
        }]
    }))
    .expect("json")
}

fn envelope(event_id: &str, n: u64) -> Vec<u8> {
    let ev = format!(
        r#"{{"event_id":"{event_id}","message":"fault event {n}","level":"error","platform":"python","exception":{{"values":[{{"type":"FaultError","value":"fault event {n}"}}]}}}}"#
    );
    format!(
        "{{\"event_id\":\"{event_id}\"}}\n{{\"type\":\"event\",\"length\":{}}}\n{ev}\n",
        ev.len()
    )
    .into_bytes()
}

#[derive(Default)]
struct Acked {
    samples: Vec<(i64, f64)>,
    events: Vec<String>,
}

/// The load through the agent: every OTLP sample is retried until acknowledged (so
/// acknowledged samples are in time order), an event a second.
fn load(
    otlp: String,
    relay: String,
    acked: Arc<Mutex<Acked>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let c = client();
        let (mut seq, mut events) = (0u64, 0u64);
        let mut last_event = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            seq += 1;
            let ts = now_ms();
            let body = otlp_body(ts, seq as f64);
            while !stop.load(Ordering::Relaxed) {
                let ok = c
                    .post(&otlp)
                    .header("Content-Type", "application/json")
                    .body(body.clone())
                    .send()
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    acked.lock().unwrap().samples.push((ts, seq as f64));
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if last_event.elapsed() >= Duration::from_secs(1) {
                last_event = Instant::now();
                events += 1;
                let id = format!("{:032x}", 0xfa17_0000_0000u64 + events);
                let ok = c
                    .post(&relay)
                    .header(
                        "X-Sentry-Auth",
                        format!("Sentry sentry_key={KEY}, sentry_version=7"),
                    )
                    .body(envelope(&id, events))
                    .send()
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    acked.lock().unwrap().events.push(id);
                }
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    })
}

fn events_counted(c: &Collector) -> Option<u64> {
    let v: Value = client()
        .get(format!(
            "{}/api/calm/v1/issues?project=1&limit=1000",
            c.url()
        ))
        .send()
        .ok()?
        .json()
        .ok()?;
    v["data"]
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["count"].as_u64()).sum())
}

/// Every acknowledged sample through `c`, once; `None` when it is not (yet) so.
fn samples_complete(c: &Collector, acked: &[(i64, f64)]) -> Result<(), String> {
    let rows = c
        .api()
        .query_matrix("calm_faults_seq[1h]", now_ms())
        .map_err(|e| format!("{e:#}"))?;
    let mut got: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for r in &rows {
        for (t, v) in &r.samples {
            got.entry(*t).or_default().push(*v);
        }
    }
    for (t, v) in acked {
        match got.get(t).map(|v| v.as_slice()) {
            Some([x]) if x == v => {}
            other => {
                return Err(format!(
                    "{}: acknowledged sample ({t}, {v}) is {other:?}",
                    c.url()
                ))
            }
        }
    }
    if let Some((t, vs)) = got.iter().find(|(_, vs)| vs.len() > 1) {
        return Err(format!("{}: sample at {t} more than once: {vs:?}", c.url()));
    }
    Ok(())
}

/// Remote-write of one fresh sample straight to `c`: status and Retry-After.
fn direct_write(c: &Collector) -> (u16, Option<String>) {
    let req = request(vec![series(
        "calm_faults_direct",
        &[("k", "v")],
        &[(now_ms(), 1.0)],
    )]);
    let r = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
        .post(c.write_url())
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(calm_wire::remote_write::encode(&req))
        .send();
    match r {
        Ok(r) => (
            r.status().as_u16(),
            r.headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        ),
        Err(_) => (0, None),
    }
}

/// One envelope straight to `c`: status and Retry-After.
fn direct_event(c: &Collector) -> (u16, Option<String>) {
    let r = client()
        .post(format!("{}/api/1/envelope/", c.url()))
        .header(
            "X-Sentry-Auth",
            format!("Sentry sentry_key={KEY}, sentry_version=7"),
        )
        .body(envelope("00000000000000000000000000d1ec70", 0))
        .send();
    match r {
        Ok(r) => (
            r.status().as_u16(),
            r.headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        ),
        Err(_) => (0, None),
    }
}

fn step(what: &str, t0: Instant) {
    eprintln!("[{:>6.1}s] {what}", t0.elapsed().as_secs_f64());
}

#[test]
fn outages_lose_nothing_and_an_owner_back_after_the_retention_is_alarmed() {
    let Some(mut nats) = NatsCluster::start(3) else {
        return;
    };
    let Some(mut pg) = postgres() else { return };
    let t0 = Instant::now();
    let pg_url = pg.create_db().expect("database");
    let a = Collector::start_with_config(&cluster_config(&nats.toml_urls(), &pg_url, "c1"), &[]);
    let mut b =
        Collector::start_with_config(&cluster_config(&nats.toml_urls(), &pg_url, "c2"), &[]);
    let agent = Agent::builder()
        .collector(&a.url())
        .config("[host]\ninterval = \"1h\"\n")
        .start();
    let acked = Arc::new(Mutex::new(Acked::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let loader = load(
        format!("{}/v1/metrics", agent.otlp_url()),
        format!("{}/api/1/envelope/", agent.url()),
        acked.clone(),
        stop.clone(),
    );
    let flowing = wait_for(Duration::from_secs(60), Duration::from_millis(300), || {
        let n = acked.lock().unwrap().events.len() as u64;
        (n >= 3 && events_counted(&a).is_some_and(|c| c >= 3)).then_some(())
    });
    assert!(
        flowing.is_some(),
        "load flows; agent log:\n{}",
        agent.log_tail(20)
    );
    step("load flowing", t0);

    // 1. PostgreSQL stopped.
    pg.stop().expect("stop PostgreSQL");
    let refused = wait_for(Duration::from_secs(15), Duration::from_millis(200), || {
        let (s, ra) = direct_event(&a);
        (s == 503).then_some(ra)
    });
    assert!(
        matches!(refused, Some(Some(_))),
        "error ingest with PostgreSQL down: 503 with Retry-After ({refused:?})"
    );
    let unready = wait_for(Duration::from_secs(15), Duration::from_millis(200), || {
        let (s, body) = get(&format!("{}/readyz", a.url()));
        (s == 503 && body.contains("PostgreSQL")).then_some(body)
    });
    assert!(
        unready.is_some(),
        "/readyz names PostgreSQL: {:?}",
        get(&format!("{}/readyz", a.url()))
    );
    let events_before = acked.lock().unwrap().events.len();
    let spooled = wait_for(Duration::from_secs(20), Duration::from_millis(200), || {
        let grew = acked.lock().unwrap().events.len() >= events_before + 3;
        (grew
            && agent
                .metric("calm_agent_spool_entries")
                .is_some_and(|n| n >= 1.0))
        .then_some(())
    });
    assert!(
        spooled.is_some(),
        "the agent acknowledges events and spools them:\n{}",
        agent.log_tail(20)
    );
    step("PostgreSQL down: 503, agent spooling", t0);
    pg.start().expect("start PostgreSQL again");

    // 2. Every NATS node killed.
    for i in 0..3 {
        nats.kill9(i);
    }
    let refused = wait_for(Duration::from_secs(20), Duration::from_millis(200), || {
        let (s, ra) = direct_write(&a);
        (s == 503).then_some(ra)
    });
    assert!(
        matches!(refused, Some(Some(_))),
        "metrics ingest with NATS down: 503 with Retry-After ({refused:?})"
    );
    let samples_before = acked.lock().unwrap().samples.len();
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        acked.lock().unwrap().samples.len() >= samples_before + 8,
        "the agent keeps acknowledging samples while NATS is down"
    );
    assert!(
        agent
            .metric("calm_agent_spool_entries")
            .is_some_and(|n| n >= 1.0),
        "samples wait in the spool"
    );
    step("NATS down: 503, agent spooling", t0);
    for i in 0..3 {
        nats.start_again(i);
    }

    // 3. Everything acknowledged arrives, once, through both collectors.
    let (snap, events) = {
        let g = acked.lock().unwrap();
        (g.samples.clone(), g.events.len() as u64)
    };
    for c in [&a, &b] {
        let mut last = String::new();
        let done = wait_for(Duration::from_secs(120), Duration::from_millis(500), || {
            match samples_complete(c, &snap) {
                Ok(()) => {}
                Err(e) => {
                    last = e;
                    return None;
                }
            }
            let n = events_counted(c).unwrap_or(0);
            last = format!("{n} of at least {events} events");
            (n >= events).then_some(())
        });
        assert!(
            done.is_some(),
            "after the outages: {last}\nagent:\n{}\ncollector:\n{}",
            agent.log_tail(15),
            c.log_tail(15)
        );
    }
    step("all acknowledged samples and events arrived", t0);

    // 4. A collector away longer than the stream's retention.
    b.terminate(Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(25));
    b.start_again_unready();
    let said = wait_for(Duration::from_secs(60), Duration::from_millis(300), || {
        let (s, body) = get(&format!("{}/readyz", b.url()));
        (s == 503 && body.contains("incomplete copy")).then_some(body)
    });
    assert!(
        said.is_some(),
        "/readyz says the copy is incomplete: {:?}\nlog:\n{}",
        get(&format!("{}/readyz", b.url())),
        b.log_tail(20)
    );
    let gap = b.api().get("/metrics").ok().and_then(|(_, t)| {
        calm_tests::agent::sample_value(&t, "calm_cluster_partition_gap_messages")
    });
    assert!(
        gap.is_some_and(|g| g > 0.0),
        "calm_cluster_partition_gap_messages: {gap:?}"
    );
    let log = b.log();
    let line = log
        .lines()
        .find(|l| l.contains("ERROR") && l.contains("stream_max_age"))
        .unwrap_or_else(|| panic!("an ERROR line about the gap:\n{}", b.log_tail(30)));
    assert!(
        line.contains("remove its data directory") && line.contains("partition"),
        "{line}"
    );
    step("owner past retention alarmed", t0);

    // Reads through it stay complete: the other owner answers the incomplete partition.
    stop.store(true, Ordering::Relaxed);
    let _ = loader.join();
    let (all, events) = {
        let g = acked.lock().unwrap();
        (g.samples.clone(), g.events.len() as u64)
    };
    for c in [&a, &b] {
        let mut last = String::new();
        let done = wait_for(Duration::from_secs(60), Duration::from_millis(500), || {
            match samples_complete(c, &all) {
                Ok(()) => {}
                Err(e) => {
                    last = e;
                    return None;
                }
            }
            let n = events_counted(c).unwrap_or(0);
            last = format!("{n} events of {events}");
            (n == events).then_some(())
        });
        // Which owner held what, should a read miss a sample (the next failure says
        // where to look: the owners asked, their applied positions and gaps).
        let status = |x: &Collector| {
            x.api()
                .get("/api/calm/v1/cluster")
                .map(|r| r.1)
                .unwrap_or_else(|e| format!("{e:#}"))
        };
        assert!(
            done.is_some(),
            "at the end: {last}\ncluster as a sees it: {}\nas b sees it: {}\ncollector log:\n{}",
            status(&a),
            status(&b),
            c.log_tail(30)
        );
    }
    eprintln!(
        "acknowledged by the agent: {} samples, {events} events; all present once ({:.1}s)",
        all.len(),
        t0.elapsed().as_secs_f64()
    );
    drop(agent);
}
