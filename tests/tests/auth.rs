//! Credentials: with agent/read tokens configured, writes and reads need a bearer
//! token; without any credentials the collector binds to loopback only and says so.

use calm_tests::collector::{collector_bin, Collector};
use calm_tests::process::ChildProcess;
use calm_tests::write::{request, series};
use calm_tests::{now_ms, wait_for};
use std::process::Command;
use std::time::Duration;

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

#[test]
fn tokens_guard_writes_and_reads() {
    let c = Collector::start_with_config(
        "[auth]\nagent_tokens = [\"w-secret\"]\nread_tokens = [\"r-secret\"]\n",
        &[],
    );
    let t = now_ms();
    let body = calm_wire::remote_write::encode(&request(vec![series(
        "auth_test",
        &[("job", "x")],
        &[(t, 42.0)],
    )]));
    let post = |token: Option<&str>| {
        let mut r = client()
            .post(c.write_url())
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .body(body.clone());
        if let Some(tok) = token {
            r = r.bearer_auth(tok);
        }
        let resp = r.send().expect("send");
        (resp.status().as_u16(), resp.text().unwrap_or_default())
    };
    let (s, b) = post(None);
    assert_eq!(s, 401, "write without a token: {b}");
    assert!(b.contains("bearer token"), "{b}");
    // A known token of another scope: 403 (the caller is known, the scope is wrong).
    assert_eq!(post(Some("r-secret")).0, 403, "a read token must not write");
    assert_eq!(post(Some("wrong")).0, 401);
    let (s, b) = post(Some("w-secret"));
    assert_eq!(s, 204, "write with the agent token: {b}");

    let query = |token: Option<&str>| {
        let mut r = client().get(format!("{}/api/v1/query", c.url())).query(&[
            ("query", "auth_test"),
            ("time", &format!("{}", t as f64 / 1000.0)),
        ]);
        if let Some(tok) = token {
            r = r.bearer_auth(tok);
        }
        let resp = r.send().expect("send");
        (resp.status().as_u16(), resp.text().unwrap_or_default())
    };
    assert_eq!(query(None).0, 401, "read without a token");
    assert_eq!(
        query(Some("w-secret")).0,
        403,
        "an agent token must not read"
    );
    let (s, b) = query(Some("r-secret"));
    assert_eq!(s, 200, "{b}");
    assert!(b.contains("\"42\""), "the written sample comes back: {b}");
    // Health and readiness stay open for probes.
    assert_eq!(c.api().get("/healthz").expect("healthz").0, 200);
}

/// Local addresses of listening TCP sockets on `port`, from /proc/net/tcp.
fn listening_addrs(port: u16) -> Vec<String> {
    let text = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (local, state) = (f.get(1)?, f.get(3)?);
            let (ip, p) = local.split_once(':')?;
            (*state == "0A" && u16::from_str_radix(p, 16).ok()? == port).then(|| ip.to_string())
        })
        .collect()
}

#[test]
fn without_credentials_it_binds_to_loopback_only_and_says_so() {
    let port = calm_tests::ports::free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("collector.log");
    let mut cmd = Command::new(collector_bin());
    cmd.arg("--listen")
        .arg(format!("0.0.0.0:{port}"))
        .arg("--data-dir")
        .arg(dir.path().join("data"));
    let _proc = ChildProcess::spawn("calm-collector (0.0.0.0)", cmd, &log).expect("spawn");
    let listening = wait_for(Duration::from_secs(60), Duration::from_millis(100), || {
        (!listening_addrs(port).is_empty()).then_some(())
    });
    assert!(
        listening.is_some(),
        "the collector never listened on port {port}"
    );
    // 0100007F is 127.0.0.1 in /proc/net/tcp's byte order; 00000000 would be 0.0.0.0.
    assert_eq!(listening_addrs(port), vec!["0100007F".to_string()]);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("binding to loopback only"),
        "the log says why it did not bind 0.0.0.0:\n{text}"
    );
}
