//! The rules a label set must follow before anything stores it.
//!
//! Every ingest path (remote-write, OTLP, the agent's scraper) ends in a
//! [`crate::prompb::TimeSeries`], and every one of them is checked here, so the
//! answer to bad input is the same wherever it came in. The rules are Prometheus'
//! classic ones:
//!
//! ```text
//! metric name  [a-zA-Z_:][a-zA-Z0-9_:]*      (the value of __name__, required)
//! label name   [a-zA-Z_][a-zA-Z0-9_]*        (not empty, no duplicates)
//! label value  any UTF-8; an empty value means "no such label" and is dropped
//! ```
//! plus limits on how many labels a series has and how long names and values are.
//! Labels are sorted by name on the way out, as Prometheus keeps them.

use crate::prompb::{Label, TimeSeries};

/// The name of the label that holds the metric name.
pub const METRIC_NAME: &str = "__name__";

/// Limits that a single series must stay within.
#[derive(Debug, Clone, Copy)]
pub struct LabelLimits {
    /// Most labels in one series, `__name__` included.
    pub max_labels: usize,
    /// Longest label name, in bytes.
    pub max_name_len: usize,
    /// Longest label value, in bytes.
    pub max_value_len: usize,
}

impl Default for LabelLimits {
    fn default() -> Self {
        LabelLimits {
            max_labels: 64,
            max_name_len: 1024,
            max_value_len: 16 * 1024,
        }
    }
}

/// Why a series was refused. The message names the series so the sender can find it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("series has no metric name (__name__ label) in {0}")]
    MissingName(String),
    #[error("invalid metric name {name:?}: must match [a-zA-Z_:][a-zA-Z0-9_:]*")]
    InvalidMetricName { name: String },
    #[error("invalid label name {name:?} in {series}: must match [a-zA-Z_][a-zA-Z0-9_]*")]
    InvalidLabelName { name: String, series: String },
    #[error("empty label name in {0}")]
    EmptyLabelName(String),
    #[error("duplicate label name {name:?} in {series}")]
    DuplicateLabelName { name: String, series: String },
    #[error("label {name:?} is not valid UTF-8 in {series}")]
    InvalidUtf8 { name: String, series: String },
    #[error("series {series} has {count} labels, more than the limit of {limit}")]
    TooManyLabels {
        series: String,
        count: usize,
        limit: usize,
    },
    #[error("label name {name:?} is {len} bytes long, more than the limit of {limit}")]
    NameTooLong {
        name: String,
        len: usize,
        limit: usize,
    },
    #[error(
        "value of label {name:?} in {series} is {len} bytes long, more than the limit of {limit}"
    )]
    ValueTooLong {
        name: String,
        series: String,
        len: usize,
        limit: usize,
    },
}

/// True when `s` is a valid classic metric name.
pub fn is_valid_metric_name(s: &[u8]) -> bool {
    match s.split_first() {
        None => false,
        Some((first, rest)) => {
            (first.is_ascii_alphabetic() || *first == b'_' || *first == b':')
                && rest
                    .iter()
                    .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b':')
        }
    }
}

/// True when `s` is a valid classic label name.
pub fn is_valid_label_name(s: &[u8]) -> bool {
    match s.split_first() {
        None => false,
        Some((first, rest)) => {
            (first.is_ascii_alphabetic() || *first == b'_')
                && rest.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
        }
    }
}

/// Renders labels as `{a="b", c="d"}` for error messages, cut to a readable length.
pub fn describe(labels: &[Label]) -> String {
    let mut out = String::from("{");
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&String::from_utf8_lossy(&l.name));
        out.push('=');
        out.push_str(&format!("{:?}", String::from_utf8_lossy(&l.value)));
        if out.len() > 200 {
            out.truncate(200);
            out.push('…');
            break;
        }
    }
    out.push('}');
    out
}

/// Checks one series and puts its labels in canonical form: sorted by name, labels with
/// empty values removed. Returns the first rule it breaks.
pub fn validate_series(ts: &mut TimeSeries, limits: &LabelLimits) -> Result<(), LabelError> {
    // Empty values mean "label absent" in Prometheus; drop them before anything else.
    if ts.labels.iter().any(|l| l.value.is_empty()) {
        ts.labels
            .retain(|l| !l.value.is_empty() || l.name.is_empty());
    }
    if !ts.labels.windows(2).all(|w| w[0].name <= w[1].name) {
        ts.labels.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    }
    let labels = &ts.labels;
    if labels.len() > limits.max_labels {
        return Err(LabelError::TooManyLabels {
            series: describe(labels),
            count: labels.len(),
            limit: limits.max_labels,
        });
    }
    let mut has_name = false;
    for (i, l) in labels.iter().enumerate() {
        if l.name.is_empty() {
            return Err(LabelError::EmptyLabelName(describe(labels)));
        }
        if l.name.len() > limits.max_name_len {
            return Err(LabelError::NameTooLong {
                name: String::from_utf8_lossy(&l.name[..64.min(l.name.len())]).into_owned(),
                len: l.name.len(),
                limit: limits.max_name_len,
            });
        }
        if i > 0 && labels[i - 1].name == l.name {
            return Err(LabelError::DuplicateLabelName {
                name: String::from_utf8_lossy(&l.name).into_owned(),
                series: describe(labels),
            });
        }
        // Names are checked to be ASCII below; only values can hold other UTF-8.
        if std::str::from_utf8(&l.value).is_err() {
            return Err(LabelError::InvalidUtf8 {
                name: String::from_utf8_lossy(&l.name).into_owned(),
                series: describe(labels),
            });
        }
        if l.value.len() > limits.max_value_len {
            return Err(LabelError::ValueTooLong {
                name: String::from_utf8_lossy(&l.name).into_owned(),
                series: describe(labels),
                len: l.value.len(),
                limit: limits.max_value_len,
            });
        }
        if &l.name[..] == METRIC_NAME.as_bytes() {
            has_name = true;
            if !is_valid_metric_name(&l.value) {
                return Err(LabelError::InvalidMetricName {
                    name: String::from_utf8_lossy(&l.value).into_owned(),
                });
            }
        } else if !is_valid_label_name(&l.name) {
            return Err(LabelError::InvalidLabelName {
                name: String::from_utf8_lossy(&l.name).into_owned(),
                series: describe(labels),
            });
        }
    }
    if !has_name {
        return Err(LabelError::MissingName(describe(labels)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(pairs: &[(&str, &str)]) -> TimeSeries {
        TimeSeries {
            labels: pairs.iter().map(|(n, v)| Label::new(*n, *v)).collect(),
            samples: vec![],
            exemplars: vec![],
            histograms: vec![],
        }
    }

    #[test]
    fn sorts_and_drops_empty_values() {
        let mut ts = series(&[("job", "a"), ("__name__", "up"), ("empty", "")]);
        validate_series(&mut ts, &LabelLimits::default()).unwrap();
        let names: Vec<_> = ts.labels.iter().map(|l| l.name_str().to_string()).collect();
        assert_eq!(names, vec!["__name__", "job"]);
    }

    #[test]
    fn rejects_each_broken_rule_with_its_own_error() {
        let lim = LabelLimits::default();
        let cases: Vec<(TimeSeries, &str)> = vec![
            (series(&[("job", "a")]), "no metric name"),
            (series(&[("__name__", "1up")]), "invalid metric name"),
            (
                series(&[("__name__", "up"), ("bad-name", "x")]),
                "invalid label name",
            ),
            (series(&[("__name__", "up"), ("", "x")]), "empty label name"),
            (
                series(&[("__name__", "up"), ("a", "x"), ("a", "y")]),
                "duplicate label name",
            ),
        ];
        for (mut ts, want) in cases {
            let err = validate_series(&mut ts, &lim).unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} should contain {want:?}");
        }
        let mut many = series(&[("__name__", "up")]);
        for i in 0..100 {
            many.labels.push(Label::new(format!("l{i}"), "v"));
        }
        let err = validate_series(&mut many, &lim).unwrap_err().to_string();
        assert!(err.contains("more than the limit of 64"), "{err}");
    }

    #[test]
    fn rejects_invalid_utf8() {
        let mut ts = series(&[("__name__", "up")]);
        ts.labels.push(Label {
            name: "x".into(),
            value: bytes::Bytes::from_static(&[0xff, 0xfe]),
        });
        let err = validate_series(&mut ts, &LabelLimits::default()).unwrap_err();
        assert!(matches!(err, LabelError::InvalidUtf8 { .. }));
    }
}
