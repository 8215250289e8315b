//! OTLP exponential histograms → Prometheus native histograms, as Prometheus' OTLP
//! receiver maps them (otlptranslator).
//!
//! ```text
//! OTLP  scale s, bucket i covers (base^i, base^(i+1)],   base = 2^(2^-s)
//! Prom  schema s, bucket j covers (base^(j-1), base^j]    so j = i + 1
//! scale > 8: merged down to schema 8 (bucket i at scale s is i >> (s-8) at scale 8)
//! scale < -4: refused (no such native schema)
//! ```
//! The series keeps the family name (no `_bucket`/`_sum`/`_count`): one native
//! histogram per data point, integer counts, reset hint "unknown". Buckets are written
//! as spans and deltas the way client_golang does: empty buckets are left out, a gap of
//! at most two buckets is filled with empty ones rather than opening a new span.
//! The zero bucket keeps the sender's threshold when it sent one (Prometheus uses its
//! default, 2^-128 ≈ 2.9e-39, in that case too). A point flagged NoRecordedValue
//! becomes the staleness marker (sum = stale NaN), as in Prometheus.

use crate::prompb::{BucketSpan, Histogram};
use crate::value::stale_nan;
use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
use opentelemetry_proto::tonic::metrics::v1::ExponentialHistogramDataPoint;

/// Prometheus' default zero threshold for exponential histograms (2^-128).
pub const DEFAULT_ZERO_THRESHOLD: f64 = 2.938_735_877_055_719e-39;
/// The finest native schema.
const MAX_SCHEMA: i32 = 8;
/// The coarsest native schema.
const MIN_SCHEMA: i32 = -4;

/// One data point as a native histogram at `timestamp` (ms), or why it cannot be one.
pub(crate) fn to_native(
    dp: &ExponentialHistogramDataPoint,
    timestamp: i64,
    stale: bool,
) -> Result<Histogram, String> {
    if dp.scale < MIN_SCHEMA {
        return Err(format!(
            "exponential histogram scale {} is below {MIN_SCHEMA}, the coarsest native histogram schema",
            dp.scale
        ));
    }
    let scale_down = (dp.scale - MAX_SCHEMA).max(0) as u32;
    let (positive_spans, positive_deltas) = layout(dp.positive.as_ref(), scale_down)?;
    let (negative_spans, negative_deltas) = layout(dp.negative.as_ref(), scale_down)?;
    let zero_threshold = if dp.zero_threshold > 0.0 && dp.zero_threshold.is_finite() {
        dp.zero_threshold
    } else {
        DEFAULT_ZERO_THRESHOLD
    };
    Ok(Histogram {
        count_int: Some(dp.count),
        sum: if stale {
            stale_nan()
        } else {
            dp.sum.unwrap_or(0.0)
        },
        schema: dp.scale.min(MAX_SCHEMA),
        zero_threshold,
        zero_count_int: Some(dp.zero_count),
        positive_spans,
        positive_deltas,
        negative_spans,
        negative_deltas,
        timestamp,
        ..Histogram::default()
    })
}

/// Bucket counts of one side as native spans and deltas, merged down by `scale_down`.
fn layout(
    buckets: Option<&Buckets>,
    scale_down: u32,
) -> Result<(Vec<BucketSpan>, Vec<i64>), String> {
    let Some(b) = buckets else {
        return Ok((Vec::new(), Vec::new()));
    };
    // Native bucket index → absolute count; indexes only grow along the OTLP buckets.
    let mut merged: Vec<(i64, u64)> = Vec::new();
    for (i, &count) in b.bucket_counts.iter().enumerate() {
        let otlp_index = b.offset as i64 + i as i64;
        let index = (otlp_index >> scale_down) + 1;
        match merged.last_mut() {
            Some((last, c)) if *last == index => *c = c.saturating_add(count),
            _ => merged.push((index, count)),
        }
    }
    let mut spans: Vec<BucketSpan> = Vec::new();
    let mut deltas: Vec<i64> = Vec::new();
    let (mut end, mut previous) = (0i64, 0i64); // index after the last bucket written
    for (index, count) in merged.into_iter().filter(|&(_, c)| c > 0) {
        let count = i64::try_from(count)
            .map_err(|_| "exponential histogram bucket count is beyond 2^63".to_string())?;
        let gap = index - end;
        if spans.is_empty() || gap > 2 {
            let offset = i32::try_from(if spans.is_empty() { index } else { gap })
                .map_err(|_| "exponential histogram bucket offset is out of range".to_string())?;
            spans.push(BucketSpan { offset, length: 0 });
        } else {
            for _ in 0..gap {
                deltas.push(-previous);
                previous = 0;
            }
            if let Some(s) = spans.last_mut() {
                s.length += gap as u32;
            }
        }
        deltas.push(count - previous);
        previous = count;
        if let Some(s) = spans.last_mut() {
            s.length += 1;
        }
        end = index + 1;
    }
    Ok((spans, deltas))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(scale: i32, offset: i32, counts: &[u64]) -> ExponentialHistogramDataPoint {
        ExponentialHistogramDataPoint {
            scale,
            count: counts.iter().sum::<u64>() + 1,
            sum: Some(12.5),
            zero_count: 1,
            positive: Some(Buckets {
                offset,
                bucket_counts: counts.to_vec(),
            }),
            ..Default::default()
        }
    }

    /// (absolute index, count) of every bucket of one side, empty ones left out.
    fn buckets(spans: &[BucketSpan], deltas: &[i64]) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        let (mut idx, mut count, mut d) = (0i64, 0i64, deltas.iter());
        for (n, s) in spans.iter().enumerate() {
            idx = if n == 0 {
                s.offset as i64
            } else {
                idx + s.offset as i64
            };
            for _ in 0..s.length {
                count += d.next().copied().unwrap_or(0);
                if count != 0 {
                    out.push((idx, count));
                }
                idx += 1;
            }
        }
        out
    }

    #[test]
    fn indexes_shift_by_one_and_small_gaps_are_filled() {
        let h = to_native(&point(3, -2, &[1, 0, 2, 0, 0, 0, 5]), 1000, false).unwrap();
        assert_eq!(h.schema, 3);
        assert_eq!(h.count_int, Some(9));
        assert_eq!(h.zero_count_int, Some(1));
        assert_eq!(h.sum, 12.5);
        assert_eq!(h.zero_threshold, DEFAULT_ZERO_THRESHOLD);
        // OTLP indexes -2, 0, 4 → native -1, 1, 5: gap of one filled, gap of three opens a span.
        assert_eq!(
            h.positive_spans,
            vec![
                BucketSpan {
                    offset: -1,
                    length: 3
                },
                BucketSpan {
                    offset: 3,
                    length: 1
                }
            ]
        );
        assert_eq!(h.positive_deltas, vec![1, -1, 2, 3]);
        assert_eq!(
            buckets(&h.positive_spans, &h.positive_deltas),
            vec![(-1, 1), (1, 2), (5, 5)]
        );
    }

    #[test]
    fn scales_above_8_are_merged_down() {
        // Scale 10 → schema 8: OTLP indexes 7..=12 fall in 1, 2, 2, 2, 2, 3 (i >> 2).
        let h = to_native(&point(10, 7, &[1, 2, 3, 4, 5, 6]), 0, false).unwrap();
        assert_eq!(h.schema, 8);
        assert_eq!(
            buckets(&h.positive_spans, &h.positive_deltas),
            vec![(2, 1), (3, 14), (4, 6)]
        );
        // Negative offsets floor as they must: -5 >> 2 = -2.
        let h = to_native(&point(10, -5, &[1, 1, 1, 1, 1]), 0, false).unwrap();
        assert_eq!(
            buckets(&h.positive_spans, &h.positive_deltas),
            vec![(-1, 1), (0, 4)]
        );
    }

    #[test]
    fn coarse_scales_are_refused_and_stale_points_marked() {
        assert!(to_native(&point(-5, 0, &[1]), 0, false).is_err());
        let h = to_native(&point(0, 0, &[1]), 0, true).unwrap();
        assert!(crate::value::is_stale_nan(h.sum));
        let empty = to_native(&point(0, 0, &[]), 0, false).unwrap();
        assert!(empty.positive_spans.is_empty() && empty.negative_spans.is_empty());
    }
}
