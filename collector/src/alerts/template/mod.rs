//! The Go `text/template` language as Prometheus uses it in alert labels and
//! annotations, written by hand: no Rust crate implements Go templates (the Jinja and
//! Handlebars engines differ in syntax and in how values print).
//!
//! Every template gets Prometheus' preamble, so both spellings work:
//!
//! ```text
//! {{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}
//! {{$externalURL := .ExternalURL}}{{$value := .Value}}
//!
//! {{ $labels.instance }} is down ({{ $value | humanize }})
//! {{ if gt $value 0.9 }}critical{{ else }}warning{{ end }}
//! {{ range $k, $v := .Labels }}{{ $k }}={{ $v }} {{ end }}
//! {{ printf "%.2f" $value }}   {{ with query "up" }}{{ . | first | value }}{{ end }}
//! ```
//! Covered: text, `{{- -}}` trimming, comments, pipelines, parenthesised pipelines,
//! variables (declare and assign), fields of `.` and of variables, `if`/`else if`/`else`,
//! `range` (maps, lists), `with`, string/raw-string/number/bool literals, and the
//! functions of Go's template package and of Prometheus (`humanize*`, `printf`,
//! `query`, `first`, `value`, `label`, `reReplaceAll`, `title`, …). Missing map keys
//! print as empty strings (Prometheus runs templates with `missingkey=zero`). Numbers
//! print as Go's `%v` does ([`super::gofmt`]). `define`/`template`/`block` are not
//! supported and are rejected at load time.
//!
//! One concept a file: `lexer` (text and action pieces, tokens), `parser` (pipelines
//! and the node tree), `exec` (running the tree over the alert's data), `functions`
//! (the function library: Prometheus' and Go's), `value` (the values templates handle).

use std::collections::BTreeMap;

mod exec;
mod functions;
mod lexer;
mod parser;
mod value;

use exec::*;
use functions::*;
pub use functions::{humanize, humanize1024, humanize_duration, sprintf_go};
use lexer::*;
use parser::*;
use value::*;

/// A parse error (found at load time) or an execution error (when an alert fires).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError(pub String);

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub(crate) type R<T> = Result<T, TemplateError>;

pub(crate) fn err<T>(msg: impl Into<String>) -> R<T> {
    Err(TemplateError(msg.into()))
}

/// A sample as `query` returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct QuerySample {
    /// Labels, the metric name included.
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

/// Runs a PromQL instant query for the `query` template function.
pub type QueryFn<'a> = &'a dyn Fn(&str) -> Result<Vec<QuerySample>, String>;

/// What a template sees: Prometheus' `AlertTemplateData`.
#[derive(Debug, Clone, Default)]
pub struct TemplateData {
    /// The alert's labels (`.Labels`, `$labels`).
    pub labels: BTreeMap<String, String>,
    /// External labels (`.ExternalLabels`, `$externalLabels`).
    pub external_labels: BTreeMap<String, String>,
    /// External URL (`.ExternalURL`, `$externalURL`).
    pub external_url: String,
    /// The sample value (`.Value`, `$value`).
    pub value: f64,
}

pub struct Template {
    nodes: Vec<Node>,
}

const PREAMBLE_VARS: [(&str, &str); 4] = [
    ("labels", "Labels"),
    ("externalLabels", "ExternalLabels"),
    ("externalURL", "ExternalURL"),
    ("value", "Value"),
];

impl Template {
    /// Parses a template (Prometheus' preamble variables are predeclared).
    pub fn parse(src: &str) -> Result<Template, TemplateError> {
        let pieces = split(src)?;
        let mut pos = 0;
        let (nodes, stop) = parse_list(&pieces, &mut pos)?;
        match stop {
            Stop::Eof => {}
            Stop::End => return err("unexpected {{end}}"),
            Stop::Else(..) => return err("unexpected {{else}}"),
        }
        let t = Template { nodes };
        t.check_vars()?;
        Ok(t)
    }

    /// Go rejects undefined variables at parse time; so do we.
    fn check_vars(&self) -> R<()> {
        fn pipe(p: &Pipeline, scope: &mut Vec<String>) -> R<()> {
            for cmd in &p.cmds {
                for a in cmd {
                    match a {
                        Arg::Var(n, _) if !scope.iter().any(|s| s == n) => {
                            return err(format!("undefined variable \"{n}\""))
                        }
                        Arg::Pipe(inner) => pipe(inner, scope)?,
                        _ => {}
                    }
                }
            }
            if p.declare {
                scope.extend(p.vars.iter().cloned());
            } else {
                for v in &p.vars {
                    if !scope.iter().any(|s| s == v) {
                        return err(format!("undefined variable \"{v}\""));
                    }
                }
            }
            Ok(())
        }
        fn list(nodes: &[Node], scope: &mut Vec<String>) -> R<()> {
            for n in nodes {
                match n {
                    Node::Text(_) => {}
                    Node::Action(p) => pipe(p, scope)?,
                    Node::If(p, a, b) | Node::Range(p, a, b) | Node::With(p, a, b) => {
                        let depth = scope.len();
                        pipe(p, scope)?;
                        list(a, scope)?;
                        scope.truncate(depth);
                        list(b, scope)?;
                        scope.truncate(depth);
                    }
                }
            }
            Ok(())
        }
        let mut scope: Vec<String> = vec!["$".into()];
        scope.extend(PREAMBLE_VARS.iter().map(|(v, _)| format!("${v}")));
        list(&self.nodes, &mut scope)
    }

    /// Runs the template over `data`. `query` answers the `query` function (None: it
    /// fails with an error).
    pub fn execute(
        &self,
        data: &TemplateData,
        query: Option<QueryFn<'_>>,
    ) -> Result<String, TemplateError> {
        let mut dot = BTreeMap::new();
        dot.insert("Labels".to_string(), Val::Map(data.labels.clone()));
        dot.insert(
            "ExternalLabels".to_string(),
            Val::Map(data.external_labels.clone()),
        );
        dot.insert(
            "ExternalURL".to_string(),
            Val::Str(data.external_url.clone()),
        );
        dot.insert("Value".to_string(), Val::Num(data.value));
        let dot = Val::Struct(dot);
        let mut vars: Vec<(String, Val)> = vec![("$".into(), dot.clone())];
        for (v, field) in PREAMBLE_VARS {
            let val = match &dot {
                Val::Struct(m) => m.get(field).cloned().unwrap_or(Val::Nil),
                _ => Val::Nil,
            };
            vars.push((format!("${v}"), val));
        }
        let mut ex = Exec {
            vars,
            query,
            external_url: data.external_url.clone(),
            out: String::new(),
            steps: 0,
        };
        ex.list(&self.nodes, &dot)?;
        Ok(ex.out)
    }
}

/// Parses and runs `src` in one go, as Prometheus expands a rule's labels and
/// annotations; an error becomes `<error expanding template: …>` in the text, as in
/// Prometheus.
pub fn expand(src: &str, data: &TemplateData, query: Option<QueryFn<'_>>) -> String {
    if !src.contains("{{") {
        return src.to_string();
    }
    match Template::parse(src).and_then(|t| t.execute(data, query)) {
        Ok(s) => s,
        Err(e) => format!("<error expanding template: {e}>"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> TemplateData {
        let mut labels = BTreeMap::new();
        labels.insert("instance".to_string(), "host:9100".to_string());
        labels.insert("job".to_string(), "node".to_string());
        TemplateData {
            labels,
            external_labels: BTreeMap::from([("dc".to_string(), "eu".to_string())]),
            external_url: "http://calm:9400".into(),
            value: 0.123456,
        }
    }

    fn run(src: &str) -> String {
        Template::parse(src)
            .unwrap_or_else(|e| panic!("{src}: {e}"))
            .execute(&data(), None)
            .unwrap_or_else(|e| panic!("{src}: {e}"))
    }

    #[test]
    fn prometheus_idioms() {
        assert_eq!(run("{{ $labels.instance }} down"), "host:9100 down");
        assert_eq!(run("{{ .Labels.job }}/{{ $labels.missing }}/"), "node//");
        assert_eq!(run("{{ $value }}"), "0.123456");
        assert_eq!(run("{{ .Value | humanizePercentage }}"), "12.35%");
        assert_eq!(run("{{ humanize 1234567 }}"), "1.235M");
        assert_eq!(run("{{ humanize 0.001234 }}"), "1.234m");
        assert_eq!(run("{{ 3725 | humanizeDuration }}"), "1h 2m 5s");
        assert_eq!(run("{{ humanizeDuration 0.25 }}"), "250ms");
        assert_eq!(run("{{ humanize1024 2048 }}"), "2ki");
        assert_eq!(run("{{ printf \"%.2f\" $value }}"), "0.12");
        assert_eq!(run("{{ printf \"%s=%d\" \"a\" 3 }}"), "a=3");
        assert_eq!(
            run("{{ if gt $value 0.1 }}high{{ else }}low{{ end }}"),
            "high"
        );
        assert_eq!(
            run(
                "{{ if lt $value 0.1 }}a{{ else if eq $labels.job \"node\" }}b{{ else }}c{{ end }}"
            ),
            "b"
        );
        assert_eq!(
            run("{{ range $k, $v := $labels }}{{ $k }}={{ $v }};{{ end }}"),
            "instance=host:9100;job=node;"
        );
        assert_eq!(
            run("{{ $externalLabels.dc }} {{ $externalURL }}"),
            "eu http://calm:9400"
        );
        assert_eq!(run("a  {{- \" b \" -}}  c"), "a b c");
        assert_eq!(run("{{/* note */}}x"), "x");
        assert_eq!(run("{{ $x := 2 }}{{ $x }}"), "2");
        assert_eq!(
            run("{{ with $labels.job }}job={{ . }}{{ end }}"),
            "job=node"
        );
        assert_eq!(
            run("{{ $labels.instance | reReplaceAll \":.*\" \"\" | toUpper }}"),
            "HOST"
        );
        assert_eq!(run("{{ index $labels \"job\" }}"), "node");
        assert_eq!(run("{{ title \"hello world\" }}"), "Hello World");
        assert_eq!(
            run("{{ humanizeTimestamp 1435781451.781 }}"),
            "2015-07-01 20:10:51.78 +0000 UTC"
        );
        assert_eq!(run("{{ .Labels }}"), "map[instance:host:9100 job:node]");
    }

    #[test]
    fn query_function() {
        let q = |e: &str| -> Result<Vec<QuerySample>, String> {
            assert_eq!(e, "up");
            Ok(vec![QuerySample {
                labels: BTreeMap::from([("job".to_string(), "x".to_string())]),
                value: 2.0,
            }])
        };
        let t = Template::parse("{{ with query \"up\" }}{{ . | first | value }} {{ . | first | label \"job\" }}{{ end }}").unwrap();
        assert_eq!(t.execute(&data(), Some(&q)).unwrap(), "2 x");
    }

    #[test]
    fn errors_at_parse_time() {
        for bad in [
            "{{ $labels.x ",
            "{{ nosuchfunc 1 }}",
            "{{ if $value }}x",
            "{{ end }}",
            "{{ $undefined }}",
            "{{ \"unterminated }}",
            "{{ }}",
            "{{ define \"x\" }}{{ end }}",
            // Found by the alert_rules fuzz target: a multi-byte character right after
            // `{{` once made the delimiter search slice inside it (a panic).
            "{{\u{1fb}",
            "{{/*\u{1fb}",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad} parsed");
        }
        assert!(expand("{{ humanize \"abc\" }}", &data(), None)
            .starts_with("<error expanding template: "));
    }
}
