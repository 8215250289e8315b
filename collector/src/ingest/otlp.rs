//! `POST /v1/metrics`: OTLP/HTTP metrics, protobuf or JSON.
//!
//! ```text
//! POST /v1/metrics
//! Content-Type: application/x-protobuf | application/json
//! Content-Encoding: gzip (optional)
//!
//! 200 ExportMetricsServiceResponse   in the request's format; partial_success names
//!                                    what was refused (delta temporality, invalid series)
//! 400 <reason>                       body that is not an OTLP metrics request
//! 415 <reason>                       another content type
//! ```
//! The mapping to Prometheus series is in `calm_wire::otlp`, shared with the agent.

use super::{validate_all, IngestState};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use calm_wire::otlp::{export_response, read_request, to_write_request, Format};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;

fn reply(format: Format, resp: &ExportMetricsServiceResponse) -> Response {
    let (content_type, body) = calm_wire::otlp::encode_response(format, resp);
    (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// The handler.
pub async fn handle(
    State(st): State<IngestState>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let (format, req) = match read_request(ct, &body) {
        Ok(r) => r,
        Err(e) => {
            let code = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
            return (code, format!("OTLP: {e}\n")).into_response();
        }
    };
    let conv = to_write_request(&req);
    st.metadata.record(&conv.request.metadata);
    let mut series = conv.request.timeseries;
    let mut rejected: Vec<String> = conv.rejected;
    let mut rejected_points = conv.rejected_points;
    let (errors, bad) = validate_all(&mut series, &st.limits);
    rejected.extend(errors);
    rejected_points += bad as u64;
    let sender = super::sender_key(&headers, peer.map(|p| p.0 .0));
    let senders = st.senders.clone();
    let gate = move || senders.try_take(sender);
    match st.sink.write(&series, Some(&gate)).await {
        Ok(summary) if summary.limit_hit == Some(crate::storage::sink::SeriesLimit::SenderRate) => {
            // OTLP: 429 with Retry-After is the throttling answer the SDKs retry.
            let retry = super::SenderLimiter::retry_after_secs().to_string();
            let msg = format!(
                "OTLP: {} points refused by a series limit; the rest was stored:\n{}\n",
                summary.limited,
                summary.errors.join("\n")
            );
            (StatusCode::TOO_MANY_REQUESTS, [("Retry-After", retry)], msg).into_response()
        }
        Ok(summary) => {
            rejected.extend(summary.errors);
            rejected_points += summary.rejected;
            reply(format, &export_response(rejected_points, &rejected))
        }
        Err(e) => {
            tracing::error!(error = %e, "OTLP write could not be stored");
            e.response(format!("storage error, retry: {e}\n"))
        }
    }
}
