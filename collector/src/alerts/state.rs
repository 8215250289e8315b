//! Alert state kept across restarts: one JSON document per group in the alert state
//! store (`storage/alert_state.rs`; embedded: a file per group in `<data_dir>/alerts/`,
//! rewritten with a temp file, fsync and rename), saved after an evaluation that
//! changed an alert's state or times.
//!
//! ```text
//! key: the group's key (file;name)
//! {"file":"rules.yml","group":"node","rules":[{"key":"a\u00ffDown…","alerts":[
//!   {"labels":{…},"annotations":{…},"state":"firing","active_at":…,"fired_at":…,…}]}]}
//! ```
//! On start, a group takes the alerts of each rule whose key (kind, name, labels) is
//! unchanged: a firing alert stays firing with its `activeAt`, and a pending one fires
//! when its `for` is over counted from its original `activeAt` — on time, not later
//! (Prometheus re-derives this from `ALERTS_FOR_STATE` with a grace period; a file is
//! exact and needs no query at start).

use super::alert::Alert;
use super::group::Group;
use crate::storage::alert_state::AlertStateStore;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct RuleState {
    key: String,
    alerts: Vec<Alert>,
    /// The last evaluation's health, error, time and duration (cluster mode: what the
    /// collectors that do not evaluate answer `/api/v1/rules` with).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    health: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_eval_ms: Option<i64>,
    #[serde(default)]
    eval_seconds: f64,
}

#[derive(Serialize, Deserialize)]
struct GroupState {
    file: String,
    group: String,
    rules: Vec<RuleState>,
    /// When the group was last evaluated (its slot), ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_eval_ms: Option<i64>,
    #[serde(default)]
    eval_seconds: f64,
}

/// Writes the group's alert state durably.
pub fn save(
    store: &dyn AlertStateStore,
    group: &Group,
) -> Result<(), crate::storage::StorageError> {
    store.save(&group.key(), &encode(group)?)
}

/// Writes the group's alert state if `(node, epoch)` still holds the evaluator lease
/// (cluster mode); `Ok(false)` when fenced.
pub fn save_fenced(
    store: &dyn AlertStateStore,
    group: &Group,
    node: &str,
    epoch: i64,
) -> Result<bool, crate::storage::StorageError> {
    store.save_fenced(&group.key(), &encode(group)?, node, epoch)
}

fn encode(group: &Group) -> Result<Vec<u8>, crate::storage::StorageError> {
    let state = GroupState {
        file: group.file.clone(),
        group: group.name.clone(),
        rules: group
            .rules
            .iter()
            .map(|r| {
                let r = r.lock();
                RuleState {
                    key: r.spec.key(),
                    alerts: r.active.values().cloned().collect(),
                    health: Some(r.health.as_str().to_string()),
                    last_error: r.last_error.clone(),
                    last_eval_ms: r.last_eval_ms,
                    eval_seconds: r.eval_seconds,
                }
            })
            .collect(),
        last_eval_ms: *group.last_eval_ms.lock(),
        eval_seconds: *group.eval_seconds.lock(),
    };
    serde_json::to_vec(&state).map_err(|e| {
        crate::storage::StorageError::new(crate::storage::ErrorKind::BadInput, e.to_string())
    })
}

/// Replaces the group's alerts (and each rule's last health, error and evaluation
/// time) with what the store holds: a collector that does not evaluate (cluster mode)
/// keeps its view of the rules current this way, and a new evaluator starts from its
/// predecessor's state. With `taking_over`, every alert counts as not sent yet, so
/// this collector's notifiers hear of all of them at its first evaluation (the
/// notification log keeps that from re-sending what was already sent). Returns the
/// group's last evaluation time as saved, or an error (the group is left as it was).
pub fn refresh(
    store: &dyn AlertStateStore,
    group: &Group,
    taking_over: bool,
) -> Result<Option<i64>, String> {
    let key = group.key();
    let Some(bytes) = store.load(&key).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let state: GroupState = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    if state.file != group.file || state.group != group.name {
        return Ok(None);
    }
    for rule in &group.rules {
        let mut r = rule.lock();
        let key = r.spec.key();
        r.active.clear();
        if let Some(s) = state.rules.iter().find(|s| s.key == key) {
            for a in &s.alerts {
                let mut a = a.clone();
                if taking_over {
                    a.last_sent_at = None;
                }
                r.active.insert(super::alert::labels_hash(&a.labels), a);
            }
            r.health = match s.health.as_deref() {
                Some("ok") => super::rule::Health::Ok,
                Some("err") => super::rule::Health::Err,
                _ => super::rule::Health::Unknown,
            };
            r.last_error = s.last_error.clone();
            r.last_eval_ms = s.last_eval_ms;
            r.eval_seconds = s.eval_seconds;
        }
    }
    *group.last_eval_ms.lock() = state.last_eval_ms;
    *group.eval_seconds.lock() = state.eval_seconds;
    Ok(state.last_eval_ms)
}

/// Restores a group's alert state from the store, if it holds one. Returns how many
/// alerts were restored.
pub fn restore(store: &dyn AlertStateStore, group: &Group) -> usize {
    let key = group.key();
    let path = store.describe(&key);
    let bytes = match store.load(&key) {
        Ok(Some(b)) => b,
        Ok(None) => return 0,
        Err(e) => {
            tracing::warn!(path = %path, error = %e, "cannot read saved alert state; starting without it");
            return 0;
        }
    };
    let state: GroupState = match serde_json::from_slice(&bytes) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(path = %path, error = %e, "saved alert state is damaged; starting without it");
            return 0;
        }
    };
    if state.file != group.file || state.group != group.name {
        return 0;
    }
    let mut restored = 0;
    let mut used = vec![false; state.rules.len()];
    for rule in &group.rules {
        let mut r = rule.lock();
        let key = r.spec.key();
        // Same key twice in a group cannot happen (validation refuses it), but take
        // each saved entry once anyway.
        if let Some(i) = state
            .rules
            .iter()
            .enumerate()
            .position(|(i, s)| !used[i] && s.key == key)
        {
            used[i] = true;
            for a in &state.rules[i].alerts {
                r.active
                    .insert(super::alert::labels_hash(&a.labels), a.clone());
                restored += 1;
            }
        }
    }
    restored
}

/// Moves the alert state of rules from `old` to `new` where the group and the rule
/// key match (a reload keeps alerts as they are).
pub fn copy_state(old: &Group, new: &Group) {
    if old.file != new.file || old.name != new.name {
        return;
    }
    for rule in &new.rules {
        let mut n = rule.lock();
        let key = n.spec.key();
        for o in &old.rules {
            let o = o.lock();
            if o.spec.key() == key {
                n.active = o.active.clone();
                n.last_series = o.last_series.clone();
                n.health = o.health;
                n.last_error = o.last_error.clone();
                n.last_eval_ms = o.last_eval_ms;
                n.eval_seconds = o.eval_seconds;
                break;
            }
        }
    }
}
