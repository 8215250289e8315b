//! Normalisation, grouping, summaries and the sled store, without a server.

use super::grouping::hash;
use super::normalize::{normalize, Received};
use super::sled_store::{SledEventStore, SledOptions};
use super::summary::summarize;
use crate::storage::events::{EventStore, IssueQuery, IssueSort, IssueStatus, NewEvent};
use serde_json::{json, Map, Value};

fn ev(v: Value) -> Map<String, Value> {
    let raw = v.as_object().cloned().unwrap_or_default();
    normalize(
        raw,
        &Received {
            at: 1_700_000_000.0,
            ..Default::default()
        },
    )
}

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

fn new_event(id: &str, hash: &str, user: Option<&str>, t: i64) -> NewEvent {
    let body = ev(json!({"message": "m"}));
    NewEvent {
        project_id: 1,
        event_id: id.into(),
        hash: hash.into(),
        timestamp_ms: t,
        received_ms: t,
        level: "error".into(),
        environment: Some("prod".into()),
        release: None,
        platform: "python".into(),
        user_key: user.map(str::to_string),
        summary: summarize(&body),
        body: Value::Object(body),
    }
}

fn query(sort: IssueSort, limit: usize, cursor: Option<String>) -> IssueQuery {
    IssueQuery {
        project_id: None,
        status: None,
        environment: None,
        release: None,
        text: None,
        sort,
        limit,
        cursor,
    }
}

#[tokio::test]
async fn store_counts_exactly_dedups_and_regresses() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledEventStore::open(
        dir.path(),
        SledOptions {
            max_event_bytes: 1 << 16,
            max_events_per_issue: 3,
            ..SledOptions::default()
        },
    )
    .unwrap();
    for i in 0..5 {
        let r = store
            .ingest(new_event(
                &format!("e{i}"),
                "h1",
                Some(&format!("u{}", i % 2)),
                1000 + i,
            ))
            .await
            .unwrap();
        assert_eq!(
            (r.issue_id, r.series_count, r.new_issue),
            (1, i as u64 + 1, i == 0)
        );
    }
    let dup = store
        .ingest(new_event("e0", "h1", None, 5000))
        .await
        .unwrap();
    assert!(dup.duplicate);
    store
        .ingest(new_event("f0", "h2", None, 900))
        .await
        .unwrap();
    let i1 = store.issue(1).await.unwrap().unwrap();
    assert_eq!(
        (i1.count, i1.user_count, i1.first_seen_ms, i1.last_seen_ms),
        (5, 2, 1000, 1004)
    );
    let page = store.events(1, 10, None).await.unwrap();
    assert_eq!(page.events.len(), 3, "only the newest 3 bodies are kept");
    let p1 = store
        .issues(query(IssueSort::Count, 1, None))
        .await
        .unwrap();
    assert_eq!(p1.issues[0].id, 1);
    let p2 = store
        .issues(query(IssueSort::Count, 1, p1.next_cursor))
        .await
        .unwrap();
    assert_eq!((p2.issues[0].id, p2.next_cursor), (2, None));
    store
        .set_status(1, IssueStatus::Resolved, 2000)
        .await
        .unwrap();
    let r = store
        .ingest(new_event("e9", "h1", None, 3000))
        .await
        .unwrap();
    assert!(r.regressed);
    let i1 = store.issue(1).await.unwrap().unwrap();
    assert_eq!(
        (i1.status, i1.regressed, i1.count),
        (IssueStatus::Unresolved, true, 6)
    );
    drop(store);
    let again = SledEventStore::open(dir.path(), SledOptions::default()).unwrap();
    assert_eq!(
        again.issue(1).await.unwrap().map(|i| i.count),
        Some(6),
        "counts survive a reopen"
    );
}

#[tokio::test]
async fn bodies_are_sampled_per_window_and_counts_stay_exact() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledEventStore::open(
        dir.path(),
        SledOptions {
            bodies_per_window: 2,
            sample_window_ms: 1000,
            ..SledOptions::default()
        },
    )
    .unwrap();
    // Five events in one window, three in the next (received_ms = t), then one a
    // little older than that window's start (concurrent handlers: it still counts in
    // that window), then a clock that went back by more than a window (a new one).
    let mut stored = Vec::new();
    for (i, t) in [0, 10, 20, 30, 40, 1500, 1510, 1520, 1495, -5000]
        .iter()
        .enumerate()
    {
        let r = store
            .ingest(new_event(&format!("s{i}"), "h", None, 10_000 + t))
            .await
            .unwrap();
        stored.push(r.body_stored);
        assert_eq!(r.series_count, i as u64 + 1, "every event counted");
    }
    assert_eq!(
        stored,
        [true, true, false, false, false, true, true, false, false, true],
        "two bodies per issue per window"
    );
    let i = store.issue(1).await.unwrap().unwrap();
    assert_eq!((i.count, i.bodies_stored), (10, 5));
    let page = store.events(1, 100, None).await.unwrap();
    let ids: Vec<&str> = page
        .events
        .iter()
        .filter_map(|e| e["event_id"].as_str())
        .collect();
    assert_eq!(ids.len(), 5, "{ids:?}");
}

/// A retry (same event id) is not counted again for at least one dedup window, across
/// a reopen; after two windows its id is forgotten, and the oldest generation's tree
/// is gone from disk.
#[tokio::test]
async fn event_ids_are_remembered_for_a_window_then_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SledOptions {
        dedup_window_ms: 1_000,
        ..SledOptions::default()
    };
    let t0 = 1_700_000_000_000i64;
    {
        let store = SledEventStore::open(dir.path(), opts).unwrap();
        let r = store.ingest(new_event("a", "h", None, t0)).await.unwrap();
        assert!(!r.duplicate);
        // Same window, then the next one: still a duplicate (looked up in the previous
        // generation).
        for t in [t0 + 500, t0 + 1_200] {
            let r = store.ingest(new_event("a", "h", None, t)).await.unwrap();
            assert!(r.duplicate, "retry at +{} ms", t - t0);
        }
    }
    let store = SledEventStore::open(dir.path(), opts).unwrap();
    let r = store
        .ingest(new_event("a", "h", None, t0 + 1_500))
        .await
        .unwrap();
    assert!(r.duplicate, "remembered across a reopen");
    // Two windows later generation 0 (which held "a") is dropped.
    store
        .ingest(new_event("b", "h", None, t0 + 2_300))
        .await
        .unwrap();
    let r = store
        .ingest(new_event("a", "h", None, t0 + 2_400))
        .await
        .unwrap();
    assert!(!r.duplicate, "forgotten after two windows");
    let i = store.issue(1).await.unwrap().unwrap();
    assert_eq!(
        i.count, 3,
        "a, b and a again are counted; the retries are not"
    );
    drop(store);
    let db = sled::open(dir.path()).unwrap();
    let names: Vec<String> = db
        .tree_names()
        .iter()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .filter(|n| n.starts_with("event_ids"))
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(!names.contains(&"event_ids".to_string()), "{names:?}");
}
