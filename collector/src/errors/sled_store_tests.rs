//! The sled event store's tests: the [`EventStore`] contract
//! (`storage/contract.rs`) run on it, and what only this store has (event-id
//! generations as sled trees).

use super::{SledEventStore, SledOptions};
use crate::storage::contract::events::{self as contract, Bounds};
use crate::storage::events::EventStore;
use std::sync::Arc;

/// Opens a sled store in `dir` with the contract's bounds.
fn opener(dir: &std::path::Path) -> impl Fn(Bounds) -> Arc<dyn EventStore> + '_ {
    move |b: Bounds| {
        let d = SledOptions::default();
        let opts = SledOptions {
            max_event_bytes: b.max_event_bytes.unwrap_or(d.max_event_bytes),
            max_events_per_issue: b.max_events_per_issue.unwrap_or(d.max_events_per_issue),
            bodies_per_window: b.bodies_per_window.unwrap_or(d.bodies_per_window),
            sample_window_ms: b.sample_window_ms.unwrap_or(d.sample_window_ms),
            max_tag_keys_per_issue: b.max_tag_keys_per_issue.unwrap_or(d.max_tag_keys_per_issue),
            max_tag_values_per_key: b.max_tag_values_per_key.unwrap_or(d.max_tag_values_per_key),
            max_issues_per_project: b.max_issues_per_project.unwrap_or(d.max_issues_per_project),
            max_environments_per_project: b
                .max_environments_per_project
                .unwrap_or(d.max_environments_per_project),
            ..d
        };
        Arc::new(SledEventStore::open(dir, opts).expect("open the sled event store"))
    }
}

#[tokio::test]
async fn store_counts_exactly_dedups_and_regresses() {
    let dir = tempfile::tempdir().expect("tempdir");
    contract::counts_exactly_dedups_and_regresses(&opener(dir.path())).await;
}

#[tokio::test]
async fn bodies_are_sampled_per_window_and_counts_stay_exact() {
    let dir = tempfile::tempdir().expect("tempdir");
    contract::bodies_are_sampled_per_window_and_counts_stay_exact(&opener(dir.path())).await;
}

#[tokio::test]
async fn tag_values_are_counted_exactly_and_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    contract::tag_values_are_counted_exactly_and_bounded(&opener(dir.path())).await;
}

#[tokio::test]
async fn issues_and_environments_overflow() {
    let dir = tempfile::tempdir().expect("tempdir");
    contract::issues_and_environments_overflow(&opener(dir.path())).await;
}

#[tokio::test]
async fn bulk_status_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    contract::bulk_status_change(&opener(dir.path())).await;
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
        let r = store
            .ingest(contract::new_event("a", "h", None, t0))
            .await
            .unwrap();
        assert!(!r.duplicate);
        // Same window, then the next one: still a duplicate (looked up in the previous
        // generation).
        for t in [t0 + 500, t0 + 1_200] {
            let r = store
                .ingest(contract::new_event("a", "h", None, t))
                .await
                .unwrap();
            assert!(r.duplicate, "retry at +{} ms", t - t0);
        }
    }
    let store = SledEventStore::open(dir.path(), opts).unwrap();
    let r = store
        .ingest(contract::new_event("a", "h", None, t0 + 1_500))
        .await
        .unwrap();
    assert!(r.duplicate, "remembered across a reopen");
    // Two windows later generation 0 (which held "a") is dropped.
    store
        .ingest(contract::new_event("b", "h", None, t0 + 2_300))
        .await
        .unwrap();
    let r = store
        .ingest(contract::new_event("a", "h", None, t0 + 2_400))
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
