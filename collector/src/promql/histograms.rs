//! PromQL over native histograms: `histogram_quantile`, `histogram_fraction`,
//! `histogram_stddev`/`stdvar`, and the histogram forms of `rate`/`increase`/`delta`,
//! `irate`/`idelta`, `sum_over_time`/`avg_over_time`, `resets` and `changes`
//! (Prometheus 3 semantics: exponential interpolation inside standard exponential
//! buckets, linear inside the zero bucket and inside custom buckets).

use super::functions::{bucket_fraction, bucket_quantile, kahan_inc};
use super::value::{FloatHistogram, Hist};
use crate::tsdb::histogram::{Bucket, ResetHint};
use std::sync::Arc;

/// The `q` quantile of a native histogram.
pub fn quantile(q: f64, h: &FloatHistogram) -> f64 {
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    if h.count == 0.0 || q.is_nan() {
        return f64::NAN;
    }
    if h.uses_custom_buckets() {
        return bucket_quantile(q, &mut h.cumulative_custom_buckets());
    }
    let buckets = h.buckets_ascending();
    let forward = h.sum.is_nan() || q < 0.5;
    let mut rank = if forward {
        q * h.count
    } else {
        (1.0 - q) * h.count
    };
    let mut count = 0.0;
    let mut bucket: Option<Bucket> = None;
    let iter: Box<dyn Iterator<Item = &Bucket>> = if forward {
        Box::new(buckets.iter())
    } else {
        Box::new(buckets.iter().rev())
    };
    for b in iter {
        if b.count == 0.0 {
            continue;
        }
        count += b.count;
        bucket = Some(*b);
        if count >= rank {
            break;
        }
    }
    let Some(mut b) = bucket else {
        return f64::NAN;
    };
    if b.lower < 0.0 && b.upper > 0.0 {
        let has_neg = !h.negative_buckets.is_empty();
        let has_pos = !h.positive_buckets.is_empty();
        if !has_neg && has_pos {
            b.lower = 0.0;
        } else if !has_pos && has_neg {
            b.upper = 0.0;
        }
    }
    if count > h.count {
        count = h.count;
    }
    if count < rank {
        // The rank lies among NaN observations (counted, in no bucket).
        return f64::NAN;
    }
    if forward {
        rank -= count - b.count;
    } else {
        rank = count - rank;
    }
    let fraction = rank / b.count;
    interpolate(&b, fraction)
}

/// The value `fraction` of the way through bucket `b`.
fn interpolate(b: &Bucket, fraction: f64) -> f64 {
    if b.is_zero || b.lower <= 0.0 && b.upper >= 0.0 {
        return b.lower + (b.upper - b.lower) * fraction;
    }
    let log_lower = b.lower.abs().log2();
    let log_upper = b.upper.abs().log2();
    if b.lower > 0.0 {
        (log_lower + (log_upper - log_lower) * fraction).exp2()
    } else {
        -(log_upper + (log_lower - log_upper) * (1.0 - fraction)).exp2()
    }
}

/// The fraction of observations between `lo` and `hi` in a native histogram.
pub fn fraction(lo: f64, hi: f64, h: &FloatHistogram) -> f64 {
    if h.uses_custom_buckets() {
        return bucket_fraction(lo, hi, &h.cumulative_custom_buckets());
    }
    if h.count == 0.0 || lo.is_nan() || hi.is_nan() {
        return f64::NAN;
    }
    if lo >= hi {
        return 0.0;
    }
    let has_neg = !h.negative_buckets.is_empty();
    let has_pos = !h.positive_buckets.is_empty();
    let (mut rank, mut lo_rank, mut hi_rank) = (0.0, 0.0, 0.0);
    let (mut lo_set, mut hi_set) = (false, false);
    // Where `v` lies inside bucket `b`, as a share of its count.
    let share = |b: &Bucket, v: f64| -> f64 {
        if b.is_zero || b.lower <= 0.0 && b.upper >= 0.0 {
            return (v - b.lower) / (b.upper - b.lower);
        }
        let (ll, lu, lv) = (b.lower.abs().log2(), b.upper.abs().log2(), v.abs().log2());
        if b.lower > 0.0 {
            (lv - ll) / (lu - ll)
        } else {
            1.0 - (lv - lu) / (ll - lu)
        }
    };
    for mut b in h.buckets_ascending() {
        if b.is_zero {
            if !has_neg && has_pos {
                b.lower = 0.0;
            } else if !has_pos && has_neg {
                b.upper = 0.0;
            }
        }
        if !lo_set && b.lower >= lo {
            lo_rank = rank;
            lo_set = true;
        }
        if !hi_set && b.lower >= hi {
            hi_rank = rank;
            hi_set = true;
        }
        if lo_set && hi_set {
            break;
        }
        if !lo_set && b.lower < lo && b.upper > lo {
            lo_rank = rank + b.count * share(&b, lo);
            lo_set = true;
        }
        if !hi_set && b.lower < hi && b.upper > hi {
            hi_rank = rank + b.count * share(&b, hi);
            hi_set = true;
        }
        if lo_set && hi_set {
            break;
        }
        rank += b.count;
    }
    // Past the last bucket: everything in buckets (NaN observations are counted in
    // the total but lie in no fraction).
    if !lo_set {
        lo_rank = rank;
    }
    if !hi_set {
        hi_rank = rank;
    }
    (hi_rank.min(h.count) - lo_rank.min(h.count)) / h.count
}

/// The estimated variance of the observations of a native histogram.
pub fn stdvar(h: &FloatHistogram) -> f64 {
    let mean = h.sum / h.count;
    let (mut var, mut c) = (0.0, 0.0);
    for b in h.buckets_ascending() {
        if b.count == 0.0 {
            continue;
        }
        let val = if h.uses_custom_buckets() {
            (b.upper + b.lower) / 2.0
        } else if b.lower <= 0.0 && b.upper >= 0.0 {
            0.0
        } else {
            let v = (b.upper * b.lower).sqrt();
            if b.upper < 0.0 {
                -v
            } else {
                v
            }
        };
        let d = val - mean;
        (var, c) = kahan_inc(b.count * d * d, var, c);
    }
    (var + c) / h.count
}

/// The increase over a window of histogram points (`rate`, `increase`, `delta`
/// before extrapolation): last − first, plus what counter resets lost.
pub fn rate_delta(points: &[(i64, Hist)], counter: bool) -> Option<FloatHistogram> {
    let first = &points.first()?.1;
    let last = &points.last()?.1;
    let custom = first.uses_custom_buckets();
    if last.uses_custom_buckets() != custom {
        return None;
    }
    let mut min_schema = first.schema.min(last.schema);
    if counter && points.len() > 2 {
        for (_, h) in &points[1..points.len() - 1] {
            if h.uses_custom_buckets() != custom {
                return None;
            }
            min_schema = min_schema.min(h.schema);
        }
    }
    let (mut res, _) = last.to_schema(min_schema).combine(first, -1.0).ok()?;
    if counter {
        let mut prev = first;
        for (_, cur) in &points[1..] {
            if cur.detect_reset(prev) {
                res = res.combine(prev, 1.0).ok()?.0;
            }
            prev = cur;
        }
    }
    res.counter_reset_hint = ResetHint::Gauge;
    Some(res.compact())
}

/// `irate`/`idelta` of two histogram samples.
pub fn instant_delta(prev: &Hist, last: &Hist, rate: bool) -> Option<FloatHistogram> {
    let mut res = (**last).clone();
    if !rate || !last.detect_reset(prev) {
        res = res.combine(prev, -1.0).ok()?.0;
    }
    res.counter_reset_hint = ResetHint::Gauge;
    Some(res.compact())
}

/// The sum of histograms; `None` when they do not combine.
pub fn sum(hs: &[(i64, Hist)]) -> Option<FloatHistogram> {
    let mut acc = (*hs.first()?.1).clone();
    for (_, h) in &hs[1..] {
        acc = acc.combine(h, 1.0).ok()?.0;
    }
    Some(acc)
}

/// Wraps a computed histogram for a sample.
pub fn wrap(h: FloatHistogram) -> Hist {
    Arc::new(h)
}

/// Renders a histogram as Go's `FloatHistogram.String()` does (used by
/// `count_values` for its label value).
pub fn go_string(h: &FloatHistogram) -> String {
    let mut s = format!("{{count:{}, sum:{}", go_g(h.count), go_g(h.sum));
    for b in h.buckets_ascending() {
        s.push_str(", ");
        s.push(if b.lower_inclusive { '[' } else { '(' });
        s.push_str(&format!("{},{}", go_g(b.lower), go_g(b.upper)));
        s.push(if b.upper_inclusive { ']' } else { ')' });
        s.push_str(&format!(":{}", go_g(b.count)));
    }
    s.push('}');
    s
}

/// Go's `%g` for a float64 (shortest representation; exponent form when the
/// exponent is < −4 or ≥ 21).
pub fn go_g(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let e = format!("{v:e}");
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..21).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mant}e{sign}{:02}", exp.abs());
    }
    format!("{v}")
}
