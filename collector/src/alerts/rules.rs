//! Prometheus rule files: the YAML model, loading (with globs) and validation that
//! names the file, the line and the reason, as `promtool check rules` does.
//!
//! ```text
//! groups:
//!   - name: node                 # unique in the file
//!     interval: 30s              # optional; default evaluation_interval
//!     limit: 0                   # optional; most alerts/series per rule (0 = no limit)
//!     rules:
//!       - record: job:up:sum     # a valid metric name
//!         expr: sum by (job) (up)
//!         labels: { team: infra }
//!       - alert: InstanceDown
//!         expr: up == 0
//!         for: 5m                # optional
//!         keep_firing_for: 1m    # optional
//!         labels: { severity: page }
//!         annotations:
//!           summary: "{{ $labels.instance }} is down"
//! ```
//! A rule that repeats the name and labels of another rule of its group is refused
//! (promtool's duplicate-rule lint, made an error): the two would write the same series.

use super::template::Template;
use promql_parser::parser::Expr;
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A problem in a rule file: where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    /// The file.
    pub file: String,
    /// 1-based line (0 when unknown).
    pub line: u64,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.file, self.line, self.reason)
        } else {
            write!(f, "{}: {}", self.file, self.reason)
        }
    }
}

/// What kind of rule, with the fields only that kind has.
#[derive(Debug, Clone)]
pub enum RuleKind {
    /// `record:`.
    Recording,
    /// `alert:`.
    Alerting {
        /// `for`, ms.
        for_ms: i64,
        /// `keep_firing_for`, ms.
        keep_firing_for_ms: i64,
        /// Annotation templates.
        annotations: BTreeMap<String, String>,
    },
}

/// One validated rule.
#[derive(Debug, Clone)]
pub struct RuleSpec {
    /// The alert name or the recorded metric name.
    pub name: String,
    /// The expression as written.
    pub expr_text: String,
    /// The parsed expression.
    pub expr: Expr,
    /// Label templates (alerts) or labels (recording rules).
    pub labels: BTreeMap<String, String>,
    /// Alerting or recording.
    pub kind: RuleKind,
    /// Line of the rule in its file.
    pub line: u64,
}

impl RuleSpec {
    /// True for alerting rules.
    pub fn is_alert(&self) -> bool {
        matches!(self.kind, RuleKind::Alerting { .. })
    }

    /// Identifies the rule inside its group across reloads (Prometheus matches rules
    /// by name and labels when it copies state to a reloaded group).
    pub fn key(&self) -> String {
        let mut k = format!(
            "{}\u{ff}{}",
            if self.is_alert() { "a" } else { "r" },
            self.name
        );
        for (n, v) in &self.labels {
            k.push('\u{fe}');
            k.push_str(n);
            k.push('=');
            k.push_str(v);
        }
        k
    }
}

/// One validated group.
#[derive(Debug, Clone)]
pub struct GroupSpec {
    /// The file it came from (as configured or globbed).
    pub file: String,
    /// The group's name.
    pub name: String,
    /// Its own interval, ms (None: the global evaluation_interval).
    pub interval_ms: Option<i64>,
    /// Most alerts or series one rule may produce (0: no limit).
    pub limit: usize,
    /// Its rules, in order.
    pub rules: Vec<RuleSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    groups: Vec<Spanned<RawGroup>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    #[serde(default)]
    name: String,
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    query_offset: Option<String>,
    #[serde(default)]
    limit: Option<u64>,
    #[serde(default)]
    rules: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    record: Option<String>,
    #[serde(default)]
    alert: Option<String>,
    #[serde(default)]
    expr: Option<Spanned<String>>,
    #[serde(default, rename = "for")]
    for_: Option<String>,
    #[serde(default)]
    keep_firing_for: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

fn dur(s: &str) -> Result<i64, String> {
    if super::config::is_zero_duration(s) {
        return Ok(0);
    }
    promql_parser::util::parse_duration(s)
        .map(|d| d.as_millis() as i64)
        .map_err(|e| format!("invalid duration {s:?}: {e}"))
}

/// Parses and validates one file's text. All problems are reported, not only the
/// first.
pub fn parse_rules(file: &str, text: &str) -> Result<Vec<GroupSpec>, Vec<RuleError>> {
    let e = |line: u64, reason: String| RuleError {
        file: file.to_string(),
        line,
        reason,
    };
    let raw: RawFile = if text.trim().is_empty() {
        RawFile { groups: Vec::new() }
    } else {
        match serde_saphyr::from_str::<RawFile>(text) {
            Ok(r) => r,
            Err(err) => {
                let line = err.location().map(|l| l.line()).unwrap_or(0);
                let msg = err.to_string();
                let first = msg
                    .lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty())
                    .unwrap_or("invalid YAML")
                    .to_string();
                return Err(vec![e(line, format!("YAML: {first}"))]);
            }
        }
    };
    let mut errors = Vec::new();
    let mut groups = Vec::new();
    let mut names: BTreeMap<String, u64> = BTreeMap::new();
    for g in raw.groups {
        let gline = g.referenced.line();
        let g = g.value;
        if g.name.is_empty() {
            errors.push(e(gline, "group name must not be empty".into()));
        } else if let Some(first) = names.insert(g.name.clone(), gline) {
            errors.push(e(
                gline,
                format!(
                    "group name {:?} is repeated in the same file (first on line {first})",
                    g.name
                ),
            ));
        }
        let interval_ms = match &g.interval {
            None => None,
            Some(s) => match dur(s) {
                Ok(0) => {
                    errors.push(e(
                        gline,
                        format!("group {:?}: interval must be positive", g.name),
                    ));
                    None
                }
                Ok(v) => Some(v),
                Err(m) => {
                    errors.push(e(gline, format!("group {:?}: interval: {m}", g.name)));
                    None
                }
            },
        };
        if let Some(q) = &g.query_offset {
            if let Err(m) = dur(q) {
                errors.push(e(gline, format!("group {:?}: query_offset: {m}", g.name)));
            }
        }
        let mut rules = Vec::new();
        let mut seen: BTreeMap<String, u64> = BTreeMap::new();
        for (i, r) in g.rules.into_iter().enumerate() {
            let line = r.referenced.line();
            match validate_rule(r.value, line) {
                Ok(spec) => {
                    if let Some(first) = seen.insert(spec.key(), line) {
                        errors.push(e(
                            line,
                            format!(
                                "group {:?}, rule {}: duplicate rule {:?} with the same labels as the rule on line {first}: both would write the same series",
                                g.name,
                                i + 1,
                                spec.name
                            ),
                        ));
                    }
                    rules.push(spec);
                }
                Err(list) => {
                    for (l, m) in list {
                        errors.push(e(l, format!("group {:?}, rule {}: {m}", g.name, i + 1)));
                    }
                }
            }
        }
        groups.push(GroupSpec {
            file: file.to_string(),
            name: g.name,
            interval_ms,
            limit: g.limit.unwrap_or(0) as usize,
            rules,
        });
    }
    if errors.is_empty() {
        Ok(groups)
    } else {
        Err(errors)
    }
}

fn validate_rule(r: RawRule, line: u64) -> Result<RuleSpec, Vec<(u64, String)>> {
    let mut errs: Vec<(u64, String)> = Vec::new();
    let name = match (&r.record, &r.alert) {
        (Some(_), Some(_)) => {
            errs.push((line, "only one of 'record' and 'alert' must be set".into()));
            String::new()
        }
        (None, None) => {
            errs.push((line, "one of 'record' or 'alert' must be set".into()));
            String::new()
        }
        (Some(n), None) | (None, Some(n)) => n.clone(),
    };
    let what = match (&r.record, &r.alert) {
        (Some(_), None) => format!("(record {name:?})"),
        (None, Some(_)) => format!("(alert {name:?})"),
        _ => String::new(),
    };
    let (expr_text, expr_line) = match &r.expr {
        Some(s) if !s.value.trim().is_empty() => (s.value.clone(), s.referenced.line()),
        _ => {
            errs.push((line, format!("{what} field 'expr' must be set in rule")));
            (String::new(), line)
        }
    };
    let expr = if expr_text.is_empty() {
        None
    } else {
        match crate::promql::engine::parse_guarded(&expr_text) {
            Ok(x) => Some(x),
            Err(m) => {
                errs.push((
                    expr_line,
                    format!("{what} could not parse expression: {}", m.trim()),
                ));
                None
            }
        }
    };
    let labels = r.labels.unwrap_or_default();
    for k in labels.keys() {
        if !calm_wire::labels::is_valid_label_name(k.as_bytes()) {
            errs.push((line, format!("{what} invalid label name: {k:?}")));
        }
    }
    let kind = if r.record.is_some() {
        if !name.is_empty() && !calm_wire::labels::is_valid_metric_name(name.as_bytes()) {
            errs.push((line, format!("invalid recording rule name: {name:?}")));
        }
        if r.annotations.as_ref().is_some_and(|a| !a.is_empty()) {
            errs.push((
                line,
                format!("{what} invalid field 'annotations' in recording rule"),
            ));
        }
        if r.for_.is_some() {
            errs.push((
                line,
                format!("{what} invalid field 'for' in recording rule"),
            ));
        }
        if r.keep_firing_for.is_some() {
            errs.push((
                line,
                format!("{what} invalid field 'keep_firing_for' in recording rule"),
            ));
        }
        RuleKind::Recording
    } else {
        if !name.is_empty() && name.trim().is_empty() {
            errs.push((line, "alert name must not be blank".into()));
        }
        let mut d = |v: &Option<String>, field: &str| match v {
            None => 0,
            Some(s) => dur(s).unwrap_or_else(|m| {
                errs.push((line, format!("{what} field '{field}': {m}")));
                0
            }),
        };
        let for_ms = d(&r.for_, "for");
        let keep_firing_for_ms = d(&r.keep_firing_for, "keep_firing_for");
        let annotations = r.annotations.unwrap_or_default();
        for k in annotations.keys() {
            if !calm_wire::labels::is_valid_label_name(k.as_bytes()) {
                errs.push((line, format!("{what} invalid annotation name: {k:?}")));
            }
        }
        for (kind, map) in [("label", &labels), ("annotation", &annotations)] {
            for (k, v) in map {
                if let Err(te) = Template::parse(v) {
                    errs.push((line, format!("{what} {kind} {k:?}: template: {te}")));
                }
            }
        }
        RuleKind::Alerting {
            for_ms,
            keep_firing_for_ms,
            annotations,
        }
    };
    match (errs.is_empty(), expr) {
        (true, Some(expr)) => Ok(RuleSpec {
            name,
            expr_text,
            expr,
            labels,
            kind,
            line,
        }),
        _ => Err(errs),
    }
}

/// Expands the configured paths: a `*`, `?` or `[` in the file name part is a glob
/// (Prometheus' `rule_files` globs), matched in its directory, sorted. A plain path is
/// kept even when missing so that reading it reports the error.
pub fn expand_paths(patterns: &[String], base: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in patterns {
        let path = if Path::new(p).is_absolute() {
            PathBuf::from(p)
        } else {
            base.join(p)
        };
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !name.contains(['*', '?', '[']) {
            out.push(path);
            continue;
        }
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|f| {
                        f.is_file()
                            && f.file_name()
                                .and_then(|n| n.to_str())
                                .is_some_and(|n| glob_match(name, n))
                    })
                    .collect()
            })
            .unwrap_or_default();
        found.sort();
        out.extend(found);
    }
    out
}

/// Shell-style matching of one path component: `*`, `?` and `[abc]`/`[a-z]`.
fn glob_match(pat: &str, s: &str) -> bool {
    let p: Vec<char> = pat.chars().collect();
    let t: Vec<char> = s.chars().collect();
    fn m(p: &[char], t: &[char]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some('*') => (0..=t.len()).any(|i| m(&p[1..], &t[i..])),
            Some('?') => !t.is_empty() && m(&p[1..], &t[1..]),
            Some('[') => {
                let Some(end) = p.iter().position(|&c| c == ']') else {
                    return t.first() == Some(&'[') && m(&p[1..], &t[1..]);
                };
                let Some(&c) = t.first() else { return false };
                let class = &p[1..end];
                let mut ok = false;
                let mut i = 0;
                while i < class.len() {
                    if i + 2 < class.len() && class[i + 1] == '-' {
                        ok |= class[i] <= c && c <= class[i + 2];
                        i += 3;
                    } else {
                        ok |= class[i] == c;
                        i += 1;
                    }
                }
                ok && m(&p[end + 1..], &t[1..])
            }
            Some(&c) => t.first() == Some(&c) && m(&p[1..], &t[1..]),
        }
    }
    m(&p, &t)
}

/// Reads, parses and validates every file; all errors of all files are returned.
pub fn load_files(paths: &[PathBuf]) -> Result<Vec<GroupSpec>, Vec<RuleError>> {
    let mut groups = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        let file = p.display().to_string();
        match std::fs::read_to_string(p) {
            Ok(text) => match parse_rules(&file, &text) {
                Ok(g) => groups.extend(g),
                Err(e) => errors.extend(e),
            },
            Err(e) => errors.push(RuleError {
                file,
                line: 0,
                reason: format!("cannot read the rule file: {e}"),
            }),
        }
    }
    if errors.is_empty() {
        Ok(groups)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
groups:
  - name: g
    interval: 10s
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
      - alert: Down
        expr: up == 0
        for: 1m
        labels:
          severity: page
        annotations:
          summary: "{{ $labels.instance }} down ({{ $value }})"
"#;

    #[test]
    fn loads_a_good_file() {
        let g = parse_rules("f.yml", GOOD).unwrap();
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].interval_ms, Some(10_000));
        assert_eq!(g[0].rules.len(), 2);
        assert!(g[0].rules[1].is_alert());
        assert_eq!(g[0].rules[1].line, 8);
    }

    fn errs(text: &str) -> Vec<String> {
        parse_rules("f.yml", text)
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn names_file_line_and_reason() {
        let e =
            errs("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: rate(x[5m]\n");
        assert!(e[0].starts_with("f.yml:5: "), "{e:?}");
        assert!(e[0].contains("could not parse expression"), "{e:?}");
        let e =
            errs("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: nosuch(x)\n");
        assert!(e[0].contains("nosuch"), "{e:?}");
        let e = errs("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n      - alert: A\n        expr: up\n");
        assert!(
            e[0].starts_with("f.yml:6: ") && e[0].contains("duplicate rule"),
            "{e:?}"
        );
        let e = errs("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        annotations:\n          s: \"{{ $labels.x \"\n");
        assert!(
            e[0].starts_with("f.yml:4: ") && e[0].contains("template"),
            "{e:?}"
        );
        let e = errs("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        for: soon\n");
        assert!(e[0].contains("'for'"), "{e:?}");
        let e = errs("groups:\n  - name: g\n    rules:\n  - name: g\n    rules: [\n");
        assert!(e[0].starts_with("f.yml:") && e[0].contains("YAML"), "{e:?}");
        let e = errs("groups:\n  - name: g\n    rules:\n      - record: job:x\n        expr: up\n        for: 1m\n");
        assert!(e[0].contains("'for' in recording rule"), "{e:?}");
        let e = errs("groups:\n  - name: g\n    rulez: []\n");
        assert!(e[0].contains("rulez"), "{e:?}");
    }

    #[test]
    fn globs() {
        assert!(glob_match("*.yml", "a.yml"));
        assert!(!glob_match("*.yml", "a.yaml"));
        assert!(glob_match("r[0-9]?.y*", "r1x.yaml"));
    }
}
