//! Hostile PromQL cannot kill the collector (issue 12, classes 1 and 7).
//!
//! - Eleven nesting shapes (parentheses, unary chains with and without spaces, `or`,
//!   `+` and `^ -` chains, `abs(abs(…))`, nested `sum by`, nested subqueries, label
//!   braces, a mix) at depths 10², 10³, 10⁴ and 10⁵, on every route that parses
//!   PromQL (query and query_range GET and POST, series and labels `match[]` GET and
//!   POST, label values `match[]`, format_query and query_exemplars GET and POST): each
//!   answer is a 4xx or a valid success, a 400 is `bad_data`, and anything deeper than
//!   the depth limit that reaches the collector is refused naming `max_depth` or
//!   `max_length`. After every shape and depth `/healthz` answers and the process
//!   runs; at the end its peak RSS (VmHWM) is under [`RSS_CEILING_MB`].
//! - Rule files: `check rules` names file:line and the limit for too-deep and too-long
//!   `expr`s; a reload with one is refused and the old rules keep running; a `query`
//!   in an alert template that is too deep fails that template, not the process.
//! - Concurrency: with `--query-max-concurrency 2 --query-max-queued 2`, a burst of
//!   slow queries (each seconds of regex compilation) gets some 503 `unavailable`
//!   with Retry-After, the rest answer normally, and `/healthz` answers within seconds
//!   while they run.

use calm_tests::collector::collector_bin;
use calm_tests::process::run_bounded;
use calm_tests::write::{request, series, RemoteWriter};
use calm_tests::{now_ms, Collector};
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

/// Peak resident memory allowed for the collector after the whole hostile matrix
/// (debug build). Measured: ~100 MB.
const RSS_CEILING_MB: u64 = 512;

/// The collector's default depth limit (`promql/limits.rs`).
const MAX_DEPTH: usize = 256;

/// A hostile query of `shape` nested `n` deep around the metric `hp`.
fn shape(name: &str, n: usize) -> String {
    let m = "hp";
    match name {
        "parens" => format!("{}{m}{}", "(".repeat(n), ")".repeat(n)),
        "unary" => format!("{}{m}", "-".repeat(n)),
        "unary_spaced" => format!("{}{m}", "- ".repeat(n)),
        "or" => format!("{m}{}", format!(" or {m}").repeat(n)),
        "plus" => format!("{m}{}", format!("+{m}").repeat(n)),
        "pow_neg" => format!("{m}{}", format!(" ^ -{m}").repeat(n)),
        "abs" => format!("{}{m}{}", "abs(".repeat(n), ")".repeat(n)),
        "sum_by" => format!("{}{m}{}", "sum by (job) (".repeat(n), ")".repeat(n)),
        "subquery" => format!("{}{m}{}", "max_over_time(".repeat(n), "[2m:1m])".repeat(n)),
        "braces" => format!("{m}{}", "{".repeat(n)),
        "mixed" => format!("{}{m}{}", "-(abs(1 + ".repeat(n), "))".repeat(n)),
        other => panic!("no shape {other}"),
    }
}

const SHAPES: [&str; 11] = [
    "parens",
    "unary",
    "unary_spaced",
    "or",
    "plus",
    "pow_neg",
    "abs",
    "sum_by",
    "subquery",
    "braces",
    "mixed",
];

/// One route that parses PromQL: method, path, and the parameters around the query.
struct Route {
    post: bool,
    path: &'static str,
    param: &'static str,
    range: bool,
}

fn routes() -> Vec<Route> {
    let r = |post, path, param, range| Route {
        post,
        path,
        param,
        range,
    };
    vec![
        r(false, "/api/v1/query", "query", false),
        r(true, "/api/v1/query", "query", false),
        r(false, "/api/v1/query_range", "query", true),
        r(true, "/api/v1/query_range", "query", true),
        r(false, "/api/v1/series", "match[]", false),
        r(true, "/api/v1/series", "match[]", false),
        r(false, "/api/v1/labels", "match[]", false),
        r(true, "/api/v1/labels", "match[]", false),
        r(false, "/api/v1/label/job/values", "match[]", false),
        r(false, "/api/v1/format_query", "query", false),
        r(true, "/api/v1/format_query", "query", false),
        r(false, "/api/v1/query_exemplars", "query", false),
        r(true, "/api/v1/query_exemplars", "query", false),
    ]
}

/// Status, headers' Retry-After and body of one call (any status, any body).
struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: String,
}

impl Answer {
    fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }
}

fn client(timeout: Duration) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

fn call(
    cl: &reqwest::blocking::Client,
    base: &str,
    post: bool,
    path: &str,
    params: &[(&str, String)],
) -> Result<Answer, String> {
    if !post {
        return raw_get(base, path, params);
    }
    let url = format!("{base}{path}");
    let req = if post {
        cl.post(&url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(calm_tests::api::form_urlencode(params))
    } else {
        cl.get(&url).query(params)
    };
    let resp = req.send().map_err(|e| format!("{path}: {e}"))?;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let body = resp.text().map_err(|e| format!("{path}: body: {e}"))?;
    Ok(Answer {
        status,
        retry_after,
        body,
    })
}

/// A GET over a plain socket: reqwest refuses URLs over 64 KB, and the collector must
/// see those too.
fn raw_get(base: &str, path: &str, params: &[(&str, String)]) -> Result<Answer, String> {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut target = path.to_string();
    if !params.is_empty() {
        target.push('?');
        target.push_str(&calm_tests::api::form_urlencode(params));
    }
    let mut sock = std::net::TcpStream::connect(addr).map_err(|e| format!("{path}: {e}"))?;
    sock.set_read_timeout(Some(Duration::from_secs(120)))
        .map_err(|e| e.to_string())?;
    sock.set_write_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let head = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    // The server may answer (414/431) and close before it has read the whole line.
    let _ = sock.write_all(head.as_bytes());
    let mut raw = Vec::new();
    if let Err(e) = sock.read_to_end(&mut raw) {
        if raw.is_empty() {
            return Err(format!("{path}: {e}"));
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (headers, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{path}: no HTTP answer: {text:.300}"))?;
    let status: u16 = headers
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{path}: bad status line: {headers:.200}"))?;
    let header = |name: &str| {
        headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    };
    let body = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 || tail.len() < n {
                break;
            }
            out.push_str(&tail[..n]);
            rest = tail[n..].trim_start_matches("\r\n");
        }
        out
    } else {
        body.to_string()
    };
    Ok(Answer {
        status,
        retry_after: header("retry-after"),
        body,
    })
}

fn alive(c: &mut Collector, cl: &reqwest::blocking::Client, what: &str) {
    assert!(
        c.is_running(),
        "collector died after {what}; log:\n{}",
        c.log_tail(40)
    );
    let a = call(cl, &c.url(), false, "/healthz", &[])
        .unwrap_or_else(|e| panic!("/healthz after {what}: {e}; log:\n{}", c.log_tail(40)));
    assert_eq!(a.status, 200, "/healthz after {what}: {}", a.body);
}

/// VmHWM (peak resident set) of `pid`, in MB.
fn peak_rss_mb(pid: u32) -> u64 {
    calm_tests::agent::proc_status_kib(pid, "VmHWM:").expect("VmHWM") / 1024
}

#[test]
fn hostile_nesting_on_every_route_gets_4xx_or_an_answer() {
    let mut c = Collector::start();
    let t = now_ms();
    let batch: Vec<_> = ["a", "b"]
        .iter()
        .map(|j| {
            series(
                "hp",
                &[("job", j)],
                &[(t - 120_000, 1.0), (t - 60_000, 2.0), (t, 3.0)],
            )
        })
        .collect();
    let ans = RemoteWriter::new(&c.write_url())
        .send(&request(batch))
        .expect("write");
    assert!(ans.ok(), "{ans:?}");
    let cl = client(Duration::from_secs(120));
    let base = c.url();
    let ts = format!("{}", t as f64 / 1000.0);
    let start = format!("{}", (t - 300_000) as f64 / 1000.0);
    let mut answered = 0;
    let mut refused_naming_limit = 0;
    let mut seen_statuses = std::collections::BTreeMap::<u16, usize>::new();
    for n in [100usize, 1_000, 10_000, 100_000] {
        for s in SHAPES {
            let q = shape(s, n);
            for r in routes() {
                let mut params: Vec<(&str, String)> = vec![(r.param, q.clone())];
                if r.range {
                    params.push(("start", start.clone()));
                    params.push(("end", ts.clone()));
                    params.push(("step", "60".into()));
                } else if r.param == "query" {
                    params.push(("time", ts.clone()));
                }
                let what = format!(
                    "{} {} {s} ×{n} ({} bytes)",
                    if r.post { "POST" } else { "GET" },
                    r.path,
                    q.len()
                );
                let a = call(&cl, &base, r.post, r.path, &params)
                    .unwrap_or_else(|e| panic!("{what}: no answer: {e}; log:\n{}", c.log_tail(40)));
                *seen_statuses.entry(a.status).or_default() += 1;
                assert!(
                    (200..300).contains(&a.status) || (400..500).contains(&a.status),
                    "{what}: HTTP {}: {:.300}",
                    a.status,
                    a.body
                );
                let j = a.json();
                if (200..300).contains(&a.status) {
                    let j =
                        j.unwrap_or_else(|| panic!("{what}: 2xx but not JSON: {:.300}", a.body));
                    assert_eq!(j["status"], "success", "{what}: {:.300}", a.body);
                    answered += 1;
                    continue;
                }
                // A 4xx: from the API (JSON, bad_data) or from the HTTP layer for a
                // request line or body too large to read (414, 431, 413).
                if let Some(j) = j {
                    if a.status == 400 {
                        assert_eq!(j["errorType"], "bad_data", "{what}: {:.300}", a.body);
                    }
                    let msg = j["error"].as_str().unwrap_or("");
                    assert!(!msg.is_empty(), "{what}: {:.300}", a.body);
                    // Deeper than the limit: refused by the limit, not by luck.
                    if n > MAX_DEPTH && s != "braces" {
                        assert!(
                            msg.contains("max_depth") || msg.contains("max_length"),
                            "{what}: not refused by the limits: {msg:.300}"
                        );
                        refused_naming_limit += 1;
                    }
                } else {
                    assert!(
                        [413, 414, 431].contains(&a.status),
                        "{what}: HTTP {} without a JSON body: {:.300}",
                        a.status,
                        a.body
                    );
                }
            }
            alive(&mut c, &cl, &format!("{s} ×{n}"));
        }
    }
    // Depth 100 of most shapes is an ordinary query: answered, and correctly.
    assert!(
        answered >= 40,
        "only {answered} valid answers: {seen_statuses:?}"
    );
    assert!(
        refused_naming_limit >= 100,
        "{refused_naming_limit}: {seen_statuses:?}"
    );
    let a = call(
        &cl,
        &base,
        false,
        "/api/v1/query",
        &[("query", shape("or", 100)), ("time", ts.clone())],
    )
    .expect("or query");
    let j = a.json().expect("json");
    assert_eq!(j["data"]["result"].as_array().map(Vec::len), Some(2), "{j}");
    let a = call(
        &cl,
        &base,
        true,
        "/api/v1/query",
        &[("query", shape("unary", 101)), ("time", ts.clone())],
    )
    .expect("unary query");
    let j = a.json().expect("json");
    assert_eq!(j["data"]["result"][0]["value"][1], "-3", "{j}");
    let pid = c.pid().expect("pid");
    let rss = peak_rss_mb(pid);
    eprintln!(
        "hostile matrix: {answered} valid answers, {refused_naming_limit} refused naming the limit, statuses {seen_statuses:?}, peak RSS {rss} MB"
    );
    assert!(
        rss < RSS_CEILING_MB,
        "peak RSS {rss} MB over {RSS_CEILING_MB} MB"
    );
}

/// A rule file with one alert rule per `(name, expr)`, each `expr` on line 5 + 3·i.
fn rules_yaml(rules: &[(&str, String)]) -> String {
    let mut y = String::from("groups:\n  - name: g\n    interval: 1s\n    rules:\n");
    for (name, expr) in rules {
        y.push_str(&format!(
            "      - alert: {name}\n        expr: '{expr}'\n        for: 0s\n"
        ));
    }
    y
}

#[test]
fn too_deep_rule_files_and_templates_are_errors_not_crashes() {
    let dir = tempfile::tempdir().expect("tmp");
    // `check rules`: file:line and the limit, for deep and for long expressions.
    let path = dir.path().join("deep.yml");
    std::fs::write(
        &path,
        rules_yaml(&[
            ("Parens", shape("parens", 1_000)),
            ("Or", shape("or", 10_000)),
            ("Unary", shape("unary_spaced", 100_000)),
            ("Fine", "vector(1)".into()),
        ]),
    )
    .expect("write");
    let mut cmd = Command::new(collector_bin());
    cmd.args(["check", "rules"]).arg(&path);
    let out = run_bounded(cmd, Duration::from_secs(60));
    assert_eq!(
        out.status.code(),
        Some(1),
        "check rules: {} {}",
        out.stdout,
        out.stderr
    );
    // Line 9 (10⁴ `or`s, 60 KB) is under the length limit: refused for its depth.
    for (line, limit) in [(6, "max_depth"), (9, "max_depth"), (12, "max_length")] {
        let want = format!("{}:{line}: ", path.display());
        let hit = out
            .stderr
            .lines()
            .find(|l| l.starts_with(&want))
            .unwrap_or_else(|| panic!("no {want:?} in:\n{:.2000}", out.stderr));
        assert!(hit.contains(limit), "{limit}: {hit:.500}");
    }
    assert!(out.stdout.contains("Checking"), "{}", out.stdout);

    // Load and reload: a good file runs; a too-deep one is refused, the old rules stay.
    let live = dir.path().join("live.yml");
    let template_query = shape("parens", 10_000);
    let good = format!(
        "groups:\n  - name: g\n    interval: 1s\n    rules:\n      - alert: Always\n        expr: vector(1)\n        annotations:\n          deep: '{{{{ with query \"{template_query}\" }}}}{{{{ . }}}}{{{{ end }}}}'\n"
    );
    std::fs::write(&live, &good).expect("write");
    let mut c = Collector::start_with_config(
        &format!(
            "rule_files = [\"{}\"]\nevaluation_interval = \"1s\"\n",
            live.display()
        ),
        &[],
    );
    let cl = client(Duration::from_secs(60));
    // The alert fires (its template's too-deep query fails inside the template) and
    // the collector lives on through several evaluations.
    let fired = calm_tests::wait_for(Duration::from_secs(20), Duration::from_millis(200), || {
        let a = call(&cl, &c.url(), false, "/api/v1/alerts", &[]).ok()?;
        let j = a.json()?;
        j["data"]["alerts"]
            .as_array()?
            .iter()
            .any(|a| a["labels"]["alertname"] == "Always")
            .then_some(())
    });
    assert!(
        fired.is_some(),
        "Always never fired; log:\n{}",
        c.log_tail(30)
    );
    std::thread::sleep(Duration::from_secs(2));
    alive(&mut c, &cl, "a template with a too-deep query");

    std::fs::write(
        &live,
        rules_yaml(&[("Deep", shape("abs", 5_000)), ("Fine", "vector(1)".into())]),
    )
    .expect("write");
    let a = call(&cl, &c.url(), true, "/-/reload", &[]).expect("reload");
    assert!(
        !(200..300).contains(&a.status),
        "reload accepted: {}",
        a.body
    );
    assert!(
        a.body.contains(&format!("{}:6", live.display())) && a.body.contains("max_depth"),
        "{:.1000}",
        a.body
    );
    alive(&mut c, &cl, "reloading a too-deep rule file");
    let a = call(&cl, &c.url(), false, "/api/v1/rules", &[]).expect("rules");
    assert!(
        a.body.contains("\"Always\""),
        "old rules gone: {:.500}",
        a.body
    );
}

#[test]
fn a_burst_of_slow_queries_gets_503_with_retry_after_and_healthz_stays_fast() {
    let mut c = Collector::start_with(&["--query-max-concurrency", "2", "--query-max-queued", "2"]);
    // ~500 bytes, ten regexes of ~1 MB compiled each: seconds of CPU on a debug build.
    let heavy = format!(
        "hp{{{}}}",
        (0..10)
            .map(|i| format!("l{i}=~\"{}\"", ".{0,1000}".repeat(5)))
            .collect::<Vec<_>>()
            .join(",")
    );
    assert!(heavy.len() < 1024);
    let base = c.url();
    let burst = 10;
    let started = Instant::now();
    let handles: Vec<_> = (0..burst)
        .map(|_| {
            let base = base.clone();
            let q = heavy.clone();
            std::thread::spawn(move || {
                let cl = client(Duration::from_secs(300));
                let a = call(&cl, &base, true, "/api/v1/query", &[("query", q)]);
                (a, Instant::now())
            })
        })
        .collect();
    // /healthz meanwhile: answered, and quickly, while the queries still run.
    let cl = client(Duration::from_secs(30));
    let mut checks = Vec::new();
    while !handles.iter().all(|h| h.is_finished()) && checks.len() < 50 {
        let t0 = Instant::now();
        let a = call(&cl, &base, false, "/healthz", &[]).expect("healthz during the burst");
        assert_eq!(a.status, 200);
        checks.push((t0.elapsed(), handles.iter().all(|h| h.is_finished())));
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut ok = 0;
    let mut busy = 0;
    let mut last_done = started;
    for h in handles {
        let (a, done) = h.join().expect("thread");
        let a = a.expect("an answer");
        last_done = last_done.max(done);
        match a.status {
            200 => ok += 1,
            503 => {
                let j = a.json().expect("503 is JSON");
                assert_eq!(j["errorType"], "unavailable", "{}", a.body);
                assert!(
                    j["error"]
                        .as_str()
                        .unwrap_or("")
                        .contains("max_concurrency"),
                    "{}",
                    a.body
                );
                let secs: u64 = a
                    .retry_after
                    .as_deref()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("503 without Retry-After: {}", a.body));
                assert!(secs >= 1);
                busy += 1;
            }
            s => panic!("HTTP {s}: {:.300}", a.body),
        }
    }
    eprintln!(
        "burst of {burst}: {ok} answered, {busy} refused; queries took {:?}; healthz: {:?}",
        last_done - started,
        checks.iter().map(|(d, _)| *d).collect::<Vec<_>>()
    );
    assert!(busy >= 1, "none refused ({ok} answered)");
    assert!(ok >= 2, "only {ok} answered");
    let during: Vec<Duration> = checks
        .iter()
        .filter(|(_, all_done)| !all_done)
        .map(|(d, _)| *d)
        .collect();
    assert!(!during.is_empty(), "no /healthz while queries ran");
    for d in &during {
        assert!(
            *d < Duration::from_secs(5),
            "/healthz took {d:?} during the burst"
        );
    }
    alive(&mut c, &cl, "the burst");
    let m = call(&cl, &base, false, "/metrics", &[]).expect("/metrics");
    let refused_metric: f64 = m
        .body
        .lines()
        .find_map(|l| l.strip_prefix("calm_query_refused_busy_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no calm_query_refused_busy_total in /metrics"));
    assert_eq!(refused_metric, busy as f64, "refusals counted");
    // Once the burst is over, a query is accepted again.
    let a = call(
        &cl,
        &base,
        false,
        "/api/v1/query",
        &[("query", "vector(1)".into())],
    )
    .expect("query");
    assert_eq!(a.status, 200, "{}", a.body);
}
