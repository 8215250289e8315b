//! Memory ceilings of the real collector: many clients holding highly compressed bodies
//! (32 KB of gzip that inflates to 30 MiB, all but its last bytes sent) get 503 +
//! Retry-After beyond the in-flight body budget, and peak RSS stays under a stated
//! ceiling (without the budget, 40 held bodies took it past 1.2 GB); a heartbeat flood
//! from thousands of agent ids keeps `limits.max_agents` rows and gets 429 naming it.

use calm_tests::agent::sample_value as metric;
use calm_tests::Collector;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Size each held body inflates to.
const INFLATED: usize = 30 << 20;
/// The in-flight body budget the collector runs with.
const BUDGET: usize = 64 << 20;
/// Held bodies attempted at once.
const CLIENTS: usize = 40;
/// Peak RSS allowed while the bodies are held: the budget plus the collector's own
/// footprint (a debug build idles at ~30-60 MiB) and allocator slack.
const HELD_BODIES_CEILING_MIB: u64 = 256;
/// Peak RSS allowed for the agent holding bodies (two listeners, 32 MiB budget each).
const AGENT_CEILING_MIB: u64 = 200;
/// Peak RSS allowed after the heartbeat flood.
const HEARTBEAT_CEILING_MIB: u64 = 256;

fn gzip_zeros(n: usize) -> Vec<u8> {
    use flate2::write::GzEncoder;
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::best());
    let chunk = vec![0u8; 1 << 20];
    let mut left = n;
    while left > 0 {
        let k = left.min(chunk.len());
        e.write_all(&chunk[..k]).expect("gzip");
        left -= k;
    }
    e.finish().expect("gzip")
}

/// Reads the status line and headers of an answer (None: nothing within `wait`).
fn read_head(s: &mut TcpStream, wait: Duration) -> Option<String> {
    let t0 = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while t0.elapsed() < wait {
        s.set_read_timeout(Some(Duration::from_millis(200))).ok()?;
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if got.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
    }
    (!got.is_empty()).then(|| String::from_utf8_lossy(&got).into_owned())
}

#[test]
fn held_compressed_bodies_are_refused_beyond_the_budget_and_rss_stays_bounded() {
    let c = Collector::start_with_config(
        &format!("[limits]\ninflight_body_bytes = {BUDGET}\nbody_read_timeout = \"8s\"\n"),
        &[],
    );
    let pid = c.pid().expect("pid");
    let idle_kib = calm_tests::agent::proc_status_kib(pid, "VmRSS:").unwrap_or(0);
    let gz = gzip_zeros(INFLATED);
    println!(
        "each body: {} bytes of gzip inflating to {} MiB; budget {} MiB; {CLIENTS} clients",
        gz.len(),
        INFLATED >> 20,
        BUDGET >> 20
    );
    let held = &gz[..gz.len() - 64];
    let addr = format!("127.0.0.1:{}", c.port());
    let mut socks: Vec<TcpStream> = Vec::new();
    for (i, path) in ["/v1/metrics", "/api/1/envelope/"]
        .iter()
        .cycle()
        .take(CLIENTS)
        .enumerate()
    {
        let mut s = TcpStream::connect(&addr).expect("connect");
        let ct = if i % 2 == 0 {
            "application/x-protobuf"
        } else {
            "application/x-sentry-envelope"
        };
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ct}\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
            gz.len()
        );
        s.write_all(head.as_bytes()).expect("head");
        // A refused request may be closed before all of it is written.
        let _ = s.write_all(held);
        socks.push(s);
    }
    // The refusals come at once; the held ones wait for their body deadline (408).
    let mut refused = 0;
    let mut other = Vec::new();
    for s in socks.iter_mut() {
        match read_head(s, Duration::from_secs(20)) {
            Some(h) if h.starts_with("HTTP/1.1 503") => {
                assert!(
                    h.to_ascii_lowercase().contains("retry-after:"),
                    "503 without Retry-After: {h}"
                );
                refused += 1;
            }
            Some(h) => other.push(h.lines().next().unwrap_or("").to_string()),
            None => other.push("(closed or nothing)".into()),
        }
    }
    let hwm_kib = calm_tests::agent::proc_status_kib(pid, "VmHWM:").expect("VmHWM");
    println!(
        "503: {refused}, others: {other:?}; RSS idle {} MiB, peak {} MiB (ceiling {HELD_BODIES_CEILING_MIB} MiB)",
        idle_kib / 1024,
        hwm_kib / 1024
    );
    let could_hold = BUDGET / INFLATED + 1;
    assert!(
        refused >= CLIENTS - could_hold,
        "at most {could_hold} bodies of {} MiB fit in the {} MiB budget; only {refused} of {CLIENTS} were refused",
        INFLATED >> 20,
        BUDGET >> 20
    );
    for o in &other {
        assert!(
            o.starts_with("HTTP/1.1 408") || o.starts_with("HTTP/1.1 503"),
            "a held body ends with 408 at the body deadline, got {o}"
        );
    }
    assert!(
        hwm_kib / 1024 < HELD_BODIES_CEILING_MIB,
        "peak RSS {} MiB over the ceiling {HELD_BODIES_CEILING_MIB} MiB",
        hwm_kib / 1024
    );
    let text = reqwest::blocking::get(format!("{}/metrics", c.url()))
        .and_then(|r| r.text())
        .expect("metrics");
    assert_eq!(
        metric(&text, "calm_http_body_budget_refusals_total"),
        Some(refused as f64),
        "every 503 counted"
    );
    assert_eq!(
        metric(&text, "calm_http_inflight_body_bytes"),
        Some(0.0),
        "the budget is given back"
    );
    // The budget is free again: a normal request goes through.
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/v1/metrics", c.url()))
        .header("Content-Type", "application/json")
        .body(r#"{"resourceMetrics":[]}"#)
        .send()
        .expect("OTLP");
    assert_eq!(r.status(), 200);
}

#[test]
fn agent_refuses_held_compressed_bodies_beyond_its_budget() {
    // The agent's bodies are at most 16 MiB decompressed by default: 15 MiB each, 32 MiB
    // of budget, 20 clients on the OTLP receiver and the Sentry relay.
    const INFLATED: usize = 15 << 20;
    const BUDGET: usize = 32 << 20;
    const CLIENTS: usize = 20;
    let c = Collector::start();
    let agent = calm_tests::Agent::builder()
        .collector(&c.url())
        .config(&format!(
            "[limits]\ninflight_body_bytes = {BUDGET}\nbody_read_timeout = \"6s\"\n"
        ))
        .start();
    let pid = agent.pid().expect("agent pid");
    let gz = gzip_zeros(INFLATED);
    let held = &gz[..gz.len() - 64];
    let mut socks = Vec::new();
    for i in 0..CLIENTS {
        let (port, path, ct) = if i % 2 == 0 {
            (agent.otlp_port(), "/v1/metrics", "application/x-protobuf")
        } else {
            (
                agent.port(),
                "/api/1/envelope/",
                "application/x-sentry-envelope",
            )
        };
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ct}\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
            gz.len()
        );
        s.write_all(head.as_bytes()).expect("head");
        let _ = s.write_all(held);
        socks.push(s);
    }
    let mut refused = 0;
    for s in socks.iter_mut() {
        if let Some(h) = read_head(s, Duration::from_secs(20)) {
            if h.starts_with("HTTP/1.1 503") {
                assert!(h.to_ascii_lowercase().contains("retry-after:"), "{h}");
                refused += 1;
            }
        }
    }
    let hwm_kib = calm_tests::agent::proc_status_kib(pid, "VmHWM:").expect("VmHWM");
    println!(
        "agent: 503: {refused} of {CLIENTS}; peak RSS {} MiB (ceiling {AGENT_CEILING_MIB} MiB)",
        hwm_kib / 1024
    );
    // Two listeners, each with its own budget: at most 3 held bodies on each.
    assert!(
        refused >= CLIENTS - 2 * (BUDGET / INFLATED + 1),
        "only {refused} of {CLIENTS} refused"
    );
    assert!(hwm_kib / 1024 < AGENT_CEILING_MIB);
}

#[test]
fn heartbeat_flood_keeps_max_agents_rows_bound_to_their_tokens() {
    const MAX: usize = 1000;
    const SENT: usize = 3000;
    let c = Collector::start_with_config(
        &format!(
            "[auth]\nagent_tokens = [\"tok-a\", \"tok-b\"]\nread_tokens = [\"tok-r\"]\n\
             [limits]\nmax_agents = {MAX}\n"
        ),
        &[],
    );
    let pid = c.pid().expect("pid");
    let url = format!("{}/api/calm/v1/agents/heartbeat", c.url());
    let long_error = "e".repeat(20_000);
    let results: Vec<(u16, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let (url, long_error) = (&url, &long_error);
                s.spawn(move || {
                    let client = reqwest::blocking::Client::new();
                    let mut out = Vec::new();
                    for i in (t..SENT).step_by(8) {
                        let body = serde_json::json!({
                            "id": format!("agent-{i:05}"),
                            "host": "h",
                            "last_error": long_error,
                        });
                        let r = client
                            .post(url)
                            .bearer_auth("tok-a")
                            .json(&body)
                            .send()
                            .expect("heartbeat");
                        let code = r.status().as_u16();
                        out.push((code, r.text().unwrap_or_default()));
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("sender"))
            .collect()
    });
    let ok = results.iter().filter(|r| r.0 == 204).count();
    let limited: Vec<_> = results.iter().filter(|r| r.0 == 429).collect();
    assert_eq!(ok, MAX, "exactly max_agents ids kept");
    assert_eq!(limited.len(), SENT - MAX, "every other id refused with 429");
    assert!(
        limited[0].1.contains("limits.max_agents"),
        "the 429 names the limit: {}",
        limited[0].1
    );
    // A kept id cannot be overwritten with another token; its own token still can.
    let client = reqwest::blocking::Client::new();
    let kept = results.iter().position(|r| r.0 == 204).expect("a kept one");
    let _ = kept;
    let list: serde_json::Value = client
        .get(format!("{}/api/calm/v1/agents", c.url()))
        .bearer_auth("tok-r")
        .send()
        .and_then(|r| r.json())
        .expect("agents");
    let rows = list["agents"].as_array().expect("agents array");
    assert_eq!(rows.len(), MAX);
    let id = rows[0]["id"].as_str().expect("id").to_string();
    assert!(rows
        .iter()
        .all(|r| r["last_error"].as_str().is_some_and(|e| e.len() <= 1024)));
    let hb = |token: &str| {
        client
            .post(&url)
            .bearer_auth(token)
            .json(&serde_json::json!({"id": id, "host": "intruder"}))
            .send()
            .expect("heartbeat")
    };
    let r = hb("tok-b");
    assert_eq!(r.status(), 403, "another token cannot take over {id}");
    assert!(r.text().unwrap_or_default().contains("another agent token"));
    assert_eq!(hb("tok-a").status(), 204, "the owner still can");
    let text = client
        .get(format!("{}/metrics", c.url()))
        .bearer_auth("tok-r")
        .send()
        .and_then(|r| r.text())
        .expect("metrics");
    assert_eq!(
        metric(
            &text,
            "calm_agents_heartbeats_refused_total{reason=\"max_agents\"}"
        ),
        Some((SENT - MAX) as f64)
    );
    assert_eq!(
        metric(
            &text,
            "calm_agents_heartbeats_refused_total{reason=\"foreign_token\"}"
        ),
        Some(1.0)
    );
    let hwm_kib = calm_tests::agent::proc_status_kib(pid, "VmHWM:").expect("VmHWM");
    println!(
        "heartbeats: {ok} kept, {} refused; peak RSS {} MiB (ceiling {HEARTBEAT_CEILING_MIB} MiB)",
        limited.len(),
        hwm_kib / 1024
    );
    assert!(hwm_kib / 1024 < HEARTBEAT_CEILING_MIB);
}
