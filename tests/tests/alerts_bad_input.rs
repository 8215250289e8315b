//! Bad input to the alerting room gets clear answers and breaks nothing:
//!
//! - `calm-collector check rules` on files with a YAML error, a PromQL syntax error,
//!   an unknown function, a duplicate rule and a broken template: exit 1, and each
//!   error names the file, the line and the reason; a good file: exit 0, SUCCESS.
//! - Reloading such files (`POST /-/reload` and SIGHUP) is refused with the same
//!   file:line: reason, the previous rules keep running (and their alert state),
//!   `calm_rule_config_last_reload_successful` says 0, then 1 after a good reload.
//! - A webhook receiver that answers 500, hangs, or closes the connection: failures
//!   are logged with the reason and counted in `calm_notifications_errors_total`,
//!   evaluation stays on schedule (an `ALERTS` sample at every slot, no missed
//!   iterations), and the alert arrives once the receiver recovers.

use calm_tests::process::run_bounded;
use calm_tests::webhook::{rfc3339_ms, Mode, WebhookReceiver};
use calm_tests::{collector::collector_bin, now_ms, workspace_root, Collector};
use std::process::Command;
use std::time::Duration;

fn metric(c: &Collector, name: &str) -> f64 {
    let (_, text) = c.api().get("/metrics").expect("/metrics");
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn check_rules_names_file_line_and_reason() {
    let dir = workspace_root().join("tests/rules");
    let cases: &[(&str, u32, &str)] = &[
        ("bad_yaml.yml", 6, "YAML"),
        ("bad_syntax.yml", 5, "could not parse expression"),
        (
            "bad_function.yml",
            7,
            "unknown function with name 'frobnicate'",
        ),
        ("bad_duplicate.yml", 8, "duplicate rule \"Same\""),
        ("bad_template.yml", 4, "annotation \"summary\": template"),
    ];
    for (file, line, reason) in cases {
        let path = dir.join(file);
        let mut cmd = Command::new(collector_bin());
        cmd.args(["check", "rules"]).arg(&path);
        let out = run_bounded(cmd, Duration::from_secs(30));
        assert_eq!(
            out.status.code(),
            Some(1),
            "{file}: exit code; stdout {} stderr {}",
            out.stdout,
            out.stderr
        );
        assert!(out.stderr.contains("FAILED"), "{file}: {}", out.stderr);
        let want = format!("{}:{line}: ", path.display());
        assert!(
            out.stderr.contains(&want),
            "{file}: no {want:?} in:\n{}",
            out.stderr
        );
        assert!(
            out.stderr.contains(reason),
            "{file}: no {reason:?} in:\n{}",
            out.stderr
        );
    }
    let mut cmd = Command::new(collector_bin());
    cmd.args(["check", "rules"]).arg(dir.join("compare.yml"));
    let out = run_bounded(cmd, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(0), "{} {}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("SUCCESS: 5 rules found"),
        "{}",
        out.stdout
    );
    // Several files: one bad one fails the run, the good one is still reported.
    let mut cmd = Command::new(collector_bin());
    cmd.args(["check", "rules"])
        .arg(dir.join("compare.yml"))
        .arg(dir.join("bad_syntax.yml"));
    let out = run_bounded(cmd, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.contains("SUCCESS") && out.stderr.contains("FAILED"));
}

const GOOD: &str = "groups:\n  - name: g\n    interval: 1s\n    rules:\n      - alert: Always\n        expr: vector(1)\n        labels: { team: core }\n";

fn alert_active_at(c: &Collector, name: &str) -> Option<i64> {
    let d = c.api().get_data("/api/v1/alerts", &[]).ok()?;
    d["alerts"]
        .as_array()?
        .iter()
        .find(|a| a["labels"]["alertname"] == name)
        .map(|a| rfc3339_ms(a["activeAt"].as_str().unwrap_or("")))
}

fn rule_names(c: &Collector) -> Vec<String> {
    let d = c.api().get_data("/api/v1/rules", &[]).expect("rules");
    let mut v: Vec<String> = d["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| r["name"].as_str().map(String::from))
        .collect();
    v.sort();
    v
}

#[test]
fn invalid_reload_keeps_the_running_rules_and_their_state() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("live.yml");
    std::fs::write(&file, GOOD).expect("write");
    let c = Collector::start_with_config(
        &format!(
            "rule_files = [\"{}\"]\nevaluation_interval = \"1s\"\n",
            file.display()
        ),
        &[],
    );
    let active_at =
        calm_tests::wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
            alert_active_at(&c, "Always")
        })
        .expect("Always never fired");
    assert_eq!(metric(&c, "calm_rule_config_last_reload_successful"), 1.0);
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let fixtures = workspace_root().join("tests/rules");
    for (bad, line, reason) in [
        ("bad_syntax.yml", 5, "could not parse expression"),
        ("bad_function.yml", 7, "frobnicate"),
        ("bad_duplicate.yml", 8, "duplicate rule"),
        ("bad_template.yml", 4, "template"),
        ("bad_yaml.yml", 6, "YAML"),
    ] {
        std::fs::copy(fixtures.join(bad), &file).expect("copy");
        let r = client
            .post(format!("{}/-/reload", c.url()))
            .send()
            .expect("reload");
        assert_eq!(r.status().as_u16(), 500, "{bad}");
        let body = r.text().unwrap_or_default();
        let want = format!("{}:{line}: ", file.display());
        assert!(
            body.contains(&want) && body.contains(reason),
            "{bad}: {body}"
        );
        assert!(body.contains("previous rules keep running"), "{body}");
        assert_eq!(
            rule_names(&c),
            vec!["Always".to_string()],
            "{bad}: the old rules must keep running"
        );
        assert_eq!(metric(&c, "calm_rule_config_last_reload_successful"), 0.0);
    }
    // SIGHUP with a bad file: refused too, logged with file and line.
    let pid = c.pid().expect("pid");
    // SAFETY: kill(2) on the collector we started.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGHUP);
    }
    let want = format!("{}:6: YAML", file.display());
    calm_tests::wait_for(Duration::from_secs(5), Duration::from_millis(100), || {
        c.log_tail(50).contains(&want).then_some(())
    })
    .unwrap_or_else(|| panic!("SIGHUP reload error not logged; log:\n{}", c.log_tail(20)));
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(
        alert_active_at(&c, "Always"),
        Some(active_at),
        "the alert kept firing with its activeAt"
    );

    // A good file with one more rule: accepted, state of the old rule kept.
    std::fs::write(
        &file,
        format!("{GOOD}      - record: calm:one\n        expr: vector(1)\n"),
    )
    .expect("write");
    let r = client
        .post(format!("{}/-/reload", c.url()))
        .send()
        .expect("reload");
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().unwrap_or_default());
    assert_eq!(
        rule_names(&c),
        vec!["Always".to_string(), "calm:one".to_string()]
    );
    assert_eq!(metric(&c, "calm_rule_config_last_reload_successful"), 1.0);
    assert_eq!(
        alert_active_at(&c, "Always"),
        Some(active_at),
        "a reload keeps alert state"
    );
}

#[test]
fn failing_webhook_is_retried_without_delaying_evaluation() {
    let recv = WebhookReceiver::start();
    recv.set_mode(Mode::Status(500));
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("live.yml");
    std::fs::write(&file, GOOD).expect("write");
    let c = Collector::start_with_config(
        &format!(
            "rule_files = [\"{}\"]\nevaluation_interval = \"1s\"\n[[alerting.webhooks]]\nurl = \"{}\"\ngroup_wait = \"0s\"\ngroup_interval = \"1s\"\ntimeout = \"1s\"\n",
            file.display(),
            recv.url("/hook")
        ),
        &[],
    );
    let started = now_ms();
    // 500s first.
    calm_tests::wait_for(Duration::from_secs(15), Duration::from_millis(100), || {
        (recv
            .received()
            .iter()
            .filter(|r| r.answered == Mode::Status(500))
            .count()
            >= 2)
            .then_some(())
    })
    .expect("no retried attempts against the 500 receiver");
    // Then a receiver that hangs (the 1 s timeout cuts it), then one that hangs up.
    recv.set_mode(Mode::Hang);
    calm_tests::wait_for(Duration::from_secs(15), Duration::from_millis(100), || {
        (recv
            .received()
            .iter()
            .filter(|r| r.answered == Mode::Hang)
            .count()
            >= 2)
            .then_some(())
    })
    .expect("no retries against the hanging receiver");
    recv.set_mode(Mode::Close);
    calm_tests::wait_for(Duration::from_secs(20), Duration::from_millis(100), || {
        (recv
            .received()
            .iter()
            .filter(|r| r.answered == Mode::Close)
            .count()
            >= 1)
            .then_some(())
    })
    .expect("no retries against the receiver that closes connections");
    let errors = metric(&c, "calm_notifications_errors_total");
    assert!(errors >= 5.0, "failed attempts counted: {errors}");
    assert_eq!(recv.delivered("/hook").len(), 0);
    // Recovery: the alert arrives.
    recv.set_mode(Mode::Ok);
    let got = recv
        .wait_for("/hook", Duration::from_secs(40), |b| {
            b["status"] == "firing"
        })
        .unwrap_or_else(|| {
            panic!(
                "the alert never arrived after the receiver recovered; log:\n{}",
                c.log_tail(20)
            )
        });
    assert_eq!(got.body["alerts"][0]["labels"]["alertname"], "Always");
    let log = c.log_tail(400);
    for want in ["webhook notification failed", "500", "timed out"] {
        assert!(
            log.contains(want),
            "log does not mention {want:?}:\n{}",
            c.log_tail(30)
        );
    }
    // Evaluation stayed on schedule during the outage: one ALERTS sample per slot.
    let end = now_ms();
    let m = c.api().query_matrix("ALERTS[5m]", end).expect("ALERTS");
    let ts: Vec<i64> = m
        .iter()
        .flat_map(|s| s.samples.iter().map(|p| p.0))
        .filter(|t| *t > started + 1_000)
        .collect();
    let span = ts.last().copied().unwrap_or(0) - ts.first().copied().unwrap_or(0);
    assert_eq!(
        ts.len() as i64,
        span / 1_000 + 1,
        "a slot was skipped: {ts:?}"
    );
    assert!(
        span >= 5_000,
        "outage too short to show anything: {span} ms"
    );
    assert!(
        ts.windows(2).all(|w| w[1] - w[0] == 1_000),
        "slots not 1 s apart: {ts:?}"
    );
    assert_eq!(metric(&c, "calm_rule_group_iterations_missed_total"), 0.0);
}
