//! Normalisation, grouping and summaries, without a server. The event store's tests
//! are contract tests over the trait (`storage/contract.rs`), run on the sled store in
//! `sled_store_tests.rs`.

use super::grouping::hash;
use super::summary::summarize;
use crate::storage::contract::events::ev;
use serde_json::{json, Value};

fn exc(ty: &str, value: &str, funcs: &[(&str, u64)]) -> Value {
    let frames: Vec<Value> = funcs
        .iter()
        .map(|(f, line)| json!({"module": "app.views", "function": f, "lineno": line, "in_app": true}))
        .collect();
    json!({"platform": "python", "exception": {"values": [{"type": ty, "value": value, "stacktrace": {"frames": frames}}]}})
}

#[test]
fn grouping_ignores_line_numbers_and_varying_values() {
    let a = ev(exc("ValueError", "bad 1", &[("main", 10), ("parse", 20)]));
    let b = ev(exc("ValueError", "bad 2", &[("main", 11), ("parse", 99)]));
    let other = ev(exc("ValueError", "bad 1", &[("main", 10), ("charge", 20)]));
    assert_eq!(hash(&a), hash(&b));
    assert_ne!(hash(&a), hash(&other));
    let no_frames = |v: &str| ev(json!({"exception": [{"type": "E", "value": v}]}));
    assert_eq!(
        hash(&no_frames("id 0x1f2e3d after 12 tries")),
        hash(&no_frames("id 0xabc after 3 tries"))
    );
    assert_ne!(hash(&no_frames("a")), hash(&no_frames("b")));
    let msg = |m: &str| ev(json!({"message": m}));
    assert_eq!(
        hash(&msg("Payment 1 failed")),
        hash(&msg("Payment 22 failed"))
    );
    let tmpl = |p: &str| ev(json!({"logentry": {"message": "user %s failed", "params": [p]}}));
    assert_eq!(hash(&tmpl("ann")), hash(&tmpl("bob")));
}

#[test]
fn fingerprints_replace_or_extend_the_default() {
    let mut base = exc("ValueError", "x", &[("f", 1)]);
    let plain = ev(base.clone());
    base["fingerprint"] = json!(["{{ default }}"]);
    assert_eq!(hash(&ev(base.clone())), hash(&plain));
    base["fingerprint"] = json!(["custom", "{{default}}"]);
    let extended = hash(&ev(base.clone()));
    assert_ne!(extended, hash(&plain));
    base["fingerprint"] = json!(["custom"]);
    let custom = ev(base.clone());
    assert_ne!(hash(&custom), extended);
    assert_eq!(
        hash(&custom),
        hash(&ev(json!({"message": "other", "fingerprint": ["custom"]})))
    );
}

#[test]
fn legacy_shapes_normalise() {
    let e = ev(json!({
        "event_id": "4B9A1C2D-3E4F-40A1-B2C3-D4E5F6A7B8C9",
        "level": 30, "user": {"id": 42, "ip_address": "{{auto}}"},
        "tags": [["a", 1]], "breadcrumbs": [{"message": "m", "timestamp": "2023-11-14T22:13:20Z"}],
        "sentry.interfaces.Message": {"message": "hi %s", "params": ["you"]},
    }));
    assert_eq!(e["event_id"], "4b9a1c2d3e4f40a1b2c3d4e5f6a7b8c9");
    assert_eq!(e["level"], "warning");
    assert_eq!(e["user"], json!({"id": "42"}));
    assert_eq!(e["tags"], json!([["a", "1"]]));
    assert_eq!(e["breadcrumbs"]["values"][0]["timestamp"], 1_700_000_000.0);
    assert_eq!(e["logentry"]["formatted"], "hi you");
    let s = summarize(&e);
    assert_eq!(
        (s.event_type.as_str(), s.title.as_str()),
        ("default", "hi you")
    );
}

#[test]
fn summaries_follow_sentry() {
    let e = ev(exc(
        "ZeroDivisionError",
        "division by zero\nmore",
        &[("main", 1), ("ratio", 2)],
    ));
    let s = summarize(&e);
    assert_eq!(s.title, "ZeroDivisionError: division by zero");
    assert_eq!(s.culprit, "app.views in ratio");
    assert_eq!(s.metadata["function"], "ratio");
    let long = "x".repeat(300);
    assert_eq!(
        summarize(&ev(json!({"message": long})))
            .title
            .chars()
            .count(),
        100
    );
    assert_eq!(summarize(&ev(json!({}))).title, "<unlabeled event>");
}
