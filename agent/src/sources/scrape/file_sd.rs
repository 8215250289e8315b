//! Prometheus' `file_sd_configs`: targets listed in JSON or YAML files, re-read every
//! `refresh_interval` (default 5m), so targets come and go without a restart.
//!
//! ```text
//! [[scrape]]
//! job = "apps"
//! scheme = "http"                 # default http
//! metrics_path = "/metrics"       # default /metrics
//! [[scrape.file_sd_configs]]
//! files = ["/etc/calm/targets/*.json", "/etc/calm/targets/*.yml"]   # * and ? in the file name
//! refresh_interval = "30s"
//!
//! targets.json: [{"targets": ["10.0.0.1:9100", "10.0.0.2:9100"], "labels": {"team": "web"}}]
//! ```
//! Each target gets the section's settings (interval, relabel rules, …), the group's
//! labels and `__meta_filepath` (for relabel rules). A file that cannot be read or
//! parsed keeps the targets it last gave (logged), as in Prometheus. A target that
//! disappears stops being scraped and its series get stale markers.

use super::config::ScrapeConfig;
use super::scraper::{self, Sink};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// One `[[scrape.file_sd_configs]]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct FileSdConfig {
    pub files: Vec<String>,
    pub refresh_interval: Option<calm_serve::config::Duration>,
}

/// One target group of a file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Group {
    pub targets: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

const DEFAULT_REFRESH: Duration = Duration::from_secs(300);

/// Checks a section with file_sd_configs when the config is read.
pub fn check(c: &ScrapeConfig) -> Result<(), String> {
    let ctx = |e: String| format!("[[scrape]] job = {:?}: file_sd_configs: {e}", c.job);
    for f in &c.file_sd_configs {
        if f.files.is_empty() {
            return Err(ctx("files is empty".into()));
        }
        for p in &f.files {
            let name = Path::new(p)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("");
            if !(name.ends_with(".json") || name.ends_with(".yml") || name.ends_with(".yaml")) {
                return Err(ctx(format!("{p:?} must end in .json, .yml or .yaml")));
            }
            let dir = Path::new(p)
                .parent()
                .map(|d| d.to_string_lossy().into_owned())
                .unwrap_or_default();
            if dir.contains(['*', '?', '[']) {
                return Err(ctx(format!(
                    "{p:?}: patterns are allowed in the file name only"
                )));
            }
        }
        refresh(f).map_err(ctx)?;
    }
    // A template target with the section's other settings must resolve.
    let mut probe = template(c, "127.0.0.1:1", &BTreeMap::new(), "");
    probe.file_sd_configs.clear();
    probe.resolve().map(|_| ())
}

fn refresh(f: &FileSdConfig) -> Result<Duration, String> {
    match f.refresh_interval {
        None => Ok(DEFAULT_REFRESH),
        Some(d) if d.is_zero() => Err("refresh_interval must be more than 0s".into()),
        Some(d) => Ok(d.get()),
    }
}

/// `*` any run of characters, `?` one character (the file-name part of a glob).
fn wildcard(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The files a pattern names now, sorted.
fn expand(pattern: &str) -> Vec<PathBuf> {
    let path = Path::new(pattern);
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    if !name.contains(['*', '?']) {
        return vec![path.to_path_buf()];
    }
    let mut out: Vec<PathBuf> = std::fs::read_dir(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    })
    .map(|rd| {
        rd.flatten()
            .filter(|e| wildcard(name, &e.file_name().to_string_lossy()))
            .map(|e| e.path())
            .collect()
    })
    .unwrap_or_default();
    out.sort();
    out
}

/// A file's groups (JSON, or YAML by extension).
pub fn parse(path: &Path, text: &str) -> Result<Vec<Group>, String> {
    let yaml = path.extension().is_some_and(|e| e == "yml" || e == "yaml");
    if yaml {
        serde_saphyr::from_str::<Vec<Group>>(text).map_err(|e| e.to_string())
    } else {
        serde_json::from_str::<Vec<Group>>(text).map_err(|e| e.to_string())
    }
}

/// The section as one static target.
fn template(
    c: &ScrapeConfig,
    address: &str,
    labels: &BTreeMap<String, String>,
    file: &str,
) -> ScrapeConfig {
    let scheme = c.scheme.clone().unwrap_or_else(|| "http".into());
    let path = c.metrics_path.clone().unwrap_or_else(|| "/metrics".into());
    let mut t = c.clone();
    t.url = format!("{scheme}://{address}{path}");
    t.file_sd_configs.clear();
    for (k, v) in labels {
        t.labels.insert(k.clone(), v.clone());
    }
    if !file.is_empty() {
        t.labels.insert("__meta_filepath".into(), file.to_string());
    }
    t
}

/// Keeps the section's targets in step with its files until the process ends.
pub async fn run(c: ScrapeConfig, client: reqwest::Client, sink: Sink) {
    let every = c
        .file_sd_configs
        .iter()
        .filter_map(|f| refresh(f).ok())
        .min()
        .unwrap_or(DEFAULT_REFRESH);
    let mut last_good: HashMap<PathBuf, Vec<Group>> = HashMap::new();
    let mut running: HashMap<String, Arc<tokio::sync::Notify>> = HashMap::new();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut files: Vec<PathBuf> = c
            .file_sd_configs
            .iter()
            .flat_map(|f| f.files.iter().flat_map(|p| expand(p)))
            .collect();
        files.sort();
        files.dedup();
        // Files gone from disk give no targets any more.
        last_good.retain(|p, _| files.contains(p));
        for f in &files {
            match std::fs::read_to_string(f)
                .map_err(|e| e.to_string())
                .and_then(|t| parse(f, &t))
            {
                Ok(groups) => {
                    last_good.insert(f.clone(), groups);
                }
                Err(e) => tracing::warn!(file = %f.display(), error = %e,
                    "cannot read file_sd targets; keeping the ones it gave before"),
            }
        }
        // The wanted targets, keyed by everything that makes them differ.
        let mut wanted: BTreeMap<String, ScrapeConfig> = BTreeMap::new();
        for (file, groups) in &last_good {
            for g in groups {
                for addr in &g.targets {
                    let t = template(&c, addr, &g.labels, &file.to_string_lossy());
                    let key = format!("{}|{:?}", t.url, t.labels);
                    wanted.insert(key, t);
                }
            }
        }
        running.retain(|key, stop| {
            let keep = wanted.contains_key(key);
            if !keep {
                stop.notify_one();
            }
            keep
        });
        for (key, t) in wanted {
            if running.contains_key(&key) {
                continue;
            }
            match t.resolve() {
                Ok(target) if target.dropped => {}
                Ok(target) => {
                    let stop = Arc::new(tokio::sync::Notify::new());
                    tokio::spawn(scraper::run(
                        target,
                        client.clone(),
                        sink.clone(),
                        stop.clone(),
                    ));
                    running.insert(key, stop);
                }
                Err(e) => tracing::warn!(error = %e, "file_sd target skipped"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_and_files() {
        assert!(wildcard("*.json", "a.json"));
        assert!(wildcard("t?.json", "t1.json"));
        assert!(!wildcard("*.json", "a.yml"));
        assert!(wildcard("*", ""));
        let g = parse(
            Path::new("x.json"),
            r#"[{"targets":["a:1","b:2"],"labels":{"team":"web"}}]"#,
        )
        .expect("json");
        assert_eq!(g[0].targets.len(), 2);
        let y = parse(
            Path::new("x.yml"),
            "- targets: ['a:1']\n  labels:\n    team: web\n",
        )
        .expect("yaml");
        assert_eq!(y[0].labels["team"], "web");
    }
}
