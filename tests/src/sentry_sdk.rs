//! Real Sentry SDK clients (Python `sentry-sdk`, `@sentry/node`) run as scripts, and the
//! checks shared by the tests that read their errors back through the issues API.
//!
//! The scripts `tests/python/sentry_errors.py` and `tests/node/sentry_errors.js` send the
//! same scenario in their own language: five kinds of exceptions from five code paths
//! (7 distinct users, environment `ci`, a release, breadcrumbs `calm.test`/`step …`,
//! a tag `kind` naming the function), a `Payment … failed` warning template and a
//! `Queue length … over limit` info template (10 of those), and one exception with an
//! explicit fingerprint. Each prints a JSON summary as its last line.

use crate::process::{remove_env_prefix, run_bounded};
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

/// Runs an SDK script (`cmd`: interpreter, script and arguments) to completion within
/// `timeout`, without the test's own `SENTRY_*` variables (they would override the DSN
/// the script is given). Panics with the script's output if it fails; returns the JSON
/// summary it prints as its last line, `Null` if that line is not JSON.
pub fn run_sdk_script(mut cmd: Command, timeout: Duration) -> Value {
    remove_env_prefix(&mut cmd, "SENTRY_");
    let desc = format!("{cmd:?}");
    let out = run_bounded(cmd, timeout);
    assert!(
        out.status.success(),
        "{desc} failed:\n{}\n{}",
        out.stdout,
        out.stderr
    );
    let line = out.stdout.lines().last().unwrap_or("");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{desc}: summary {line:?}: {e}"))
}

/// The issue of `list` (the issues API's `data`) whose title starts with `title_prefix`
/// and whose count is `count`; panics listing them all when there is none.
pub fn find_issue<'a>(list: &'a [Value], title_prefix: &str, count: u64) -> &'a Value {
    list.iter()
        .find(|i| {
            i["title"].as_str().unwrap_or("").starts_with(title_prefix) && i["count"] == count
        })
        .unwrap_or_else(|| panic!("no issue {title_prefix:?} with count {count} in {list:#?}"))
}

/// Checks an exception issue of the scenario: type and level `error`, 7 distinct users,
/// environment `ci`, first seen in `release`.
pub fn check_exception_issue(issue: &Value, release: &str) {
    assert_eq!(issue["type"], "error", "{issue}");
    assert_eq!(issue["level"], "error", "{issue}");
    assert_eq!(issue["userCount"], 7, "7 distinct users: {issue}");
    assert_eq!(issue["environments"], json!(["ci"]), "{issue}");
    assert_eq!(issue["firstRelease"], release, "{issue}");
}

/// Checks the two message templates of the scenario: `payments` warnings grouped into
/// one issue of type `default`, and 10 info messages into another.
pub fn check_message_issues(all: &[Value], payments: u64) {
    let pay = find_issue(all, "Payment ", payments);
    assert_eq!(
        (pay["type"].as_str(), pay["level"].as_str()),
        (Some("default"), Some("warning")),
        "{pay}"
    );
    assert_eq!(find_issue(all, "Queue length ", 10)["level"], "info");
}

/// Checks that the one event titled `fingerprinted` (with an explicit fingerprint) has
/// an issue of its own, apart from the `runs` events of its kind titled `kind`.
pub fn check_fingerprint_split(all: &[Value], fingerprinted: &str, kind: &str, runs: u64) {
    let fp = find_issue(all, fingerprinted, 1);
    assert_ne!(fp["hash"], find_issue(all, kind, runs)["hash"]);
}

/// Checks one stored event (the issues API's event JSON) of the scenario whose
/// innermost exception is `exception`: its top frame is the in-app `function` with a
/// line number and source context, it carries the tag `kind=function`, its breadcrumbs
/// and a user id.
pub fn check_event_details(event: &Value, exception: &Value, function: &str) {
    let frames = exception["stacktrace"]["frames"]
        .as_array()
        .expect("frames");
    let top = frames.last().expect("a frame");
    assert_eq!(
        (top["function"].as_str(), top["in_app"].as_bool()),
        (Some(function), Some(true)),
        "{top}"
    );
    assert!(
        top["lineno"].as_u64().is_some() && top["context_line"].is_string(),
        "{top}"
    );
    assert!(
        event["tags"]
            .as_array()
            .expect("tags")
            .contains(&json!(["kind", function])),
        "{}",
        event["tags"]
    );
    let crumbs = event["breadcrumbs"]["values"]
        .as_array()
        .expect("breadcrumbs");
    assert!(
        crumbs.iter().any(|b| b["category"] == "calm.test"
            && b["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("step "))),
        "{crumbs:#?}"
    );
    assert!(
        event["user"]["id"].is_string(),
        "user.id (numeric in the SDK) becomes a string: {}",
        event["user"]
    );
}
