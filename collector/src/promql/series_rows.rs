//! Range queries evaluated series by series over all their steps, for expressions
//! whose value at a step depends only on that step: selectors, range functions of a
//! selector, number literals, unary minus, arithmetic and comparisons with a number or
//! one-to-one between two such vectors, and `topk`/`bottomk`/`limitk` at the top.
//!
//! ```text
//! 1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes
//!   step path:   1,376 steps × (two instant vectors, match 48 keys, build, intern, file)
//!   here:        48 rows a side, keys matched once, rows joined step by step
//! ```
//! The step path (`eval.rs`) builds an instant vector per step, derives and hashes
//! each series' matching key, builds the result's samples and files each point under
//! its row: per point, much more work than the arithmetic. Here each side is a row per
//! series (its value at every step where it has one), the sides are matched once per
//! row, and the result is built row by row.
//!
//! The values are the step path's, bit for bit: the same sample picks
//! (`selectors::series_instants`), the same windows (`RangeSteps::run`), the same
//! operators (`binary::elem_op`), the same `topk` order (a stable sort of each step's
//! group in the step path's series order). Wherever the step path decides per step what
//! happens (two series with one matching key on a side, two results with one label
//! set, native histograms, set operators, `group_left`), this module answers `None`
//! and the step path runs instead, with its own errors.

use super::aggregations::{cmp_asc_nan_last, cmp_desc_nan_last, group_labels, grouping};
use super::binary::{drops_name, elem_op, is_comparison};
use super::eval::Evaluator;
use super::functions::{split_series, unwrap_paren, RangeSteps};
use super::selectors::{self, LoadedSeries, TOO_MANY_SAMPLES};
use super::value::{Labels, MatrixRow};
use super::{Error, Result};
use promql_parser::parser::token::{T_BOTTOMK, T_LAND, T_LIMITK, T_LOR, T_LUNLESS, T_TOPK};
use promql_parser::parser::{
    AggregateExpr, BinModifier, BinaryExpr, Expr, LabelModifier, VectorMatchCardinality,
};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Most points held by the rows of one query (over all its nodes): beyond, the step
/// path (which holds one step at a time) runs instead. 4 Mi points: 64 MiB.
const MAX_POINTS_HELD: usize = 1 << 22;

/// One series of a node's value: its labels, whether its metric name goes at the end
/// (as a sample's `drop_name`), and its values at the steps where it has one, in step
/// order.
struct Row {
    labels: Labels,
    drop_name: bool,
    points: Vec<(u32, f64)>,
}

/// A node's value over all steps.
enum Rows {
    /// The same number at every step.
    Scalar(f64),
    /// Series in the order the step path's instant vectors hold them.
    Series(Vec<Row>),
}

/// What a node's evaluation gives: `None` when this module leaves the query to the
/// step path.
type Outcome = Option<Result<Rows>>;

struct Ctx<'e, 'd> {
    ev: &'e Evaluator<'d>,
    times: Vec<i64>,
    /// Points held by all rows built so far.
    held: AtomicUsize,
}

/// The result of a range query whose whole expression is `e`, or `None` when `e` is
/// not of a shape evaluated here (or the step path must decide, see the module doc).
pub fn matrix(ev: &Evaluator<'_>, e: &Expr, points_limit: usize) -> Option<Result<Vec<MatrixRow>>> {
    if ev.step <= 0 || ev.end < ev.start {
        return None;
    }
    let steps = (ev.end - ev.start) / ev.step + 1;
    let cx = Ctx {
        ev,
        times: (0..steps).map(|k| ev.start + k * ev.step).collect(),
        held: AtomicUsize::new(0),
    };
    let e = unwrap_paren(e);
    // A bare selector or range function is cheap enough either way, and range
    // functions at the top have their own path (`functions::range_rows`).
    if !matches!(e, Expr::Binary(_) | Expr::Unary(_) | Expr::Aggregate(_)) {
        return None;
    }
    let rows = match e {
        Expr::Aggregate(a) => top_k(&cx, a),
        e => eval(&cx, e),
    };
    let rows = match rows? {
        Ok(Rows::Series(rows)) => rows,
        Ok(Rows::Scalar(_)) => return None,
        Err(err) => return Some(Err(err)),
    };
    let mut n = 0usize;
    let mut out: Vec<MatrixRow> = Vec::with_capacity(rows.len());
    for r in rows {
        if r.points.is_empty() {
            continue;
        }
        n += r.points.len();
        if n > points_limit {
            return Some(Err(Error::exec(TOO_MANY_SAMPLES)));
        }
        let labels = if r.drop_name {
            r.labels.without_name()
        } else {
            r.labels
        };
        let times = &cx.times;
        let points = r
            .points
            .iter()
            .map(|&(k, v)| (times[k as usize], v))
            .collect();
        out.push((labels, points, Vec::new()));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    // Two rows with one label set: the step path tells apart where they overlap.
    if out.windows(2).any(|w| w[0].0 == w[1].0) {
        return None;
    }
    Some(Ok(out))
}

fn eval(cx: &Ctx<'_, '_>, e: &Expr) -> Outcome {
    match e {
        Expr::Paren(p) => eval(cx, &p.expr),
        Expr::NumberLiteral(n) => Some(Ok(Rows::Scalar(n.val))),
        Expr::Unary(u) => Some(Ok(match eval(cx, &u.expr)? {
            Ok(Rows::Scalar(v)) => Rows::Scalar(-v),
            Ok(Rows::Series(mut rows)) => {
                for r in &mut rows {
                    r.drop_name = true;
                    for p in &mut r.points {
                        p.1 = -p.1;
                    }
                }
                Rows::Series(rows)
            }
            Err(e) => return Some(Err(e)),
        })),
        Expr::VectorSelector(vs) => {
            let series = cx.ev.data.get(vs);
            let ends = selectors::window_ends(vs, &cx.times, cx.ev.start, cx.ev.end);
            let lookback = cx.ev.lookback;
            leaf(cx, series, false, &|s, f| {
                selectors::series_instants(s, &ends, lookback, |k, v, _| f(k, v))
            })
        }
        Expr::Call(c) => {
            let rs = match RangeSteps::new(cx.ev, c)? {
                Ok(rs) => rs,
                Err(e) => return Some(Err(e)),
            };
            let series = cx.ev.data.get(&rs.ms.vs);
            leaf(cx, series, !rs.keep_name(), &|s, f| {
                let mut bufs = (Vec::new(), Vec::new());
                rs.run(s, &mut bufs, |k, v, _| f(k, v))
            })
        }
        Expr::Binary(b) => binary(cx, b),
        _ => None,
    }
}

/// Calls its second argument with `(step, value)` for each step where the series has a
/// value, in step order.
type SeriesValues<'f> = dyn Fn(&LoadedSeries, &mut dyn FnMut(usize, f64)) + Sync + 'f;

/// The rows of a selector's series, `values(series, f)` calling `f(step, value)` in
/// step order; `None` when a series holds native histograms (or the rows would hold
/// too many points).
fn leaf(
    cx: &Ctx<'_, '_>,
    series: &[LoadedSeries],
    drop_name: bool,
    values: &SeriesValues<'_>,
) -> Outcome {
    if series.iter().any(|s| !s.histograms.is_empty()) {
        return None;
    }
    // The evaluator stays on this thread (it holds per-query caches).
    let (deadline, held) = (cx.ev.deadline, &cx.held);
    let run = |from: usize, to: usize| -> Result<Option<Vec<Row>>> {
        let mut rows = Vec::with_capacity(to - from);
        for (i, s) in series.iter().enumerate().take(to).skip(from) {
            if i % 16 == 0 && std::time::Instant::now() > deadline {
                return Err(Error::Timeout(super::eval::TIMEOUT.into()));
            }
            let mut points = Vec::new();
            values(s, &mut |k, v| points.push((k as u32, v)));
            if held.fetch_add(points.len(), Ordering::Relaxed) + points.len() > MAX_POINTS_HELD {
                return Ok(None);
            }
            rows.push(Row {
                labels: s.labels.clone(),
                drop_name,
                points,
            });
        }
        Ok(Some(rows))
    };
    let mut rows = Vec::with_capacity(series.len());
    for part in split_series(series.len(), cx.times.len(), &run) {
        match part {
            Ok(Some(r)) => rows.extend(r),
            Ok(None) => return None,
            Err(e) => return Some(Err(e)),
        }
    }
    Some(Ok(Rows::Series(rows)))
}

fn binary(cx: &Ctx<'_, '_>, b: &BinaryExpr) -> Outcome {
    let op = b.op.id();
    if matches!(op, T_LAND | T_LOR | T_LUNLESS) {
        return None;
    }
    let default_mod = BinModifier::default();
    let m = b.modifier.as_ref().unwrap_or(&default_mod);
    let lhs = match eval(cx, &b.lhs)? {
        Ok(v) => v,
        Err(e) => return Some(Err(e)),
    };
    let rhs = match eval(cx, &b.rhs)? {
        Ok(v) => v,
        Err(e) => return Some(Err(e)),
    };
    Some(Ok(match (lhs, rhs) {
        (Rows::Scalar(l), Rows::Scalar(r)) => {
            let (v, keep) = match elem_op(op, l, r) {
                Ok(x) => x,
                Err(e) => return Some(Err(e)),
            };
            Rows::Scalar(match (is_comparison(op), keep) {
                (true, true) => 1.0,
                (true, false) => 0.0,
                (false, _) => v,
            })
        }
        (Rows::Series(rows), Rows::Scalar(s)) => {
            return Some(with_scalar(op, rows, s, false, m.return_bool).map(Rows::Series))
        }
        (Rows::Scalar(s), Rows::Series(rows)) => {
            return Some(with_scalar(op, rows, s, true, m.return_bool).map(Rows::Series))
        }
        (Rows::Series(l), Rows::Series(r)) => return one_to_one(op, m, l, r),
    }))
}

/// A vector and a number (`swap`: the number on the left), as `binary::vector_scalar`
/// does at each step.
fn with_scalar(
    op: u16,
    mut rows: Vec<Row>,
    s: f64,
    swap: bool,
    return_bool: bool,
) -> Result<Vec<Row>> {
    for row in &mut rows {
        let mut err = None;
        row.points.retain_mut(|p| {
            let (l, r) = if swap { (s, p.1) } else { (p.1, s) };
            let (mut val, mut keep) = match elem_op(op, l, r) {
                Ok(x) => x,
                Err(e) => {
                    err = Some(e);
                    return false;
                }
            };
            if is_comparison(op) && swap {
                val = r;
            }
            if return_bool {
                val = if keep { 1.0 } else { 0.0 };
                keep = true;
            }
            p.1 = val;
            keep
        });
        if let Some(e) = err {
            return Err(e);
        }
        row.drop_name |= drops_name(op) || return_bool;
    }
    Ok(rows)
}

/// Two vectors matched one to one (`on`/`ignoring`), as `binary::vector_vector` does at
/// each step; `None` for `group_left`/`group_right`/`fill`, or when two series of a
/// side share a matching key (the step path decides per step whether that is an error).
fn one_to_one(op: u16, m: &BinModifier, lhs: Vec<Row>, rhs: Vec<Row>) -> Outcome {
    if !matches!(m.card, VectorMatchCardinality::OneToOne)
        || m.fill_values.lhs.is_some()
        || m.fill_values.rhs.is_some()
    {
        return None;
    }
    let none: Vec<String> = Vec::new();
    let (on, names) = match &m.matching {
        Some(LabelModifier::Include(ls)) => (true, &ls.labels),
        Some(LabelModifier::Exclude(ls)) => (false, &ls.labels),
        None => (false, &none),
    };
    let key = |l: &Labels| if on { l.keep(names) } else { l.without(names) };
    let mut right: HashMap<Labels, usize> = HashMap::with_capacity(rhs.len());
    for (j, r) in rhs.iter().enumerate() {
        if right.insert(key(&r.labels), j).is_some() {
            return None;
        }
    }
    let mut matched: HashSet<usize> = HashSet::with_capacity(lhs.len());
    let mut out = Vec::with_capacity(lhs.len());
    for l in lhs {
        let Some(&j) = right.get(&key(&l.labels)) else {
            continue;
        };
        if !matched.insert(j) {
            return None;
        }
        let r = &rhs[j].points;
        let mut points = Vec::with_capacity(l.points.len().min(r.len()));
        let mut ri = 0;
        for &(k, lv) in &l.points {
            while ri < r.len() && r[ri].0 < k {
                ri += 1;
            }
            if ri == r.len() {
                break;
            }
            if r[ri].0 != k {
                continue;
            }
            let (mut val, keep) = match elem_op(op, lv, r[ri].1) {
                Ok(x) => x,
                Err(e) => return Some(Err(e)),
            };
            if m.return_bool {
                val = if keep { 1.0 } else { 0.0 };
            } else if !keep {
                continue;
            }
            points.push((k, val));
        }
        let labels = if on {
            l.labels.keep(names)
        } else {
            let mut labels = l.labels;
            for n in names {
                labels.del(n);
            }
            labels
        };
        out.push(Row {
            labels,
            drop_name: drops_name(op) || m.return_bool || l.drop_name,
            points,
        });
    }
    Some(Ok(Rows::Series(out)))
}

/// `topk`, `bottomk` and `limitk` of rows, as `aggregations::top_k` does at each step:
/// each group's series present at the step, in the step path's order, sorted stably,
/// the first `k` kept.
fn top_k(cx: &Ctx<'_, '_>, a: &AggregateExpr) -> Outcome {
    let op = a.op.id();
    if !matches!(op, T_TOPK | T_BOTTOMK | T_LIMITK) {
        return None;
    }
    let k = match eval(cx, a.param.as_deref()?)? {
        Ok(Rows::Scalar(k)) => k,
        Ok(Rows::Series(_)) => return None,
        Err(e) => return Some(Err(e)),
    };
    let rows = match eval(cx, &a.expr)? {
        Ok(Rows::Series(rows)) => rows,
        Ok(Rows::Scalar(_)) => return None,
        Err(e) => return Some(Err(e)),
    };
    if k.is_nan() {
        return Some(Err(Error::exec(format!(
            "Parameter value is NaN for {}",
            a.op
        ))));
    }
    if k < 1.0 {
        return Some(Ok(Rows::Series(Vec::new())));
    }
    let k = if k >= (i64::MAX / 2) as f64 {
        usize::MAX
    } else {
        k as usize
    };
    let (without, names) = grouping(a);
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        let g = *index
            .entry(group_labels(&r.labels, without, &names))
            .or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
        groups[g].push(i);
    }
    let mut kept: Vec<Vec<(u32, f64)>> = vec![Vec::new(); rows.len()];
    let mut cursor = vec![0usize; rows.len()];
    let mut present: Vec<(usize, f64)> = Vec::new();
    for step in 0..cx.times.len() as u32 {
        if step % 64 == 0 {
            if let Err(e) = cx.ev.check_deadline() {
                return Some(Err(e));
            }
        }
        for g in &groups {
            present.clear();
            for &i in g {
                let pts = &rows[i].points;
                let c = &mut cursor[i];
                if pts.get(*c).is_some_and(|p| p.0 == step) {
                    present.push((i, pts[*c].1));
                    *c += 1;
                }
            }
            match op {
                T_TOPK => present.sort_by(|a, b| cmp_desc_nan_last(a.1, b.1)),
                T_BOTTOMK => present.sort_by(|a, b| cmp_asc_nan_last(a.1, b.1)),
                _ => {}
            }
            for &(i, v) in present.iter().take(k) {
                kept[i].push((step, v));
            }
        }
    }
    Some(Ok(Rows::Series(
        rows.into_iter()
            .zip(kept)
            .map(|(r, points)| Row {
                labels: r.labels,
                drop_name: r.drop_name,
                points,
            })
            .collect(),
    )))
}
