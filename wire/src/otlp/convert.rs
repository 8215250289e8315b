//! The conversion driver: walks resources and scopes, hands each metric to
//! [`super::points`], and collects series, metadata and refusals into a [`Conversion`].
//!
//! Data points that end up with the same label set (the same metric at several times, or
//! attributes that collide after sanitising) share one series; samples are put in time
//! order at the end. Every resource that has attributes besides the identifying ones gets
//! a `target_info` sample at the latest timestamp of its data points.

use super::attrs::{PointLabeler, ResourceLabels};
use super::points::convert_metric;
use super::{Conversion, ExportMetricsServiceRequest};
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

/// Maps a request to Prometheus series: the series with per-family metadata, and the
/// data points refused (with one reason per metric) so the HTTP layer can answer with
/// OTLP partial success.
pub fn to_write_request(req: &ExportMetricsServiceRequest) -> Conversion {
    let mut out = Output::default();
    for rm in &req.resource_metrics {
        let resource = ResourceLabels::new(rm.resource.as_ref());
        out.latest = None;
        for sm in &rm.scope_metrics {
            let labeler = PointLabeler::new(&resource, sm.scope.as_ref());
            for metric in &sm.metrics {
                convert_metric(metric, &labeler, &mut out);
            }
        }
        if let (Some(ts), Some(labels)) = (out.latest, resource.target_info()) {
            out.push(
                labels,
                Sample {
                    value: 1.0,
                    timestamp: ts,
                },
            );
            out.metadata("target_info", meta_type::GAUGE, "Target metadata", "");
        }
    }
    out.finish()
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

    fn finish(self) -> Conversion {
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
