//! Cluster mode, metrics path (issue 14): 3 real `nats-server` nodes (JetStream R3,
//! `sync_interval: always`) and 3 real collectors on loopback.
//!
//! - `acknowledged_samples_survive_collector_and_nats_failures`: remote-write rounds
//!   sent round-robin to the collectors with a ledger of every acknowledged round;
//!   `kill -9` of a collector mid-load and its restart; `kill -9` of a stream's leader;
//!   2 of 3 NATS nodes stopped → every write answered 503 with Retry-After, never 2xx.
//!   Afterwards every acknowledged sample is read back through every collector, once,
//!   with its value, and nothing that was never sent appears.
//! - `a_partition_without_a_ready_owner_is_a_warning_or_503_when_strict`: one owner
//!   per partition, the owner of some partitions killed: a query answers with
//!   Prometheus' `warnings` (or 503 on a collector with `strict_reads`), and complete
//!   again once the owner is back.

use calm_tests::nats::NatsCluster;
use calm_tests::write::{request, series, RemoteWriter};
use calm_tests::{now_ms, wait_for, Collector};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SERIES: usize = 120;
const PARTITIONS: u32 = 8;

fn cluster_config(nats: &NatsCluster, node: &str, extra: &str) -> String {
    format!(
        "[cluster]\nnats_urls = {}\nnode_id = \"{node}\"\npartitions = {PARTITIONS}\n\
         lease_ttl = \"6s\"\nlease_renew = \"1s\"\npublish_timeout = \"3s\"\n{extra}",
        nats.toml_urls()
    )
}

/// One round: every series gets the sample `(t, round)`.
fn round_request(round: u64, t: i64) -> calm_wire::prompb::WriteRequest {
    let ts = (0..SERIES)
        .map(|i| {
            series(
                "cluster_ledger",
                &[("series", &format!("s{i:03}"))],
                &[(t, round as f64)],
            )
        })
        .collect();
    request(ts)
}

/// POSTs a remote-write request: status, Retry-After, body.
fn post_remote_write(
    url: &str,
    req: &calm_wire::prompb::WriteRequest,
) -> (u16, Option<String>, String) {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client");
    let resp = client
        .post(url)
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(calm_wire::remote_write::encode(req))
        .send()
        .expect("an answer");
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, retry, resp.text().unwrap_or_default())
}

/// GET `path` with `params`: status and body text (JSON or not).
fn get_raw(c: &Collector, path: &str, params: &[(&str, String)]) -> (u16, String) {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client");
    let resp = client
        .get(format!("{}{path}", c.url()))
        .query(params)
        .send()
        .expect("an answer");
    let status = resp.status().as_u16();
    (status, resp.text().unwrap_or_default())
}

#[derive(Default)]
struct Ledger {
    /// Rounds whose write got 2xx: round → timestamp.
    acked: BTreeMap<u64, i64>,
    /// Every round sent (acknowledged or not): round → timestamp.
    sent: BTreeMap<u64, i64>,
    /// Non-2xx answers by status.
    refused: BTreeMap<u16, u64>,
}

/// Reads every series through `c` and checks the ledger: each acknowledged round is
/// there with its value, nothing unsent is. Returns a problem, or None.
fn check_through(c: &Collector, ledger: &Ledger, at: i64) -> Option<String> {
    let rows = match c.api().query_matrix("cluster_ledger[1h]", at) {
        Ok(r) => r,
        Err(e) => return Some(format!("{}: query failed: {e:#}", c.url())),
    };
    if rows.len() != SERIES {
        return Some(format!("{}: {} series of {SERIES}", c.url(), rows.len()));
    }
    let by_t: BTreeMap<i64, u64> = ledger.sent.iter().map(|(r, t)| (*t, *r)).collect();
    for row in &rows {
        let mut seen = BTreeSet::new();
        for (t, v) in &row.samples {
            let Some(round) = by_t.get(t) else {
                return Some(format!("{}: sample at {t} that was never sent", c.url()));
            };
            if *round as f64 != *v {
                return Some(format!("{}: sample at {t} is {v}, sent {round}", c.url()));
            }
            if !seen.insert(*t) {
                return Some(format!("{}: sample at {t} twice", c.url()));
            }
        }
        for (round, t) in &ledger.acked {
            if !seen.contains(t) {
                return Some(format!(
                    "{}: acknowledged round {round} (t={t}) missing from {:?}",
                    c.url(),
                    row.labels
                ));
            }
        }
    }
    None
}

#[test]
fn acknowledged_samples_survive_collector_and_nats_failures() {
    let Some(mut nats) = NatsCluster::start(3) else {
        return;
    };
    let mut cs: Vec<Collector> = (1..=3)
        .map(|i| Collector::start_with_config(&cluster_config(&nats, &format!("c{i}"), ""), &[]))
        .collect();
    let urls: Vec<String> = cs.iter().map(|c| c.write_url()).collect();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let paused = Arc::new(AtomicBool::new(false));
    let base = now_ms() - 600_000;
    let next_round = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let writer = {
        let (ledger, stop, paused, next_round) = (
            ledger.clone(),
            stop.clone(),
            paused.clone(),
            next_round.clone(),
        );
        std::thread::spawn(move || {
            let writers: Vec<RemoteWriter> = urls
                .iter()
                .map(|u| RemoteWriter::with_timeout(u, Duration::from_secs(15)))
                .collect();
            while !stop.load(Ordering::Relaxed) {
                if paused.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                let round = next_round.fetch_add(1, Ordering::Relaxed);
                let t = base + round as i64 * 100;
                ledger.lock().unwrap().sent.insert(round, t);
                let w = &writers[round as usize % writers.len()];
                match w.send(&round_request(round, t)) {
                    Ok(a) if a.ok() => {
                        ledger.lock().unwrap().acked.insert(round, t);
                    }
                    Ok(a) => *ledger.lock().unwrap().refused.entry(a.status).or_default() += 1,
                    Err(_) => *ledger.lock().unwrap().refused.entry(0).or_default() += 1,
                }
                std::thread::sleep(Duration::from_millis(40));
            }
        })
    };
    let acked = |l: &Arc<Mutex<Ledger>>| l.lock().unwrap().acked.len();
    let grow = |l: &Arc<Mutex<Ledger>>, by: usize, what: &str| {
        let from = acked(l);
        assert!(
            wait_for(Duration::from_secs(60), Duration::from_millis(100), || {
                (acked(l) >= from + by).then_some(())
            })
            .is_some(),
            "writes stopped being acknowledged ({what}); refused: {:?}",
            l.lock().unwrap().refused
        );
    };
    grow(&ledger, 20, "at start");

    // 1. kill -9 one collector mid-load; the writes sent to it fail, the others go on.
    cs[1].kill9();
    grow(&ledger, 20, "with a collector killed");
    cs[1].start_again();
    grow(&ledger, 20, "after the collector's restart");

    // 2. kill -9 the leader of partition 0's stream; restart it.
    let leader = wait_for(Duration::from_secs(20), Duration::from_millis(200), || {
        nats.stream_leader("calm-p-1-0")
    })
    .expect("stream calm-p-1-0 has a leader");
    let li = nats.index_of(&leader).expect("leader is one of ours");
    nats.kill9(li);
    grow(&ledger, 20, "with a stream leader killed");
    nats.start_again(li);
    nats.wait_meta_leader(Duration::from_secs(60));
    grow(&ledger, 20, "after the stream leader's restart");

    // 3. Stop 2 of 3 NATS nodes: writes fail closed (503 + Retry-After), never 2xx.
    paused.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(500));
    nats.kill9(0);
    nats.kill9(1);
    for i in 0..6 {
        let round = next_round.fetch_add(1, Ordering::Relaxed);
        let t = base + round as i64 * 100;
        ledger.lock().unwrap().sent.insert(round, t);
        let c = &cs[i % cs.len()];
        let (status, retry_after, body) =
            post_remote_write(&c.write_url(), &round_request(round, t));
        assert_eq!(
            status,
            503,
            "with 2 of 3 NATS nodes down, {} answered {status} {body}",
            c.url(),
        );
        assert!(retry_after.is_some(), "503 without Retry-After: {body}");
    }
    nats.start_again(0);
    nats.start_again(1);
    nats.wait_meta_leader(Duration::from_secs(60));
    paused.store(false, Ordering::Relaxed);
    grow(&ledger, 20, "after NATS came back");
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer thread");

    // Every acknowledged round, through every collector, once.
    let l = ledger.lock().unwrap();
    let at = base + (l.sent.len() as i64 + 10) * 100;
    eprintln!(
        "ledger: {} rounds sent, {} acknowledged ({} samples), refused {:?}",
        l.sent.len(),
        l.acked.len(),
        l.acked.len() * SERIES,
        l.refused
    );
    for c in &cs {
        let mut last = None;
        let ok = wait_for(Duration::from_secs(90), Duration::from_millis(500), || {
            last = check_through(c, &l, at);
            last.is_none().then_some(())
        });
        assert!(
            ok.is_some(),
            "{}; log:\n{}",
            last.unwrap_or_default(),
            c.log_tail(30)
        );
    }
    // The cluster view names every node and every partition has a ready owner.
    let mut last = String::new();
    let settled = wait_for(Duration::from_secs(60), Duration::from_millis(500), || {
        let (code, body) = cs[0].api().get("/api/calm/v1/cluster").ok()?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        last = body;
        let parts = v["data"]["partitions"].as_array()?;
        (code == 200
            && v["data"]["nodes"].as_array().map(Vec::len) == Some(3)
            && parts.len() == PARTITIONS as usize
            && parts.iter().all(|p| p["ready_owners"].as_u64() >= Some(2)))
        .then_some(())
    });
    assert!(
        settled.is_some(),
        "the cluster view does not show 3 nodes and 2 ready owners per partition: {last}"
    );
    // The cluster's self-metrics are exactly the ones listed for the dashboards.
    let (_, text) = get_raw(&cs[0], "/metrics", &[]);
    let exposed: BTreeSet<String> = text
        .lines()
        .filter(|l| l.starts_with("calm_cluster_"))
        .filter_map(|l| l.split([' ', '{']).next())
        .map(str::to_string)
        .collect();
    let listed: BTreeSet<String> =
        std::fs::read_to_string(calm_tests::workspace_root().join("dashboards/self-metrics.txt"))
            .expect("dashboards/self-metrics.txt")
            .lines()
            .filter_map(|l| l.strip_prefix("calm-collector-cluster "))
            .map(|n| n.trim().to_string())
            .collect();
    assert_eq!(
        exposed, listed,
        "calm_cluster_* on /metrics vs dashboards/self-metrics.txt"
    );
    drop(cs.pop());
}

#[test]
fn a_partition_without_a_ready_owner_is_a_warning_or_503_when_strict() {
    let Some(nats) = NatsCluster::start(3) else {
        return;
    };
    let one = "owners_per_partition = 1\nlease_ttl = \"30s\"\nlease_renew = \"2s\"\n";
    let cfg = |node: &str, extra: &str| {
        cluster_config(&nats, node, extra).replace("lease_ttl = \"6s\"\nlease_renew = \"1s\"\n", "")
    };
    let a = Collector::start_with_config(&cfg("a", one), &[]);
    let b = Collector::start_with_config(&cfg("b", &format!("{one}strict_reads = true\n")), &[]);
    let mut c = Collector::start_with_config(&cfg("c", one), &[]);
    let t = now_ms() - 60_000;
    let req = round_request(7, t);
    let w = RemoteWriter::new(&a.write_url());
    let ans = w.send(&req).expect("write");
    assert!(ans.ok(), "{} {}", ans.status, ans.body);
    let q = "count(cluster_ledger)".to_string();
    let complete = |col: &Collector| {
        wait_for(Duration::from_secs(60), Duration::from_millis(300), || {
            let (code, v) = col
                .api()
                .call(
                    false,
                    "/api/v1/query",
                    &[("query", q.clone()), ("time", calm_tests::fmt_ts(t))],
                )
                .ok()?;
            let n = v["data"]["result"][0]["value"][1].as_str()?.to_string();
            (code == 200 && n == SERIES.to_string() && v.get("warnings").is_none()).then_some(())
        })
    };
    assert!(
        complete(&a).is_some(),
        "not complete through a before the kill"
    );
    // c owns about a third of the partitions, alone: killed, they have no ready owner
    // until its lease expires (30 s).
    c.kill9();
    let warned = wait_for(Duration::from_secs(10), Duration::from_millis(200), || {
        let (code, v) = a
            .api()
            .call(
                false,
                "/api/v1/query",
                &[("query", q.clone()), ("time", calm_tests::fmt_ts(t))],
            )
            .ok()?;
        let w = v.get("warnings")?.as_array()?.clone();
        (code == 200 && !w.is_empty()).then_some((v["data"]["result"][0]["value"][1].clone(), w))
    });
    let (partial, warnings) = warned.expect("a partial answer carries a warning");
    assert!(
        warnings[0]
            .as_str()
            .unwrap_or("")
            .contains("no ready owner"),
        "{warnings:?}"
    );
    assert_ne!(
        partial.as_str(),
        Some(SERIES.to_string().as_str()),
        "the partial count"
    );
    let (code, body) = get_raw(
        &b,
        "/api/v1/query",
        &[("query", q.clone()), ("time", calm_tests::fmt_ts(t))],
    );
    assert_eq!(code, 503, "strict_reads: {body}");
    // The owner comes back (adopting its own leases): complete again, no warning.
    c.start_again();
    assert!(
        complete(&a).is_some(),
        "not complete through a after the owner came back"
    );
    assert!(
        complete(&b).is_some(),
        "not complete through b after the owner came back"
    );
}
