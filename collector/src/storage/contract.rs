//! Contract tests of the storage traits, written against the traits only: each
//! backend runs them on its own implementation (the embedded ones in
//! `errors/sled_store_tests.rs` and `storage/embedded.rs`; cluster mode adds
//! its PostgreSQL / fan-out runs).

/// [`EventStore`] contract.
pub mod events {
    use crate::errors::normalize::{normalize, Received};
    use crate::errors::summary::summarize;
    use crate::storage::events::{
        BulkStatus, EventStore, IssueQuery, IssueSort, IssueStatus, NewEvent, TagCounts,
        OTHER_TAG_KEY, OTHER_TAG_VALUE,
    };
    use serde_json::{json, Map, Value};
    use std::sync::Arc;

    /// Bounds a contract test asks of the store it opens (`None`: the store's default).
    /// Opening again must reopen the same data.
    #[derive(Debug, Default, Clone, Copy)]
    pub struct Bounds {
        pub max_event_bytes: Option<usize>,
        pub max_events_per_issue: Option<u64>,
        pub bodies_per_window: Option<u64>,
        pub sample_window_ms: Option<i64>,
        pub max_tag_keys_per_issue: Option<u64>,
        pub max_tag_values_per_key: Option<u64>,
        pub max_issues_per_project: Option<u64>,
        pub max_environments_per_project: Option<u64>,
    }

    /// An event body as the pipeline stores it: `v` normalised.
    pub fn ev(v: Value) -> Map<String, Value> {
        let raw = v.as_object().cloned().unwrap_or_default();
        normalize(
            raw,
            &Received {
                at: 1_700_000_000.0,
                ..Default::default()
            },
        )
    }

    /// A stored event of project 1 with message "m", at `t` (ms).
    pub fn new_event(id: &str, hash: &str, user: Option<&str>, t: i64) -> NewEvent {
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

    fn tagged_event(id: &str, hash: &str, t: i64, tags: Value) -> NewEvent {
        let body = ev(json!({"message": "m", "tags": tags}));
        NewEvent {
            summary: summarize(&body),
            body: Value::Object(body),
            ..new_event(id, hash, None, t)
        }
    }

    /// `(value, count)` of one key, most frequent first.
    fn counts<'a>(tags: &'a [TagCounts], key: &str) -> Vec<(&'a str, u64)> {
        tags.iter()
            .find(|t| t.key == key)
            .map(|t| {
                t.values
                    .iter()
                    .map(|v| (v.value.as_str(), v.count))
                    .collect()
            })
            .unwrap_or_default()
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

    /// Counts are exact, a repeated event id is not counted again, the newest
    /// `max_events_per_issue` bodies are kept, listing pages by cursor, a resolved issue
    /// that gets an event regresses, and counts survive a reopen.
    pub async fn counts_exactly_dedups_and_regresses(open: &dyn Fn(Bounds) -> Arc<dyn EventStore>) {
        let store = open(Bounds {
            max_event_bytes: Some(1 << 16),
            max_events_per_issue: Some(3),
            ..Bounds::default()
        });
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
        let again = open(Bounds::default());
        assert_eq!(
            again.issue(1).await.unwrap().map(|i| i.count),
            Some(6),
            "counts survive a reopen"
        );
    }

    /// At most `bodies_per_window` bodies per issue per window are stored; every event
    /// is still counted.
    pub async fn bodies_are_sampled_per_window_and_counts_stay_exact(
        open: &dyn Fn(Bounds) -> Arc<dyn EventStore>,
    ) {
        let store = open(Bounds {
            bodies_per_window: Some(2),
            sample_window_ms: Some(1000),
            ..Bounds::default()
        });
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

    /// Tag value counts are exact whatever the body sampling keeps (duplicates not
    /// recounted), keys and values are bounded (the rest in the `other` buckets), first
    /// and last seen are kept per value, and the counts survive a reopen.
    pub async fn tag_values_are_counted_exactly_and_bounded(
        open: &dyn Fn(Bounds) -> Arc<dyn EventStore>,
    ) {
        let store = open(Bounds {
            bodies_per_window: Some(1),
            max_tag_keys_per_issue: Some(4),
            max_tag_values_per_key: Some(3),
            ..Bounds::default()
        });
        // level and environment are keys 1 and 2; color 3, a 4; b is one too many.
        let colors = ["red", "red", "blue", "green", "yellow", "red", "purple"];
        for (i, c) in colors.iter().enumerate() {
            let mut tags = json!({ "color": c });
            if i == 3 {
                tags = json!({ "color": c, "a": "1", "b": "2" });
            }
            let r = store
                .ingest(tagged_event(&format!("t{i}"), "h", 1000 + i as i64, tags))
                .await
                .unwrap();
            assert_eq!(r.issue_id, 1);
        }
        let dup = store
            .ingest(tagged_event("t0", "h", 9000, json!({ "color": "red" })))
            .await
            .unwrap();
        assert!(dup.duplicate);
        store
            .ingest(tagged_event("o0", "other", 500, json!({ "color": "red" })))
            .await
            .unwrap();
        let i1 = store.issue(1).await.unwrap().unwrap();
        assert_eq!((i1.count, i1.bodies_stored), (7, 1), "bodies sampled");
        let tags = store.tags(1).await.unwrap();
        assert_eq!(counts(&tags, "level"), [("error", 7)]);
        assert_eq!(counts(&tags, "environment"), [("prod", 7)]);
        assert_eq!(
            counts(&tags, "color"),
            [("red", 3), (OTHER_TAG_VALUE, 2), ("blue", 1), ("green", 1)]
        );
        assert_eq!(counts(&tags, "a"), [("1", 1)]);
        assert_eq!(counts(&tags, "b"), []);
        assert_eq!(counts(&tags, OTHER_TAG_KEY), [("b", 1)]);
        let red = tags
            .iter()
            .find(|t| t.key == "color")
            .and_then(|t| t.values.iter().find(|v| v.value == "red"))
            .cloned()
            .unwrap();
        assert_eq!((red.first_seen_ms, red.last_seen_ms), (1000, 1005));
        assert_eq!(counts(&store.tags(2).await.unwrap(), "color"), [("red", 1)]);
        assert!(store.tags(99).await.unwrap().is_empty());
        drop(store);
        let again = open(Bounds::default());
        let tags = again.tags(1).await.unwrap();
        assert_eq!(
            counts(&tags, "color")[0],
            ("red", 3),
            "counts survive a reopen"
        );
    }

    /// Beyond `max_issues_per_project` new groups count into one overflow issue (named
    /// with the limit); beyond `max_environments_per_project` new environments count as
    /// the overflow environment; known groups and environments are unaffected, and the
    /// limits hold across a reopen.
    pub async fn issues_and_environments_overflow(open: &dyn Fn(Bounds) -> Arc<dyn EventStore>) {
        use crate::storage::events::{OVERFLOW_ENVIRONMENT, OVERFLOW_HASH};
        let bounds = Bounds {
            max_issues_per_project: Some(2),
            max_environments_per_project: Some(1),
            ..Bounds::default()
        };
        let store = open(bounds);
        let mut staging = new_event("o2", "h2", None, 1001);
        staging.environment = Some("staging".into());
        let r1 = store
            .ingest(new_event("o1", "h1", None, 1000))
            .await
            .unwrap();
        let r2 = store.ingest(staging).await.unwrap();
        assert!(!r1.overflow_environment && r2.overflow_environment);
        assert!(!r2.overflow_issue);
        let r3 = store
            .ingest(new_event("o3", "h3", None, 1002))
            .await
            .unwrap();
        let r4 = store
            .ingest(new_event("o4", "h4", None, 1003))
            .await
            .unwrap();
        assert!(r3.overflow_issue && r4.overflow_issue);
        assert_eq!(r3.issue_id, r4.issue_id);
        assert!(r3.new_issue && !r4.new_issue);
        let again = store
            .ingest(new_event("o5", "h1", None, 1004))
            .await
            .unwrap();
        assert_eq!((again.issue_id, again.overflow_issue), (r1.issue_id, false));
        let o = store.issue(r3.issue_id).await.unwrap().unwrap();
        assert_eq!((o.hash.as_str(), o.count), (OVERFLOW_HASH, 2));
        assert!(o.title.contains("limit of 2 issues"), "{}", o.title);
        let i2 = store.issue(r2.issue_id).await.unwrap().unwrap();
        assert_eq!(i2.environments, [OVERFLOW_ENVIRONMENT]);
        drop(store);
        let store = open(bounds);
        let r6 = store
            .ingest(new_event("o6", "h6", None, 1005))
            .await
            .unwrap();
        assert_eq!((r6.issue_id, r6.overflow_issue), (r3.issue_id, true));
        let mut qa = new_event("o7", "h1", None, 1006);
        qa.environment = Some("qa".into());
        assert!(store.ingest(qa).await.unwrap().overflow_environment);
    }

    /// A bulk status change says which issues changed, which had the status and which
    /// do not exist (a repeated id counts once), and the change is kept.
    pub async fn bulk_status_change(open: &dyn Fn(Bounds) -> Arc<dyn EventStore>) {
        let store = open(Bounds::default());
        for (i, h) in ["h1", "h2", "h3"].iter().enumerate() {
            store
                .ingest(new_event(&format!("b{i}"), h, None, 1000))
                .await
                .unwrap();
        }
        let b = store
            .set_statuses(vec![1, 2, 1, 99], IssueStatus::Resolved, 2000)
            .await
            .unwrap();
        assert_eq!(
            b,
            BulkStatus {
                changed: vec![1, 2],
                unchanged: vec![],
                missing: vec![99],
            }
        );
        let b = store
            .set_statuses(vec![2, 3], IssueStatus::Resolved, 3000)
            .await
            .unwrap();
        assert_eq!((b.changed, b.unchanged), (vec![3], vec![2]));
        drop(store);
        let again = open(Bounds::default());
        for id in [1, 2, 3] {
            let i = again.issue(id).await.unwrap().unwrap();
            assert_eq!(i.status, IssueStatus::Resolved);
        }
        assert_eq!(
            again.issue(1).await.unwrap().unwrap().status_changed_ms,
            Some(2000)
        );
    }
}

/// [`SeriesReader`] contract, with the [`SampleSink`] that fills it.
pub mod series {
    use crate::storage::reader::{Matcher, SeriesData, SeriesReader};
    use crate::storage::{ErrorKind, SampleSink};
    use calm_wire::prompb::{Label, Sample, TimeSeries};

    const MIN: i64 = 60_000;

    fn ts(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
        let mut ls: Vec<Label> = labels.iter().map(|(n, v)| Label::new(*n, *v)).collect();
        ls.sort_by(|a, b| a.name.cmp(&b.name));
        TimeSeries {
            labels: ls,
            samples: samples
                .iter()
                .map(|&(timestamp, value)| Sample { value, timestamp })
                .collect(),
            ..Default::default()
        }
    }

    fn named(name: &str) -> Matcher {
        Matcher::equal("__name__", name)
    }

    fn pairs(s: &SeriesData) -> Vec<(String, String)> {
        s.label_pairs()
    }

    fn lp(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    /// Bit-exact samples: NaN compares equal to NaN.
    fn bits(v: &[(i64, f64)]) -> Vec<(i64, u64)> {
        v.iter().map(|(t, f)| (*t, f.to_bits())).collect()
    }

    /// Writes three series (ten minutes of samples, one minute apart, from 0) through
    /// `sink`, then checks every read of `reader`: selection by each matcher kind,
    /// inclusive time ranges, label order, the batch path (`select_labels` +
    /// `read_samples`) equal to `select`, series and label look-ups. `persist` moves
    /// what was written out of memory where the backend has such a step (the
    /// embedded TSDB: pages); the reads are checked before and after it.
    pub async fn reads_what_was_written(
        sink: &dyn SampleSink,
        reader: &dyn SeriesReader,
        persist: &dyn Fn(),
    ) {
        let a: Vec<(i64, f64)> = (0..10).map(|i| (i * MIN, i as f64)).collect();
        let mut b: Vec<(i64, f64)> = (0..10).map(|i| (i * MIN, 100.0 - i as f64)).collect();
        b[3].1 = f64::NAN;
        b[4].1 = f64::INFINITY;
        let c: Vec<(i64, f64)> = vec![(5 * MIN, 0.5)];
        let up_b = [("__name__", "up"), ("instance", "1"), ("job", "b")];
        let up_a = [("__name__", "up"), ("instance", "1"), ("job", "a")];
        let req = [("__name__", "req_total"), ("job", "a")];
        let batch = vec![ts(&up_b, &b), ts(&up_a, &a), ts(&req, &c)];
        let summary = sink.write(&batch, None).await.expect("write");
        assert_eq!(summary.appended, 21, "{summary:?}");
        assert_eq!(summary.rejected, 0, "{summary:?}");

        for round in ["before persisting", "after persisting"] {
            // Equality on the name: both `up` series, sorted by labels, every sample.
            let got = reader.select(&[named("up")], 0, 9 * MIN).expect("select");
            assert_eq!(got.len(), 2, "{round}");
            assert_eq!(pairs(&got[0]), lp(&up_a), "{round}");
            assert_eq!(pairs(&got[1]), lp(&up_b), "{round}");
            assert_eq!(bits(&got[0].samples), bits(&a), "{round}");
            assert_eq!(bits(&got[1].samples), bits(&b), "{round}");
            assert!(got[0].histograms.is_empty());

            // Both ends of the range are inclusive.
            let got = reader
                .select(&[named("up"), Matcher::equal("job", "a")], MIN, 2 * MIN)
                .expect("select");
            assert_eq!(got.len(), 1, "{round}");
            assert_eq!(got[0].samples, vec![(MIN, 1.0), (2 * MIN, 2.0)], "{round}");

            // Regex, negated regex and inequality.
            let re = Matcher::regex("job", "a|b", false).expect("regex");
            let n = reader.select(&[re], 0, 9 * MIN).expect("select").len();
            assert_eq!(n, 3, "{round}");
            let nre = Matcher::regex("__name__", "up", true).expect("regex");
            let got = reader.select(&[nre], 0, 9 * MIN).expect("select");
            assert_eq!(got.len(), 1, "{round}");
            assert_eq!(pairs(&got[0]), lp(&req), "{round}");
            let ne = Matcher {
                name: "job".into(),
                value: "a".into(),
                op: crate::storage::reader::MatchOp::NotEqual,
            };
            let got = reader
                .select(&[named("up"), ne], 0, 9 * MIN)
                .expect("select");
            assert_eq!(got.len(), 1, "{round}");
            assert_eq!(pairs(&got[0]), lp(&up_b), "{round}");

            // A series with no sample in the range is left out.
            let got = reader
                .select(&[Matcher::equal("job", "a")], 6 * MIN, 9 * MIN)
                .expect("select");
            assert_eq!(got.len(), 1, "{round}: req_total has no sample after 5m");
            assert!(reader
                .select(&[named("up")], 100 * MIN, 200 * MIN)
                .expect("select")
                .is_empty());

            // The batch path reads what select reads, in the handles' order.
            let labels = reader.select_labels(&[named("up")]);
            assert_eq!(labels.len(), 2, "{round}");
            let handles: Vec<_> = labels.iter().rev().map(|l| l.0).collect();
            let mut total = 0;
            let data = reader
                .read_samples(&handles, 0, 9 * MIN, &mut total)
                .expect("read_samples");
            assert_eq!(total, 20, "{round}");
            assert_eq!(bits(&data[0].0), bits(&b), "{round}");
            assert_eq!(bits(&data[1].0), bits(&a), "{round}");

            // Series and label look-ups.
            let (first, more) =
                reader.series_first(&[vec![named("up")], vec![named("req_total")]], 2);
            assert!(more, "{round}");
            let first: Vec<_> = first
                .iter()
                .map(|l| crate::tsdb::labels::to_pairs(l))
                .collect();
            assert_eq!(first, vec![lp(&req), lp(&up_a)], "{round}");
            let (all, more) = reader.series_first(&[vec![Matcher::equal("instance", "1")]], 10);
            assert_eq!((all.len(), more), (2, false), "{round}");
            let mut seen = 0;
            reader.for_each_series(&[vec![Matcher::equal("job", "a")]], &mut |_| seen += 1);
            assert_eq!(seen, 2, "{round}");
            assert_eq!(
                reader.label_names(),
                ["__name__", "instance", "job"],
                "{round}"
            );
            assert_eq!(reader.label_values("job"), ["a", "b"], "{round}");
            assert_eq!(
                reader.label_values("__name__"),
                ["req_total", "up"],
                "{round}"
            );
            assert!(reader.label_values("nope").is_empty());

            persist();
        }
    }

    /// A read past the reader's sample limit fails with [`ErrorKind::Limit`] (both
    /// paths); `reader` must allow fewer than 10 samples per query.
    pub async fn refuses_reads_past_the_sample_limit(
        sink: &dyn SampleSink,
        reader: &dyn SeriesReader,
    ) {
        assert!(reader.max_query_samples() < 10);
        let s: Vec<(i64, f64)> = (0..10).map(|i| (i * MIN, i as f64)).collect();
        sink.write(&[ts(&[("__name__", "x")], &s)], None)
            .await
            .expect("write");
        let e = reader
            .select(&[named("x")], 0, 9 * MIN)
            .expect_err("over the limit");
        assert_eq!(e.kind(), ErrorKind::Limit, "{e}");
        let handles: Vec<_> = reader
            .select_labels(&[named("x")])
            .into_iter()
            .map(|l| l.0)
            .collect();
        let mut total = 0;
        let e = reader
            .read_samples(&handles, 0, 9 * MIN, &mut total)
            .expect_err("over the limit");
        assert_eq!(e.kind(), ErrorKind::Limit, "{e}");
    }
}

/// Small stores' contracts: [`ProjectStore`](crate::storage::projects::ProjectStore),
/// [`AgentStore`](crate::storage::agents::AgentStore) and
/// [`AlertStateStore`](crate::storage::alert_state::AlertStateStore).
pub mod small {
    use crate::config::ProjectConfig;
    use crate::storage::agents::{record_as, token_fingerprint, AgentStore, MAX_FIELD_BYTES};
    use crate::storage::alert_state::AlertStateStore;
    use crate::storage::projects::ProjectStore;
    use axum::http::StatusCode;
    use std::sync::Arc;

    /// Without configured projects the default project is created once (a 32-hex-digit
    /// key) and the same one is loaded again (by any store on the same data); configured
    /// projects are served as configured, and a key used twice is refused.
    pub async fn projects_default_once_and_configured(open: &dyn Fn() -> Arc<dyn ProjectStore>) {
        let (a, created) = open().load(vec![]).await.expect("load");
        assert!(created, "the first load creates the default project");
        let (b, created) = open().load(vec![]).await.expect("load again");
        assert!(!created, "later loads find it");
        assert_eq!(a.list(), b.list());
        let key = a.list()[0].public_key.clone();
        assert_eq!(key.len(), 32);
        assert_eq!(b.by_key(&key).map(|p| p.id), Some(1));
        let web = ProjectConfig {
            id: 7,
            name: "web".into(),
            public_key: "k7".into(),
            rate_limit: Some(5.0),
        };
        let (c, created) = open().load(vec![web.clone()]).await.expect("configured");
        assert!(!created);
        assert_eq!(c.list(), std::slice::from_ref(&web));
        assert!(open().load(vec![web.clone(), web]).await.is_err());
    }

    /// The latest heartbeat per agent is kept and survives a reopen; an id is bound to
    /// the token that first sent it (403 for another, an admin may write it); rows are
    /// bounded (429 for a new id at `max_agents = 2`); long fields are cut and bad
    /// heartbeats refused with 400.
    pub async fn agents_bound_to_tokens_and_bounded(open: &dyn Fn(usize) -> Arc<dyn AgentStore>) {
        let s = open(2);
        let stats = crate::storage::agents::AgentStats::default();
        let a = Some(token_fingerprint("a"));
        let b = Some(token_fingerprint("b"));
        let status = |r: Result<(), crate::storage::agents::Refused>| r.err().map(|e| e.status());
        assert_eq!(
            status(record_as(&*s, &stats, br#"{"id":"x","n":1}"#, a.clone(), false).await),
            None
        );
        assert_eq!(
            status(record_as(&*s, &stats, br#"{"id":"x"}"#, b.clone(), false).await),
            Some(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            status(record_as(&*s, &stats, br#"{"id":"x","n":2}"#, None, true).await),
            None,
            "admin"
        );
        assert_eq!(
            status(record_as(&*s, &stats, br#"{"id":"y"}"#, b.clone(), false).await),
            None
        );
        assert_eq!(
            status(record_as(&*s, &stats, br#"{"id":"z"}"#, b.clone(), false).await),
            Some(StatusCode::TOO_MANY_REQUESTS)
        );
        assert_eq!(
            status(record_as(&*s, &stats, b"nope", a.clone(), false).await),
            Some(StatusCode::BAD_REQUEST)
        );
        let long = format!(r#"{{"id":"x","last_error":"{}"}}"#, "e".repeat(5000));
        assert_eq!(
            status(record_as(&*s, &stats, long.as_bytes(), a.clone(), false).await),
            None
        );
        let v = s.list().await.expect("list");
        let agents = v["agents"].as_array().expect("agents");
        assert_eq!(agents.len(), 2);
        assert_eq!(agents[0]["id"], "x");
        assert_eq!(
            agents[0]["last_error"].as_str().map(str::len),
            Some(MAX_FIELD_BYTES)
        );
        assert!(agents[0].get("owner_token_fingerprint").is_none());
        assert!(agents[1]["last_seen"].is_string());
        assert!(agents[1]["seconds_since_seen"].as_f64().is_some());
        drop(s);
        let again = open(2);
        // The embedded store writes its file at most every 10 s: the first heartbeat's
        // write is the one a reopen is sure to see.
        let v = again.list().await.expect("list");
        assert_eq!(v["agents"][0]["id"], "x", "kept across a reopen");
        assert_eq!(
            status(record_as(&*again, &stats, br#"{"id":"x"}"#, b, false).await),
            Some(StatusCode::FORBIDDEN),
            "the binding survives a reopen"
        );
        let n = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            (
                n(&stats.foreign_token),
                n(&stats.over_max_agents),
                n(&stats.invalid)
            ),
            (2, 1, 1),
            "refusals counted by reason (foreign token, max_agents, invalid)"
        );
    }

    /// Saved state is loaded back per key, replaced by a later save, and kept across a
    /// reopen.
    pub fn alert_state_saves_replaces_and_loads(open: &dyn Fn() -> Arc<dyn AlertStateStore>) {
        let s = open();
        assert_eq!(s.load("a").expect("load"), None);
        s.save("a", b"1").expect("save");
        s.save("b", b"2").expect("save");
        s.save("a", b"3").expect("save");
        let again = open();
        assert_eq!(again.load("a").expect("load").as_deref(), Some(&b"3"[..]));
        assert_eq!(again.load("b").expect("load").as_deref(), Some(&b"2"[..]));
        assert!(!again.describe("a").is_empty());
    }

    /// Runs the small stores' contracts on the embedded stores.
    #[tokio::test]
    async fn embedded_small_stores_keep_the_contract() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().to_path_buf();
        projects_default_once_and_configured(&|| {
            Arc::new(crate::storage::projects::FileProjectStore::new(d.join("p")))
        })
        .await;
        agents_bound_to_tokens_and_bounded(&|max| {
            Arc::new(crate::storage::agents::FileAgentStore::open_with(&d, max))
        })
        .await;
        alert_state_saves_replaces_and_loads(&|| {
            Arc::new(crate::storage::alert_state::FileAlertState::new(
                d.join("alerts"),
            ))
        });
    }
}
