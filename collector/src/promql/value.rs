//! The values PromQL expressions evaluate to: label sets, samples, instant vectors,
//! range vectors (matrices), scalars and strings.

use std::fmt;
use std::sync::Arc;

pub use crate::tsdb::histogram::FloatHistogram;

/// A native histogram value, shared between the samples that carry it.
pub type Hist = Arc<FloatHistogram>;

/// The metric name label.
pub const METRIC_NAME: &str = "__name__";

/// A label set, kept sorted by label name with unique names.
///
/// Shared, copy-on-write: a range query hands the same series' labels to every step
/// (thousands of series × over a thousand steps), so a clone must cost a reference
/// count, not an allocation per label.
///
/// Compact: every name and value sit in one string, with where each ends beside it, so
/// a set costs three allocations however many labels it has. Every series a query
/// selects is decoded into one of these, and rule evaluation selects every series of
/// every rule's metrics each round: a `String` per name and per value (twenty-odd
/// allocations for a node_exporter series) made ten rule groups queue on the
/// allocator's locks.
#[derive(Clone, Default)]
pub struct Labels(Arc<Set>);

/// The stored form of [`Labels`]: `text` holds name, value, name, value, … back to
/// back; `ends[2i]` is where label `i`'s name ends and `ends[2i + 1]` where its value
/// ends. Equal sets have equal `text` and `ends` (the split points tell `a="bc"` from
/// `ab="c"`), so equality and hashing look at the two fields.
#[derive(Debug, Default)]
struct Set {
    text: String,
    ends: Vec<u32>,
}

impl PartialEq for Set {
    /// The two fields, lengths first: equal empty sets (every step's result of
    /// `vector(1)`, `sum(...)`, interned each step) are told apart without a call into
    /// libc's `memcmp`, which costs ~0.1 µs each on short input.
    fn eq(&self, other: &Set) -> bool {
        self.ends.len() == other.ends.len()
            && self.text.len() == other.text.len()
            && (self.ends.is_empty() || (self.ends == other.ends && self.text == other.text))
    }
}

impl Eq for Set {}

impl std::hash::Hash for Set {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // The same two fields as equality.
        self.text.hash(state);
        self.ends.hash(state);
    }
}

/// Builds a [`Set`] from pairs given in order.
struct Builder(Set);

impl Builder {
    fn with_capacity(labels: usize, text: usize) -> Builder {
        Builder(Set {
            text: String::with_capacity(text),
            ends: Vec::with_capacity(2 * labels),
        })
    }

    fn push(&mut self, name: &str, value: &str) {
        let s = &mut self.0;
        s.text.push_str(name);
        s.ends.push(s.text.len() as u32);
        s.text.push_str(value);
        s.ends.push(s.text.len() as u32);
    }

    fn finish(self) -> Labels {
        Labels(Arc::new(self.0))
    }
}

/// The `(name, value)` pairs of a [`Labels`], in name order.
#[derive(Clone)]
pub struct Pairs<'a> {
    set: &'a Set,
    next: usize,
    end: usize,
}

impl<'a> Pairs<'a> {
    fn at(&self, i: usize) -> (&'a str, &'a str) {
        let set = self.set;
        let start = if i == 0 {
            0
        } else {
            set.ends[2 * i - 1] as usize
        };
        let mid = set.ends[2 * i] as usize;
        let end = set.ends[2 * i + 1] as usize;
        (&set.text[start..mid], &set.text[mid..end])
    }
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        if self.next == self.end {
            return None;
        }
        self.next += 1;
        Some(self.at(self.next - 1))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.end - self.next;
        (n, Some(n))
    }
}

impl DoubleEndedIterator for Pairs<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.next == self.end {
            return None;
        }
        self.end -= 1;
        Some(self.at(self.end))
    }
}

impl ExactSizeIterator for Pairs<'_> {}

impl Labels {
    /// Builds a label set from pairs in any order; empty values are left out and the
    /// last value of a repeated name wins.
    pub fn from_pairs(mut pairs: Vec<(String, String)>) -> Labels {
        pairs.retain(|(_, v)| !v.is_empty());
        // Stable: of a repeated name, the last one given comes last and wins below.
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        let text = pairs.iter().map(|(n, v)| n.len() + v.len()).sum();
        let mut b = Builder::with_capacity(pairs.len(), text);
        for (i, (n, v)) in pairs.iter().enumerate() {
            if pairs.get(i + 1).is_some_and(|next| next.0 == *n) {
                continue;
            }
            b.push(n, v);
        }
        b.finish()
    }

    /// Decodes the TSDB's encoded label set. The TSDB stores validated sets (sorted by
    /// name, unique, no empty value), so the pairs are taken as they come, into one
    /// string; a set that is not in that form goes through [`Labels::from_pairs`].
    /// Every selected series is decoded once per query.
    pub fn from_encoded(buf: &[u8]) -> Labels {
        // The varint lengths make the encoding a little longer than the text.
        let mut b = Builder::with_capacity(16, buf.len());
        let mut last: Option<&str> = None;
        for (n, v) in crate::tsdb::labels::iter(buf) {
            if v.is_empty() || last.is_some_and(|l| l >= n) {
                return Labels::from_pairs(crate::tsdb::labels::to_pairs(buf));
            }
            b.push(n, v);
            last = Some(n);
        }
        b.finish()
    }

    /// The pairs, sorted by name.
    pub fn pairs(&self) -> Pairs<'_> {
        Pairs {
            set: &self.0,
            next: 0,
            end: self.len(),
        }
    }

    /// The number of labels.
    pub fn len(&self) -> usize {
        self.0.ends.len() / 2
    }

    /// Where the shared set lives: equal for clones of one set, and never reused by
    /// another set while a clone is alive (see `intern.rs`).
    pub fn addr(&self) -> usize {
        Arc::as_ptr(&self.0) as usize
    }

    /// True when other clones of this set are alive (it came from storage or an
    /// interner, not from a computation of this step).
    pub fn is_shared(&self) -> bool {
        Arc::strong_count(&self.0) > 1
    }

    /// True when the set has no labels.
    pub fn is_empty(&self) -> bool {
        self.0.ends.is_empty()
    }

    /// Where `name` is (`Ok`), or would be inserted (`Err`).
    fn find(&self, name: &str) -> Result<usize, usize> {
        let p = self.pairs();
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            match p.at(mid).0.cmp(name) {
                std::cmp::Ordering::Equal => return Ok(mid),
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
            }
        }
        Err(lo)
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        let i = self.find(name).ok()?;
        Some(self.pairs().at(i).1)
    }

    /// A set of the labels `keep` accepts, or a clone when it accepts every one.
    fn filtered(&self, keep: impl Fn(&str) -> bool) -> Labels {
        if self.pairs().all(|(n, _)| keep(n)) {
            return self.clone();
        }
        let mut b = Builder::with_capacity(self.len(), self.0.text.len());
        for (n, v) in self.pairs().filter(|(n, _)| keep(n)) {
            b.push(n, v);
        }
        b.finish()
    }

    /// Sets `name` to `value`; an empty value deletes the label.
    pub fn set(&mut self, name: &str, value: &str) {
        let at = self.find(name);
        match at {
            Ok(_) if value.is_empty() => return self.del(name),
            Ok(i) if self.pairs().at(i).1 == value => return,
            Err(_) if value.is_empty() => return,
            _ => {}
        }
        let mut b =
            Builder::with_capacity(self.len() + 1, self.0.text.len() + name.len() + value.len());
        let (skip, insert_at) = match at {
            Ok(i) => (Some(i), i),
            Err(i) => (None, i),
        };
        for (i, (n, v)) in self.pairs().enumerate() {
            if i == insert_at {
                b.push(name, value);
            }
            if Some(i) != skip {
                b.push(n, v);
            }
        }
        if insert_at == self.len() {
            b.push(name, value);
        }
        *self = b.finish();
    }

    /// Deletes `name`.
    pub fn del(&mut self, name: &str) {
        if self.find(name).is_ok() {
            *self = self.filtered(|n| n != name);
        }
    }

    /// Keeps only the labels named in `names`.
    pub fn keep(&self, names: &[String]) -> Labels {
        self.filtered(|n| names.iter().any(|k| k == n))
    }

    /// Drops the labels named in `names`, and the metric name.
    pub fn without(&self, names: &[String]) -> Labels {
        self.filtered(|n| n != METRIC_NAME && !names.iter().any(|k| k == n))
    }

    /// The set without the metric name.
    pub fn without_name(&self) -> Labels {
        self.without(&[])
    }

    /// A matching key: the labels in `names` (`on`), or all labels except those in
    /// `names` and the metric name (`ignoring`).
    pub fn signature(&self, on: bool, names: &[String]) -> String {
        let mut s = String::new();
        for (n, v) in self.pairs() {
            let listed = names.iter().any(|k| k == n);
            let take = if on {
                listed
            } else {
                !listed && n != METRIC_NAME
            };
            if take {
                s.push_str(n);
                s.push('\u{ff}');
                s.push_str(v);
                s.push('\u{fe}');
            }
        }
        s
    }
}

impl PartialEq for Labels {
    fn eq(&self, other: &Labels) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl Eq for Labels {}

impl std::hash::Hash for Labels {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state)
    }
}

/// Ordered as the list of `(name, value)` pairs (Prometheus' `labels.Compare`).
impl Ord for Labels {
    fn cmp(&self, other: &Labels) -> std::cmp::Ordering {
        if Arc::ptr_eq(&self.0, &other.0) {
            return std::cmp::Ordering::Equal;
        }
        self.pairs().cmp(other.pairs())
    }
}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Labels) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.pairs()).finish()
    }
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (n, v)) in self.pairs().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{n}={v:?}")?;
        }
        f.write_str("}")
    }
}

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series' labels.
    pub labels: Labels,
    /// The sample's own timestamp (selectors) or the evaluation time (everything else).
    pub t: i64,
    /// The value (0 when the sample is a histogram).
    pub v: f64,
    /// The native histogram, when the sample is one.
    pub h: Option<Hist>,
    /// Delayed `__name__` removal: drop the metric name when the query finishes.
    pub drop_name: bool,
}

/// An instant vector: at most one sample per series at one evaluation time.
pub type Vector = Vec<Sample>;

/// One series of a range vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The series' labels.
    pub labels: Labels,
    /// Float points sorted by time.
    pub points: Vec<(i64, f64)>,
    /// Histogram points sorted by time (at other times than the float points).
    pub hpoints: Vec<(i64, Hist)>,
    /// Delayed `__name__` removal, as for [`Sample`].
    pub drop_name: bool,
}

/// A range vector.
pub type Matrix = Vec<Series>;

/// What an expression evaluates to at one evaluation time.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A scalar.
    Scalar(f64),
    /// A string.
    String(String),
    /// An instant vector.
    Vector(Vector),
    /// A range vector.
    Matrix(Matrix),
}

impl Value {
    /// The PromQL type name, as used in error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar(_) => "scalar",
            Value::String(_) => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

/// One series of a matrix result: labels, float points, histogram points.
pub type MatrixRow = (Labels, Vec<(i64, f64)>, Vec<(i64, Hist)>);

/// The result of a query, ready to be rendered by the API.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryValue {
    /// A scalar at a time (ms).
    Scalar(i64, f64),
    /// A string at a time (ms).
    String(i64, String),
    /// An instant vector: labels, time (ms), value, and the histogram when the sample
    /// is a native histogram (the value is then 0).
    Vector(Vec<(Labels, i64, f64, Option<Hist>)>),
    /// A range vector: labels, float points and histogram points, sorted by labels.
    Matrix(Vec<MatrixRow>),
}

/// Formats a float as Go's `strconv.FormatFloat(f, 'f', -1, 64)` does (never an
/// exponent), as Prometheus' engine does for `count_values` and quantile labels; the
/// HTTP API's sample values switch to an exponent at the extremes
/// (`calm_wire::value::format_value`).
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_stay_sorted() {
        let mut l = Labels::from_pairs(vec![("b".into(), "2".into()), ("a".into(), "1".into())]);
        l.set("c", "3");
        l.set("a", "");
        assert_eq!(l.pairs().collect::<Vec<_>>(), [("b", "2"), ("c", "3")]);
        assert_eq!(l.get("c"), Some("3"));
        assert_eq!(
            l.signature(true, &["c".into()]),
            l.keep(&["c".into()]).signature(false, &[])
        );
    }
}
