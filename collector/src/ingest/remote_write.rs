//! `POST /api/v1/write`: Prometheus remote-write v1.
//!
//! ```text
//! POST /api/v1/write
//! Content-Encoding: snappy
//! Content-Type: application/x-protobuf
//!
//! 204            all samples stored (or already stored: retries are fine)
//! 400 <reason>   malformed body, invalid series, or refused samples; the valid rest is stored
//! 413 <reason>   body larger than max_body_bytes once decompressed
//! 415 <reason>   Content-Type names another protobuf message (Remote-Write 2.0:
//!                `proto=io.prometheus.write.v2.Request`), so the sender can fall back
//! 503 <reason>   storage could not make the write durable; retry (the status and
//!                Retry-After come from `StorageError`)
//! ```
//!
//! Refused samples (stamped after now + `future_grace` or before now − retention,
//! out of bounds, conflicting) get 400 while the valid rest of the batch is stored, as
//! Prometheus' own receiver answers out-of-bounds samples: Prometheus, Alloy and the
//! agent drop a batch answered 4xx and retry one answered 5xx, so a 5xx would make
//! them resend a sample that can never be stored, forever, and hold up the samples
//! queued behind it. The body counts the refusals and names the first few, so the
//! sender's log says what was dropped; each is counted by reason in
//! `calm_ingest_samples_rejected_total{reason}`.

use super::IngestState;
use crate::storage::sink::SeriesLimit;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use calm_wire::remote_write::{decode_view_in, DecodeError};
use calm_wire::remote_write_view::ViewBuffers;
use parking_lot::Mutex;

/// Decompression buffers and the parsed view's vectors, kept between requests: a fresh
/// buffer costs a zeroed allocation (page faults for the large ones) on every request,
/// and fresh vectors grown by doubling cost copies into new pages. At most
/// [`POOL_BUFFERS`] sets of at most [`POOL_BUFFER_BYTES`] each (body and vectors
/// apiece) are kept, so the pool holds a few MiB at worst.
static POOL: Mutex<Vec<(Vec<u8>, ViewBuffers)>> = Mutex::new(Vec::new());
const POOL_BUFFERS: usize = 8;
const POOL_BUFFER_BYTES: usize = 1 << 20;

/// A pooled body buffer and view vectors, returned to the pool when dropped.
struct PooledBuf(Vec<u8>, ViewBuffers);

impl PooledBuf {
    fn take() -> PooledBuf {
        let (body, view) = POOL.lock().pop().unwrap_or_default();
        PooledBuf(body, view)
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.0);
        let view = std::mem::take(&mut self.1);
        if buf.capacity() <= POOL_BUFFER_BYTES && view.capacity_bytes() <= POOL_BUFFER_BYTES {
            let mut pool = POOL.lock();
            if pool.len() < POOL_BUFFERS {
                pool.push((buf, view));
            }
        }
    }
}

/// The protobuf message a Content-Type names with its `proto` parameter, when it names
/// one other than Remote-Write 1.0's `prometheus.WriteRequest`.
///
/// ```text
/// application/x-protobuf                                      → 1.0
/// application/x-protobuf;proto=prometheus.WriteRequest        → 1.0
/// application/x-protobuf;proto=io.prometheus.write.v2.Request → Some("io.prometheus.write.v2.Request")
/// ```
/// A 2.0 body decoded as 1.0 is a valid, empty `WriteRequest` (its fields have other
/// numbers), so without this check it would be answered 204 and silently lost; the
/// 2.0 spec asks for 415 so the sender can fall back to 1.0.
fn other_proto(headers: &HeaderMap) -> Option<String> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    ct.split(';').skip(1).find_map(|param| {
        let (k, v) = param.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("proto") {
            return None;
        }
        let v = v.trim().trim_matches('"');
        (v != "prometheus.WriteRequest").then(|| v.to_string())
    })
}

/// The handler.
pub async fn handle(
    State(st): State<IngestState>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(proto) = other_proto(&headers) {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "remote-write: only Remote-Write 1.0 (proto=prometheus.WriteRequest) is accepted, \
                 not proto={proto}; configure the sender for 1.0 \
                 (Prometheus: protobuf_message: prometheus.WriteRequest)\n"
            ),
        )
            .into_response();
    }
    let mut raw = PooledBuf::take();
    let view_bufs = std::mem::take(&mut raw.1);
    let req = match decode_view_in(&body, st.max_body_bytes, &mut raw.0, view_bufs) {
        Ok(r) => r,
        Err(e @ DecodeError::TooLarge { .. }) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("remote-write: {e}\n"),
            )
                .into_response()
        }
        Err(e) => return (StatusCode::BAD_REQUEST, format!("remote-write: {e}\n")).into_response(),
    };
    st.metadata.record(&req.metadata);
    let sender = super::sender_key(&headers, peer.map(|p| p.0 .0));
    let senders = st.senders.clone();
    let gate = move || senders.try_take(sender);
    let response = match st
        .sink
        .write_remote_body(&body[..], &req, &st.limits, Some(&gate))
        .await
    {
        Ok(out) => {
            let limit_hit = out.summary.limit_hit;
            let mut errors = out.invalid;
            errors.extend(out.summary.errors);
            if limit_hit == Some(SeriesLimit::SenderRate) {
                // Retried later, the refused series fit in a new minute's budget.
                let retry = super::SenderLimiter::retry_after_secs().to_string();
                let msg = format!(
                    "remote-write: {} samples refused by a series limit; the rest was stored:\n{}\n",
                    out.summary.limited,
                    errors.join("\n")
                );
                (StatusCode::TOO_MANY_REQUESTS, [("Retry-After", retry)], msg).into_response()
            } else if errors.is_empty() {
                StatusCode::NO_CONTENT.into_response()
            } else {
                let msg = format!(
                    "remote-write: {} series invalid, {} samples refused; the rest was stored:\n{}\n",
                    out.invalid_series,
                    out.summary.rejected,
                    errors.join("\n")
                );
                (StatusCode::BAD_REQUEST, msg).into_response()
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "remote-write could not be stored");
            e.response(format!("storage error, retry: {e}\n"))
        }
    };
    raw.1 = req.into_buffers();
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ct(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, v.parse().expect("header value"));
        h
    }

    #[test]
    fn only_remote_write_1_0_messages_pass() {
        assert_eq!(other_proto(&HeaderMap::new()), None);
        assert_eq!(other_proto(&ct("application/x-protobuf")), None);
        assert_eq!(
            other_proto(&ct("application/x-protobuf; proto=prometheus.WriteRequest")),
            None
        );
        assert_eq!(
            other_proto(&ct(
                "application/x-protobuf;proto=io.prometheus.write.v2.Request"
            ))
            .as_deref(),
            Some("io.prometheus.write.v2.Request")
        );
        assert_eq!(
            other_proto(&ct("application/x-protobuf; PROTO=\"x.Y\"")).as_deref(),
            Some("x.Y")
        );
    }
}
