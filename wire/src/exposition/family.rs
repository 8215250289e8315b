//! What a parsed body is made of: metric families holding samples, and the rule that
//! says which family a sample belongs to.

use std::borrow::Cow;

/// A family's type, from its `# TYPE` line (`untyped`/`unknown` when it has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// `counter`: a `_total` sample (OpenMetrics) or the bare name (text format).
    Counter,
    /// `gauge`.
    Gauge,
    /// `histogram`: `_bucket{le=…}`, `_sum`, `_count` (and `_created`).
    Histogram,
    /// `gaugehistogram` (OpenMetrics): `_bucket`, `_gsum`, `_gcount`.
    GaugeHistogram,
    /// `summary`: the bare name with `quantile=…`, `_sum`, `_count` (and `_created`).
    Summary,
    /// `info` (OpenMetrics): an `_info` sample of value 1.
    Info,
    /// `stateset` (OpenMetrics): one sample per state, 0 or 1.
    StateSet,
    /// `untyped` (text format), `unknown` (OpenMetrics), or no `# TYPE` line.
    Unknown,
}

impl MetricType {
    /// The type's name as the metadata API shows it (Prometheus' `model.MetricType`).
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
            MetricType::Unknown => "unknown",
        }
    }

    /// Suffixes a sample name may add to the family name for this type.
    fn suffixes(self) -> &'static [&'static str] {
        match self {
            MetricType::Counter => &["", "_total", "_created"],
            MetricType::Histogram => &["_bucket", "_sum", "_count", "_created", ""],
            MetricType::GaugeHistogram => &["_bucket", "_gsum", "_gcount", "_sum", "_count", ""],
            MetricType::Summary => &["", "_sum", "_count", "_created"],
            MetricType::Info => &["_info", ""],
            MetricType::Gauge | MetricType::StateSet | MetricType::Unknown => &[""],
        }
    }
}

/// An exemplar attached to a sample (OpenMetrics `… # {labels} value [timestamp]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar<'a> {
    /// Label pairs (often a trace id).
    pub labels: Vec<(&'a str, Cow<'a, str>)>,
    /// The exemplar's value.
    pub value: f64,
    /// Its timestamp in milliseconds, if given.
    pub timestamp_ms: Option<i64>,
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    /// The series' metric name as written (`http_request_seconds_bucket`).
    pub name: &'a str,
    /// Label pairs in the order written, escapes resolved; `__name__` is not among them.
    pub labels: Vec<(&'a str, Cow<'a, str>)>,
    /// The value (NaN and ±Inf included).
    pub value: f64,
    /// The sample's own timestamp in milliseconds, if the body gave one.
    pub timestamp_ms: Option<i64>,
    /// OpenMetrics exemplar, if any.
    pub exemplar: Option<Exemplar<'a>>,
}

/// A metric family: metadata and the samples that belong to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Family<'a> {
    /// The family name (`http_request_seconds` for a histogram's `_bucket` samples).
    pub name: &'a str,
    /// Its type.
    pub kind: MetricType,
    /// `# HELP` text, escapes resolved.
    pub help: Option<Cow<'a, str>>,
    /// `# UNIT` (OpenMetrics).
    pub unit: Option<&'a str>,
    /// Its samples in body order.
    pub samples: Vec<Sample<'a>>,
}

impl<'a> Family<'a> {
    fn new(name: &'a str) -> Family<'a> {
        Family {
            name,
            kind: MetricType::Unknown,
            help: None,
            unit: None,
            samples: Vec::new(),
        }
    }

    /// True when a sample called `sample_name` belongs to this family.
    pub fn owns(&self, sample_name: &str) -> bool {
        sample_name
            .strip_prefix(self.name)
            .is_some_and(|suffix| self.kind.suffixes().contains(&suffix))
    }
}

/// Gathers metadata lines and samples into families, as both parsers need.
#[derive(Debug, Default)]
pub(super) struct FamilyBuilder<'a> {
    pub families: Vec<Family<'a>>,
}

impl<'a> FamilyBuilder<'a> {
    /// The family a metadata line for `name` applies to: the current one if it has that
    /// name and no samples yet, else a new one.
    pub fn for_metadata(&mut self, name: &'a str) -> &mut Family<'a> {
        let reuse = self
            .families
            .last()
            .is_some_and(|f| f.name == name && f.samples.is_empty());
        if !reuse {
            self.families.push(Family::new(name));
        }
        let last = self.families.len() - 1;
        &mut self.families[last]
    }

    /// The family a sample belongs to: the current one if it owns the name, else a new
    /// untyped family named after the sample.
    pub fn for_sample(&mut self, sample_name: &'a str) -> &mut Family<'a> {
        let owned = self.families.last().is_some_and(|f| f.owns(sample_name));
        if !owned {
            self.families.push(Family::new(sample_name));
        }
        let last = self.families.len() - 1;
        &mut self.families[last]
    }
}
