//! The relay checks DSN keys itself, with the keys it fetches from the collector
//! (`GET /api/calm/v1/agent/projects`, agent token), as Sentry's Relay does:
//! - the real `sentry-sdk` with a wrong key gets 401 from the agent, with another
//!   project's key 403 (what its transport saw, printed), and nothing is spooled;
//! - a right key still works with the collector down, and after the agent restarts
//!   during that outage (keys from `<data_dir>/projects.json`, mode 0600);
//! - a key revoked at the collector (project 2's key changed in its TOML, collector
//!   restarted) is refused by the agent within its refresh interval (1 s here; the
//!   time it took is printed), and the new key is accepted;
//! - the endpoint wants the agent token.

use calm_tests::sentry_sdk::run_sdk_script;
use calm_tests::{require_python_modules, wait_for, workspace_root, Agent, Collector};
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

const KEY1: &str = "0123456789abcdef0123456789abcdef";
const KEY2: &str = "fedcba9876543210fedcba9876543210";
const KEY2_NEW: &str = "22222222222222222222222222222222";
const WRONG: &str = "99999999999999999999999999999999";
const TOKEN: &str = "agent-secret-token";

fn collector_toml(key2: &str) -> String {
    format!(
        "[auth]\nagent_tokens = [\"{TOKEN}\"]\n\
         [[projects]]\nid = 1\nname = \"web\"\npublic_key = \"{KEY1}\"\n\
         [[projects]]\nid = 2\nname = \"jobs\"\npublic_key = \"{key2}\"\n"
    )
}

/// The statuses the SDK's transport got for `count` exceptions sent to `dsn`; None
/// when sentry-sdk is not installed.
fn sdk_statuses(dsn: &str, tag: &str, count: usize) -> Option<Vec<u64>> {
    let python = require_python_modules(&["sentry_sdk"])?;
    let mut cmd = Command::new(python);
    cmd.arg(workspace_root().join("tests/python/sentry_keys.py"))
        .arg(dsn)
        .arg(tag)
        .arg(count.to_string());
    let v = run_sdk_script(cmd, Duration::from_secs(120));
    Some(
        v["statuses"]
            .as_array()
            .expect("statuses")
            .iter()
            .filter_map(Value::as_u64)
            .collect(),
    )
}

/// One envelope posted with `key` for `project`: the agent's status and body.
fn post(agent: &Agent, project: u64, key: &str) -> (u16, String) {
    let body = format!(
        "{{\"event_id\":\"{:032x}\"}}\n{{\"type\":\"event\"}}\n{{\"message\":\"probe\",\"level\":\"info\"}}\n",
        rand_id()
    );
    let r = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
        .post(format!("{}/api/{project}/envelope/", agent.url()))
        .header(
            "X-Sentry-Auth",
            format!("Sentry sentry_key={key}, sentry_version=7"),
        )
        .body(body)
        .send()
        .expect("POST envelope");
    (r.status().as_u16(), r.text().unwrap_or_default())
}

fn rand_id() -> u128 {
    use std::time::SystemTime;
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(1)
}

#[test]
fn relay_refuses_wrong_and_revoked_keys_and_keeps_right_ones_through_an_outage() {
    if require_python_modules(&["sentry_sdk"]).is_none() {
        return;
    }
    let mut c = Collector::start_with_config(&collector_toml(KEY2), &[]);
    // The endpoint is guarded by the agent token.
    let anon = reqwest::blocking::get(format!("{}/api/calm/v1/agent/projects", c.url()))
        .expect("GET projects");
    assert_eq!(anon.status().as_u16(), 401, "no token must be refused");

    let mut agent = Agent::builder()
        .collector(&c.url())
        .args(&["--token", TOKEN])
        .config("[host]\ninterval = \"1h\"\n[sentry]\nkeys_refresh = \"1s\"\n")
        .start();
    let known = wait_for(Duration::from_secs(20), Duration::from_millis(100), || {
        agent
            .metric("calm_agent_sentry_projects_known")
            .filter(|n| *n == 2.0)
    });
    assert_eq!(known, Some(2.0), "agent log:\n{}", agent.log_tail(20));

    // Wrong key, and a key of another project: the SDK sees 401 / 403.
    let wrong = sdk_statuses(
        &format!("http://{WRONG}@127.0.0.1:{}/1", agent.port()),
        "calm-keys-wrong",
        3,
    )
    .expect("sdk");
    let other = sdk_statuses(
        &format!("http://{KEY1}@127.0.0.1:{}/2", agent.port()),
        "calm-keys-other",
        3,
    )
    .expect("sdk");
    println!("sentry-sdk transport statuses: wrong key {wrong:?}, another project's key {other:?}");
    assert!(
        !wrong.is_empty() && wrong.iter().all(|s| *s == 401),
        "wrong key: {wrong:?}"
    );
    assert!(
        !other.is_empty() && other.iter().all(|s| *s == 403),
        "other project's key: {other:?}"
    );
    let (code, body) = post(&agent, 1, WRONG);
    assert_eq!(code, 401);
    assert!(body.contains("invalid DSN key"), "{body}");
    assert_eq!(
        agent.metric("calm_agent_spool_entries"),
        Some(0.0),
        "refused events are not spooled"
    );

    // The cache on disk, readable by the agent's user only.
    let cache = agent.data_dir().join("projects.json");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&cache)
            .expect("projects.json")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "projects.json mode");

    // Collector down: the right key still works; and after an agent restart too.
    c.terminate(Duration::from_secs(30));
    let ok = sdk_statuses(
        &format!("http://{KEY2}@127.0.0.1:{}/2", agent.port()),
        "calm-keys-down",
        3,
    )
    .expect("sdk");
    assert!(
        !ok.is_empty() && ok.iter().all(|s| *s == 200),
        "right key, collector down: {ok:?}"
    );
    agent.terminate(Duration::from_secs(30));
    agent.start_again();
    assert_eq!(
        post(&agent, 2, KEY2).0,
        200,
        "right key after an agent restart in the outage"
    );
    assert_eq!(
        post(&agent, 1, WRONG).0,
        401,
        "keys from projects.json after the restart"
    );

    // Revoke project 2's key at the collector (config change + restart).
    std::fs::write(c.root().join("collector.toml"), collector_toml(KEY2_NEW)).expect("config");
    c.start_again();
    let back = Instant::now();
    let refused = wait_for(Duration::from_secs(30), Duration::from_millis(100), || {
        (post(&agent, 2, KEY2).0 == 401).then_some(())
    });
    let took = back.elapsed();
    println!("revoked key refused {took:?} after the collector came back (refresh interval 1 s)");
    assert!(
        refused.is_some(),
        "the revoked key is still accepted; agent log:\n{}",
        agent.log_tail(20)
    );
    assert!(took < Duration::from_secs(15), "took {took:?}");
    let revoked = sdk_statuses(
        &format!("http://{KEY2}@127.0.0.1:{}/2", agent.port()),
        "calm-keys-revoked",
        2,
    )
    .expect("sdk");
    assert!(
        revoked.iter().all(|s| *s == 401) && !revoked.is_empty(),
        "{revoked:?}"
    );
    assert_eq!(post(&agent, 2, KEY2_NEW).0, 200, "the new key works");
    // What was accepted reaches the collector (3 SDK events from the outage, probes).
    let arrived = wait_for(Duration::from_secs(30), Duration::from_millis(200), || {
        (agent.metric("calm_agent_spool_entries") == Some(0.0)).then_some(())
    });
    assert!(
        arrived.is_some(),
        "the spool did not drain; agent log:\n{}",
        agent.log_tail(20)
    );
}
