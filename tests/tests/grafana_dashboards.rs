//! The Grafana dashboards of `dashboards/` work out of the box.
//!
//! - `dashboards_schema`: the fields of Grafana's dashboard model that Calm relies on: fixed,
//!   unique uids; a `datasource` variable (no `__inputs`, which file provisioning ignores)
//!   that every panel, target and query variable uses; unique panel ids; grid positions
//!   inside the 24 columns and not overlapping; a known unit on every panel; range
//!   selectors only `[$__rate_interval]` or `[$__range]`; the errors table linking into the
//!   collector's issue pages; the provisioning files parsed and consistent with the
//!   dashboards and the README.
//! - `dashboards_on_agent_data`: a collector fed by a real `calm-agent` (host metrics, a
//!   scrape of the collector's and of the agent's own `/metrics`), the real `sentry-sdk`
//!   through the agent's relay, a plain envelope POST, the host recording rules and an
//!   always-firing alert with a webhook. Every target of every dashboard, variables expanded
//!   as Grafana does, parses and returns data; the top-issues table's counts equal the
//!   issues API's.
//! - `host_dashboard_on_node_exporter_data`: the host dashboard (and the fleet dashboard's
//!   host panels) on a collector fed by the real node_exporter through a real Prometheus'
//!   remote-write.

use calm_tests::agent::Agent;
use calm_tests::api::PromApi;
use calm_tests::collector::collector_bin;
use calm_tests::peers::node_remote_write_config;
use calm_tests::webhook::WebhookReceiver;
use calm_tests::{
    notice, now_ms, require_peer, require_python_modules, wait_for, workspace_root, Collector,
    NodeExporter, Prometheus,
};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const DASHBOARDS: &[(&str, &str)] = &[
    ("host.json", "calm-host"),
    ("fleet.json", "calm-fleet"),
    ("collector.json", "calm-collector"),
    ("errors.json", "calm-errors"),
];

/// Units Grafana knows (its value-format ids) that the dashboards may use.
const UNITS: &[&str] = &[
    "s",
    "ms",
    "short",
    "none",
    "percentunit",
    "bytes",
    "Bps",
    "iops",
    "ops",
    "pps",
    "reqps",
    "cps",
    "eps",
    "dateTimeFromNow",
];

/// What the test's Grafana would send: a 5 minute range at a 15 s step, the data source's
/// scrape interval 15 s (provisioning's `timeInterval`): `$__rate_interval` =
/// max(4 × 15 s, 15 s + 15 s) = 1m.
const RANGE_S: i64 = 300;
const STEP_S: i64 = 15;
const RATE_INTERVAL: &str = "1m";

/// Targets allowed to be empty on the agent-fed source, each with its reason.
/// (dashboard uid, panel title, refId, reason). `node_uname_info` ones are added at run
/// time only while the agent lacks that metric.
const EMPTY_OK: &[(&str, &str, &str, &str)] = &[];

fn dashboards_dir() -> PathBuf {
    workspace_root().join("dashboards")
}

fn load_json(name: &str) -> Value {
    let path = dashboards_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?} is not JSON: {e}"))
}

fn load_yaml(rel: &str) -> Value {
    let path = dashboards_dir().join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path:?} is not YAML: {e}"))
}

/// Every panel of a dashboard, rows' nested panels included.
fn all_panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().into_iter().flatten() {
        out.push(p);
        for n in p["panels"].as_array().into_iter().flatten() {
            out.push(n);
        }
    }
    out
}

fn ds_ref() -> Value {
    json!({"type": "prometheus", "uid": "${datasource}"})
}

/// One query of a panel.
#[derive(Clone, Debug)]
struct Target {
    uid: String,
    panel: String,
    ref_id: String,
    expr: String,
    instant: bool,
}

fn targets(d: &Value) -> Vec<Target> {
    let uid = d["uid"].as_str().unwrap_or("").to_string();
    let mut out = Vec::new();
    for p in all_panels(d) {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(Target {
                uid: uid.clone(),
                panel: p["title"].as_str().unwrap_or("").to_string(),
                ref_id: t["refId"].as_str().unwrap_or("").to_string(),
                expr: t["expr"].as_str().unwrap_or("").to_string(),
                instant: t["instant"] == true && t["range"] != true,
            });
        }
    }
    out
}

// ------------------------------------------------------------------ variables

/// Grafana's `prometheusRegularEscape` (single-value variables).
fn regular_escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\'', "\\\\'")
}

/// Grafana's `prometheusSpecialRegexEscape` (multi-value and include-all variables): the
/// regex metacharacters get a backslash, itself escaped inside the PromQL string.
fn special_regex_escape(v: &str) -> String {
    let mut out = String::new();
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\\\\\"),
            '$' | '^' | '*' | '{' | '}' | '[' | ']' | '\'' | '+' | '?' | '.' | '(' | ')' | '|' => {
                out.push_str("\\\\");
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

/// What Grafana puts in place of a variable holding `values`.
fn interpolate(values: &[String], multi: bool) -> String {
    if !multi {
        return regular_escape(values.first().map(String::as_str).unwrap_or(""));
    }
    let esc: Vec<String> = values.iter().map(|v| special_regex_escape(v)).collect();
    if esc.len() == 1 {
        esc[0].clone()
    } else {
        format!("({})", esc.join("|"))
    }
}

/// Replaces `$name` and `${name}` (and `${name:format}`, format ignored) from `vars`;
/// an error names any variable that is not defined.
fn expand(s: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, len) = if let Some(braced) = after.strip_prefix('{') {
            let end = braced
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in {s:?}"))?;
            let inner = &braced[..end];
            (inner.split(':').next().unwrap_or(""), end + 2)
        } else {
            let n = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..n], n)
        };
        let v = vars
            .get(name)
            .ok_or_else(|| format!("undefined variable ${name} in {s:?}"))?;
        out.push_str(v);
        rest = &after[len..];
    }
    out.push_str(rest);
    Ok(out)
}

fn builtins() -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert("__rate_interval".into(), RATE_INTERVAL.into());
    m.insert("__interval".into(), format!("{STEP_S}s"));
    m.insert("__interval_ms".into(), (STEP_S * 1000).to_string());
    m.insert("__range".into(), format!("{RANGE_S}s"));
    m.insert("__range_s".into(), RANGE_S.to_string());
    m.insert("__range_ms".into(), (RANGE_S * 1000).to_string());
    m
}

/// `label_values(expr, label)` or `label_values(label)` → (match, label).
fn parse_label_values(q: &str) -> Option<(Option<String>, String)> {
    let inner = q.trim().strip_prefix("label_values(")?.strip_suffix(')')?;
    match inner.rfind(',') {
        Some(i) if !inner[i..].contains('}') => Some((
            Some(inner[..i].trim().to_string()),
            inner[i + 1..].trim().to_string(),
        )),
        _ => Some((None, inner.trim().to_string())),
    }
}

/// How variables are resolved against one source.
struct Source<'a> {
    name: &'a str,
    api: PromApi,
    /// Metric names a variable query may fall back from (missing → replacement), with the
    /// notice printed when it is used.
    fallback: Vec<(&'a str, &'a str)>,
}

impl Source<'_> {
    /// What `/api/v1/label/<label>/values?match[]=…` answers over the range (Grafana 10+).
    fn label_values(
        &self,
        matcher: Option<&str>,
        label: &str,
        start: i64,
        end: i64,
    ) -> Vec<String> {
        let mut params = vec![
            ("start", (start / 1000).to_string()),
            ("end", (end / 1000).to_string()),
        ];
        if let Some(m) = matcher {
            params.push(("match[]", m.to_string()));
        }
        let data = self
            .api
            .get_data(&format!("/api/v1/label/{label}/values"), &params)
            .unwrap_or_else(|e| panic!("{}: label_values: {e}", self.name));
        data.as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(String::from))
            .collect()
    }

    /// Every assignment of the dashboard's variables to test: single-value variables take
    /// each of their values in turn (at most `max` combinations), multi-value ones all
    /// their values (as `(a|b)`, what selecting several gives).
    fn assignments(
        &self,
        d: &Value,
        start: i64,
        end: i64,
        max: usize,
    ) -> Vec<BTreeMap<String, String>> {
        let vars: Vec<Value> = d["templating"]["list"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut done = Vec::new();
        self.assign(&vars, 0, builtins(), start, end, &mut done, max);
        assert!(
            !done.is_empty(),
            "{}: {}: no assignment of the variables has values",
            self.name,
            d["uid"]
        );
        done
    }

    #[allow(clippy::too_many_arguments)]
    fn assign(
        &self,
        vars: &[Value],
        i: usize,
        cur: BTreeMap<String, String>,
        start: i64,
        end: i64,
        done: &mut Vec<BTreeMap<String, String>>,
        max: usize,
    ) {
        if done.len() >= max {
            return;
        }
        let Some(v) = vars.get(i) else {
            done.push(cur);
            return;
        };
        let name = v["name"].as_str().unwrap_or("").to_string();
        let mut next = |value: String| {
            let mut c = cur.clone();
            c.insert(name.clone(), value);
            self.assign(vars, i + 1, c, start, end, done, max);
        };
        match v["type"].as_str() {
            Some("datasource") => next("calm".into()),
            Some("textbox") | Some("constant") => next(v["query"].as_str().unwrap_or("").into()),
            Some("query") => {
                let q = v["query"]["query"]
                    .as_str()
                    .or(v["query"].as_str())
                    .unwrap_or("");
                let q = expand(q, &cur).unwrap_or_else(|e| panic!("variable {name}: {e}"));
                let (matcher, label) = parse_label_values(&q)
                    .unwrap_or_else(|| panic!("variable {name}: not label_values(): {q}"));
                let mut values = self.label_values(matcher.as_deref(), &label, start, end);
                if values.is_empty() {
                    for (missing, instead) in &self.fallback {
                        if let Some(m) = matcher.as_deref().filter(|m| m.contains(missing)) {
                            let m = m.replace(missing, instead);
                            values = self.label_values(Some(&m), &label, start, end);
                            notice(&format!(
                                "NOTICE grafana_dashboards ({}): no `{missing}` series, so variable \
                                 ${name} ({q}) is read from `{instead}` instead: values {values:?}",
                                self.name
                            ));
                        }
                    }
                }
                assert!(
                    !values.is_empty(),
                    "{}: variable ${name} = {q} has no values",
                    self.name
                );
                let multi = v["multi"] == true || v["includeAll"] == true;
                if multi {
                    next(interpolate(&values, true));
                } else {
                    for val in values {
                        next(interpolate(&[val], false));
                    }
                }
            }
            other => panic!("variable {name}: type {other:?} not handled by this test"),
        }
    }
}

/// Runs one expanded target; Ok(series count) or Err(what went wrong).
fn run_target(
    api: &PromApi,
    t: &Target,
    expr: &str,
    start: i64,
    end: i64,
) -> Result<usize, String> {
    let (path, params) = if t.instant {
        (
            "/api/v1/query",
            vec![
                ("query", expr.to_string()),
                ("time", (end / 1000).to_string()),
            ],
        )
    } else {
        (
            "/api/v1/query_range",
            vec![
                ("query", expr.to_string()),
                ("start", (start / 1000).to_string()),
                ("end", (end / 1000).to_string()),
                ("step", STEP_S.to_string()),
            ],
        )
    };
    // Grafana's data source is provisioned with httpMethod POST.
    let (status, v) = api.call(true, path, &params).map_err(|e| e.to_string())?;
    if status != 200 || v["status"] != "success" {
        return Err(format!("HTTP {status}: {v}"));
    }
    let result = &v["data"]["result"];
    let n = match v["data"]["resultType"].as_str() {
        Some("scalar") | Some("string") => 1,
        _ => result.as_array().map(Vec::len).unwrap_or(0),
    };
    Ok(n)
}

/// Runs every target of `files` under every variable assignment against `src`; retries
/// the empty ones not in `empty_ok` for up to `settle` (data may still be arriving), then returns the
/// failures (parse errors, and empty results not in `empty_ok`). Prints a table.
fn check_dashboards(
    src: &Source,
    files: &[&str],
    empty_ok: &[(String, String, String, String)],
    settle: Duration,
) -> Vec<String> {
    let mut pending: Vec<(Target, String)> = Vec::new();
    let mut count = 0;
    for f in files {
        let d = load_json(f);
        let now = now_ms();
        for vars in src.assignments(&d, now - RANGE_S * 1000, now, 4) {
            for t in targets(&d) {
                let expr =
                    expand(&t.expr, &vars).unwrap_or_else(|e| panic!("{}/{}: {e}", t.uid, t.panel));
                pending.push((t.clone(), expr));
                count += 1;
            }
        }
    }
    let mut report: BTreeMap<(String, String, String, String), Result<usize, String>> =
        BTreeMap::new();
    let deadline = std::time::Instant::now() + settle;
    loop {
        let mut still = Vec::new();
        for (t, expr) in pending {
            let end = now_ms();
            let r = run_target(&src.api, &t, &expr, end - RANGE_S * 1000, end);
            let key = (
                t.uid.clone(),
                t.panel.clone(),
                t.ref_id.clone(),
                expr.clone(),
            );
            let excused = empty_ok
                .iter()
                .any(|(u, p, r, _)| *u == t.uid && *p == t.panel && *r == t.ref_id);
            if matches!(r, Ok(0)) && !excused {
                still.push((t, expr));
            }
            report.insert(key, r);
        }
        pending = still;
        if pending.is_empty() || std::time::Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    let mut failures = Vec::new();
    eprintln!("--- {}: {count} targets", src.name);
    for ((uid, panel, ref_id, expr), r) in &report {
        let line = match r {
            Ok(n) => format!("{n:>4} series"),
            Err(e) => format!("ERROR {e}"),
        };
        eprintln!("{uid:<15} {panel:<42} {ref_id} {line}");
        let excused = empty_ok
            .iter()
            .find(|(u, p, r, _)| u == uid && p == panel && r == ref_id);
        match (r, excused) {
            (Err(e), _) => failures.push(format!("{uid} / {panel} / {ref_id}: {expr}\n    {e}")),
            (Ok(0), Some((_, _, _, why))) => eprintln!("    empty, allowed: {why}"),
            (Ok(0), None) => failures.push(format!("{uid} / {panel} / {ref_id}: no data: {expr}")),
            _ => {}
        }
    }
    failures
}

// ------------------------------------------------------------------ schema

/// Rectangles of `panels` (one level) must not overlap and must fit the 24 columns.
fn check_grid(uid: &str, panels: &[&Value], errs: &mut Vec<String>) {
    let mut rects = Vec::new();
    for p in panels {
        let g = &p["gridPos"];
        let (Some(x), Some(y), Some(w), Some(h)) = (
            g["x"].as_i64(),
            g["y"].as_i64(),
            g["w"].as_i64(),
            g["h"].as_i64(),
        ) else {
            errs.push(format!(
                "{uid}: panel {} has no complete gridPos: {g}",
                p["title"]
            ));
            continue;
        };
        if w <= 0 || h <= 0 || x < 0 || y < 0 || x + w > 24 {
            errs.push(format!(
                "{uid}: panel {} gridPos out of the grid: {g}",
                p["title"]
            ));
        }
        rects.push((p["title"].as_str().unwrap_or("").to_string(), x, y, w, h));
    }
    for (i, a) in rects.iter().enumerate() {
        for b in &rects[i + 1..] {
            if a.1 < b.1 + b.3 && b.1 < a.1 + a.3 && a.2 < b.2 + b.4 && b.2 < a.2 + a.4 {
                errs.push(format!("{uid}: panels {:?} and {:?} overlap", a.0, b.0));
            }
        }
    }
}

/// The range selectors of an expression (`[...]` contents).
fn range_selectors(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find('[') {
        let after = &rest[i + 1..];
        let end = after.find(']').unwrap_or(after.len());
        out.push(after[..end].to_string());
        rest = &after[end.min(after.len())..];
    }
    out
}

#[test]
fn dashboards_schema() {
    let mut errs = Vec::new();
    let ds_prov = load_yaml("provisioning/datasources/calm.yml");
    let dash_prov = load_yaml("provisioning/dashboards/calm.yml");

    // Data source provisioning: one Prometheus data source with a fixed uid.
    assert_eq!(ds_prov["apiVersion"], 1, "{ds_prov}");
    let sources = ds_prov["datasources"].as_array().expect("datasources list");
    assert_eq!(sources.len(), 1, "{ds_prov}");
    let ds = &sources[0];
    assert_eq!(ds["type"], "prometheus", "{ds}");
    let ds_uid = ds["uid"].as_str().expect("data source uid").to_string();
    let url = ds["url"].as_str().expect("data source url");
    assert_eq!(
        url, "http://127.0.0.1:9400",
        "the collector's default listen address"
    );
    assert!(
        ds["jsonData"]["timeInterval"].as_str().is_some(),
        "timeInterval (the scrape interval, for $__rate_interval): {ds}"
    );

    // Dashboard provisioning: a file provider on an absolute folder that the README says
    // to copy dashboards/*.json into.
    assert_eq!(dash_prov["apiVersion"], 1, "{dash_prov}");
    let providers = dash_prov["providers"].as_array().expect("providers list");
    assert_eq!(providers.len(), 1, "{dash_prov}");
    let p = &providers[0];
    assert_eq!(p["type"], "file", "{p}");
    let path = p["options"]["path"].as_str().expect("options.path");
    assert!(path.starts_with('/'), "absolute path: {path}");
    let readme =
        std::fs::read_to_string(dashboards_dir().join("README.md")).expect("dashboards/README.md");
    assert!(
        readme.contains(&format!("dashboards/*.json {path}")),
        "dashboards/README.md copies dashboards/*.json into the provider's path {path}"
    );
    for f in [
        "provisioning/datasources/calm.yml",
        "provisioning/dashboards/calm.yml",
    ] {
        assert!(readme.contains(f), "dashboards/README.md names {f}");
    }

    let mut uids = BTreeSet::new();
    let mut titles = BTreeSet::new();
    let mut in_dir: Vec<String> = std::fs::read_dir(dashboards_dir())
        .expect("dashboards/")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    in_dir.sort();
    let mut listed: Vec<String> = DASHBOARDS.iter().map(|(f, _)| f.to_string()).collect();
    listed.sort();
    assert_eq!(
        in_dir, listed,
        "every dashboard under dashboards/ is checked here"
    );

    for (file, want_uid) in DASHBOARDS {
        let text = std::fs::read_to_string(dashboards_dir().join(file)).expect("read");
        let d = load_json(file);
        let uid = d["uid"].as_str().unwrap_or("");
        if uid != *want_uid {
            errs.push(format!("{file}: uid {uid:?}, want the fixed {want_uid:?}"));
        }
        if !uids.insert(uid.to_string()) {
            errs.push(format!("{file}: uid {uid} used twice"));
        }
        if !titles.insert(d["title"].to_string()) {
            errs.push(format!("{file}: title {} used twice", d["title"]));
        }
        if d.get("__inputs").is_some() || text.contains("${DS_") {
            errs.push(format!(
                "{file}: __inputs / ${{DS_…}}: file provisioning ignores them"
            ));
        }
        if d["schemaVersion"].as_i64().unwrap_or(0) < 36 {
            errs.push(format!("{file}: schemaVersion {}", d["schemaVersion"]));
        }
        // The datasource variable, preselecting the provisioned data source.
        let vars = d["templating"]["list"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let dsv = vars.iter().find(|v| v["name"] == "datasource");
        match dsv {
            Some(v) if v["type"] == "datasource" && v["query"] == "prometheus" => {
                if v["current"]["value"] != ds_uid.as_str() {
                    errs.push(format!("{file}: datasource variable preselects {}, the provisioned uid is {ds_uid}", v["current"]["value"]));
                }
            }
            _ => errs.push(format!(
                "{file}: no `datasource` variable of type datasource, query prometheus"
            )),
        }
        let mut defined: BTreeMap<String, String> = builtins();
        for v in &vars {
            let name = v["name"].as_str().unwrap_or("").to_string();
            if v["type"] == "query" && v["datasource"] != ds_ref() {
                errs.push(format!(
                    "{file}: variable {name}: datasource {} is not the variable",
                    v["datasource"]
                ));
            }
            if v["type"] == "query" {
                let q = v["query"]["query"]
                    .as_str()
                    .or(v["query"].as_str())
                    .unwrap_or("");
                if let Err(e) = expand(q, &defined) {
                    errs.push(format!("{file}: variable {name}: {e}"));
                }
            }
            defined.insert(name, "x".into());
        }
        // Panels.
        let panels = all_panels(&d);
        let mut ids = BTreeSet::new();
        for p in &panels {
            let title = p["title"].as_str().unwrap_or("");
            match p["id"].as_i64() {
                Some(id) if ids.insert(id) => {}
                other => errs.push(format!(
                    "{file}: panel {title:?}: id {other:?} missing or repeated"
                )),
            }
            if p["type"] == "row" {
                continue; // rows hold no query, no unit
            }
            if p["datasource"] != ds_ref() {
                errs.push(format!(
                    "{file}: panel {title:?}: datasource {} is not the variable",
                    p["datasource"]
                ));
            }
            match p["fieldConfig"]["defaults"]["unit"].as_str() {
                Some(u) if UNITS.contains(&u) => {}
                other => errs.push(format!(
                    "{file}: panel {title:?}: unit {other:?} (want one of {UNITS:?})"
                )),
            }
            let ts = p["targets"].as_array().cloned().unwrap_or_default();
            if ts.is_empty() {
                errs.push(format!("{file}: panel {title:?} has no target"));
            }
            let mut refs = BTreeSet::new();
            for t in &ts {
                if t["datasource"] != ds_ref() {
                    errs.push(format!(
                        "{file}: panel {title:?}: a target's datasource {} is not the variable",
                        t["datasource"]
                    ));
                }
                if !refs.insert(t["refId"].to_string()) {
                    errs.push(format!(
                        "{file}: panel {title:?}: refId {} repeated",
                        t["refId"]
                    ));
                }
                let expr = t["expr"].as_str().unwrap_or("");
                if expr.is_empty() {
                    errs.push(format!("{file}: panel {title:?}: empty expr"));
                }
                if let Err(e) = expand(expr, &defined) {
                    errs.push(format!("{file}: panel {title:?}: {e}"));
                }
                for r in range_selectors(expr) {
                    // The one fixed window: "the last value before the range" (errors).
                    let before_range = r == "1y" && expr.contains("[1y] offset $__range");
                    if r != "$__rate_interval" && r != "$__range" && !before_range {
                        errs.push(format!("{file}: panel {title:?}: range [{r}] (use $__rate_interval or $__range)"));
                    }
                }
            }
        }
        // Grid: top-level panels, and each row's nested (collapsed) panels among themselves.
        let top: Vec<&Value> = d["panels"].as_array().into_iter().flatten().collect();
        check_grid(uid, &top, &mut errs);
        for r in &top {
            let nested: Vec<&Value> = r["panels"].as_array().into_iter().flatten().collect();
            check_grid(uid, &nested, &mut errs);
        }
    }

    // Host dashboard variables on node_uname_info, as node_exporter data has it.
    let host = load_json("host.json");
    let q = |name: &str| {
        host["templating"]["list"]
            .as_array()
            .and_then(|l| l.iter().find(|v| v["name"] == name))
            .map(|v| v["query"]["query"].as_str().unwrap_or("").to_string())
    };
    assert_eq!(
        q("job").as_deref(),
        Some("label_values(node_uname_info, job)")
    );
    assert_eq!(
        q("instance").as_deref(),
        Some("label_values(node_uname_info{job=~\"$job\"}, instance)")
    );

    // The errors table links each issue into the collector's own issue page.
    let errors = load_json("errors.json");
    let links: Vec<String> = all_panels(&errors)
        .iter()
        .filter(|p| p["type"] == "table")
        .flat_map(|p| {
            p["fieldConfig"]["overrides"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .flat_map(|o| o["properties"].as_array().cloned().unwrap_or_default())
        .filter(|pr| pr["id"] == "links")
        .flat_map(|pr| pr["value"].as_array().cloned().unwrap_or_default())
        .filter_map(|l| l["url"].as_str().map(String::from))
        .collect();
    assert!(
        links
            .iter()
            .any(|u| u == "${calm_url}/issues/${__data.fields.issue}"),
        "errors table links issues to ${{calm_url}}/issues/<id>: {links:?}"
    );

    // The host recording rules are a valid rule file.
    let rules = load_yaml("rules/host.yml");
    assert!(
        rules["groups"][0]["rules"]
            .as_array()
            .map(Vec::len)
            .unwrap_or(0)
            > 0,
        "{rules}"
    );

    assert!(
        errs.is_empty(),
        "dashboard schema problems:\n{}",
        errs.join("\n")
    );
}

// ------------------------------------------------------------------ sources

const KEY1: &str = "0123456789abcdef0123456789abcdef";

/// A Sentry envelope with one valid `warning` event and one item that is not JSON (so the
/// collector counts a discarded item too), POSTed straight to the collector.
fn post_envelope(c: &Collector) {
    let id = "dbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdb";
    let body = format!(
        "{{\"event_id\":\"{id}\"}}\n{{\"type\":\"event\"}}\n\
         {{\"event_id\":\"{id}\",\"level\":\"warning\",\"message\":\"disk almost full on db-1\",\"platform\":\"python\",\"environment\":\"ci\"}}\n\
         {{\"type\":\"event\"}}\n[1,2\n"
    );
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/api/1/envelope/?sentry_key={KEY1}", c.url()))
        .body(body)
        .timeout(Duration::from_secs(30))
        .send()
        .expect("POST envelope");
    let status = resp.status();
    let text = resp.text().unwrap_or_default();
    assert!(status.is_success(), "envelope: {status} {text}");
    assert!(
        text.contains("invalid_event"),
        "the bad item is reported: {text}"
    );
}

/// The real sentry-sdk through the agent's relay (two runs, one issue: the same line
/// raises); false when it is missing.
fn run_sentry_sdk(agent: &Agent) -> bool {
    let Some(python) = require_python_modules(&["sentry_sdk"]) else {
        return false;
    };
    let dsn = format!("http://{KEY1}@127.0.0.1:{}/1", agent.port());
    for (tag, n) in [("checkout", 12), ("login", 5)] {
        let mut cmd = Command::new(&python);
        cmd.arg(workspace_root().join("tests/python/sentry_relay.py"))
            .arg(&dsn)
            .arg(tag)
            .arg(n.to_string());
        calm_tests::sentry_sdk::run_sdk_script(cmd, Duration::from_secs(120));
    }
    true
}

#[test]
fn dashboards_on_agent_data() {
    // `check rules` on the host recording rules, then load them.
    let rules = dashboards_dir().join("rules/host.yml");
    let out = Command::new(collector_bin())
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .expect("run calm-collector check rules");
    assert!(
        out.status.success(),
        "check rules {rules:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let alert_file = tmp.path().join("always.yml");
    std::fs::write(
        &alert_file,
        "groups:\n  - name: dashboards-test\n    rules:\n      - alert: CalmDashboardsTest\n        expr: vector(1)\n        labels:\n          severity: none\n",
    )
    .expect("write alert rule");
    let hook = WebhookReceiver::start();
    let config = format!(
        "rule_files = [{rules:?}, {alert_file:?}]\nevaluation_interval = \"1s\"\n\
         [[projects]]\nid = 1\nname = \"web\"\npublic_key = \"{KEY1}\"\n\
         [[alerting.webhooks]]\nurl = \"{}\"\ngroup_wait = \"1s\"\ngroup_interval = \"1s\"\n",
        hook.url("/hook")
    );
    let c = Collector::start_with_config(&config, &[]);
    // What a user does to graph the collector and the agent themselves: scrape their
    // /metrics with the agent (dashboards/README.md).
    let agent = Agent::builder()
        .collector(&c.url())
        .config(&format!(
            "[host]\ninterval = \"1s\"\n\
             [[scrape]]\nurl = \"{}/metrics\"\ninterval = \"1s\"\njob = \"calm-collector\"\n\
             [[scrape]]\nurl = \"{{agent_url}}/metrics\"\ninterval = \"1s\"\njob = \"calm-agent\"\n",
            c.url()
        ))
        .start();
    let sdk = run_sentry_sdk(&agent);
    if !sdk {
        notice("NOTICE grafana_dashboards: sentry-sdk missing; the errors dashboard gets only the plain envelope");
    }
    post_envelope(&c);
    assert!(
        hook.wait_for("/hook", Duration::from_secs(60), |_| true)
            .is_some(),
        "the always-firing alert reached the webhook"
    );

    let api = c.api();
    // Wait for what every dashboard needs: rates over the collector's, the agent's and the
    // host's counters, and the error counters.
    let ready = wait_for(Duration::from_secs(60), Duration::from_secs(1), || {
        let want = [
            "rate(calm_tsdb_samples_appended_total[1m])",
            "rate(calm_agent_shipped_total[1m])",
            "rate(node_cpu_seconds_total[1m])",
            "calm_error_events_total",
            "calm_notifications_sent_total > 0",
            "instance:node_cpu_utilisation:rate5m",
        ];
        want.iter()
            .all(|q| {
                api.query_vector(q, None)
                    .map(|v| !v.is_empty())
                    .unwrap_or(false)
            })
            .then_some(())
    });
    assert!(
        ready.is_some(),
        "data did not arrive within 60 s; agent log:\n{}",
        agent.log_tail(30)
    );
    if sdk {
        let issues = wait_for(Duration::from_secs(30), Duration::from_secs(1), || {
            let v = api.query_vector("calm_error_events_total", None).ok()?;
            (v.len() >= 2).then_some(v.len())
        });
        // The SDK's exceptions come from one line of one script: one issue.
        assert!(issues.is_some(), "2 issues (the SDK's, the envelope's)");
    }

    // The errors table's issue links carry the `issue` label: each is an issue id the
    // collector knows (the UI's /issues/<id> page reads /api/calm/v1/issues/<id>).
    for id in api.label_values("issue").expect("issue label values") {
        let (status, body) = api
            .get(&format!("/api/calm/v1/issues/{id}"))
            .expect("GET issue");
        assert_eq!(status, 200, "issue {id} of calm_error_events_total: {body}");
    }

    // The top-issues table counts exactly what the issues API counts.
    let errors = load_json("errors.json");
    let table = targets(&errors)
        .into_iter()
        .find(|t| t.panel == "Top issues (range)")
        .expect("Top issues (range) panel");
    let probe = Source {
        name: "collector fed by calm-agent",
        api: api.clone(),
        fallback: Vec::new(),
    };
    let now = now_ms();
    let vars = probe
        .assignments(&errors, now - RANGE_S * 1000, now, 1)
        .remove(0);
    let expr = expand(&table.expr, &vars).expect("expand");
    let table_counts = || {
        let mut per_issue: BTreeMap<String, f64> = BTreeMap::new();
        for s in api.query_vector(&expr, None).expect("top issues query") {
            *per_issue.entry(s.labels["issue"].clone()).or_default() += s.value;
        }
        per_issue
    };
    let api_counts = || {
        let (status, body) = api.get("/api/calm/v1/issues").expect("issues API");
        assert_eq!(status, 200, "{body}");
        let listed: Value = serde_json::from_str(&body).expect("issues JSON");
        let mut counts: BTreeMap<String, f64> = BTreeMap::new();
        for i in listed["data"].as_array().into_iter().flatten() {
            let id = i["id"]
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| i["id"].to_string());
            counts.insert(id, i["count"].as_f64().unwrap_or(-1.0));
        }
        counts
    };
    // Every event sent has arrived (the relay ships in the background), then both agree.
    let sent = if sdk { 12.0 + 5.0 + 1.0 } else { 1.0 };
    let arrived = wait_for(Duration::from_secs(60), Duration::from_secs(1), || {
        let c = api_counts();
        (c.values().sum::<f64>() >= sent).then_some(c)
    });
    assert!(
        arrived.is_some(),
        "{sent} events reach the issues API: {:?}",
        api_counts()
    );
    let agreed = wait_for(Duration::from_secs(20), Duration::from_secs(1), || {
        let (t, a) = (table_counts(), api_counts());
        (t == a).then_some(t)
    });
    let per_issue = agreed.unwrap_or_else(|| {
        panic!(
            "events per issue: the Top issues table {:?} vs /api/calm/v1/issues {:?}",
            table_counts(),
            api_counts()
        )
    });
    eprintln!("top issues table = issues API: {per_issue:?}");

    // Every recorded series of the host rules has data.
    let groups = load_yaml("rules/host.yml");
    for r in groups["groups"][0]["rules"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let name = r["record"].as_str().expect("record");
        let got = wait_for(Duration::from_secs(20), Duration::from_secs(1), || {
            api.query_vector(name, None).ok().filter(|v| !v.is_empty())
        });
        assert!(got.is_some(), "recording rule {name} has no data");
    }

    // node_uname_info: the agent may not have it yet (issue 16); tolerated only then.
    let has_uname = !api.series(&["node_uname_info"]).expect("series").is_empty();
    let mut empty_ok: Vec<(String, String, String, String)> = EMPTY_OK
        .iter()
        .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d.to_string()))
        .collect();
    let mut fallback = Vec::new();
    if !has_uname {
        notice(
            "NOTICE grafana_dashboards: calm-agent does not export node_uname_info yet (issue 16): \
             the job/instance variables fall back to node_boot_time_seconds on the agent's data, \
             and the fleet Hosts table's uname target may be empty there",
        );
        fallback.push(("node_uname_info", "node_boot_time_seconds"));
        empty_ok.push((
            "calm-fleet".into(),
            "Hosts".into(),
            "A".into(),
            "node_uname_info not exported by calm-agent yet".into(),
        ));
    }
    let src = Source {
        name: "collector fed by calm-agent",
        api,
        fallback,
    };
    let files: Vec<&str> = DASHBOARDS.iter().map(|(f, _)| *f).collect();
    let failures = check_dashboards(&src, &files, &empty_ok, Duration::from_secs(30));
    assert!(
        failures.is_empty(),
        "{} dashboard targets failed on the agent-fed collector:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn host_dashboard_on_node_exporter_data() {
    let Some(prom_bin) = require_peer("prometheus") else {
        return;
    };
    let Some(ne_bin) = require_peer("prometheus-node-exporter") else {
        return;
    };
    let c = Collector::start();
    let node = NodeExporter::start(&ne_bin, &["--no-collector.systemd"]);
    let config = node_remote_write_config(&node.target(), &c.write_url());
    let prom = Prometheus::start(&prom_bin, &config, false);
    let api = c.api();
    let ready = wait_for(Duration::from_secs(60), Duration::from_secs(1), || {
        let ok = ["node_uname_info", "rate(node_cpu_seconds_total[1m])"]
            .iter()
            .all(|q| {
                api.query_vector(q, None)
                    .map(|v| !v.is_empty())
                    .unwrap_or(false)
            });
        ok.then_some(())
    });
    assert!(
        ready.is_some(),
        "remote-written data did not arrive; Prometheus log:\n{}",
        prom.log_tail(30)
    );
    let src = Source {
        name: "collector fed by node_exporter via Prometheus remote-write",
        api,
        fallback: Vec::new(),
    };
    // The fleet dashboard's host panels work on node_exporter data too; its agent panels
    // need a calm-agent, which this source has none of.
    let no_agent: Vec<(String, String, String, String)> = targets(&load_json("fleet.json"))
        .into_iter()
        .filter(|t| t.expr.contains("calm_agent_"))
        .map(|t| {
            (
                t.uid,
                t.panel,
                t.ref_id,
                "no calm-agent on this source".to_string(),
            )
        })
        .collect();
    let failures = check_dashboards(
        &src,
        &["host.json", "fleet.json"],
        &no_agent,
        Duration::from_secs(30),
    );
    assert!(
        failures.is_empty(),
        "{} host/fleet dashboard targets failed on node_exporter data:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
