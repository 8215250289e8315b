//! Evaluating one rule at one time: alerting rules run the state machine of
//! [`super::alert`] (Prometheus' `AlertingRule.Eval`), recording rules rename and label
//! the result (Prometheus' `RecordingRule.Eval`). Both return the samples to write
//! back: `ALERTS`/`ALERTS_FOR_STATE`, or the recorded series.

use super::alert::{labels_hash, Alert, AlertState, LabelMap, RESOLVED_RETENTION_MS};
use super::rules::{RuleKind, RuleSpec};
use super::template::{QueryFn, Template, TemplateData};
use std::collections::{HashMap, HashSet};

/// A rule's health after its last evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Not evaluated yet.
    Unknown,
    /// Last evaluation worked.
    Ok,
    /// Last evaluation failed.
    Err,
}

impl Health {
    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Ok => "ok",
            Health::Err => "err",
        }
    }
}

/// A sample to write back: labels with `__name__`, value.
pub type OutSample = (LabelMap, f64);

/// What rule evaluation needs besides the query result.
pub struct EvalContext<'a> {
    /// Labels added to alerts sent out, visible as `$externalLabels`.
    pub external_labels: &'a LabelMap,
    /// `$externalURL`.
    pub external_url: &'a str,
    /// The `query` template function.
    pub query: Option<QueryFn<'a>>,
}

/// A rule, its parsed templates and its evaluation state.
pub struct Rule {
    /// What the file says.
    pub spec: RuleSpec,
    label_tpls: Vec<(String, Option<Template>)>,
    annotation_tpls: Vec<(String, Option<Template>)>,
    /// Active alerts (alerting rules), by label hash.
    pub active: HashMap<u64, Alert>,
    /// Health after the last evaluation.
    pub health: Health,
    /// The last evaluation's error.
    pub last_error: Option<String>,
    /// When it was last evaluated, ms.
    pub last_eval_ms: Option<i64>,
    /// How long that took, seconds.
    pub eval_seconds: f64,
    /// Series written by the last evaluation (to mark them stale when they go).
    pub last_series: HashSet<LabelMap>,
}

fn compile(map: &LabelMap) -> Vec<(String, Option<Template>)> {
    map.iter()
        .map(|(k, v)| {
            let t = if v.contains("{{") {
                Template::parse(v).ok()
            } else {
                None
            };
            (k.clone(), t)
        })
        .collect()
}

impl Rule {
    /// A rule in its initial state.
    pub fn new(spec: RuleSpec) -> Rule {
        let label_tpls = if spec.is_alert() {
            compile(&spec.labels)
        } else {
            Vec::new()
        };
        let annotation_tpls = match &spec.kind {
            RuleKind::Alerting { annotations, .. } => compile(annotations),
            RuleKind::Recording => Vec::new(),
        };
        Rule {
            spec,
            label_tpls,
            annotation_tpls,
            active: HashMap::new(),
            health: Health::Unknown,
            last_error: None,
            last_eval_ms: None,
            eval_seconds: 0.0,
            last_series: HashSet::new(),
        }
    }

    /// The rule's state for the API: firing if any alert fires, else pending if any
    /// is pending, else inactive.
    pub fn state(&self) -> AlertState {
        let mut s = AlertState::Inactive;
        for a in self.active.values() {
            match a.state {
                AlertState::Firing => return AlertState::Firing,
                AlertState::Pending => s = AlertState::Pending,
                AlertState::Inactive => {}
            }
        }
        s
    }

    /// Evaluates the rule at `ts` over the expression's result `vector` (labels, value).
    pub fn eval(
        &mut self,
        ts: i64,
        vector: Vec<(LabelMap, f64)>,
        ctx: &EvalContext<'_>,
        limit: usize,
    ) -> Result<Vec<OutSample>, String> {
        match self.spec.kind.clone() {
            RuleKind::Recording => self.eval_recording(vector, limit),
            RuleKind::Alerting {
                for_ms,
                keep_firing_for_ms,
                ..
            } => self.eval_alerting(ts, vector, ctx, limit, for_ms, keep_firing_for_ms),
        }
    }

    fn eval_recording(
        &mut self,
        vector: Vec<(LabelMap, f64)>,
        limit: usize,
    ) -> Result<Vec<OutSample>, String> {
        let mut out = Vec::with_capacity(vector.len());
        let mut seen = HashSet::with_capacity(vector.len());
        for (mut l, v) in vector {
            l.insert("__name__".into(), self.spec.name.clone());
            for (k, val) in &self.spec.labels {
                if val.is_empty() {
                    l.remove(k);
                } else {
                    l.insert(k.clone(), val.clone());
                }
            }
            if !seen.insert(labels_hash(&l)) {
                return Err(
                    "vector contains metrics with the same labelset after applying rule labels"
                        .into(),
                );
            }
            out.push((l, v));
        }
        if limit > 0 && out.len() > limit {
            return Err(format!(
                "exceeded limit of {limit} with {} series",
                out.len()
            ));
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn eval_alerting(
        &mut self,
        ts: i64,
        vector: Vec<(LabelMap, f64)>,
        ctx: &EvalContext<'_>,
        limit: usize,
        for_ms: i64,
        keep_firing_for_ms: i64,
    ) -> Result<Vec<OutSample>, String> {
        let mut fresh: HashMap<u64, Alert> = HashMap::with_capacity(vector.len());
        for (metric, value) in vector {
            let data = TemplateData {
                labels: metric.clone(),
                external_labels: ctx.external_labels.clone(),
                external_url: ctx.external_url.to_string(),
                value,
            };
            let expand = |tpls: &[(String, Option<Template>)], raw: &LabelMap| -> LabelMap {
                let mut out = LabelMap::new();
                for (k, t) in tpls {
                    let text = match t {
                        Some(t) => t
                            .execute(&data, ctx.query)
                            .unwrap_or_else(|e| format!("<error expanding template: {e}>")),
                        None => raw.get(k).cloned().unwrap_or_default(),
                    };
                    out.insert(k.clone(), text);
                }
                out
            };
            let rule_labels = expand(&self.label_tpls, &self.spec.labels);
            let annotations = match &self.spec.kind {
                RuleKind::Alerting { annotations, .. } => {
                    expand(&self.annotation_tpls, annotations)
                }
                RuleKind::Recording => LabelMap::new(),
            };
            let mut labels = metric;
            labels.remove("__name__");
            for (k, v) in rule_labels {
                if v.is_empty() {
                    labels.remove(&k);
                } else {
                    labels.insert(k, v);
                }
            }
            labels.insert("alertname".into(), self.spec.name.clone());
            let h = labels_hash(&labels);
            if fresh.contains_key(&h) {
                return Err(
                    "vector contains metrics with the same labelset after applying alert labels"
                        .into(),
                );
            }
            fresh.insert(
                h,
                Alert {
                    labels,
                    annotations,
                    state: AlertState::Pending,
                    value,
                    active_at: ts,
                    fired_at: None,
                    resolved_at: None,
                    last_sent_at: None,
                    valid_until: 0,
                    keep_firing_since: None,
                },
            );
        }
        let seen: HashSet<u64> = fresh.keys().copied().collect();
        for (h, a) in fresh {
            match self.active.get_mut(&h) {
                Some(old) if old.state != AlertState::Inactive => {
                    old.value = a.value;
                    old.annotations = a.annotations;
                }
                _ => {
                    self.active.insert(h, a);
                }
            }
        }
        let mut out = Vec::new();
        let mut gone = Vec::new();
        let mut active_count = 0;
        for (h, a) in self.active.iter_mut() {
            if !seen.contains(h) {
                let mut keep_firing = false;
                if a.state == AlertState::Firing && keep_firing_for_ms > 0 {
                    let since = *a.keep_firing_since.get_or_insert(ts);
                    if ts - since < keep_firing_for_ms {
                        keep_firing = true;
                    }
                }
                if a.state == AlertState::Pending
                    || a.resolved_at
                        .is_some_and(|r| ts - r > RESOLVED_RETENTION_MS)
                {
                    gone.push(*h);
                }
                if a.state != AlertState::Inactive && !keep_firing {
                    a.state = AlertState::Inactive;
                    a.resolved_at = Some(ts);
                }
                if !keep_firing {
                    continue;
                }
            } else {
                a.keep_firing_since = None;
            }
            active_count += 1;
            if a.state == AlertState::Pending && ts - a.active_at >= for_ms {
                a.state = AlertState::Firing;
                a.fired_at = Some(ts);
            }
            let mut l = a.labels.clone();
            l.insert("__name__".into(), "ALERTS".into());
            l.insert("alertstate".into(), a.state.as_str().into());
            out.push((l, 1.0));
            let mut f = a.labels.clone();
            f.insert("__name__".into(), "ALERTS_FOR_STATE".into());
            out.push((f, (a.active_at / 1000) as f64));
        }
        for h in gone {
            self.active.remove(&h);
        }
        if limit > 0 && active_count > limit {
            self.active.clear();
            return Err(format!(
                "exceeded limit of {limit} with {active_count} alerts"
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::rules::parse_rules;

    fn rule(yaml_rule: &str) -> Rule {
        let text = format!("groups:\n  - name: g\n    rules:\n{yaml_rule}");
        let mut g = parse_rules("t.yml", &text).unwrap();
        Rule::new(g.remove(0).rules.remove(0))
    }

    fn lm(pairs: &[(&str, &str)]) -> LabelMap {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn pending_firing_resolved_like_prometheus() {
        let mut r = rule("      - alert: Down\n        expr: up == 0\n        for: 20s\n        labels: { sev: \"{{ $labels.job }}-x\" }\n        annotations: { s: \"{{ $value }}\" }\n");
        let ext = LabelMap::new();
        let ctx = EvalContext {
            external_labels: &ext,
            external_url: "",
            query: None,
        };
        let v = || vec![(lm(&[("__name__", "up"), ("job", "a")]), 0.0)];
        let out = r.eval(0, v(), &ctx, 0).unwrap();
        assert_eq!(r.state(), AlertState::Pending);
        let alerts = out.iter().find(|(l, _)| l["__name__"] == "ALERTS").unwrap();
        assert_eq!(
            alerts.0,
            lm(&[
                ("__name__", "ALERTS"),
                ("alertname", "Down"),
                ("alertstate", "pending"),
                ("job", "a"),
                ("sev", "a-x")
            ])
        );
        r.eval(10_000, v(), &ctx, 0).unwrap();
        assert_eq!(r.state(), AlertState::Pending);
        r.eval(20_000, v(), &ctx, 0).unwrap();
        assert_eq!(r.state(), AlertState::Firing);
        let a = r.active.values().next().unwrap();
        assert_eq!((a.active_at, a.fired_at), (0, Some(20_000)));
        assert_eq!(a.annotations["s"], "0");
        let out = r.eval(30_000, vec![], &ctx, 0).unwrap();
        assert!(out.is_empty());
        assert_eq!(
            r.active.values().next().unwrap().state,
            AlertState::Inactive
        );
        // Kept for 15 m, then dropped.
        r.eval(30_000 + RESOLVED_RETENTION_MS, vec![], &ctx, 0)
            .unwrap();
        assert_eq!(r.active.len(), 1);
        r.eval(31_000 + RESOLVED_RETENTION_MS, vec![], &ctx, 0)
            .unwrap();
        assert!(r.active.is_empty());
    }

    #[test]
    fn keep_firing_for_and_pending_drop() {
        let mut r = rule("      - alert: K\n        expr: up\n        keep_firing_for: 15s\n");
        let ext = LabelMap::new();
        let ctx = EvalContext {
            external_labels: &ext,
            external_url: "",
            query: None,
        };
        r.eval(0, vec![(lm(&[("job", "a")]), 1.0)], &ctx, 0)
            .unwrap();
        assert_eq!(r.state(), AlertState::Firing);
        r.eval(10_000, vec![], &ctx, 0).unwrap();
        assert_eq!(r.state(), AlertState::Firing);
        r.eval(25_000, vec![], &ctx, 0).unwrap();
        assert_eq!(r.state(), AlertState::Inactive);
        let mut p = rule("      - alert: P\n        expr: up\n        for: 1m\n");
        p.eval(0, vec![(lm(&[("job", "a")]), 1.0)], &ctx, 0)
            .unwrap();
        p.eval(1, vec![], &ctx, 0).unwrap();
        assert!(p.active.is_empty());
    }

    #[test]
    fn recording_rules_rename_and_refuse_collisions() {
        let mut r =
            rule("      - record: job:x\n        expr: up\n        labels: { instance: \"\" }\n");
        let ext = LabelMap::new();
        let ctx = EvalContext {
            external_labels: &ext,
            external_url: "",
            query: None,
        };
        let out = r
            .eval(
                0,
                vec![(
                    lm(&[("__name__", "up"), ("job", "a"), ("instance", "i")]),
                    1.0,
                )],
                &ctx,
                0,
            )
            .unwrap();
        assert_eq!(out[0].0, lm(&[("__name__", "job:x"), ("job", "a")]));
        let e = r.eval(
            0,
            vec![
                (lm(&[("job", "a"), ("instance", "1")]), 1.0),
                (lm(&[("job", "a"), ("instance", "2")]), 1.0),
            ],
            &ctx,
            0,
        );
        assert!(e.is_err());
    }
}
