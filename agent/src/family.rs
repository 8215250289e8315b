//! A metric family as the agent holds it between a source and its two exits: the
//! exposition format at `/metrics` and remote-write series for the shipper.
//!
//! ```text
//! # HELP node_load1 1m load average.
//! # TYPE node_load1 gauge
//! node_load1 0.21
//! ```

use calm_wire::prompb::{Label, Sample, TimeSeries};
use calm_wire::value::format_value;

/// A family's type. The host collectors make counters, gauges and (netstat, vmstat)
/// untyped families; the textfile collector passes on histograms and summaries too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Untyped,
    Histogram,
    Summary,
}

impl Kind {
    /// The name on the `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Untyped => "untyped",
            Kind::Histogram => "histogram",
            Kind::Summary => "summary",
        }
    }
}

/// A sample label with this name gives the sample's own name (a histogram's `_bucket`,
/// `_sum`, `_count`); it is not rendered as a label.
pub const SAMPLE_NAME: &str = "__name__";

/// One family: name, help, type and its samples (label pairs without the name).
#[derive(Debug, Clone)]
pub struct Family {
    pub name: String,
    pub help: String,
    pub kind: Kind,
    pub samples: Vec<(Vec<(String, String)>, f64)>,
}

impl Family {
    /// An empty family.
    pub fn new(name: impl Into<String>, help: impl Into<String>, kind: Kind) -> Family {
        Family {
            name: name.into(),
            help: help.into(),
            kind,
            samples: Vec::new(),
        }
    }

    /// Adds a sample with labels given as pairs.
    pub fn push(&mut self, labels: &[(&str, &str)], v: f64) {
        self.samples.push((
            labels
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            v,
        ));
    }

    /// A family with one unlabelled sample.
    pub fn single(name: &str, help: &str, kind: Kind, v: f64) -> Family {
        let mut f = Family::new(name, help, kind);
        f.push(&[], v);
        f
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('"', "\\\"")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Renders families in the Prometheus text format (version 0.0.4).
pub fn render(families: &[Family], out: &mut String) {
    use std::fmt::Write;
    for f in families {
        if f.samples.is_empty() {
            continue;
        }
        let kind = f.kind.as_str();
        let _ = writeln!(out, "# HELP {} {}", f.name, escape_help(&f.help));
        let _ = writeln!(out, "# TYPE {} {}", f.name, kind);
        for (labels, v) in &f.samples {
            let name = labels
                .iter()
                .find(|(n, _)| n == SAMPLE_NAME)
                .map_or(f.name.as_str(), |(_, v)| v.as_str());
            out.push_str(name);
            if labels.iter().any(|(n, _)| n != SAMPLE_NAME) {
                out.push('{');
                let mut first = true;
                for (n, lv) in labels.iter().filter(|(n, _)| n != SAMPLE_NAME) {
                    if !first {
                        out.push(',');
                    }
                    first = false;
                    let _ = write!(out, "{n}=\"{}\"", escape_label(lv));
                }
                out.push('}');
            }
            let _ = writeln!(out, " {}", format_value(*v));
        }
    }
}

/// Turns families into remote-write series stamped `t_ms`, with `extra` labels
/// (job, instance) added. Labels come out sorted.
pub fn to_series(families: &[Family], extra: &[(&str, &str)], t_ms: i64) -> Vec<TimeSeries> {
    let mut out = Vec::new();
    for f in families {
        for (labels, v) in &f.samples {
            let mut ls: Vec<Label> = Vec::with_capacity(labels.len() + extra.len() + 1);
            if !labels.iter().any(|(n, _)| n == SAMPLE_NAME) {
                ls.push(Label::new("__name__", f.name.clone()));
            }
            for (n, lv) in labels {
                ls.push(Label::new(n.clone(), lv.clone()));
            }
            for (n, lv) in extra {
                if !labels.iter().any(|(x, _)| x == n) {
                    ls.push(Label::new(*n, *lv));
                }
            }
            ls.sort_by(|a, b| a.name.cmp(&b.name));
            out.push(TimeSeries {
                labels: ls,
                samples: vec![Sample {
                    value: *v,
                    timestamp: t_ms,
                }],
                exemplars: vec![],
                histograms: vec![],
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_text_format() {
        let mut f = Family::new("node_x_total", "X \"things\"\\.", Kind::Counter);
        f.push(&[("device", "a\"b")], 1.5);
        let mut s = String::new();
        render(&[f.clone()], &mut s);
        assert_eq!(
            s,
            "# HELP node_x_total X \"things\"\\\\.\n# TYPE node_x_total counter\nnode_x_total{device=\"a\\\"b\"} 1.5\n"
        );
        let ts = to_series(&[f], &[("job", "node")], 5);
        let names: Vec<_> = ts[0]
            .labels
            .iter()
            .map(|l| l.name_str().to_string())
            .collect();
        assert_eq!(names, vec!["__name__", "device", "job"]);
    }
}
