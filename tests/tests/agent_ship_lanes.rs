//! The agent's shipper under a collector that rate limits one project's errors: the
//! events of that project wait in the spool for the collector's `Retry-After`, while
//! metrics and another project's events queued behind them go on at once; and the
//! waiting events all arrive in the end (nothing acknowledged is lost, nothing dropped).
//!
//! Set-up: the collector lets project 1 send one event per 10 s. With the collector
//! down, the agent's relay takes three project-1 events into its spool; the collector
//! comes back, and then a gauge (OTLP) and a project-2 event are queued behind them.
//! Shipping the three takes 20 s or more at the collector's rate: the gauge and the
//! project-2 event must arrive while project 1 still waits.

use calm_tests::write::post;
use calm_tests::{now_ms, wait_for, Agent, Collector};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const KEY1: &str = "0123456789abcdef0123456789abcdef";
const KEY2: &str = "fedcba9876543210fedcba9876543210";
const HELD_EVENTS: u64 = 3;

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// Posts one event with `message` to the agent's relay (legacy store endpoint).
fn post_event(agent: &Agent, project: u64, key: &str, message: &str) {
    let r = client()
        .post(format!("{}/api/{project}/store/", agent.url()))
        .header(
            "X-Sentry-Auth",
            format!("Sentry sentry_key={key}, sentry_version=7, sentry_client=calm-test/1"),
        )
        .header("Content-Type", "application/json")
        .body(json!({ "message": message, "level": "error" }).to_string())
        .send()
        .expect("post event");
    assert_eq!(r.status().as_u16(), 200, "the relay takes the event");
}

/// The stored count of the issue titled `message` in `project` (0 if none yet).
fn issue_count(c: &Collector, project: u64, message: &str) -> u64 {
    let v: Value = client()
        .get(format!(
            "{}/api/calm/v1/issues?project={project}&limit=100",
            c.url()
        ))
        .send()
        .and_then(|r| r.json())
        .expect("issues API");
    v["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["title"] == message)
        .filter_map(|i| i["count"].as_u64())
        .sum()
}

/// Pushes one OTLP/JSON gauge `calm_lanes_probe` through the agent's OTLP receiver.
fn push_gauge(agent: &Agent) {
    let now_ns = (now_ms() as u128 * 1_000_000).to_string();
    let body = json!({"resourceMetrics": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "lanes"}}]},
        "scopeMetrics": [{"metrics": [{"name": "calm_lanes_probe", "gauge": {"dataPoints": [
            {"timeUnixNano": now_ns, "asDouble": 7.0}
        ]}}]}]
    }]});
    let ans = post(
        &format!("{}/v1/metrics", agent.otlp_url()),
        "application/json",
        body.to_string().into_bytes(),
    )
    .expect("OTLP post");
    assert_eq!(ans.status, 200, "{}", ans.body);
}

#[test]
fn metrics_and_other_projects_keep_flowing_while_a_rate_limited_project_waits() {
    let mut c = Collector::start_with_config(
        &format!(
            "[[projects]]\nid = 1\nname = \"slow\"\npublic_key = \"{KEY1}\"\nrate_limit = 0.1\n\
             [[projects]]\nid = 2\nname = \"other\"\npublic_key = \"{KEY2}\"\n"
        ),
        &[],
    );
    let agent = Agent::builder()
        .collector(&c.url())
        .config("[host]\ninterval = \"1h\"\n[sentry]\nrate = 1000\nburst = 1000\n")
        .start();

    c.kill9();
    for _ in 0..HELD_EVENTS {
        post_event(&agent, 1, KEY1, "held back by the collector");
    }
    c.start_again();
    let back = Instant::now();
    push_gauge(&agent);
    post_event(&agent, 2, KEY2, "from another project");

    let probe = wait_for(Duration::from_secs(8), Duration::from_millis(100), || {
        let v = c.api().query_vector("calm_lanes_probe", None).ok()?;
        let other = issue_count(&c, 2, "from another project");
        (!v.is_empty() && other == 1).then_some(v)
    })
    .unwrap_or_else(|| {
        panic!(
            "the gauge and project 2's event did not arrive within 8 s of the collector's \
             return (held behind project 1's rate-limited events?); agent log:\n{}",
            agent.log_tail(30)
        )
    });
    assert_eq!(probe[0].value, 7.0);
    let held_done = issue_count(&c, 1, "held back by the collector");
    println!(
        "after {:?}: gauge and project 2 arrived; project 1 has {held_done} of {HELD_EVENTS}",
        back.elapsed()
    );
    assert!(
        held_done < HELD_EVENTS,
        "project 1's events must still be waiting for the collector's rate (else this test \
         shows nothing): {held_done} of {HELD_EVENTS} already stored"
    );
    assert!(
        agent.metric("calm_agent_ship_retries_total").unwrap_or(0.0) >= 1.0,
        "the collector answered 429 at least once"
    );

    // Nothing is lost: the waiting events arrive at the collector's pace.
    let all = wait_for(Duration::from_secs(60), Duration::from_millis(500), || {
        (issue_count(&c, 1, "held back by the collector") == HELD_EVENTS).then_some(())
    });
    assert!(
        all.is_some(),
        "project 1 has {} of {HELD_EVENTS} events after 60 s; agent log:\n{}",
        issue_count(&c, 1, "held back by the collector"),
        agent.log_tail(30)
    );
    println!(
        "all of project 1's events arrived after {:?}",
        back.elapsed()
    );
    assert_eq!(agent.metric("calm_agent_ship_rejected_total"), Some(0.0));
    assert_eq!(agent.metric("calm_agent_spool_dropped_total"), Some(0.0));
}
