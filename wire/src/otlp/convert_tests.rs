//! End-to-end tests of `to_write_request`: OTLP requests in, series and refusals out.

use super::*;
use crate::labels::{validate_series, LabelLimits};
use crate::prompb::{TimeSeries, WriteRequest};
use crate::value::is_stale_nan;
use opentelemetry_proto::tonic::common::v1::{
    any_value::Value as AnyV, AnyValue, InstrumentationScope, KeyValue,
};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point::Value, summary_data_point::ValueAtQuantile,
    ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

const T: u64 = 1_700_000_000_123_456_789;
const T_MS: i64 = 1_700_000_000_123;
const CUMULATIVE: i32 = 2;
const DELTA: i32 = 1;

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(AnyV::StringValue(v.into())),
        }),
        key_strindex: 0,
    }
}

fn metric(name: &str, unit: &str, data: Data) -> Metric {
    Metric {
        name: name.into(),
        description: format!("help for {name}"),
        unit: unit.into(),
        metadata: vec![],
        data: Some(data),
    }
}

fn number(value: Value, attrs: Vec<KeyValue>) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs,
        start_time_unix_nano: T - 60_000_000_000,
        time_unix_nano: T,
        exemplars: vec![],
        flags: 0,
        value: Some(value),
    }
}

fn gauge(name: &str, unit: &str, points: Vec<NumberDataPoint>) -> Metric {
    metric(
        name,
        unit,
        Data::Gauge(Gauge {
            data_points: points,
        }),
    )
}

fn sum(name: &str, temporality: i32, monotonic: bool, points: Vec<NumberDataPoint>) -> Metric {
    metric(
        name,
        "",
        Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: temporality,
            is_monotonic: monotonic,
        }),
    )
}

fn histogram_point(bounds: Vec<f64>, counts: Vec<u64>, sum: Option<f64>) -> HistogramDataPoint {
    HistogramDataPoint {
        attributes: vec![kv("route", "/a")],
        start_time_unix_nano: 0,
        time_unix_nano: T,
        count: counts.iter().sum(),
        sum,
        bucket_counts: counts,
        explicit_bounds: bounds,
        exemplars: vec![],
        flags: 0,
        min: None,
        max: None,
    }
}

fn histogram(name: &str, unit: &str, temporality: i32, points: Vec<HistogramDataPoint>) -> Metric {
    metric(
        name,
        unit,
        Data::Histogram(Histogram {
            data_points: points,
            aggregation_temporality: temporality,
        }),
    )
}

fn request_with(
    resource: Vec<KeyValue>,
    scope: Option<(&str, &str)>,
    metrics: Vec<Metric>,
) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: resource,
                dropped_attributes_count: 0,
                entity_refs: vec![],
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: scope.map(|(name, version)| InstrumentationScope {
                    name: name.into(),
                    version: version.into(),
                    attributes: vec![],
                    dropped_attributes_count: 0,
                }),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn request(metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    request_with(vec![], None, metrics)
}

/// Renders a series as `name{a="b",...}` with labels sorted, for easy comparison.
fn render(ts: &TimeSeries) -> String {
    let mut name = String::new();
    let mut rest = Vec::new();
    for l in &ts.labels {
        if l.name_str() == "__name__" {
            name = l.value_str().to_string();
        } else {
            rest.push(format!("{}={:?}", l.name_str(), l.value_str()));
        }
    }
    format!("{name}{{{}}}", rest.join(","))
}

fn find<'a>(wr: &'a WriteRequest, rendered: &str) -> &'a TimeSeries {
    wr.timeseries
        .iter()
        .find(|ts| render(ts) == rendered)
        .unwrap_or_else(|| {
            let all: Vec<_> = wr.timeseries.iter().map(render).collect();
            panic!("no series {rendered}; have {all:#?}")
        })
}

fn value_of(wr: &WriteRequest, rendered: &str) -> f64 {
    let ts = find(wr, rendered);
    assert_eq!(ts.samples.len(), 1, "{rendered}");
    assert_eq!(ts.samples[0].timestamp, T_MS, "{rendered}");
    ts.samples[0].value
}

fn all_valid(wr: &WriteRequest) {
    for ts in &wr.timeseries {
        let mut copy = ts.clone();
        validate_series(&mut copy, &LabelLimits::default()).unwrap();
        assert_eq!(&copy.labels, &ts.labels, "labels must already be canonical");
    }
}

#[test]
fn gauges_with_int_and_double_values() {
    let req = request(vec![
        gauge(
            "process.memory.usage",
            "By",
            vec![number(Value::AsInt(1024), vec![kv("pool", "heap")])],
        ),
        gauge(
            "cpu.utilization",
            "1",
            vec![number(Value::AsDouble(0.25), vec![])],
        ),
    ]);
    let c = to_write_request(&req);
    assert!(c.rejected.is_empty(), "{:?}", c.rejected);
    let wr = &c.request;
    all_valid(wr);
    assert_eq!(
        value_of(wr, r#"process_memory_usage_bytes{pool="heap"}"#),
        1024.0
    );
    assert_eq!(value_of(wr, "cpu_utilization_ratio{}"), 0.25);
    let meta = &wr.metadata[0];
    assert_eq!(meta.metric_family_name, "process_memory_usage_bytes");
    assert_eq!(meta.type_name(), "gauge");
    assert_eq!(meta.help, "help for process.memory.usage");
    assert_eq!(meta.unit, "bytes");
    assert_eq!(wr.metadata[1].unit, "");
}

#[test]
fn cumulative_sums() {
    let req = request(vec![
        sum(
            "http.requests",
            CUMULATIVE,
            true,
            vec![number(Value::AsInt(7), vec![kv("code", "200")])],
        ),
        sum(
            "queue.depth",
            CUMULATIVE,
            false,
            vec![number(Value::AsDouble(-3.5), vec![])],
        ),
    ]);
    let c = to_write_request(&req);
    assert!(c.rejected.is_empty(), "{:?}", c.rejected);
    let wr = &c.request;
    assert_eq!(value_of(wr, r#"http_requests_total{code="200"}"#), 7.0);
    assert_eq!(value_of(wr, "queue_depth{}"), -3.5);
    let types: Vec<_> = wr
        .metadata
        .iter()
        .map(|m| (m.metric_family_name.as_str(), m.type_name()))
        .collect();
    assert_eq!(
        types,
        vec![("http_requests_total", "counter"), ("queue_depth", "gauge")]
    );
}

#[test]
fn histogram_becomes_cumulative_buckets_sum_and_count() {
    let req = request(vec![histogram(
        "http.server.duration",
        "s",
        CUMULATIVE,
        vec![histogram_point(
            vec![0.005, 0.5, 1.0],
            vec![1, 2, 3, 4],
            Some(12.5),
        )],
    )]);
    let c = to_write_request(&req);
    assert!(c.rejected.is_empty(), "{:?}", c.rejected);
    let wr = &c.request;
    all_valid(wr);
    let n = "http_server_duration_seconds";
    assert_eq!(
        value_of(wr, &format!(r#"{n}_bucket{{le="0.005",route="/a"}}"#)),
        1.0
    );
    assert_eq!(
        value_of(wr, &format!(r#"{n}_bucket{{le="0.5",route="/a"}}"#)),
        3.0
    );
    assert_eq!(
        value_of(wr, &format!(r#"{n}_bucket{{le="1",route="/a"}}"#)),
        6.0
    );
    assert_eq!(
        value_of(wr, &format!(r#"{n}_bucket{{le="+Inf",route="/a"}}"#)),
        10.0
    );
    assert_eq!(value_of(wr, &format!(r#"{n}_sum{{route="/a"}}"#)), 12.5);
    assert_eq!(value_of(wr, &format!(r#"{n}_count{{route="/a"}}"#)), 10.0);
    assert_eq!(wr.timeseries.len(), 6);
    assert_eq!(wr.metadata.len(), 1);
    assert_eq!(wr.metadata[0].metric_family_name, n);
    assert_eq!(wr.metadata[0].type_name(), "histogram");
    assert_eq!(wr.metadata[0].unit, "seconds");
}

#[test]
fn histogram_without_sum_or_buckets() {
    let mut dp = histogram_point(vec![], vec![], None);
    dp.count = 5;
    let c = to_write_request(&request(vec![histogram("h", "", CUMULATIVE, vec![dp])]));
    assert!(c.rejected.is_empty(), "{:?}", c.rejected);
    let rendered: Vec<_> = c.request.timeseries.iter().map(render).collect();
    assert_eq!(
        rendered,
        vec![
            r#"h_count{route="/a"}"#,
            r#"h_bucket{le="+Inf",route="/a"}"#
        ]
    );
    assert_eq!(
        value_of(&c.request, r#"h_bucket{le="+Inf",route="/a"}"#),
        5.0
    );
}

#[test]
fn malformed_histogram_points_are_refused() {
    let c = to_write_request(&request(vec![histogram(
        "h",
        "",
        CUMULATIVE,
        vec![
            histogram_point(vec![1.0, 2.0], vec![1, 1], None),
            histogram_point(vec![2.0, 1.0], vec![1, 1, 1], None),
            histogram_point(vec![1.0, f64::INFINITY], vec![1, 1, 1], None),
            histogram_point(vec![1.0], vec![1, 1], Some(1.0)),
        ],
    )]));
    assert_eq!(c.rejected_points, 3);
    assert_eq!(c.rejected.len(), 1);
    assert!(
        c.rejected[0].contains("2 bucket counts for 2 explicit bounds"),
        "{}",
        c.rejected[0]
    );
    assert!(
        c.rejected[0].contains("(3 data points refused)"),
        "{}",
        c.rejected[0]
    );
    // The good point is still converted.
    assert_eq!(c.request.timeseries.len(), 4);
}

#[test]
fn summary_becomes_quantiles_sum_and_count() {
    let dp = SummaryDataPoint {
        attributes: vec![],
        start_time_unix_nano: 0,
        time_unix_nano: T,
        count: 4,
        sum: 10.0,
        quantile_values: vec![
            ValueAtQuantile {
                quantile: 0.5,
                value: 2.0,
            },
            ValueAtQuantile {
                quantile: 0.99,
                value: 4.0,
            },
            ValueAtQuantile {
                quantile: 1.0,
                value: 4.5,
            },
        ],
        flags: 0,
    };
    let m = metric(
        "rpc.latency",
        "ms",
        Data::Summary(Summary {
            data_points: vec![dp],
        }),
    );
    let c = to_write_request(&request(vec![m]));
    assert!(c.rejected.is_empty(), "{:?}", c.rejected);
    let wr = &c.request;
    all_valid(wr);
    assert_eq!(
        value_of(wr, r#"rpc_latency_milliseconds{quantile="0.5"}"#),
        2.0
    );
    assert_eq!(
        value_of(wr, r#"rpc_latency_milliseconds{quantile="0.99"}"#),
        4.0
    );
    assert_eq!(
        value_of(wr, r#"rpc_latency_milliseconds{quantile="1"}"#),
        4.5
    );
    assert_eq!(value_of(wr, "rpc_latency_milliseconds_sum{}"), 10.0);
    assert_eq!(value_of(wr, "rpc_latency_milliseconds_count{}"), 4.0);
    assert_eq!(wr.metadata[0].type_name(), "summary");
    assert_eq!(
        wr.metadata[0].metric_family_name,
        "rpc_latency_milliseconds"
    );
}

#[test]
fn delta_is_refused_with_advice() {
    let exp = metric(
        "exp",
        "",
        Data::ExponentialHistogram(ExponentialHistogram {
            data_points: vec![ExponentialHistogramDataPoint::default(); 2],
            aggregation_temporality: DELTA,
        }),
    );
    let req = request(vec![
        sum(
            "requests",
            DELTA,
            true,
            vec![number(Value::AsInt(1), vec![]); 3],
        ),
        histogram(
            "latency",
            "s",
            DELTA,
            vec![histogram_point(vec![1.0], vec![1, 0], None)],
        ),
        sum(
            "unspecified",
            0,
            true,
            vec![number(Value::AsInt(1), vec![])],
        ),
        exp,
        gauge("ok", "", vec![number(Value::AsInt(1), vec![])]),
    ]);
    let c = to_write_request(&req);
    assert_eq!(c.rejected_points, 3 + 1 + 1 + 2);
    assert_eq!(c.rejected.len(), 4);
    assert!(c.rejected[0].starts_with("metric \"requests\": delta temporality is not supported"));
    assert!(c.rejected[0].contains("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=cumulative"));
    assert!(
        c.rejected[0].ends_with("(3 data points refused)"),
        "{}",
        c.rejected[0]
    );
    assert!(c.rejected[1].starts_with("metric \"latency\": delta temporality"));
    assert!(
        c.rejected[1].ends_with("(1 data point refused)"),
        "{}",
        c.rejected[1]
    );
    assert!(c.rejected[2].contains("unspecified"), "{}", c.rejected[2]);
    assert!(c.rejected[3].starts_with("metric \"exp\": delta temporality"));
    let rendered: Vec<_> = c.request.timeseries.iter().map(render).collect();
    assert_eq!(rendered, vec!["ok{}"]);
    assert_eq!(c.request.metadata.len(), 1);
}

#[test]
fn cumulative_exponential_histograms_become_native_histograms() {
    use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
    let point = |scale: i32, t: u64| ExponentialHistogramDataPoint {
        time_unix_nano: t,
        scale,
        count: 6,
        sum: Some(7.5),
        zero_count: 1,
        positive: Some(Buckets {
            offset: 0,
            bucket_counts: vec![2, 3],
        }),
        ..Default::default()
    };
    let exp = metric(
        "rpc.latency",
        "s",
        Data::ExponentialHistogram(ExponentialHistogram {
            data_points: vec![
                point(2, 2_000_000_000),
                point(2, 1_000_000_000),
                point(-5, 3_000_000_000),
            ],
            aggregation_temporality: CUMULATIVE,
        }),
    );
    let c = to_write_request(&request(vec![exp]));
    assert_eq!(c.rejected_points, 1);
    assert!(
        c.rejected[0].contains("scale -5 is below -4"),
        "{}",
        c.rejected[0]
    );
    let [ts] = c.request.timeseries.as_slice() else {
        panic!("one series expected: {:?}", c.request.timeseries);
    };
    assert_eq!(render(ts), "rpc_latency_seconds{}");
    assert!(ts.samples.is_empty());
    let times: Vec<i64> = ts.histograms.iter().map(|h| h.timestamp).collect();
    assert_eq!(times, vec![1000, 2000]);
    let h = &ts.histograms[0];
    assert_eq!(
        (h.schema, h.count_int, h.zero_count_int, h.sum),
        (2, Some(6), Some(1), 7.5)
    );
    assert_eq!(h.positive_spans, vec![bucket_span(1, 2)]);
    assert_eq!(h.positive_deltas, vec![2, 1]);
    assert_eq!(c.request.metadata[0].type_name(), "histogram");
    assert_eq!(
        c.request.metadata[0].metric_family_name,
        "rpc_latency_seconds"
    );
}

fn bucket_span(offset: i32, length: u32) -> crate::prompb::BucketSpan {
    crate::prompb::BucketSpan { offset, length }
}

#[test]
fn no_recorded_value_is_a_staleness_marker() {
    let mut dp = number(Value::AsDouble(5.0), vec![]);
    dp.flags = 1;
    let mut no_value = number(Value::AsInt(0), vec![kv("k", "v")]);
    no_value.value = None;
    no_value.flags = 1;
    let mut h = histogram_point(vec![1.0], vec![1, 2], Some(3.0));
    h.flags = 1;
    let c = to_write_request(&request(vec![
        gauge("g", "", vec![dp, no_value]),
        histogram("h", "", CUMULATIVE, vec![h]),
    ]));
    assert!(c.rejected.is_empty(), "{:?}", c.rejected);
    assert_eq!(c.request.timeseries.len(), 2 + 4);
    for ts in &c.request.timeseries {
        assert!(is_stale_nan(ts.samples[0].value), "{}", render(ts));
    }
}

#[test]
fn a_sent_nan_with_stale_bits_is_not_a_staleness_marker() {
    let dp = number(Value::AsDouble(crate::value::stale_nan()), vec![]);
    let c = to_write_request(&request(vec![gauge("g", "", vec![dp])]));
    let v = value_of(&c.request, "g{}");
    assert!(v.is_nan() && !is_stale_nan(v));
}

#[test]
fn points_without_value_or_timestamp_are_refused() {
    let mut no_value = number(Value::AsInt(1), vec![]);
    no_value.value = None;
    let mut no_time = number(Value::AsInt(1), vec![kv("a", "b")]);
    no_time.time_unix_nano = 0;
    let c = to_write_request(&request(vec![
        gauge("g1", "", vec![no_value]),
        gauge("g2", "", vec![no_time, number(Value::AsInt(2), vec![])]),
    ]));
    assert_eq!(c.rejected_points, 2);
    assert!(
        c.rejected[0].contains("\"g1\": data point has no value"),
        "{}",
        c.rejected[0]
    );
    assert!(
        c.rejected[1].contains("\"g2\": data point has no timestamp"),
        "{}",
        c.rejected[1]
    );
    assert_eq!(value_of(&c.request, "g2{}"), 2.0);
    // g1 produced nothing, so it has no metadata either.
    let families: Vec<_> = c
        .request
        .metadata
        .iter()
        .map(|m| m.metric_family_name.as_str())
        .collect();
    assert_eq!(families, vec!["g2"]);
}

#[test]
fn metric_without_data_or_usable_name_is_refused() {
    let mut empty = gauge("nodata", "", vec![]);
    empty.data = None;
    let c = to_write_request(&request(vec![
        empty,
        gauge("..", "", vec![number(Value::AsInt(1), vec![])]),
        gauge("no.points", "", vec![]),
    ]));
    assert_eq!(c.rejected.len(), 2, "{:?}", c.rejected);
    assert!(c.rejected[0].contains("\"nodata\": no data of a known type"));
    assert!(c.rejected[1].contains("no character valid in a Prometheus metric name"));
    assert_eq!(c.rejected_points, 2);
    assert!(c.request.timeseries.is_empty());
}

#[test]
fn bad_attribute_names_refuse_the_point() {
    let c = to_write_request(&request(vec![gauge(
        "g",
        "",
        vec![number(Value::AsInt(1), vec![kv("", "x")])],
    )]));
    assert_eq!(c.rejected_points, 1);
    assert!(
        c.rejected[0].contains("attribute with an empty name"),
        "{:?}",
        c.rejected
    );
}

#[test]
fn resource_gives_job_instance_and_target_info() {
    let req = request_with(
        vec![
            kv("service.name", "checkout"),
            kv("service.namespace", "shop"),
            kv("service.instance.id", "pod-7"),
            kv("host.name", "node-1"),
            kv("k8s.pod.uid", "abc"),
        ],
        Some(("my.lib", "1.2.3")),
        vec![gauge(
            "g",
            "",
            vec![number(Value::AsInt(1), vec![kv("http.method", "GET")])],
        )],
    );
    let c = to_write_request(&req);
    assert!(c.rejected.is_empty(), "{:?}", c.rejected);
    let wr = &c.request;
    all_valid(wr);
    assert_eq!(
        value_of(
            wr,
            r#"g{http_method="GET",instance="pod-7",job="shop/checkout",otel_scope_name="my.lib",otel_scope_version="1.2.3"}"#
        ),
        1.0
    );
    assert_eq!(
        value_of(
            wr,
            r#"target_info{host_name="node-1",instance="pod-7",job="shop/checkout",k8s_pod_uid="abc"}"#
        ),
        1.0
    );
    assert!(wr
        .metadata
        .iter()
        .any(|m| m.metric_family_name == "target_info" && m.type_name() == "gauge"));
}

#[test]
fn target_info_only_with_other_attributes_and_samples() {
    // Only identifying attributes: no target_info.
    let c = to_write_request(&request_with(
        vec![kv("service.name", "api")],
        None,
        vec![gauge("g", "", vec![number(Value::AsInt(1), vec![])])],
    ));
    let rendered: Vec<_> = c.request.timeseries.iter().map(render).collect();
    assert_eq!(rendered, vec![r#"g{job="api"}"#]);

    // No sample converted: no target_info either.
    let c = to_write_request(&request_with(
        vec![kv("service.name", "api"), kv("host.name", "h")],
        None,
        vec![sum("s", DELTA, true, vec![number(Value::AsInt(1), vec![])])],
    ));
    assert!(c.request.timeseries.is_empty());
}

#[test]
fn target_info_takes_the_latest_timestamp() {
    let mut later = number(Value::AsInt(2), vec![kv("x", "later")]);
    later.time_unix_nano = T + 5_000_000_000;
    let c = to_write_request(&request_with(
        vec![kv("service.name", "api"), kv("host.name", "h")],
        None,
        vec![gauge("g", "", vec![number(Value::AsInt(1), vec![]), later])],
    ));
    let ti = find(&c.request, r#"target_info{host_name="h",job="api"}"#);
    assert_eq!(ti.samples[0].timestamp, T_MS + 5_000);
}

#[test]
fn points_with_equal_labels_share_a_series_in_time_order() {
    let mut first = number(Value::AsInt(2), vec![kv("a.b", "x")]);
    first.time_unix_nano = T + 1_000_000_000;
    let second = number(Value::AsInt(1), vec![kv("a.b", "x")]);
    let c = to_write_request(&request(vec![gauge("g", "", vec![first, second])]));
    assert_eq!(c.request.timeseries.len(), 1);
    let samples = &c.request.timeseries[0].samples;
    assert_eq!(samples.len(), 2);
    assert_eq!((samples[0].timestamp, samples[0].value), (T_MS, 1.0));
    assert_eq!(
        (samples[1].timestamp, samples[1].value),
        (T_MS + 1_000, 2.0)
    );
}

#[test]
fn colliding_attributes_are_joined_and_reserved_labels_win() {
    let c = to_write_request(&request(vec![histogram(
        "h",
        "",
        CUMULATIVE,
        vec![HistogramDataPoint {
            attributes: vec![
                kv("a_b", "2"),
                kv("a.b", "1"),
                kv("le", "mine"),
                kv("__name__", "evil"),
            ],
            ..histogram_point(vec![1.0], vec![1, 1], None)
        }],
    )]));
    assert!(c.rejected.is_empty(), "{:?}", c.rejected);
    let wr = &c.request;
    assert_eq!(value_of(wr, r#"h_bucket{a_b="1;2",le="1"}"#), 1.0);
    // `le` from the attributes stays on the series that have no bucket bound.
    assert_eq!(value_of(wr, r#"h_count{a_b="1;2",le="mine"}"#), 2.0);
}

#[test]
fn collector_json_end_to_end() {
    let body = r#"{"resourceMetrics":[{"resource":{"attributes":[
        {"key":"service.name","value":{"stringValue":"web"}},
        {"key":"host.cpus","value":{"intValue":"8"}},
        {"key":"debug","value":{"boolValue":true}}]},
      "scopeMetrics":[{"scope":{"name":"meter","version":"1"},"metrics":[
        {"name":"jobs.done","unit":"{job}","sum":{"aggregationTemporality":2,"isMonotonic":true,
          "dataPoints":[{"timeUnixNano":"1700000000123456789","asInt":"42",
            "attributes":[{"key":"queue","value":{"stringValue":"high"}}]}]}},
        {"name":"temp","unit":"Cel","gauge":{"dataPoints":[
          {"timeUnixNano":"1700000000123456789","asDouble":21.5}]}},
        {"name":"lat","unit":"ms","histogram":{"aggregationTemporality":2,"dataPoints":[
          {"timeUnixNano":"1700000000123456789","count":"3","sum":7,
           "bucketCounts":["1","2"],"explicitBounds":[2.5]}]}}
      ]}]}]}"#;
    let req = decode_request(body.as_bytes(), Format::Json).unwrap();
    let c = to_write_request(&req);
    assert!(c.rejected.is_empty(), "{:?}", c.rejected);
    let wr = &c.request;
    all_valid(wr);
    let scope = r#"otel_scope_name="meter",otel_scope_version="1""#;
    assert_eq!(
        value_of(
            wr,
            &format!(r#"jobs_done_total{{job="web",{scope},queue="high"}}"#)
        ),
        42.0
    );
    assert_eq!(
        value_of(wr, &format!(r#"temp_celsius{{job="web",{scope}}}"#)),
        21.5
    );
    assert_eq!(
        value_of(
            wr,
            &format!(r#"lat_milliseconds_bucket{{job="web",le="2.5",{scope}}}"#)
        ),
        1.0
    );
    assert_eq!(
        value_of(
            wr,
            &format!(r#"lat_milliseconds_bucket{{job="web",le="+Inf",{scope}}}"#)
        ),
        3.0
    );
    assert_eq!(
        value_of(wr, &format!(r#"lat_milliseconds_sum{{job="web",{scope}}}"#)),
        7.0
    );
    assert_eq!(
        value_of(wr, r#"target_info{debug="true",host_cpus="8",job="web"}"#),
        1.0
    );
}

#[test]
fn json_with_undecodable_value_is_an_error_not_a_silent_loss() {
    // opentelemetry-proto's serde would decode this gauge as a metric without data.
    let body = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[
        {"name":"g","gauge":{"dataPoints":[{"timeUnixNano":"1700000000123456789","asDouble":"x"}]}}
      ]}]}]}"#;
    let err = decode_request(body.as_bytes(), Format::Json)
        .unwrap_err()
        .to_string();
    assert!(err.contains("invalid OTLP/JSON body"), "{err}");
    assert!(err.contains("line 2"), "{err}");
}

#[test]
fn protobuf_end_to_end() {
    use prost::Message;
    let req = request_with(
        vec![kv("service.name", "api")],
        None,
        vec![gauge("g", "", vec![number(Value::AsInt(3), vec![])])],
    );
    let decoded = decode_request(&req.encode_to_vec(), Format::Protobuf).unwrap();
    let c = to_write_request(&decoded);
    assert_eq!(value_of(&c.request, r#"g{job="api"}"#), 3.0);
}

#[test]
fn empty_request_converts_to_nothing() {
    let c = to_write_request(&ExportMetricsServiceRequest::default());
    assert_eq!(c, Conversion::default());
}
