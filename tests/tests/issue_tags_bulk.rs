//! Per-issue tag value counts and bulk triage, end to end with the real `sentry-sdk`
//! for Python: 240 tagged events of one issue (only 10 bodies kept: body sampling)
//! must give tag counts exactly equal to what the SDK sent, through
//! `GET /api/calm/v1/issues/{id}/tags[/{key}]`, with a key's values beyond
//! `max_tag_values_per_key` counted as `calm:other`; `PUT /api/calm/v1/issues?id=…`
//! resolves several issues at once (admin only: a read token gets 403), the list
//! then shows them resolved, and too many ids or a bad body get a 400 naming it.

use calm_tests::sentry_sdk::run_sdk_script;
use calm_tests::{require_python_modules, workspace_root, Collector};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

const KEY: &str = "0123456789abcdef0123456789abcdef";
const READ: &str = "read-secret";
const ADMIN: &str = "admin-secret";
/// Body sampling: at most this many bodies per issue per hour.
const BODIES: u64 = 10;
/// Values per tag key counted (the rest as `calm:other`).
const MAX_VALUES: u64 = 50;

fn config() -> String {
    format!(
        "[auth]\nread_tokens = [\"{READ}\"]\nadmin_tokens = [\"{ADMIN}\"]\n\
         [errors]\nbodies_per_issue = {BODIES}\nbody_window = \"1h\"\n\
         [limits]\nmax_tag_values_per_key = {MAX_VALUES}\n\
         [[projects]]\nid = 1\nname = \"web\"\npublic_key = \"{KEY}\"\n"
    )
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

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

/// `PUT /api/calm/v1/issues?{query}` with `token`.
fn bulk(c: &Collector, token: &str, query: &str, body: &str) -> (u16, Value) {
    let r = client()
        .put(format!("{}/api/calm/v1/issues?{query}", c.url()))
        .bearer_auth(token)
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .expect("PUT");
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

fn issues(c: &Collector, query: &str) -> Vec<Value> {
    let v = get_ok(
        c,
        &format!("/api/calm/v1/issues?project=1&limit=1000&{query}"),
    );
    v["data"].as_array().cloned().unwrap_or_default()
}

fn ids_of(list: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = list
        .iter()
        .filter_map(|i| i["id"].as_str().map(str::to_string))
        .collect();
    v.sort();
    v
}

/// `value → count` of a tag key as the API shows it.
fn values(tag: &Value) -> BTreeMap<String, u64> {
    tag["topValues"]
        .as_array()
        .unwrap_or_else(|| panic!("topValues: {tag}"))
        .iter()
        .map(|v| {
            assert_eq!(v["key"], tag["key"], "{v}");
            assert!(
                v["firstSeen"].is_string() && v["lastSeen"].is_string(),
                "{v}"
            );
            (
                v["value"].as_str().expect("value").to_string(),
                v["count"].as_u64().expect("count"),
            )
        })
        .collect()
}

fn counts_sent(summary: &Value, key: &str) -> BTreeMap<String, u64> {
    serde_json::from_value(summary["counts"][key].clone()).expect("counts")
}

#[test]
fn tag_counts_are_exact_and_issues_resolve_in_bulk() {
    let c = Collector::start_with_config(&config(), &[]);
    let Some(python) = require_python_modules(&["sentry_sdk"]) else {
        return;
    };
    let dir = workspace_root().join("tests/python");
    let mut cmd = Command::new(&python);
    cmd.arg(dir.join("sentry_tags.py"))
        .arg(format!("http://{KEY}@127.0.0.1:{}/1", c.port()))
        .current_dir(&dir);
    let summary = run_sdk_script(cmd, Duration::from_secs(300));
    eprintln!("sdk summary: {summary}");
    let runs = summary["tagged"].as_u64().expect("tagged");
    assert_eq!(runs, 240);

    let all = issues(&c, "");
    assert_eq!(
        all.len(),
        4,
        "one tagged issue and three to triage: {all:#?}"
    );
    let tagged = all
        .iter()
        .find(|i| i["title"].as_str().unwrap_or("").starts_with("LookupError"))
        .unwrap_or_else(|| panic!("no LookupError issue in {all:#?}"));
    assert_eq!(tagged["count"], runs, "{tagged}");
    let id = tagged["id"].as_str().expect("id").to_string();

    // Body sampling kept only BODIES of the events: the counts below do not come
    // from the bodies.
    let page = get_ok(&c, &format!("/api/calm/v1/issues/{id}/events?limit=1000"));
    assert_eq!(
        page["data"].as_array().map(Vec::len),
        Some(BODIES as usize),
        "bodies sampled"
    );

    let tags = get_ok(&c, &format!("/api/calm/v1/issues/{id}/tags?limit=1000"));
    let by_key: BTreeMap<String, Value> = tags
        .as_array()
        .unwrap_or_else(|| panic!("tags: {tags}"))
        .iter()
        .map(|t| (t["key"].as_str().expect("key").to_string(), t.clone()))
        .collect();
    for key in ["color", "shard", "user"] {
        let t = by_key
            .get(key)
            .unwrap_or_else(|| panic!("no tag {key} in {tags}"));
        assert_eq!(values(t), counts_sent(&summary, key), "tag {key}: {t}");
        assert_eq!(t["totalValues"], runs, "{t}");
        assert_eq!(t["name"], key);
    }
    for (key, value) in [
        ("level", "error"),
        ("environment", "staging"),
        ("release", "calm-tags@2.0.0"),
        ("runtime.name", "CPython"),
    ] {
        let t = by_key
            .get(key)
            .unwrap_or_else(|| panic!("no tag {key} in {tags}"));
        assert_eq!(
            values(t),
            BTreeMap::from([(value.to_string(), runs)]),
            "{t}"
        );
    }
    // A new request_id each event: the first MAX_VALUES are counted one each, the
    // rest in the other bucket.
    let rid = &by_key["request_id"];
    let v = values(rid);
    assert_eq!(rid["totalValues"], runs, "{rid}");
    assert_eq!(rid["uniqueValues"], MAX_VALUES + 1, "{rid}");
    assert_eq!(v.get("calm:other"), Some(&(runs - MAX_VALUES)), "{rid}");
    assert_eq!(v.values().filter(|n| **n == 1).count() as u64, MAX_VALUES);

    // The default page shows 10 values per key, most frequent first.
    let short = get_ok(&c, &format!("/api/calm/v1/issues/{id}/tags"));
    let color = short
        .as_array()
        .and_then(|a| a.iter().find(|t| t["key"] == "color"))
        .cloned()
        .expect("color");
    assert_eq!(color["topValues"][0]["value"], "red", "{color}");
    let shard = get_ok(&c, &format!("/api/calm/v1/issues/{id}/tags/shard"));
    assert_eq!(values(&shard), counts_sent(&summary, "shard"));
    let (s, v) = get(&c, &format!("/api/calm/v1/issues/{id}/tags/nope"));
    assert_eq!(s, 404, "{v}");
    assert!(v["detail"].as_str().unwrap_or("").contains("nope"), "{v}");
    assert_eq!(get(&c, "/api/calm/v1/issues/999999/tags").0, 404);

    // Bulk triage: a read token may not, an admin may.
    let query: String = ids_of(&all)
        .iter()
        .map(|i| format!("id={i}&"))
        .collect::<String>()
        + "id=999999";
    let resolved = "{\"status\":\"resolved\"}";
    let (s, v) = bulk(&c, READ, &query, resolved);
    assert_eq!(s, 403, "a read token cannot change issues: {v}");
    assert!(issues(&c, "status=resolved").is_empty());
    let (s, v) = bulk(&c, ADMIN, &query, resolved);
    assert_eq!(s, 200, "{v}");
    let mut changed: Vec<String> = serde_json::from_value(v["changed"].clone()).expect("changed");
    changed.sort();
    assert_eq!(changed, ids_of(&all), "{v}");
    assert_eq!(v["notFound"], json!(["999999"]), "{v}");
    assert_eq!(v["status"], "resolved");
    assert_eq!(ids_of(&issues(&c, "status=resolved")), ids_of(&all));
    assert!(issues(&c, "status=unresolved").is_empty());
    // Again: nothing changes.
    let (s, v) = bulk(&c, ADMIN, &query, resolved);
    assert_eq!((s, v["changed"].clone()), (200, json!([])), "{v}");
    // Reopen two.
    let two: Vec<String> = ids_of(&all).into_iter().take(2).collect();
    let (s, v) = bulk(
        &c,
        ADMIN,
        &format!("id={}&id={}", two[0], two[1]),
        "{\"status\":\"unresolved\"}",
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(ids_of(&issues(&c, "status=unresolved")), two);

    // Bad requests: named.
    let many: String = (1..=1001).map(|i| format!("id={i}&")).collect();
    let (s, v) = bulk(&c, ADMIN, &many, resolved);
    assert_eq!(s, 400, "{v}");
    assert!(v["detail"].as_str().unwrap_or("").contains("1000"), "{v}");
    let (s, v) = bulk(&c, ADMIN, "", resolved);
    assert_eq!(s, 400, "{v}");
    assert!(v["detail"].as_str().unwrap_or("").contains("id="), "{v}");
    let (s, v) = bulk(&c, ADMIN, "id=x", resolved);
    assert_eq!(s, 400, "{v}");
    let (s, v) = bulk(&c, ADMIN, &format!("id={id}"), "{\"status\":\"fixed\"}");
    assert_eq!(s, 400, "{v}");
    assert_eq!(
        ids_of(&issues(&c, "status=resolved")).len(),
        2,
        "nothing changed"
    );
}
