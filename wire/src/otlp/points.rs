//! One OTLP metric → Prometheus samples, by data-point kind.
//!
//! A refused data point adds nothing (its checks run before any sample is written); a
//! refused metric adds nothing at all. Refusals are counted per metric and reported with
//! the first reason met.

use super::attrs::{with_name, PointLabeler};
use super::names::{metric_name, unit_name, MetricType};
use super::output::{meta_type, Output};
use super::values::format_float;
use crate::prompb::{Label, Sample};
use crate::value::{is_stale_nan, stale_nan};
use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, AggregationTemporality, DataPointFlags,
    ExponentialHistogramDataPoint, HistogramDataPoint, Metric, NumberDataPoint, SummaryDataPoint,
};

const DELTA: &str = "delta temporality is not supported; configure the exporter for cumulative \
    temporality (OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=cumulative)";
const UNSPECIFIED: &str = "aggregation temporality is unspecified (0); the sender must mark \
    sums and histograms as cumulative (2)";
const NO_DATA: &str = "no data of a known type (gauge, sum, histogram, exponentialHistogram, \
    summary)";

/// Maps one metric's data points to samples in `out`, or records why they were refused.
pub(crate) fn convert_metric(m: &Metric, labeler: &PointLabeler<'_>, out: &mut Output) {
    let Some(data) = &m.data else {
        // Absent, or of a kind newer than this code: the number of points is unknown;
        // count one so the sender sees a refusal rather than a warning.
        out.reject(&m.name, NO_DATA, 1);
        return;
    };
    match data {
        Data::Gauge(g) => numbers(m, MetricType::Gauge, &g.data_points, labeler, out),
        Data::Sum(s) => match cumulative(s.aggregation_temporality) {
            Ok(()) => {
                let ty = if s.is_monotonic {
                    MetricType::MonotonicCounter
                } else {
                    MetricType::NonMonotonicCounter
                };
                numbers(m, ty, &s.data_points, labeler, out);
            }
            Err(reason) => out.reject(&m.name, reason, s.data_points.len() as u64),
        },
        Data::Histogram(h) => match cumulative(h.aggregation_temporality) {
            Ok(()) => histograms(m, &h.data_points, labeler, out),
            Err(reason) => out.reject(&m.name, reason, h.data_points.len() as u64),
        },
        Data::ExponentialHistogram(e) => match cumulative(e.aggregation_temporality) {
            Ok(()) => exponential_histograms(m, &e.data_points, labeler, out),
            Err(reason) => out.reject(&m.name, reason, e.data_points.len() as u64),
        },
        Data::Summary(s) => summaries(m, &s.data_points, labeler, out),
    }
}

fn cumulative(temporality: i32) -> Result<(), &'static str> {
    match AggregationTemporality::try_from(temporality) {
        Ok(AggregationTemporality::Cumulative) => Ok(()),
        Ok(AggregationTemporality::Delta) => Err(DELTA),
        _ => Err(UNSPECIFIED),
    }
}

/// One metric's progress: its Prometheus name and the points refused so far.
struct Family<'a> {
    metric: &'a Metric,
    name: String,
    name_bytes: Bytes,
    refused: u64,
    reason: Option<String>,
    emitted: bool,
}

impl<'a> Family<'a> {
    /// Names the family, or refuses all `points` of the metric when its name is unusable.
    fn start(m: &'a Metric, ty: MetricType, points: usize, out: &mut Output) -> Option<Self> {
        if points == 0 {
            return None;
        }
        match metric_name(&m.name, &m.unit, ty) {
            Ok(name) => Some(Family {
                metric: m,
                name_bytes: Bytes::from(name.clone()),
                name,
                refused: 0,
                reason: None,
                emitted: false,
            }),
            Err(reason) => {
                out.reject(&m.name, &reason, points as u64);
                None
            }
        }
    }

    /// A series name derived from the family name (`_sum`, `_count`, `_bucket`).
    fn suffixed(&self, suffix: &str) -> Bytes {
        Bytes::from(format!("{}{suffix}", self.name))
    }

    fn record(&mut self, result: Result<(), String>) {
        match result {
            Ok(()) => self.emitted = true,
            Err(reason) => {
                self.refused += 1;
                self.reason.get_or_insert(reason);
            }
        }
    }

    fn finish(self, r#type: i32, out: &mut Output) {
        if let Some(reason) = &self.reason {
            out.reject(&self.metric.name, reason, self.refused);
        }
        if self.emitted {
            let unit = unit_name(&self.metric.unit);
            out.metadata(&self.name, r#type, &self.metric.description, &unit);
        }
    }
}

/// The checks every data point passes first: a timestamp, and usable attribute names.
/// Returns the base labels and the timestamp in milliseconds.
fn prelude(
    attrs: &[KeyValue],
    time_unix_nano: u64,
    labeler: &PointLabeler<'_>,
) -> Result<(Vec<Label>, i64), String> {
    if time_unix_nano == 0 {
        return Err("data point has no timestamp (timeUnixNano is 0)".to_string());
    }
    let ts = i64::try_from(time_unix_nano / 1_000_000).unwrap_or(i64::MAX);
    Ok((labeler.labels(attrs)?, ts))
}

fn is_stale(flags: u32) -> bool {
    flags & (DataPointFlags::NoRecordedValueMask as u32) != 0
}

/// A value as sent; a NaN that happens to carry the staleness bits becomes a plain NaN,
/// so only the NoRecordedValue flag can mark a series stale.
fn plain(v: f64) -> f64 {
    if is_stale_nan(v) {
        f64::NAN
    } else {
        v
    }
}

fn numbers(
    m: &Metric,
    ty: MetricType,
    points: &[NumberDataPoint],
    labeler: &PointLabeler<'_>,
    out: &mut Output,
) {
    let Some(mut fam) = Family::start(m, ty, points.len(), out) else {
        return;
    };
    for dp in points {
        let result = number_point(dp, &fam.name_bytes, labeler, out);
        fam.record(result);
    }
    let r#type = match ty {
        MetricType::MonotonicCounter => meta_type::COUNTER,
        _ => meta_type::GAUGE,
    };
    fam.finish(r#type, out);
}

fn number_point(
    dp: &NumberDataPoint,
    name: &Bytes,
    labeler: &PointLabeler<'_>,
    out: &mut Output,
) -> Result<(), String> {
    let (base, timestamp) = prelude(&dp.attributes, dp.time_unix_nano, labeler)?;
    let value = if is_stale(dp.flags) {
        stale_nan()
    } else {
        match dp.value {
            Some(number_data_point::Value::AsDouble(d)) => plain(d),
            Some(number_data_point::Value::AsInt(i)) => i as f64,
            None => return Err("data point has no value (asDouble or asInt)".to_string()),
        }
    };
    out.push(with_name(&base, name, None), Sample { value, timestamp });
    Ok(())
}

fn histograms(
    m: &Metric,
    points: &[HistogramDataPoint],
    labeler: &PointLabeler<'_>,
    out: &mut Output,
) {
    let Some(mut fam) = Family::start(m, MetricType::Histogram, points.len(), out) else {
        return;
    };
    let names = [
        fam.suffixed("_sum"),
        fam.suffixed("_count"),
        fam.suffixed("_bucket"),
    ];
    for dp in points {
        let result = histogram_point(dp, &names, labeler, out);
        fam.record(result);
    }
    fam.finish(meta_type::HISTOGRAM, out);
}

/// Bounds finite and strictly increasing; bucket counts absent or one more than bounds.
fn check_buckets(dp: &HistogramDataPoint) -> Result<(), String> {
    let bounds = &dp.explicit_bounds;
    if !dp.bucket_counts.is_empty() && dp.bucket_counts.len() != bounds.len() + 1 {
        return Err(format!(
            "histogram data point has {} bucket counts for {} explicit bounds; expected {}",
            dp.bucket_counts.len(),
            bounds.len(),
            bounds.len() + 1
        ));
    }
    if !bounds.iter().all(|b| b.is_finite()) || !bounds.windows(2).all(|w| w[0] < w[1]) {
        return Err(
            "histogram data point's explicit bounds are not finite and strictly increasing"
                .to_string(),
        );
    }
    Ok(())
}

fn histogram_point(
    dp: &HistogramDataPoint,
    [sum_name, count_name, bucket_name]: &[Bytes; 3],
    labeler: &PointLabeler<'_>,
    out: &mut Output,
) -> Result<(), String> {
    let (base, timestamp) = prelude(&dp.attributes, dp.time_unix_nano, labeler)?;
    check_buckets(dp)?;
    let stale = is_stale(dp.flags);
    let sample = |v: f64| Sample {
        value: if stale { stale_nan() } else { v },
        timestamp,
    };
    if let Some(sum) = dp.sum {
        out.push(with_name(&base, sum_name, None), sample(plain(sum)));
    }
    out.push(with_name(&base, count_name, None), sample(dp.count as f64));
    let mut cumulative: u64 = 0;
    for (bound, count) in dp.explicit_bounds.iter().zip(&dp.bucket_counts) {
        cumulative = cumulative.saturating_add(*count);
        let le = Bytes::from(format_float(*bound));
        let labels = with_name(&base, bucket_name, Some(("le", &le)));
        out.push(labels, sample(cumulative as f64));
    }
    let inf = Bytes::from_static(b"+Inf");
    let labels = with_name(&base, bucket_name, Some(("le", &inf)));
    out.push(labels, sample(dp.count as f64));
    Ok(())
}

/// Exponential histograms become native histograms under the family name
/// (see `exponential.rs`).
fn exponential_histograms(
    m: &Metric,
    points: &[ExponentialHistogramDataPoint],
    labeler: &PointLabeler<'_>,
    out: &mut Output,
) {
    let Some(mut fam) = Family::start(m, MetricType::Histogram, points.len(), out) else {
        return;
    };
    for dp in points {
        let result = exponential_point(dp, &fam.name_bytes, labeler, out);
        fam.record(result);
    }
    fam.finish(meta_type::HISTOGRAM, out);
}

fn exponential_point(
    dp: &ExponentialHistogramDataPoint,
    name: &Bytes,
    labeler: &PointLabeler<'_>,
    out: &mut Output,
) -> Result<(), String> {
    let (base, timestamp) = prelude(&dp.attributes, dp.time_unix_nano, labeler)?;
    let h = super::exponential::to_native(dp, timestamp, is_stale(dp.flags))?;
    out.push_histogram(with_name(&base, name, None), h);
    Ok(())
}

fn summaries(
    m: &Metric,
    points: &[SummaryDataPoint],
    labeler: &PointLabeler<'_>,
    out: &mut Output,
) {
    let Some(mut fam) = Family::start(m, MetricType::Summary, points.len(), out) else {
        return;
    };
    let names = [
        fam.suffixed("_sum"),
        fam.suffixed("_count"),
        fam.name_bytes.clone(),
    ];
    for dp in points {
        let result = summary_point(dp, &names, labeler, out);
        fam.record(result);
    }
    fam.finish(meta_type::SUMMARY, out);
}

fn summary_point(
    dp: &SummaryDataPoint,
    [sum_name, count_name, name]: &[Bytes; 3],
    labeler: &PointLabeler<'_>,
    out: &mut Output,
) -> Result<(), String> {
    let (base, timestamp) = prelude(&dp.attributes, dp.time_unix_nano, labeler)?;
    let stale = is_stale(dp.flags);
    let sample = |v: f64| Sample {
        value: if stale { stale_nan() } else { v },
        timestamp,
    };
    out.push(with_name(&base, sum_name, None), sample(plain(dp.sum)));
    out.push(with_name(&base, count_name, None), sample(dp.count as f64));
    for q in &dp.quantile_values {
        let quantile = Bytes::from(format_float(q.quantile));
        let labels = with_name(&base, name, Some(("quantile", &quantile)));
        out.push(labels, sample(plain(q.value)));
    }
    Ok(())
}
