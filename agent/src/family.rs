//! A metric family as the agent holds it between a source and its two exits: the
//! exposition format at `/metrics` and remote-write series for the shipper.
//!
//! ```text
//! # HELP node_load1 1m load average.
//! # TYPE node_load1 gauge
//! node_load1 0.21
//! ```

use calm_wire::prompb::{Label, Sample, TimeSeries};
use calm_wire::value::ValueBuf;

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
    pub fn single(name: impl Into<String>, help: impl Into<String>, kind: Kind, v: f64) -> Family {
        let mut f = Family::new(name, help, kind);
        f.push(&[], v);
        f
    }
}

/// Appends `v` with `\\`, `"` (labels only) and newlines escaped, without allocating.
fn push_escaped(out: &mut String, v: &str, quote: bool) {
    if !v.contains(['\\', '\n', '"']) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// Appends a sample value as [`calm_wire::value::format_value`] writes it, without
/// allocating: integers (most host values) by the integer formatter, the rest through
/// a stack buffer.
fn push_value(out: &mut String, buf: &mut ValueBuf, v: f64) {
    use std::fmt::Write;
    // Below 2^53 an integral f64 is exactly its i64, and format_value writes integers
    // of [1, 1e21) as plain digits; 0 and -0 go the general way ("0", "-0").
    if v != 0.0 && v.fract() == 0.0 && v.abs() < 9.0e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        out.push_str(buf.format(v));
    }
}

/// Renders families in the Prometheus text format (version 0.0.4).
pub fn render(families: &[Family], out: &mut String) {
    let mut buf = ValueBuf::new();
    for f in families {
        if f.samples.is_empty() {
            continue;
        }
        out.push_str("# HELP ");
        out.push_str(&f.name);
        out.push(' ');
        push_escaped(out, &f.help, false);
        out.push_str("\n# TYPE ");
        out.push_str(&f.name);
        out.push(' ');
        out.push_str(f.kind.as_str());
        out.push('\n');
        for (labels, v) in &f.samples {
            let name = labels
                .iter()
                .find(|(n, _)| n == SAMPLE_NAME)
                .map_or(f.name.as_str(), |(_, v)| v.as_str());
            out.push_str(name);
            let mut first = true;
            for (n, lv) in labels.iter().filter(|(n, _)| n != SAMPLE_NAME) {
                out.push(if first { '{' } else { ',' });
                first = false;
                out.push_str(n);
                out.push_str("=\"");
                push_escaped(out, lv, true);
                out.push('"');
            }
            if !first {
                out.push('}');
            }
            out.push(' ');
            push_value(out, &mut buf, *v);
            out.push('\n');
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

/// Appends `v` as a protobuf varint.
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(v: u64) -> usize {
    // 1 byte per started 7 bits, at least one.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Appends a length-delimited field (tag byte, length, bytes).
fn put_bytes_field(out: &mut Vec<u8>, tag: u8, b: &[u8]) {
    out.push(tag);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Appends what [`to_series`] gives, as the protobuf bytes of a remote-write
/// `WriteRequest` holding those series, without building the series: the same bytes
/// prost writes for them (proto3: empty strings and zero numbers are left out), so
/// shipping costs one pass over the families and no allocation per label. Appending
/// two of these is the request with both lists (protobuf concatenation).
pub fn encode_series(families: &[Family], extra: &[(&str, &str)], t_ms: i64, out: &mut Vec<u8>) {
    let mut ls: Vec<(&str, &str)> = Vec::with_capacity(16);
    let mut ts: Vec<u8> = Vec::with_capacity(512);
    for f in families {
        for (labels, v) in &f.samples {
            ls.clear();
            if !labels.iter().any(|(n, _)| n == SAMPLE_NAME) {
                ls.push(("__name__", f.name.as_str()));
            }
            ls.extend(labels.iter().map(|(n, v)| (n.as_str(), v.as_str())));
            for (n, lv) in extra {
                if !labels.iter().any(|(x, _)| x == n) {
                    ls.push((n, lv));
                }
            }
            // Stable, by name only: as to_series sorts.
            ls.sort_by(|a, b| a.0.cmp(b.0));
            ts.clear();
            for (n, lv) in &ls {
                // Label { name = 1, value = 2 }, each left out when empty.
                let mut len = 0;
                if !n.is_empty() {
                    len += 1 + varint_len(n.len() as u64) + n.len();
                }
                if !lv.is_empty() {
                    len += 1 + varint_len(lv.len() as u64) + lv.len();
                }
                ts.push(0x0a); // TimeSeries.labels = 1
                put_varint(&mut ts, len as u64);
                if !n.is_empty() {
                    put_bytes_field(&mut ts, 0x0a, n.as_bytes());
                }
                if !lv.is_empty() {
                    put_bytes_field(&mut ts, 0x12, lv.as_bytes());
                }
            }
            // Sample { value = 1 (double), timestamp = 2 (int64) }, zeros left out.
            let mut len = 0;
            if *v != 0.0 {
                len += 9;
            }
            if t_ms != 0 {
                len += 1 + varint_len(t_ms as u64);
            }
            ts.push(0x12); // TimeSeries.samples = 2
            put_varint(&mut ts, len as u64);
            if *v != 0.0 {
                ts.push(0x09);
                ts.extend_from_slice(&v.to_le_bytes());
            }
            if t_ms != 0 {
                ts.push(0x10);
                put_varint(&mut ts, t_ms as u64);
            }
            put_bytes_field(out, 0x0a, &ts); // WriteRequest.timeseries = 1
        }
    }
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

    /// Families with what the encoders must get right: labels escaped, empty values,
    /// sample names (histograms), an `instance` of their own, long strings (two-byte
    /// lengths), odd values (-0, NaN, ±Inf, fractions, big and negative integers).
    fn varied() -> Vec<Family> {
        let mut a = Family::new(
            "node_a_total",
            "A with \\ and\nnewline \"q\".",
            Kind::Counter,
        );
        a.push(&[("device", "sda"), ("mode", "")], 1.0);
        a.push(&[("device", "x\"y\\z\nw"), ("instance", "own:1")], -0.0);
        a.push(&[("device", &"long".repeat(60))], f64::NAN);
        a.push(&[("zz", "1"), ("aa", "2"), ("device", "é")], f64::INFINITY);
        let mut h = Family::new("node_h", "H.", Kind::Histogram);
        h.push(&[(SAMPLE_NAME, "node_h_bucket"), ("le", "0.5")], 3.0);
        h.push(&[(SAMPLE_NAME, "node_h_sum")], 0.25);
        h.push(&[(SAMPLE_NAME, "node_h_count")], 3.0);
        let values = [
            0.0,
            1.0,
            -1.0,
            0.5,
            1e-7,
            123456789012.0,
            9.007e15,
            1e21,
            -2.5e30,
            7.83e-7,
            f64::NEG_INFINITY,
            4503599627370495.5,
            1e15,
            -9.0e14,
        ];
        let mut g = Family::new("node_g", "G.", Kind::Gauge);
        for (i, v) in values.iter().enumerate() {
            g.push(&[("i", &i.to_string())], *v);
        }
        vec![a, h, Family::new("node_empty", "E.", Kind::Gauge), g]
    }

    #[test]
    fn encode_series_writes_what_prost_writes() {
        use prost::Message;
        let fams = varied();
        let extra = [("job", "node"), ("instance", "host-1")];
        for t in [1_700_000_000_123i64, 0, -5] {
            let mut got = Vec::new();
            encode_series(&fams, &extra, t, &mut got);
            let want = calm_wire::prompb::WriteRequest {
                timeseries: to_series(&fams, &extra, t),
                metadata: vec![],
            }
            .encode_to_vec();
            assert_eq!(got, want, "t = {t}");
        }
        // Two appended are the request with both lists.
        let mut two = Vec::new();
        encode_series(&fams[..1], &extra, 9, &mut two);
        encode_series(&fams[1..], &extra, 9, &mut two);
        let mut one = Vec::new();
        encode_series(&fams, &extra, 9, &mut one);
        assert_eq!(two, one);
        let back = calm_wire::prompb::WriteRequest::decode(two.as_slice()).unwrap();
        assert_eq!(back.timeseries.len(), to_series(&fams, &extra, 9).len());
    }

    /// The renderer as it was (allocating escapes and `format_value`): the reference.
    fn render_reference(families: &[Family]) -> String {
        use std::fmt::Write;
        let esc_l = |v: &str| {
            v.replace('\\', "\\\\")
                .replace('\n', "\\n")
                .replace('"', "\\\"")
        };
        let esc_h = |v: &str| v.replace('\\', "\\\\").replace('\n', "\\n");
        let mut out = String::new();
        for f in families.iter().filter(|f| !f.samples.is_empty()) {
            let _ = writeln!(out, "# HELP {} {}", f.name, esc_h(&f.help));
            let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind.as_str());
            for (labels, v) in &f.samples {
                let name = labels
                    .iter()
                    .find(|(n, _)| n == SAMPLE_NAME)
                    .map_or(f.name.as_str(), |(_, v)| v.as_str());
                let ls: Vec<String> = labels
                    .iter()
                    .filter(|(n, _)| n != SAMPLE_NAME)
                    .map(|(n, v)| format!("{n}=\"{}\"", esc_l(v)))
                    .collect();
                let ls = if ls.is_empty() {
                    String::new()
                } else {
                    format!("{{{}}}", ls.join(","))
                };
                let _ = writeln!(out, "{name}{ls} {}", calm_wire::value::format_value(*v));
            }
        }
        out
    }

    #[test]
    fn render_matches_the_reference() {
        let fams = varied();
        let mut got = String::new();
        render(&fams, &mut got);
        assert_eq!(got, render_reference(&fams));
        for i in 1..2_000_000u64 {
            // Integers through the fast path, as format_value writes them.
            let v = (i * 4_503_599_627) as f64 * if i % 2 == 0 { 1.0 } else { -1.0 };
            let mut s = String::new();
            push_value(&mut s, &mut ValueBuf::new(), v);
            assert_eq!(s, calm_wire::value::format_value(v), "{v}");
        }
    }
}
