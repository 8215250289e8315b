//! The auth matrix against the real binary: every route × token configuration × listen
//! address × caller (no token, agent, read, admin, wrong, lower-case `bearer`), plus the
//! browser attacks (cross-site POSTs, `text/plain` bodies, DNS-rebound `Host` names),
//! cross-project DSN keys and the start-up refusals of half-configured collectors.
//!
//! Expected answers follow the README's auth table: with auth on, a route needs a token
//! of its scope (admin ⊇ read, write); no token or an unknown one → 401, a known token
//! of another scope → 403; a scope without tokens is closed, never open.

use calm_tests::collector::{collector_bin, Collector};
use calm_tests::program::Program;
use calm_tests::write::{request, series};
use calm_tests::{now_ms, wait_for};
use reqwest::blocking::Client;
use std::time::Duration;

const KEY1: &str = "0123456789abcdef0123456789abcdef";
const KEY2: &str = "fedcba9876543210fedcba9876543210";
const AGENT: &str = "agent-tok-1";
const READ: &str = "read-tok-1";
const ADMIN: &str = "admin-tok-1";

const PROJECTS: &str =
    "[[projects]]\nid = 1\nname = \"web\"\npublic_key = \"0123456789abcdef0123456789abcdef\"\n\
     [[projects]]\nid = 2\nname = \"jobs\"\npublic_key = \"fedcba9876543210fedcba9876543210\"\n";

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Scope {
    Public,
    Write,
    Read,
    Admin,
}

/// One request of the matrix.
struct Call {
    scope: Scope,
    method: &'static str,
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    extra: Vec<(&'static str, String)>,
}

/// Every route the collector serves (server.rs and the routers it merges), with a
/// valid request for it.
fn routes() -> Vec<Call> {
    let t = now_ms();
    let secs = format!("{}", t as f64 / 1000.0);
    let earlier = format!("{}", (t - 600_000) as f64 / 1000.0);
    let rw = calm_wire::remote_write::encode(&request(vec![series(
        "matrix_test",
        &[("job", "m")],
        &[(t, 1.0)],
    )]));
    let c = |scope, method, path: &str, ct: Option<&'static str>, body: &[u8]| Call {
        scope,
        method,
        path: path.to_string(),
        content_type: ct,
        body: body.to_vec(),
        extra: vec![],
    };
    let v = vec![
        Call {
            extra: vec![
                ("Content-Encoding", "snappy".into()),
                ("X-Prometheus-Remote-Write-Version", "0.1.0".into()),
            ],
            ..c(
                Scope::Write,
                "POST",
                "/api/v1/write",
                Some("application/x-protobuf"),
                &rw,
            )
        },
        c(
            Scope::Write,
            "POST",
            "/v1/metrics",
            Some("application/json"),
            br#"{"resourceMetrics":[]}"#,
        ),
        c(
            Scope::Write,
            "POST",
            "/api/calm/v1/agents/heartbeat",
            Some("application/json"),
            br#"{"id":"matrix-agent","version":"0"}"#,
        ),
        c(Scope::Read, "GET", "/api/v1/query?query=up", None, b""),
        c(
            Scope::Read,
            "POST",
            "/api/v1/query",
            Some("application/x-www-form-urlencoded"),
            b"query=up",
        ),
        c(
            Scope::Read,
            "GET",
            &format!("/api/v1/query_range?query=up&start={earlier}&end={secs}&step=60"),
            None,
            b"",
        ),
        c(Scope::Read, "GET", "/api/v1/series?match[]=up", None, b""),
        c(Scope::Read, "GET", "/api/v1/labels", None, b""),
        c(
            Scope::Read,
            "GET",
            "/api/v1/label/__name__/values",
            None,
            b"",
        ),
        c(Scope::Read, "GET", "/api/v1/status/buildinfo", None, b""),
        c(Scope::Read, "GET", "/api/v1/metadata", None, b""),
        c(
            Scope::Read,
            "GET",
            "/api/v1/format_query?query=up",
            None,
            b"",
        ),
        c(
            Scope::Read,
            "GET",
            &format!("/api/v1/query_exemplars?query=up&start={earlier}&end={secs}"),
            None,
            b"",
        ),
        c(Scope::Read, "GET", "/api/v1/rules", None, b""),
        c(Scope::Read, "GET", "/api/v1/alerts", None, b""),
        c(Scope::Read, "GET", "/api/calm/v1/projects", None, b""),
        c(Scope::Read, "GET", "/api/calm/v1/issues", None, b""),
        c(Scope::Read, "GET", "/api/calm/v1/issues/1", None, b""),
        c(
            Scope::Read,
            "GET",
            "/api/calm/v1/issues/1/events",
            None,
            b"",
        ),
        c(Scope::Read, "GET", "/api/calm/v1/agents", None, b""),
        c(
            Scope::Admin,
            "PUT",
            "/api/calm/v1/issues/1",
            Some("application/json"),
            br#"{"status":"resolved"}"#,
        ),
        c(Scope::Admin, "POST", "/-/reload", None, b""),
        c(Scope::Public, "GET", "/healthz", None, b""),
        c(Scope::Public, "GET", "/readyz", None, b""),
        c(Scope::Public, "GET", "/metrics", None, b""),
        c(Scope::Public, "GET", "/", None, b""),
    ];
    v
}

/// Sends `call` to `base` with `auth` as the whole Authorization value (if any).
fn send(base: &str, call: &Call, auth: Option<&str>, headers: &[(&str, &str)]) -> (u16, String) {
    let method = reqwest::Method::from_bytes(call.method.as_bytes()).expect("method");
    let mut r = client()
        .request(method, format!("{base}{}", call.path))
        .body(call.body.clone());
    if let Some(ct) = call.content_type {
        r = r.header("Content-Type", ct);
    }
    for (k, v) in &call.extra {
        r = r.header(*k, v);
    }
    if let Some(a) = auth {
        r = r.header("Authorization", a);
    }
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let resp = r
        .send()
        .unwrap_or_else(|e| panic!("{} {}: {e}", call.method, call.path));
    let s = resp.status().as_u16();
    (s, resp.text().unwrap_or_default())
}

/// One event for project 1 with its own key, so that issue 1 exists; waits for it
/// through the API with `read` (a token, or none).
fn seed_issue(base: &str, read: Option<&str>) {
    let r = client()
        .post(format!("{base}/api/1/store/?sentry_key={KEY1}"))
        .header("Content-Type", "application/json")
        .body(r#"{"message":"matrix","exception":{"values":[{"type":"MatrixError","value":"x"}]}}"#)
        .send()
        .expect("store");
    assert_eq!(r.status().as_u16(), 200, "seed event: {:?}", r.text());
    // The issues API sees it once the writer has stored it.
    let seen = wait_for(Duration::from_secs(20), Duration::from_millis(100), || {
        let mut r = client().get(format!("{base}/api/calm/v1/issues/1"));
        if let Some(t) = read {
            r = r.bearer_auth(t);
        }
        (r.send().ok()?.status().as_u16() == 200).then_some(())
    });
    assert!(seen.is_some(), "issue 1 never appeared");
}

/// What a caller gets on a route: the status `want` (an exact code, or 0 for "any 2xx").
fn check(base: &str, what: &str, auth: Option<&str>, want: impl Fn(Scope) -> u16) -> usize {
    let mut n = 0;
    for call in routes() {
        let expected = want(call.scope);
        let (s, body) = send(base, &call, auth, &[]);
        let ok = if expected == 0 {
            (200..300).contains(&s)
        } else {
            s == expected
        };
        assert!(
            ok,
            "{what}: {} {} → {s} (expected {}): {body}",
            call.method,
            call.path,
            if expected == 0 {
                "2xx".to_string()
            } else {
                expected.to_string()
            }
        );
        if expected == 401 {
            assert!(
                body.contains("bearer token"),
                "{what}: {} {}: {body}",
                call.method,
                call.path
            );
        }
        n += 1;
    }
    n
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

#[test]
fn auth_off_on_loopback_opens_every_route_but_not_to_web_pages() {
    let c = Collector::start_with_config(PROJECTS, &[]);
    let base = c.url();
    seed_issue(&base, None);
    let n = check(&base, "auth off", None, |_| 0);
    // A token is ignored when auth is off.
    check(
        &base,
        "auth off, some token",
        Some("Bearer whatever"),
        |_| 0,
    );
    println!("auth off: {n} routes open on loopback");
    // Keys are shown when auth is off (only this machine can ask).
    let v: serde_json::Value = client()
        .get(format!("{base}/api/calm/v1/projects"))
        .send()
        .and_then(|r| r.json())
        .expect("projects");
    assert_eq!(v["data"][0]["public_key"], KEY1, "{v}");
    browser_attacks(&c, None, None);
}

/// The browser protections, for a collector whose credentials are `write` (agent or
/// admin token) and `admin` (or none: auth off).
fn browser_attacks(c: &Collector, write: Option<&str>, admin: Option<&str>) {
    let base = c.url();
    let port = c.port();
    let w = write.map(bearer);
    let a = admin.map(bearer);
    let by_path = |p: &str, m: &str| {
        routes()
            .into_iter()
            .find(|r| r.path == p && r.method == m)
            .expect("route")
    };
    let write_call = by_path("/api/v1/write", "POST");
    let evil = [("Origin", "http://evil.example")];
    // A web page's cross-site POST of any kind: refused.
    for call in [
        by_path("/api/v1/write", "POST"),
        by_path("/v1/metrics", "POST"),
        by_path("/api/calm/v1/agents/heartbeat", "POST"),
    ] {
        let (s, b) = send(&base, &call, w.as_deref(), &evil);
        assert_eq!(s, 403, "cross-site {}: {b}", call.path);
        assert!(b.contains("cross-site"), "{b}");
    }
    for call in [
        by_path("/api/calm/v1/issues/1", "PUT"),
        by_path("/-/reload", "POST"),
    ] {
        let (s, b) = send(&base, &call, a.as_deref(), &evil);
        assert_eq!(s, 403, "cross-site {}: {b}", call.path);
    }
    let (s, b) = send(
        &base,
        &write_call,
        w.as_deref(),
        &[("Sec-Fetch-Site", "cross-site")],
    );
    assert_eq!(s, 403, "Sec-Fetch-Site cross-site: {b}");
    let (s, b) = send(&base, &write_call, w.as_deref(), &[("Origin", "null")]);
    assert_eq!(s, 403, "Origin null: {b}");
    // The CORS-simple shape a page can send without a preflight: text/plain.
    let mut plain = by_path("/api/v1/write", "POST");
    plain.content_type = Some("text/plain");
    let (s, b) = send(&base, &plain, w.as_deref(), &evil);
    assert_eq!(s, 403, "cross-site text/plain write: {b}");
    let (s, b) = send(&base, &plain, w.as_deref(), &[]);
    assert_eq!(s, 415, "text/plain write: {b}");
    assert!(b.contains("application/x-protobuf"), "{b}");
    let mut plain_hb = by_path("/api/calm/v1/agents/heartbeat", "POST");
    plain_hb.content_type = Some("text/plain");
    assert_eq!(send(&base, &plain_hb, w.as_deref(), &[]).0, 415);
    let mut plain_put = by_path("/api/calm/v1/issues/1", "PUT");
    plain_put.content_type = None;
    assert_eq!(send(&base, &plain_put, a.as_deref(), &[]).0, 415);
    // The same page's own origin (a UI served by the collector) may write.
    let own = format!("http://127.0.0.1:{port}");
    let (s, b) = send(
        &base,
        &write_call,
        w.as_deref(),
        &[("Origin", own.as_str()), ("Sec-Fetch-Site", "same-origin")],
    );
    assert_eq!(s, 204, "same-origin write: {b}");
    // DNS rebinding: a foreign name for this address is refused, on reads too.
    let query = by_path("/api/v1/query?query=up", "GET");
    let read_auth = admin.map(bearer);
    for host in ["evil.example", "evil.example:80", "localhost.evil.example"] {
        let (s, b) = send(&base, &query, read_auth.as_deref(), &[("Host", host)]);
        assert_eq!(s, 403, "Host {host}: {b}");
        assert!(b.contains("allowed_hosts"), "the answer names the fix: {b}");
    }
    let (s, _) = send(
        &base,
        &write_call,
        w.as_deref(),
        &[("Host", "evil.example")],
    );
    assert_eq!(s, 403, "foreign Host on a write");
    let lh = format!("localhost:{port}");
    for host in [lh.as_str(), "127.0.0.1", "[::1]:9400"] {
        let (s, b) = send(&base, &query, read_auth.as_deref(), &[("Host", host)]);
        assert_eq!(s, 200, "Host {host}: {b}");
    }
    // Probes answer whatever the Host.
    let (s, _) = send(
        &base,
        &by_path("/healthz", "GET"),
        None,
        &[("Host", "evil.example")],
    );
    assert_eq!(s, 200);
    // Sentry browser SDKs post cross-site, sometimes as text/plain: still taken (DSN key).
    let r = client()
        .post(format!("{base}/api/1/store/?sentry_key={KEY1}"))
        .header("Content-Type", "text/plain;charset=UTF-8")
        .header("Origin", "http://shop.example")
        .header("Sec-Fetch-Site", "cross-site")
        .body(r#"{"message":"from a browser"}"#)
        .send()
        .expect("sentry store");
    assert_eq!(
        r.status().as_u16(),
        200,
        "browser SDK event: {:?}",
        r.text()
    );
    cross_project_keys(&base);
}

/// A project's key writes only its own project and reads nothing.
fn cross_project_keys(base: &str) {
    let post = |project: u64, key: Option<&str>| {
        let q = key.map(|k| format!("?sentry_key={k}")).unwrap_or_default();
        let r = client()
            .post(format!("{base}/api/{project}/store/{q}"))
            .header("Content-Type", "application/json")
            .body(r#"{"message":"cross"}"#)
            .send()
            .expect("store");
        let s = r.status().as_u16();
        (s, r.text().unwrap_or_default())
    };
    let (s, b) = post(1, Some(KEY2));
    assert_eq!(s, 403, "project 2's key on project 1: {b}");
    assert!(b.contains("belongs to project 2"), "{b}");
    let (s, b) = post(2, Some(KEY1));
    assert_eq!(s, 403, "project 1's key on project 2: {b}");
    let envelope = format!(
        "{{\"dsn\":\"http://{KEY2}@127.0.0.1/2\"}}\n{{\"type\":\"event\"}}\n{{\"message\":\"x\"}}\n"
    );
    let r = client()
        .post(format!("{base}/api/1/envelope/"))
        .header("Content-Type", "application/x-sentry-envelope")
        .body(envelope)
        .send()
        .expect("envelope");
    assert_eq!(
        r.status().as_u16(),
        403,
        "envelope dsn of project 2 on project 1"
    );
    assert_eq!(post(1, None).0, 401, "no key");
    assert_eq!(post(1, Some("0000")).0, 401, "unknown key");
}

#[test]
fn full_auth_every_route_by_every_caller() {
    let cfg = format!(
        "[auth]\nagent_tokens = [\"{AGENT}\"]\nread_tokens = [\"{READ}\"]\nadmin_tokens = [\"{ADMIN}\"]\n\
         allowed_hosts = [\"calm.internal\"]\n{PROJECTS}"
    );
    let c = Collector::start_with_config(&cfg, &[]);
    let base = c.url();
    seed_issue(&base, Some(ADMIN));
    let mut n = 0;
    n += check(&base, "no token", None, |s| {
        if s == Scope::Public {
            0
        } else {
            401
        }
    });
    n += check(&base, "wrong token", Some("Bearer nope"), |s| {
        if s == Scope::Public {
            0
        } else {
            401
        }
    });
    n += check(
        &base,
        "not a bearer",
        Some(&format!("Basic {ADMIN}")),
        |s| {
            if s == Scope::Public {
                0
            } else {
                401
            }
        },
    );
    n += check(&base, "a DSN key as token", Some(&bearer(KEY1)), |s| {
        if s == Scope::Public {
            0
        } else {
            401
        }
    });
    n += check(&base, "agent token", Some(&bearer(AGENT)), |s| match s {
        Scope::Public | Scope::Write => 0,
        _ => 403,
    });
    n += check(&base, "read token", Some(&bearer(READ)), |s| match s {
        Scope::Public | Scope::Read => 0,
        _ => 403,
    });
    n += check(
        &base,
        "lower-case bearer, read token",
        Some(&format!("bearer {READ}")),
        |s| match s {
            Scope::Public | Scope::Read => 0,
            _ => 403,
        },
    );
    n += check(&base, "admin token", Some(&bearer(ADMIN)), |_| 0);
    n += check(
        &base,
        "BEARER admin token",
        Some(&format!("BEARER {ADMIN}")),
        |_| 0,
    );
    println!("full auth: {n} route × caller answers as expected");

    // A read token sees projects, not their keys; an admin sees the keys.
    let projects = |tok: &str| -> serde_json::Value {
        client()
            .get(format!("{base}/api/calm/v1/projects"))
            .bearer_auth(tok)
            .send()
            .and_then(|r| r.json())
            .expect("projects")
    };
    let v = projects(READ);
    let text = v.to_string();
    assert!(
        !text.contains(KEY1) && !text.contains(KEY2),
        "keys shown to a read token: {v}"
    );
    assert!(v["data"][0]["dsn"].is_null(), "{v}");
    assert_eq!(projects(ADMIN)["data"][0]["public_key"], KEY1);
    // A read token cannot change an issue's status: it is unchanged.
    let status = || -> String {
        let v: serde_json::Value = client()
            .get(format!("{base}/api/calm/v1/issues/1"))
            .bearer_auth(READ)
            .send()
            .and_then(|r| r.json())
            .expect("issue");
        v["status"].as_str().unwrap_or_default().to_string()
    };
    let put = |tok: &str, st: &str| {
        client()
            .put(format!("{base}/api/calm/v1/issues/1"))
            .bearer_auth(tok)
            .header("Content-Type", "application/json")
            .body(format!("{{\"status\":\"{st}\"}}"))
            .send()
            .expect("PUT")
            .status()
            .as_u16()
    };
    assert_eq!(put(ADMIN, "unresolved"), 200);
    assert_eq!(put(READ, "ignored"), 403);
    assert_eq!(status(), "unresolved", "a refused PUT changed nothing");
    // allowed_hosts adds a name to the rebinding guard.
    let r = client()
        .get(format!("{base}/api/v1/labels"))
        .header("Host", "calm.internal:9400")
        .bearer_auth(READ)
        .send()
        .expect("labels");
    assert_eq!(r.status().as_u16(), 200);
    browser_attacks(&c, Some(AGENT), Some(ADMIN));
}

#[test]
fn half_configured_auth_on_loopback_stays_closed() {
    // Read tokens only: writes are not open, and the read token changes nothing.
    let c = Collector::start_with_config(
        &format!("[auth]\nread_tokens = [\"{READ}\"]\n{PROJECTS}"),
        &[],
    );
    let base = c.url();
    seed_issue(&base, Some(READ));
    check(&base, "read-only config, no token", None, |s| {
        if s == Scope::Public {
            0
        } else {
            401
        }
    });
    check(
        &base,
        "read-only config, read token",
        Some(&bearer(READ)),
        |s| match s {
            Scope::Public | Scope::Read => 0,
            _ => 403,
        },
    );
    let r = client()
        .post(format!("{base}/-/reload"))
        .bearer_auth(READ)
        .send()
        .expect("reload");
    let s = r.status().as_u16();
    let b = r.text().unwrap_or_default();
    assert_eq!(s, 403);
    assert!(
        b.contains("admin_tokens"),
        "the refusal names the key to set: {b}"
    );
    drop(c);

    // Agent tokens only: reads are not open.
    let c = Collector::start_with_config(
        &format!("[auth]\nagent_tokens = [\"{AGENT}\"]\n{PROJECTS}"),
        &[],
    );
    check(&c.url(), "agent-only config, no token", None, |s| {
        if s == Scope::Public {
            0
        } else {
            401
        }
    });
    check(
        &c.url(),
        "agent-only config, agent token",
        Some(&bearer(AGENT)),
        |s| match s {
            Scope::Public | Scope::Write => 0,
            _ => 403,
        },
    );
}

/// Starts a collector on `0.0.0.0:PORT` with `config`: `Ok(program, base URL)` once
/// ready, or `Err(log)` if it exits during start-up.
fn start_on_all_interfaces(config: &str) -> Result<(Program, String), String> {
    let mut p = Program::new("calm-collector", collector_bin());
    let path = p.root().join("collector.toml");
    std::fs::write(&path, config).expect("config");
    let port = calm_tests::ports::free_port();
    let mut cmd = p.command();
    cmd.arg("--config")
        .arg(&path)
        .arg("--listen")
        .arg(format!("0.0.0.0:{port}"))
        .arg("--data-dir")
        .arg(p.data_dir());
    let base = format!("http://127.0.0.1:{port}");
    match p.spawn_and_wait(cmd, &base) {
        Ok(()) => Ok((p, base)),
        Err(e) => Err(format!("{e}\nwhole log:\n{}", p.log())),
    }
}

#[test]
fn a_network_address_needs_write_and_read_credentials() {
    for (config, names) in [
        (
            format!("[auth]\nagent_tokens = [\"{AGENT}\"]\n"),
            vec!["read_tokens", "allow_anonymous_reads"],
        ),
        (
            format!("[auth]\nread_tokens = [\"{READ}\"]\n"),
            vec!["agent_tokens"],
        ),
        (
            format!("[auth]\nadmin_tokens = [\"{ADMIN}\"]\n"),
            vec!["agent_tokens", "read_tokens"],
        ),
        (
            format!("[auth]\nread_tokens = [\"{READ}\"]\nallow_anonymous_reads = true\n"),
            vec!["agent_tokens"],
        ),
    ] {
        let err = match start_on_all_interfaces(&config) {
            Ok(_) => panic!("a half-configured collector started on 0.0.0.0:\n{config}"),
            Err(e) => e,
        };
        for n in names {
            assert!(err.contains(n), "the refusal names {n}:\n{err}");
        }
        assert!(err.contains("exited during start-up"), "{err}");
    }
    // Both halves: it starts and is closed like on loopback.
    let (p, base) = start_on_all_interfaces(&format!(
        "[auth]\nagent_tokens = [\"{AGENT}\"]\nread_tokens = [\"{READ}\"]\n{PROJECTS}"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    seed_issue(&base, Some(READ));
    check(&base, "0.0.0.0, no token", None, |s| {
        if s == Scope::Public {
            0
        } else {
            401
        }
    });
    check(
        &base,
        "0.0.0.0, read token",
        Some(&bearer(READ)),
        |s| match s {
            Scope::Public | Scope::Read => 0,
            _ => 403,
        },
    );
    // Any Host is accepted on a network address without allowed_hosts (proxies, names).
    let r = client()
        .get(format!("{base}/api/v1/labels"))
        .header("Host", "calm.example.org")
        .bearer_auth(READ)
        .send()
        .expect("labels");
    assert_eq!(r.status().as_u16(), 200);
    drop(p);

    // The explicit opt-out: anonymous reads, loudly logged; writes and admin stay closed.
    let (p, base) = start_on_all_interfaces(&format!(
        "[auth]\nagent_tokens = [\"{AGENT}\"]\nallow_anonymous_reads = true\n{PROJECTS}"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    seed_issue(&base, None);
    check(&base, "anonymous reads", None, |s| match s {
        Scope::Public | Scope::Read => 0,
        _ => 401,
    });
    let v: serde_json::Value = client()
        .get(format!("{base}/api/calm/v1/projects"))
        .send()
        .and_then(|r| r.json())
        .expect("projects");
    assert!(
        !v.to_string().contains(KEY1),
        "anonymous reads show no DSN key: {v}"
    );
    let log = p.log();
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("allow_anonymous_reads")),
        "allow_anonymous_reads is logged at WARN:\n{log}"
    );
}
