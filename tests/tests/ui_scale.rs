//! The built-in UI on large data, in headless Chromium (`tests/ui/scale.mjs`): a fleet of
//! 1,000 agents, 10,000 issues, an issue with a 200-frame stack trace, 50 series over
//! 7 days in the explorer, and a host page fed by a real `calm-agent`. Prints the
//! browser's Navigation Timing (median of 5 loads) per page and the bundle's size as
//! served; these are figures, not pass/fail timers. Checks that each page shows the
//! whole data set (1,000 rows, the first 100 issues, 200 frames, 50 series).
//!
//! Skips like `ui_browser.rs` when node, chromium or the npm packages are missing.

use calm_tests::write::{request, series, RemoteWriter};
use calm_tests::{now_ms, require_peer, skip_or_fail, wait_for, workspace_root, Agent, Collector};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const KEY: &str = "9a8b7c6d5e4f30211203f4e5d6c7b8a9";
const AGENTS: usize = 1000;
const ISSUES: usize = 10_000;
const FRAMES: usize = 200;
const SERIES: usize = 50;
const DAYS: i64 = 7;

fn require_browser() -> Option<(PathBuf, PathBuf)> {
    let node = require_peer("node")?;
    let chromium = std::env::var_os("CALM_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !chromium.is_file() {
        return skip_or_fail(
            &format!("chromium not found at {}", chromium.display()),
            "run scripts/install-peers (Debian package chromium) or set CALM_CHROMIUM",
        );
    }
    let dir = workspace_root().join("tests/ui");
    if !dir
        .join("node_modules/playwright-core/package.json")
        .is_file()
    {
        return skip_or_fail(
            "playwright-core not installed in tests/ui",
            "run scripts/install-peers (npm ci in tests/ui)",
        );
    }
    Some((node, dir))
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// Sends `ISSUES` events with distinct fingerprints over 4 connections.
fn send_issues(base: &str) {
    std::thread::scope(|s| {
        for t in 0..4 {
            s.spawn(move || {
                let http = client();
                for i in (t..ISSUES).step_by(4) {
                    let ev = json!({
                        "event_id": format!("{:032x}", i + 1),
                        "message": format!("scale issue {i}"),
                        "fingerprint": [format!("scale-{i}")],
                        "level": "error",
                        "platform": "python",
                        "environment": "scale",
                    });
                    let r = http
                        .post(format!("{base}/api/1/store/?sentry_key={KEY}"))
                        .header("Content-Type", "application/json")
                        .body(ev.to_string())
                        .send()
                        .expect("store");
                    assert!(r.status().is_success(), "store: {}", r.status());
                }
            });
        }
    });
}

fn big_trace_event() -> Value {
    let frames: Vec<Value> = (0..FRAMES)
        .map(|i| {
            json!({"filename": format!("app/mod{}.py", i % 17), "function": format!("step_{i}"),
                   "lineno": 10 + i, "in_app": i % 3 == 0, "context_line": format!("    step_{}(x)", i + 1),
                   "pre_context": ["def f(x):", "    y = x"], "post_context": ["    return y"]})
        })
        .collect();
    json!({"event_id": "f".repeat(32), "level": "error", "platform": "python",
           "exception": {"values": [{"type": "DeepError", "value": "200 frames deep",
             "stacktrace": {"frames": frames}}]}})
}

#[test]
fn ui_figures_on_large_data() {
    let Some((node, ui_dir)) = require_browser() else {
        return;
    };
    let c = Collector::start_with_config(
        &format!("[[projects]]\nid = 1\nname = \"scale\"\npublic_key = \"{KEY}\"\nrate_limit = 1000000.0\n[limits]\nmax_issues_per_project = 20000\n"),
        &[],
    );
    let _agent = Agent::builder()
        .collector(&c.url())
        .config("[host]\ninterval = \"2s\"\n[heartbeat]\ninterval = \"5s\"\n")
        .start();
    let base = c.url();
    let t = Instant::now();
    let http = client();
    for i in 0..AGENTS - 1 {
        let hb = json!({"id": format!("scale-{i:04} 10.0.{}.{}:9401", i / 250, i % 250),
            "host": format!("scale-{i:04}"), "version": "0.1.0", "spool_bytes": i * 100,
            "spool_entries": i, "spool_dropped": 0, "shipped": i * 7, "last_error": null});
        let r = http
            .post(format!("{base}/api/calm/v1/agents/heartbeat"))
            .header("Content-Type", "application/json")
            .body(hb.to_string())
            .send()
            .expect("heartbeat");
        assert_eq!(r.status().as_u16(), 204);
    }
    send_issues(&base);
    let r = http
        .post(format!("{base}/api/1/store/?sentry_key={KEY}"))
        .header("Content-Type", "application/json")
        .body(big_trace_event().to_string())
        .send()
        .expect("store");
    assert!(r.status().is_success());
    // 50 series × 7 days at 60 s, each written oldest first.
    let now = now_ms();
    let start = now - DAYS * 86_400_000;
    let writer = RemoteWriter::new(&c.write_url());
    let mut ts = start;
    while ts < now {
        let end = (ts + 6 * 3_600_000).min(now);
        let all: Vec<_> = (0..SERIES)
            .map(|s| {
                let id = s.to_string();
                let samples: Vec<(i64, f64)> = (ts..end)
                    .step_by(60_000)
                    .map(|t| {
                        (
                            t,
                            ((t / 60_000) as f64 / 30.0 + s as f64).sin() * 10.0 + s as f64,
                        )
                    })
                    .collect();
                series("calm_scale_series", &[("series", id.as_str())], &samples)
            })
            .collect();
        let a = writer.send(&request(all)).expect("remote write");
        assert!(a.ok(), "{a:?}");
        ts = end;
    }
    println!("data written in {:.1} s", t.elapsed().as_secs_f64());

    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    let big = wait_for(Duration::from_secs(60), Duration::from_millis(500), || {
        let v: Value = http
            .get(format!(
                "{base}/api/calm/v1/issues?status=all&query=DeepError"
            ))
            .send()
            .ok()?
            .json()
            .ok()?;
        v["data"][0]["id"].as_str().map(str::to_string)
    })
    .expect("the 200-frame issue");
    let agents = wait_for(Duration::from_secs(60), Duration::from_millis(500), || {
        let v: Value = http
            .get(format!("{base}/api/calm/v1/agents"))
            .send()
            .ok()?
            .json()
            .ok()?;
        let n = v["agents"].as_array()?.len();
        (n == AGENTS).then_some(n)
    })
    .expect("1000 agents (999 + the real one)");
    // Wait for a few of the agent's samples so the host page has lines.
    wait_for(Duration::from_secs(60), Duration::from_millis(500), || {
        let v = c
            .api()
            .query_vector("count_over_time(node_load1[1m])", None)
            .ok()?;
        (v.first()?.value >= 6.0).then_some(())
    })
    .expect("agent samples");

    // Bundle size as served (reqwest here does not decompress).
    for p in ["/ui/app.js", "/ui/app.css", "/ui/editor.js"] {
        let r = http
            .get(format!("{base}{p}"))
            .header("Accept-Encoding", "gzip")
            .send()
            .expect("GET");
        let enc = r
            .headers()
            .get("content-encoding")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("identity")
            .to_string();
        let n = r.bytes().map(|b| b.len()).unwrap_or(0);
        println!("{p}: {n} bytes over the wire ({enc})");
        assert_eq!(enc, "gzip");
    }

    let dir = tempfile::tempdir().expect("tmp");
    let expect = json!({"agents": agents, "issues": ISSUES + 1, "frames": FRAMES, "bigIssue": big,
        "series": SERIES, "metric": "calm_scale_series", "host": host});
    let path = dir.path().join("expect.json");
    std::fs::write(&path, expect.to_string()).expect("expect.json");
    let mut cmd = Command::new(node);
    cmd.arg(ui_dir.join("scale.mjs"))
        .arg(&base)
        .arg(&path)
        .current_dir(&ui_dir);
    let run = calm_tests::process::run_bounded(cmd, Duration::from_secs(300));
    println!("{}", run.stdout);
    assert!(run.status.success(), "{}\n{}", run.stdout, run.stderr);
}
