//! Where one OTLP request's conversion accumulates: series by label set, per-family
//! metadata and refused data points. [`super::convert`] drives it, [`super::points`]
//! writes each data point into it; neither knows the other's internals.

use super::Conversion;
use crate::prompb::{Histogram, Label, MetricMetadata, Sample, TimeSeries, WriteRequest};
use std::collections::{HashMap, HashSet};

/// Prometheus metadata type numbers (remote-write `MetricMetadata.type`).
pub(crate) mod meta_type {
    /// `counter`.
    pub const COUNTER: i32 = 1;
    /// `gauge`.
    pub const GAUGE: i32 = 2;
    /// `histogram`.
    pub const HISTOGRAM: i32 = 3;
    /// `summary`.
    pub const SUMMARY: i32 = 5;
}

/// Where converted samples, metadata and refusals accumulate.
#[derive(Debug, Default)]
pub(crate) struct Output {
    index: HashMap<Vec<Label>, usize>,
    samples: Vec<Vec<Sample>>,
    /// Native histograms (from exponential histograms), by the same series index.
    histograms: Vec<Vec<Histogram>>,
    metadata: Vec<MetricMetadata>,
    families: HashSet<String>,
    rejected: Vec<String>,
    rejected_points: u64,
    /// The latest sample timestamp since the current resource began.
    latest: Option<i64>,
}

impl Output {
    /// Adds a sample to the series with exactly these labels (sorted by name).
    pub(crate) fn push(&mut self, labels: Vec<Label>, sample: Sample) {
        let i = self.series(labels, sample.timestamp);
        self.samples[i].push(sample);
    }

    /// Adds a native histogram to the series with exactly these labels.
    pub(crate) fn push_histogram(&mut self, labels: Vec<Label>, h: Histogram) {
        let i = self.series(labels, h.timestamp);
        self.histograms[i].push(h);
    }

    /// The index of the series with these labels, created empty when new; notes
    /// `timestamp` as the resource's latest.
    fn series(&mut self, labels: Vec<Label>, timestamp: i64) -> usize {
        self.latest = Some(self.latest.map_or(timestamp, |t| t.max(timestamp)));
        if let Some(&i) = self.index.get(&labels) {
            return i;
        }
        let i = self.samples.len();
        self.index.insert(labels, i);
        self.samples.push(Vec::new());
        self.histograms.push(Vec::new());
        i
    }

    /// Records metadata for a family, once per family name (the first one wins).
    pub(crate) fn metadata(&mut self, family: &str, r#type: i32, help: &str, unit: &str) {
        if self.families.insert(family.to_string()) {
            self.metadata.push(MetricMetadata {
                r#type,
                metric_family_name: family.to_string(),
                help: help.to_string(),
                unit: unit.to_string(),
            });
        }
    }

    /// Records that `points` data points of metric `metric` (its OTLP name) were refused.
    pub(crate) fn reject(&mut self, metric: &str, reason: &str, points: u64) {
        let plural = if points == 1 { "" } else { "s" };
        self.rejected.push(format!(
            "metric {metric:?}: {reason} ({points} data point{plural} refused)"
        ));
        self.rejected_points = self.rejected_points.saturating_add(points);
    }

    /// A new resource begins: its `target_info` takes the latest timestamp from here on.
    pub(crate) fn start_resource(&mut self) {
        self.latest = None;
    }

    /// The latest sample timestamp since the current resource began.
    pub(crate) fn latest(&self) -> Option<i64> {
        self.latest
    }

    /// The series, metadata and refusals gathered, series' samples in time order.
    pub(crate) fn finish(self) -> Conversion {
        let mut timeseries: Vec<TimeSeries> = Vec::with_capacity(self.samples.len());
        timeseries.resize_with(self.samples.len(), TimeSeries::default);
        for (labels, i) in self.index {
            if let Some(ts) = timeseries.get_mut(i) {
                ts.labels = labels;
            }
        }
        for ((ts, mut samples), mut histograms) in
            timeseries.iter_mut().zip(self.samples).zip(self.histograms)
        {
            if !samples.is_sorted_by_key(|s| s.timestamp) {
                samples.sort_by_key(|s| s.timestamp);
            }
            if !histograms.is_sorted_by_key(|h| h.timestamp) {
                histograms.sort_by_key(|h| h.timestamp);
            }
            ts.samples = samples;
            ts.histograms = histograms;
        }
        Conversion {
            request: WriteRequest {
                timeseries,
                metadata: self.metadata,
            },
            rejected: self.rejected,
            rejected_points: self.rejected_points,
        }
    }
}
