//! Every Sentry payload in the conformance data (`sentry-events/`, see its README):
//! envelope edge cases get their expected verdicts, real SDK envelopes and store
//! payloads are accepted, and where Sentry's own normalised output exists, the title,
//! culprit, type, level and metadata we compute are compared with it.

use calm_tests::{conformance_dir, Collector};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const KEY: &str = "0123456789abcdef0123456789abcdef";

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

fn start() -> Collector {
    Collector::start_with_config(
        &format!("[[projects]]\nid = 1\nname = \"c\"\npublic_key = \"{KEY}\"\n"),
        &[],
    )
}

fn post(c: &Collector, kind: &str, body: Vec<u8>) -> (u16, String) {
    let r = client()
        .post(format!("{}/api/1/{kind}/", c.url()))
        .header(
            "X-Sentry-Auth",
            format!("Sentry sentry_key={KEY}, sentry_version=7"),
        )
        .body(body)
        .send()
        .expect("POST");
    (r.status().as_u16(), r.text().unwrap_or_default())
}

fn get(c: &Collector, path: &str) -> Value {
    let r = client()
        .get(format!("{}{path}", c.url()))
        .send()
        .expect("GET");
    assert_eq!(r.status().as_u16(), 200, "GET {path}");
    r.json().expect("JSON")
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).expect("read"))
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn files(dir: &Path, ext: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    v.sort();
    v
}

fn items_received(c: &Collector) -> BTreeMap<String, u64> {
    let v = get(c, "/api/calm/v1/projects");
    serde_json::from_value(v["data"][0]["items_received"].clone()).unwrap_or_default()
}

#[test]
fn envelope_edge_cases_get_their_verdicts() {
    let Some(dir) = conformance_dir() else { return };
    let dir = dir.join("sentry-events/envelope-edge-cases");
    let expected = read_json(&dir.join("expected.json"));
    let c = start();
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for (name, verdict) in expected.as_object().expect("object") {
        let body = std::fs::read(dir.join(name)).expect("read case");
        let (status, text) = post(&c, "envelope", body);
        if verdict["valid"] == true {
            assert_eq!(status, 200, "{name}: {text}");
            for item in verdict["items"].as_array().expect("items") {
                let ty = item["type"].as_str().expect("type");
                let ty = if ty == "some_future_type" {
                    "unknown"
                } else {
                    ty
                };
                *want.entry(ty.to_string()).or_default() += 1;
            }
        } else {
            assert_eq!(
                status, 400,
                "{name} is malformed ({}): {text}",
                verdict["reason"]
            );
            assert!(
                text.contains("malformed envelope") && text.contains("length"),
                "{name}: {text}"
            );
        }
    }
    assert_eq!(items_received(&c), want, "items counted by type");
    // The three valid cases with an event share one event id: stored once.
    let issues = get(&c, "/api/calm/v1/issues")["data"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert_eq!(
        (issues[0]["count"].as_u64(), issues[0]["level"].as_str()),
        (Some(1), Some("warning"))
    );
    assert_eq!(issues[0]["title"], "edge case");
}

#[test]
fn sdk_envelopes_are_accepted() {
    let Some(root) = conformance_dir() else {
        return;
    };
    let c = start();
    for path in files(&root.join("sentry-events/sentry-java-envelopes"), "txt") {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        let (status, text) = post(&c, "envelope", std::fs::read(&path).expect("read"));
        if name == "envelope-event-attachment.txt" {
            // Its event payload is deliberately cut short: framing is fine, the event is
            // not JSON. As Sentry's Relay does, the envelope is accepted (its attachment
            // is taken), the event item dropped, counted and named in the answer.
            assert_eq!(status, 200, "{name}: {text}");
            let v: Value = serde_json::from_str(&text).expect("JSON answer");
            assert_eq!(v["discarded"][0]["item"], 0, "{name}: {text}");
            assert_eq!(
                v["discarded"][0]["reason"], "invalid_event",
                "{name}: {text}"
            );
        } else {
            assert_eq!(status, 200, "{name}: {text}");
        }
    }
    for path in files(&root.join("sentry-events/glitchtip/envelopes"), "json") {
        let parts = read_json(&path);
        let mut lines = Vec::new();
        for (i, part) in parts.as_array().expect("array").iter().enumerate() {
            let mut part = part.clone();
            if i % 2 == 1 {
                if let Some(m) = part.as_object_mut() {
                    m.remove("length");
                }
            }
            lines.push(serde_json::to_string(&part).expect("json"));
        }
        let (status, text) = post(&c, "envelope", lines.join("\n").into_bytes());
        assert_eq!(status, 200, "{}: {text}", path.display());
    }
    let got = items_received(&c);
    assert_eq!(
        got.get("event"),
        Some(&4),
        "one event per GlitchTip envelope and the invalid Java one: {got:?}"
    );
    let metrics = reqwest::blocking::get(format!("{}/metrics", c.url()))
        .and_then(|r| r.text())
        .expect("/metrics");
    assert!(
        metrics.contains(
            "calm_sentry_items_discarded_total{reason=\"invalid_event\",type=\"event\"} 1"
        ),
        "the dropped event item is counted: {metrics}"
    );
    assert_eq!(
        get(&c, "/api/calm/v1/issues?limit=1000")["data"]
            .as_array()
            .map(Vec::len),
        Some(3),
        "only the three valid events became issues"
    );
    assert!(
        got.contains_key("session")
            && got.contains_key("transaction")
            && got.contains_key("client_report"),
        "{got:?}"
    );
}

/// Our event (by event id) from the issues API.
fn stored_events(c: &Collector) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for issue in get(c, "/api/calm/v1/issues?limit=1000")["data"]
        .as_array()
        .expect("data")
    {
        let id = issue["id"].as_str().expect("id");
        for e in get(c, &format!("/api/calm/v1/issues/{id}/events?limit=1000"))["data"]
            .as_array()
            .expect("events")
        {
            out.insert(
                e["event_id"].as_str().expect("event_id").to_string(),
                e.clone(),
            );
        }
    }
    out
}

#[test]
fn store_payloads_match_sentry_normalisation() {
    let Some(root) = conformance_dir() else {
        return;
    };
    let base = root.join("sentry-events/glitchtip");
    let c = start();
    let mut ids = BTreeMap::new();
    for path in files(&base.join("store"), "json") {
        let (status, text) = post(&c, "store", std::fs::read(&path).expect("read"));
        assert_eq!(status, 200, "{}: {text}", path.display());
        let id: Value = serde_json::from_str(&text).expect("JSON answer");
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("")
            .to_string();
        ids.insert(stem, id["id"].as_str().expect("id").to_string());
    }
    let ours = stored_events(&c);
    assert_eq!(ours.len(), ids.len(), "every store payload is stored");
    let mut mismatches = Vec::new();
    let mut compared = 0;
    for path in files(&base.join("sentry-normalized"), "json") {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("")
            .to_string();
        let want = read_json(&path);
        let ev = &ours[&ids[&stem]];
        // small_js_error_source: Sentry applied source maps (we do not symbolicate).
        // js_error_with_context: Sentry's culprit and metadata name a frame
        // (errorWithContext in /main.js) that is in neither the payload nor its output.
        let fields: &[&str] = if stem == "small_js_error_source" || stem == "js_error_with_context"
        {
            &["title", "type", "level"]
        } else {
            &["title", "culprit", "type", "level", "metadata"]
        };
        for f in fields {
            compared += 1;
            if ev[*f] != want[*f] {
                mismatches.push(format!(
                    "{stem}.{f}: ours {} vs Sentry {}",
                    ev[*f], want[*f]
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {compared} fields differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    let custom = &ours[&ids["django_fingerprint"]];
    assert_eq!(custom["fingerprint"], serde_json::json!(["foo"]));
}
