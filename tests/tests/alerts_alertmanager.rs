//! Calm's alerts reach a real Alertmanager (0.25, Debian's `prometheus-alertmanager`)
//! through `POST /api/v2/alerts`, and Calm's own webhook notifier sends the same
//! payload that Alertmanager's webhook sends for the same alerts.
//!
//! Calm pushes to the Alertmanager, whose route sends to `<receiver>/am`; Calm's
//! `[[alerting.webhooks]]` sends to `<receiver>/calm`, with the same receiver name,
//! grouping and timers. The test compares the two payloads field by field, firing and
//! then resolved. The one tolerated difference: `externalURL` (each names itself).
//! `groupKey`, `generatorURL`, `startsAt`, `endsAt` and `fingerprint` must be equal:
//! Alertmanager passes on what Calm sent it, and Calm computes the fingerprint and
//! the group key as Alertmanager does.

use calm_tests::alertmanager::{require_alertmanager, Alertmanager};
use calm_tests::webhook::{rfc3339_ms, WebhookReceiver};
use calm_tests::write::{request, series, RemoteWriter};
use calm_tests::{now_ms, Collector};
use serde_json::Value;
use std::time::Duration;

const RULES: &str = r#"groups:
  - name: disks
    interval: 1s
    rules:
      - alert: DiskFull
        expr: calm_disk_used_ratio > 0.9
        labels:
          severity: page
        annotations:
          summary: "{{ $labels.instance }} disk is {{ $value | humanizePercentage }} full"
          runbook: "https://runbooks.example/disk"
"#;

/// Field-by-field comparison; returns the differences (tolerated ones excluded).
fn differences(calm: &Value, am: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let (Some(c), Some(a)) = (calm.as_object(), am.as_object()) else {
        return vec!["a payload is not a JSON object".into()];
    };
    let mut keys: Vec<&String> = c.keys().chain(a.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        if k == "externalURL" {
            // Tolerated: each side names its own URL.
            continue;
        }
        if k == "alerts" {
            let (ca, aa) = (c[k].as_array(), a[k].as_array());
            match (ca, aa) {
                (Some(ca), Some(aa)) if ca.len() == aa.len() => {
                    for (i, (x, y)) in ca.iter().zip(aa).enumerate() {
                        for f in [
                            "status",
                            "labels",
                            "annotations",
                            "startsAt",
                            "endsAt",
                            "generatorURL",
                            "fingerprint",
                        ] {
                            if x[f] != y[f] {
                                out.push(format!(
                                    "alerts[{i}].{f}: Calm {} vs Alertmanager {}",
                                    x[f], y[f]
                                ));
                            }
                        }
                        let (kx, ky): (Vec<_>, Vec<_>) = (
                            x.as_object()
                                .map(|o| o.keys().cloned().collect())
                                .unwrap_or_default(),
                            y.as_object()
                                .map(|o| o.keys().cloned().collect())
                                .unwrap_or_default(),
                        );
                        if kx != ky {
                            out.push(format!(
                                "alerts[{i}] fields: Calm {kx:?} vs Alertmanager {ky:?}"
                            ));
                        }
                    }
                }
                _ => out.push(format!("alerts: Calm {} vs Alertmanager {}", c[k], a[k])),
            }
            continue;
        }
        if c.get(k) != a.get(k) {
            out.push(format!(
                "{k}: Calm {:?} vs Alertmanager {:?}",
                c.get(k),
                a.get(k)
            ));
        }
    }
    out
}

#[test]
fn alertmanager_receives_calms_alerts_and_webhooks_match_field_by_field() {
    let Some(am_bin) = require_alertmanager() else {
        return;
    };
    let recv = WebhookReceiver::start();
    let am = Alertmanager::start(
        &am_bin,
        &format!(
            "route:\n  receiver: hook\n  group_by: ['alertname']\n  group_wait: 1s\n  group_interval: 2s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: '{}'\n        send_resolved: true\n",
            recv.url("/am")
        ),
    );
    let dir = tempfile::tempdir().expect("tmp");
    let rules = dir.path().join("disks.yml");
    std::fs::write(&rules, RULES).expect("write rules");
    let calm = Collector::start_with_config(
        &format!(
            "rule_files = [\"{}\"]\nevaluation_interval = \"1s\"\n\n[[alerting.webhooks]]\nname = \"hook\"\nurl = \"{}\"\ngroup_by = [\"alertname\"]\ngroup_wait = \"1s\"\ngroup_interval = \"2s\"\nrepeat_interval = \"1h\"\nbearer_token = \"s3cret\"\n\n[[alerting.alertmanagers]]\nurl = \"{}\"\n",
            rules.display(),
            recv.url("/calm"),
            am.url()
        ),
        &[],
    );

    // Two disks above 90 % until `resolve_at`, then below.
    let now = now_ms();
    let resolve_at = (now / 1000 + 12) * 1000;
    let mk = |inst: &str, v: f64| {
        let pts: Vec<(i64, f64)> = (0..80)
            .map(|i| {
                let t = now - 10_000 + i * 1000;
                (t, if t < resolve_at { v } else { 0.5 })
            })
            .collect();
        series(
            "calm_disk_used_ratio",
            &[("instance", inst), ("job", "node")],
            &pts,
        )
    };
    let a = RemoteWriter::new(&calm.write_url())
        .send(&request(vec![mk("db-1", 0.95), mk("db-2", 0.97)]))
        .expect("write");
    assert!(a.ok(), "{} {}", a.status, a.body);

    // 1. Alertmanager shows Calm's alerts in its own API.
    let got = calm_tests::wait_for(Duration::from_secs(15), Duration::from_millis(200), || {
        let v = am.alerts();
        let list = v.as_array()?;
        (list.len() == 2).then(|| list.clone())
    })
    .unwrap_or_else(|| {
        panic!(
            "Alertmanager never showed 2 alerts: {}\n{}",
            am.alerts(),
            am.log_tail(20)
        )
    });
    let calm_alerts = calm
        .api()
        .get_data("/api/v1/alerts", &[])
        .expect("calm alerts");
    for a in &got {
        let inst = a["labels"]["instance"].as_str().unwrap_or("");
        let c = calm_alerts["alerts"]
            .as_array()
            .and_then(|l| l.iter().find(|x| x["labels"]["instance"] == inst))
            .unwrap_or_else(|| panic!("Calm has no alert for {inst}: {calm_alerts}"));
        assert_eq!(a["labels"], c["labels"], "labels of {inst}");
        assert_eq!(a["annotations"], c["annotations"], "annotations of {inst}");
        assert_eq!(a["status"]["state"], "active");
        assert_eq!(
            rfc3339_ms(a["startsAt"].as_str().unwrap_or("")),
            rfc3339_ms(c["activeAt"].as_str().unwrap_or("")),
            "startsAt of {inst} = Calm's activeAt (for: 0)"
        );
        assert!(
            a["generatorURL"].as_str().is_some_and(
                |g| g.starts_with(&calm.url()) && g.contains("g0.expr=calm_disk_used_ratio")
            ),
            "generatorURL {}",
            a["generatorURL"]
        );
    }
    assert_eq!(
        got.iter()
            .map(|a| a["annotations"]["summary"]
                .as_str()
                .unwrap_or("")
                .to_string())
            .collect::<std::collections::BTreeSet<_>>(),
        [
            "db-1 disk is 95% full".to_string(),
            "db-2 disk is 97% full".to_string()
        ]
        .into(),
    );

    // 2. Both webhooks: firing.
    let firing =
        |v: &Value| v["status"] == "firing" && v["alerts"].as_array().is_some_and(|l| l.len() == 2);
    let from_am = recv
        .wait_for("/am", Duration::from_secs(20), firing)
        .expect("Alertmanager's webhook (firing)");
    let from_calm = recv
        .wait_for("/calm", Duration::from_secs(20), firing)
        .expect("Calm's webhook (firing)");
    assert_eq!(
        from_calm.authorization.as_deref(),
        Some("Bearer s3cret"),
        "bearer token sent"
    );
    let d = differences(&from_calm.body, &from_am.body);
    assert!(
        d.is_empty(),
        "firing payloads differ:\n{}\nCalm: {}\nAlertmanager: {}",
        d.join("\n"),
        from_calm.body,
        from_am.body
    );
    assert_eq!(from_calm.body["version"], "4");
    assert_eq!(from_calm.body["groupKey"], "{}:{alertname=\"DiskFull\"}");

    // 3. Both webhooks: resolved.
    let resolved = |v: &Value| v["status"] == "resolved";
    let from_am = recv
        .wait_for("/am", Duration::from_secs(30), resolved)
        .expect("Alertmanager's webhook (resolved)");
    let from_calm = recv
        .wait_for("/calm", Duration::from_secs(30), resolved)
        .expect("Calm's webhook (resolved)");
    let d = differences(&from_calm.body, &from_am.body);
    assert!(
        d.is_empty(),
        "resolved payloads differ:\n{}\nCalm: {}\nAlertmanager: {}",
        d.join("\n"),
        from_calm.body,
        from_am.body
    );
    // Each side sent exactly one firing and one resolved notification.
    for path in ["/am", "/calm"] {
        let n = recv.delivered(path).len();
        assert_eq!(
            n,
            2,
            "{path}: {n} notifications: {:?}",
            recv.delivered(path)
                .iter()
                .map(|r| r.body["status"].clone())
                .collect::<Vec<_>>()
        );
    }
}
