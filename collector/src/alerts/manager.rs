//! The rule manager: loads the rule files, runs one task per group, reloads without
//! losing alert state, and persists that state.
//!
//! ```text
//! start:  load files ─ok─▶ groups (state restored from <data_dir>/alerts) ─▶ tasks
//! reload (SIGHUP, POST /-/reload):
//!         load files ─error─▶ keep the running groups; log file:line: reason;
//!                             calm_rule_config_last_reload_successful 0
//!                    ─ok────▶ stop old tasks, copy each rule's alerts to the new
//!                             group (same file, group, rule name and labels), start
//! ```

use super::group::{self, Group, GroupEnv};
use super::notify::{Notifiers, NotifyAlert};
use super::rules::{expand_paths, load_files, RuleError};
use super::state;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How the manager is set up.
pub struct ManagerOptions {
    /// `rule_files` as configured (globs allowed).
    pub rule_files: Vec<String>,
    /// Relative rule paths are relative to this (the config file's directory).
    pub base_dir: PathBuf,
    /// `evaluation_interval`, ms.
    pub default_interval_ms: i64,
    /// Where alert state is persisted.
    pub state: Arc<dyn crate::storage::alert_state::AlertStateStore>,
}

struct Running {
    group: Arc<Group>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Runs the rule groups.
pub struct Manager {
    opts: ManagerOptions,
    env: Arc<GroupEnv>,
    notifiers: Arc<Notifiers>,
    running: tokio::sync::Mutex<Vec<Running>>,
    /// The groups now running, for the API.
    groups: parking_lot::RwLock<Vec<Arc<Group>>>,
}

impl Manager {
    /// A manager; nothing runs until [`Manager::reload`].
    pub fn new(opts: ManagerOptions, env: GroupEnv, notifiers: Arc<Notifiers>) -> Arc<Manager> {
        Arc::new(Manager {
            opts,
            env: Arc::new(env),
            notifiers,
            running: tokio::sync::Mutex::new(Vec::new()),
            groups: parking_lot::RwLock::new(Vec::new()),
        })
    }

    /// The groups now running.
    pub fn groups(&self) -> Vec<Arc<Group>> {
        self.groups.read().clone()
    }

    /// The notifiers (error rules send through them too).
    pub fn notifiers(&self) -> Arc<Notifiers> {
        self.notifiers.clone()
    }

    /// The external URL notifications link to.
    pub fn external_url(&self) -> &str {
        &self.env.external_url
    }

    /// Loads the rule files and (re)starts the groups. On error the running groups
    /// stay as they are and every problem is returned (and logged).
    pub async fn reload(self: &Arc<Self>) -> Result<usize, Vec<RuleError>> {
        let mut running = self.running.lock().await;
        let paths = expand_paths(&self.opts.rule_files, &self.opts.base_dir);
        let loaded = tokio::task::spawn_blocking(move || load_files(&paths))
            .await
            .unwrap_or_else(|e| {
                Err(vec![RuleError {
                    file: String::new(),
                    line: 0,
                    reason: format!("loading panicked: {e}"),
                }])
            });
        let m = &self.env.metrics;
        let specs = match loaded {
            Ok(s) => s,
            Err(errors) => {
                m.reload_successful.store(0, Ordering::Relaxed);
                for e in &errors {
                    tracing::error!(error = %e, "rule file invalid: keeping the previous rules");
                }
                return Err(errors);
            }
        };
        for r in running.iter() {
            let _ = r.stop.send(true);
        }
        let old: Vec<Running> = std::mem::take(&mut *running);
        let mut old_groups = Vec::with_capacity(old.len());
        for r in old {
            let _ = r.task.await;
            old_groups.push(r.group);
        }
        let first_load = old_groups.is_empty();
        let mut rules = 0;
        let mut new_groups = Vec::with_capacity(specs.len());
        for spec in specs {
            rules += spec.rules.len();
            let g = Group::new(spec, self.opts.default_interval_ms);
            match old_groups
                .iter()
                .find(|o| o.file == g.file && o.name == g.name)
            {
                Some(o) => state::copy_state(o, &g),
                None if first_load => {
                    let n = state::restore(&*self.opts.state, &g);
                    if n > 0 {
                        tracing::info!(group = %g.name, alerts = n, "alert state restored");
                    }
                }
                None => {}
            }
            new_groups.push(Arc::new(g));
        }
        for g in &new_groups {
            let (tx, rx) = watch::channel(false);
            let me = Arc::downgrade(self);
            let on_done: group::OnEvaluated = Arc::new(
                move |g: &Group, alerts: Vec<NotifyAlert>, changed: bool, epoch: Option<i64>| {
                    let Some(m) = me.upgrade() else { return };
                    match (&m.env.cluster, epoch) {
                        // Cluster mode: the state is saved after every evaluation (the
                        // other collectors follow it), fenced by the lease epoch; an
                        // evaluator that lost the lease meanwhile sends nothing.
                        (Some(c), Some(epoch)) => {
                            match state::save_fenced(&*m.opts.state, g, c.lease.node(), epoch) {
                                Ok(true) => m.notifiers.send(alerts),
                                Ok(false) => {
                                    m.env
                                        .metrics
                                        .evaluations_fenced
                                        .fetch_add(1, Ordering::Relaxed);
                                    tracing::warn!(group = %g.name, epoch, "this collector's evaluator lease was taken over during the evaluation: its results are not saved or sent");
                                }
                                Err(e) => {
                                    tracing::error!(group = %g.name, error = %e, "cannot persist alert state");
                                    // The notification log checks the lease again.
                                    m.notifiers.send(alerts);
                                }
                            }
                        }
                        _ => {
                            m.notifiers.send(alerts);
                            if changed {
                                if let Err(e) = state::save(&*m.opts.state, g) {
                                    tracing::error!(group = %g.name, error = %e, "cannot persist alert state");
                                }
                            }
                        }
                    }
                },
            );
            let task = tokio::spawn(group::run(g.clone(), self.env.clone(), rx, on_done));
            running.push(Running {
                group: g.clone(),
                stop: tx,
                task,
            });
        }
        *self.groups.write() = new_groups;
        m.reload_successful.store(1, Ordering::Relaxed);
        m.reload_success_ts
            .store(chrono::Utc::now().timestamp(), Ordering::Relaxed);
        tracing::info!(groups = running.len(), rules, "rule files loaded");
        Ok(rules)
    }
}
