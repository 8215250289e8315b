//! Alerts on Sentry issues: a new issue, a regression, or more than N events of one
//! issue within a window, sent through the same notifiers as rule alerts, with a link
//! to the issue in the built-in UI.
//!
//! ```text
//! errors/ NotifyingStore ──IssueEvent (broadcast)──▶ ErrorRules ──NotifyAlert──▶ Notifiers
//! alert labels:      alertname=<rule name>, project, issue_id, level, trigger, + rule labels
//! alert annotations: summary=<issue title>, issue_url=<external_url>/ui/issues/<id>
//! startsAt = the event's receive time; endsAt = startsAt + 5m (Alertmanager's
//! resolve_timeout): the notice stands for that long, then resolves.
//! ```

use super::alert::LabelMap;
use super::config::{ErrorRuleConfig, ErrorTrigger};
use super::notify::{Notifiers, NotifyAlert};
use crate::errors::hook::{IssueEvent, IssueEventKind};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use tokio::sync::broadcast;

/// How long an error alert stands before it resolves (Alertmanager's resolve_timeout).
pub const RESOLVE_AFTER_MS: i64 = 5 * 60 * 1000;

struct Compiled {
    cfg: ErrorRuleConfig,
    window_ms: i64,
    /// event_count: recent event times per issue, and when it last alerted.
    recent: HashMap<u64, (VecDeque<i64>, Option<i64>)>,
}

/// The error rules and their windows.
pub struct ErrorRules {
    rules: Vec<Compiled>,
    external_url: String,
    external_labels: LabelMap,
}

impl ErrorRules {
    /// Compiles the configured rules.
    pub fn new(
        rules: &[ErrorRuleConfig],
        external_url: &str,
        external_labels: &LabelMap,
    ) -> anyhow::Result<ErrorRules> {
        let mut out = Vec::new();
        for r in rules {
            out.push(Compiled {
                window_ms: r.window.as_millis_i64(),
                cfg: r.clone(),
                recent: HashMap::new(),
            });
        }
        Ok(ErrorRules {
            rules: out,
            external_url: external_url.trim_end_matches('/').to_string(),
            external_labels: external_labels.clone(),
        })
    }

    /// The alerts one issue event raises.
    pub fn on_event(&mut self, ev: &IssueEvent) -> Vec<NotifyAlert> {
        let mut out = Vec::new();
        for r in &mut self.rules {
            if r.cfg.project.is_some_and(|p| p != ev.project_id) {
                continue;
            }
            let fire = match r.cfg.on {
                ErrorTrigger::NewIssue => ev.kind == IssueEventKind::New,
                ErrorTrigger::Regression => ev.kind == IssueEventKind::Regression,
                ErrorTrigger::EventCount => {
                    let (times, last_alert) = r.recent.entry(ev.issue_id).or_default();
                    times.push_back(ev.received_ms);
                    while times
                        .front()
                        .is_some_and(|&t| t <= ev.received_ms - r.window_ms)
                    {
                        times.pop_front();
                    }
                    // Only threshold+1 times matter.
                    while times.len() as u64 > r.cfg.threshold + 1 {
                        times.pop_front();
                    }
                    let over = times.len() as u64 > r.cfg.threshold;
                    let quiet = last_alert.is_none_or(|t| ev.received_ms - t >= r.window_ms);
                    if over && quiet {
                        *last_alert = Some(ev.received_ms);
                        true
                    } else {
                        false
                    }
                }
            };
            if !fire {
                continue;
            }
            let trigger = match r.cfg.on {
                ErrorTrigger::NewIssue => "new_issue",
                ErrorTrigger::Regression => "regression",
                ErrorTrigger::EventCount => "event_count",
            };
            let mut labels = LabelMap::new();
            for (k, v) in &self.external_labels {
                labels.insert(k.clone(), v.clone());
            }
            for (k, v) in &r.cfg.labels {
                labels.insert(k.clone(), v.clone());
            }
            labels.insert("alertname".into(), r.cfg.name.clone());
            labels.insert("project".into(), ev.project_id.to_string());
            labels.insert("issue_id".into(), ev.issue_id.to_string());
            labels.insert("level".into(), ev.level.clone());
            labels.insert("trigger".into(), trigger.into());
            let url = format!("{}/ui/issues/{}", self.external_url, ev.issue_id);
            let mut annotations = LabelMap::new();
            annotations.insert("summary".into(), ev.title.clone());
            annotations.insert(
                "description".into(),
                match r.cfg.on {
                    ErrorTrigger::NewIssue => {
                        format!("New issue in project {}: {}", ev.project_id, ev.title)
                    }
                    ErrorTrigger::Regression => format!(
                        "Regression in project {}: {} happened again after it was resolved",
                        ev.project_id, ev.title
                    ),
                    ErrorTrigger::EventCount => format!(
                        "More than {} events of issue {} within {}: {}",
                        r.cfg.threshold, ev.issue_id, r.cfg.window, ev.title
                    ),
                },
            );
            annotations.insert("issue_url".into(), url.clone());
            out.push(NotifyAlert {
                labels,
                annotations,
                starts_at: ev.received_ms,
                ends_at: ev.received_ms + RESOLVE_AFTER_MS,
                generator_url: url,
            });
        }
        out
    }
}

/// Listens to issue events and sends the alerts they raise until the channel closes.
pub async fn run(
    mut rules: ErrorRules,
    mut rx: broadcast::Receiver<IssueEvent>,
    notifiers: Arc<Notifiers>,
) {
    loop {
        match rx.recv().await {
            Ok(ev) => notifiers.send(rules.on_event(&ev)),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(
                    skipped = n,
                    "error rules fell behind the event stream; some events were not checked"
                );
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: IssueEventKind, issue: u64, t: i64) -> IssueEvent {
        IssueEvent {
            kind,
            project_id: 1,
            issue_id: issue,
            title: "ValueError: x".into(),
            level: "error".into(),
            received_ms: t,
        }
    }

    #[test]
    fn triggers() {
        let cfg: Vec<ErrorRuleConfig> = toml::from_str::<toml::Table>(
            "[[r]]\nname='New'\non='new_issue'\n[[r]]\nname='Reg'\non='regression'\n[[r]]\nname='Storm'\non='event_count'\nthreshold=2\nwindow='1m'\n",
        )
        .unwrap()["r"]
            .clone()
            .try_into()
            .unwrap();
        let mut r = ErrorRules::new(&cfg, "http://c/", &LabelMap::new()).unwrap();
        let a = r.on_event(&ev(IssueEventKind::New, 7, 0));
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].labels["alertname"], "New");
        assert_eq!(a[0].annotations["issue_url"], "http://c/ui/issues/7");
        assert!(r.on_event(&ev(IssueEventKind::Event, 7, 1)).is_empty());
        let s = r.on_event(&ev(IssueEventKind::Event, 7, 2));
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].labels["alertname"], "Storm");
        assert!(r.on_event(&ev(IssueEventKind::Event, 7, 3)).is_empty());
        assert_eq!(
            r.on_event(&ev(IssueEventKind::Regression, 7, 4))[0].labels["trigger"],
            "regression"
        );
    }
}
