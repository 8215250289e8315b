//! A rule group: its rules, evaluated in order at one timestamp on the group's
//! interval, results written back before the next rule runs (so a rule may use the
//! series an earlier rule records), alerts handed to the notifiers.
//!
//! ```text
//! slot(t) = offset + k·interval      offset = hash(file, name) mod interval
//! every slot: (cluster mode: wait, bounded, until the owners read hold every write
//!             acknowledged before the slot; cluster/read_after_write.rs)
//!             for rule in rules: query(expr, slot) → rule.eval → write back
//!             (ALERTS, ALERTS_FOR_STATE, recorded series; stale markers for
//!              series that went away) → alerts to send → notifiers
//! ```

use super::alert::{AlertState, LabelMap};
use super::notify::NotifyAlert;
use super::rule::{EvalContext, Health, OutSample, Rule};
use super::rules::GroupSpec;
use super::template::QuerySample;
use crate::promql::{Engine, QueryValue};
use crate::storage::SampleSink;
use crate::storage::SeriesReader;
use calm_wire::prompb::{Label, Sample, TimeSeries};
use parking_lot::Mutex;
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// What every group shares: the TSDB to query, the sink to write to, labels and
/// links for notifications.
pub struct GroupEnv {
    /// Queried by rule expressions.
    pub db: Arc<dyn SeriesReader>,
    /// Where results are written (the TSDB, or in cluster mode the ingest log).
    pub sink: Arc<dyn SampleSink>,
    /// Used to wait for writes from the blocking evaluation thread.
    pub runtime: tokio::runtime::Handle,
    /// Added to alerts sent out; `$externalLabels` in templates.
    pub external_labels: LabelMap,
    /// `$externalURL`; base of generator URLs.
    pub external_url: String,
    /// How often firing alerts are re-sent.
    pub resend_delay_ms: i64,
    /// The alerting room's counters (served at `/metrics`).
    pub metrics: Arc<crate::alerts::metrics::AlertMetrics>,
    /// `calm_query_duration_seconds{kind="rule"}`.
    pub query_durations: crate::selfmetrics::QueryDurations,
    /// Cluster mode with PostgreSQL: the evaluator lease (only its holder evaluates;
    /// the others follow the shared state) and the notification log.
    pub cluster: Option<crate::storage::evaluator::ClusterAlerting>,
    /// Where alert state is kept (followed from here in cluster mode).
    pub state: Arc<dyn crate::storage::alert_state::AlertStateStore>,
    /// Cluster mode: waited on before each round, so the round reads every write
    /// acknowledged before it began (bounded; `None`: no wait, embedded mode).
    pub read_barrier: Option<Arc<dyn crate::storage::reader::ReadBarrier>>,
}

/// A group and the state of its rules.
pub struct Group {
    /// The file it came from.
    pub file: String,
    /// Its name.
    pub name: String,
    /// Evaluation interval, ms.
    pub interval_ms: i64,
    /// Most alerts/series per rule (0: none).
    pub limit: usize,
    /// Its rules (each locked only while it is evaluated or read).
    pub rules: Vec<Arc<Mutex<Rule>>>,
    /// When it was last evaluated (the slot), ms.
    pub last_eval_ms: Mutex<Option<i64>>,
    /// How long that took, seconds.
    pub eval_seconds: Mutex<f64>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Group {
    /// A group from its spec, with `default_interval_ms` when it names none.
    pub fn new(spec: GroupSpec, default_interval_ms: i64) -> Group {
        Group {
            interval_ms: spec.interval_ms.unwrap_or(default_interval_ms).max(1),
            limit: spec.limit,
            rules: spec
                .rules
                .into_iter()
                .map(|r| Arc::new(Mutex::new(Rule::new(r))))
                .collect(),
            file: spec.file,
            name: spec.name,
            last_eval_ms: Mutex::new(None),
            eval_seconds: Mutex::new(0.0),
        }
    }

    /// `file;name`, as Prometheus names a group in metrics.
    pub fn key(&self) -> String {
        format!("{};{}", self.file, self.name)
    }

    /// The latest slot at or before `now_ms` (Prometheus' `EvalTimestamp`).
    pub fn slot_at_or_before(&self, now_ms: i64) -> i64 {
        // Prometheus' offset: xxHash64 of the label set {file, name} modulo the
        // interval in nanoseconds, so Calm and Prometheus given the same rule file path
        // evaluate a group at the same instants.
        let mut b = Vec::with_capacity(self.file.len() + self.name.len() + 12);
        b.extend_from_slice(b"file\xff");
        b.extend_from_slice(self.file.as_bytes());
        b.extend_from_slice(b"\xffname\xff");
        b.extend_from_slice(self.name.as_bytes());
        b.push(0xff);
        let interval_ns = self.interval_ms as u64 * 1_000_000;
        let offset = ((xxhash_rust::xxh64::xxh64(&b, 0) % interval_ns) / 1_000_000) as i64;
        let adj = now_ms - offset;
        adj - adj.rem_euclid(self.interval_ms) + offset
    }

    /// Writes the batched results; a failure marks the rules that produced them.
    fn flush(
        &self,
        env: &GroupEnv,
        batch: &mut Vec<TimeSeries>,
        rules: &mut Vec<usize>,
    ) -> Result<(), String> {
        let res = write(env, batch);
        if let Err(e) = &res {
            env.metrics
                .evaluation_failures
                .fetch_add(rules.len() as u64, Ordering::Relaxed);
            tracing::warn!(group = %self.name, error = %e, "cannot write rule results");
            for &i in rules.iter() {
                // The caller's current rule is locked by it: the caller marks that one.
                if let Some(mut r) = self.rules[i].try_lock() {
                    r.health = Health::Err;
                    r.last_error = Some(format!("cannot write results: {e}"));
                }
            }
        }
        batch.clear();
        rules.clear();
        res
    }

    /// Evaluates every rule at `ts` (blocking: call from a blocking thread). Returns
    /// the alerts to send and whether any alert changed state (to persist).
    pub fn evaluate(&self, ts: i64, env: &GroupEnv) -> (Vec<NotifyAlert>, bool) {
        let started = std::time::Instant::now();
        let engine = Engine::new(&*env.db);
        let mut to_send = Vec::new();
        let mut changed = false;
        // Results wait in `batch` and are written with one durable write: before a
        // recording rule's successor runs (later rules may read what it recorded),
        // before a rule that reads ALERTS, and at the end. One WAL sync per group
        // instead of one per rule.
        let mut batch: Vec<TimeSeries> = Vec::new();
        let mut batch_rules: Vec<usize> = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let rule_started = std::time::Instant::now();
            // The query runs without the rule's lock, so the API (which reads rules)
            // never waits for a slow expression.
            let (expr, reads_alerts) = {
                let r = rule.lock();
                (r.spec.expr.clone(), r.spec.expr_text.contains("ALERTS"))
            };
            if reads_alerts {
                let _ = self.flush(env, &mut batch, &mut batch_rules);
            }
            let value = env
                .query_durations
                .time("rule", || engine.instant_expr(&expr, ts));
            let result = match value {
                Ok(QueryValue::Vector(v)) => Ok(v
                    .into_iter()
                    .map(|(l, _, v, _)| (label_map(&l), v))
                    .collect::<Vec<_>>()),
                Ok(QueryValue::Scalar(_, v)) => Ok(vec![(LabelMap::new(), v)]),
                Ok(_) => Err("rule result is not a vector or scalar".to_string()),
                Err(e) => Err(e.to_string()),
            };
            let mut r = rule.lock();
            crate::alerts::metrics::AlertMetrics::inc(&env.metrics.evaluations);
            let before = state_sig(&r);
            let query = |q: &str| -> Result<Vec<QuerySample>, String> {
                match engine.instant(q, ts).map_err(|e| e.to_string())? {
                    QueryValue::Vector(v) => Ok(v
                        .into_iter()
                        .map(|(l, _, v, _)| QuerySample {
                            labels: label_map(&l),
                            value: v,
                        })
                        .collect()),
                    QueryValue::Scalar(_, v) => Ok(vec![QuerySample {
                        labels: LabelMap::new(),
                        value: v,
                    }]),
                    _ => Err("query did not return a vector or scalar".into()),
                }
            };
            let ctx = EvalContext {
                external_labels: &env.external_labels,
                external_url: &env.external_url,
                query: Some(&query),
            };
            let limit = self.limit;
            let out = result.and_then(|v| r.eval(ts, v, &ctx, limit));
            match out {
                Ok(samples) => {
                    let stale = stale_markers(&mut r.last_series, &samples);
                    batch.extend(to_series(ts, &samples, &stale));
                    batch_rules.push(i);
                    r.health = Health::Ok;
                    r.last_error = None;
                }
                Err(e) => {
                    crate::alerts::metrics::AlertMetrics::inc(&env.metrics.evaluation_failures);
                    if r.last_error.as_deref() != Some(e.as_str()) {
                        tracing::warn!(file = %self.file, group = %self.name, rule = %r.spec.name, error = %e, "rule evaluation failed");
                    }
                    r.health = Health::Err;
                    r.last_error = Some(e);
                }
            }
            if r.spec.is_alert() {
                let delta = env.resend_delay_ms.max(self.interval_ms);
                let generator_url = format!(
                    "{}/graph?g0.expr={}&g0.tab=1",
                    env.external_url.trim_end_matches('/'),
                    form_urlencoded::byte_serialize(r.spec.expr.to_string().as_bytes())
                        .collect::<String>()
                );
                for a in r.active.values_mut() {
                    if !a.needs_sending(ts, env.resend_delay_ms) {
                        continue;
                    }
                    a.last_sent_at = Some(ts);
                    a.valid_until = ts + 4 * delta;
                    let mut labels = a.labels.clone();
                    for (k, v) in &env.external_labels {
                        labels.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                    to_send.push(NotifyAlert {
                        labels,
                        annotations: a.annotations.clone(),
                        starts_at: a.fired_at.unwrap_or(a.active_at),
                        ends_at: a.resolved_at.unwrap_or(a.valid_until),
                        generator_url: generator_url.clone(),
                    });
                }
            }
            let recording = !r.spec.is_alert();
            if recording {
                if let Err(e) = self.flush(env, &mut batch, &mut batch_rules) {
                    r.health = Health::Err;
                    r.last_error = Some(format!("cannot write results: {e}"));
                }
            }
            r.last_eval_ms = Some(ts);
            r.eval_seconds = rule_started.elapsed().as_secs_f64();
            changed |= state_sig(&r) != before;
        }
        let _ = self.flush(env, &mut batch, &mut batch_rules);
        let secs = started.elapsed().as_secs_f64();
        *self.last_eval_ms.lock() = Some(ts);
        *self.eval_seconds.lock() = secs;
        env.metrics.group_seconds.lock().insert(self.key(), secs);
        (to_send, changed)
    }
}

/// One alert's persisted facts: hash, state, activeAt, firedAt, resolvedAt,
/// keepFiringSince.
type AlertSig = (u64, AlertState, i64, Option<i64>, Option<i64>, Option<i64>);

/// Called after each evaluation with the group, the alerts to send, whether any
/// alert changed state, and (cluster mode) the evaluator lease epoch it ran under.
pub type OnEvaluated = Arc<dyn Fn(&Group, Vec<NotifyAlert>, bool, Option<i64>) + Send + Sync>;

/// What persisting cares about: which alerts exist, their state and times.
fn state_sig(r: &Rule) -> Vec<AlertSig> {
    let mut v: Vec<_> = r
        .active
        .iter()
        .map(|(h, a)| {
            (
                *h,
                a.state,
                a.active_at,
                a.fired_at,
                a.resolved_at,
                a.keep_firing_since,
            )
        })
        .collect();
    v.sort_by_key(|x| x.0);
    v
}

/// Series written last time and not this time get a stale marker (as Prometheus
/// does), so queries stop seeing them at once instead of after the lookback.
fn stale_markers(last: &mut HashSet<LabelMap>, now: &[OutSample]) -> Vec<LabelMap> {
    let current: HashSet<LabelMap> = now.iter().map(|(l, _)| l.clone()).collect();
    let gone: Vec<LabelMap> = last.difference(&current).cloned().collect();
    *last = current;
    gone
}

fn to_series(ts: i64, samples: &[OutSample], stale: &[LabelMap]) -> Vec<TimeSeries> {
    samples
        .iter()
        .map(|(l, v)| (l, *v))
        .chain(stale.iter().map(|l| (l, calm_wire::value::stale_nan())))
        .map(|(l, v)| TimeSeries {
            labels: l
                .iter()
                .map(|(k, v)| Label::new(k.as_str(), v.as_str()))
                .collect(),
            samples: vec![Sample {
                value: v,
                timestamp: ts,
            }],
            ..Default::default()
        })
        .collect()
}

fn write(env: &GroupEnv, series: &[TimeSeries]) -> Result<(), String> {
    if series.is_empty() {
        return Ok(());
    }
    let summary = env
        .runtime
        .block_on(env.sink.write(series, None))
        .map_err(|e| e.to_string())?;
    if summary.rejected > 0 {
        return Err(format!(
            "{} samples refused: {}",
            summary.rejected,
            summary.errors.join("; ")
        ));
    }
    Ok(())
}

/// Runs a group until `stop` says so: waits for each slot, evaluates in a blocking
/// thread, hands alerts to `send`, persists state when it changed.
///
/// Cluster mode: each round first waits on `env.read_barrier` (bounded), so it reads
/// every write acknowledged before it began. With `env.cluster`: only while this
/// collector holds the evaluator lease.
/// Otherwise, at each slot, it reloads the group's shared state (so its API answers
/// what the evaluator sees). On taking the lease over it loads the state first, then
/// evaluates the latest slot its predecessor did not, at once.
pub async fn run(
    group: Arc<Group>,
    env: Arc<GroupEnv>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    on_done: OnEvaluated,
) {
    let interval = group.interval_ms;
    let mut next = group.slot_at_or_before(now_ms()) + interval;
    let mut lease = env.cluster.as_ref().map(|c| c.lease.watch());
    // The lease epoch this task last evaluated under: a new one (even this
    // collector's own, regained after someone else held it) means loading the state.
    let mut holder: Option<i64> = None;
    loop {
        if *stop.borrow() {
            return;
        }
        let wait = (next - now_ms()).max(0) as u64;
        let lease_changed = async {
            match lease.as_mut() {
                Some(rx) => {
                    if rx.changed().await.is_err() {
                        std::future::pending::<()>().await
                    }
                }
                None => std::future::pending::<()>().await,
            }
        };
        let mut timer = true;
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_millis(wait)) => {}
            _ = stop.changed() => return,
            _ = lease_changed => timer = false,
        }
        let mut ts = next;
        let mut epoch = None;
        if let Some(c) = &env.cluster {
            match c.lease.held() {
                Some(e) if holder != Some(e) => {
                    // Taking over: the predecessor's state first, then the slot due.
                    let (g, st) = (group.clone(), env.state.clone());
                    let saved =
                        tokio::task::spawn_blocking(move || super::state::refresh(&*st, &g, true))
                            .await;
                    let saved = match saved {
                        Ok(Ok(s)) => s,
                        Ok(Err(err)) => {
                            tracing::warn!(group = %group.name, error = %err, "cannot load the alert state as new evaluator; retrying at the next slot");
                            if timer {
                                next += interval;
                            }
                            continue;
                        }
                        Err(err) => {
                            tracing::error!(group = %group.name, error = %err, "loading alert state panicked");
                            continue;
                        }
                    };
                    holder = Some(e);
                    let due = group.slot_at_or_before(now_ms());
                    if saved.is_some_and(|s| s >= due) {
                        next = due + interval;
                        continue;
                    }
                    tracing::info!(group = %group.name, slot = due, "evaluating as the new alert evaluator");
                    ts = due;
                    epoch = Some(e);
                }
                Some(e) => {
                    if !timer {
                        continue;
                    }
                    epoch = Some(e);
                }
                None => {
                    holder = None;
                    if timer {
                        let (g, st) = (group.clone(), env.state.clone());
                        if let Ok(Err(err)) = tokio::task::spawn_blocking(move || {
                            super::state::refresh(&*st, &g, false)
                        })
                        .await
                        {
                            tracing::debug!(group = %group.name, error = %err, "cannot follow the shared alert state");
                        }
                        next += interval;
                        let now = now_ms();
                        if next <= now {
                            next = group.slot_at_or_before(now) + interval;
                        }
                    }
                    continue;
                }
            }
        } else if !timer {
            continue;
        }
        if let Some(b) = &env.read_barrier {
            // Read after write (cluster mode): the round waits for the writes
            // acknowledged before it, at most half the interval so it still runs
            // within it.
            let max = std::time::Duration::from_millis((interval / 2).max(0) as u64);
            tokio::select! {
                _ = b.wait_caught_up(max) => {}
                _ = stop.changed() => return,
            }
        }
        let (g, e) = (group.clone(), env.clone());
        match tokio::task::spawn_blocking(move || g.evaluate(ts, &e)).await {
            Ok((alerts, changed)) => on_done(&group, alerts, changed, epoch),
            Err(e) => {
                tracing::error!(group = %group.name, error = %e, "rule group evaluation panicked")
            }
        }
        next = ts + interval;
        let now = now_ms();
        if next <= now {
            let missed = (now - next) / interval + 1;
            env.metrics
                .iterations_missed
                .fetch_add(missed as u64, Ordering::Relaxed);
            tracing::warn!(group = %group.name, missed, "rule group evaluation took longer than its interval: slots skipped");
            next += missed * interval;
        }
    }
}

/// A result's label set as the alert code keeps labels.
fn label_map(l: &crate::promql::Labels) -> LabelMap {
    l.pairs()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}
