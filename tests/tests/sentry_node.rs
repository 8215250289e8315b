//! Errors end to end with Sentry's JavaScript SDK under Node (`@sentry/node`, installed
//! into `tests/node/node_modules` by `scripts/install-peers`): five kinds of exceptions
//! (three thrown by the runtime, a custom class, an async rejection) from five code
//! paths, RUNS times each, two message templates and one explicit fingerprint must
//! become exactly the expected issues with exact counts; the stack trace (in-app
//! frames), tags, breadcrumbs, user and contexts read back through the issues API.
//! Skips with a notice when node or the SDK is missing.

use calm_tests::sentry_sdk::{
    check_event_details, check_exception_issue, check_fingerprint_split, check_message_issues,
    find_issue, run_sdk_script,
};
use calm_tests::{require_peer, skip_or_fail, workspace_root, Collector};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const KEY: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";
const RUNS: u64 = 40;

/// `node` and the SDK, or a skip notice.
fn require_node_sdk() -> Option<(PathBuf, PathBuf)> {
    let node = require_peer("node")?;
    let dir = workspace_root().join("tests/node");
    if !dir.join("node_modules/@sentry/node/package.json").is_file() {
        return skip_or_fail(
            "@sentry/node not installed in tests/node",
            "run scripts/install-peers (npm ci in tests/node)",
        );
    }
    Some((node, dir))
}

fn get(c: &Collector, path: &str) -> Value {
    let r = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
        .get(format!("{}{path}", c.url()))
        .send()
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    assert_eq!(r.status().as_u16(), 200, "GET {path}");
    r.json().expect("json")
}

#[test]
fn node_sdk_errors_become_exact_issues() {
    let Some((node, dir)) = require_node_sdk() else {
        return;
    };
    let c = Collector::start_with_config(
        &format!("[[projects]]\nid = 1\nname = \"node\"\npublic_key = \"{KEY}\"\n"),
        &[],
    );
    let dsn = format!("http://{KEY}@127.0.0.1:{}/1", c.port());
    let mut cmd = Command::new(node);
    cmd.arg(dir.join("sentry_errors.js"))
        .arg(&dsn)
        .arg(RUNS.to_string())
        .current_dir(&dir);
    let summary = run_sdk_script(cmd, Duration::from_secs(180));
    assert_eq!(summary["exceptions"], 5 * RUNS);
    assert_eq!(summary["flushed"], true, "the SDK sent everything");

    let all = get(&c, "/api/calm/v1/issues?project=1&limit=1000")["data"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        all.len(),
        8,
        "5 exception issues, 2 message issues, 1 fingerprinted: {all:#?}"
    );
    for (prefix, function) in [
        (
            "TypeError: Cannot read properties of undefined",
            "readOrderTotal",
        ),
        ("RangeError: Invalid array length", "allocateSlots"),
        ("SyntaxError: ", "parsePayload"),
        ("PaymentDeclined: card declined", "chargeCard"),
        ("Error: config ", "loadConfig"),
    ] {
        let i = find_issue(&all, prefix, RUNS);
        check_exception_issue(i, "calm-node@1.0.0");
        assert_eq!(i["platform"], "node", "{i}");
        assert_eq!(i["metadata"]["function"], function, "{i}");
        assert!(
            i["culprit"].as_str().is_some_and(|c| c.contains(function)),
            "{i}"
        );
    }
    check_message_issues(&all, 20);
    check_fingerprint_split(
        &all,
        "PaymentDeclined: card declined, attempt 1 ",
        "PaymentDeclined",
        RUNS,
    );

    // One event of the custom error: in-app stack, tags, breadcrumbs, user, contexts.
    let id = find_issue(&all, "PaymentDeclined", RUNS)["id"]
        .as_str()
        .expect("id")
        .to_string();
    let page = get(&c, &format!("/api/calm/v1/issues/{id}/events?limit=1000"));
    let events = page["data"].as_array().expect("events");
    assert_eq!(events.len() as u64, RUNS, "every body kept at this rate");
    let ev = &events[0];
    let exc = &ev["exception"]["values"][0];
    assert_eq!(exc["type"], "PaymentDeclined");
    check_event_details(ev, exc, "chargeCard");
    let frames = exc["stacktrace"]["frames"].as_array().expect("frames");
    assert!(
        frames
            .iter()
            .any(|f| f["function"] == "capture" && f["in_app"] == true),
        "{frames:#?}"
    );
    assert!(ev["user"]["email"].is_string(), "{}", ev["user"]);
    assert_eq!(
        ev["contexts"]["runtime"]["name"], "node",
        "{}",
        ev["contexts"]
    );
    assert_eq!(ev["sdk"]["name"], "sentry.javascript.node");

    let q = get(
        &c,
        "/api/v1/query?query=sum(calm_error_events_total%7Bproject%3D%221%22%7D)",
    );
    assert_eq!(
        q["data"]["result"][0]["value"][1].as_str(),
        Some((5 * RUNS + 30 + 1).to_string().as_str()),
        "one count per event: {q}"
    );
}
