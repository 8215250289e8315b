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
//! 503 <reason>   storage could not make the write durable; retry
//! ```

use super::IngestState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use calm_wire::remote_write::{decode_view, DecodeError};
use parking_lot::Mutex;

/// Decompression buffers kept between requests: a fresh one costs a zeroed allocation
/// (page faults for the large ones) on every request. At most [`POOL_BUFFERS`] of at
/// most [`POOL_BUFFER_BYTES`] each are kept, so the pool holds a few MiB at worst.
static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
const POOL_BUFFERS: usize = 8;
const POOL_BUFFER_BYTES: usize = 1 << 20;

/// A pooled buffer, returned to the pool when dropped.
struct PooledBuf(Vec<u8>);

impl PooledBuf {
    fn take() -> PooledBuf {
        PooledBuf(POOL.lock().pop().unwrap_or_default())
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.0);
        if buf.capacity() <= POOL_BUFFER_BYTES {
            let mut pool = POOL.lock();
            if pool.len() < POOL_BUFFERS {
                pool.push(buf);
            }
        }
    }
}

/// The handler.
pub async fn handle(State(st): State<IngestState>, body: Bytes) -> Response {
    let mut raw = PooledBuf::take();
    let req = match decode_view(&body, st.max_body_bytes, &mut raw.0) {
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
    match st.sink.write_remote(&req, &st.limits).await {
        Ok(out) => {
            let mut errors = out.invalid;
            errors.extend(out.summary.errors);
            if errors.is_empty() {
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
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [("Retry-After", "1")],
                format!("storage error, retry: {e}\n"),
            )
                .into_response()
        }
    }
}
