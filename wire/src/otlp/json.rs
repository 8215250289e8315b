//! OTLP/JSON metrics bodies, read into opentelemetry-proto's message types.
//!
//! opentelemetry-proto's own serde support flattens the `Metric.data` and data-point
//! `value` oneofs into `Option`s, and serde turns any error inside a flattened `Option`
//! into `None`: a gauge with one bad field silently has no data. It also reads doubles
//! only as JSON numbers, while the protobuf JSON mapping also allows `"NaN"`,
//! `"Infinity"`, `"-Infinity"` and numbers in strings (the Collector writes NaN as
//! `"NaN"`). So the metric part of the body is read here, with the oneofs as plain
//! optional keys (errors surface with their line and column) and lenient numbers;
//! resources, scopes and attributes still use opentelemetry-proto's serde.
//!
//! Exemplars are not read: Calm does not store them, and a malformed exemplar should not
//! cost the sample. Unknown keys are ignored, as OTLP/JSON requires.

use super::json_num::{Temporality, F64, I64, U64};
use super::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, summary_data_point::ValueAtQuantile, ExponentialHistogram,
    Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    Sum, Summary, SummaryDataPoint,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde::Deserialize;

/// Reads an OTLP/JSON `ExportMetricsServiceRequest`.
pub(crate) fn from_slice(body: &[u8]) -> Result<ExportMetricsServiceRequest, serde_json::Error> {
    let req: JRequest = serde_json::from_slice(body)?;
    Ok(ExportMetricsServiceRequest {
        resource_metrics: req.resource_metrics.into_iter().map(Into::into).collect(),
    })
}

#[derive(Deserialize, Default)]
#[serde(
    expecting = "an OTLP ExportMetricsServiceRequest object",
    rename_all = "camelCase",
    default
)]
struct JRequest {
    resource_metrics: Vec<JResourceMetrics>,
}

#[derive(Deserialize, Default)]
#[serde(
    expecting = "an OTLP ResourceMetrics object",
    rename_all = "camelCase",
    default
)]
struct JResourceMetrics {
    resource: Option<Resource>,
    scope_metrics: Vec<JScopeMetrics>,
    schema_url: String,
}

#[derive(Deserialize, Default)]
#[serde(
    expecting = "an OTLP ScopeMetrics object",
    rename_all = "camelCase",
    default
)]
struct JScopeMetrics {
    scope: Option<InstrumentationScope>,
    metrics: Vec<JMetric>,
    schema_url: String,
}

#[derive(Deserialize, Default)]
#[serde(expecting = "an OTLP Metric object", rename_all = "camelCase", default)]
struct JMetric {
    name: String,
    description: String,
    unit: String,
    metadata: Vec<KeyValue>,
    gauge: Option<JGauge>,
    sum: Option<JSum>,
    histogram: Option<JHistogram>,
    exponential_histogram: Option<ExponentialHistogram>,
    summary: Option<JSummary>,
}

#[derive(Deserialize, Default)]
#[serde(expecting = "an OTLP Gauge object", rename_all = "camelCase", default)]
struct JGauge {
    data_points: Vec<JNumberPoint>,
}

#[derive(Deserialize, Default)]
#[serde(expecting = "an OTLP Sum object", rename_all = "camelCase", default)]
struct JSum {
    data_points: Vec<JNumberPoint>,
    aggregation_temporality: Temporality,
    is_monotonic: bool,
}

#[derive(Deserialize, Default)]
#[serde(
    expecting = "an OTLP Histogram object",
    rename_all = "camelCase",
    default
)]
struct JHistogram {
    data_points: Vec<JHistogramPoint>,
    aggregation_temporality: Temporality,
}

#[derive(Deserialize, Default)]
#[serde(
    expecting = "an OTLP Summary object",
    rename_all = "camelCase",
    default
)]
struct JSummary {
    data_points: Vec<JSummaryPoint>,
}

#[derive(Deserialize, Default)]
#[serde(
    expecting = "an OTLP NumberDataPoint object",
    rename_all = "camelCase",
    default
)]
struct JNumberPoint {
    attributes: Vec<KeyValue>,
    start_time_unix_nano: U64,
    time_unix_nano: U64,
    flags: U64,
    as_double: Option<F64>,
    as_int: Option<I64>,
}

#[derive(Deserialize, Default)]
#[serde(
    expecting = "an OTLP HistogramDataPoint object",
    rename_all = "camelCase",
    default
)]
struct JHistogramPoint {
    attributes: Vec<KeyValue>,
    start_time_unix_nano: U64,
    time_unix_nano: U64,
    count: U64,
    sum: Option<F64>,
    bucket_counts: Vec<U64>,
    explicit_bounds: Vec<F64>,
    flags: U64,
    min: Option<F64>,
    max: Option<F64>,
}

#[derive(Deserialize, Default)]
#[serde(
    expecting = "an OTLP SummaryDataPoint object",
    rename_all = "camelCase",
    default
)]
struct JSummaryPoint {
    attributes: Vec<KeyValue>,
    start_time_unix_nano: U64,
    time_unix_nano: U64,
    count: U64,
    sum: F64,
    quantile_values: Vec<JQuantile>,
    flags: U64,
}

#[derive(Deserialize, Default)]
#[serde(
    expecting = "an OTLP ValueAtQuantile object",
    rename_all = "camelCase",
    default
)]
struct JQuantile {
    quantile: F64,
    value: F64,
}

impl From<JResourceMetrics> for ResourceMetrics {
    fn from(r: JResourceMetrics) -> Self {
        ResourceMetrics {
            resource: r.resource,
            scope_metrics: r.scope_metrics.into_iter().map(Into::into).collect(),
            schema_url: r.schema_url,
        }
    }
}

impl From<JScopeMetrics> for ScopeMetrics {
    fn from(s: JScopeMetrics) -> Self {
        ScopeMetrics {
            scope: s.scope,
            metrics: s.metrics.into_iter().map(Into::into).collect(),
            schema_url: s.schema_url,
        }
    }
}

impl From<JMetric> for Metric {
    fn from(m: JMetric) -> Self {
        // Several data keys is invalid OTLP; the first one in this order is kept.
        let data = if let Some(g) = m.gauge {
            Some(Data::Gauge(Gauge {
                data_points: numbers(g.data_points),
            }))
        } else if let Some(s) = m.sum {
            Some(Data::Sum(Sum {
                data_points: numbers(s.data_points),
                aggregation_temporality: s.aggregation_temporality.0,
                is_monotonic: s.is_monotonic,
            }))
        } else if let Some(h) = m.histogram {
            Some(Data::Histogram(Histogram {
                data_points: h.data_points.into_iter().map(Into::into).collect(),
                aggregation_temporality: h.aggregation_temporality.0,
            }))
        } else if let Some(e) = m.exponential_histogram {
            Some(Data::ExponentialHistogram(e))
        } else {
            m.summary.map(|s| {
                Data::Summary(Summary {
                    data_points: s.data_points.into_iter().map(Into::into).collect(),
                })
            })
        };
        Metric {
            name: m.name,
            description: m.description,
            unit: m.unit,
            metadata: m.metadata,
            data,
        }
    }
}

fn numbers(points: Vec<JNumberPoint>) -> Vec<NumberDataPoint> {
    points
        .into_iter()
        .map(|p| NumberDataPoint {
            attributes: p.attributes,
            start_time_unix_nano: p.start_time_unix_nano.0,
            time_unix_nano: p.time_unix_nano.0,
            exemplars: vec![],
            flags: flags(p.flags),
            value: match (p.as_double, p.as_int) {
                (Some(d), _) => Some(number_data_point::Value::AsDouble(d.0)),
                (None, Some(i)) => Some(number_data_point::Value::AsInt(i.0)),
                (None, None) => None,
            },
        })
        .collect()
}

/// Flags is a uint32; bits above 32 carry no meaning and are dropped.
fn flags(v: U64) -> u32 {
    (v.0 & u64::from(u32::MAX)) as u32
}

impl From<JHistogramPoint> for HistogramDataPoint {
    fn from(p: JHistogramPoint) -> Self {
        HistogramDataPoint {
            attributes: p.attributes,
            start_time_unix_nano: p.start_time_unix_nano.0,
            time_unix_nano: p.time_unix_nano.0,
            count: p.count.0,
            sum: p.sum.map(|s| s.0),
            bucket_counts: p.bucket_counts.into_iter().map(|c| c.0).collect(),
            explicit_bounds: p.explicit_bounds.into_iter().map(|b| b.0).collect(),
            exemplars: vec![],
            flags: flags(p.flags),
            min: p.min.map(|v| v.0),
            max: p.max.map(|v| v.0),
        }
    }
}

impl From<JSummaryPoint> for SummaryDataPoint {
    fn from(p: JSummaryPoint) -> Self {
        SummaryDataPoint {
            attributes: p.attributes,
            start_time_unix_nano: p.start_time_unix_nano.0,
            time_unix_nano: p.time_unix_nano.0,
            count: p.count.0,
            sum: p.sum.0,
            quantile_values: p
                .quantile_values
                .into_iter()
                .map(|q| ValueAtQuantile {
                    quantile: q.quantile.0,
                    value: q.value.0,
                })
                .collect(),
            flags: flags(p.flags),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_metric(metric: &str) -> Result<Metric, serde_json::Error> {
        let body =
            format!(r#"{{"resourceMetrics":[{{"scopeMetrics":[{{"metrics":[{metric}]}}]}}]}}"#);
        let req = from_slice(body.as_bytes())?;
        Ok(req.resource_metrics[0].scope_metrics[0].metrics[0].clone())
    }

    #[test]
    fn numbers_in_every_json_shape() {
        let m = one_metric(
            r#"{"name":"g","gauge":{"dataPoints":[
                {"timeUnixNano":1700000000000000000,"asInt":5},
                {"timeUnixNano":"1700000000000000000","asInt":"-5","flags":"1"},
                {"timeUnixNano":"1","asDouble":"NaN"},
                {"timeUnixNano":"1","asDouble":"-Infinity"},
                {"timeUnixNano":"1","asDouble":"2.5"},
                {"timeUnixNano":"1","asDouble":3},
                {"timeUnixNano":"1","asDouble":null}]}}"#,
        )
        .unwrap();
        let Some(Data::Gauge(g)) = m.data else {
            panic!("{:?}", m.data)
        };
        let values: Vec<_> = g.data_points.iter().map(|p| p.value).collect();
        use number_data_point::Value::*;
        assert_eq!(values[0], Some(AsInt(5)));
        assert_eq!(values[1], Some(AsInt(-5)));
        assert_eq!(g.data_points[1].flags, 1);
        assert!(matches!(values[2], Some(AsDouble(d)) if d.is_nan()));
        assert_eq!(values[3], Some(AsDouble(f64::NEG_INFINITY)));
        assert_eq!(values[4], Some(AsDouble(2.5)));
        assert_eq!(values[5], Some(AsDouble(3.0)));
        assert_eq!(values[6], None);
    }

    #[test]
    fn temporality_as_number_or_name() {
        let m = one_metric(
            r#"{"name":"s","sum":{"aggregationTemporality":"AGGREGATION_TEMPORALITY_CUMULATIVE",
                "isMonotonic":true,"dataPoints":[]}}"#,
        )
        .unwrap();
        let Some(Data::Sum(s)) = m.data else {
            panic!("{:?}", m.data)
        };
        assert_eq!(s.aggregation_temporality, 2);
        assert!(s.is_monotonic);
    }

    #[test]
    fn histogram_with_nan_sum_and_summary() {
        let m = one_metric(
            r#"{"name":"h","histogram":{"aggregationTemporality":2,"dataPoints":[
                {"timeUnixNano":"1","count":"2","sum":"NaN","bucketCounts":["1",1],
                 "explicitBounds":[0.5],"min":0.1,"max":"0.9",
                 "exemplars":[{"traceId":"not hex at all","asDouble":"x"}]}]}}"#,
        )
        .unwrap();
        let Some(Data::Histogram(h)) = m.data else {
            panic!("{:?}", m.data)
        };
        let p = &h.data_points[0];
        assert_eq!(
            (p.count, p.bucket_counts.clone(), p.explicit_bounds.clone()),
            (2, vec![1, 1], vec![0.5])
        );
        assert!(p.sum.is_some_and(f64::is_nan));
        assert_eq!((p.min, p.max), (Some(0.1), Some(0.9)));

        let m = one_metric(
            r#"{"name":"s","summary":{"dataPoints":[{"timeUnixNano":"1","count":"3","sum":6,
                "quantileValues":[{"quantile":0.5,"value":"Infinity"},{"value":1}]}]}}"#,
        )
        .unwrap();
        let Some(Data::Summary(s)) = m.data else {
            panic!("{:?}", m.data)
        };
        let q = &s.data_points[0].quantile_values;
        assert_eq!((q[0].quantile, q[0].value), (0.5, f64::INFINITY));
        assert_eq!((q[1].quantile, q[1].value), (0.0, 1.0));
    }

    #[test]
    fn errors_inside_metric_data_are_not_swallowed() {
        for (metric, want) in [
            (
                r#"{"name":"g","gauge":{"dataPoints":[{"timeUnixNano":"soon","asInt":1}]}}"#,
                "soon",
            ),
            (
                r#"{"name":"g","gauge":{"dataPoints":[{"asDouble":"inf"}]}}"#,
                "inf",
            ),
            (
                r#"{"name":"g","gauge":{"dataPoints":[{"asInt":1.5}]}}"#,
                "1.5",
            ),
            (
                r#"{"name":"s","sum":{"aggregationTemporality":"CUMULATIVE"}}"#,
                "temporality",
            ),
            (
                r#"{"name":"h","histogram":{"dataPoints":[{"bucketCounts":[-1]}]}}"#,
                "-1",
            ),
            (
                r#"{"name":"g","gauge":"x"}"#,
                "expected an OTLP Gauge object",
            ),
        ] {
            let err = one_metric(metric).unwrap_err().to_string();
            assert!(err.contains(want), "{metric}: {err}");
            assert!(err.contains("line 1"), "{metric}: {err}");
        }
    }

    #[test]
    fn metric_without_data_and_unknown_keys() {
        let m = one_metric(r#"{"name":"x","unit":"s","futureKind":{"a":1}}"#).unwrap();
        assert_eq!(m.name, "x");
        assert_eq!(m.unit, "s");
        assert!(m.data.is_none());
    }
}
