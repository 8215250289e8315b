//! Native histograms: the float histogram every histogram sample is stored and
//! computed as (Prometheus' `FloatHistogram`), its arithmetic, and its binary form.
//!
//! Buckets are sparse. For the standard schemas (-4..=8) bucket `i > 0` of the
//! positive side holds observations in `(2^((i−1)·2^−schema), 2^(i·2^−schema)]`, the
//! negative side mirrors it, and the zero bucket holds `[−zero_threshold,
//! zero_threshold]`. Schema −53 means custom buckets: bucket `i` is
//! `(custom_values[i−1], custom_values[i]]`, the first one starts at −Inf and the one
//! after the last custom value ends at +Inf.
//!
//! Spans say which bucket indexes are present:
//!
//! ```text
//! spans   [{offset 0, length 2}, {offset 3, length 1}]   → indexes 0, 1, 5
//! offset: gap to the end of the previous span (for the first span: the index itself)
//! buckets [2, 5, 1]                                       → absolute counts, in index order
//! ```
//! Arithmetic works on the `(index, count)` list of each side; results keep every bucket
//! they touch (also empty ones), like Prometheus does before its `Compact(0)`.

use super::labels::{get_bytes, get_u64, get_uvarint, get_varint, put_uvarint, put_varint};
use std::collections::BTreeMap;

/// Largest absolute bucket index a stored histogram may use.
pub const MAX_BUCKET_INDEX: i64 = 1 << 20;

/// The schema number of histograms with custom bucket bounds (NHCB).
pub const CUSTOM_BUCKETS_SCHEMA: i32 = -53;

/// What the producer says about counter resets (Prometheus' `CounterResetHint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResetHint {
    /// Nothing known: a reset is detected by comparing with the previous sample.
    #[default]
    Unknown,
    /// This sample follows a counter reset.
    Reset,
    /// This sample does not follow a counter reset.
    NotReset,
    /// A gauge histogram: counts may go down without a reset.
    Gauge,
}

impl ResetHint {
    /// The numbering of the remote-write `ResetHint` enum and of the stored form.
    pub fn from_u8(v: u8) -> ResetHint {
        match v {
            1 => ResetHint::Reset,
            2 => ResetHint::NotReset,
            3 => ResetHint::Gauge,
            _ => ResetHint::Unknown,
        }
    }

    /// See [`ResetHint::from_u8`].
    pub fn as_u8(self) -> u8 {
        match self {
            ResetHint::Unknown => 0,
            ResetHint::Reset => 1,
            ResetHint::NotReset => 2,
            ResetHint::Gauge => 3,
        }
    }
}

/// A run of present bucket indexes (see the module comment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub offset: i32,
    pub length: u32,
}

/// A native histogram with float counts.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FloatHistogram {
    pub counter_reset_hint: ResetHint,
    /// Bucket resolution; [`CUSTOM_BUCKETS_SCHEMA`] for custom buckets.
    pub schema: i32,
    pub zero_threshold: f64,
    pub zero_count: f64,
    /// Number of observations.
    pub count: f64,
    /// Sum of observations.
    pub sum: f64,
    pub positive_spans: Vec<Span>,
    pub positive_buckets: Vec<f64>,
    pub negative_spans: Vec<Span>,
    pub negative_buckets: Vec<f64>,
    /// Upper bounds of the custom buckets, ascending, +Inf left out.
    pub custom_values: Vec<f64>,
}

/// Why two histograms cannot be combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HistogramError {
    /// One has custom buckets, the other exponential ones.
    #[error("histograms have incompatible schemas (exponential and custom buckets)")]
    IncompatibleSchema,
}

/// One bucket with its bounds, as iterated for quantiles and the HTTP API.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub lower: f64,
    pub upper: f64,
    pub lower_inclusive: bool,
    pub upper_inclusive: bool,
    pub count: f64,
    /// True for the zero bucket of a standard-schema histogram.
    pub is_zero: bool,
}

/// The upper bound of positive bucket `idx` in a standard schema.
pub fn exp_upper_bound(idx: i32, schema: i32) -> f64 {
    if schema <= 0 {
        // 2^(idx · 2^−schema)
        let e = (idx as i64) << (-schema) as u32;
        if e > 1024 {
            return f64::INFINITY;
        }
        if e < -1074 {
            return 0.0;
        }
        return 2f64.powi(e as i32);
    }
    let per = 1i64 << schema;
    let idx = idx as i64;
    let whole = idx.div_euclid(per);
    let frac = idx.rem_euclid(per);
    if whole >= 1024 {
        return f64::INFINITY;
    }
    let f = 2f64.powf(frac as f64 / per as f64);
    f * 2f64.powi(whole as i32)
}

fn spans_to_list(spans: &[Span], buckets: &[f64]) -> Vec<(i32, f64)> {
    let mut out = Vec::with_capacity(buckets.len());
    let mut idx = 0i32;
    let mut bi = 0usize;
    for (si, s) in spans.iter().enumerate() {
        idx = if si == 0 {
            s.offset
        } else {
            idx.saturating_add(s.offset)
        };
        for _ in 0..s.length {
            let Some(&c) = buckets.get(bi) else {
                return out;
            };
            out.push((idx, c));
            bi += 1;
            idx = idx.saturating_add(1);
        }
    }
    out
}

fn list_to_spans(list: &[(i32, f64)]) -> (Vec<Span>, Vec<f64>) {
    let mut spans: Vec<Span> = Vec::new();
    let mut buckets = Vec::with_capacity(list.len());
    let mut next = 0i32; // index after the last span
    for &(idx, c) in list {
        match spans.last_mut() {
            Some(s) if idx == next => s.length += 1,
            Some(_) => spans.push(Span {
                offset: idx - next,
                length: 1,
            }),
            None => spans.push(Span {
                offset: idx,
                length: 1,
            }),
        }
        buckets.push(c);
        next = idx + 1;
    }
    (spans, buckets)
}

impl FloatHistogram {
    /// True for custom buckets (schema −53).
    pub fn uses_custom_buckets(&self) -> bool {
        self.schema == CUSTOM_BUCKETS_SCHEMA
    }

    /// `(index, count)` of one side's buckets, by index.
    pub fn bucket_list(&self, positive: bool) -> Vec<(i32, f64)> {
        if positive {
            spans_to_list(&self.positive_spans, &self.positive_buckets)
        } else {
            spans_to_list(&self.negative_spans, &self.negative_buckets)
        }
    }

    /// Replaces one side's buckets with `list` (sorted by index, unique).
    pub fn set_bucket_list(&mut self, positive: bool, list: &[(i32, f64)]) {
        let (s, b) = list_to_spans(list);
        if positive {
            self.positive_spans = s;
            self.positive_buckets = b;
        } else {
            self.negative_spans = s;
            self.negative_buckets = b;
        }
    }

    /// The histogram without empty buckets (Prometheus' `Compact(0)`).
    pub fn compact(&self) -> FloatHistogram {
        let mut h = self.clone();
        for positive in [true, false] {
            let list: Vec<(i32, f64)> = self
                .bucket_list(positive)
                .into_iter()
                .filter(|b| b.1 != 0.0)
                .collect();
            h.set_bucket_list(positive, &list);
        }
        h
    }

    /// Bounds `(lower, upper)` of positive bucket `idx`.
    pub fn positive_bounds(&self, idx: i32) -> (f64, f64) {
        if self.uses_custom_buckets() {
            let cv = &self.custom_values;
            let upper = usize::try_from(idx)
                .ok()
                .and_then(|i| cv.get(i).copied())
                .unwrap_or(f64::INFINITY);
            let lower = if idx <= 0 {
                f64::NEG_INFINITY
            } else {
                cv.get(idx as usize - 1).copied().unwrap_or(f64::INFINITY)
            };
            return (lower, upper);
        }
        (
            exp_upper_bound(idx.saturating_sub(1), self.schema),
            exp_upper_bound(idx, self.schema),
        )
    }

    /// Every non-empty bucket in ascending order of value: negative buckets, the zero
    /// bucket (when it holds observations), positive buckets.
    pub fn buckets_ascending(&self) -> Vec<Bucket> {
        let mut out = Vec::new();
        let custom = self.uses_custom_buckets();
        for &(idx, c) in self.bucket_list(false).iter().rev() {
            if c == 0.0 {
                continue;
            }
            let (l, u) = self.positive_bounds(idx);
            out.push(Bucket {
                lower: -u,
                upper: -l,
                lower_inclusive: true,
                upper_inclusive: false,
                count: c,
                is_zero: false,
            });
        }
        if !custom && self.zero_count > 0.0 {
            out.push(Bucket {
                lower: -self.zero_threshold,
                upper: self.zero_threshold,
                lower_inclusive: true,
                upper_inclusive: true,
                count: self.zero_count,
                is_zero: true,
            });
        }
        for &(idx, c) in &self.bucket_list(true) {
            if c == 0.0 {
                continue;
            }
            let (l, u) = self.positive_bounds(idx);
            out.push(Bucket {
                lower: l,
                upper: u,
                lower_inclusive: false,
                upper_inclusive: true,
                count: c,
                is_zero: false,
            });
        }
        out
    }

    /// Multiplies every count and the sum by `f`.
    pub fn mul(&mut self, f: f64) {
        self.zero_count *= f;
        self.count *= f;
        self.sum *= f;
        self.positive_buckets.iter_mut().for_each(|b| *b *= f);
        self.negative_buckets.iter_mut().for_each(|b| *b *= f);
    }

    /// Divides every count and the sum by `f`.
    pub fn div(&mut self, f: f64) {
        self.zero_count /= f;
        self.count /= f;
        self.sum /= f;
        self.positive_buckets.iter_mut().for_each(|b| *b /= f);
        self.negative_buckets.iter_mut().for_each(|b| *b /= f);
    }

    /// The same histogram at a lower resolution `target` (≤ the schema).
    pub fn to_schema(&self, target: i32) -> FloatHistogram {
        if self.uses_custom_buckets() || target >= self.schema {
            return self.clone();
        }
        let shift = (self.schema - target) as u32;
        let mut h = self.clone();
        h.schema = target;
        for positive in [true, false] {
            let mut m: BTreeMap<i32, f64> = BTreeMap::new();
            for (idx, c) in self.bucket_list(positive) {
                *m.entry(((idx - 1) >> shift) + 1).or_insert(0.0) += c;
            }
            let list: Vec<(i32, f64)> = m.into_iter().collect();
            h.set_bucket_list(positive, &list);
        }
        h
    }

    /// The zero count the histogram would have with a zero bucket at least `t` wide,
    /// and the threshold that really takes (raised to a bucket bound when `t` falls
    /// inside a bucket).
    pub fn zero_count_for_larger_threshold(&self, mut t: f64) -> (f64, f64) {
        'again: loop {
            let mut count = self.zero_count;
            for positive in [true, false] {
                for (idx, c) in self.bucket_list(positive) {
                    let (l, u) = self.positive_bounds(idx);
                    if u <= t {
                        count += c;
                    } else {
                        if l < t {
                            t = u;
                            continue 'again;
                        }
                        break;
                    }
                }
            }
            return (count, t);
        }
    }

    /// Moves the buckets inside a zero bucket of width `t` into it.
    fn widen_zero_bucket(&mut self, t: f64) {
        let (count, t) = self.zero_count_for_larger_threshold(t);
        for positive in [true, false] {
            let list: Vec<(i32, f64)> = self
                .bucket_list(positive)
                .into_iter()
                .filter(|&(idx, _)| self.positive_bounds(idx).1 > t)
                .collect();
            self.set_bucket_list(positive, &list);
        }
        self.zero_count = count;
        self.zero_threshold = t;
    }

    /// `self + sign·other`. Schemas are reduced to the lower one, zero buckets widened
    /// to the wider one; custom buckets with different bounds are reconciled to the
    /// bounds both have (the second value says so). Exponential and custom buckets do
    /// not mix.
    pub fn combine(
        &self,
        other: &FloatHistogram,
        sign: f64,
    ) -> Result<(FloatHistogram, bool), HistogramError> {
        if self.uses_custom_buckets() != other.uses_custom_buckets() {
            return Err(HistogramError::IncompatibleSchema);
        }
        let hint = combine_hints(self.counter_reset_hint, other.counter_reset_hint);
        if self.uses_custom_buckets() {
            let (mut a, mut b) = (self.clone(), other.clone());
            let mut reconciled = false;
            if !bounds_match(&a.custom_values, &b.custom_values) {
                let common: Vec<f64> = a
                    .custom_values
                    .iter()
                    .copied()
                    .filter(|v| b.custom_values.iter().any(|w| w == v))
                    .collect();
                a = a.with_custom_bounds(&common);
                b = b.with_custom_bounds(&common);
                reconciled = true;
            }
            let mut m: BTreeMap<i32, f64> = a.bucket_list(true).into_iter().collect();
            for (idx, c) in b.bucket_list(true) {
                *m.entry(idx).or_insert(0.0) += sign * c;
            }
            let list: Vec<(i32, f64)> = m.into_iter().collect();
            a.set_bucket_list(true, &list);
            a.count += sign * b.count;
            a.sum += sign * b.sum;
            a.counter_reset_hint = hint;
            return Ok((a, reconciled));
        }
        let schema = self.schema.min(other.schema);
        let mut a = self.to_schema(schema);
        let mut b = other.to_schema(schema);
        // Widen both zero buckets until they agree (a bound can be crossed only so
        // often: the guard stops NaN thresholds from looping).
        let mut guard = 0;
        while a.zero_threshold != b.zero_threshold && guard < 64 {
            guard += 1;
            if a.zero_threshold < b.zero_threshold {
                a.widen_zero_bucket(b.zero_threshold);
            } else {
                b.widen_zero_bucket(a.zero_threshold);
            }
        }
        for positive in [true, false] {
            let mut m: BTreeMap<i32, f64> = a.bucket_list(positive).into_iter().collect();
            for (idx, c) in b.bucket_list(positive) {
                *m.entry(idx).or_insert(0.0) += sign * c;
            }
            let list: Vec<(i32, f64)> = m.into_iter().collect();
            a.set_bucket_list(positive, &list);
        }
        a.zero_count += sign * b.zero_count;
        a.count += sign * b.count;
        a.sum += sign * b.sum;
        a.counter_reset_hint = hint;
        Ok((a, false))
    }

    /// The same custom-bucket histogram with its buckets merged onto `bounds` (a
    /// subset of its own bounds).
    fn with_custom_bounds(&self, bounds: &[f64]) -> FloatHistogram {
        let mut m: BTreeMap<i32, f64> = BTreeMap::new();
        for (idx, c) in self.bucket_list(true) {
            let upper = self.positive_bounds(idx).1;
            let j = bounds.partition_point(|b| *b < upper) as i32;
            *m.entry(j).or_insert(0.0) += c;
        }
        let mut h = self.clone();
        h.custom_values = bounds.to_vec();
        let list: Vec<(i32, f64)> = m.into_iter().collect();
        h.set_bucket_list(true, &list);
        h
    }

    /// True when `self` (the later sample) shows a counter reset after `prev`
    /// (Prometheus' `DetectReset`).
    pub fn detect_reset(&self, prev: &FloatHistogram) -> bool {
        match self.counter_reset_hint {
            ResetHint::Reset => return true,
            ResetHint::NotReset => return false,
            _ => {}
        }
        if self.count < prev.count {
            return true;
        }
        if self.uses_custom_buckets() != prev.uses_custom_buckets() {
            return true;
        }
        if self.uses_custom_buckets() {
            if !bounds_match(&self.custom_values, &prev.custom_values) {
                // Different custom bounds: compare on the bounds both have.
                let common: Vec<f64> = self
                    .custom_values
                    .iter()
                    .copied()
                    .filter(|v| prev.custom_values.contains(v))
                    .collect();
                let (a, b) = (
                    self.with_custom_bounds(&common),
                    prev.with_custom_bounds(&common),
                );
                return a.detect_reset(&b);
            }
        } else {
            if self.schema > prev.schema {
                return true;
            }
            if self.zero_threshold < prev.zero_threshold {
                return true;
            }
        }
        let prev = prev.to_schema(self.schema);
        let (prev_zero, t) = if self.uses_custom_buckets() {
            (prev.zero_count, self.zero_threshold)
        } else {
            prev.zero_count_for_larger_threshold(self.zero_threshold)
        };
        if t != self.zero_threshold {
            return true;
        }
        if self.zero_count < prev_zero {
            return true;
        }
        for positive in [true, false] {
            let cur: BTreeMap<i32, f64> = self.bucket_list(positive).into_iter().collect();
            for (idx, c) in prev.bucket_list(positive) {
                if !self.uses_custom_buckets() && prev.positive_bounds(idx).1 <= t {
                    continue; // inside the zero bucket
                }
                if cur.get(&idx).copied().unwrap_or(0.0) < c {
                    return true;
                }
            }
        }
        false
    }

    /// True when both hold the same observations: equal schema, zero bucket, count,
    /// sum, custom bounds and non-empty buckets (the counter reset hint is not
    /// compared, as in Prometheus' `Equals`).
    pub fn equals(&self, other: &FloatHistogram) -> bool {
        let (mut a, mut b) = (self.compact(), other.compact());
        a.counter_reset_hint = ResetHint::Unknown;
        b.counter_reset_hint = ResetHint::Unknown;
        if !a.uses_custom_buckets() {
            a.custom_values.clear();
            b.custom_values.clear();
        }
        a == b
    }

    /// True when both have the same layout and counts (after dropping empty buckets),
    /// comparing floats with `eq`.
    pub fn same_as(&self, other: &FloatHistogram, eq: impl Fn(f64, f64) -> bool) -> bool {
        let (a, b) = (self.compact(), other.compact());
        if a.schema != b.schema
            || !eq(a.count, b.count)
            || !eq(a.sum, b.sum)
            || a.zero_threshold != b.zero_threshold
            || !eq(a.zero_count, b.zero_count)
        {
            return false;
        }
        if a.uses_custom_buckets() && !bounds_match(&a.custom_values, &b.custom_values) {
            return false;
        }
        for positive in [true, false] {
            let (x, y) = (a.bucket_list(positive), b.bucket_list(positive));
            if x.len() != y.len() || x.iter().zip(&y).any(|(p, q)| p.0 != q.0 || !eq(p.1, q.1)) {
                return false;
            }
        }
        true
    }

    /// Classic cumulative buckets `(upper bound, cumulative count)` of a custom-bucket
    /// histogram, ending with +Inf, for the classic quantile and fraction code.
    pub fn cumulative_custom_buckets(&self) -> Vec<(f64, f64)> {
        let list: BTreeMap<i32, f64> = self.bucket_list(true).into_iter().collect();
        let mut out = Vec::with_capacity(self.custom_values.len() + 1);
        let mut cum = 0.0;
        for (i, &ub) in self.custom_values.iter().enumerate() {
            cum += list.get(&(i as i32)).copied().unwrap_or(0.0);
            out.push((ub, cum));
        }
        let total: f64 = list.values().sum();
        out.push((f64::INFINITY, total));
        out
    }

    /// The stored form (WAL, checkpoint, chunks):
    ///
    /// ```text
    /// u8(reset hint) varint(schema) f64(zero threshold) num(zero count) num(count)
    /// f64(sum) side(positive) side(negative) uvarint(n) f64(custom value)*n
    /// side := uvarint(spans) (varint(offset) uvarint(length))* num(bucket)*
    /// num  := uvarint(2k) for a whole number k in [0, 2^52) | 0x01 f64   (f64 = u64 LE bits)
    /// ```
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.counter_reset_hint.as_u8());
        put_varint(out, self.schema as i64);
        out.extend_from_slice(&self.zero_threshold.to_bits().to_le_bytes());
        put_num(out, self.zero_count);
        put_num(out, self.count);
        out.extend_from_slice(&self.sum.to_bits().to_le_bytes());
        for (spans, buckets) in [
            (&self.positive_spans, &self.positive_buckets),
            (&self.negative_spans, &self.negative_buckets),
        ] {
            put_uvarint(out, spans.len() as u64);
            for s in spans.iter() {
                put_varint(out, s.offset as i64);
                put_uvarint(out, s.length as u64);
            }
            for b in buckets.iter() {
                put_num(out, *b);
            }
        }
        put_uvarint(out, self.custom_values.len() as u64);
        for v in &self.custom_values {
            out.extend_from_slice(&v.to_bits().to_le_bytes());
        }
    }

    /// Reads what [`FloatHistogram::encode`] wrote; `None` when malformed.
    pub fn decode(buf: &mut &[u8]) -> Option<FloatHistogram> {
        let hint = ResetHint::from_u8(*get_bytes(buf, 1)?.first()?);
        let schema = i32::try_from(get_varint(buf)?).ok()?;
        let zero_threshold = f64::from_bits(get_u64(buf)?);
        let zero_count = get_num(buf)?;
        let count = get_num(buf)?;
        let sum = f64::from_bits(get_u64(buf)?);
        let mut sides = Vec::with_capacity(2);
        for _ in 0..2 {
            let n = get_uvarint(buf)? as usize;
            if n > buf.len() {
                return None;
            }
            let mut spans = Vec::with_capacity(n);
            let mut total = 0usize;
            for _ in 0..n {
                let offset = i32::try_from(get_varint(buf)?).ok()?;
                let length = u32::try_from(get_uvarint(buf)?).ok()?;
                total = total.checked_add(length as usize)?;
                spans.push(Span { offset, length });
            }
            if total > buf.len() {
                return None;
            }
            let mut buckets = Vec::with_capacity(total);
            for _ in 0..total {
                buckets.push(get_num(buf)?);
            }
            sides.push((spans, buckets));
        }
        let n = get_uvarint(buf)? as usize;
        if n > buf.len() / 8 {
            return None;
        }
        let mut custom_values = Vec::with_capacity(n);
        for _ in 0..n {
            custom_values.push(f64::from_bits(get_u64(buf)?));
        }
        let (negative_spans, negative_buckets) = sides.pop()?;
        let (positive_spans, positive_buckets) = sides.pop()?;
        Some(FloatHistogram {
            counter_reset_hint: hint,
            schema,
            zero_threshold,
            zero_count,
            count,
            sum,
            positive_spans,
            positive_buckets,
            negative_spans,
            negative_buckets,
            custom_values,
        })
    }

    /// Converts a remote-write histogram (integer deltas or float counts).
    pub fn from_prompb(h: &calm_wire::prompb::Histogram) -> FloatHistogram {
        let conv = |spans: &[calm_wire::prompb::BucketSpan]| -> Vec<Span> {
            spans
                .iter()
                .map(|s| Span {
                    offset: s.offset,
                    length: s.length,
                })
                .collect()
        };
        FloatHistogram {
            counter_reset_hint: ResetHint::from_u8(u8::try_from(h.reset_hint).unwrap_or(0)),
            schema: h.schema,
            zero_threshold: h.zero_threshold,
            zero_count: h.zero_count(),
            count: h.count(),
            sum: h.sum,
            positive_spans: conv(&h.positive_spans),
            positive_buckets: h.absolute_counts(true),
            negative_spans: conv(&h.negative_spans),
            negative_buckets: h.absolute_counts(false),
            custom_values: h.custom_values.clone(),
        }
    }

    /// Checks what a writer sent: known schema, spans and buckets of equal size,
    /// ascending custom bounds. Returns what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if !(-4..=8).contains(&self.schema) && !self.uses_custom_buckets() {
            return Err(format!("histogram schema {} is not supported", self.schema));
        }
        for (what, spans, buckets) in [
            ("positive", &self.positive_spans, &self.positive_buckets),
            ("negative", &self.negative_spans, &self.negative_buckets),
        ] {
            let n: u64 = spans.iter().map(|s| s.length as u64).sum();
            if n != buckets.len() as u64 {
                return Err(format!(
                    "histogram {what} spans cover {n} buckets but {} bucket counts were sent",
                    buckets.len()
                ));
            }
        }
        for positive in [true, false] {
            let spans = if positive {
                &self.positive_spans
            } else {
                &self.negative_spans
            };
            // Absolute indexes stay far from i32's ends, so index arithmetic cannot
            // overflow (real schemas need fewer than 2^15 buckets a side).
            let mut idx: i64 = 0;
            for (i, s) in spans.iter().enumerate() {
                idx = if i == 0 {
                    s.offset as i64
                } else {
                    idx + s.offset as i64
                };
                if i > 0 && s.offset < 0 {
                    return Err("histogram spans must not overlap (negative offset)".into());
                }
                idx += s.length as i64;
                if idx.abs() > MAX_BUCKET_INDEX || (s.offset as i64).abs() > MAX_BUCKET_INDEX {
                    return Err(format!("histogram bucket index beyond ±{MAX_BUCKET_INDEX}"));
                }
            }
        }
        if self.uses_custom_buckets() {
            let first = self.positive_spans.first().map_or(0, |s| s.offset);
            let end: i64 = self
                .positive_spans
                .iter()
                .map(|s| s.offset as i64 + s.length as i64)
                .sum();
            if first < 0 || end > self.custom_values.len() as i64 + 1 {
                return Err("custom-bucket histogram has buckets outside its custom bounds".into());
            }
            if !self.negative_buckets.is_empty() {
                return Err("custom-bucket histogram must not have negative buckets".into());
            }
            if self
                .custom_values
                .windows(2)
                .any(|w| w[0].is_nan() || w[0] >= w[1])
            {
                return Err("histogram custom bucket bounds must be ascending".into());
            }
        }
        Ok(())
    }
}

fn put_num(out: &mut Vec<u8>, v: f64) {
    if v >= 0.0 && v < (1u64 << 52) as f64 && v.fract() == 0.0 && v.to_bits() >> 63 == 0 {
        put_uvarint(out, (v as u64) << 1);
    } else {
        out.push(1);
        out.extend_from_slice(&v.to_bits().to_le_bytes());
    }
}

fn get_num(buf: &mut &[u8]) -> Option<f64> {
    let u = get_uvarint(buf)?;
    if u & 1 == 0 {
        Some((u >> 1) as f64)
    } else {
        Some(f64::from_bits(get_u64(buf)?))
    }
}

/// True when two custom bound lists are equal.
pub fn bounds_match(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// The reset hint of a sum (Prometheus' rules in `FloatHistogram.Add`).
fn combine_hints(a: ResetHint, b: ResetHint) -> ResetHint {
    use ResetHint::*;
    match (a, b) {
        _ if a == b => a,
        (Gauge, _) | (_, Gauge) => Gauge,
        _ => Unknown,
    }
}

/// Encodes a histogram chunk: samples sorted by time.
///
/// ```text
/// sample 0:   varint(t)            histogram (see FloatHistogram::encode)
/// sample n:   varint(t − t_prev)   histogram
/// ```
pub fn encode_chunk(samples: &[(i64, std::sync::Arc<FloatHistogram>)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(samples.len() * 48);
    let mut prev = 0i64;
    for (i, (t, h)) in samples.iter().enumerate() {
        put_varint(&mut out, if i == 0 { *t } else { t.wrapping_sub(prev) });
        h.encode(&mut out);
        prev = *t;
    }
    out
}

/// Decodes `count` samples of a histogram chunk; stops early at malformed data.
pub fn decode_chunk(mut buf: &[u8], count: u16) -> Vec<(i64, std::sync::Arc<FloatHistogram>)> {
    let mut out = Vec::with_capacity(count as usize);
    let mut t = 0i64;
    for i in 0..count {
        let Some(d) = get_varint(&mut buf) else {
            break;
        };
        t = if i == 0 { d } else { t.wrapping_add(d) };
        let Some(h) = FloatHistogram::decode(&mut buf) else {
            break;
        };
        out.push((t, std::sync::Arc::new(h)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(schema: i32, buckets: &[(i32, f64)]) -> FloatHistogram {
        let mut h = FloatHistogram {
            schema,
            count: buckets.iter().map(|b| b.1).sum(),
            sum: 10.0,
            ..Default::default()
        };
        h.set_bucket_list(true, buckets);
        h
    }

    #[test]
    fn encode_round_trips() {
        let mut a = h(1, &[(0, 1.0), (1, 2.5), (5, 3.0)]);
        a.zero_threshold = 0.001;
        a.zero_count = 2.0;
        a.set_bucket_list(false, &[(-2, 4.0)]);
        a.counter_reset_hint = ResetHint::Gauge;
        let mut c = h(CUSTOM_BUCKETS_SCHEMA, &[(0, 1.0), (2, 7.0)]);
        c.custom_values = vec![0.1, 0.5, 1.0];
        for x in [a, c] {
            let mut buf = Vec::new();
            x.encode(&mut buf);
            let mut r: &[u8] = &buf;
            assert_eq!(FloatHistogram::decode(&mut r), Some(x));
            assert!(r.is_empty());
        }
    }

    #[test]
    fn add_reduces_schema_and_sub_detects_layout() {
        let a = h(1, &[(1, 1.0), (2, 1.0)]);
        let b = h(0, &[(1, 5.0)]);
        let (s, _) = a.combine(&b, 1.0).unwrap();
        assert_eq!(s.schema, 0);
        assert_eq!(s.bucket_list(true), vec![(1, 7.0)]);
        assert_eq!(s.count, 7.0);
    }

    #[test]
    fn custom_buckets_reconcile_to_common_bounds() {
        let mut a = h(CUSTOM_BUCKETS_SCHEMA, &[(0, 1.0), (1, 2.0), (2, 3.0)]);
        a.custom_values = vec![1.0, 2.0];
        let mut b = h(CUSTOM_BUCKETS_SCHEMA, &[(0, 1.0), (1, 1.0)]);
        b.custom_values = vec![2.0];
        let (s, reconciled) = a.combine(&b, 1.0).unwrap();
        assert!(reconciled);
        assert_eq!(s.custom_values, vec![2.0]);
        assert_eq!(s.bucket_list(true), vec![(0, 4.0), (1, 4.0)]);
        assert!(a.combine(&h(0, &[]), 1.0).is_err());
    }

    #[test]
    fn resets_are_detected_by_bucket() {
        let a = h(0, &[(1, 2.0), (2, 2.0)]);
        let mut b = h(0, &[(1, 1.0), (2, 4.0)]);
        assert!(b.detect_reset(&a));
        b.counter_reset_hint = ResetHint::NotReset;
        assert!(!b.detect_reset(&a));
        assert!(!h(0, &[(1, 2.0), (2, 3.0)]).detect_reset(&a));
    }

    #[test]
    fn bounds_of_standard_schemas() {
        assert_eq!(exp_upper_bound(1, 0), 2.0);
        assert_eq!(exp_upper_bound(0, 0), 1.0);
        assert_eq!(exp_upper_bound(-1, 0), 0.5);
        assert_eq!(exp_upper_bound(1, -1), 4.0);
        assert!((exp_upper_bound(1, 1) - 2f64.sqrt()).abs() < 1e-15);
        assert_eq!(exp_upper_bound(2, 1), 2.0);
    }
}
