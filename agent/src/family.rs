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

/// Text of a family's name, help, or a label name or value, built without an
/// allocation in the common cases: a `&'static str` (names and helps the collectors
/// know, label names), or up to [`INLINE`] bytes held in place (label values: CPU
/// numbers, modes, devices). Only longer text read from the host is on the heap, in an
/// `Arc` so a kept copy (a remembered family name) is cloned without allocating.
/// Compares, orders and hashes as its text.
#[derive(Clone)]
pub struct Str(Repr);

/// Longest text a [`Str`] holds in place (the enum is then 24 bytes, as a `String`).
pub const INLINE: usize = 22;

#[derive(Clone)]
enum Repr {
    Static(&'static str),
    Inline(u8, [u8; INLINE]),
    Heap(std::sync::Arc<str>),
}

impl Str {
    /// A `Str` of a literal (no copy).
    pub const fn lit(s: &'static str) -> Str {
        Str(Repr::Static(s))
    }

    /// A copy of `s`: in place when it is short, else on the heap.
    pub fn copy(s: &str) -> Str {
        if s.len() <= INLINE {
            let mut b = [0u8; INLINE];
            b[..s.len()].copy_from_slice(s.as_bytes());
            Str(Repr::Inline(s.len() as u8, b))
        } else {
            Str(Repr::Heap(std::sync::Arc::from(s)))
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Static(s) => s,
            // SAFETY: an Inline is only made by Str::copy, which copies all the bytes
            // of a `&str` (valid UTF-8) to the start of `b` and sets `n` to their
            // count (≤ INLINE, so the slice is in bounds); the fields are private to
            // this module and never changed after. So `b[..n]` is exactly those UTF-8
            // bytes.
            Repr::Inline(n, b) => unsafe { std::str::from_utf8_unchecked(&b[..*n as usize]) },
            Repr::Heap(s) => s,
        }
    }
}

/// Most texts [`Str::interned`] keeps (the host's files have a few hundred field
/// names); past it a text is allocated as usual.
const INTERN_MAX: usize = 16384;

impl Str {
    /// The text `args` writes, shared with every earlier call that wrote the same text:
    /// for family names and helps built from a file's field names, which are the same
    /// on every read, so after the first read they cost a format into a reused buffer
    /// and a lookup, and no allocation.
    pub fn interned(args: std::fmt::Arguments<'_>) -> Str {
        use std::collections::HashSet;
        use std::fmt::Write;
        use std::sync::{Arc, Mutex, PoisonError};
        static TABLE: Mutex<Option<(String, HashSet<Arc<str>>)>> = Mutex::new(None);
        let mut g = TABLE.lock().unwrap_or_else(PoisonError::into_inner);
        let (buf, set) = g.get_or_insert_with(|| (String::with_capacity(128), HashSet::new()));
        buf.clear();
        let _ = buf.write_fmt(args);
        if buf.len() <= INLINE {
            return Str::copy(buf);
        }
        if let Some(s) = set.get(buf.as_str()) {
            return Str(Repr::Heap(s.clone()));
        }
        let s: Arc<str> = Arc::from(buf.as_str());
        if set.len() < INTERN_MAX {
            set.insert(s.clone());
        }
        Str(Repr::Heap(s))
    }
}

impl std::ops::Deref for Str {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Str {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl std::borrow::Borrow<str> for Str {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl From<&'static str> for Str {
    fn from(s: &'static str) -> Str {
        Str::lit(s)
    }
}

impl From<String> for Str {
    fn from(s: String) -> Str {
        if s.len() <= INLINE {
            Str::copy(&s)
        } else {
            Str(Repr::Heap(std::sync::Arc::from(s)))
        }
    }
}

impl From<&String> for Str {
    fn from(s: &String) -> Str {
        Str::copy(s)
    }
}

impl std::fmt::Debug for Str {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for Str {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq for Str {
    fn eq(&self, o: &Str) -> bool {
        self.as_str() == o.as_str()
    }
}

impl Eq for Str {}

impl PartialEq<str> for Str {
    fn eq(&self, o: &str) -> bool {
        self.as_str() == o
    }
}

impl PartialEq<&str> for Str {
    fn eq(&self, o: &&str) -> bool {
        self.as_str() == *o
    }
}

impl PartialEq<String> for Str {
    fn eq(&self, o: &String) -> bool {
        self.as_str() == o.as_str()
    }
}

impl PartialOrd for Str {
    fn partial_cmp(&self, o: &Str) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for Str {
    fn cmp(&self, o: &Str) -> std::cmp::Ordering {
        self.as_str().cmp(o.as_str())
    }
}

impl std::hash::Hash for Str {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.as_str().hash(h)
    }
}

/// A sample's labels (name, value), without the family name.
pub type Labels = Vec<(Str, Str)>;

/// One family: name, help, type and its samples (label pairs without the name).
#[derive(Debug, Clone)]
pub struct Family {
    pub name: Str,
    pub help: Str,
    pub kind: Kind,
    pub samples: Vec<(Labels, f64)>,
}

impl Family {
    /// An empty family (a literal name or help is not copied).
    pub fn new(name: impl Into<Str>, help: impl Into<Str>, kind: Kind) -> Family {
        Family {
            name: name.into(),
            help: help.into(),
            kind,
            samples: Vec::new(),
        }
    }

    /// Adds a sample with labels given as pairs: literal names, values copied (in
    /// place when short, see [`Str`]).
    pub fn push(&mut self, labels: &[(&'static str, &str)], v: f64) {
        let mut ls = Vec::with_capacity(labels.len());
        ls.extend(labels.iter().map(|(n, v)| (Str::lit(n), Str::copy(v))));
        self.samples.push((ls, v));
    }

    /// A family with one unlabelled sample (no allocation for the labels).
    pub fn single(name: impl Into<Str>, help: impl Into<Str>, kind: Kind, v: f64) -> Family {
        let mut f = Family::new(name, help, kind);
        f.samples.push((Vec::new(), v));
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
                ls.push(Label::new("__name__", f.name.as_str()));
            }
            for (n, lv) in labels {
                ls.push(Label::new(n.as_str(), lv.as_str()));
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

    #[test]
    fn str_is_its_text_however_held() {
        let long = "x".repeat(INLINE + 1);
        let edge = "é".repeat(INLINE / 2); // multi-byte, exactly INLINE bytes
        for t in ["", "cpu", edge.as_str(), long.as_str(), "a\"b\\c\n"] {
            let c = Str::copy(t);
            let o = Str::from(t.to_string());
            let i = Str::interned(format_args!("{t}"));
            for s in [&c, &o, &i] {
                assert_eq!(s.as_str(), t);
                assert_eq!(s.len(), t.len());
                assert_eq!(*s, t);
                assert_eq!(format!("{s}"), t);
            }
            assert_eq!(c, o);
            assert_eq!(o.cmp(&i), std::cmp::Ordering::Equal);
        }
        assert_eq!(Str::lit("b"), Str::copy("b"));
        assert!(Str::copy("a") < Str::lit("b"));
        // Interned texts are shared: the same allocation for the same text.
        let a = Str::interned(format_args!("node_memory_{}_bytes", "MemTotal"));
        let b = Str::interned(format_args!("node_memory_{}_bytes", "MemTotal"));
        match (&a.0, &b.0) {
            (Repr::Heap(x), Repr::Heap(y)) => assert!(std::sync::Arc::ptr_eq(x, y)),
            _ => panic!("a long interned text is on the heap"),
        }
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
