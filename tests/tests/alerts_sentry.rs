//! Error alerts with the real `sentry-sdk` (Python): a new exception opens an issue
//! and one new-issue webhook arrives within one evaluation interval, linking to the
//! issue in the built-in UI; after the issue is resolved through the issues API, the
//! same exception raised again sends a regression webhook for the same issue.

use calm_tests::sentry_sdk::run_sdk_script;
use calm_tests::webhook::WebhookReceiver;
use calm_tests::{require_python_modules, workspace_root, Collector};
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

const KEY: &str = "0123456789abcdef0123456789abcdef";
/// The evaluation interval of this test's collector: the bar for "within one interval".
const INTERVAL_SECS: u64 = 10;

/// Raises `ZeroDivisionError` once through the SDK (tests/python/sentry_errors.py).
fn raise_once(c: &Collector, python: &std::path::Path) {
    let dir = workspace_root().join("tests/python");
    let mut cmd = Command::new(python);
    cmd.arg(dir.join("sentry_errors.py"))
        .arg(format!("http://{KEY}@127.0.0.1:{}/1", c.port()))
        .arg("regress")
        .current_dir(&dir);
    run_sdk_script(cmd, Duration::from_secs(60));
}

fn alerts_named(recv: &WebhookReceiver, name: &str) -> Vec<Value> {
    recv.delivered("/errors")
        .into_iter()
        .flat_map(|r| r.body["alerts"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["labels"]["alertname"] == name && a["status"] == "firing")
        .collect()
}

#[test]
fn new_issue_and_regression_send_webhooks() {
    let Some(python) = require_python_modules(&["sentry_sdk"]) else {
        return;
    };
    let recv = WebhookReceiver::start();
    let c = Collector::start_with_config(
        &format!(
            "evaluation_interval = \"{INTERVAL_SECS}s\"\n\
             [[projects]]\nid = 1\nname = \"web\"\npublic_key = \"{KEY}\"\n\
             [alerting]\nexternal_url = \"http://calm.example:9400\"\n\
             [[alerting.webhooks]]\nurl = \"{}\"\ngroup_by = [\"alertname\", \"issue_id\"]\ngroup_wait = \"0s\"\ngroup_interval = \"1s\"\n\
             [[alerting.error_rules]]\nname = \"NewIssue\"\non = \"new_issue\"\nlabels = {{ severity = \"page\" }}\n\
             [[alerting.error_rules]]\nname = \"Regression\"\non = \"regression\"\n",
            recv.url("/errors")
        ),
        &[],
    );

    raise_once(&c, &python);
    let sent = Instant::now();
    let got = recv
        .wait_for("/errors", Duration::from_secs(INTERVAL_SECS), |b| {
            b["alerts"]
                .as_array()
                .is_some_and(|l| l.iter().any(|a| a["labels"]["alertname"] == "NewIssue"))
        })
        .unwrap_or_else(|| {
            panic!(
                "no new-issue webhook within {INTERVAL_SECS} s; log:\n{}",
                c.log_tail(20)
            )
        });
    assert!(got.at.duration_since(sent) <= Duration::from_secs(INTERVAL_SECS));
    let issues: Value = reqwest::blocking::get(format!("{}/api/calm/v1/issues", c.url()))
        .and_then(|r| r.json())
        .expect("issues");
    let list = issues["data"].as_array().cloned().unwrap_or_default();
    assert_eq!(list.len(), 1, "{issues}");
    let id = list[0]["id"]
        .as_u64()
        .map(|n| n.to_string())
        .or_else(|| list[0]["id"].as_str().map(String::from))
        .expect("issue id");
    let a = &alerts_named(&recv, "NewIssue")[0];
    assert_eq!(a["labels"]["issue_id"], id.as_str());
    assert_eq!(a["labels"]["project"], "1");
    assert_eq!(a["labels"]["severity"], "page");
    assert_eq!(a["labels"]["trigger"], "new_issue");
    assert_eq!(
        a["annotations"]["issue_url"],
        format!("http://calm.example:9400/ui/issues/{id}")
    );
    assert!(
        a["annotations"]["summary"]
            .as_str()
            .is_some_and(|s| s.contains("ZeroDivisionError")),
        "{a}"
    );
    assert_eq!(got.body["version"], "4");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        alerts_named(&recv, "NewIssue").len(),
        1,
        "exactly one new-issue notification"
    );

    // Resolve, raise again: a regression.
    let r = reqwest::blocking::Client::new()
        .put(format!("{}/api/calm/v1/issues/{id}", c.url()))
        .header("Content-Type", "application/json")
        .body(r#"{"status":"resolved"}"#)
        .send()
        .expect("PUT");
    assert_eq!(r.status().as_u16(), 200);
    raise_once(&c, &python);
    let got = recv
        .wait_for("/errors", Duration::from_secs(INTERVAL_SECS), |b| {
            b["alerts"]
                .as_array()
                .is_some_and(|l| l.iter().any(|a| a["labels"]["alertname"] == "Regression"))
        })
        .unwrap_or_else(|| {
            panic!(
                "no regression webhook within {INTERVAL_SECS} s; log:\n{}",
                c.log_tail(20)
            )
        });
    let a = got.body["alerts"]
        .as_array()
        .and_then(|l| {
            l.iter()
                .find(|a| a["labels"]["alertname"] == "Regression")
                .cloned()
        })
        .expect("regression alert");
    assert_eq!(a["labels"]["issue_id"], id.as_str());
    assert_eq!(a["labels"]["trigger"], "regression");
    assert_eq!(
        alerts_named(&recv, "NewIssue").len(),
        1,
        "a regression is not a new issue"
    );
}
