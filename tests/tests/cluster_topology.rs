//! Cluster mode, topology changes under query (issue 14 item 3): 3 real collectors on a
//! real 3-node NATS cluster (JetStream R3, `sync_interval: always`), a known set of
//! counters loaded through the log, and `sum(x)` / `sum(rate(x[5m]))` asked without
//! pause through every collector while
//!
//! 1. two collectors join at once (partitions move to them, two partitions with both
//!    their owners: they replay them from the streams, slowed by a failpoint that
//!    fails their first applies, and become ready owners; the owners they replace let
//!    go only then),
//! 2. one collector leaves with a clean stop (SIGTERM),
//! 3. another is `kill -9`ed,
//!
//! and log traffic keeps flowing. Every answer, before, during and after each change,
//! equals the known total, or carries Prometheus' `warnings` entry: never silently
//! short, never a double count, never an error. Each change is waited out until every
//! partition has its 2 ready owners again, as `/api/calm/v1/cluster` shows.

use calm_tests::nats::NatsCluster;
use calm_tests::write::{request, series, RemoteWriter};
use calm_tests::{now_ms, wait_for, Collector};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

const PARTITIONS: u32 = 8;
/// Counters loaded: series i grows by i+1 every 15 s.
const SERIES: usize = 48;
/// Samples per counter, 15 s apart, the last one at the query time.
const STEPS: i64 = 41;

fn cluster_config(nats: &NatsCluster, node: &str) -> String {
    format!(
        "[cluster]\nnats_urls = {}\nnode_id = \"{node}\"\npartitions = {PARTITIONS}\n\
         lease_ttl = \"8s\"\nlease_renew = \"1s\"\npublish_timeout = \"5s\"\nfanout_timeout = \"10s\"\n",
        nats.toml_urls()
    )
}

/// What the queries must answer: `sum(topo_requests_total)` at the last step, and
/// `sum(rate(topo_requests_total[5m]))` (each series i: (i+1)/15 per second).
fn expected() -> (f64, f64) {
    let n = SERIES as f64;
    let sum_weights = n * (n + 1.0) / 2.0;
    (sum_weights * (STEPS - 1) as f64, sum_weights / 15.0)
}

#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// 200, no warnings, the known total.
    Complete,
    /// 200 with a `warnings` entry (a partition without a ready owner).
    Warned(String),
    /// 200 without warnings but not the known total: the failure this test hunts.
    Wrong(String),
    /// Anything else (an HTTP error, no answer).
    Failed(String),
}

/// Asks `query` at `at` and classifies the answer against `want`.
fn ask(api: &calm_tests::api::PromApi, query: &str, at: i64, want: f64) -> Outcome {
    let r = api.call(
        false,
        "/api/v1/query",
        &[
            ("query", query.to_string()),
            ("time", calm_tests::fmt_ts(at)),
        ],
    );
    let (code, v) = match r {
        Ok(x) => x,
        Err(e) => return Outcome::Failed(format!("{e:#}")),
    };
    if code != 200 {
        return Outcome::Failed(format!("HTTP {code}: {v}"));
    }
    if let Some(w) = v.get("warnings").and_then(|w| w.as_array()) {
        if !w.is_empty() {
            return Outcome::Warned(format!("{w:?}"));
        }
    }
    let got = v["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|s| s.parse::<f64>().ok());
    match got {
        Some(g) if (g - want).abs() <= want.abs() * 1e-9 => Outcome::Complete,
        _ => Outcome::Wrong(format!("{query} = {got:?}, want {want}: {v}")),
    }
}

/// The cluster view (`/api/calm/v1/cluster`) of `c`, if it answers.
fn view(c: &str) -> Option<serde_json::Value> {
    let api = calm_tests::api::PromApi::with_timeout(c, Duration::from_secs(5));
    let (code, body) = api.get("/api/calm/v1/cluster").ok()?;
    if code != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    Some(v["data"].clone())
}

/// Waits until `c`'s view shows exactly `nodes` live nodes and every partition held by
/// exactly its 2 preferred owners (rendezvous over the live nodes), both ready.
fn wait_settled(urls: &BTreeMap<&str, String>, nodes: &[&str], what: &str) -> Duration {
    let started = Instant::now();
    let mut last = String::new();
    let ok = wait_for(Duration::from_secs(120), Duration::from_millis(300), || {
        nodes
            .iter()
            .all(|n| settled_in(&urls[n], nodes, &mut last))
            .then_some(())
    });
    assert!(
        ok.is_some(),
        "{what}: the cluster did not settle on 2 ready owners per partition among {nodes:?} in 120 s; a view: {last}"
    );
    started.elapsed()
}

/// Whether `c`'s view shows `nodes` live and every partition held by its preferred
/// owners only, all ready.
fn settled_in(url: &str, nodes: &[&str], last: &mut String) -> bool {
    settled_view(url, nodes, last).is_some()
}

fn settled_view(url: &str, nodes: &[&str], last: &mut String) -> Option<()> {
    {
        let v = view(url)?;
        *last = v.to_string();
        let mut live: Vec<&str> = v["nodes"]
            .as_array()?
            .iter()
            .filter_map(|n| n["node"].as_str())
            .collect();
        live.sort_unstable();
        let mut want = nodes.to_vec();
        want.sort_unstable();
        if live != want {
            return None;
        }
        let parts = v["partitions"].as_array()?;
        let good = parts.len() == PARTITIONS as usize
            && parts.iter().all(|p| {
                let owners = p["owners"].as_array().cloned().unwrap_or_default();
                let mut preferred: Vec<&str> = p["preferred"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|n| n.as_str())
                    .collect();
                let mut held: Vec<&str> =
                    owners.iter().filter_map(|o| o["node"].as_str()).collect();
                preferred.sort_unstable();
                held.sort_unstable();
                held == preferred && owners.iter().all(|o| o["ready"] == true)
            });
        good.then_some(())
    }
}

/// Every collector's URL by name: those the test owns and those started by threads.
fn urls_of<'a>(
    cs: &BTreeMap<&'a str, Collector>,
    more: &BTreeMap<&'a str, String>,
) -> BTreeMap<&'a str, String> {
    let mut m: BTreeMap<&str, String> = cs.iter().map(|(n, c)| (*n, c.url())).collect();
    m.extend(more.iter().map(|(n, u)| (*n, u.clone())));
    m
}

/// The partitions `node` holds in `view`.
fn held_by(v: &serde_json::Value, node: &str) -> usize {
    v["partitions"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter(|p| {
                    p["owners"]
                        .as_array()
                        .is_some_and(|o| o.iter().any(|o| o["node"] == node))
                })
                .count()
        })
        .unwrap_or(0)
}

/// The collectors the queriers use, by name (a collector is removed before it stops,
/// as a proxy's health check would; the write lock waits for queries in flight).
type Targets = Arc<RwLock<BTreeMap<String, String>>>;

#[derive(Default)]
struct Tally {
    /// (phase, outcome kind) → count.
    counts: BTreeMap<(String, &'static str), u64>,
    /// Every answer that was neither complete nor warned.
    bad: Vec<String>,
    /// A few warnings, for the report.
    warnings: Vec<String>,
}

#[test]
fn join_and_leave_under_query_keep_every_answer_complete_or_warned() {
    let Some(nats) = NatsCluster::start(3) else {
        return;
    };
    let mut cs: BTreeMap<&str, Collector> = BTreeMap::new();
    for name in ["c1", "c2", "c3"] {
        cs.insert(
            name,
            Collector::start_with_config(&cluster_config(&nats, name), &[]),
        );
    }
    // The known counters: one request per step, so each partition's stream holds many
    // messages for a new owner to replay.
    let at = now_ms() - 60_000;
    let first = at - (STEPS - 1) * 15_000;
    let writer = RemoteWriter::with_timeout(&cs["c1"].write_url(), Duration::from_secs(30));
    for step in 0..STEPS {
        let t = first + step * 15_000;
        let ts = (0..SERIES)
            .map(|i| {
                series(
                    "topo_requests_total",
                    &[("series", &format!("s{i:03}"))],
                    &[(t, ((i as i64 + 1) * step) as f64)],
                )
            })
            .collect();
        let a = writer.send(&request(ts)).expect("write");
        assert!(a.ok(), "loading step {step}: {} {}", a.status, a.body);
    }
    let (want_sum, want_rate) = expected();
    let queries = [
        ("sum(topo_requests_total)".to_string(), want_sum),
        ("sum(rate(topo_requests_total[5m]))".to_string(), want_rate),
    ];
    for c in cs.values() {
        let ok = wait_for(Duration::from_secs(60), Duration::from_millis(300), || {
            queries
                .iter()
                .all(|(q, w)| ask(&c.api(), q, at, *w) == Outcome::Complete)
                .then_some(())
        });
        assert!(
            ok.is_some(),
            "{}: not complete after loading: {:?}",
            c.url(),
            queries
                .iter()
                .map(|(q, w)| ask(&c.api(), q, at, *w))
                .collect::<Vec<_>>()
        );
    }
    wait_settled(
        &urls_of(&cs, &BTreeMap::new()),
        &["c1", "c2", "c3"],
        "at start",
    );

    // Traffic keeps flowing into the log (other series, now), so the streams move while
    // partitions change hands.
    let stop = Arc::new(AtomicBool::new(false));
    let targets: Targets = Arc::new(RwLock::new(
        cs.iter().map(|(n, c)| (n.to_string(), c.url())).collect(),
    ));
    let noise = {
        let (stop, targets) = (stop.clone(), targets.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            let mut acked = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let url = {
                    let t = targets.read().unwrap();
                    t.values().nth(i as usize % t.len()).cloned()
                };
                i += 1;
                let Some(url) = url else { continue };
                let w = RemoteWriter::with_timeout(
                    &format!("{url}/api/v1/write"),
                    Duration::from_secs(10),
                );
                let t = now_ms();
                let ts = (0..40)
                    .map(|k| series("topo_noise", &[("k", &k.to_string())], &[(t, i as f64)]))
                    .collect();
                if w.send(&request(ts)).is_ok_and(|a| a.ok()) {
                    acked += 1;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            acked
        })
    };
    // The queriers: each asks every target in turn, both queries, without pause.
    let phase = Arc::new(Mutex::new(String::from("before")));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let queriers: Vec<_> = (0..2)
        .map(|q_i| {
            let (stop, targets, phase, tally, queries) = (
                stop.clone(),
                targets.clone(),
                phase.clone(),
                tally.clone(),
                queries.clone(),
            );
            std::thread::spawn(move || {
                let mut i = q_i;
                while !stop.load(Ordering::Relaxed) {
                    let t = targets.read().unwrap();
                    let Some((name, url)) = t.iter().nth(i % t.len()) else {
                        continue;
                    };
                    let (q, want) = &queries[i / t.len() % queries.len()];
                    i += 1;
                    let api = calm_tests::api::PromApi::with_timeout(url, Duration::from_secs(20));
                    let out = ask(&api, q, at, *want);
                    let ph = phase.lock().unwrap().clone();
                    let mut tl = tally.lock().unwrap();
                    let kind = match &out {
                        Outcome::Complete => "complete",
                        Outcome::Warned(w) => {
                            if tl.warnings.len() < 3 {
                                let v = view(url).map(|v| v.to_string()).unwrap_or_default();
                                tl.warnings
                                    .push(format!("{ph} {name}: {w}; its view then: {v}"));
                            }
                            "warned"
                        }
                        Outcome::Wrong(e) | Outcome::Failed(e) => {
                            tl.bad.push(format!("{ph} {name}: {e}"));
                            "bad"
                        }
                    };
                    *tl.counts.entry((ph, kind)).or_default() += 1;
                }
            })
        })
        .collect();
    let set_phase = |p: &str| *phase.lock().unwrap() = p.to_string();
    let answered = |p: &str| -> u64 {
        tally
            .lock()
            .unwrap()
            .counts
            .iter()
            .filter(|((ph, _), _)| ph == p)
            .map(|(_, n)| n)
            .sum()
    };
    let wait_answers = |p: &str, n: u64| {
        assert!(
            wait_for(Duration::from_secs(60), Duration::from_millis(100), || {
                (answered(p) >= n).then_some(())
            })
            .is_some(),
            "phase {p}: fewer than {n} answers in 60 s"
        );
    };
    wait_answers("before", 20);

    // 1. Two collectors join at once. Their node ids are chosen so that rendezvous
    //    hashing gives both owner slots of partitions 3 and 5 to them: those partitions
    //    change both owners, so an old owner letting go before a new one is ready
    //    would leave them unanswered. Their first applies fail (a failpoint; each
    //    failure restarts that consumer after 1 s), so they hold leases on partitions
    //    they have not caught up on for seconds: nobody may read those from them.
    set_phase("join");
    let joined = Instant::now();
    // Each is started (and kept) by a thread of its own: a child dies with the thread
    // that spawned it (PR_SET_PDEATHSIG), so the thread lives until `release`.
    let release = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    let joiners: Vec<_> = ["c5", "c10"]
        .into_iter()
        .map(|n| {
            let (cfg, tx, release) = (cluster_config(&nats, n), tx.clone(), release.clone());
            std::thread::spawn(move || {
                let c = Collector::start_inner_env(
                    Some(&cfg),
                    &[],
                    &[("CALM_FAILPOINTS", "cluster.apply=fail@1-12")],
                );
                let _ = tx.send((n, c.url()));
                while !release.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                }
                drop(c);
            })
        })
        .collect();
    let mut joined_urls: BTreeMap<&str, String> = BTreeMap::new();
    for _ in 0..2 {
        let (n, url) = rx
            .recv_timeout(Duration::from_secs(180))
            .expect("a joining collector started");
        targets.write().unwrap().insert(n.to_string(), url.clone());
        joined_urls.insert(n, url);
    }
    let joined_ready = joined.elapsed();
    let settle_join = wait_settled(
        &urls_of(&cs, &joined_urls),
        &["c1", "c2", "c3", "c5", "c10"],
        "after c5 and c10 joined",
    );
    let v = view(&cs["c1"].url()).expect("cluster view");
    let moved = held_by(&v, "c5") + held_by(&v, "c10");
    for p in [3usize, 5] {
        let mut owners: Vec<&str> = v["partitions"][p]["owners"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| o["node"].as_str())
            .collect();
        owners.sort_unstable();
        assert_eq!(owners, ["c10", "c5"], "partition {p} after the join: {v}");
    }
    wait_answers("join", 20);

    // 2. c2 leaves with a clean stop (taken out of the targets first, as a proxy would).
    set_phase("clean stop");
    targets.write().unwrap().remove("c2");
    let stopped = Instant::now();
    let (status, in_time) = cs
        .get_mut("c2")
        .unwrap()
        .terminate(Duration::from_secs(60))
        .expect("c2 was running");
    assert!(
        in_time,
        "c2 did not stop within 60 s of SIGTERM ({status:?})"
    );
    let stop_took = stopped.elapsed();
    wait_settled(
        &urls_of(&cs, &joined_urls),
        &["c1", "c3", "c5", "c10"],
        "after c2 stopped",
    );
    let settle_stop = stopped.elapsed();
    wait_answers("clean stop", 20);

    // 3. c3 is killed (kill -9).
    set_phase("kill -9");
    targets.write().unwrap().remove("c3");
    cs.get_mut("c3").unwrap().kill9();
    let settle_kill = wait_settled(
        &urls_of(&cs, &joined_urls),
        &["c1", "c5", "c10"],
        "after c3 was killed",
    );
    wait_answers("kill -9", 20);

    set_phase("after");
    wait_answers("after", 20);
    stop.store(true, Ordering::Relaxed);
    for q in queriers {
        q.join().expect("querier");
    }
    let noise_acked = noise.join().expect("noise writer");
    if std::env::var("TOPO_DEBUG").is_ok() {
        for (n, c) in &cs {
            for l in c
                .log()
                .lines()
                .filter(|l| l.contains("cluster:") && !l.contains("consuming"))
            {
                eprintln!("{n}: {l}");
            }
        }
    }
    let tl = tally.lock().unwrap();
    eprintln!(
        "c5 and c10 ready {joined_ready:?} after start; settled after join {settle_join:?}, clean stop {settle_stop:?} (the process handed over and exited in {stop_took:?}), kill -9 {settle_kill:?}; c5 and c10 hold {moved} partition slots of {}; {noise_acked} traffic writes acknowledged", 2 * PARTITIONS
    );
    eprintln!("answers by phase: {:?}", tl.counts);
    for w in &tl.warnings {
        eprintln!("warning seen: {w}");
    }
    assert!(
        tl.bad.is_empty(),
        "{} answers neither complete nor warned, e.g.:\n{}",
        tl.bad.len(),
        tl.bad
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    for p in ["before", "join", "clean stop", "after"] {
        assert_eq!(
            tl.counts.get(&(p.to_string(), "warned")),
            None,
            "phase {p}: answers with warnings while every partition had ready owners"
        );
    }
    // Every collector left answers complete, with no warning.
    drop(tl);
    let urls = urls_of(&cs, &joined_urls);
    for name in ["c1", "c5", "c10"] {
        for (q, w) in &queries {
            assert_eq!(
                ask(&calm_tests::api::PromApi::new(&urls[name]), q, at, *w),
                Outcome::Complete,
                "{name}: {q} at the end"
            );
        }
    }
    assert!(
        noise_acked > 0,
        "the traffic writer got no write acknowledged"
    );
    release.store(true, Ordering::Relaxed);
    for j in joiners {
        j.join().expect("joiner thread");
    }
}
