//! Wire formats of the notifiers: Alertmanager's webhook payload (version 4) and the
//! alert list of Alertmanager's `POST /api/v2/alerts`.
//!
//! ```text
//! webhook body:
//! {"receiver":"web","status":"firing","alerts":[{"status":"firing","labels":{…},
//!   "annotations":{…},"startsAt":"2024-01-01T00:00:00Z","endsAt":"0001-01-01T00:00:00Z",
//!   "generatorURL":"http://calm/graph?g0.expr=…&g0.tab=1","fingerprint":"9f0e…"}],
//!  "groupLabels":{…},"commonLabels":{…},"commonAnnotations":{…},
//!  "externalURL":"http://calm:9400","version":"4","groupKey":"{}:{alertname=\"X\"}",
//!  "truncatedAlerts":0}
//! /api/v2/alerts body:
//! [{"labels":{…},"annotations":{…},"startsAt":"…","endsAt":"…","generatorURL":"…"}]
//! ```

use super::NotifyAlert;
use crate::alerts::alert::{fingerprint, rfc3339, LabelMap, ZERO_TIME};
use serde_json::{json, Value};

/// Alertmanager's v2 alert list.
pub fn alertmanager_v2(alerts: &[NotifyAlert]) -> Value {
    Value::Array(
        alerts
            .iter()
            .map(|a| {
                json!({
                    "labels": a.labels,
                    "annotations": a.annotations,
                    "startsAt": rfc3339(a.starts_at),
                    "endsAt": rfc3339(a.ends_at),
                    "generatorURL": a.generator_url,
                })
            })
            .collect(),
    )
}

/// Alertmanager's group key for a root-route receiver: `{}:{a="b", c="d"}`.
pub fn group_key(group_labels: &LabelMap) -> String {
    let inner: Vec<String> = group_labels
        .iter()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect();
    format!("{{}}:{{{}}}", inner.join(", "))
}

/// Go's `%q` of a string (strconv.Quote) for the characters label values hold.
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Alertmanager's order of alerts in a notification: by `job`, then `instance`,
/// then the whole label set.
pub fn sort_alerts(alerts: &mut [NotifyAlert]) {
    alerts.sort_by(|a, b| {
        for k in ["job", "instance"] {
            match (a.labels.get(k), b.labels.get(k)) {
                (Some(x), Some(y)) if x != y => return x.cmp(y),
                (Some(_), None) => return std::cmp::Ordering::Less,
                (None, Some(_)) => return std::cmp::Ordering::Greater,
                _ => {}
            }
        }
        let la: Vec<_> = a.labels.iter().collect();
        let lb: Vec<_> = b.labels.iter().collect();
        la.cmp(&lb)
    });
}

fn common(maps: &[&LabelMap]) -> LabelMap {
    let Some(first) = maps.first() else {
        return LabelMap::new();
    };
    first
        .iter()
        .filter(|(k, v)| maps[1..].iter().all(|m| m.get(*k) == Some(v)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The webhook body for a group's alerts at `now_ms` (resolved = `ends_at <= now`).
pub fn webhook_v4(
    receiver: &str,
    group_labels: &LabelMap,
    alerts: &[NotifyAlert],
    external_url: &str,
    now_ms: i64,
    max_alerts: usize,
) -> Value {
    let firing = alerts.iter().any(|a| a.ends_at > now_ms);
    let labels: Vec<&LabelMap> = alerts.iter().map(|a| &a.labels).collect();
    let anns: Vec<&LabelMap> = alerts.iter().map(|a| &a.annotations).collect();
    let shown = if max_alerts > 0 {
        &alerts[..alerts.len().min(max_alerts)]
    } else {
        alerts
    };
    let list: Vec<Value> = shown
        .iter()
        .map(|a| {
            let resolved = a.ends_at <= now_ms;
            json!({
                "status": if resolved { "resolved" } else { "firing" },
                "labels": a.labels,
                "annotations": a.annotations,
                "startsAt": rfc3339(a.starts_at),
                "endsAt": if resolved { rfc3339(a.ends_at) } else { ZERO_TIME.to_string() },
                "generatorURL": a.generator_url,
                "fingerprint": format!("{:016x}", fingerprint(&a.labels)),
            })
        })
        .collect();
    json!({
        "receiver": receiver,
        "status": if firing { "firing" } else { "resolved" },
        "alerts": list,
        "groupLabels": group_labels,
        "commonLabels": common(&labels),
        "commonAnnotations": common(&anns),
        "externalURL": external_url,
        "version": "4",
        "groupKey": group_key(group_labels),
        "truncatedAlerts": alerts.len() - shown.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_shape() {
        let l: LabelMap = [
            ("alertname".to_string(), "X".to_string()),
            ("job".to_string(), "a".to_string()),
        ]
        .into();
        let a = NotifyAlert {
            labels: l.clone(),
            annotations: LabelMap::new(),
            starts_at: 1_000,
            ends_at: 10_000,
            generator_url: "g".into(),
        };
        let gl: LabelMap = [("alertname".to_string(), "X".to_string())].into();
        let v = webhook_v4("r", &gl, std::slice::from_ref(&a), "http://c", 5_000, 0);
        assert_eq!(v["status"], "firing");
        assert_eq!(v["alerts"][0]["endsAt"], ZERO_TIME);
        assert_eq!(v["groupKey"], "{}:{alertname=\"X\"}");
        assert_eq!(v["commonLabels"], json!({"alertname": "X", "job": "a"}));
        let v = webhook_v4("r", &gl, &[a], "http://c", 20_000, 0);
        assert_eq!(v["status"], "resolved");
        assert_eq!(v["alerts"][0]["endsAt"], "1970-01-01T00:00:10Z");
    }
}
