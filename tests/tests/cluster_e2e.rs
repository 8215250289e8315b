//! Cluster mode end to end (issue 14, "What must be shown" item 1), every part real on
//! loopback: a 3-node NATS JetStream cluster, PostgreSQL, 3 collectors with `[cluster]`
//! and `[postgres]`, a real HAProxy in front (health checks on `/readyz`), 2
//! `calm-agent`s shipping through HAProxy, the real Python `sentry-sdk` with a DSN on
//! HAProxy's address, and the test's own remote-write through HAProxy.
//!
//! The ledger under a steady load:
//! - remote-write rounds (every series gets `(t, round)`) answered 2xx by HAProxy;
//! - OTLP gauge samples each agent acknowledged (it spools, then ships through
//!   HAProxy), values unique per agent;
//! - Sentry events the SDK's own transport saw answered 2xx.
//!
//! During the load: `kill -9` of a collector (and its restart), `kill -9` of the NATS
//! node leading a stream (and its restart), 2 of 3 NATS nodes killed: every write that
//! started and ended in that window was answered 503, never 2xx; then they come back.
//! Afterwards every acknowledged sample and event is read back exactly once through each
//! collector directly and through HAProxy, and nothing that was never sent appears.
//! The test prints the answers per phase (HAProxy's own "no server" 503 apart) and each
//! collector's `/readyz` changes, to see how long each fault keeps writes refused.

use calm_tests::haproxy::Haproxy;
use calm_tests::nats::NatsCluster;
use calm_tests::postgres::Postgres;
use calm_tests::sentry_sdk::run_sdk_script;
use calm_tests::write::{request, series, RemoteWriter};
use calm_tests::{now_ms, require_python_modules, wait_for, workspace_root, Agent, PromApi};
use calm_tests::{Collector, Series};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KEY: &str = "0123456789abcdef0123456789abcdef";
const SERIES: usize = 100;
const PARTITIONS: u32 = 4;
/// Sentry events the SDK sends, one about every `EVENT_INTERVAL` seconds.
const EVENTS: usize = 40;
const EVENT_INTERVAL: &str = "0.7";
/// The phases of the test, for the ledger's figures.
const PHASES: [&str; 7] = [
    "start",
    "collector down",
    "collector back",
    "stream leader down",
    "stream leader back",
    "2 of 3 NATS down",
    "NATS coming back",
];

fn cluster_config(nats: &str, pg_url: &str, node: &str) -> String {
    format!(
        "[[projects]]\nid = 1\nname = \"web\"\npublic_key = \"{KEY}\"\n\
         [cluster]\nnats_urls = {nats}\nnode_id = \"{node}\"\npartitions = {PARTITIONS}\n\
         lease_ttl = \"6s\"\nlease_renew = \"1s\"\npublish_timeout = \"3s\"\n\
         [postgres]\nurl = \"{pg_url}\"\npool_size = 4\ntimeout = \"5s\"\n"
    )
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

/// One round: every series gets the sample `(t, round)`.
fn round_request(round: u64, t: i64) -> calm_wire::prompb::WriteRequest {
    let ts = (0..SERIES)
        .map(|i| {
            series(
                "e2e_ledger",
                &[("series", &format!("s{i:03}"))],
                &[(t, round as f64)],
            )
        })
        .collect();
    request(ts)
}

/// Remote-write straight to one collector: status and Retry-After.
fn direct_write(url: &str, round: u64, t: i64) -> (u16, Option<String>) {
    let r = client()
        .post(url)
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(calm_wire::remote_write::encode(&round_request(round, t)))
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

#[derive(Default)]
struct Ledger {
    /// Rounds answered 2xx: round → timestamp.
    acked: BTreeMap<u64, i64>,
    /// Every round sent: round → timestamp.
    sent: BTreeMap<u64, i64>,
    /// Non-2xx answers by status (0: no answer).
    refused: BTreeMap<u16, u64>,
    /// Answers per phase of the test (see [`PHASES`]) and status.
    /// ("503 haproxy": HAProxy's own answer, no collector ready; "0": no answer).
    by_phase: BTreeMap<(usize, String), u64>,
    /// Answers to writes sent and answered while 2 of 3 NATS nodes were down.
    in_outage: Vec<u16>,
}

/// The `(t, value)` samples one agent acknowledged.
type AgentLedger = Arc<Mutex<Vec<(i64, f64)>>>;

fn otlp_body(instance: &str, ts_ms: i64, value: f64) -> Vec<u8> {
    let ns = (ts_ms as u128 * 1_000_000).to_string();
    serde_json::to_vec(&json!({
        "resourceMetrics": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "e2e"}},
                {"key": "service.instance.id", "value": {"stringValue": instance}}
            ]},
            "scopeMetrics": [{"metrics": [{"name": "calm_e2e_seq", "gauge": {"dataPoints": [
                {"timeUnixNano": ns, "asDouble": value}
            ]}}]}]
        }]
    }))
    .expect("json")
}

/// OTLP load into one agent: sample `seq` of agent `k` has the value `k * 1e6 + seq`;
/// each is retried until the agent acknowledges it. Acknowledged `(t, value)` go to
/// `acked`.
fn agent_load(
    k: u64,
    otlp: String,
    acked: AgentLedger,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let c = client();
        let mut seq = 0u64;
        while !stop.load(Ordering::Relaxed) {
            seq += 1;
            let ts = now_ms();
            let v = (k * 1_000_000 + seq) as f64;
            let body = otlp_body(&format!("load-{k}"), ts, v);
            while !stop.load(Ordering::Relaxed) {
                let ok = c
                    .post(&otlp)
                    .header("Content-Type", "application/json")
                    .body(body.clone())
                    .send()
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    acked.lock().unwrap().push((ts, v));
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    })
}

/// Every acknowledged round through `api`, once, with its value; nothing unsent.
fn check_rounds(api: &PromApi, ledger: &Ledger, at: i64) -> Result<(), String> {
    let rows = api
        .query_matrix("e2e_ledger[1h]", at)
        .map_err(|e| format!("query failed: {e:#}"))?;
    if rows.len() != SERIES {
        return Err(format!("{} series of {SERIES}", rows.len()));
    }
    let by_t: BTreeMap<i64, u64> = ledger.sent.iter().map(|(r, t)| (*t, *r)).collect();
    for row in &rows {
        let mut seen = BTreeSet::new();
        for (t, v) in &row.samples {
            let Some(round) = by_t.get(t) else {
                return Err(format!("sample at {t} that was never sent"));
            };
            if *round as f64 != *v {
                return Err(format!("sample at {t} is {v}, sent {round}"));
            }
            if !seen.insert(*t) {
                return Err(format!("sample at {t} twice in {:?}", row.labels));
            }
        }
        if let Some((round, t)) = ledger.acked.iter().find(|(_, t)| !seen.contains(t)) {
            return Err(format!(
                "acknowledged round {round} (t={t}) missing from {:?}",
                row.labels
            ));
        }
    }
    Ok(())
}

/// Every sample an agent acknowledged, through `api`, exactly once.
fn check_agent_samples(api: &PromApi, acked: &[(i64, f64)]) -> Result<(), String> {
    let rows: Vec<Series> = api
        .query_matrix("calm_e2e_seq[1h]", now_ms())
        .map_err(|e| format!("query failed: {e:#}"))?;
    let mut got: BTreeMap<(i64, u64), u32> = BTreeMap::new();
    for r in &rows {
        for (t, v) in &r.samples {
            *got.entry((*t, v.to_bits())).or_default() += 1;
        }
    }
    for (t, v) in acked {
        match got.get(&(*t, v.to_bits())) {
            Some(1) => {}
            n => {
                return Err(format!(
                    "agent-acknowledged sample ({t}, {v}) found {n:?} times"
                ))
            }
        }
    }
    if let Some(((t, v), n)) = got.iter().find(|(_, n)| **n > 1) {
        return Err(format!("sample ({t}, {}) {n} times", f64::from_bits(*v)));
    }
    Ok(())
}

/// Every event the SDK saw acknowledged is an issue of count 1 through `base`; no
/// ledger issue has a count above 1.
fn check_events(base: &str, acked: &[String]) -> Result<(), String> {
    let v: Value = client()
        .get(format!("{base}/api/calm/v1/issues?project=1&limit=1000"))
        .send()
        .map_err(|e| e.to_string())?
        .json()
        .map_err(|e| e.to_string())?;
    let list = v["data"]
        .as_array()
        .ok_or_else(|| format!("no data: {v}"))?;
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for i in list {
        let title = i["title"].as_str().unwrap_or("");
        if let Some(code) = title.strip_prefix("ledger event ") {
            *counts.entry(code.trim().to_string()).or_default() += i["count"].as_u64().unwrap_or(0);
        }
    }
    for code in acked {
        match counts.get(code) {
            Some(1) => {}
            n => return Err(format!("acknowledged event {code:?} counted {n:?} times")),
        }
    }
    if let Some((code, n)) = counts.iter().find(|(_, n)| **n > 1) {
        return Err(format!("event {code:?} counted {n} times"));
    }
    Ok(())
}

fn step(what: &str, t0: Instant) {
    eprintln!("[{:>6.1}s] {what}", t0.elapsed().as_secs_f64());
}

#[test]
fn every_acknowledged_sample_and_event_survives_collector_and_nats_failures_behind_haproxy() {
    let t0 = Instant::now();
    let Some(mut nats) = NatsCluster::start(3) else {
        return;
    };
    if calm_tests::require_peer("haproxy").is_none() {
        return;
    }
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
    let pg_url = pg.create_db().expect("database");
    let mut cs: Vec<Collector> = (1..=3)
        .map(|i| {
            Collector::start_with_config(
                &cluster_config(&nats.toml_urls(), &pg_url, &format!("c{i}")),
                &[],
            )
        })
        .collect();
    let ports: Vec<u16> = cs.iter().map(|c| c.port()).collect();
    let Some(proxy) = Haproxy::start(&ports) else {
        return;
    };
    let url = proxy.url();
    let agents: Vec<Agent> = (0..2)
        .map(|_| {
            Agent::builder()
                .collector(&url)
                .config("[host]\ninterval = \"1h\"\n")
                .start()
        })
        .collect();
    step("3 NATS, PostgreSQL, 3 collectors, HAProxy, 2 agents up", t0);

    // The load: remote-write rounds through HAProxy, OTLP into both agents, the SDK.
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let outage = Arc::new(AtomicBool::new(false));
    let phase = Arc::new(AtomicUsize::new(0));
    let base = now_ms() - 600_000;
    let next_round = Arc::new(AtomicU64::new(0));
    let writer = {
        let (ledger, stop, outage, next_round, phase) = (
            ledger.clone(),
            stop.clone(),
            outage.clone(),
            next_round.clone(),
            phase.clone(),
        );
        let w = RemoteWriter::with_timeout(&format!("{url}/api/v1/write"), Duration::from_secs(15));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let round = next_round.fetch_add(1, Ordering::Relaxed);
                let t = base + round as i64 * 100;
                ledger.lock().unwrap().sent.insert(round, t);
                let before = outage.load(Ordering::SeqCst);
                // A write is counted in the phase it was sent in.
                let ph = phase.load(Ordering::SeqCst);
                let (status, who) = match w.send(&round_request(round, t)) {
                    Ok(a) if a.body.contains("No server is available") => {
                        (a.status, format!("{} haproxy", a.status))
                    }
                    Ok(a) => (a.status, a.status.to_string()),
                    Err(_) => (0, "0".to_string()),
                };
                let mut l = ledger.lock().unwrap();
                *l.by_phase.entry((ph, who)).or_default() += 1;
                if before && outage.load(Ordering::SeqCst) {
                    l.in_outage.push(status);
                }
                if (200..300).contains(&status) {
                    l.acked.insert(round, t);
                } else {
                    *l.refused.entry(status).or_default() += 1;
                }
                drop(l);
                std::thread::sleep(Duration::from_millis(60));
            }
        })
    };
    // Each collector's /readyz, polled: its changes are printed at the end.
    let readiness = {
        let (stop, urls) = (stop.clone(), cs.iter().map(|c| c.url()).collect::<Vec<_>>());
        std::thread::spawn(move || {
            let c = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .expect("client");
            let mut last: Vec<String> = vec![String::new(); urls.len()];
            let mut changes = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                for (i, u) in urls.iter().enumerate() {
                    let now = match c.get(format!("{u}/readyz")).send() {
                        Ok(r) => {
                            let s = r.status().as_u16();
                            let body = r.text().unwrap_or_default();
                            format!("{s} {}", body.chars().take(160).collect::<String>())
                        }
                        Err(_) => "no answer".to_string(),
                    };
                    if now != last[i] {
                        changes.push(format!(
                            "[{:>6.1}s] c{}: {}",
                            t0.elapsed().as_secs_f64(),
                            i + 1,
                            now.trim()
                        ));
                        last[i] = now;
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            changes
        })
    };
    let agent_acked: Vec<AgentLedger> = (0..2).map(|_| Arc::new(Mutex::new(Vec::new()))).collect();
    let loaders: Vec<_> = agents
        .iter()
        .enumerate()
        .map(|(k, a)| {
            agent_load(
                k as u64 + 1,
                format!("{}/v1/metrics", a.otlp_url()),
                agent_acked[k].clone(),
                stop.clone(),
            )
        })
        .collect();
    let sdk = {
        let dsn = format!("http://{KEY}@127.0.0.1:{}/1", proxy.port());
        let dir = workspace_root().join("tests/python");
        let mut cmd = Command::new(&python);
        cmd.arg(dir.join("sentry_ledger.py"))
            .arg(dsn)
            .arg(EVENTS.to_string())
            .arg(EVENT_INTERVAL)
            .current_dir(&dir);
        std::thread::spawn(move || run_sdk_script(cmd, Duration::from_secs(600)))
    };

    let acked = |l: &Arc<Mutex<Ledger>>| l.lock().unwrap().acked.len();
    let grow = |by: usize, what: &str| {
        let from = acked(&ledger);
        assert!(
            wait_for(Duration::from_secs(60), Duration::from_millis(100), || {
                (acked(&ledger) >= from + by).then_some(())
            })
            .is_some(),
            "writes through HAProxy stopped being acknowledged ({what}); refused: {:?}\n\
             HAProxy:\n{}",
            ledger.lock().unwrap().refused,
            proxy.log_tail(20)
        );
    };
    grow(15, "at start");
    step("load flowing", t0);

    // 1. kill -9 one collector under load; HAProxy routes around it; restart it.
    phase.store(1, Ordering::SeqCst);
    cs[1].kill9();
    grow(15, "with a collector killed");
    cs[1].start_again();
    phase.store(2, Ordering::SeqCst);
    grow(15, "after the collector's restart");
    step("collector killed and restarted", t0);

    // 2. kill -9 the node leading partition 0's stream; restart it.
    let leader = wait_for(Duration::from_secs(20), Duration::from_millis(200), || {
        nats.stream_leader("calm-p-1-0")
    })
    .expect("stream calm-p-1-0 has a leader");
    let li = nats.index_of(&leader).expect("leader is one of ours");
    phase.store(3, Ordering::SeqCst);
    nats.kill9(li);
    grow(15, "with the stream leader killed");
    nats.start_again(li);
    nats.wait_meta_leader(Duration::from_secs(60));
    phase.store(4, Ordering::SeqCst);
    grow(15, "after the stream leader's restart");
    step("stream leader killed and restarted", t0);

    // 3. 2 of 3 NATS nodes down: every write in the window is 503, never 2xx.
    let (a, b) = ((li + 1) % 3, (li + 2) % 3);
    nats.kill9(a);
    nats.kill9(b);
    phase.store(5, Ordering::SeqCst);
    outage.store(true, Ordering::SeqCst);
    let in_window = wait_for(Duration::from_secs(60), Duration::from_millis(100), || {
        (ledger.lock().unwrap().in_outage.len() >= 10).then_some(())
    });
    assert!(in_window.is_some(), "the writer stalled during the outage");
    for (i, c) in cs.iter().enumerate() {
        let round = next_round.fetch_add(1, Ordering::Relaxed);
        let t = base + round as i64 * 100;
        ledger.lock().unwrap().sent.insert(round, t);
        let (status, retry_after) = direct_write(&c.write_url(), round, t);
        assert_eq!(
            (status, retry_after.is_some()),
            (503, true),
            "collector {i} with 2 of 3 NATS nodes down: status and Retry-After"
        );
    }
    outage.store(false, Ordering::SeqCst);
    phase.store(6, Ordering::SeqCst);
    {
        let l = ledger.lock().unwrap();
        assert!(
            l.in_outage.iter().all(|s| *s == 503),
            "writes through HAProxy with 2 of 3 NATS nodes down must all be 503: {:?}",
            l.in_outage
        );
    }
    nats.start_again(a);
    nats.start_again(b);
    nats.wait_meta_leader(Duration::from_secs(60));
    grow(15, "after NATS came back");
    step("2 of 3 NATS nodes down (all 503) and back", t0);

    // The SDK finishes its events; then the load stops.
    let summary = sdk.join().expect("sdk thread");
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer thread");
    for line in readiness.join().expect("readiness thread") {
        eprintln!("readyz {line}");
    }
    for l in loaders {
        l.join().expect("agent load thread");
    }
    let events: Vec<String> = summary["acked"]
        .as_array()
        .expect("acked events")
        .iter()
        .filter_map(|c| c.as_str().map(str::to_string))
        .collect();
    assert!(
        events.len() >= EVENTS / 2,
        "the SDK's events through HAProxy were mostly refused: {summary}"
    );
    step("load stopped", t0);

    let l = ledger.lock().unwrap();
    let at = base + (l.sent.len() as i64 + 10) * 100;
    let agent_samples: Vec<Vec<(i64, f64)>> = agent_acked
        .iter()
        .map(|a| a.lock().unwrap().clone())
        .collect();
    let all_agent: Vec<(i64, f64)> = agent_samples.iter().flatten().copied().collect();
    eprintln!(
        "ledger: {} remote-write rounds sent, {} acknowledged ({} samples), refused {:?}, \
         {} answers in the NATS outage; agents acknowledged {:?} samples; SDK: {summary}",
        l.sent.len(),
        l.acked.len(),
        l.acked.len() * SERIES,
        l.refused,
        l.in_outage.len(),
        agent_samples.iter().map(Vec::len).collect::<Vec<_>>(),
    );
    for ((p, status), n) in &l.by_phase {
        eprintln!("  {:<20} {status:>11}: {n}", PHASES[*p]);
    }
    let mut targets: Vec<(String, PromApi)> = cs.iter().map(|c| (c.url(), c.api())).collect();
    targets.push((format!("HAProxy {url}"), PromApi::new(&url)));
    for (name, api) in &targets {
        let base_url = api.base().to_string();
        let mut last = String::new();
        let ok = wait_for(Duration::from_secs(120), Duration::from_millis(500), || {
            let r = check_rounds(api, &l, at)
                .and_then(|()| check_agent_samples(api, &all_agent))
                .and_then(|()| check_events(&base_url, &events));
            match r {
                Ok(()) => Some(()),
                Err(e) => {
                    last = e;
                    None
                }
            }
        });
        assert!(
            ok.is_some(),
            "through {name}: {last}\nagents:\n{}\n{}",
            agents[0].log_tail(10),
            agents[1].log_tail(10)
        );
        step(
            &format!("everything acknowledged, once, through {name}"),
            t0,
        );
    }
    // The checks can fail: an event, an agent sample and a round never sent are missed.
    let (_, haproxy_api) = targets.last().expect("HAProxy");
    assert!(check_events(&url, &["zz".to_string()]).is_err());
    assert!(check_agent_samples(haproxy_api, &[(now_ms(), -1.0)]).is_err());
    let mut more = Ledger::default();
    more.sent.clone_from(&l.sent);
    more.acked.clone_from(&l.acked);
    more.sent.insert(u64::MAX, at - 1);
    more.acked.insert(u64::MAX, at - 1);
    assert!(check_rounds(haproxy_api, &more, at).is_err());
    drop(l);
    drop(agents);
    drop(cs.pop());
}
