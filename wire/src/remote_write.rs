//! Reading and writing remote-write v1 bodies.
//!
//! ```text
//! POST /api/v1/write
//! Content-Encoding: snappy
//! Content-Type: application/x-protobuf
//! X-Prometheus-Remote-Write-Version: 0.1.0
//!
//! snappy block format (not framed) of a prompb.WriteRequest
//! ```
//! The decompressed length is read from the snappy header and checked against the limit
//! *before* any memory is allocated for it, so a 100-byte body cannot claim 4 GiB.

use crate::prompb::WriteRequest;
use crate::remote_write_view::{ViewBuffers, WriteRequestView};
use bytes::Bytes;
use prost::Message;

/// Why a body could not be read. Each message says what was wrong with the input.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("snappy: {0} (the body must be snappy block format, not framed)")]
    Snappy(String),
    #[error("decompressed body would be {len} bytes, more than the limit of {limit} bytes")]
    TooLarge { len: usize, limit: usize },
    #[error("protobuf: {0} (the body must be a prometheus.WriteRequest)")]
    Protobuf(String),
}

/// Decompresses a snappy block, refusing anything that would decompress past `limit`.
pub fn decompress(body: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    let len = snap::raw::decompress_len(body).map_err(|e| DecodeError::Snappy(e.to_string()))?;
    if len > limit {
        return Err(DecodeError::TooLarge { len, limit });
    }
    let mut out = vec![0u8; len];
    let n = snap::raw::Decoder::new()
        .decompress(body, &mut out)
        .map_err(|e| DecodeError::Snappy(e.to_string()))?;
    out.truncate(n);
    Ok(out)
}

/// Decodes a snappy-compressed `WriteRequest`. Labels are slices of the decompressed
/// buffer (no per-label allocation) and are not yet validated: call
/// [`crate::labels::validate_series`] on each series.
pub fn decode(body: &[u8], limit: usize) -> Result<WriteRequest, DecodeError> {
    let raw = Bytes::from(decompress(body, limit)?);
    WriteRequest::decode(raw).map_err(|e| DecodeError::Protobuf(e.to_string()))
}

/// Decompresses a snappy body into `out` (its old contents are dropped) and reads it
/// as a borrowed [`WriteRequestView`]. Same checks and errors as [`decode`].
pub fn decode_view<'a>(
    body: &[u8],
    limit: usize,
    out: &'a mut Vec<u8>,
) -> Result<WriteRequestView<'a>, DecodeError> {
    decode_view_in(body, limit, out, ViewBuffers::default())
}

/// [`decode_view`] into the vectors of an earlier view ([`WriteRequestView::into_buffers`]).
pub fn decode_view_in<'a>(
    body: &[u8],
    limit: usize,
    out: &'a mut Vec<u8>,
    bufs: ViewBuffers,
) -> Result<WriteRequestView<'a>, DecodeError> {
    let len = snap::raw::decompress_len(body).map_err(|e| DecodeError::Snappy(e.to_string()))?;
    if len > limit {
        return Err(DecodeError::TooLarge { len, limit });
    }
    out.clear();
    out.resize(len, 0);
    let n = snap::raw::Decoder::new()
        .decompress(body, out)
        .map_err(|e| DecodeError::Snappy(e.to_string()))?;
    out.truncate(n);
    WriteRequestView::parse_in(out, bufs).map_err(|e| DecodeError::Protobuf(e.to_string()))
}

/// Encodes and snappy-compresses a `WriteRequest` (the sender's side).
pub fn encode(req: &WriteRequest) -> Vec<u8> {
    let raw = req.encode_to_vec();
    // Compressing a Vec we own into a buffer sized by max_compress_len cannot fail.
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prompb::{Label, Sample, TimeSeries};

    fn request() -> WriteRequest {
        WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label::new("__name__", "up"), Label::new("job", "x")],
                samples: vec![Sample {
                    value: 1.5,
                    timestamp: 1_700_000_000_000,
                }],
                exemplars: vec![],
                histograms: vec![],
            }],
            metadata: vec![],
        }
    }

    #[test]
    fn round_trip() {
        let body = encode(&request());
        assert_eq!(decode(&body, 1 << 20).unwrap(), request());
    }

    #[test]
    fn truncated_snappy_is_an_error() {
        let body = encode(&request());
        let err = decode(&body[..body.len() / 2], 1 << 20).unwrap_err();
        assert!(matches!(err, DecodeError::Snappy(_)), "{err}");
    }

    #[test]
    fn limit_is_checked_before_decompressing() {
        let body = encode(&request());
        let err = decode(&body, 4).unwrap_err();
        assert!(
            matches!(err, DecodeError::TooLarge { limit: 4, .. }),
            "{err}"
        );
    }

    #[test]
    fn garbage_protobuf_is_an_error() {
        let body = snap::raw::Encoder::new().compress_vec(&[0xff; 64]).unwrap();
        assert!(matches!(
            decode(&body, 1 << 20).unwrap_err(),
            DecodeError::Protobuf(_)
        ));
    }

    #[test]
    fn native_histograms_decode_with_absolute_bucket_counts() {
        use crate::prompb::{BucketSpan, Histogram};
        let mut req = request();
        req.timeseries[0].histograms.push(Histogram {
            count_int: Some(9),
            sum: 12.5,
            schema: 1,
            zero_threshold: 0.001,
            zero_count_int: Some(1),
            positive_spans: vec![
                BucketSpan {
                    offset: 0,
                    length: 2,
                },
                BucketSpan {
                    offset: 3,
                    length: 1,
                },
            ],
            // Absolute counts 2, 5, 1.
            positive_deltas: vec![2, 3, -4],
            reset_hint: 2,
            timestamp: 1_700_000_000_000,
            ..Default::default()
        });
        let got = decode(&encode(&req), 1 << 20).unwrap();
        let h = &got.timeseries[0].histograms[0];
        assert!(h.is_int());
        assert_eq!(h.count(), 9.0);
        assert_eq!(h.zero_count(), 1.0);
        assert_eq!(h.absolute_counts(true), vec![2.0, 5.0, 1.0]);
        assert!(h.absolute_counts(false).is_empty());
        assert_eq!(h.positive_spans[1].offset, 3);
        assert_eq!(h.timestamp, 1_700_000_000_000);
    }
}
