//! Reading an OTLP/HTTP metrics body, protobuf or JSON.
//!
//! The body arrives decompressed and already checked against the size limit. Both
//! decoders bound their recursion (prost at 100 nested messages, serde_json at 128), so a
//! hostile body cannot overflow the stack. OTLP/JSON (camelCase keys, 64-bit integers as
//! strings or numbers, enums as integers, unknown keys ignored) is read by `json`, which
//! uses opentelemetry-proto's serde support for resources, scopes and attributes.

use super::{ExportMetricsServiceRequest, Format, OtlpError};
use prost::Message;

/// Decodes an OTLP/HTTP body (already decompressed) whose size the caller has checked.
pub fn decode_request(
    body: &[u8],
    format: Format,
) -> Result<ExportMetricsServiceRequest, OtlpError> {
    match format {
        Format::Protobuf => Ok(ExportMetricsServiceRequest::decode(body)?),
        Format::Json => {
            if body.iter().all(u8::is_ascii_whitespace) {
                return Err(OtlpError::EmptyJson);
            }
            Ok(super::json::from_slice(body)?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point::Value};

    /// Shaped like what the OpenTelemetry JS SDK's and the Collector's OTLP/JSON exporters
    /// send: camelCase, 64-bit integers as strings, enums as integers, hex ids.
    pub(crate) const COLLECTOR_JSON: &str = r#"{
      "resourceMetrics": [{
        "resource": {
          "attributes": [
            {"key": "service.name", "value": {"stringValue": "checkout"}},
            {"key": "service.instance.id", "value": {"stringValue": "pod-1"}},
            {"key": "host.cpus", "value": {"intValue": "8"}}
          ],
          "droppedAttributesCount": 0
        },
        "scopeMetrics": [{
          "scope": {"name": "@opentelemetry/instrumentation-http", "version": "0.52.0"},
          "metrics": [
            {
              "name": "http.server.requests",
              "description": "Requests served",
              "unit": "{request}",
              "sum": {
                "aggregationTemporality": 2,
                "isMonotonic": true,
                "dataPoints": [{
                  "attributes": [{"key": "http.method", "value": {"stringValue": "GET"}}],
                  "startTimeUnixNano": "1700000000000000000",
                  "timeUnixNano": "1700000060000000000",
                  "asInt": "42",
                  "exemplars": [{
                    "timeUnixNano": "1700000059000000000",
                    "asDouble": 1.5,
                    "spanId": "eee19b7ec3c1b174",
                    "traceId": "5b8efff798038103d269b633813fc60c"
                  }]
                }]
              }
            },
            {
              "name": "http.server.duration",
              "unit": "ms",
              "histogram": {
                "aggregationTemporality": 2,
                "dataPoints": [{
                  "timeUnixNano": 1700000060000000000,
                  "count": "3",
                  "sum": 12.5,
                  "bucketCounts": ["1", 2, "0"],
                  "explicitBounds": [5, 10],
                  "flags": 0
                }]
              }
            },
            {
              "name": "process.memory.usage",
              "unit": "By",
              "gauge": {"dataPoints": [{"timeUnixNano": "1700000060000000000", "asDouble": 1048576.0}]},
              "someFutureField": {"ignored": true}
            }
          ]
        }]
      }]
    }"#;

    #[test]
    fn decodes_collector_shaped_json() {
        let req = decode_request(COLLECTOR_JSON.as_bytes(), Format::Json).unwrap();
        let rm = &req.resource_metrics[0];
        assert_eq!(rm.resource.as_ref().unwrap().attributes.len(), 3);
        let metrics = &rm.scope_metrics[0].metrics;
        assert_eq!(metrics.len(), 3);
        let Some(Data::Sum(sum)) = &metrics[0].data else {
            panic!("expected a sum, got {:?}", metrics[0].data)
        };
        assert_eq!(sum.aggregation_temporality, 2);
        assert!(sum.is_monotonic);
        let dp = &sum.data_points[0];
        assert_eq!(dp.time_unix_nano, 1_700_000_060_000_000_000);
        assert_eq!(dp.value, Some(Value::AsInt(42)));
        // Exemplars are not read from JSON (Calm does not store them).
        assert!(dp.exemplars.is_empty());
        let Some(Data::Histogram(h)) = &metrics[1].data else {
            panic!("expected a histogram, got {:?}", metrics[1].data)
        };
        assert_eq!(h.data_points[0].bucket_counts, vec![1, 2, 0]);
        assert_eq!(h.data_points[0].explicit_bounds, vec![5.0, 10.0]);
        assert_eq!(h.data_points[0].sum, Some(12.5));
        let Some(Data::Gauge(g)) = &metrics[2].data else {
            panic!("expected a gauge, got {:?}", metrics[2].data)
        };
        assert_eq!(g.data_points[0].value, Some(Value::AsDouble(1048576.0)));
    }

    #[test]
    fn protobuf_round_trips() {
        let req = decode_request(COLLECTOR_JSON.as_bytes(), Format::Json).unwrap();
        let bytes = req.encode_to_vec();
        let back = decode_request(&bytes, Format::Protobuf).unwrap();
        assert_eq!(back, req);
    }

    #[test]
    fn empty_bodies() {
        let req = decode_request(b"", Format::Protobuf).unwrap();
        assert!(req.resource_metrics.is_empty());
        let req = decode_request(b"{}", Format::Json).unwrap();
        assert!(req.resource_metrics.is_empty());
        let err = decode_request(b"  \n", Format::Json).unwrap_err();
        assert!(matches!(err, OtlpError::EmptyJson), "{err}");
    }

    #[test]
    fn malformed_bodies_say_what_is_wrong() {
        let err = decode_request(b"\xff\xff\xff", Format::Protobuf).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("invalid OTLP protobuf body"), "{msg}");

        let err = decode_request(b"{\"resourceMetrics\": [", Format::Json).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("invalid OTLP/JSON body"), "{msg}");
        assert!(msg.contains("line 1"), "{msg}");

        let err = decode_request(b"[1, 2]", Format::Json).unwrap_err();
        assert!(matches!(err, OtlpError::Json(_)), "{err}");

        let bad_int = br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"x",
            "gauge":{"dataPoints":[{"timeUnixNano":"soon","asInt":"1"}]}}]}]}]}"#;
        let err = decode_request(bad_int, Format::Json).unwrap_err();
        assert!(err.to_string().contains("invalid"), "{err}");
    }

    #[test]
    fn protobuf_with_invalid_utf8_string_is_refused() {
        // ExportMetricsServiceRequest{resource_metrics: [ResourceMetrics{schema_url: "\xff"}]}
        let body = [0x0a, 0x03, 0x1a, 0x01, 0xff];
        let err = decode_request(&body, Format::Protobuf).unwrap_err();
        assert!(matches!(err, OtlpError::Protobuf(_)), "{err}");
    }
}
