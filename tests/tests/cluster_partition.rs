//! Cluster mode, a network partition of one owner (issue 14 item 2), with real network
//! namespaces: a 3-node NATS cluster (JetStream R3, `sync_interval: always`) and two
//! collectors in this namespace, and a third collector in a namespace of its own joined
//! to this one by a veth pair. Remote-write rounds keep flowing with a ledger of every
//! acknowledged round; the third collector's link is cut (its side of the veth down:
//! the others' packets to it are dropped, it reaches nothing), then healed.
//!
//! Checked, while cut: writes keep being acknowledged by the other collectors; a write
//! to the isolated collector (from inside its namespace) is refused with 503 and
//! Retry-After, never 2xx; the isolated collector steps down on its own clock — its
//! `/readyz` answers 503 saying why, it serves no partition to the fan-out (its
//! internal select answers "not served" for all), its own queries carry the warning;
//! the others take its partitions over (2 ready owners each among them) and every
//! answer through them is complete or warned. After healing: it rejoins, catches up
//! and is ready again; every acknowledged sample is read back exactly once, with its
//! value, through every collector, and nothing that was never sent appears.
//!
//! Needs root (`ip netns`); skipped with a notice otherwise (a failure under
//! `CALM_REQUIRE_PEERS=1`). The namespace and the veth pair are removed on drop.

use calm_tests::nats::NatsCluster;
use calm_tests::process::ChildProcess;
use calm_tests::write::{request, series};
use calm_tests::{now_ms, wait_for};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::os::fd::AsRawFd as _;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SERIES: usize = 64;
const PARTITIONS: u32 = 8;
const TOKEN: &str = "partition-test-agent-token";

/// A network namespace joined to this one by a veth pair (`root_ip` here, `ns_ip`
/// inside), removed on drop.
struct Netns {
    name: String,
    root_if: String,
    ns_if: String,
    root_ip: String,
    ns_ip: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Netns {
    fn create() -> Option<Netns> {
        let pid = std::process::id();
        let n = Netns {
            name: format!("calm-part-{pid}"),
            root_if: format!("cp{}a", pid % 10_000_000),
            ns_if: format!("cp{}b", pid % 10_000_000),
            root_ip: format!("10.{}.{}.1", 200 + pid % 50, (pid / 50) % 256),
            ns_ip: format!("10.{}.{}.2", 200 + pid % 50, (pid / 50) % 256),
        };
        let setup = || -> Result<(), String> {
            ip(&["netns", "add", &n.name])?;
            ip(&[
                "link", "add", &n.root_if, "type", "veth", "peer", "name", &n.ns_if,
            ])?;
            ip(&["link", "set", &n.ns_if, "netns", &n.name])?;
            ip(&[
                "addr",
                "add",
                &format!("{}/30", n.root_ip),
                "dev",
                &n.root_if,
            ])?;
            ip(&["link", "set", &n.root_if, "up"])?;
            ip(&[
                "-n",
                &n.name,
                "addr",
                "add",
                &format!("{}/30", n.ns_ip),
                "dev",
                &n.ns_if,
            ])?;
            ip(&["-n", &n.name, "link", "set", &n.ns_if, "up"])?;
            ip(&["-n", &n.name, "link", "set", "lo", "up"])?;
            Ok(())
        };
        match setup() {
            Ok(()) => Some(n),
            Err(e) => {
                drop(n);
                calm_tests::skip_or_fail(
                    &format!("cannot make a network namespace with a veth pair ({e})"),
                    "run the test as root on Linux with iproute2 (`ip`)",
                )
            }
        }
    }

    /// Cuts the link: the namespace's side of the veth goes down, so packets from
    /// here to it are dropped and it reaches nothing.
    fn cut(&self) {
        ip(&["-n", &self.name, "link", "set", &self.ns_if, "down"]).expect("cut the veth");
    }

    fn heal(&self) {
        ip(&["-n", &self.name, "link", "set", &self.ns_if, "up"]).expect("heal the veth");
    }

    /// Runs `f` on a thread that entered the namespace (sockets it opens live there).
    fn inside<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let file = std::fs::File::open(&path).expect("open the netns");
                // SAFETY: setns(2) with a valid namespace fd moves only this thread
                // (a scoped thread of our own that ends after `f`) to the namespace;
                // no memory is touched.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .expect("netns thread")
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.root_if]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// A plain HTTP/1.0 exchange (for calls made from inside the namespace): status,
/// the head, the body.
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, String, String), String> {
    let sock: std::net::SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let mut s =
        TcpStream::connect_timeout(&sock, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok();
    let mut head = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
    s.write_all(body).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (h, b) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = h
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status line in {h:?}"))?;
    Ok((status, h.to_string(), b.to_string()))
}

/// A collector process on `listen`, perhaps inside a namespace.
struct Node {
    name: String,
    /// Where the others (and this test, from its namespace) reach it.
    addr: String,
    process: Option<ChildProcess>,
    _dir: tempfile::TempDir,
    log: PathBuf,
}

impl Node {
    fn start(name: &str, listen: &str, addr: &str, nats: &[String], netns: Option<&str>) -> Node {
        let dir = tempfile::Builder::new()
            .prefix(&format!("calm-part-{name}-"))
            .tempdir()
            .expect("temp dir");
        let urls: Vec<String> = nats.iter().map(|u| format!("\"{u}\"")).collect();
        let config = format!(
            "listen = \"{listen}\"\ndata_dir = \"{}\"\n\
             [auth]\nagent_tokens = [\"{TOKEN}\"]\nallow_anonymous_reads = true\n\
             [cluster]\nnats_urls = [{}]\nnode_id = \"{name}\"\nadvertise_url = \"http://{addr}\"\n\
             partitions = {PARTITIONS}\nlease_ttl = \"6s\"\nlease_renew = \"1s\"\n\
             publish_timeout = \"3s\"\nfanout_timeout = \"3s\"\n",
            dir.path().join("data").display(),
            urls.join(", ")
        );
        let path = dir.path().join("collector.toml");
        std::fs::write(&path, config).expect("config");
        let bin = calm_tests::collector::collector_bin();
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        cmd.arg("--config").arg(&path);
        let log = dir.path().join(format!("{name}.log"));
        let process = ChildProcess::spawn(name, cmd, &log).expect("start the collector");
        Node {
            name: name.to_string(),
            addr: addr.to_string(),
            process: Some(process),
            _dir: dir,
            log,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn log_tail(&self, n: usize) -> String {
        calm_tests::file_tail(&self.log, n)
    }

    fn wait_ready(&self) {
        let api = calm_tests::api::PromApi::with_timeout(&self.url(), Duration::from_secs(2));
        let ok = wait_for(Duration::from_secs(90), Duration::from_millis(200), || {
            matches!(api.get("/readyz"), Ok((200, _))).then_some(())
        });
        assert!(
            ok.is_some(),
            "{} not ready in 90 s; log:\n{}",
            self.name,
            self.log_tail(30)
        );
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        drop(self.process.take());
    }
}

/// One round: every series gets the sample `(t, round)`.
fn round_body(round: u64, t: i64) -> Vec<u8> {
    let ts = (0..SERIES)
        .map(|i| {
            series(
                "part_ledger",
                &[("series", &format!("s{i:03}"))],
                &[(t, round as f64)],
            )
        })
        .collect();
    calm_wire::remote_write::encode(&request(ts))
}

const WRITE_HEADERS: [(&str, &str); 4] = [
    ("Content-Encoding", "snappy"),
    ("Content-Type", "application/x-protobuf"),
    ("X-Prometheus-Remote-Write-Version", "0.1.0"),
    ("Authorization", "Bearer partition-test-agent-token"),
];

#[derive(Default)]
struct Ledger {
    acked: BTreeMap<u64, i64>,
    sent: BTreeMap<u64, i64>,
    refused: BTreeMap<String, u64>,
}

/// Every acknowledged round once with its value through `url`, nothing unsent.
fn check_through(url: &str, ledger: &Ledger, at: i64) -> Option<String> {
    let rows = match calm_tests::api::PromApi::new(url).query_matrix("part_ledger[1h]", at) {
        Ok(r) => r,
        Err(e) => return Some(format!("{url}: query failed: {e:#}")),
    };
    if rows.len() != SERIES {
        return Some(format!("{url}: {} series of {SERIES}", rows.len()));
    }
    let by_t: BTreeMap<i64, u64> = ledger.sent.iter().map(|(r, t)| (*t, *r)).collect();
    for row in &rows {
        let mut seen = BTreeSet::new();
        for (t, v) in &row.samples {
            let Some(round) = by_t.get(t) else {
                return Some(format!("{url}: sample at {t} that was never sent"));
            };
            if *round as f64 != *v {
                return Some(format!("{url}: sample at {t} is {v}, sent {round}"));
            }
            if !seen.insert(*t) {
                return Some(format!("{url}: sample at {t} twice"));
            }
        }
        for (round, t) in &ledger.acked {
            if !seen.contains(t) {
                return Some(format!("{url}: acknowledged round {round} (t={t}) missing"));
            }
        }
    }
    None
}

/// The cluster view of the collector at `url`.
fn view(url: &str) -> Option<serde_json::Value> {
    let api = calm_tests::api::PromApi::with_timeout(url, Duration::from_secs(5));
    let (code, body) = api.get("/api/calm/v1/cluster").ok()?;
    (code == 200).then_some(())?;
    serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .map(|v| v["data"].clone())
}

/// Whether `url`'s view shows exactly `nodes` and every partition held by its preferred
/// owners, all ready.
fn settled(url: &str, nodes: &[&str]) -> bool {
    let Some(v) = view(url) else { return false };
    let mut live: Vec<&str> = v["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["node"].as_str())
        .collect();
    live.sort_unstable();
    let mut want = nodes.to_vec();
    want.sort_unstable();
    if live != want {
        return false;
    }
    v["partitions"].as_array().is_some_and(|ps| {
        ps.len() == PARTITIONS as usize
            && ps.iter().all(|p| {
                let owners = p["owners"].as_array().cloned().unwrap_or_default();
                let mut held: Vec<&str> =
                    owners.iter().filter_map(|o| o["node"].as_str()).collect();
                let mut pref: Vec<&str> = p["preferred"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|n| n.as_str())
                    .collect();
                held.sort_unstable();
                pref.sort_unstable();
                held == pref && owners.iter().all(|o| o["ready"] == true)
            })
    })
}

#[test]
fn an_isolated_owner_steps_down_and_nothing_is_lost_or_counted_twice() {
    let Some(ns) = Netns::create() else {
        return;
    };
    let Some(nats) = NatsCluster::start_listening(3, "0.0.0.0") else {
        return;
    };
    let here = nats.client_urls();
    let from_ns = nats.client_urls_via(&ns.root_ip);
    let p1 = calm_tests::ports::free_port();
    let p2 = calm_tests::ports::free_port();
    let p3 = calm_tests::ports::free_port();
    let c1 = Node::start(
        "c1",
        &format!("{}:{p1}", ns.root_ip),
        &format!("{}:{p1}", ns.root_ip),
        &here,
        None,
    );
    let c2 = Node::start(
        "c2",
        &format!("{}:{p2}", ns.root_ip),
        &format!("{}:{p2}", ns.root_ip),
        &here,
        None,
    );
    // The isolated one listens on every address of its namespace (its veth address
    // for the others, loopback for this test's calls from inside).
    let c3 = Node::start(
        "c3",
        &format!("0.0.0.0:{p3}"),
        &format!("{}:{p3}", ns.ns_ip),
        &from_ns,
        Some(&ns.name),
    );
    let c3_inside = format!("127.0.0.1:{p3}");
    for c in [&c1, &c2, &c3] {
        c.wait_ready();
    }
    let all = ["c1", "c2", "c3"];
    for c in [&c1, &c2, &c3] {
        assert!(
            wait_for(Duration::from_secs(60), Duration::from_millis(300), || {
                settled(&c.url(), &all).then_some(())
            })
            .is_some(),
            "{}: not settled at start: {:?}",
            c.name,
            view(&c.url())
        );
    }

    // The ledger writer: rounds round-robin over the collectors this namespace reaches
    // (the isolated one is left out while cut, as a proxy's health check would).
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let isolated = Arc::new(AtomicBool::new(false));
    let next_round = Arc::new(AtomicU64::new(0));
    let base = now_ms() - 600_000;
    let urls = [c1.url(), c2.url(), c3.url()];
    let writer = {
        let (ledger, stop, isolated, next_round) = (
            ledger.clone(),
            stop.clone(),
            isolated.clone(),
            next_round.clone(),
        );
        std::thread::spawn(move || {
            let client = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()
                .expect("client");
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let target = &urls[i % urls.len()];
                if i % urls.len() == 2 && isolated.load(Ordering::Relaxed) {
                    continue;
                }
                let round = next_round.fetch_add(1, Ordering::Relaxed);
                let t = base + round as i64 * 100;
                ledger.lock().unwrap().sent.insert(round, t);
                let mut rq = client
                    .post(format!("{target}/api/v1/write"))
                    .body(round_body(round, t));
                for (k, v) in WRITE_HEADERS {
                    rq = rq.header(k, v);
                }
                match rq.send() {
                    Ok(r) if r.status().is_success() => {
                        ledger.lock().unwrap().acked.insert(round, t);
                    }
                    Ok(r) => {
                        *ledger
                            .lock()
                            .unwrap()
                            .refused
                            .entry(r.status().to_string())
                            .or_default() += 1
                    }
                    Err(e) => {
                        *ledger
                            .lock()
                            .unwrap()
                            .refused
                            .entry(format!("{e}"))
                            .or_default() += 1
                    }
                }
                std::thread::sleep(Duration::from_millis(60));
            }
        })
    };
    // Queriers through the two collectors that stay connected: complete or warned.
    let bad = Arc::new(Mutex::new(Vec::<String>::new()));
    let answers = Arc::new(Mutex::new(BTreeMap::<&'static str, u64>::new()));
    let querying = Arc::new(AtomicBool::new(false));
    let querier = {
        let (stop, bad, answers, querying) =
            (stop.clone(), bad.clone(), answers.clone(), querying.clone());
        let urls = [c1.url(), c2.url()];
        std::thread::spawn(move || {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                if !querying.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                let url = &urls[i % 2];
                i += 1;
                let api = calm_tests::api::PromApi::with_timeout(url, Duration::from_secs(30));
                let r = api.call(
                    false,
                    "/api/v1/query",
                    &[(
                        "query",
                        "count(count_over_time(part_ledger[20m]))".to_string(),
                    )],
                );
                let kind = match r {
                    Ok((200, v))
                        if v.get("warnings")
                            .is_some_and(|w| w.as_array().is_some_and(|a| !a.is_empty())) =>
                    {
                        "warned"
                    }
                    Ok((200, v))
                        if v["data"]["result"][0]["value"][1].as_str()
                            == Some(&SERIES.to_string()) =>
                    {
                        "complete"
                    }
                    Ok((code, v)) => {
                        bad.lock().unwrap().push(format!(
                            "{} {url}: HTTP {code} {v}",
                            calm_tests::fmt_ts(now_ms())
                        ));
                        "bad"
                    }
                    Err(e) => {
                        bad.lock().unwrap().push(format!("{url}: {e:#}"));
                        "bad"
                    }
                };
                *answers.lock().unwrap().entry(kind).or_default() += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let acked = |l: &Arc<Mutex<Ledger>>| l.lock().unwrap().acked.len();
    let grow = |by: usize, what: &str| {
        let from = acked(&ledger);
        assert!(
            wait_for(Duration::from_secs(60), Duration::from_millis(100), || {
                (acked(&ledger) >= from + by).then_some(())
            })
            .is_some(),
            "writes stopped being acknowledged ({what}); refused: {:?}",
            ledger.lock().unwrap().refused
        );
    };
    grow(20, "before the cut");
    // Every series exists now: from here on, a count short of SERIES must say why.
    querying.store(true, Ordering::Relaxed);

    // Cut c3 off.
    isolated.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(300));
    let cut_at = Instant::now();
    ns.cut();
    grow(20, "with c3 cut off");

    // c3 steps down on its own clock: /readyz says why, it serves nothing.
    let mut last = String::new();
    let stepped = wait_for(Duration::from_secs(30), Duration::from_millis(300), || {
        let r = ns.inside(|| http(&c3_inside, "GET", "/readyz", &[], b""));
        last = format!("{r:?}");
        match r {
            Ok((503, _, body)) if body.contains("no contact with NATS") => Some(()),
            _ => None,
        }
    });
    assert!(
        stepped.is_some(),
        "c3's /readyz while cut off: {last}; log:\n{}",
        c3.log_tail(20)
    );
    let stepped_down = cut_at.elapsed();
    let select = serde_json::json!({"partitions": (0..PARTITIONS).collect::<Vec<_>>(), "matchers": [{"name": "__name__", "op": "=", "value": "part_ledger"}], "mint": 0, "maxt": i64::MAX / 2});
    let (code, _, body) = ns
        .inside(|| {
            http(
                &c3_inside,
                "POST",
                "/internal/calm/v1/select",
                &[("Content-Type", "application/json")],
                select.to_string().as_bytes(),
            )
        })
        .expect("c3's internal select");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        v["not_served"].as_array().map(Vec::len),
        Some(PARTITIONS as usize),
        "the isolated c3 still serves partitions: {body:.400}"
    );
    // Its own queries cannot reach the others: partial, and they say so.
    let (code, _, body) = ns
        .inside(|| {
            http(
                &c3_inside,
                "GET",
                "/api/v1/query?query=count(part_ledger)",
                &[],
                b"",
            )
        })
        .expect("query through c3");
    assert!(
        code == 200 && body.contains("no ready owner"),
        "a query through the isolated c3: HTTP {code} {body:.400}"
    );
    // A write to it (from inside its namespace) is refused, never acknowledged.
    for _ in 0..2 {
        let round = next_round.fetch_add(1, Ordering::Relaxed);
        let t = base + round as i64 * 100;
        ledger.lock().unwrap().sent.insert(round, t);
        let body = round_body(round, t);
        let (code, head, text) = ns
            .inside(|| http(&c3_inside, "POST", "/api/v1/write", &WRITE_HEADERS, &body))
            .expect("write to c3");
        assert_eq!(code, 503, "a write to the isolated c3: {head} {text}");
        assert!(
            head.to_ascii_lowercase().contains("retry-after"),
            "503 without Retry-After: {head}"
        );
    }
    // The others take its partitions over: every partition with 2 ready owners among them.
    for c in [&c1, &c2] {
        assert!(
            wait_for(Duration::from_secs(60), Duration::from_millis(300), || {
                settled(&c.url(), &["c1", "c2"]).then_some(())
            })
            .is_some(),
            "{}: not settled on c1, c2 while c3 is cut off: {:?}",
            c.name,
            view(&c.url())
        );
    }
    let taken_over = cut_at.elapsed();
    grow(20, "after the take-over");

    // Heal: c3 comes back, catches up and is ready again.
    let healed_at = Instant::now();
    ns.heal();
    isolated.store(false, Ordering::Relaxed);
    c3.wait_ready();
    for c in [&c1, &c2, &c3] {
        assert!(
            wait_for(Duration::from_secs(60), Duration::from_millis(300), || {
                settled(&c.url(), &all).then_some(())
            })
            .is_some(),
            "{}: not settled after healing: {:?}",
            c.name,
            view(&c.url())
        );
    }
    let rejoined = healed_at.elapsed();
    grow(20, "after healing");
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    querier.join().expect("querier");

    let l = ledger.lock().unwrap();
    let at = base + (l.sent.len() as i64 + 10) * 100;
    eprintln!(
        "ledger: {} rounds sent, {} acknowledged ({} samples), refused {:?}; c3 stepped down {stepped_down:?} after the cut, partitions taken over after {taken_over:?}, rejoined and settled {rejoined:?} after healing; answers through c1/c2: {:?}",
        l.sent.len(),
        l.acked.len(),
        l.acked.len() * SERIES,
        l.refused,
        answers.lock().unwrap()
    );
    let bad = bad.lock().unwrap();
    if !bad.is_empty() {
        for c in [&c1, &c2] {
            for l in std::fs::read_to_string(&c.log)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("cluster:") && !l.contains("consuming from"))
            {
                eprintln!("{}: {l}", c.name);
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{} answers neither complete nor warned: {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    for c in [&c1, &c2, &c3] {
        let mut last = None;
        let ok = wait_for(Duration::from_secs(60), Duration::from_millis(500), || {
            last = check_through(&c.url(), &l, at);
            last.is_none().then_some(())
        });
        assert!(
            ok.is_some(),
            "{}; log:\n{}",
            last.unwrap_or_default(),
            c.log_tail(30)
        );
    }
}
