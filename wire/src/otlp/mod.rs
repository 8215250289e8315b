//! OTLP metrics → Prometheus series, by OpenTelemetry's
//! ["Prometheus and OpenMetrics Compatibility"][spec] rules, the way Prometheus' own OTLP
//! receiver applies them (otlptranslator, strategy `UnderscoreEscapingWithSuffixes`, with
//! Prometheus' default label-name options).
//!
//! ```text
//! body ──decode_request──▶ ExportMetricsServiceRequest ──to_write_request──▶ Conversion
//!        (protobuf | JSON)                                                   ├ WriteRequest (series + metadata)
//!                                                                            ├ rejected: one reason per refused metric
//!                                                                            └ rejected_points (for OTLP partial success)
//! ```
//!
//! | OTLP                                | Prometheus                                               |
//! | ----------------------------------- | -------------------------------------------------------- |
//! | Gauge                               | gauge `name[_unit][_ratio if unit is "1"]`               |
//! | Sum, cumulative, monotonic          | counter `name[_unit]_total`                              |
//! | Sum, cumulative, not monotonic      | gauge `name[_unit]`                                      |
//! | Histogram, cumulative               | `_bucket{le}` (cumulative, ends with `+Inf`), `_sum`, `_count` |
//! | ExponentialHistogram, cumulative    | native histogram `name[_unit]`, scale > 8 merged down to 8 |
//! | Summary                             | `{quantile}`, `_sum`, `_count`                           |
//! | delta Sum/Histogram/ExponentialHistogram | refused, with a reason that says how to fix the exporter |
//! | `service.namespace`/`service.name`  | `job`                                                    |
//! | `service.instance.id`               | `instance`                                               |
//! | other resource attributes           | `target_info{job, instance, ...} 1`                      |
//! | scope name / version                | `otel_scope_name` / `otel_scope_version` on every series |
//! | NoRecordedValue flag                | the staleness marker ([`crate::value::stale_nan`])       |
//!
//! Files: `decode` reads bodies (`json` for OTLP/JSON), `names` holds the name and unit
//! rules, `values` turns attribute values into strings, `attrs` builds label sets,
//! `points` maps data points (`exponential` the exponential histograms) and `convert` drives the walk and collects the output.
//!
//! [spec]: https://opentelemetry.io/docs/specs/otel/compatibility/prometheus_and_openmetrics/

mod attrs;
mod convert;
mod decode;
mod exponential;
mod json;
mod json_num;
mod names;
mod output;
mod points;
mod values;

/// The body of an OTLP/HTTP export answer, in the request's format, with its
/// Content-Type: the receiver on the agent and the collector answer alike.
pub fn encode_response(
    format: Format,
    resp: &opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse,
) -> (&'static str, Vec<u8>) {
    match format {
        Format::Protobuf => (
            "application/x-protobuf",
            prost::Message::encode_to_vec(resp),
        ),
        Format::Json => (
            "application/json",
            serde_json::to_vec(resp).unwrap_or_else(|_| b"{}".to_vec()),
        ),
    }
}

/// The answer to an export request: `partial_success` only when data points were
/// refused, with their count and the reasons (`; `-joined).
pub fn export_response(
    rejected_points: u64,
    reasons: &[String],
) -> opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse {
    use opentelemetry_proto::tonic::collector::metrics::v1::{
        ExportMetricsPartialSuccess, ExportMetricsServiceResponse,
    };
    let partial =
        (!reasons.is_empty() || rejected_points > 0).then(|| ExportMetricsPartialSuccess {
            rejected_data_points: rejected_points as i64,
            error_message: reasons.join("; "),
        });
    ExportMetricsServiceResponse {
        partial_success: partial,
    }
}

/// An OTLP/HTTP export request read from its `Content-Type` header and body: the
/// request and the format to answer in, or why it cannot be read.
pub fn read_request(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<(Format, ExportMetricsServiceRequest), ReadError> {
    let format = Format::of_request(content_type)?;
    Ok((format, decode_request(body, format)?))
}

/// Why an OTLP/HTTP request could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Not a Content-Type OTLP/HTTP defines.
    #[error(transparent)]
    ContentType(#[from] UnsupportedContentType),
    /// The body does not decode.
    #[error(transparent)]
    Body(#[from] OtlpError),
}

impl ReadError {
    /// The HTTP status to answer with: 415 for the Content-Type, 400 for the body.
    pub fn http_status(&self) -> u16 {
        match self {
            ReadError::ContentType(_) => 415,
            ReadError::Body(_) => 400,
        }
    }
}

#[cfg(test)]
mod convert_tests;

pub use convert::to_write_request;
pub use decode::decode_request;
pub use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;

use crate::prompb::WriteRequest;

/// The encoding of an OTLP/HTTP request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Binary protobuf (`Content-Type: application/x-protobuf`).
    Protobuf,
    /// OTLP/JSON (`Content-Type: application/json`): the protobuf JSON mapping with
    /// OTLP's exceptions (hex trace and span ids, enums as integers).
    Json,
}

impl Format {
    /// The format a `Content-Type` header names, parameters (`; charset=utf-8`) ignored;
    /// `None` for a type OTLP/HTTP does not define. `application/protobuf` (without
    /// `x-`) is taken as protobuf too: some exporters send it.
    pub fn from_content_type(content_type: &str) -> Option<Format> {
        let essence = content_type.split(';').next().unwrap_or("").trim();
        if essence.eq_ignore_ascii_case("application/x-protobuf")
            || essence.eq_ignore_ascii_case("application/protobuf")
        {
            Some(Format::Protobuf)
        } else if essence.eq_ignore_ascii_case("application/json") {
            Some(Format::Json)
        } else {
            None
        }
    }

    /// The format of a request with this `Content-Type` header (protobuf, OTLP/HTTP's
    /// default, when there is none), or the refusal to answer with 415.
    pub fn of_request(content_type: Option<&str>) -> Result<Format, UnsupportedContentType> {
        match content_type {
            None => Ok(Format::Protobuf),
            Some(ct) => Format::from_content_type(ct).ok_or(UnsupportedContentType),
        }
    }
}

/// A request `Content-Type` that OTLP/HTTP does not define (answered 415).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Content-Type must be application/x-protobuf or application/json")]
pub struct UnsupportedContentType;

/// Why an OTLP body could not be read at all. The message says what was wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    /// The body is not a valid protobuf `ExportMetricsServiceRequest`.
    #[error("invalid OTLP protobuf body (expected an ExportMetricsServiceRequest): {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// The body is not a valid OTLP/JSON `ExportMetricsServiceRequest`.
    #[error("invalid OTLP/JSON body (expected an ExportMetricsServiceRequest object): {0}")]
    Json(#[from] serde_json::Error),
    /// A JSON body with nothing in it (an empty protobuf body is a valid, empty request).
    #[error("empty OTLP/JSON body: expected an ExportMetricsServiceRequest object such as {{\"resourceMetrics\":[]}}")]
    EmptyJson,
}

/// The result of mapping one OTLP request: what to store and what was refused.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Conversion {
    /// The series (labels sorted by name, samples in time order) and one metadata entry per
    /// metric family.
    pub request: WriteRequest,
    /// One human-readable reason per metric that had data points refused, naming the metric.
    pub rejected: Vec<String>,
    /// How many OTLP data points were refused, for `partial_success.rejected_data_points`.
    pub rejected_points: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_map_to_formats() {
        assert_eq!(
            Format::from_content_type("application/x-protobuf"),
            Some(Format::Protobuf)
        );
        assert_eq!(
            Format::from_content_type("Application/JSON; charset=utf-8"),
            Some(Format::Json)
        );
        assert_eq!(
            Format::from_content_type("application/protobuf"),
            Some(Format::Protobuf)
        );
        assert_eq!(Format::from_content_type("text/plain"), None);
        assert_eq!(Format::from_content_type(""), None);
        assert_eq!(Format::of_request(None), Ok(Format::Protobuf));
        assert_eq!(
            Format::of_request(Some("text/plain")),
            Err(UnsupportedContentType)
        );
    }

    #[test]
    fn requests_read_or_say_which_status() {
        let (format, req) = read_request(Some("application/json"), b"{}").unwrap();
        assert_eq!((format, req.resource_metrics.len()), (Format::Json, 0));
        let (format, _) = read_request(None, b"").unwrap();
        assert_eq!(format, Format::Protobuf);
        let e = read_request(Some("text/plain"), b"{}").unwrap_err();
        assert_eq!(e.http_status(), 415);
        let e = read_request(Some("application/json"), b"[").unwrap_err();
        assert_eq!(e.http_status(), 400);
        assert!(e.to_string().contains("OTLP/JSON"), "{e}");
    }

    #[test]
    fn partial_success_only_when_something_was_refused() {
        assert_eq!(export_response(0, &[]).partial_success, None);
        let p = export_response(3, &["a".into(), "b".into()])
            .partial_success
            .unwrap();
        assert_eq!(
            (p.rejected_data_points, p.error_message.as_str()),
            (3, "a; b")
        );
    }
}
