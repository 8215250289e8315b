//! Aggregation operators: `sum`, `avg`, `min`, `max`, `count`, `group`, `stddev`,
//! `stdvar`, `topk`, `bottomk`, `quantile`, `count_values`, `limitk`, `limit_ratio`,
//! with `by`/`without` grouping.

use super::eval::Evaluator;
use super::functions::{kahan_inc, quantile};
use super::value::{format_float, FloatHistogram, Labels, Sample, Value, Vector};
use super::{Error, Result};
use promql_parser::parser::token::*;
use promql_parser::parser::{AggregateExpr, LabelModifier};
use std::collections::HashMap;

#[derive(Debug, Default)]
struct Group {
    labels: Labels,
    count: f64,
    value: f64,
    kahan: f64,
    mean: f64,
    incremental: bool,
    values: Vec<f64>,
    drop_name: bool,
    /// Samples that were floats / native histograms (sum and avg cannot mix them).
    floats: usize,
    hists: usize,
    /// Sum of the histograms so far; `None` once they did not combine.
    hsum: Option<FloatHistogram>,
    hbroken: bool,
}

/// Grouping of an aggregation: `(without, labels)`.
pub(super) fn grouping(a: &AggregateExpr) -> (bool, Vec<String>) {
    match &a.modifier {
        Some(LabelModifier::Include(l)) => (false, l.labels.clone()),
        Some(LabelModifier::Exclude(l)) => (true, l.labels.clone()),
        None => (false, Vec::new()),
    }
}

/// One more float `f` into an `avg`, `count` already counting it: a Kahan sum (`sum`,
/// compensation `kahan`) while it stays finite, then, once it overflows, a running mean
/// (`mean`, compensation `kahan`; `incremental` set) that infinities pin, as Prometheus
/// does. The step path and the streamed aggregations (`streamed.rs`) both fold with it,
/// so their results are the same bits.
pub(super) fn avg_add(
    sum: &mut f64,
    mean: &mut f64,
    kahan: &mut f64,
    incremental: &mut bool,
    count: f64,
    f: f64,
) {
    if !*incremental {
        let (nv, nc) = kahan_inc(f, *sum, *kahan);
        if !nv.is_infinite() {
            (*sum, *kahan) = (nv, nc);
            return;
        }
        *incremental = true;
        *mean = *sum / (count - 1.0);
        *kahan /= count - 1.0;
    }
    if mean.is_infinite() {
        if f.is_infinite() && (*mean > 0.0) == (f > 0.0) {
            return;
        }
        if !f.is_infinite() && !f.is_nan() {
            return;
        }
    }
    let cur = *mean + *kahan;
    (*mean, *kahan) = kahan_inc(f / count - cur / count, *mean, *kahan);
}

pub(super) fn group_labels(l: &Labels, without: bool, names: &[String]) -> Labels {
    if without {
        l.without(names)
    } else if names.is_empty() {
        Labels::default()
    } else {
        l.keep(names)
    }
}

fn scalar_param(v: Option<Value>, what: &str) -> Result<f64> {
    match v {
        Some(Value::Scalar(f)) => Ok(f),
        _ => Err(Error::exec(format!("expected scalar parameter for {what}"))),
    }
}

/// Evaluates an aggregation at time `t`.
pub fn eval(ev: &Evaluator<'_>, a: &AggregateExpr, t: i64) -> Result<Value> {
    let op = a.op.id();
    let param = match &a.param {
        Some(p) => Some(ev.eval(p, t)?),
        None => None,
    };
    let input = match ev.eval(&a.expr, t)? {
        Value::Vector(v) => v,
        other => {
            return Err(Error::exec(format!(
                "aggregation expects an instant vector, got {}",
                other.type_name()
            )))
        }
    };
    let (without, names) = grouping(a);
    match op {
        T_TOPK | T_BOTTOMK | T_LIMITK => {
            let k = scalar_param(param, "k")?;
            if k.is_nan() {
                return Err(Error::exec(format!("Parameter value is NaN for {}", a.op)));
            }
            if k < 1.0 {
                return Ok(Value::Vector(Vec::new()));
            }
            let k = if k >= (i64::MAX / 2) as f64 {
                usize::MAX
            } else {
                k as usize
            };
            // topk and bottomk order floats: native histograms are left out.
            let input = if op == T_LIMITK {
                input
            } else {
                input.into_iter().filter(|s| s.h.is_none()).collect()
            };
            let site = a as *const AggregateExpr as usize;
            Ok(Value::Vector(top_k(
                ev, site, op, k, input, without, &names, t,
            )))
        }
        T_LIMIT_RATIO => {
            let r = scalar_param(param, "ratio")?;
            if r.is_nan() {
                return Err(Error::exec("Ratio value is NaN for limit_ratio"));
            }
            let r = r.clamp(-1.0, 1.0);
            let out = input
                .into_iter()
                .filter(|s| {
                    let off = ratio_offset(&s.labels);
                    (r >= 0.0 && off < r) || (r < 0.0 && off >= 1.0 + r)
                })
                .map(|mut s| {
                    s.t = t;
                    s
                })
                .collect();
            Ok(Value::Vector(out))
        }
        T_COUNT_VALUES => {
            let label = match param {
                Some(Value::String(s)) => s,
                _ => return Err(Error::exec("count_values expects a string parameter")),
            };
            if !is_valid_label_name(&label) {
                return Err(Error::exec(format!("invalid label name {label:?}")));
            }
            let mut groups: Vec<(Labels, f64)> = Vec::new();
            let mut index: HashMap<Labels, usize> = HashMap::new();
            for s in input {
                let mut l = s.labels.clone();
                let text = match &s.h {
                    Some(h) => super::histograms::go_string(h),
                    None => format_float(s.v),
                };
                l.set(&label, &text);
                let mut names2 = names.clone();
                if !without {
                    names2.push(label.clone());
                }
                let g = group_labels(&l, without, &names2);
                match index.get(&g) {
                    Some(&i) => groups[i].1 += 1.0,
                    None => {
                        index.insert(g.clone(), groups.len());
                        groups.push((g, 1.0));
                    }
                }
            }
            Ok(Value::Vector(
                groups
                    .into_iter()
                    .map(|(labels, v)| Sample {
                        labels,
                        t,
                        v,
                        drop_name: false,
                        h: None,
                    })
                    .collect(),
            ))
        }
        _ => {
            let q = if op == T_QUANTILE {
                scalar_param(param, "quantile")?
            } else {
                0.0
            };
            let site = a as *const AggregateExpr as usize;
            Ok(Value::Vector(simple(
                ev, site, op, q, input, without, &names, t,
            )?))
        }
    }
}

fn is_valid_label_name(s: &str) -> bool {
    !s.is_empty() && std::str::from_utf8(s.as_bytes()).is_ok()
}

fn ratio_offset(l: &Labels) -> f64 {
    let mut key = String::new();
    for (n, v) in l.pairs() {
        key.push_str(n);
        key.push('\u{ff}');
        key.push_str(v);
        key.push('\u{ff}');
    }
    xxhash_rust::xxh3::xxh3_64(key.as_bytes()) as f64 / u64::MAX as f64
}

/// `sum`, `avg`, `min`, `max`, `count`, `group`, `stddev`, `stdvar`, `quantile` of
/// `input` by group. Group labels come from the evaluator's interner (derived once per
/// series for the node at `site`), so a group is found by the address of its labels.
#[allow(clippy::too_many_arguments)]
fn simple(
    ev: &Evaluator<'_>,
    site: usize,
    op: u16,
    q: f64,
    input: Vector,
    without: bool,
    names: &[String],
    t: i64,
) -> Result<Vector> {
    let mut groups: Vec<Group> = Vec::new();
    let mut index: hashbrown::HashMap<usize, usize> = hashbrown::HashMap::new();
    let mut interner = ev.interner.borrow_mut();
    for s in input {
        let gl = interner.derive(site, &s.labels, |l| group_labels(l, without, names));
        if let Some(h) = &s.h {
            // Native histograms: summed by sum and avg, counted by count and group,
            // left out by the float-only aggregations.
            let gi = match index.get(&gl.addr()) {
                Some(&i) => i,
                None if matches!(op, T_SUM | T_AVG | T_COUNT | T_GROUP) => {
                    index.insert(gl.addr(), groups.len());
                    groups.push(Group {
                        labels: gl,
                        value: if op == T_GROUP { 1.0 } else { 0.0 },
                        drop_name: s.drop_name,
                        ..Group::default()
                    });
                    groups.len() - 1
                }
                None => continue,
            };
            let g = &mut groups[gi];
            g.drop_name |= s.drop_name;
            g.hists += 1;
            if matches!(op, T_SUM | T_AVG) && !g.hbroken {
                g.hsum = match g.hsum.take() {
                    None => Some((**h).clone()),
                    Some(acc) => match acc.combine(h, 1.0) {
                        Ok((sum, _)) => Some(sum),
                        Err(_) => {
                            g.hbroken = true;
                            None
                        }
                    },
                };
            }
            continue;
        }
        let f = s.v;
        let gi = match index.get(&gl.addr()) {
            Some(&i) => i,
            None => {
                index.insert(gl.addr(), groups.len());
                let mut g = Group {
                    labels: gl,
                    count: 1.0,
                    value: f,
                    mean: f,
                    drop_name: s.drop_name,
                    floats: 1,
                    ..Group::default()
                };
                match op {
                    T_STDDEV | T_STDVAR => g.value = if f.is_finite() { 0.0 } else { f64::NAN },
                    T_QUANTILE => g.values.push(f),
                    T_GROUP => g.value = 1.0,
                    _ => {}
                }
                groups.push(g);
                continue;
            }
        };
        let g = &mut groups[gi];
        g.drop_name |= s.drop_name;
        g.floats += 1;
        if g.floats == 1 {
            // The group was started by a histogram: this is its first float.
            g.count = g.hists as f64 + 1.0;
            g.value = f;
            g.mean = f;
            match op {
                T_STDDEV | T_STDVAR => g.value = if f.is_finite() { 0.0 } else { f64::NAN },
                T_QUANTILE => g.values.push(f),
                T_GROUP => g.value = 1.0,
                _ => {}
            }
            if op == T_AVG {
                g.count = 1.0;
            }
            continue;
        }
        match op {
            T_SUM => (g.value, g.kahan) = kahan_inc(f, g.value, g.kahan),
            T_AVG => {
                g.count += 1.0;
                avg_add(
                    &mut g.value,
                    &mut g.mean,
                    &mut g.kahan,
                    &mut g.incremental,
                    g.count,
                    f,
                );
            }
            T_MAX => {
                if g.value < f || g.value.is_nan() {
                    g.value = f
                }
            }
            T_MIN => {
                if g.value > f || g.value.is_nan() {
                    g.value = f
                }
            }
            T_COUNT => g.count += 1.0,
            T_STDDEV | T_STDVAR => {
                g.count += 1.0;
                let delta = f - g.mean;
                g.mean += delta / g.count;
                g.value += delta * (f - g.mean);
            }
            T_QUANTILE => g.values.push(f),
            T_GROUP => {}
            _ => {
                return Err(Error::exec(format!(
                    "unsupported aggregation operator {op}"
                )))
            }
        }
    }
    Ok(groups
        .into_iter()
        .filter_map(|mut g| {
            if g.hists > 0 && matches!(op, T_SUM | T_AVG) {
                // A mix of floats and histograms, or histograms that do not combine,
                // gives no result (Prometheus warns).
                if g.floats > 0 || g.hbroken {
                    return None;
                }
                let mut h = g.hsum.take()?;
                if op == T_AVG {
                    h.div(g.hists as f64);
                }
                return Some(Sample {
                    labels: g.labels,
                    t,
                    v: 0.0,
                    h: Some(std::sync::Arc::new(h.compact())),
                    drop_name: g.drop_name,
                });
            }
            if op == T_COUNT {
                g.count = (g.floats + g.hists) as f64;
            }
            let v = match op {
                T_AVG if g.incremental => g.mean + g.kahan,
                T_AVG => (g.value + g.kahan) / g.count,
                T_COUNT => g.count,
                T_STDVAR => g.value / g.count,
                T_STDDEV => (g.value / g.count).sqrt(),
                T_QUANTILE => quantile(q, &mut g.values),
                T_SUM => g.value + g.kahan,
                _ => g.value,
            };
            Some(Sample {
                labels: g.labels,
                t,
                v,
                drop_name: g.drop_name,
                h: None,
            })
        })
        .collect())
}

/// `topk`, `bottomk`, `limitk` by group (groups found as in [`simple`]).
#[allow(clippy::too_many_arguments)]
fn top_k(
    ev: &Evaluator<'_>,
    site: usize,
    op: u16,
    k: usize,
    input: Vector,
    without: bool,
    names: &[String],
    t: i64,
) -> Vector {
    let mut groups: Vec<Vec<Sample>> = Vec::new();
    let mut index: hashbrown::HashMap<usize, usize> = hashbrown::HashMap::new();
    let mut interner = ev.interner.borrow_mut();
    for mut s in input {
        s.t = t;
        let gl = interner.derive(site, &s.labels, |l| group_labels(l, without, names));
        let gi = *index.entry(gl.addr()).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[gi].push(s);
    }
    let mut out = Vec::new();
    for mut g in groups {
        match op {
            T_TOPK => g.sort_by(|a, b| cmp_desc_nan_last(a.v, b.v)),
            T_BOTTOMK => g.sort_by(|a, b| cmp_asc_nan_last(a.v, b.v)),
            _ => {}
        }
        g.truncate(k);
        out.extend(g);
    }
    out
}

/// Descending order with NaN last.
pub fn cmp_desc_nan_last(a: f64, b: f64) -> std::cmp::Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ => b.partial_cmp(&a).unwrap_or(std::cmp::Ordering::Equal),
    }
}

/// Ascending order with NaN last.
pub fn cmp_asc_nan_last(a: f64, b: f64) -> std::cmp::Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ => a.partial_cmp(&b).unwrap_or(std::cmp::Ordering::Equal),
    }
}
