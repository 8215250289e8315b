//! `POST /v1/metrics` on the agent: the collector's OTLP contract, answered after the
//! series are durably in the spool.
//!
//! ```text
//! POST /v1/metrics
//! Content-Type: application/x-protobuf | application/json
//! Content-Encoding: gzip | deflate (optional)
//!
//! 200 ExportMetricsServiceResponse   in the request's format; partial_success names
//!                                    what was refused (delta temporality, invalid series)
//! 400 <reason>                       body that is not an OTLP metrics request
//! 413 <reason>                       body over the limit (names it)
//! 415 <reason>                       another content type
//! 503 <reason> + Retry-After         the spool cannot write now
//! ```

use crate::spool::{EntryKind, Spool, SpoolError};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use calm_wire::labels::{validate_series, LabelLimits};
use calm_wire::otlp::{export_response, read_request, to_write_request, Format};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What the handler needs.
#[derive(Clone)]
pub struct OtlpState {
    /// Where the series go.
    pub spool: Arc<Spool>,
    /// Wakes the shipper.
    pub wake: Arc<tokio::sync::Notify>,
    /// Counters for `/metrics`.
    pub stats: Arc<OtlpStats>,
}

/// The receiver's counters.
#[derive(Default, Debug)]
pub struct OtlpStats {
    /// Requests spooled.
    pub requests: AtomicU64,
    /// Samples spooled.
    pub samples: AtomicU64,
    /// Requests refused (4xx).
    pub invalid: AtomicU64,
}

fn reply(format: Format, resp: &ExportMetricsServiceResponse) -> Response {
    let (content_type, body) = calm_wire::otlp::encode_response(format, resp);
    (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// The handler.
pub async fn handle(State(st): State<OtlpState>, headers: HeaderMap, body: Bytes) -> Response {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let (format, req) = match read_request(ct, &body) {
        Ok(r) => r,
        Err(e) => {
            st.stats.invalid.fetch_add(1, Ordering::Relaxed);
            let code = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
            return (code, format!("OTLP: {e}\n")).into_response();
        }
    };
    let mut conv = to_write_request(&req);
    let mut rejected = conv.rejected;
    let mut rejected_points = conv.rejected_points;
    let limits = LabelLimits::default();
    conv.request
        .timeseries
        .retain_mut(|ts| match validate_series(ts, &limits) {
            Ok(()) => true,
            Err(e) => {
                rejected_points += (ts.samples.len() + ts.histograms.len()) as u64;
                if rejected.len() < 5 {
                    rejected.push(e.to_string());
                }
                false
            }
        });
    let samples: u64 = conv
        .request
        .timeseries
        .iter()
        .map(|t| (t.samples.len() + t.histograms.len()) as u64)
        .sum();
    if !conv.request.timeseries.is_empty() || !conv.request.metadata.is_empty() {
        let body = calm_wire::remote_write::encode(&conv.request);
        match st.spool.push_durable(EntryKind::Metrics, &body).await {
            Ok(_) => st.wake.notify_one(),
            Err(e @ SpoolError::TooLarge(..)) => {
                st.stats.invalid.fetch_add(1, Ordering::Relaxed);
                return (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("OTLP: {e}; send smaller batches or raise [spool] max_bytes\n"),
                )
                    .into_response();
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot spool OTLP metrics");
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [("Retry-After", "5")],
                    format!("the agent cannot store metrics now ({e}); retry later\n"),
                )
                    .into_response();
            }
        }
    }
    st.stats.requests.fetch_add(1, Ordering::Relaxed);
    st.stats.samples.fetch_add(samples, Ordering::Relaxed);
    reply(format, &export_response(rejected_points, &rejected))
}
