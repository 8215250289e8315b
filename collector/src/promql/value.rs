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
/// count, not an allocation per label; the setters copy only when the set is shared.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(Arc<Vec<(String, String)>>);

impl Labels {
    /// Builds a label set from pairs in any order; empty values are left out and the
    /// last value of a repeated name wins.
    pub fn from_pairs(mut pairs: Vec<(String, String)>) -> Labels {
        pairs.retain(|(_, v)| !v.is_empty());
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(String, String)> = Vec::with_capacity(pairs.len());
        for (n, v) in pairs {
            match out.last_mut() {
                Some(last) if last.0 == n => last.1 = v,
                _ => out.push((n, v)),
            }
        }
        Labels(Arc::new(out))
    }

    /// Decodes the TSDB's encoded label set. The TSDB stores validated sets (sorted by
    /// name, unique, no empty value), so the pairs are taken as they come, in one
    /// allocation each; a set that is not in that form goes through
    /// [`Labels::from_pairs`]. Every selected series is decoded once per query: the
    /// second copy and sort `from_pairs` makes were a tenth of a query's allocations.
    pub fn from_encoded(buf: &[u8]) -> Labels {
        let pairs = crate::tsdb::labels::to_pairs(buf);
        let canonical =
            pairs.iter().all(|(_, v)| !v.is_empty()) && pairs.windows(2).all(|w| w[0].0 < w[1].0);
        if canonical {
            Labels(Arc::new(pairs))
        } else {
            Labels::from_pairs(pairs)
        }
    }

    /// The pairs, sorted by name.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    /// Consumes the set into its pairs.
    pub fn into_pairs(self) -> Vec<(String, String)> {
        Arc::try_unwrap(self.0).unwrap_or_else(|shared| (*shared).clone())
    }

    /// Where the shared pairs live: equal for clones of one set, and never reused by
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
        self.0.is_empty()
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].1.as_str())
    }

    /// Sets `name` to `value`; an empty value deletes the label.
    pub fn set(&mut self, name: &str, value: &str) {
        match self.0.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(i) if value.is_empty() => {
                Arc::make_mut(&mut self.0).remove(i);
            }
            Ok(i) if self.0[i].1 == value => {}
            Ok(i) => Arc::make_mut(&mut self.0)[i].1 = value.to_string(),
            Err(_) if value.is_empty() => {}
            Err(i) => Arc::make_mut(&mut self.0).insert(i, (name.to_string(), value.to_string())),
        }
    }

    /// Deletes `name`.
    pub fn del(&mut self, name: &str) {
        if let Ok(i) = self.0.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Arc::make_mut(&mut self.0).remove(i);
        }
    }

    /// Keeps only the labels named in `names`.
    pub fn keep(&self, names: &[String]) -> Labels {
        Labels(Arc::new(
            self.0
                .iter()
                .filter(|(n, _)| names.iter().any(|k| k == n))
                .cloned()
                .collect(),
        ))
    }

    /// Drops the labels named in `names`, and the metric name.
    pub fn without(&self, names: &[String]) -> Labels {
        let drop = |n: &String| n == METRIC_NAME || names.iter().any(|k| k == n);
        if !self.0.iter().any(|(n, _)| drop(n)) {
            return self.clone();
        }
        Labels(Arc::new(
            self.0.iter().filter(|(n, _)| !drop(n)).cloned().collect(),
        ))
    }

    /// The set without the metric name.
    pub fn without_name(&self) -> Labels {
        self.without(&[])
    }

    /// A matching key: the labels in `names` (`on`), or all labels except those in
    /// `names` and the metric name (`ignoring`).
    pub fn signature(&self, on: bool, names: &[String]) -> String {
        let mut s = String::new();
        for (n, v) in self.0.iter() {
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

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (n, v)) in self.0.iter().enumerate() {
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
        assert_eq!(
            l.pairs(),
            &[("b".into(), "2".into()), ("c".into(), "3".into())]
        );
        assert_eq!(l.get("c"), Some("3"));
        assert_eq!(
            l.signature(true, &["c".into()]),
            l.keep(&["c".into()]).signature(false, &[])
        );
    }
}
