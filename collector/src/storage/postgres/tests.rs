//! The storage contracts (`storage/contract.rs`) run on the PostgreSQL stores against
//! a real server, and what only these stores have (partitions, migrations, leases).
//!
//! The server is started by the black-box harness' own starter
//! (`tests/src/postgres.rs`, included here by path: it needs only std, libc and
//! tempfile), so there is one way to run PostgreSQL in the tests. Without PostgreSQL
//! installed these tests skip with a notice (`CALM_REQUIRE_PEERS=1` fails them).

#[path = "../../../../tests/src/postgres.rs"]
#[allow(dead_code)]
mod harness;

use super::*;
use crate::storage::alert_state::AlertStateStore as _;
use crate::storage::contract;
use crate::storage::events::EventStore;
use std::sync::Arc;

/// A fresh server, or `None` (skip) when PostgreSQL is not installed.
fn server() -> Option<harness::Postgres> {
    match harness::Postgres::start_new() {
        Ok(pg) => Some(pg),
        Err(e) => {
            if std::env::var("CALM_REQUIRE_PEERS").is_ok_and(|v| v == "1") {
                panic!("PostgreSQL: {e}; CALM_REQUIRE_PEERS=1 makes this a failure");
            }
            eprintln!("SKIP: PostgreSQL tests: {e}");
            None
        }
    }
}

fn pool_for(url: &str) -> Pool {
    pool(&PgConfig {
        url: url.to_string(),
        pool_size: 4,
        timeout: std::time::Duration::from_secs(5),
    })
    .expect("pool")
}

/// A migrated database on `pg`.
async fn database(pg: &mut harness::Postgres) -> Pool {
    let url = pg.create_db().expect("create database");
    let p = pool_for(&url);
    migrate(&p).await.expect("migrate");
    p
}

fn opener(pool: Pool) -> impl Fn(contract::events::Bounds) -> Arc<dyn EventStore> {
    move |b| {
        let d = PgOptions::default();
        let mut o = d;
        o.rules.max_event_bytes = b.max_event_bytes.unwrap_or(d.rules.max_event_bytes);
        o.rules.max_events_per_issue = b
            .max_events_per_issue
            .unwrap_or(d.rules.max_events_per_issue);
        o.rules.bodies_per_window = b.bodies_per_window.unwrap_or(d.rules.bodies_per_window);
        o.rules.sample_window_ms = b.sample_window_ms.unwrap_or(d.rules.sample_window_ms);
        o.max_tag_keys_per_issue = b.max_tag_keys_per_issue.unwrap_or(d.max_tag_keys_per_issue);
        o.max_tag_values_per_key = b.max_tag_values_per_key.unwrap_or(d.max_tag_values_per_key);
        o.rules.max_issues_per_project = b
            .max_issues_per_project
            .unwrap_or(d.rules.max_issues_per_project);
        o.max_environments_per_project = b
            .max_environments_per_project
            .unwrap_or(d.max_environments_per_project);
        Arc::new(PgEventStore::new(pool.clone(), o))
    }
}

/// The [`EventStore`] contract, each part on its own database of one server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_store_keeps_the_contract() {
    let Some(mut pg) = server() else { return };
    let e = contract::events::counts_exactly_dedups_and_regresses;
    e(&opener(database(&mut pg).await)).await;
    contract::events::bodies_are_sampled_per_window_and_counts_stay_exact(&opener(
        database(&mut pg).await,
    ))
    .await;
    contract::events::tag_values_are_counted_exactly_and_bounded(&opener(database(&mut pg).await))
        .await;
    contract::events::bulk_status_change(&opener(database(&mut pg).await)).await;
    contract::events::issues_and_environments_overflow(&opener(database(&mut pg).await)).await;
}

/// The small stores' contracts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_stores_keep_the_contract() {
    let Some(mut pg) = server() else { return };
    let p = database(&mut pg).await;
    contract::small::projects_default_once_and_configured(&|| Arc::new(PgProjects::new(p.clone())))
        .await;
    contract::small::agents_bound_to_tokens_and_bounded(&|max| {
        Arc::new(PgAgents::new(p.clone(), max))
    })
    .await;
    let rt = tokio::runtime::Handle::current();
    let p2 = p.clone();
    tokio::task::spawn_blocking(move || {
        contract::small::alert_state_saves_replaces_and_loads(&|| {
            Arc::new(PgAlertState::new(p2.clone(), rt.clone()))
        })
    })
    .await
    .expect("alert state contract");
    // The rules call it from an async task too (after an evaluation): it must not
    // block on the runtime from inside it (which panics).
    let direct = PgAlertState::new(p.clone(), tokio::runtime::Handle::current());
    direct
        .save("from-async", b"x")
        .expect("save from an async task");
    assert_eq!(
        direct.load("from-async").expect("load").as_deref(),
        Some(&b"x"[..])
    );
}

/// Migrations run once (a second run, and two at once, change nothing); events go
/// into day partitions made on demand; maintenance makes the days ahead, drops
/// partitions past the retention and forgets old event ids; a stopped server is a 503
/// (`Unavailable`) and the store works again once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_retention_migrations_and_outage() {
    let Some(mut pg) = server() else { return };
    let p = database(&mut pg).await;
    let (a, b) = tokio::join!(migrate(&p), migrate(&p));
    a.expect("migrate again");
    b.expect("migrate at once");
    let c = client(&p).await.expect("client");
    let versions: i64 = c
        .query_one("SELECT count(*) FROM calm_schema_migrations", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(versions as usize, MIGRATIONS.len());

    let store = PgEventStore::new(p.clone(), PgOptions::default());
    let day0 = 1_700_000_000_000i64.div_euclid(DAY_MS) * DAY_MS;
    for (i, t) in [day0 + 1000, day0 + DAY_MS + 1000, day0 + 2 * DAY_MS + 1000]
        .iter()
        .enumerate()
    {
        store
            .ingest(contract::events::new_event(&format!("p{i}"), "h", None, *t))
            .await
            .expect("ingest");
    }
    assert_eq!(
        parts(&c).await,
        [
            partition_name(day0),
            partition_name(day0 + DAY_MS),
            partition_name(day0 + 2 * DAY_MS)
        ]
    );
    // Two days later with a retention of one day: the first day's partition goes
    // (its bodies with it), the issue and its count stay.
    let now = day0 + 2 * DAY_MS + 5000;
    let m = maintain(&p, now, DAY_MS, DAY_MS).await.expect("maintain");
    assert_eq!(m.dropped, [partition_name(day0)]);
    assert_eq!(
        m.event_ids_deleted, 2,
        "the ids older than a day are forgotten"
    );
    let after = parts(&c).await;
    assert!(!after.contains(&partition_name(day0)), "{after:?}");
    assert!(
        after.contains(&partition_name(now + 2 * DAY_MS)),
        "days ahead: {after:?}"
    );
    let issue = store.issue(1).await.expect("issue").expect("kept");
    assert_eq!(issue.count, 3);
    assert_eq!(
        store
            .events(1, 10, None)
            .await
            .expect("events")
            .events
            .len(),
        2
    );
    drop(c);

    // An outage: every call fails as Unavailable (503 + Retry-After), none hangs.
    pg.stop().expect("stop");
    let err = store
        .ingest(contract::events::new_event("out", "h", None, now))
        .await
        .expect_err("PostgreSQL is down");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert_eq!(err.status().as_u16(), 503);
    let err = store.issue(1).await.expect_err("down");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    pg.start().expect("start again");
    let mut ok = None;
    for _ in 0..50 {
        match store
            .ingest(contract::events::new_event("out", "h", None, now))
            .await
        {
            Ok(r) => {
                ok = Some(r);
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
        }
    }
    let r = ok.expect("works again once PostgreSQL is back");
    assert!(!r.duplicate, "the refused event was not stored");
    assert_eq!(
        store.issue(1).await.expect("issue").map(|i| i.count),
        Some(4)
    );
}

async fn parts(c: &deadpool_postgres::Object) -> Vec<String> {
    let rows = c
        .query(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = 'calm_events'::regclass ORDER BY 1",
            &[],
        )
        .await
        .expect("partitions");
    rows.iter().map(|r| r.get::<_, String>(0)).collect()
}

/// Two stores (two collectors) on one database writing the same issue at once: every
/// event counted exactly once, retries (same ids through the other store) not at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_count_exactly() {
    let Some(mut pg) = server() else { return };
    let url = pg.create_db().expect("create database");
    let p = pool_for(&url);
    migrate(&p).await.expect("migrate");
    let a = Arc::new(PgEventStore::new(p.clone(), PgOptions::default()));
    let b = Arc::new(PgEventStore::new(pool_for(&url), PgOptions::default()));
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for (n, s) in [a.clone(), b.clone()].into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut futs = Vec::new();
            for i in 0..200 {
                // Both send e0..e199 for h1 (one of each pair is a retry), and their
                // own ids for h2.
                let s1 = s.clone();
                futs.push(tokio::spawn(async move {
                    s1.ingest(contract::events::new_event(
                        &format!("e{i}"),
                        "h1",
                        Some(&format!("u{}", i % 7)),
                        1000 + i,
                    ))
                    .await
                }));
                let s2 = s.clone();
                futs.push(tokio::spawn(async move {
                    s2.ingest(contract::events::new_event(
                        &format!("w{n}-{i}"),
                        "h2",
                        None,
                        1000 + i,
                    ))
                    .await
                }));
            }
            for f in futs {
                f.await.expect("task").expect("ingest");
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    // A figure, not a timer: 800 ingests (200 of them retries) by two writers.
    println!(
        "two writers: 800 ingests in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let page = a
        .issues(crate::storage::events::IssueQuery {
            project_id: Some(1),
            status: None,
            environment: None,
            release: None,
            text: None,
            sort: crate::storage::events::IssueSort::Count,
            limit: 10,
            cursor: None,
        })
        .await
        .expect("issues");
    let counts: Vec<(String, u64, u64)> = page
        .issues
        .iter()
        .map(|i| (i.hash.clone(), i.count, i.user_count))
        .collect();
    assert_eq!(
        counts,
        [("h2".to_string(), 400, 0), ("h1".to_string(), 200, 7)]
    );
    let c = client(&p).await.expect("client");
    let bucketed: i64 = c
        .query_one("SELECT sum(count)::bigint FROM calm_issue_counts", &[])
        .await
        .expect("sum")
        .get(0);
    assert_eq!(bucketed, 600, "hourly buckets add up to the events counted");
}

/// A lease is held by one holder at a time; a take-over after expiry raises the
/// epoch; the old holder's claims and state writes are refused (fenced); one notice
/// per receiver, group and slot; a notice claimed but never delivered by the old
/// holder is not sent again in its slot (the old one may still be sending it) but in
/// the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_fence_the_notification_log() {
    use crate::storage::evaluator::{Claim, ClaimRequest, NotificationLog as _};
    use evaluator::{acquire, renew, save_state_fenced, PgNotificationLog};
    let Some(mut pg) = server() else { return };
    let p = database(&mut pg).await;
    let ttl = std::time::Duration::from_millis(400);
    assert_eq!(acquire(&p, "a", ttl).await.expect("a"), Some(1));
    assert_eq!(acquire(&p, "b", ttl).await.expect("b"), None, "a holds it");
    assert_eq!(acquire(&p, "a", ttl).await.expect("a"), None, "not twice");
    assert!(renew(&p, "a", 1, ttl).await.expect("renew"));
    let (la, lb) = (
        PgNotificationLog::new(p.clone(), "a"),
        PgNotificationLog::new(p.clone(), "b"),
    );
    let req = |slot: i64, epoch: i64, firing: &[u64]| ClaimRequest {
        receiver: "hook".into(),
        group_key: "{}:{job=\"x\"}".into(),
        slot,
        epoch,
        now_ms: slot * 1000,
        firing: firing.to_vec(),
        resolved: vec![],
        needs_update: Box::new(|last| last.is_none_or(|l| l.firing.len() < 9)),
    };
    assert_eq!(
        la.claim(req(10, 1, &[u64::MAX, 7])).await.expect("claim"),
        Claim::Send
    );
    la.delivered("hook", "{}:{job=\"x\"}", 10, 1)
        .await
        .expect("delivered");
    match la.claim(req(10, 1, &[7])).await.expect("claim") {
        Claim::AlreadySent(n) => {
            assert_eq!((n.slot, n.epoch, n.delivered), (10, 1, true));
            assert_eq!(n.firing, vec![u64::MAX, 7], "fingerprints round-trip");
        }
        other => panic!("one notice a slot: {other:?}"),
    }
    assert_eq!(
        la.claim(req(11, 1, &[7])).await.expect("claim"),
        Claim::Send
    );
    assert!(save_state_fenced(&p, "g", b"s1", "a", 1)
        .await
        .expect("save"));
    // a stops renewing (paused): b takes over once the lease expired.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!renew(&p, "a", 1, ttl).await.expect("renew"), "expired");
    assert_eq!(acquire(&p, "b", ttl).await.expect("b"), Some(2));
    assert_eq!(
        la.claim(req(12, 1, &[7])).await.expect("claim"),
        Claim::Fenced
    );
    assert!(
        !save_state_fenced(&p, "g", b"stale", "a", 1)
            .await
            .expect("save"),
        "fenced"
    );
    assert!(save_state_fenced(&p, "g", b"s2", "b", 2)
        .await
        .expect("save"));
    // Slot 11 was claimed by a and never confirmed: not again in slot 11 (a may be
    // paused mid-POST) ...
    match lb.claim(req(11, 2, &[7])).await.expect("claim") {
        Claim::AlreadySent(n) => assert_eq!((n.epoch, n.delivered), (1, false)),
        other => panic!("{other:?}"),
    }
    // ... and in slot 12 the last delivered notice (slot 10) is what counts.
    let seen = Arc::new(std::sync::Mutex::new(None));
    let s2 = seen.clone();
    let next = ClaimRequest {
        needs_update: Box::new(move |last| {
            *s2.lock().unwrap() = last.map(|l| l.slot);
            true
        }),
        ..req(12, 2, &[7])
    };
    assert_eq!(lb.claim(next).await.expect("claim"), Claim::Send);
    assert_eq!(
        *seen.lock().unwrap(),
        Some(10),
        "judged against the last delivered"
    );
    lb.delivered("hook", "{}:{job=\"x\"}", 12, 2)
        .await
        .expect("delivered");
    // Nothing new to say: skipped, with what the receiver last got.
    let skip = ClaimRequest {
        needs_update: Box::new(|_| false),
        ..req(13, 2, &[7])
    };
    match lb.claim(skip).await.expect("claim") {
        Claim::Skip(Some(n)) => assert_eq!((n.slot, n.node.as_str()), (12, "b")),
        other => panic!("{other:?}"),
    }
    let all = evaluator::notices(&p, "hook", "{}:{job=\"x\"}")
        .await
        .expect("read");
    assert_eq!(
        all.iter().map(|n| n.slot).collect::<Vec<_>>(),
        vec![10, 11, 12]
    );
    let st =
        crate::storage::postgres::PgAlertState::new(p.clone(), tokio::runtime::Handle::current());
    let got = tokio::task::spawn_blocking(move || st.load("g"))
        .await
        .expect("join")
        .expect("load");
    assert_eq!(got.as_deref(), Some(&b"s2"[..]));
}
