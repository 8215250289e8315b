//! Histogram functions: `histogram_quantile(s)`, `histogram_fraction` on native
//! histograms and classic `le` buckets, and `histogram_count/sum/avg/stddev/stdvar` on
//! native histograms.

use super::{scalar_arg, string_arg, vector_arg};
use crate::promql::eval::Evaluator;
use crate::promql::value::{Hist, Labels, Sample, Value, Vector};
use crate::promql::Result;
use promql_parser::parser::Call;
use std::collections::{HashMap, HashSet};

/// The label sets (without name and `le`) that have both a native histogram and
/// classic buckets: Prometheus gives no result for them and warns about the mix.
fn mixed_keys(native: &[(Sample, Hist)], classic: &Vector) -> HashSet<Labels> {
    let native: HashSet<Labels> = native
        .iter()
        .map(|(s, _)| s.labels.without_name())
        .collect();
    classic
        .iter()
        .filter(|s| s.labels.get("le").is_some())
        .map(|s| {
            let mut l = s.labels.without_name();
            l.del("le");
            l
        })
        .filter(|l| native.contains(l))
        .collect()
}

/// `v` without the results for `mixed` label sets (`extra` is a label the function
/// added, left out of the comparison).
fn drop_mixed(v: Vector, mixed: &HashSet<Labels>, extra: Option<&str>) -> Vector {
    if mixed.is_empty() {
        return v;
    }
    v.into_iter()
        .filter(|s| {
            let mut l = s.labels.without_name();
            if let Some(e) = extra {
                l.del(e);
            }
            !mixed.contains(&l)
        })
        .collect()
}

/// Splits a vector into its native histogram samples (as float samples at `t` with
/// the name to drop, and their histograms) and the float samples.
fn split_native(v: Vector, t: i64) -> (Vec<(Sample, Hist)>, Vector) {
    let mut native = Vec::new();
    let mut floats = Vec::new();
    for mut s in v {
        match s.h.take() {
            Some(h) => {
                s.t = t;
                s.v = 0.0;
                s.drop_name = true;
                native.push((s, h));
            }
            None => floats.push(s),
        }
    }
    (native, floats)
}

/// Parses a bucket bound as Go's `strconv.ParseFloat` would.
fn parse_le(s: &str) -> Option<f64> {
    let t = s.trim();
    match t.to_ascii_lowercase().as_str() {
        "+inf" | "inf" | "+infinity" | "infinity" => return Some(f64::INFINITY),
        "-inf" | "-infinity" => return Some(f64::NEG_INFINITY),
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    if t != s {
        return None;
    }
    s.parse::<f64>().ok()
}

/// Groups classic bucket series by their labels without `le`.
fn bucket_groups(v: Vector) -> Vec<(Labels, Vec<(f64, f64)>)> {
    let mut groups: Vec<(Labels, Vec<(f64, f64)>)> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for s in v {
        let Some(le) = s.labels.get("le").and_then(parse_le) else {
            continue;
        };
        let mut l = s.labels.clone();
        l.del("le");
        let i = match index.get(&l) {
            Some(&i) => i,
            None => {
                index.insert(l.clone(), groups.len());
                groups.push((l, Vec::new()));
                groups.len() - 1
            }
        };
        groups[i].1.push((le, s.v));
    }
    groups
}

fn histogram_quantile(q: f64, v: Vector, t: i64) -> Vector {
    bucket_groups(v)
        .into_iter()
        .map(|(labels, mut b)| Sample {
            labels,
            t,
            v: bucket_quantile(q, &mut b),
            drop_name: true,
            h: None,
        })
        .collect()
}

/// Sorts, merges equal bounds and repairs non-monotonic counts.
fn prepare_buckets(b: &mut Vec<(f64, f64)>) {
    b.sort_by(|x, y| x.0.partial_cmp(&y.0).unwrap_or(std::cmp::Ordering::Equal));
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(b.len());
    for &(ub, c) in b.iter() {
        match merged.last_mut() {
            Some(last) if last.0 == ub => last.1 += c,
            _ => merged.push((ub, c)),
        }
    }
    *b = merged;
    if b.is_empty() {
        return;
    }
    let mut prev = b[0].1;
    for item in b.iter_mut().skip(1) {
        let curr = item.1;
        if curr == prev {
            continue;
        }
        if almost_equal(prev, curr, 1e-12) || curr < prev {
            item.1 = prev;
            continue;
        }
        prev = curr;
    }
}

fn almost_equal(a: f64, b: f64, eps: f64) -> bool {
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < f64::MIN_POSITIVE {
        return diff < eps * f64::MIN_POSITIVE;
    }
    diff / abs_sum.min(f64::MAX) < eps
}

/// The quantile of classic buckets `(upper bound, cumulative count)`.
pub fn bucket_quantile(q: f64, b: &mut Vec<(f64, f64)>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    b.sort_by(|x, y| x.0.partial_cmp(&y.0).unwrap_or(std::cmp::Ordering::Equal));
    match b.last() {
        Some(last) if last.0 == f64::INFINITY => {}
        _ => return f64::NAN,
    }
    prepare_buckets(b);
    if b.len() < 2 {
        return f64::NAN;
    }
    let observations = b[b.len() - 1].1;
    if observations == 0.0 || observations.is_nan() {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let n = b.len() - 1;
    let idx = b[..n].partition_point(|x| x.1 < rank);
    if idx == n {
        return b[n - 1].0;
    }
    if idx == 0 && b[0].0 <= 0.0 {
        return b[0].0;
    }
    let mut start = 0.0;
    let end = b[idx].0;
    let mut count = b[idx].1;
    if idx > 0 {
        start = b[idx - 1].0;
        count -= b[idx - 1].1;
        rank -= b[idx - 1].1;
    }
    start + (end - start) * (rank / count)
}

fn histogram_fraction(lo: f64, hi: f64, v: Vector, t: i64) -> Vector {
    bucket_groups(v)
        .into_iter()
        .filter_map(|(labels, mut b)| {
            b.sort_by(|x, y| x.0.partial_cmp(&y.0).unwrap_or(std::cmp::Ordering::Equal));
            if b.last().map(|l| l.0) != Some(f64::INFINITY) {
                return None;
            }
            prepare_buckets(&mut b);
            Some(Sample {
                labels,
                t,
                v: bucket_fraction(lo, hi, &b),
                drop_name: true,
                h: None,
            })
        })
        .collect()
}

/// The fraction of observations in `[lo, hi]` of classic buckets (upper bound,
/// cumulative count), interpolating linearly inside finite buckets. The lowest
/// bucket starts at 0 when its upper bound is positive; inside an infinitely wide
/// bucket a bound moves to the bucket's finite edge.
pub fn bucket_fraction(lo: f64, hi: f64, b: &[(f64, f64)]) -> f64 {
    let total = b.last().map(|l| l.1).unwrap_or(0.0);
    if total == 0.0 || lo.is_nan() || hi.is_nan() {
        return f64::NAN;
    }
    if lo >= hi {
        return 0.0;
    }
    let (mut rank, mut lo_rank, mut hi_rank) = (0.0, 0.0, 0.0);
    let (mut lo_set, mut hi_set) = (false, false);
    let mut prev_ub = f64::NEG_INFINITY;
    let mut prev_c = 0.0;
    for (i, &(ub, cum)) in b.iter().enumerate() {
        let lower = if i == 0 {
            if ub > 0.0 {
                0.0
            } else {
                f64::NEG_INFINITY
            }
        } else {
            prev_ub
        };
        let upper = ub;
        let count = cum - prev_c;
        prev_ub = ub;
        prev_c = cum;
        if !lo_set && lower >= lo {
            lo_rank = rank;
            lo_set = true;
        }
        if !hi_set && lower >= hi {
            hi_rank = rank;
            hi_set = true;
        }
        if lo_set && hi_set {
            break;
        }
        let finite = lower.is_finite() && upper.is_finite();
        if !lo_set && lower < lo && upper > lo {
            lo_rank = if finite {
                rank + count * (lo - lower) / (upper - lower)
            } else if upper.is_finite() {
                rank + count
            } else {
                rank
            };
            lo_set = true;
        }
        if !hi_set && lower < hi && upper > hi {
            hi_rank = if finite {
                rank + count * (hi - lower) / (upper - lower)
            } else if upper.is_finite() {
                rank + count
            } else {
                rank
            };
            hi_set = true;
        }
        if lo_set && hi_set {
            break;
        }
        rank += count;
    }
    if !lo_set || lo_rank > total {
        lo_rank = total;
    }
    if !hi_set || hi_rank > total {
        hi_rank = total;
    }
    (hi_rank - lo_rank) / total
}

/// `histogram_quantile(q, v)`.
pub(super) fn quantile_fn(ev: &Evaluator<'_>, c: &Call, t: i64) -> Result<Value> {
    let q = scalar_arg(ev, c, 0, t)?;
    let v = vector_arg(ev, c, 1, t)?;
    let (native, classic) = split_native(v, t);
    let mixed = mixed_keys(&native, &classic);
    let mut out: Vector = native
        .into_iter()
        .map(|(mut s, h)| {
            s.v = crate::promql::histograms::quantile(q, &h);
            s
        })
        .collect();
    out.extend(histogram_quantile(q, classic, t));
    Ok(Value::Vector(drop_mixed(out, &mixed, None)))
}

/// `histogram_quantiles(v, label, q…)`.
pub(super) fn quantiles(ev: &Evaluator<'_>, c: &Call, t: i64) -> Result<Value> {
    let v = vector_arg(ev, c, 0, t)?;
    let label = string_arg(ev, c, 1, t)?;
    let mut qs = Vec::new();
    for i in 2..c.args.args.len() {
        qs.push(scalar_arg(ev, c, i, t)?);
    }
    let q_label = |q: f64| {
        let mut qs = crate::promql::value::format_float(q);
        if q.is_finite() && !qs.contains('.') && !qs.contains('e') {
            qs.push_str(".0");
        }
        qs
    };
    let mut out = Vec::new();
    let (native, classic) = split_native(v, t);
    let mixed = mixed_keys(&native, &classic);
    for (s, h) in native {
        for &q in &qs {
            let mut l = s.labels.clone();
            l.set(&label, &q_label(q));
            out.push(Sample {
                labels: l,
                t,
                v: crate::promql::histograms::quantile(q, &h),
                h: None,
                drop_name: true,
            });
        }
    }
    for (labels, b) in bucket_groups(classic) {
        for &q in &qs {
            let mut l = labels.clone();
            l.set(&label, &q_label(q));
            out.push(Sample {
                labels: l,
                t,
                v: bucket_quantile(q, &mut b.clone()),
                drop_name: true,
                h: None,
            });
        }
    }
    Ok(Value::Vector(drop_mixed(out, &mixed, Some(&label))))
}

/// `histogram_fraction(lo, hi, v)`.
pub(super) fn fraction(ev: &Evaluator<'_>, c: &Call, t: i64) -> Result<Value> {
    let lo = scalar_arg(ev, c, 0, t)?;
    let hi = scalar_arg(ev, c, 1, t)?;
    let v = vector_arg(ev, c, 2, t)?;
    let (native, classic) = split_native(v, t);
    let mixed = mixed_keys(&native, &classic);
    let mut out: Vector = native
        .into_iter()
        .map(|(mut s, h)| {
            s.v = crate::promql::histograms::fraction(lo, hi, &h);
            s
        })
        .collect();
    out.extend(histogram_fraction(lo, hi, classic, t));
    Ok(Value::Vector(drop_mixed(out, &mixed, None)))
}

/// `histogram_count`, `histogram_sum`, `histogram_avg`, `histogram_stddev`,
/// `histogram_stdvar` (native histograms only; float samples are left out).
pub(super) fn stat(ev: &Evaluator<'_>, c: &Call, t: i64) -> Result<Value> {
    let name = c.func.name;
    let (native, _) = split_native(vector_arg(ev, c, 0, t)?, t);
    let out = native
        .into_iter()
        .map(|(mut s, h)| {
            s.v = match name {
                "histogram_count" => h.count,
                "histogram_sum" => h.sum,
                "histogram_avg" => h.sum / h.count,
                "histogram_stddev" => crate::promql::histograms::stdvar(&h).sqrt(),
                _ => crate::promql::histograms::stdvar(&h),
            };
            s
        })
        .collect();
    Ok(Value::Vector(out))
}
