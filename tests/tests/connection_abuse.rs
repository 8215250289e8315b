//! Connection abuse against the real collector and agent: hundreds of connections that
//! send nothing, half a request head, or a head and half a body. The server closes every
//! one within its timeout (plus slack for a busy machine) while `/healthz` and ingest
//! keep answering; at the connection cap new clients wait only until the stalled ones
//! time out.

use calm_tests::agent::sample_value as metric;
use calm_tests::write::{request, series, RemoteWriter};
use calm_tests::{Agent, Collector};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Header and body timeouts the servers are started with.
const HEADER_TIMEOUT_S: u64 = 2;
const BODY_TIMEOUT_S: u64 = 3;
/// Slack on top of a timeout before a connection still open counts as a failure (a
/// shared, busy machine); far below the 60 s an unlimited server would keep them.
const SLACK: Duration = Duration::from_secs(12);

fn limits_toml(max_connections: usize) -> String {
    format!(
        "[limits]\nmax_connections = {max_connections}\nheader_read_timeout = \"{HEADER_TIMEOUT_S}s\"\n\
         body_read_timeout = \"{BODY_TIMEOUT_S}s\"\nidle_timeout = \"{HEADER_TIMEOUT_S}s\"\n"
    )
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Stall {
    /// Connects and sends nothing.
    Nothing,
    /// Half a request head.
    HalfHead,
    /// A whole head announcing 100 000 body bytes, then 1 000 of them.
    HalfBody,
    /// One complete request, then an idle keep-alive connection.
    IdleKeepAlive,
}

fn open(addr: &str, stall: Stall, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    match stall {
        Stall::Nothing => {}
        Stall::HalfHead => {
            let head = format!("POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: app");
            s.write_all(head.as_bytes()).expect("write");
        }
        Stall::HalfBody => {
            // A content type the route takes (browsers' cross-site types are refused).
            let ct = if path == "/api/v1/write" {
                "application/x-protobuf"
            } else {
                "application/json"
            };
            let head = format!(
                "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ct}\r\nContent-Length: 100000\r\n\r\n"
            );
            s.write_all(head.as_bytes()).expect("write");
            s.write_all(&[b' '; 1000]).expect("write");
        }
        Stall::IdleKeepAlive => {
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                .expect("write");
        }
    }
    s
}

/// Reads until the server closes `s`; how long that took from `t0` (None: still open
/// at `give_up`), and what it answered before closing.
fn wait_closed(mut s: TcpStream, t0: Instant, give_up: Duration) -> (Option<Duration>, String) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = give_up.saturating_sub(t0.elapsed());
        if left.is_zero() {
            return (None, String::from_utf8_lossy(&got).into_owned());
        }
        s.set_read_timeout(Some(left.min(Duration::from_secs(1))))
            .expect("timeout");
        match s.read(&mut buf) {
            Ok(0) => {
                return (
                    Some(t0.elapsed()),
                    String::from_utf8_lossy(&got).into_owned(),
                )
            }
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                return (
                    Some(t0.elapsed()),
                    String::from_utf8_lossy(&got).into_owned(),
                )
            }
        }
    }
}

/// Opens `per_kind` connections of each kind on `addr`, checks `alive` (health and
/// ingest) answers while they stall, then that each one was closed in time.
fn abuse(addr: &str, path: &str, per_kind: usize, alive: &dyn Fn() -> Result<(), String>) {
    let t0 = Instant::now();
    let mut socks = Vec::new();
    for kind in [
        Stall::Nothing,
        Stall::HalfHead,
        Stall::HalfBody,
        Stall::IdleKeepAlive,
    ] {
        for _ in 0..per_kind {
            socks.push((kind, open(addr, kind, path)));
        }
    }
    println!(
        "{addr}: {} stalled connections opened in {:.2} s",
        socks.len(),
        t0.elapsed().as_secs_f64()
    );
    // Meanwhile: health and ingest answer.
    let t = Instant::now();
    alive().unwrap_or_else(|e| panic!("{addr}: while stalled: {e}"));
    println!(
        "{addr}: health and ingest answered in {:.2} s while stalled",
        t.elapsed().as_secs_f64()
    );
    // Each stalled connection is closed by the server in time.
    let handles: Vec<_> = socks
        .into_iter()
        .map(|(kind, s)| {
            let limit = match kind {
                Stall::HalfBody => Duration::from_secs(BODY_TIMEOUT_S),
                _ => Duration::from_secs(HEADER_TIMEOUT_S),
            };
            std::thread::spawn(move || (kind, limit, wait_closed(s, t0, limit + SLACK)))
        })
        .collect();
    let mut worst = [Duration::ZERO; 4];
    for h in handles {
        let (kind, limit, (closed, answer)) = h.join().expect("reader");
        let Some(after) = closed else {
            panic!("{addr}: a {kind:?} connection was still open {:?} after it started (timeout {limit:?})", limit + SLACK);
        };
        if kind == Stall::IdleKeepAlive {
            assert!(
                answer.starts_with("HTTP/1.1 "),
                "the request before the idle time is answered, got {answer:?}"
            );
        }
        if kind == Stall::HalfBody {
            assert!(
                answer.starts_with("HTTP/1.1 408"),
                "{addr}: a stalled body is answered 408 before the close, got {answer:?}"
            );
            assert!(answer.contains("body_read_timeout"), "{answer}");
        }
        let i = kind as usize;
        worst[i] = worst[i].max(after);
    }
    println!(
        "{addr}: last close after (nothing, half head, half body, idle keep-alive): {worst:?}"
    );
    alive().unwrap_or_else(|e| panic!("{addr}: after: {e}"));
}

fn healthz(url: &str) -> Result<(), String> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let r = client
        .get(format!("{url}/healthz"))
        .send()
        .map_err(|e| format!("/healthz: {e}"))?;
    if r.status() != 200 {
        return Err(format!("/healthz answered {}", r.status()));
    }
    Ok(())
}

#[test]
fn collector_closes_stalled_connections_and_keeps_serving() {
    let c = Collector::start_with_config(&limits_toml(1024), &[]);
    let url = c.url();
    let addr = format!("127.0.0.1:{}", c.port());
    let writer = RemoteWriter::with_timeout(&c.write_url(), Duration::from_secs(10));
    let n = std::sync::atomic::AtomicI64::new(0);
    let alive = || -> Result<(), String> {
        healthz(&url)?;
        let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let a = writer
            .send(&request(vec![series(
                "abuse_alive",
                &[("i", &i.to_string())],
                &[(now, 1.0)],
            )]))
            .map_err(|e| format!("remote-write: {e}"))?;
        if !a.ok() {
            return Err(format!("remote-write answered {} {}", a.status, a.body));
        }
        Ok(())
    };
    abuse(&addr, "/api/v1/write", 75, &alive);
    let api = c.api();
    let got = api.series(&["abuse_alive"]).expect("series");
    assert_eq!(got.len(), 2, "both writes stored");
}

#[test]
fn collector_at_its_connection_cap_serves_again_once_stalled_clients_time_out() {
    let c = Collector::start_with_config(&limits_toml(50), &[]);
    let addr = format!("127.0.0.1:{}", c.port());
    // Fill the cap with connections that never send anything.
    let idle: Vec<TcpStream> = (0..50).map(|_| open(&addr, Stall::Nothing, "/")).collect();
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    healthz(&c.url()).expect("healthz once the stalled connections are closed");
    let waited = t.elapsed();
    println!("healthz at the cap answered after {waited:?}");
    // It did wait: the cap holds (the stalled 50 went at the header timeout).
    assert!(
        waited >= Duration::from_secs(1),
        "healthz answered after {waited:?}: the 50 stalled connections did not fill the cap"
    );
    assert!(
        waited < Duration::from_secs(HEADER_TIMEOUT_S) + SLACK,
        "a client beyond the cap waits at most about the header timeout, waited {waited:?}"
    );
    let text = reqwest::blocking::get(format!("{}/metrics", c.url()))
        .and_then(|r| r.text())
        .expect("metrics");
    let open_now = metric(&text, "calm_http_connections_open").expect("connections gauge");
    assert!(open_now <= 50.0, "connections open {open_now} > cap 50");
    drop(idle);
}

#[test]
fn agent_closes_stalled_connections_and_keeps_serving() {
    let c = Collector::start();
    let agent = Agent::builder()
        .collector(&c.url())
        .config(&limits_toml(1024))
        .start();
    let url = agent.url();
    let otlp = format!("http://127.0.0.1:{}", agent.otlp_port());
    let alive = || -> Result<(), String> {
        healthz(&url)?;
        let body = br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"abuse_alive","gauge":{"dataPoints":[{"asDouble":1,"timeUnixNano":"1"}]}}]}]}]}"#;
        let r = reqwest::blocking::Client::new()
            .post(format!("{otlp}/v1/metrics"))
            .header("Content-Type", "application/json")
            .timeout(Duration::from_secs(10))
            .body(body.to_vec())
            .send()
            .map_err(|e| format!("OTLP: {e}"))?;
        if !r.status().is_success() {
            return Err(format!("OTLP answered {}", r.status()));
        }
        Ok(())
    };
    abuse(
        &format!("127.0.0.1:{}", agent.otlp_port()),
        "/v1/metrics",
        50,
        &alive,
    );
    abuse(
        &format!("127.0.0.1:{}", agent.port()),
        "/api/1/store/",
        50,
        &alive,
    );
}
