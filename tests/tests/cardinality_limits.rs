//! Cardinality limits of the real collector: series per metric name, series in all, new
//! series per sender per minute, issues and environments per project (with the public
//! DSN key only). Each limit holds exactly, the answer names it (400 when it will not
//! clear, 429 + Retry-After for the per-minute rate), series already stored keep
//! taking samples, and the counters at `/metrics` count every refusal.

use calm_tests::agent::sample_value as metric;
use calm_tests::write::{request, series};
use calm_tests::Collector;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

struct Answer {
    status: u16,
    retry_after: Option<u64>,
    body: String,
}

/// Remote-writes `n` series `metric{i="from".."from+n"}`, one sample each at `t`.
fn write(
    c: &Collector,
    token: Option<&str>,
    metric: &str,
    from: usize,
    n: usize,
    t: i64,
) -> Answer {
    let ts = (from..from + n)
        .map(|i| series(metric, &[("i", &i.to_string())], &[(t, i as f64)]))
        .collect();
    let body = calm_wire::remote_write::encode(&request(ts));
    let mut req = reqwest::blocking::Client::new()
        .post(c.write_url())
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .timeout(Duration::from_secs(30))
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().expect("remote-write");
    Answer {
        status: r.status().as_u16(),
        retry_after: r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok()),
        body: r.text().unwrap_or_default(),
    }
}

fn get(c: &Collector, path_and_query: &str, token: Option<&str>) -> String {
    let mut req = reqwest::blocking::Client::new()
        .get(format!("{}{path_and_query}", c.url()))
        .timeout(Duration::from_secs(30));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().and_then(|r| r.text()).expect("GET")
}

fn series_count(c: &Collector, selector: &str, token: Option<&str>) -> usize {
    let q = format!(
        "/api/v1/series?{}",
        calm_tests::api::form_urlencode(&[("match[]", selector.to_string())])
    );
    let v: serde_json::Value = serde_json::from_str(&get(c, &q, token)).expect("series JSON");
    v["data"].as_array().map_or(0, Vec::len)
}

/// Series of `metric` with a sample at `t + 15 s`.
fn fresh(c: &Collector, metric: &str, t: i64, token: Option<&str>) -> usize {
    let at = (t + 15_000) as f64 / 1000.0;
    let q = calm_tests::api::form_urlencode(&[
        (
            "query",
            format!("count(timestamp({metric}) > {})", at - 1.0),
        ),
        ("time", format!("{at}")),
    ]);
    let v: serde_json::Value =
        serde_json::from_str(&get(c, &format!("/api/v1/query?{q}"), token)).expect("query");
    v["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn rejections(c: &Collector, limit: &str, token: Option<&str>) -> Option<f64> {
    metric(
        &get(c, "/metrics", token),
        &format!("calm_tsdb_series_limit_rejections_total{{limit=\"{limit}\"}}"),
    )
}

#[test]
fn series_per_metric_and_in_all_hold_and_are_counted() {
    let c = Collector::start_with_config(
        "[limits]\nmax_series = 120\nmax_series_per_metric = 50\n",
        &[],
    );
    let t = now_ms();
    let a = write(&c, None, "card_a", 0, 80, t);
    assert_eq!(
        a.status, 400,
        "a limit that will not clear is a 400: {}",
        a.body
    );
    assert!(
        a.body.contains("limits.max_series_per_metric"),
        "{}",
        a.body
    );
    assert!(a.body.contains("card_a"), "names the metric: {}", a.body);
    assert_eq!(series_count(&c, "card_a", None), 50);
    // The 50 stored take new samples; the 30 others are refused again.
    let again = write(&c, None, "card_a", 0, 80, t + 15_000);
    assert_eq!(again.status, 400, "{}", again.body);
    assert_eq!(fresh(&c, "card_a", t, None), 50);

    let b = write(&c, None, "card_b", 0, 50, t);
    assert_eq!(b.status, 204, "{}", b.body);
    let m = write(&c, None, "card_c", 0, 40, t);
    assert_eq!(m.status, 400, "{}", m.body);
    assert!(m.body.contains("limits.max_series"), "{}", m.body);
    assert!(!m.body.contains("max_series_per_metric"), "{}", m.body);
    assert_eq!(series_count(&c, "card_c", None), 20);
    assert_eq!(series_count(&c, "{__name__=~\"card_.*\"}", None), 120);

    assert_eq!(rejections(&c, "max_series_per_metric", None), Some(60.0));
    assert_eq!(rejections(&c, "max_series", None), Some(20.0));
    assert_eq!(
        rejections(&c, "max_new_series_per_sender_per_minute", None),
        Some(0.0)
    );
}

#[test]
fn new_series_per_sender_per_minute_hold_per_token() {
    let c = Collector::start_with_config(
        "[auth]\nagent_tokens = [\"s1\", \"s2\"]\nread_tokens = [\"r\"]\n\
         [limits]\nmax_new_series_per_sender_per_minute = 40\n",
        &[],
    );
    // The windows are calendar minutes: start early in one so the checks share it.
    let sec = (now_ms() / 1000) % 60;
    if sec > 40 {
        std::thread::sleep(Duration::from_secs((61 - sec) as u64));
    }
    let t = now_ms();
    let s1 = write(&c, Some("s1"), "rate_m", 0, 60, t);
    assert_eq!(s1.status, 429, "a per-minute limit is a 429: {}", s1.body);
    assert!(
        s1.retry_after.is_some_and(|r| (1..=60).contains(&r)),
        "Retry-After until the next minute: {:?}",
        s1.retry_after
    );
    assert!(
        s1.body
            .contains("limits.max_new_series_per_sender_per_minute"),
        "{}",
        s1.body
    );
    assert_eq!(series_count(&c, "rate_m", Some("r")), 40);
    // Another sender has its own budget.
    let s2 = write(&c, Some("s2"), "rate_m2", 0, 30, t);
    assert_eq!(s2.status, 204, "{}", s2.body);
    // The first sender's known series still take samples; its 20 new ones wait.
    let old = write(&c, Some("s1"), "rate_m", 0, 60, t + 15_000);
    assert_eq!(old.status, 429, "{}", old.body);
    assert_eq!(fresh(&c, "rate_m", t, Some("r")), 40);
    assert_eq!(series_count(&c, "rate_m", Some("r")), 40);
    assert_eq!(series_count(&c, "rate_m2", Some("r")), 30);
    assert_eq!(
        rejections(&c, "max_new_series_per_sender_per_minute", Some("r")),
        Some(40.0)
    );
}

/// A word of the letters g..z for `i` (grouping masks numbers and hex).
fn word(i: usize) -> String {
    let l = |k: usize| (b'g' + (k % 20) as u8) as char;
    format!("{}{}{}", l(i / 400), l(i / 20), l(i))
}

const KEY: &str = "0123456789abcdef0123456789abcdef";

#[test]
fn issues_and_environments_per_project_overflow_and_are_counted_exactly() {
    let c = Collector::start_with_config(
        &format!(
            "[[projects]]\nid = 1\nname = \"web\"\npublic_key = \"{KEY}\"\n\
             [limits]\nmax_issues_per_project = 20\nmax_environments_per_project = 3\n"
        ),
        &[],
    );
    let client = reqwest::blocking::Client::new();
    const EVENTS: usize = 50;
    for i in 0..EVENTS {
        let ev = serde_json::json!({
            "event_id": format!("{:032x}", i + 1),
            // Digits and hex would be masked into one group: letters g..z only.
            "message": format!("distinct failure in module {}", word(i)),
            "level": "error",
            "platform": "python",
            "environment": format!("env{}", i % 5),
        });
        let r = client
            .post(format!("{}/api/1/store/", c.url()))
            .header(
                "X-Sentry-Auth",
                format!("Sentry sentry_key={KEY}, sentry_version=7"),
            )
            .header("Content-Type", "application/json")
            .body(ev.to_string())
            .send()
            .expect("store");
        assert_eq!(
            r.status(),
            200,
            "event {i}: {}",
            r.text().unwrap_or_default()
        );
    }
    let v: serde_json::Value =
        serde_json::from_str(&get(&c, "/api/calm/v1/issues?limit=100", None)).expect("issues");
    let issues = v["data"].as_array().expect("issues array");
    assert_eq!(issues.len(), 21, "20 issues and one overflow issue");
    let overflow: Vec<_> = issues
        .iter()
        .filter(|i| {
            i["title"]
                .as_str()
                .is_some_and(|t| t.contains("limits.max_issues_per_project"))
        })
        .collect();
    assert_eq!(overflow.len(), 1, "one overflow issue per project");
    assert_eq!(
        overflow[0]["count"], 30,
        "the overflow issue counts every event beyond the limit"
    );
    let total: u64 = issues.iter().filter_map(|i| i["count"].as_u64()).sum();
    assert_eq!(total, EVENTS as u64, "every event counted once");

    let text = get(&c, "/metrics", None);
    assert_eq!(
        metric(&text, "calm_sentry_events_issue_overflow_total"),
        Some(30.0)
    );
    // env0..env2 are kept; env3 and env4 (20 events) count as other_environments.
    assert_eq!(
        metric(&text, "calm_sentry_events_environment_overflow_total"),
        Some(20.0)
    );
    let s: serde_json::Value = serde_json::from_str(&get(
        &c,
        "/api/v1/series?match[]=calm_error_events_total",
        None,
    ))
    .expect("series");
    let mut envs: Vec<String> = s["data"]
        .as_array()
        .expect("series")
        .iter()
        .filter_map(|l| l["environment"].as_str().map(str::to_string))
        .collect();
    envs.sort();
    envs.dedup();
    assert_eq!(envs, ["env0", "env1", "env2", "other_environments"]);
    let n_series = s["data"].as_array().map_or(0, Vec::len);
    assert!(
        n_series <= 21 * 4,
        "error counter series bounded by issues × environments, got {n_series}"
    );
}

#[test]
fn series_api_stops_at_its_limit_with_a_warning() {
    let c = Collector::start_with_config("[limits]\nmax_series_per_query = 30\n", &[]);
    let t = now_ms();
    assert_eq!(write(&c, None, "many", 0, 100, t).status, 204);
    let v: serde_json::Value =
        serde_json::from_str(&get(&c, "/api/v1/series?match[]=many&limit=10", None)).expect("json");
    let data = v["data"].as_array().expect("data");
    assert_eq!(data.len(), 10);
    // The first ten in label order (i="0", "1", "10", "11", ...).
    assert_eq!(data[0]["i"], "0");
    assert_eq!(data[2]["i"], "10");
    assert_eq!(v["warnings"][0], "results truncated due to limit");
    let v: serde_json::Value =
        serde_json::from_str(&get(&c, "/api/v1/series?match[]=many", None)).expect("json");
    assert_eq!(v["data"].as_array().map_or(0, Vec::len), 30);
    assert!(
        v["warnings"][0]
            .as_str()
            .is_some_and(|w| w.contains("limits.max_series_per_query")),
        "{v}"
    );
    let v: serde_json::Value = serde_json::from_str(&get(
        &c,
        &format!(
            "/api/v1/series?match[]=many&{}&limit=200",
            calm_tests::api::form_urlencode(&[("match[]", "many{i=\"5\"}".to_string())])
        ),
        None,
    ))
    .expect("json");
    assert_eq!(
        v["data"].as_array().map_or(0, Vec::len),
        30,
        "capped by the server"
    );
}
