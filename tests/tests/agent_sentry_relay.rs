//! The Sentry relay on the agent, with the real Python `sentry-sdk` whose DSN points at
//! the agent:
//! - an exception reaches the collector under the DSN's project (not project 1), with
//!   the SDK's key checked by the collector;
//! - with the collector down the app is not slowed: the capture calls and the SDK's
//!   flush take the same time (printed), and the events arrive once it is back;
//! - a burst beyond the configured per-project rate gets 429 with `Retry-After` and
//!   `X-Sentry-Rate-Limits`, and the collector's own 429 is passed on to SDKs;
//! - heartbeats put the agent in the collector's fleet view (agent token required).

use calm_tests::sentry_sdk::run_sdk_script;
use calm_tests::{require_python_modules, wait_for, workspace_root, Agent, Collector};
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

const KEY1: &str = "0123456789abcdef0123456789abcdef";
const KEY2: &str = "fedcba9876543210fedcba9876543210";

fn projects() -> String {
    format!(
        "[[projects]]\nid = 1\nname = \"web\"\npublic_key = \"{KEY1}\"\n\
         [[projects]]\nid = 2\nname = \"jobs\"\npublic_key = \"{KEY2}\"\n"
    )
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

fn issues(c: &Collector, project: u64) -> Vec<Value> {
    let v: Value = client()
        .get(format!(
            "{}/api/calm/v1/issues?project={project}&limit=1000",
            c.url()
        ))
        .send()
        .and_then(|r| r.json())
        .expect("issues API");
    v["data"].as_array().cloned().unwrap_or_default()
}

/// The count of the issue whose title contains `tag`, in `project`.
fn issue_count(c: &Collector, project: u64, tag: &str) -> Option<u64> {
    issues(c, project)
        .iter()
        .find(|i| i["title"].as_str().unwrap_or("").contains(tag))
        .and_then(|i| i["count"].as_u64())
}

struct SdkRun {
    capture_ms: Vec<f64>,
    flush_ms: f64,
}

/// Runs tests/python/sentry_relay.py; None when sentry-sdk is not installed (skip).
fn run_sdk(dsn: &str, tag: &str, count: usize) -> Option<SdkRun> {
    let python = require_python_modules(&["sentry_sdk"])?;
    let mut cmd = Command::new(python);
    cmd.arg(workspace_root().join("tests/python/sentry_relay.py"))
        .arg(dsn)
        .arg(tag)
        .arg(count.to_string());
    let v = run_sdk_script(cmd, Duration::from_secs(120));
    Some(SdkRun {
        capture_ms: v["capture_ms"]
            .as_array()
            .expect("capture_ms")
            .iter()
            .filter_map(Value::as_f64)
            .collect(),
        flush_ms: v["flush_ms"].as_f64().expect("flush_ms"),
    })
}

fn describe(r: &SdkRun) -> String {
    let n = r.capture_ms.len() as f64;
    let mean = r.capture_ms.iter().sum::<f64>() / n;
    let max = r.capture_ms.iter().copied().fold(0.0, f64::max);
    format!(
        "capture_exception mean {mean:.2} ms, max {max:.2} ms over {n} calls; flush {:.1} ms",
        r.flush_ms
    )
}

fn agent_for(c_url: &str, extra_config: &str) -> Agent {
    Agent::builder()
        .collector(c_url)
        .config(&format!("[host]\ninterval = \"1h\"\n{extra_config}"))
        .start()
}

#[test]
fn sdk_exception_reaches_the_collector_under_its_project_and_outages_do_not_slow_the_app() {
    let mut c = Collector::start_with_config(&projects(), &[]);
    let agent = agent_for(&c.url(), "");
    let dsn = format!("http://{KEY2}@127.0.0.1:{}/2", agent.port());

    // Collector up.
    let Some(up) = run_sdk(&dsn, "calm-relay-up", 20) else {
        return;
    };
    let got = wait_for(Duration::from_secs(30), Duration::from_millis(200), || {
        issue_count(&c, 2, "calm-relay-up").filter(|&n| n == 20)
    });
    assert_eq!(
        got,
        Some(20),
        "20 exceptions sent through the agent must show as one issue of project 2 with count 20; \
         project 2 issues: {:#?}\nagent log:\n{}",
        issues(&c, 2),
        agent.log_tail(20)
    );
    assert!(
        issues(&c, 1).is_empty(),
        "nothing may land in project 1: {:#?}",
        issues(&c, 1)
    );

    // Collector down: the agent still answers at once from its spool.
    c.terminate(Duration::from_secs(30));
    let down = run_sdk(&dsn, "calm-relay-down", 20).expect("sentry-sdk ran before");
    println!("collector up:   {}", describe(&up));
    println!("collector down: {}", describe(&down));
    for r in [&up, &down] {
        let max = r.capture_ms.iter().copied().fold(0.0, f64::max);
        assert!(
            max < 1000.0,
            "a capture call blocked the app: {}",
            describe(r)
        );
        assert!(
            r.flush_ms < 5000.0,
            "the SDK's flush waited: {}",
            describe(r)
        );
    }
    assert!(
        agent.metric("calm_agent_spool_entries").unwrap_or(0.0) >= 1.0,
        "the events wait in the spool while the collector is down"
    );

    // Back up: what the agent acknowledged arrives.
    c.start_again();
    // Same stack, so the same issue: it now counts both runs (its title shows the
    // latest message).
    let got = wait_for(Duration::from_secs(60), Duration::from_millis(250), || {
        issue_count(&c, 2, "calm-relay-down").filter(|&n| n == 40)
    });
    assert_eq!(
        got,
        Some(40),
        "the 20 events sent during the outage must arrive; project 2 issues: {:#?}\nagent log:\n{}",
        issues(&c, 2),
        agent.log_tail(20)
    );
    let drained = wait_for(Duration::from_secs(30), Duration::from_millis(200), || {
        (agent.metric("calm_agent_spool_entries") == Some(0.0)).then_some(())
    });
    assert!(drained.is_some(), "the spool drains");
}

fn envelope(tag: &str) -> Vec<u8> {
    let ev = format!(
        r#"{{"message":"{tag}","level":"error","platform":"python","exception":{{"values":[{{"type":"RuntimeError","value":"{tag}"}}]}}}}"#
    );
    format!(
        "{{}}\n{{\"type\":\"event\",\"length\":{}}}\n{ev}\n",
        ev.len()
    )
    .into_bytes()
}

fn post_envelope(agent: &Agent, project: u64, key: &str, tag: &str) -> reqwest::blocking::Response {
    client()
        .post(format!("{}/api/{project}/envelope/", agent.url()))
        .header(
            "X-Sentry-Auth",
            format!("Sentry sentry_key={key}, sentry_version=7, sentry_client=calm-test/1"),
        )
        .header("Content-Type", "application/x-sentry-envelope")
        .body(envelope(tag))
        .send()
        .expect("post envelope")
}

#[test]
fn a_burst_beyond_the_rate_gets_429_with_retry_after_and_sentry_rate_limits() {
    let c = Collector::start_with_config(&projects(), &[]);
    let agent = agent_for(&c.url(), "[sentry]\nrate = 1\nburst = 5\n");
    let mut ok = 0u64;
    let mut limited = Vec::new();
    for i in 0..30 {
        let r = post_envelope(&agent, 1, KEY1, &format!("burst-{i}"));
        match r.status().as_u16() {
            200 => ok += 1,
            429 => limited.push(r),
            s => panic!("unexpected {s}: {:?}", r.text()),
        }
    }
    println!("burst of 30: {ok} accepted, {} answered 429", limited.len());
    // 5 of burst, plus at most a few refilled at 1/s while the loop ran.
    assert!(
        (5..=8).contains(&ok),
        "accepted {ok} of a burst of 30 with burst = 5"
    );
    let r = limited.pop().expect("some 429s");
    let h = |n: &str| {
        r.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("429 without {n}"))
            .to_string()
    };
    let retry: u64 = h("retry-after").parse().expect("Retry-After in seconds");
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    let rl = h("x-sentry-rate-limits");
    assert_eq!(rl, format!("{retry}::project"), "X-Sentry-Rate-Limits");
    let body: Value = r.json().expect("JSON body");
    assert!(
        body["detail"].as_str().unwrap_or("").contains("rate"),
        "the body says why: {body}"
    );
    // Another project has its own bucket.
    assert_eq!(
        post_envelope(&agent, 2, KEY2, "other").status().as_u16(),
        200
    );
    assert!(
        agent
            .metric("calm_agent_sentry_rate_limited_total")
            .unwrap_or(0.0)
            >= 20.0
    );
    // What was accepted arrives.
    let events = || -> u64 {
        issues(&c, 1)
            .iter()
            .filter(|i| i["title"].as_str().unwrap_or("").contains("burst-"))
            .filter_map(|i| i["count"].as_u64())
            .sum()
    };
    let got = wait_for(Duration::from_secs(30), Duration::from_millis(200), || {
        (events() == ok).then_some(ok)
    });
    assert_eq!(
        got,
        Some(ok),
        "every accepted event arrives (events counted in issues: {}): {:#?}",
        events(),
        issues(&c, 1)
    );
}

#[test]
fn the_collectors_rate_limit_is_passed_on_to_sdks() {
    // The collector allows project 1 one event per second; the agent's own rate is high.
    let c = Collector::start_with_config(
        &projects().replace("name = \"web\"\n", "name = \"web\"\nrate_limit = 1\n"),
        &[],
    );
    let agent = agent_for(&c.url(), "[sentry]\nrate = 1000\nburst = 1000\n");
    let mut first_429 = None;
    let started = Instant::now();
    for i in 0..200 {
        let r = post_envelope(&agent, 1, KEY1, &format!("storm-{i}"));
        if r.status().as_u16() == 429 {
            first_429 = Some((i, r));
            break;
        }
        assert_eq!(r.status().as_u16(), 200, "{:?}", r.text());
        std::thread::sleep(Duration::from_millis(20));
    }
    let Some((i, r)) = first_429 else {
        panic!(
            "200 events at 50/s against a collector limit of 1/s: the agent never answered 429; log:\n{}",
            agent.log_tail(20)
        );
    };
    println!(
        "the agent answered 429 after {i} accepted events ({:?}): the collector's limit reached the SDK side",
        started.elapsed()
    );
    assert!(r.headers().get("retry-after").is_some());
    assert!(r.headers().get("x-sentry-rate-limits").is_some());
    // Project 2 is not limited by project 1's limit.
    assert_eq!(
        post_envelope(&agent, 2, KEY2, "calm").status().as_u16(),
        200
    );
}

#[test]
fn heartbeats_show_the_agent_in_the_fleet_view() {
    // With auth on, the fleet view needs a read token like every read.
    let c = Collector::start_with_config(
        "[auth]\nagent_tokens = [\"agent-secret\"]\nread_tokens = [\"read-secret\"]\n",
        &[],
    );
    let agent = Agent::builder()
        .collector(&c.url())
        .config("[host]\ninterval = \"1s\"\n[heartbeat]\ninterval = \"1s\"\n")
        .args(&["--token", "agent-secret"])
        .start();
    let seen = wait_for(Duration::from_secs(20), Duration::from_millis(200), || {
        let v: Value = client()
            .get(format!("{}/api/calm/v1/agents", c.url()))
            .bearer_auth("read-secret")
            .send()
            .ok()?
            .json()
            .ok()?;
        let a = v["agents"].as_array()?.first()?.clone();
        (a["shipped"].as_u64()? > 0).then_some(a)
    })
    .unwrap_or_else(|| {
        panic!(
            "no heartbeat in /api/calm/v1/agents; agent log:\n{}",
            agent.log_tail(20)
        )
    });
    println!("fleet view: {seen}");
    assert!(seen["id"]
        .as_str()
        .unwrap()
        .contains(&agent.port().to_string()));
    assert_eq!(seen["version"], env!("CARGO_PKG_VERSION"));
    for k in [
        "spool_bytes",
        "spool_entries",
        "uptime_seconds",
        "seconds_since_seen",
    ] {
        assert!(seen[k].is_number(), "{k} in {seen}");
    }
    assert!(seen["last_seen"].is_string());
    // Without the token a heartbeat is refused like a write.
    let r = client()
        .post(format!("{}/api/calm/v1/agents/heartbeat", c.url()))
        .body(r#"{"id":"intruder"}"#)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}
