//! What the agent sends its collector, seen on the wire through a recording TCP proxy
//! between them and in the collector's answers:
//! - a Sentry event goes gzip-compressed (`Content-Encoding: gzip`, fewer bytes on the
//!   wire than the event) and arrives as its issue;
//! - the agent's own `calm_agent_*` metrics are shipped with the host's (`job="node"`);
//! - after a clean shutdown (SIGTERM) the host's series are stale at once: an instant
//!   query for `node_load1` of this host is empty right after, where without stale
//!   markers it would answer for 5 minutes.

use calm_tests::{wait_for, Agent, Collector};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const KEY: &str = "0123456789abcdef0123456789abcdef";

/// A TCP proxy to `upstream` that keeps every byte clients sent.
struct Recorder {
    port: u16,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Recorder {
    fn start(upstream: u16) -> Recorder {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = l.local_addr().expect("addr").port();
        let seen: Arc<Mutex<Vec<u8>>> = Arc::default();
        let s = seen.clone();
        std::thread::spawn(move || {
            for client in l.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (mut c_read, mut s_write) = (
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                );
                let (mut s_read, mut c_write) = (server, client);
                let s = s.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    while let Ok(n) = c_read.read(&mut buf) {
                        if n == 0 || s_write.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        s.lock().expect("lock").extend_from_slice(&buf[..n]);
                    }
                    let _ = s_write.shutdown(std::net::Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s_read, &mut c_write);
                    let _ = c_write.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Recorder { port, seen }
    }

    /// The request heads (lowercased) of requests whose first line starts with `prefix`.
    fn heads(&self, prefix: &str) -> Vec<String> {
        let seen = self.seen.lock().expect("lock");
        let text = String::from_utf8_lossy(&seen).to_string();
        text.match_indices(prefix)
            .map(|(i, _)| {
                let end = text[i..].find("\r\n\r\n").map_or(text.len(), |e| i + e);
                text[i..end].to_ascii_lowercase()
            })
            .collect()
    }
}

#[test]
fn events_gzipped_own_metrics_shipped_and_stale_markers_on_shutdown() {
    let c = Collector::start_with_config(
        &format!("[[projects]]\nid = 1\nname = \"web\"\npublic_key = \"{KEY}\"\n"),
        &[],
    );
    let proxy = Recorder::start(c.port());
    let mut agent = Agent::builder()
        .collector(&format!("http://127.0.0.1:{}", proxy.port))
        .config("[host]\ninterval = \"1s\"\n")
        .start();

    // An event of ~20 kB (a long message and extra data), sent uncompressed by the app.
    let filler = "calm shipping test ".repeat(1000);
    let body = format!(
        "{{\"event_id\":\"0123456789abcdef0123456789abcd01\"}}\n{{\"type\":\"event\"}}\n\
         {{\"message\":\"calm-gzip-probe\",\"level\":\"error\",\"extra\":{{\"filler\":\"{filler}\"}}}}\n"
    );
    let raw_len = body.len();
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/api/1/envelope/", agent.url()))
        .header(
            "X-Sentry-Auth",
            format!("Sentry sentry_key={KEY}, sentry_version=7"),
        )
        .body(body)
        .send()
        .expect("post event");
    assert_eq!(r.status().as_u16(), 200);
    let arrived = wait_for(Duration::from_secs(30), Duration::from_millis(200), || {
        let v: serde_json::Value =
            reqwest::blocking::get(format!("{}/api/calm/v1/issues?project=1", c.url()))
                .ok()?
                .json()
                .ok()?;
        v["data"]
            .as_array()?
            .iter()
            .any(|i| {
                i["title"]
                    .as_str()
                    .unwrap_or("")
                    .contains("calm-gzip-probe")
            })
            .then_some(())
    });
    assert!(
        arrived.is_some(),
        "the event did not arrive; agent log:\n{}",
        agent.log_tail(20)
    );
    let heads = proxy.heads("POST /api/1/envelope/");
    assert!(
        !heads.is_empty(),
        "no envelope request went through the proxy"
    );
    let head = &heads[0];
    println!("agent → collector envelope request head:\n{head}");
    assert!(head.contains("content-encoding: gzip"), "not gzip: {head}");
    let wire_len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("content-length");
    println!("event: {raw_len} bytes from the app, {wire_len} bytes on the wire");
    assert!(
        wire_len * 4 < raw_len,
        "{wire_len} bytes on the wire for {raw_len}"
    );

    // The agent's own metrics, shipped with the host's.
    let own = wait_for(Duration::from_secs(30), Duration::from_millis(200), || {
        c.api()
            .query_vector("calm_agent_shipped_total{job=\"node\"}", None)
            .ok()
            .filter(|v| !v.is_empty())
    });
    assert!(
        own.is_some(),
        "calm_agent_shipped_total not at the collector"
    );
    let host = wait_for(Duration::from_secs(30), Duration::from_millis(200), || {
        c.api()
            .query_vector("node_load1{job=\"node\"}", None)
            .ok()
            .filter(|v| v.len() == 1)
    })
    .expect("node_load1 at the collector");
    let instance = host[0].labels.get("instance").cloned().unwrap_or_default();

    // Clean shutdown: the host's series go stale at once.
    let (_, in_time) = agent
        .terminate(Duration::from_secs(30))
        .expect("agent was running");
    assert!(in_time, "the agent did not exit within 30 s of SIGTERM");
    assert!(
        agent.log().contains("stale markers for the host's series"),
        "agent log:\n{}",
        agent.log_tail(20)
    );
    let q = format!("node_load1{{job=\"node\",instance=\"{instance}\"}}");
    let after = c.api().query_vector(&q, None).expect("query");
    assert!(
        after.is_empty(),
        "node_load1 still answers after the agent's clean shutdown: {after:?}"
    );
    let q = format!("calm_agent_spool_entries{{job=\"node\",instance=\"{instance}\"}}");
    assert!(
        c.api().query_vector(&q, None).expect("query").is_empty(),
        "own metrics stale too"
    );
}
