//! Calm under an error storm: a load generator sends Sentry envelopes of 3 kinds as
//! fast as it can over many keep-alive connections (200 000 with `CALM_LONG=1`, fewer by
//! default; `CALM_STORM_EVENTS=N` sets it). Two kinds go to project 1 (high rate limit:
//! the collector itself is the bottleneck), one to project 2 (50 events/s: mostly 429).
//!
//! Afterwards:
//! - every envelope got 2xx or 429, and every 429 carried `Retry-After` and
//!   `X-Sentry-Rate-Limits` (Sentry's format), the low-rate project's with scope `project`;
//! - each issue's count equals exactly the events acknowledged with 2xx, and so do
//!   `calm_error_events_total` and `calm_sentry_events_stored_total`; the discard
//!   counters add up to the 429s;
//! - only a bounded sample of event bodies is kept per issue;
//! - the issues API answered all through the storm (its p99 latency is printed, not
//!   asserted), and the collector's peak RSS stayed under a generous ceiling (printed).

use calm_tests::Collector;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KEY1: &str = "11111111111111111111111111111111";
const KEY2: &str = "22222222222222222222222222222222";
const READ: &str = "storm-read";
/// Event bodies kept per issue per window (the window spans the whole test).
const BODIES: u64 = 25;
/// Project 2's rate, events/s.
const LOW_RATE: u64 = 50;
/// Peak RSS the collector must stay under.
const RSS_CEILING: u64 = 1 << 30;

fn config() -> String {
    format!(
        "[auth]\nread_tokens = [\"{READ}\"]\n\
         [errors]\nrate_limit = 1000000\nglobal_rate_limit = 1000000\n\
         bodies_per_issue = {BODIES}\nbody_window = \"1h\"\nmax_in_flight = 16\nqueue_events = 512\n\
         [[projects]]\nid = 1\nname = \"web\"\npublic_key = \"{KEY1}\"\n\
         [[projects]]\nid = 2\nname = \"noisy\"\npublic_key = \"{KEY2}\"\nrate_limit = {LOW_RATE}\n"
    )
}

/// How many events to send.
fn total_events() -> u64 {
    if let Some(n) = std::env::var("CALM_STORM_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return n;
    }
    if std::env::var("CALM_LONG").is_ok_and(|v| v == "1") {
        200_000
    } else {
        30_000
    }
}

/// The three kinds: (project, key, exception type, function names of the in-app frames).
const KINDS: [(u64, &str, &str, &[&str]); 3] = [
    (
        1,
        KEY1,
        "ValueError",
        &["handle_request", "parse_order", "parse_amount"],
    ),
    (
        1,
        KEY1,
        "KeyError",
        &["handle_request", "load_user", "lookup_user"],
    ),
    (
        2,
        KEY2,
        "TimeoutError",
        &["run_job", "fetch_feed", "http_get"],
    ),
];

/// An envelope as sentry-python sends it: envelope header, item header with length,
/// one event with a stack trace (library frames too), breadcrumbs, tags, user, contexts.
fn envelope(kind: usize, seq: u64) -> Vec<u8> {
    let (_, _, ty, funcs) = KINDS[kind];
    let event_id = format!("{:08x}{:024x}", kind as u32 + 0xa0, seq);
    let mut frames = vec![
        serde_json::json!({"filename": "gunicorn/workers/sync.py", "abs_path": "/usr/lib/python3/site-packages/gunicorn/workers/sync.py", "module": "gunicorn.workers.sync", "function": "handle", "lineno": 135, "in_app": false}),
        serde_json::json!({"filename": "flask/app.py", "abs_path": "/usr/lib/python3/site-packages/flask/app.py", "module": "flask.app", "function": "full_dispatch_request", "lineno": 1484, "in_app": false}),
    ];
    for (i, f) in funcs.iter().enumerate() {
        frames.push(serde_json::json!({
            "filename": "app/views.py", "abs_path": "/srv/app/views.py", "module": "app.views",
            "function": f, "lineno": 40 + i as u64 * 10 + seq % 7, "in_app": true,
            "context_line": format!("    return {f}(request)"),
            "pre_context": ["", "@route('/')"], "post_context": ["", ""],
            "vars": {"request": "<Request 'http://localhost/'>", "attempt": seq % 5}
        }));
    }
    let event = serde_json::json!({
        "event_id": event_id,
        "timestamp": 1.7e9 + seq as f64 / 1000.0,
        "platform": "python",
        "level": "error",
        "server_name": format!("web-{}", seq % 4),
        "release": "shop@2.4.1",
        "environment": "production",
        "sdk": {"name": "sentry.python", "version": "2.19.0"},
        "user": {"id": format!("user-{}", seq % 37), "ip_address": "10.0.0.7"},
        "tags": {"endpoint": funcs[0], "region": "eu-west-1"},
        "contexts": {"runtime": {"name": "CPython", "version": "3.11.2"}, "os": {"name": "Linux"}},
        "breadcrumbs": {"values": [
            {"timestamp": 1.7e9, "category": "http", "message": "GET /api/orders", "level": "info"},
            {"timestamp": 1.7e9, "category": "query", "message": "SELECT * FROM orders WHERE id = %s", "level": "info"}
        ]},
        "exception": {"values": [{
            "type": ty,
            "value": format!("{ty} for request {seq}"),
            "module": "builtins",
            "mechanism": {"type": "flask", "handled": false},
            "stacktrace": {"frames": frames}
        }]}
    });
    let payload = serde_json::to_vec(&event).expect("json");
    let mut out = format!(
        "{{\"event_id\":\"{event_id}\",\"sent_at\":\"2026-01-01T00:00:00.000000Z\",\"sdk\":{{\"name\":\"sentry.python\",\"version\":\"2.19.0\"}}}}\n\
         {{\"type\":\"event\",\"content_type\":\"application/json\",\"length\":{}}}\n",
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(&payload);
    out.push(b'\n');
    out
}

/// What the senders saw, per kind.
#[derive(Default)]
struct Tally {
    ok: [AtomicU64; 3],
    limited: [AtomicU64; 3],
    /// `X-Sentry-Rate-Limits` values seen on 429s, by kind (a few).
    headers: Mutex<BTreeMap<usize, Vec<String>>>,
    /// 429s without a usable Retry-After or X-Sentry-Rate-Limits, and other statuses.
    bad: Mutex<Vec<String>>,
}

fn sender(url: String, next: Arc<AtomicU64>, total: u64, tally: Arc<Tally>) {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(1)
        .build()
        .expect("client");
    loop {
        let seq = next.fetch_add(1, Ordering::Relaxed);
        if seq >= total {
            return;
        }
        let kind = (seq % 3) as usize;
        let (project, key, _, _) = KINDS[kind];
        let resp = client
            .post(format!("{url}/api/{project}/envelope/"))
            .header("Content-Type", "application/x-sentry-envelope")
            .header(
                "X-Sentry-Auth",
                format!(
                    "Sentry sentry_key={key}, sentry_version=7, sentry_client=sentry.python/2.19.0"
                ),
            )
            .body(envelope(kind, seq))
            .send();
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                tally.bad.lock().unwrap().push(format!("seq {seq}: {e}"));
                continue;
            }
        };
        let status = resp.status().as_u16();
        let h = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        match status {
            200..=299 => {
                tally.ok[kind].fetch_add(1, Ordering::Relaxed);
            }
            429 => {
                tally.limited[kind].fetch_add(1, Ordering::Relaxed);
                let retry = h("retry-after").and_then(|v| v.parse::<u64>().ok());
                let limits = h("x-sentry-rate-limits");
                let well_formed = limits.as_deref().is_some_and(|l| {
                    let parts: Vec<&str> = l.split(':').collect();
                    parts.len() >= 3 && parts[0].parse::<u64>().is_ok_and(|s| s >= 1)
                });
                if retry.is_none_or(|r| r < 1) || !well_formed {
                    tally.bad.lock().unwrap().push(format!(
                        "429 without Retry-After/X-Sentry-Rate-Limits: {retry:?} {limits:?}"
                    ));
                } else if let Some(l) = limits {
                    let mut seen = tally.headers.lock().unwrap();
                    let list = seen.entry(kind).or_default();
                    if list.len() < 50 && !list.contains(&l) {
                        list.push(l);
                    }
                }
                let _ = resp.bytes();
            }
            other => {
                let body = resp.text().unwrap_or_default();
                tally
                    .bad
                    .lock()
                    .unwrap()
                    .push(format!("status {other}: {body}"));
            }
        }
    }
}

fn get_json(client: &reqwest::blocking::Client, url: &str) -> Value {
    let r = client
        .get(url)
        .bearer_auth(READ)
        .send()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(r.status().as_u16(), 200, "GET {url}");
    r.json().expect("json")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Sums a `/metrics` family, optionally only the lines containing `filter`.
fn metric_sum(text: &str, name: &str, filter: &str) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && (l[name.len()..].starts_with(['{', ' '])))
        .filter(|l| l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[test]
fn storm_is_limited_counted_exactly_and_stays_responsive() {
    let mut c = Collector::start_with_config(&config(), &[]);
    let pid = c.pid().expect("pid");
    let total = total_events();
    let senders = 32;
    let rss_idle = calm_tests::agent::proc_status_kib(pid, "VmRSS:").unwrap_or(0);

    let tally = Arc::new(Tally::default());
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    // The issues API, polled all through the storm.
    let prober = {
        let (url, done) = (c.url(), done.clone());
        std::thread::spawn(move || {
            let client = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client");
            let mut lat = Vec::new();
            let mut rss_max = 0;
            while !done.load(Ordering::Relaxed) {
                let t = Instant::now();
                let v = get_json(&client, &format!("{url}/api/calm/v1/issues?limit=100"));
                lat.push(t.elapsed());
                assert!(v["data"].is_array(), "{v}");
                rss_max =
                    rss_max.max(calm_tests::agent::proc_status_kib(pid, "VmRSS:").unwrap_or(0));
                std::thread::sleep(Duration::from_millis(20));
            }
            (lat, rss_max)
        })
    };
    let started = Instant::now();
    let handles: Vec<_> = (0..senders)
        .map(|_| {
            let (url, next, tally) = (c.url(), next.clone(), tally.clone());
            std::thread::spawn(move || sender(url, next, total, tally))
        })
        .collect();
    for h in handles {
        h.join().expect("sender");
    }
    let secs = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let (mut lat, rss_max) = prober.join().expect("prober");
    lat.sort();

    let bad = tally.bad.lock().unwrap().clone();
    assert!(
        bad.is_empty(),
        "{} bad answers, first: {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    let ok: Vec<u64> = tally.ok.iter().map(|a| a.load(Ordering::Relaxed)).collect();
    let limited: Vec<u64> = tally
        .limited
        .iter()
        .map(|a| a.load(Ordering::Relaxed))
        .collect();
    let accepted: u64 = ok.iter().sum();
    let refused: u64 = limited.iter().sum();
    assert_eq!(accepted + refused, total, "every envelope got 2xx or 429");

    // Project 2 (50/s) was limited, with Sentry's header naming the project scope; its
    // acceptances fit its rate (burst of one second plus the rate over the run).
    assert!(limited[2] > 0, "the low-rate project must see 429s");
    let max_low = LOW_RATE + (LOW_RATE as f64 * (secs + 1.0)).ceil() as u64;
    assert!(
        ok[2] <= max_low,
        "project 2 accepted {} events in {secs:.1} s at {LOW_RATE}/s",
        ok[2]
    );
    let headers = tally.headers.lock().unwrap().clone();
    // Overload of project 1 (more requests than may be in flight) is answered like a
    // rate limit: scope organization, no category, 1 s.
    let overloaded: u64 = limited[0] + limited[1];
    assert!(
        headers
            .get(&0)
            .into_iter()
            .chain(headers.get(&1))
            .flatten()
            .all(|h| h == "1::organization:calm_overloaded"),
        "{headers:?}"
    );
    assert!(
        headers
            .get(&2)
            .is_some_and(|l| l.iter().any(|h| h.contains(":error:project"))),
        "{headers:?}"
    );

    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let list = get_json(
        &client,
        &format!("{}/api/calm/v1/issues?limit=100", c.url()),
    );
    let issues = list["data"].as_array().cloned().unwrap_or_default();
    assert_eq!(issues.len(), 3, "one issue per kind: {issues:#?}");
    let mut issue_ids = Vec::new();
    for (kind, (project, _, ty, funcs)) in KINDS.iter().enumerate() {
        let i = issues
            .iter()
            .find(|i| i["metadata"]["type"] == *ty)
            .unwrap_or_else(|| panic!("no {ty} issue: {issues:#?}"));
        assert_eq!(i["project"], *project);
        assert_eq!(
            i["count"].as_u64(),
            Some(ok[kind]),
            "{ty}: issue count = events acknowledged with 2xx"
        );
        assert_eq!(i["culprit"], format!("app.views in {}", funcs[2]));
        let id = i["id"].as_str().expect("id").to_string();
        let page = get_json(
            &client,
            &format!("{}/api/calm/v1/issues/{id}/events?limit=1000", c.url()),
        );
        let stored = page["data"].as_array().map(Vec::len).unwrap_or(0) as u64;
        assert_eq!(
            stored,
            ok[kind].min(BODIES),
            "{ty}: a bounded sample of bodies is kept"
        );
        issue_ids.push(id);
    }

    // The counter series and the collector's own counters agree. Each point of an
    // issue's series is stamped strictly after the one before (`next_series_point`), so a
    // storm of more than one event a millisecond stamps its last points a little ahead of
    // the clock: an instant query at "now" sees them once the clock has passed them.
    let counters = || {
        let q = get_json(
            &client,
            &format!(
                "{}/api/v1/query?query=sum%20by%20(issue)%20(calm_error_events_total)",
                c.url()
            ),
        );
        let by_issue: BTreeMap<String, u64> = q["data"]["result"]
            .as_array()
            .expect("result")
            .iter()
            .map(|r| {
                (
                    r["metric"]["issue"].as_str().unwrap_or("").to_string(),
                    r["value"][1].as_str().unwrap_or("0").parse().unwrap_or(0),
                )
            })
            .collect();
        (q, by_issue)
    };
    let exact = |by_issue: &BTreeMap<String, u64>| {
        issue_ids
            .iter()
            .enumerate()
            .all(|(kind, id)| by_issue.get(id) == Some(&ok[kind]))
    };
    let (q, by_issue) =
        calm_tests::wait_for(Duration::from_secs(5), Duration::from_millis(100), || {
            Some(counters()).filter(|(_, by_issue)| exact(by_issue))
        })
        .unwrap_or_else(counters);
    for (kind, id) in issue_ids.iter().enumerate() {
        assert_eq!(
            by_issue.get(id),
            Some(&ok[kind]),
            "calm_error_events_total, 5 s after the storm: {q}"
        );
    }
    let metrics = client
        .get(format!("{}/metrics", c.url()))
        .send()
        .and_then(|r| r.text())
        .expect("/metrics");
    assert_eq!(
        metric_sum(&metrics, "calm_sentry_events_stored_total", ""),
        accepted
    );
    assert_eq!(
        metric_sum(
            &metrics,
            "calm_sentry_items_discarded_total",
            "reason=\"calm_"
        ),
        refused,
        "each 429 counted once in calm_sentry_items_discarded_total"
    );
    let sampled_out = metric_sum(&metrics, "calm_sentry_event_bodies_sampled_out_total", "");
    assert_eq!(
        sampled_out,
        ok.iter().map(|n| n.saturating_sub(BODIES)).sum::<u64>()
    );

    let peak_kb = calm_tests::agent::proc_status_kib(pid, "VmHWM:").unwrap_or(0);
    let p50 = percentile(&lat, 0.5);
    let p99 = percentile(&lat, 0.99);
    let max = lat.last().copied().unwrap_or_default();
    let report = format!(
        "STORM: {total} envelopes in {secs:.1} s ({:.0}/s) over {senders} connections: \
         2xx {accepted} (per kind {ok:?}), 429 {refused} (per kind {limited:?}, overload {overloaded}); \
         issues API during the storm: {} calls, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
         collector RSS idle {} MiB, max sampled {} MiB, peak (VmHWM) {} MiB; \
         429 headers seen: {headers:?}",
        total as f64 / secs,
        lat.len(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        rss_idle / 1024,
        rss_max / 1024,
        peak_kb / 1024,
    );
    println!("{report}");
    eprintln!("{report}");
    assert!(
        !lat.is_empty(),
        "the issues API was polled during the storm"
    );
    assert!(
        peak_kb * 1024 < RSS_CEILING,
        "collector peak RSS {peak_kb} KiB is over the ceiling of {RSS_CEILING} bytes"
    );
    assert!(c.is_running(), "the collector is still up");
}
