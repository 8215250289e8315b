//! Errors end to end with the real `sentry-sdk` for Python: five kinds of exceptions
//! from five code paths (100 each), two message templates and one explicit fingerprint
//! must become exactly the expected issues with exact counts, readable through the
//! issues API, graphable as `calm_error_events_total`, and a resolved issue that
//! happens again must regress. Bad input gets a clear 4xx and the process stays up.

use calm_tests::sentry_sdk::{
    check_event_details, check_exception_issue, check_fingerprint_split, check_message_issues,
    find_issue, run_sdk_script,
};
use calm_tests::{require_python_modules, workspace_root, Collector};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

const KEY1: &str = "0123456789abcdef0123456789abcdef";
const KEY2: &str = "fedcba9876543210fedcba9876543210";
const READ: &str = "read-secret";
/// Issue status changes need the admin scope (a read token gets 403).
const ADMIN: &str = "admin-secret";

fn config() -> String {
    format!(
        "[auth]\nread_tokens = [\"{READ}\"]\nadmin_tokens = [\"{ADMIN}\"]\n\
         [[projects]]\nid = 1\nname = \"web\"\npublic_key = \"{KEY1}\"\n\
         [[projects]]\nid = 2\nname = \"jobs\"\npublic_key = \"{KEY2}\"\n"
    )
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// GET with the read token; returns status and JSON (Null when not JSON).
fn get(c: &Collector, path: &str) -> (u16, Value) {
    let r = client()
        .get(format!("{}{path}", c.url()))
        .bearer_auth(READ)
        .send()
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

fn get_ok(c: &Collector, path: &str) -> Value {
    let (s, v) = get(c, path);
    assert_eq!(s, 200, "GET {path}: {v}");
    v
}

fn put_status(c: &Collector, id: &str, body: &str) -> (u16, Value) {
    let r = client()
        .put(format!("{}/api/calm/v1/issues/{id}", c.url()))
        .bearer_auth(ADMIN)
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .expect("PUT");
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

/// POSTs `body` to `path` with optional Sentry auth; returns status and body text.
fn post(c: &Collector, path: &str, key: Option<&str>, body: Vec<u8>) -> (u16, String) {
    let mut r = client()
        .post(format!("{}{path}", c.url()))
        .header("Content-Type", "application/x-sentry-envelope")
        .body(body);
    if let Some(k) = key {
        r = r.header(
            "X-Sentry-Auth",
            format!("Sentry sentry_key={k}, sentry_version=7, sentry_client=calm-tests/1"),
        );
    }
    let resp = r.send().unwrap_or_else(|e| panic!("POST {path}: {e}"));
    (resp.status().as_u16(), resp.text().unwrap_or_default())
}

/// Runs tests/python/sentry_errors.py; None when sentry_sdk is not installed.
fn run_sdk(c: &Collector, mode: &str) -> Option<Value> {
    let python = require_python_modules(&["sentry_sdk"])?;
    let dir = workspace_root().join("tests/python");
    let dsn = format!("http://{KEY1}@127.0.0.1:{}/1", c.port());
    let mut cmd = Command::new(&python);
    cmd.arg(dir.join("sentry_errors.py"))
        .arg(&dsn)
        .arg(mode)
        .current_dir(&dir);
    Some(run_sdk_script(cmd, Duration::from_secs(300)))
}

fn issues(c: &Collector, query: &str) -> Vec<Value> {
    let v = get_ok(c, &format!("/api/calm/v1/issues?{query}"));
    v["data"].as_array().cloned().unwrap_or_default()
}

#[test]
fn sdk_errors_become_exact_issues_and_regress() {
    let c = Collector::start_with_config(&config(), &[]);
    let Some(summary) = run_sdk(&c, "storm") else {
        return;
    };
    assert_eq!(summary["exceptions"], 500);
    let all = issues(&c, "project=1&limit=1000");
    assert_eq!(
        all.len(),
        8,
        "expected 5 exception issues, 2 message issues, 1 fingerprinted: {all:#?}"
    );
    for (prefix, culprit) in [
        ("ValueError: invalid amount", "__main__ in parse_amount"),
        ("KeyError: 'user-", "__main__ in lookup_user"),
        (
            "ZeroDivisionError: division by zero",
            "__main__ in compute_ratio",
        ),
        ("PaymentDeclined: card declined", "__main__ in charge_card"),
        ("RuntimeError: config", "__main__ in load_config"),
    ] {
        let i = find_issue(&all, prefix, 100);
        check_exception_issue(i, "calm-test@1.0.0");
        assert_eq!(i["culprit"], culprit, "{i}");
        assert_eq!(i["status"], "unresolved");
    }
    check_message_issues(&all, 40);
    check_fingerprint_split(
        &all,
        "ValueError: invalid amount 1",
        "ValueError: invalid amount",
        100,
    );

    // The chained RuntimeError: stack trace, tags, breadcrumbs and user read back.
    let rt = find_issue(&all, "RuntimeError: config", 100);
    let id = rt["id"].as_str().expect("id");
    let page = get_ok(&c, &format!("/api/calm/v1/issues/{id}/events?limit=1"));
    assert!(
        page["nextCursor"].is_string(),
        "100 events, one per page: {page}"
    );
    let ev = &page["data"][0];
    let excs = ev["exception"]["values"]
        .as_array()
        .expect("exception values");
    assert_eq!(excs.len(), 2, "cause and effect: {excs:#?}");
    assert_eq!(excs[0]["type"], "FileNotFoundError");
    assert_eq!(excs[1]["type"], "RuntimeError");
    check_event_details(ev, &excs[1], "load_config");
    assert_eq!(ev["issue"], id);
    let mut seen = std::collections::HashSet::new();
    let mut cursor = String::new();
    loop {
        let p = get_ok(
            &c,
            &format!("/api/calm/v1/issues/{id}/events?limit=30&cursor={cursor}"),
        );
        for e in p["data"].as_array().expect("events") {
            assert!(seen.insert(e["event_id"].as_str().expect("event_id").to_string()));
        }
        match p["nextCursor"].as_str() {
            Some(n) => cursor = n.to_string(),
            None => break,
        }
    }
    assert_eq!(seen.len(), 100, "every event of the issue, once");

    check_filters(&c);
    let q = get_ok(
        &c,
        "/api/v1/query?query=sum(calm_error_events_total%7Bproject%3D%221%22%7D)",
    );
    assert_eq!(
        q["data"]["result"][0]["value"][1], "551",
        "one count per stored event: {q}"
    );

    // Resolve, raise again: regression.
    let zd = find_issue(&all, "ZeroDivisionError", 100)["id"]
        .as_str()
        .expect("id")
        .to_string();
    let (s, v) = put_status(&c, &zd, "{\"status\":\"resolved\"}");
    assert_eq!((s, v["status"].as_str()), (200, Some("resolved")), "{v}");
    assert_eq!(issues(&c, "status=resolved").len(), 1);
    run_sdk(&c, "regress");
    let v = get_ok(&c, &format!("/api/calm/v1/issues/{zd}"));
    assert_eq!(
        (
            v["status"].as_str(),
            v["isRegression"].as_bool(),
            v["count"].as_u64()
        ),
        (Some("unresolved"), Some(true), Some(101)),
        "{v}"
    );
    assert_eq!(v["timesRegressed"], 1);
    assert_eq!(put_status(&c, &zd, "{\"status\":\"fixed\"}").0, 400);
    assert_eq!(put_status(&c, "999999", "{\"status\":\"resolved\"}").0, 404);
    assert_eq!(get(&c, "/api/calm/v1/issues/999999").0, 404);
}

fn check_filters(c: &Collector) {
    assert_eq!(issues(c, "status=unresolved").len(), 8);
    assert_eq!(issues(c, "environment=ci").len(), 8);
    assert_eq!(issues(c, "environment=production").len(), 0);
    assert_eq!(issues(c, "release=calm-test%401.0.0").len(), 8);
    assert_eq!(issues(c, "project=2").len(), 0);
    assert_eq!(issues(c, "query=paymentdeclined").len(), 1);
    let by_count = issues(c, "sort=count");
    assert_eq!(by_count[0]["count"], 100);
    assert_eq!(by_count.last().expect("issues")["count"], 1);
    let by_first = issues(c, "sort=first_seen");
    assert_eq!(
        by_first.last().expect("issues")["title"]
            .as_str()
            .map(|t| t.starts_with("ValueError")),
        Some(true)
    );
    let mut ids = Vec::new();
    let mut cursor = String::new();
    loop {
        let v = get_ok(c, &format!("/api/calm/v1/issues?limit=3&cursor={cursor}"));
        ids.extend(
            v["data"]
                .as_array()
                .expect("data")
                .iter()
                .map(|i| i["id"].clone()),
        );
        match v["nextCursor"].as_str() {
            Some(n) => cursor = n.to_string(),
            None => break,
        }
    }
    ids.sort_by_key(|i| i.as_str().and_then(|s| s.parse::<u64>().ok()));
    ids.dedup();
    assert_eq!(ids.len(), 8, "pages cover every issue once");
    assert_eq!(get(c, "/api/calm/v1/issues?sort=sideways").0, 400);
    assert_eq!(get(c, "/api/calm/v1/issues?status=maybe").0, 400);
    let anon = client()
        .get(format!("{}/api/calm/v1/issues", c.url()))
        .send()
        .expect("GET");
    assert_eq!(
        anon.status().as_u16(),
        401,
        "reading issues needs the read token"
    );
}

#[test]
fn default_project_is_created_persisted_and_listed() {
    let mut c = Collector::start();
    let list = |c: &Collector| {
        let v: Value = client()
            .get(format!("{}/api/calm/v1/projects", c.url()))
            .send()
            .and_then(|r| r.json())
            .expect("projects");
        v["data"].as_array().cloned().unwrap_or_default()
    };
    let first = list(&c);
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0]["id"], 1);
    let dsn = first[0]["dsn"].as_str().expect("dsn").to_string();
    let key = first[0]["public_key"].as_str().expect("key").to_string();
    assert_eq!(dsn, format!("http://{key}@127.0.0.1:{}/1", c.port()));
    // The key is a secret: the log names it masked, the API (auth off here) in full.
    let log = c.log();
    assert!(!log.contains(&key), "the key is not logged:\n{log}");
    assert!(
        log.contains(&format!("key={}…", &key[..4])),
        "the masked key is logged at start:\n{log}"
    );
    c.restart();
    assert_eq!(
        list(&c)[0]["public_key"],
        key.as_str(),
        "the key survives a restart"
    );
    let ev = br#"{"message": "hello"}"#.to_vec();
    let (s, body) = post(&c, "/api/1/store/", Some(&key), ev);
    assert_eq!(s, 200, "{body}");
}

fn envelope(event: &[u8]) -> Vec<u8> {
    let mut b =
        b"{\"event_id\":\"9b9a1c2d3e4f40a1b2c3d4e5f6a7b8c9\"}\n{\"type\":\"event\"}\n".to_vec();
    b.extend_from_slice(event);
    b.push(b'\n');
    b
}

/// What, path, key, body, expected status, text the answer must contain.
type Case<'a> = (&'a str, &'a str, Option<&'a str>, Vec<u8>, u16, &'a str);

#[test]
fn bad_input_gets_a_clear_4xx_and_the_process_stays_up() {
    let mut c = Collector::start_with_config(&config(), &[]);
    let ok = envelope(br#"{"message": "fine"}"#);
    let cases: Vec<Case> = vec![
        (
            "missing key",
            "/api/1/envelope/",
            None,
            ok.clone(),
            401,
            "missing DSN key",
        ),
        (
            "wrong key",
            "/api/1/envelope/",
            Some("00000000000000000000000000000000"),
            ok.clone(),
            401,
            "invalid DSN key",
        ),
        (
            "unknown project",
            "/api/999/envelope/",
            Some(KEY1),
            ok.clone(),
            404,
            "unknown project 999",
        ),
        (
            "not a project id",
            "/api/web/envelope/",
            Some(KEY1),
            ok.clone(),
            404,
            "unknown project",
        ),
        (
            "other project's key",
            "/api/2/envelope/",
            Some(KEY1),
            ok.clone(),
            403,
            "belongs to project 1",
        ),
        (
            "malformed header",
            "/api/1/envelope/",
            Some(KEY1),
            b"{not json\n{\"type\":\"event\"}\n{}\n".to_vec(),
            400,
            "envelope header",
        ),
        (
            "length that lies",
            "/api/1/envelope/",
            Some(KEY1),
            b"{}\n{\"type\":\"event\",\"length\":500}\n{}\n".to_vec(),
            400,
            "declares length 500",
        ),
        (
            "length too short",
            "/api/1/envelope/",
            Some(KEY1),
            b"{}\n{\"type\":\"event\",\"length\":3}\n{\"message\":\"x\"}\n".to_vec(),
            400,
            "not followed by a newline",
        ),
        (
            "invalid UTF-8",
            "/api/1/envelope/",
            Some(KEY1),
            envelope(b"{\"message\": \"\xff\xfe\"}"),
            400,
            "UTF-8",
        ),
        (
            "deep nesting",
            "/api/1/envelope/",
            Some(KEY1),
            envelope(&[b'['; 200_000]),
            400,
            "recursion limit",
        ),
        (
            "not an object",
            "/api/1/store/",
            Some(KEY1),
            b"[1, 2]".to_vec(),
            400,
            "JSON object",
        ),
        (
            "store garbage",
            "/api/1/store/",
            Some(KEY1),
            b"\x00\x01garbage".to_vec(),
            400,
            "not valid JSON",
        ),
        (
            "empty envelope",
            "/api/1/envelope/",
            Some(KEY1),
            Vec::new(),
            400,
            "empty",
        ),
    ];
    for (what, path, key, body, status, needle) in cases {
        let (s, text) = post(&c, path, key, body);
        assert_eq!(s, status, "{what}: {text}");
        assert!(
            text.contains(needle),
            "{what}: {text:?} should say {needle:?}"
        );
        assert!(c.is_running(), "{what}: the collector died");
    }
    let (s, _) = get(&c, "/api/calm/v1/issues");
    assert_eq!(s, 200);
    assert!(
        issues(&c, "").is_empty(),
        "nothing from bad input was stored"
    );
    // An unknown item type is skipped, not a failure; the event next to it is stored.
    let mut mixed = b"{\"event_id\":\"4b9a1c2d3e4f40a1b2c3d4e5f6a7b8c9\"}\n{\"type\":\"some_future_type\",\"length\":5}\nhello\n".to_vec();
    mixed.extend_from_slice(b"{\"type\":\"transaction\"}\n{}\n{\"type\":\"event\"}\n{\"message\":\"next to an unknown item\"}\n");
    let (s, text) = post(&c, "/api/1/envelope/", Some(KEY1), mixed);
    assert_eq!(
        (s, text.as_str()),
        (200, "{\"id\":\"4b9a1c2d3e4f40a1b2c3d4e5f6a7b8c9\"}")
    );
    let list = issues(&c, "");
    assert_eq!(
        (list.len(), list[0]["count"].as_u64()),
        (1, Some(1)),
        "{list:?}"
    );
    // An invalid event next to a valid one: as Sentry's Relay does, the envelope is
    // taken, the broken item dropped, counted and named in the answer.
    let mut pair = b"{}\n{\"type\":\"event\"}\n{\"message\": \"\xff\"}\n".to_vec();
    pair.extend_from_slice(b"{\"type\":\"event\"}\n{\"message\":\"the valid twin\"}\n");
    let (s, text) = post(&c, "/api/1/envelope/", Some(KEY1), pair);
    assert_eq!(s, 200, "{text}");
    assert!(
        text.contains("\"discarded\"") && text.contains("invalid_event") && text.contains("UTF-8"),
        "{text}"
    );
    assert_eq!(issues(&c, "query=valid%20twin").len(), 1);
    let metrics = client()
        .get(format!("{}/metrics", c.url()))
        .send()
        .and_then(|r| r.text())
        .expect("/metrics");
    assert!(
        metrics.contains(
            "calm_sentry_items_discarded_total{reason=\"invalid_event\",type=\"event\"} 1"
        ),
        "{metrics}"
    );
    // Browser SDKs: a CORS preflight is answered, and answers carry Allow-Origin.
    let pre = client()
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/api/1/envelope/", c.url()),
        )
        .header("Origin", "https://app.example")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "content-type")
        .send()
        .expect("OPTIONS");
    let hv = |r: &reqwest::blocking::Response, n: &str| {
        r.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(pre.status().as_u16(), 200);
    assert_eq!(hv(&pre, "access-control-allow-origin"), "*");
    assert!(hv(&pre, "access-control-allow-methods").contains("POST"));
    assert!(hv(&pre, "access-control-allow-headers").contains("x-sentry-auth"));
    let denied = client()
        .post(format!("{}/api/1/envelope/", c.url()))
        .header("Origin", "https://app.example")
        .body(ok.clone())
        .send()
        .expect("POST");
    assert_eq!(denied.status().as_u16(), 401);
    assert_eq!(hv(&denied, "access-control-allow-origin"), "*");
    assert!(hv(&denied, "access-control-expose-headers").contains("x-sentry-rate-limits"));
    let v = get_ok(&c, "/api/calm/v1/projects");
    assert_eq!(v["data"][0]["items_received"]["unknown"], 1, "{v}");
    assert_eq!(v["data"][0]["items_received"]["transaction"], 1, "{v}");
    assert_eq!(
        client()
            .get(format!("{}/readyz", c.url()))
            .send()
            .map(|r| r.status().as_u16())
            .ok(),
        Some(200)
    );
    assert!(c.is_running());
}
