//! PromQL functions: range-vector functions (`rate`, `*_over_time`, ...), instant
//! vector math and time functions, label manipulation, `histogram_quantile` on
//! classic buckets, `absent`, `sort*`, `scalar`, `vector`, `timestamp`, ...

use super::eval::Evaluator;
use super::selectors::{self, at_ms, offset_ms};
use super::value::{Hist, Labels, Matrix, Sample, Value, Vector, METRIC_NAME};
use super::{Error, Result};
use chrono::{Datelike, Timelike};
use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{Call, Expr, MatrixSelector};
use std::collections::{HashMap, HashSet};

/// Kahan–Neumaier summation step: adds `inc` to `sum` with compensation `c`.
pub fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// Go's `math.Max`: NaN wins.
pub fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// Go's `math.Min`: NaN wins.
pub fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

/// The `q` quantile of `values` (linear interpolation), as Prometheus computes it.
pub fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

fn unwrap_paren(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unwrap_paren(&p.expr),
        other => other,
    }
}

fn arg(c: &Call, i: usize) -> Result<&Expr> {
    c.args
        .args
        .get(i)
        .map(|b| b.as_ref())
        .ok_or_else(|| Error::BadData(format!("missing argument {} to {}", i + 1, c.func.name)))
}

fn scalar_arg(ev: &Evaluator<'_>, c: &Call, i: usize, t: i64) -> Result<f64> {
    match ev.eval(arg(c, i)?, t)? {
        Value::Scalar(v) => Ok(v),
        other => Err(Error::exec(format!(
            "expected scalar argument {} to {}, got {}",
            i + 1,
            c.func.name,
            other.type_name()
        ))),
    }
}

fn string_arg(ev: &Evaluator<'_>, c: &Call, i: usize, t: i64) -> Result<String> {
    match ev.eval(arg(c, i)?, t)? {
        Value::String(s) => Ok(s),
        other => Err(Error::exec(format!(
            "expected string argument {} to {}, got {}",
            i + 1,
            c.func.name,
            other.type_name()
        ))),
    }
}

fn vector_arg(ev: &Evaluator<'_>, c: &Call, i: usize, t: i64) -> Result<Vector> {
    match ev.eval(arg(c, i)?, t)? {
        Value::Vector(v) => Ok(v),
        other => Err(Error::exec(format!(
            "expected instant vector argument {} to {}, got {}",
            i + 1,
            c.func.name,
            other.type_name()
        ))),
    }
}

fn matrix_arg(ev: &Evaluator<'_>, c: &Call, i: usize, t: i64) -> Result<(Matrix, (i64, i64, i64))> {
    let e = arg(c, i)?;
    let m = match ev.eval(e, t)? {
        Value::Matrix(m) => m,
        other => {
            return Err(Error::exec(format!(
                "expected range vector argument {} to {}, got {}",
                i + 1,
                c.func.name,
                other.type_name()
            )))
        }
    };
    let w = ev.window(e, t).unwrap_or((t, t, 0));
    Ok((m, w))
}

fn map_vector(v: Vector, t: i64, f: impl Fn(f64) -> f64) -> Value {
    // Float functions leave native histograms out (Prometheus does the same).
    Value::Vector(
        v.into_iter()
            .filter(|s| s.h.is_none())
            .map(|s| Sample {
                v: f(s.v),
                t,
                drop_name: true,
                h: None,
                labels: s.labels,
            })
            .collect(),
    )
}

/// Evaluates a function call at time `t`.
pub fn eval(ev: &Evaluator<'_>, c: &Call, t: i64) -> Result<Value> {
    let name = c.func.name;
    let secs = |ms: i64| ms as f64 / 1000.0;
    match name {
        "time" => return Ok(Value::Scalar(secs(t))),
        "pi" => return Ok(Value::Scalar(std::f64::consts::PI)),
        "start" => return Ok(Value::Scalar(secs(ev.start))),
        "end" => return Ok(Value::Scalar(secs(ev.end))),
        "step" => return Ok(Value::Scalar(secs(ev.step))),
        "range" => return Ok(Value::Scalar(secs(ev.end - ev.start))),
        "min_of" | "max_of" => {
            let a = scalar_arg(ev, c, 0, t)?;
            let b = scalar_arg(ev, c, 1, t)?;
            return Ok(Value::Scalar(if name == "min_of" {
                go_min(a, b)
            } else {
                go_max(a, b)
            }));
        }
        "vector" => {
            let v = scalar_arg(ev, c, 0, t)?;
            return Ok(Value::Vector(vec![Sample {
                labels: Labels::default(),
                t,
                v,
                drop_name: false,
                h: None,
            }]));
        }
        "scalar" => {
            let v = vector_arg(ev, c, 0, t)?;
            // Histograms are left out: one float sample gives its value.
            let mut floats = v.iter().filter(|s| s.h.is_none());
            return Ok(Value::Scalar(match (floats.next(), floats.next()) {
                (Some(s), None) => s.v,
                _ => f64::NAN,
            }));
        }
        "timestamp" => {
            let a = unwrap_paren(arg(c, 0)?);
            let v = match a {
                Expr::VectorSelector(vs) => {
                    let base = at_ms(&vs.at, ev.start, ev.end)
                        .unwrap_or(t)
                        .saturating_sub(offset_ms(&vs.offset));
                    selectors::instant(ev.data.get(vs), base, ev.lookback)
                }
                _ => vector_arg(ev, c, 0, t)?
                    .into_iter()
                    .map(|mut s| {
                        s.t = t;
                        s
                    })
                    .collect(),
            };
            return Ok(Value::Vector(
                v.into_iter()
                    .map(|s| Sample {
                        v: secs(s.t),
                        t,
                        drop_name: true,
                        h: None,
                        labels: s.labels,
                    })
                    .collect(),
            ));
        }
        "absent" => {
            let v = vector_arg(ev, c, 0, t)?;
            if !v.is_empty() {
                return Ok(Value::Vector(Vec::new()));
            }
            return Ok(Value::Vector(vec![Sample {
                labels: absent_labels(arg(c, 0)?),
                t,
                v: 1.0,
                drop_name: false,
                h: None,
            }]));
        }
        "absent_over_time" => {
            let (m, _) = matrix_arg(ev, c, 0, t)?;
            if m.iter()
                .any(|s| !s.points.is_empty() || !s.hpoints.is_empty())
            {
                return Ok(Value::Vector(Vec::new()));
            }
            return Ok(Value::Vector(vec![Sample {
                labels: absent_labels(arg(c, 0)?),
                t,
                v: 1.0,
                drop_name: false,
                h: None,
            }]));
        }
        "label_replace" => return label_replace(ev, c, t),
        "label_join" => return label_join(ev, c, t),
        "sort" | "sort_desc" => {
            // Sorting is by float value: native histograms are left out.
            let mut v: Vector = vector_arg(ev, c, 0, t)?
                .into_iter()
                .filter(|s| s.h.is_none())
                .collect();
            if name == "sort" {
                v.sort_by(|a, b| super::aggregations::cmp_asc_nan_last(a.v, b.v));
            } else {
                v.sort_by(|a, b| super::aggregations::cmp_desc_nan_last(a.v, b.v));
            }
            for s in &mut v {
                s.t = t;
            }
            return Ok(Value::Vector(v));
        }
        "sort_by_label" | "sort_by_label_desc" => {
            let mut v = vector_arg(ev, c, 0, t)?;
            let mut names = Vec::new();
            for i in 1..c.args.args.len() {
                names.push(string_arg(ev, c, i, t)?);
            }
            v.sort_by(|a, b| {
                for n in &names {
                    let (x, y) = (a.labels.get(n).unwrap_or(""), b.labels.get(n).unwrap_or(""));
                    let o = natural_cmp(x, y);
                    if o != std::cmp::Ordering::Equal {
                        return if name == "sort_by_label" {
                            o
                        } else {
                            o.reverse()
                        };
                    }
                }
                let o = a.labels.cmp(&b.labels);
                if name == "sort_by_label" {
                    o
                } else {
                    o.reverse()
                }
            });
            for s in &mut v {
                s.t = t;
            }
            return Ok(Value::Vector(v));
        }
        "histogram_quantile" => {
            let q = scalar_arg(ev, c, 0, t)?;
            let v = vector_arg(ev, c, 1, t)?;
            let (native, classic) = split_native(v, t);
            let mixed = mixed_keys(&native, &classic);
            let mut out: Vector = native
                .into_iter()
                .map(|(mut s, h)| {
                    s.v = super::histograms::quantile(q, &h);
                    s
                })
                .collect();
            out.extend(histogram_quantile(q, classic, t));
            return Ok(Value::Vector(drop_mixed(out, &mixed, None)));
        }
        "histogram_quantiles" => {
            let v = vector_arg(ev, c, 0, t)?;
            let label = string_arg(ev, c, 1, t)?;
            let mut qs = Vec::new();
            for i in 2..c.args.args.len() {
                qs.push(scalar_arg(ev, c, i, t)?);
            }
            let q_label = |q: f64| {
                let mut qs = super::value::format_float(q);
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
                        v: super::histograms::quantile(q, &h),
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
            return Ok(Value::Vector(drop_mixed(out, &mixed, Some(&label))));
        }
        "histogram_fraction" => {
            let lo = scalar_arg(ev, c, 0, t)?;
            let hi = scalar_arg(ev, c, 1, t)?;
            let v = vector_arg(ev, c, 2, t)?;
            let (native, classic) = split_native(v, t);
            let mixed = mixed_keys(&native, &classic);
            let mut out: Vector = native
                .into_iter()
                .map(|(mut s, h)| {
                    s.v = super::histograms::fraction(lo, hi, &h);
                    s
                })
                .collect();
            out.extend(histogram_fraction(lo, hi, classic, t));
            return Ok(Value::Vector(drop_mixed(out, &mixed, None)));
        }
        "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_stddev"
        | "histogram_stdvar" => {
            // Native histograms only; float samples are left out.
            let (native, _) = split_native(vector_arg(ev, c, 0, t)?, t);
            let out = native
                .into_iter()
                .map(|(mut s, h)| {
                    s.v = match name {
                        "histogram_count" => h.count,
                        "histogram_sum" => h.sum,
                        "histogram_avg" => h.sum / h.count,
                        "histogram_stddev" => super::histograms::stdvar(&h).sqrt(),
                        _ => super::histograms::stdvar(&h),
                    };
                    s
                })
                .collect();
            return Ok(Value::Vector(out));
        }
        "clamp" => {
            let v = vector_arg(ev, c, 0, t)?;
            let lo = scalar_arg(ev, c, 1, t)?;
            let hi = scalar_arg(ev, c, 2, t)?;
            if hi < lo {
                return Ok(Value::Vector(Vec::new()));
            }
            return Ok(map_vector(v, t, |x| go_min(go_max(x, lo), hi)));
        }
        "clamp_min" => {
            let v = vector_arg(ev, c, 0, t)?;
            let lo = scalar_arg(ev, c, 1, t)?;
            return Ok(map_vector(v, t, |x| go_max(x, lo)));
        }
        "clamp_max" => {
            let v = vector_arg(ev, c, 0, t)?;
            let hi = scalar_arg(ev, c, 1, t)?;
            return Ok(map_vector(v, t, |x| go_min(x, hi)));
        }
        "round" => {
            let v = vector_arg(ev, c, 0, t)?;
            let to = if c.args.args.len() > 1 {
                scalar_arg(ev, c, 1, t)?
            } else {
                1.0
            };
            let inv = 1.0 / to;
            return Ok(map_vector(v, t, |x| (x * inv + 0.5).floor() / inv));
        }
        "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month" | "hour" | "minute"
        | "month" | "year" => {
            let v = if c.args.args.is_empty() {
                vec![Sample {
                    labels: Labels::default(),
                    t,
                    v: secs(t),
                    drop_name: false,
                    h: None,
                }]
            } else {
                vector_arg(ev, c, 0, t)?
            };
            return Ok(Value::Vector(
                v.into_iter()
                    .filter_map(|s| {
                        if s.h.is_some() {
                            return None;
                        }
                        let d = chrono::DateTime::from_timestamp(s.v as i64, 0)?;
                        let x = match name {
                            "day_of_month" => d.day() as f64,
                            "day_of_week" => d.weekday().num_days_from_sunday() as f64,
                            "day_of_year" => d.ordinal() as f64,
                            "days_in_month" => days_in_month(d.year(), d.month()) as f64,
                            "hour" => d.hour() as f64,
                            "minute" => d.minute() as f64,
                            "month" => d.month() as f64,
                            _ => d.year() as f64,
                        };
                        Some(Sample {
                            v: x,
                            t,
                            drop_name: true,
                            h: None,
                            labels: s.labels,
                        })
                    })
                    .collect(),
            ));
        }
        _ => {}
    }
    if let Some(f) = math_fn(name) {
        let v = vector_arg(ev, c, 0, t)?;
        return Ok(map_vector(v, t, f));
    }
    range_fn(ev, c, t)
}

fn math_fn(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "sqrt" => f64::sqrt,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sgn" => |x: f64| {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                x
            }
        },
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "asin" => f64::asin,
        "acos" => f64::acos,
        "atan" => f64::atan,
        "sinh" => f64::sinh,
        "cosh" => f64::cosh,
        "tanh" => f64::tanh,
        "asinh" => f64::asinh,
        "acosh" => f64::acosh,
        "atanh" => f64::atanh,
        "deg" => |x: f64| x * 180.0 / std::f64::consts::PI,
        "rad" => |x: f64| x * std::f64::consts::PI / 180.0,
        _ => return None,
    })
}

fn days_in_month(y: i32, m: u32) -> u32 {
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    match (
        chrono::NaiveDate::from_ymd_opt(ny, nm, 1),
        chrono::NaiveDate::from_ymd_opt(y, m, 1),
    ) {
        (Some(a), Some(b)) => (a - b).num_days() as u32,
        _ => 30,
    }
}

/// Compares strings with runs of digits compared as numbers.
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i].is_ascii_digit() && b[j].is_ascii_digit() {
            let si = i;
            while i < a.len() && a[i].is_ascii_digit() {
                i += 1;
            }
            let sj = j;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            let na = std::str::from_utf8(&a[si..i])
                .unwrap_or("")
                .trim_start_matches('0');
            let nb = std::str::from_utf8(&b[sj..j])
                .unwrap_or("")
                .trim_start_matches('0');
            let o = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
            if o != Ordering::Equal {
                return o;
            }
        } else {
            if a[i] != b[j] {
                return a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
    }
    (a.len() - i).cmp(&(b.len() - j))
}

/// Labels `absent`/`absent_over_time` give their result: the equality matchers.
fn absent_labels(e: &Expr) -> Labels {
    let vs = match e {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Labels::default(),
    };
    let mut l = Labels::default();
    let mut has: HashSet<&str> = HashSet::new();
    for m in &vs.matchers.matchers {
        if m.name == METRIC_NAME {
            continue;
        }
        if matches!(m.op, PMatchOp::Equal) && !has.contains(m.name.as_str()) {
            l.set(&m.name, &m.value);
            has.insert(&m.name);
        } else {
            l.del(&m.name);
        }
    }
    l
}

fn compile_anchored(re: &str, func: &str) -> Result<regex::Regex> {
    regex::Regex::new(&format!("^(?s:{re})$"))
        .map_err(|e| Error::exec(format!("invalid regular expression in {func}(): {re}: {e}")))
}

fn check_label_name(n: &str, func: &str) -> Result<()> {
    if n.is_empty() {
        return Err(Error::exec(format!(
            "invalid destination label name in {func}(): {n}"
        )));
    }
    Ok(())
}

fn label_replace(ev: &Evaluator<'_>, c: &Call, t: i64) -> Result<Value> {
    let v = vector_arg(ev, c, 0, t)?;
    let dst = string_arg(ev, c, 1, t)?;
    let repl = string_arg(ev, c, 2, t)?;
    let src = string_arg(ev, c, 3, t)?;
    let re_s = string_arg(ev, c, 4, t)?;
    let re = compile_anchored(&re_s, "label_replace")?;
    check_label_name(&dst, "label_replace")?;
    let mut out = Vec::with_capacity(v.len());
    for mut s in v {
        let sv = s.labels.get(&src).unwrap_or("").to_string();
        if let Some(caps) = re.captures(&sv) {
            let mut res = String::new();
            caps.expand(&repl, &mut res);
            s.labels.set(&dst, &res);
            if dst == METRIC_NAME {
                s.drop_name = false;
            }
        }
        s.t = t;
        out.push(s);
    }
    Ok(Value::Vector(out))
}

fn label_join(ev: &Evaluator<'_>, c: &Call, t: i64) -> Result<Value> {
    let v = vector_arg(ev, c, 0, t)?;
    let dst = string_arg(ev, c, 1, t)?;
    let sep = string_arg(ev, c, 2, t)?;
    let mut srcs = Vec::new();
    for i in 3..c.args.args.len() {
        srcs.push(string_arg(ev, c, i, t)?);
    }
    check_label_name(&dst, "label_join")?;
    let mut out = Vec::with_capacity(v.len());
    for mut s in v {
        let joined: Vec<&str> = srcs.iter().map(|n| s.labels.get(n).unwrap_or("")).collect();
        let joined = joined.join(&sep);
        s.labels.set(&dst, &joined);
        if dst == METRIC_NAME {
            s.drop_name = false;
        }
        s.t = t;
        out.push(s);
    }
    Ok(Value::Vector(out))
}

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

fn linear_regression(points: &[(i64, f64)], intercept_t: i64) -> (f64, f64) {
    let mut n = 0.0;
    let (mut sx, mut cx, mut sy, mut cy, mut sxy, mut cxy, mut sx2, mut cx2) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    let init_y = points[0].1;
    let mut const_y = true;
    for (i, &(pt, pv)) in points.iter().enumerate() {
        if const_y && i > 0 && pv != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (pt - intercept_t) as f64 / 1e3;
        (sx, cx) = kahan_inc(x, sx, cx);
        (sy, cy) = kahan_inc(pv, sy, cy);
        (sxy, cxy) = kahan_inc(x * pv, sxy, cxy);
        (sx2, cx2) = kahan_inc(x * x, sx2, cx2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    sx += cx;
    sy += cy;
    sxy += cxy;
    sx2 += cx2;
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    let intercept = sy / n - slope * sx / n;
    (slope, intercept)
}

fn extrapolated_rate(
    p: &[(i64, f64)],
    w: (i64, i64, i64),
    counter: bool,
    rate: bool,
) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let n1 = p.len() - 1;
    let mut result = p[n1].1 - p[0].1;
    // Most windows of a counter hold no reset: finding that out needs no chain of
    // additions (the compiler vectorises the comparisons), summing the resets does.
    if counter && p.windows(2).fold(false, |any, w| any | (w[1].1 < w[0].1)) {
        let mut prev = p[0].1;
        for &(_, v) in &p[1..] {
            if v < prev {
                result += prev;
            }
            prev = v;
        }
    }
    let factor = extrapolation_factor(p[0].0, p[n1].0, n1, w, counter, rate, result, p[0].1);
    Some(result * factor)
}

/// Prometheus' extrapolation of an increase seen between the first and last sample
/// (`first_t`, `last_t`, `n1` intervals apart) to the window `w`; `result` and
/// `first_v` (value or histogram count) limit the extrapolation of counters to zero.
#[allow(clippy::too_many_arguments)]
fn extrapolation_factor(
    first_t: i64,
    last_t: i64,
    n1: usize,
    w: (i64, i64, i64),
    counter: bool,
    rate: bool,
    result: f64,
    first_v: f64,
) -> f64 {
    let (range_start, range_end, range) = w;
    let mut to_start = (first_t - range_start) as f64 / 1000.0;
    let mut to_end = (range_end - last_t) as f64 / 1000.0;
    let sampled = (last_t - first_t) as f64 / 1000.0;
    let avg = sampled / n1 as f64;
    let threshold = avg * 1.1;
    let mut extrapolate_to = sampled;
    if to_start >= threshold {
        to_start = avg / 2.0;
    }
    if counter && result > 0.0 && first_v >= 0.0 {
        let to_zero = sampled * (first_v / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    extrapolate_to += to_start;
    if to_end >= threshold {
        to_end = avg / 2.0;
    }
    extrapolate_to += to_end;
    let mut factor = extrapolate_to / sampled;
    if rate {
        factor /= range as f64 / 1000.0;
    }
    factor
}

/// One sample of a series whose floats and histograms are merged by time.
#[derive(Clone)]
enum Point<'a> {
    F(i64, f64),
    H(i64, &'a Hist),
}

impl Point<'_> {
    fn t(&self) -> i64 {
        match self {
            Point::F(t, _) | Point::H(t, _) => *t,
        }
    }
}

fn merged<'a>(points: &[(i64, f64)], hpoints: &'a [(i64, Hist)]) -> Vec<Point<'a>> {
    let mut out: Vec<Point<'a>> = points
        .iter()
        .map(|p| Point::F(p.0, p.1))
        .chain(hpoints.iter().map(|p| Point::H(p.0, &p.1)))
        .collect();
    out.sort_by_key(|p| p.t());
    out
}

/// Range functions over a series holding native histograms (maybe also floats).
/// `None`: the function reads floats only (histograms are left out); `Some(None)`: no
/// result for this series; `Some(Some((value, histogram)))`: the result.
#[allow(clippy::type_complexity)]
fn histogram_range(
    name: &str,
    points: &[(i64, f64)],
    hpoints: &[(i64, Hist)],
    w: (i64, i64, i64),
) -> Option<Option<(f64, Option<Hist>)>> {
    use super::histograms as nh;
    let float = |v: f64| Some(Some((v, None)));
    let hist = |h: Option<super::value::FloatHistogram>| Some(h.map(|h| (0.0, Some(nh::wrap(h)))));
    let m = || merged(points, hpoints);
    let value_of = |p: &Point| match p {
        Point::F(_, v) => (*v, None),
        Point::H(_, h) => (0.0, Some((*h).clone())),
    };
    match name {
        "rate" | "increase" | "delta" => {
            if !points.is_empty() || hpoints.len() < 2 {
                return Some(None);
            }
            let counter = name != "delta";
            let Some(mut h) = nh::rate_delta(hpoints, counter) else {
                return Some(None);
            };
            let n1 = hpoints.len() - 1;
            let factor = extrapolation_factor(
                hpoints[0].0,
                hpoints[n1].0,
                n1,
                w,
                counter,
                name == "rate",
                h.count,
                hpoints[0].1.count,
            );
            h.mul(factor);
            hist(Some(h))
        }
        "irate" | "idelta" => {
            let all = m();
            if all.len() < 2 {
                return Some(None);
            }
            let (prev, last) = (&all[all.len() - 2], &all[all.len() - 1]);
            let interval = last.t() - prev.t();
            let rate = name == "irate";
            match (prev, last) {
                (Point::F(pt, pv), Point::F(lt, lv)) => {
                    float_instant(&[(*pt, *pv), (*lt, *lv)], rate).map_or(Some(None), float)
                }
                (Point::H(_, ph), Point::H(_, lh)) => {
                    if interval == 0 {
                        return Some(None);
                    }
                    let Some(mut h) = nh::instant_delta(ph, lh, rate) else {
                        return Some(None);
                    };
                    if rate {
                        h.div(interval as f64 / 1000.0);
                    }
                    hist(Some(h))
                }
                _ => Some(None),
            }
        }
        "resets" | "changes" => {
            let all = m();
            let mut n = 0usize;
            for pair in all.windows(2) {
                let hit = match (&pair[0], &pair[1]) {
                    (Point::F(_, a), Point::F(_, b)) => {
                        if name == "resets" {
                            b < a
                        } else {
                            !(a == b || (a.is_nan() && b.is_nan()))
                        }
                    }
                    (Point::H(_, a), Point::H(_, b)) => {
                        if name == "resets" {
                            b.detect_reset(a)
                        } else {
                            !a.equals(b)
                        }
                    }
                    _ => true,
                };
                n += hit as usize;
            }
            float(n as f64)
        }
        "count_over_time" => float((points.len() + hpoints.len()) as f64),
        "present_over_time" => float(1.0),
        "last_over_time" | "first_over_time" => {
            let all = m();
            let p = if name == "last_over_time" {
                all.last()
            } else {
                all.first()
            };
            Some(p.map(value_of))
        }
        "ts_of_last_over_time" | "ts_of_first_over_time" => {
            let all = m();
            let p = if name == "ts_of_last_over_time" {
                all.last()
            } else {
                all.first()
            };
            Some(p.map(|p| (p.t() as f64 / 1000.0, None)))
        }
        "sum_over_time" | "avg_over_time" => {
            if !points.is_empty() {
                return Some(None);
            }
            let mut h = nh::sum(hpoints);
            if name == "avg_over_time" {
                if let Some(h) = h.as_mut() {
                    h.div(hpoints.len() as f64);
                }
            }
            hist(h)
        }
        _ => None,
    }
}

fn float_instant(p: &[(i64, f64)], rate: bool) -> Option<f64> {
    instant_value(p, rate)
}

fn instant_value(p: &[(i64, f64)], rate: bool) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (lt, lv) = p[p.len() - 1];
    let (pt, pv) = p[p.len() - 2];
    let mut r = if rate && lv < pv { lv } else { lv - pv };
    let interval = lt - pt;
    if interval == 0 {
        return None;
    }
    if rate {
        r /= interval as f64 / 1000.0;
    }
    Some(r)
}

fn avg_over(p: &[(i64, f64)]) -> f64 {
    let (mut sum, mut count) = (p[0].1, 1.0);
    let (mut mean, mut c) = (0.0, 0.0);
    let mut incremental = false;
    for (i, &(_, f)) in p[1..].iter().enumerate() {
        count = (i + 2) as f64;
        if !incremental {
            let (ns, nc) = kahan_inc(f, sum, c);
            if !ns.is_infinite() {
                sum = ns;
                c = nc;
                continue;
            }
            incremental = true;
            mean = sum / (count - 1.0);
            c /= count - 1.0;
        }
        let q = (count - 1.0) / count;
        (mean, c) = kahan_inc(f / count, q * mean, q * c);
    }
    if incremental {
        mean + c
    } else {
        sum / count + c / count
    }
}

fn stdvar_over(p: &[(i64, f64)]) -> f64 {
    let (mut count, mut mean, mut cmean, mut aux, mut caux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(_, f) in p {
        count += 1.0;
        let delta = f - (mean + cmean);
        (mean, cmean) = kahan_inc(delta / count, mean, cmean);
        (aux, caux) = kahan_inc(delta * (f - (mean + cmean)), aux, caux);
    }
    (aux + caux) / count
}

/// True for the functions [`range_fn`] evaluates.
fn is_range_fn(name: &str) -> bool {
    matches!(
        name,
        "rate"
            | "increase"
            | "delta"
            | "irate"
            | "idelta"
            | "deriv"
            | "predict_linear"
            | "resets"
            | "changes"
            | "avg_over_time"
            | "sum_over_time"
            | "count_over_time"
            | "min_over_time"
            | "max_over_time"
            | "last_over_time"
            | "first_over_time"
            | "stddev_over_time"
            | "stdvar_over_time"
            | "quantile_over_time"
            | "present_over_time"
            | "mad_over_time"
            | "ts_of_last_over_time"
            | "ts_of_first_over_time"
            | "ts_of_max_over_time"
            | "ts_of_min_over_time"
            | "double_exponential_smoothing"
            | "holt_winters"
    )
}

/// Checks a call of a range function and evaluates its number parameters at `t`.
fn range_call(ev: &Evaluator<'_>, c: &Call, t: i64) -> Result<RangeCall> {
    let name = c.func.name;
    let mi = range_arg_index(name);
    if !is_range_fn(name) {
        return Err(Error::exec(format!("function {name:?} is not supported")));
    }
    let p1 = match name {
        "predict_linear" | "double_exponential_smoothing" | "holt_winters" => {
            scalar_arg(ev, c, 1, t)?
        }
        "quantile_over_time" => scalar_arg(ev, c, 0, t)?,
        _ => 0.0,
    };
    let p2 = match name {
        "double_exponential_smoothing" | "holt_winters" => scalar_arg(ev, c, 2, t)?,
        _ => 0.0,
    };
    if matches!(name, "double_exponential_smoothing" | "holt_winters") {
        if p1 <= 0.0 || p1 >= 1.0 {
            return Err(Error::exec(format!(
                "invalid smoothing factor. Expected: 0 < sf < 1, got: {p1}"
            )));
        }
        if p2 <= 0.0 || p2 >= 1.0 {
            return Err(Error::exec(format!(
                "invalid trend factor. Expected: 0 < tf < 1, got: {p2}"
            )));
        }
    }
    let keep_name = matches!(name, "last_over_time" | "first_over_time");
    Ok(RangeCall {
        name,
        mi,
        p1,
        p2,
        keep_name,
    })
}

/// What [`range_fn`] needs of a call of a range function, checked: its name, where its
/// range argument is, its number parameters, and whether the metric name stays.
struct RangeCall {
    name: &'static str,
    mi: usize,
    p1: f64,
    p2: f64,
    keep_name: bool,
}

/// A range function of a range selector with number literals for its other
/// arguments (`rate(x[5m])`, `quantile_over_time(0.9, x[1h])`), ready to be computed
/// for every step of a range query, one series at a time.
pub struct RangeSteps<'e> {
    rc: RangeCall,
    /// The range selector.
    pub ms: &'e MatrixSelector,
    range: i64,
    /// Evaluation time of each step.
    pub times: Vec<i64>,
    /// End of each step's window (moved by `@` and `offset`).
    ends: Vec<i64>,
}

impl<'e> RangeSteps<'e> {
    /// `None` when `c` is not of that shape or the query is not a range query;
    /// `Some(Err)` when its parameters are invalid (as the first step would find).
    pub fn new(ev: &Evaluator<'_>, c: &'e Call) -> Option<Result<RangeSteps<'e>>> {
        let ms = match c
            .args
            .args
            .get(range_arg_index(c.func.name))
            .map(|a| unwrap_paren(a))
        {
            Some(Expr::MatrixSelector(ms)) => ms,
            _ => return None,
        };
        let constant_args = c.args.args.iter().all(|a| {
            matches!(
                unwrap_paren(a),
                Expr::NumberLiteral(_) | Expr::MatrixSelector(_)
            )
        });
        if ev.step <= 0 || ev.end < ev.start || !constant_args || !is_range_fn(c.func.name) {
            return None;
        }
        let rc = match range_call(ev, c, ev.start) {
            Ok(rc) => rc,
            Err(e) => return Some(Err(e)),
        };
        let steps = (ev.end - ev.start) / ev.step + 1;
        let times: Vec<i64> = (0..steps).map(|k| ev.start + k * ev.step).collect();
        let ends = selectors::window_ends(&ms.vs, &times, ev.start, ev.end);
        Some(Ok(RangeSteps {
            rc,
            ms,
            range: selectors::dur_ms(&ms.range),
            times,
            ends,
        }))
    }

    /// The first and last window end: the selector's windows span
    /// `(first − range, last]`.
    pub fn span(&self) -> (i64, i64) {
        let lo = self.ends.iter().copied().min().unwrap_or(0);
        let hi = self.ends.iter().copied().max().unwrap_or(0);
        (lo, hi)
    }

    /// True when the result keeps the metric name (`last_over_time`).
    pub fn keep_name(&self) -> bool {
        self.rc.keep_name
    }

    /// Calls `f(k, value, histogram)` for every step `k` at which `s` has a result.
    pub fn run(
        &self,
        s: &selectors::LoadedSeries,
        bufs: &mut selectors::WindowBufs,
        mut f: impl FnMut(usize, f64, Option<Hist>),
    ) {
        let rc = &self.rc;
        selectors::series_windows(s, &self.ends, self.range, bufs, |k, pts, hpts| {
            let w = (
                self.ends[k].saturating_sub(self.range),
                self.ends[k],
                self.range,
            );
            if let Some((v, h)) = range_value(rc.name, pts, hpts, w, self.times[k], rc.p1, rc.p2) {
                f(k, v, h);
            }
        });
    }
}

/// The rows of a range query whose whole expression is `c`, a range function of a
/// range selector ([`RangeSteps`]): each series walked once through all steps, its
/// row built directly. `None` when the query is not of that shape, or when two result
/// series would share a label set (the step-by-step path then decides per step).
///
/// The step-by-step path builds an instant vector per step, interns each label set and
/// files each point under its row: per point, more work than the function itself.
pub fn range_rows(
    ev: &Evaluator<'_>,
    c: &Call,
    points_limit: usize,
) -> Option<Result<Vec<super::value::MatrixRow>>> {
    let rs = match RangeSteps::new(ev, c)? {
        Ok(rs) => rs,
        Err(e) => return Some(Err(e)),
    };
    let series = ev.data.get(&rs.ms.vs);
    let labels: Vec<Labels> = series
        .iter()
        .map(|s| {
            if rs.keep_name() {
                s.labels.clone()
            } else {
                s.labels.without_name()
            }
        })
        .collect();
    {
        let mut sorted: Vec<&Labels> = labels.iter().collect();
        sorted.sort();
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            return None;
        }
    }
    let points = std::sync::atomic::AtomicUsize::new(0);
    // The evaluator stays on this thread (it holds per-query caches); the others get
    // what they read.
    let deadline = ev.deadline;
    let rs = &rs;
    let run = |from: usize, to: usize| -> Result<Vec<super::value::MatrixRow>> {
        let mut bufs = (Vec::new(), Vec::new());
        let mut rows = Vec::with_capacity(to - from);
        for i in from..to {
            if i % 16 == 0 && std::time::Instant::now() > deadline {
                return Err(Error::Timeout(super::eval::TIMEOUT.into()));
            }
            let (mut f, mut h) = (Vec::new(), Vec::new());
            rs.run(&series[i], &mut bufs, |k, v, hist| match hist {
                None => f.push((rs.times[k], v)),
                Some(hist) => h.push((rs.times[k], hist)),
            });
            let n = f.len() + h.len();
            if points.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n > points_limit {
                return Err(Error::exec(selectors::TOO_MANY_SAMPLES));
            }
            if n > 0 {
                rows.push((labels[i].clone(), f, h));
            }
        }
        Ok(rows)
    };
    let parts = split_series(series.len(), rs.times.len(), &run);
    let mut rows = Vec::with_capacity(series.len());
    for p in parts {
        match p {
            Ok(r) => rows.extend(r),
            Err(e) => return Some(Err(e)),
        }
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    Some(Ok(rows))
}

/// Runs `run(from, to)` over `0..n` series, split over the cores when `n × steps` is
/// large; the parts come back in series order.
pub fn split_series<T: Send>(
    n: usize,
    steps: usize,
    run: &(dyn Fn(usize, usize) -> Result<T> + Sync),
) -> Vec<Result<T>> {
    let threads = if n.saturating_mul(steps) < 200_000 || n < 2 {
        1
    } else {
        std::thread::available_parallelism()
            .map_or(1, |t| t.get())
            .min(n)
    };
    let per = n.div_ceil(threads.max(1)).max(1);
    if threads <= 1 {
        return vec![run(0, n)];
    }
    std::thread::scope(|sc| {
        let handles: Vec<_> = (1..threads)
            .map(|k| sc.spawn(move || run((k * per).min(n), ((k + 1) * per).min(n))))
            .collect();
        let mut parts = vec![run(0, per.min(n))];
        for h in handles {
            parts.push(
                h.join()
                    .unwrap_or_else(|_| Err(Error::exec("query evaluation thread panicked"))),
            );
        }
        parts
    })
}

/// Position of the range argument of range function `name`.
fn range_arg_index(name: &str) -> usize {
    match name {
        "quantile_over_time" => 1,
        _ => 0,
    }
}

fn range_fn(ev: &Evaluator<'_>, c: &Call, t: i64) -> Result<Value> {
    let RangeCall {
        name,
        mi,
        p1,
        p2,
        keep_name,
    } = range_call(ev, c, t)?;
    let mut out = Vec::new();
    let e = arg(c, mi)?;
    if let Expr::MatrixSelector(ms) = unwrap_paren(e) {
        // In a range query, blocks of steps series by series (when the other arguments
        // cannot change from step to step).
        let constant_args = c
            .args
            .args
            .iter()
            .enumerate()
            .all(|(i, a)| i == mi || matches!(unwrap_paren(a), Expr::NumberLiteral(_)));
        if constant_args {
            let value =
                |p: &[(i64, f64)], hp: &[(i64, Hist)], w, t| range_value(name, p, hp, w, t, p1, p2);
            let key = c as *const Call as usize;
            if let Some(v) = super::blocks::at_step(ev, key, ms, t, !keep_name, &value) {
                return Ok(Value::Vector(v));
            }
        }
        // Straight from the selector's windows, without building a range vector.
        let w = ev.window(e, t).unwrap_or((t, t, 0));
        ev.visit_range(ms, t, |s, points, hpoints| {
            if let Some((v, h)) = range_value(name, points, hpoints, w, t, p1, p2) {
                out.push(Sample {
                    labels: s.labels.clone(),
                    t,
                    v,
                    h,
                    drop_name: !keep_name,
                });
            }
        });
        return Ok(Value::Vector(out));
    }
    let (m, w) = matrix_arg(ev, c, mi, t)?;
    for s in m {
        if let Some((v, h)) = range_value(name, &s.points, &s.hpoints, w, t, p1, p2) {
            out.push(Sample {
                labels: s.labels,
                t,
                v,
                h,
                drop_name: s.drop_name || !keep_name,
            });
        }
    }
    Ok(Value::Vector(out))
}

/// The value of the range function `name` over one series' window: its float points
/// and histogram points (stale markers left out), the window `w` and the parameters.
/// `None` when the function gives no sample for this series.
#[allow(clippy::too_many_arguments)]
fn range_value(
    name: &str,
    points: &[(i64, f64)],
    hpoints: &[(i64, Hist)],
    w: (i64, i64, i64),
    t: i64,
    p1: f64,
    p2: f64,
) -> Option<(f64, Option<Hist>)> {
    if !hpoints.is_empty() {
        if let Some(res) = histogram_range(name, points, hpoints, w) {
            return res;
        }
    }
    if points.is_empty() {
        return None;
    }
    let p = points;
    let v = match name {
        "rate" => extrapolated_rate(p, w, true, true),
        "increase" => extrapolated_rate(p, w, true, false),
        "delta" => extrapolated_rate(p, w, false, false),
        "irate" => instant_value(p, true),
        "idelta" => instant_value(p, false),
        "deriv" => (p.len() >= 2).then(|| linear_regression(p, p[0].0).0),
        "predict_linear" => (p.len() >= 2).then(|| {
            let (slope, intercept) = linear_regression(p, t);
            slope * p1 + intercept
        }),
        "resets" => Some(p.windows(2).filter(|x| x[1].1 < x[0].1).count() as f64),
        "changes" => Some(
            p.windows(2)
                .filter(|x| !(x[1].1 == x[0].1 || (x[1].1.is_nan() && x[0].1.is_nan())))
                .count() as f64,
        ),
        "avg_over_time" => Some(avg_over(p)),
        "sum_over_time" => {
            let (mut s, mut c) = (0.0, 0.0);
            for &(_, f) in p {
                (s, c) = kahan_inc(f, s, c);
            }
            Some(if c.is_finite() { s + c } else { s })
        }
        "count_over_time" => Some(p.len() as f64),
        "min_over_time" | "max_over_time" => {
            let mut best = p[0].1;
            for &(_, f) in p {
                let better = if name == "max_over_time" {
                    f > best
                } else {
                    f < best
                };
                if better || best.is_nan() {
                    best = f;
                }
            }
            Some(best)
        }
        "ts_of_min_over_time" | "ts_of_max_over_time" => {
            let mut best = p[0];
            for &(pt, f) in p {
                let better = if name == "ts_of_max_over_time" {
                    f >= best.1
                } else {
                    f <= best.1
                };
                if better || best.1.is_nan() {
                    best = (pt, f);
                }
            }
            Some(best.0 as f64 / 1000.0)
        }
        "last_over_time" => p.last().map(|x| x.1),
        "first_over_time" => p.first().map(|x| x.1),
        "ts_of_last_over_time" => p.last().map(|x| x.0 as f64 / 1000.0),
        "ts_of_first_over_time" => p.first().map(|x| x.0 as f64 / 1000.0),
        "stdvar_over_time" => Some(stdvar_over(p)),
        "stddev_over_time" => Some(stdvar_over(p).sqrt()),
        "present_over_time" => Some(1.0),
        "quantile_over_time" => {
            let mut vals: Vec<f64> = p.iter().map(|x| x.1).collect();
            Some(quantile(p1, &mut vals))
        }
        "mad_over_time" if p.iter().any(|x| x.1.is_nan()) => Some(f64::NAN),
        "mad_over_time" => {
            let mut vals: Vec<f64> = p.iter().map(|x| x.1).collect();
            let med = quantile(0.5, &mut vals);
            let mut dev: Vec<f64> = vals.iter().map(|x| (x - med).abs()).collect();
            Some(quantile(0.5, &mut dev))
        }
        "double_exponential_smoothing" | "holt_winters" => {
            if p.len() < 2 {
                None
            } else {
                let (mut s0, mut s1, mut b) = (0.0, p[0].1, p[1].1 - p[0].1);
                for (i, &(_, f)) in p.iter().enumerate().skip(1) {
                    let x = p1 * f;
                    if i > 1 {
                        b = p2 * (s1 - s0) + (1.0 - p2) * b;
                    }
                    let y = (1.0 - p1) * (s1 + b);
                    s0 = s1;
                    s1 = x + y;
                }
                Some(s1)
            }
        }
        _ => None,
    };
    v.map(|v| (v, None))
}
