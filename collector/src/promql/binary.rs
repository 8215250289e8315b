//! Binary operators: arithmetic, comparisons (filtering or `bool`), set operators
//! (`and`, `or`, `unless`) and vector matching (`on`, `ignoring`, `group_left`,
//! `group_right`, `fill*`).

use super::eval::Evaluator;
use super::intern::Interner;
use super::value::{Hist, Labels, Sample, Value, Vector};
use super::{Error, Result};
use hashbrown::{HashMap, HashSet};
use promql_parser::parser::token::*;
use promql_parser::parser::{BinModifier, BinaryExpr, LabelModifier, VectorMatchCardinality};
use std::sync::Arc;

/// True for `==`, `!=`, `>`, `<`, `>=`, `<=`.
pub fn is_comparison(op: u16) -> bool {
    matches!(op, T_EQLC | T_NEQ | T_GTR | T_LSS | T_GTE | T_LTE)
}

/// True for operators whose result drops the metric name.
pub(super) fn drops_name(op: u16) -> bool {
    matches!(op, T_ADD | T_SUB | T_MUL | T_DIV | T_POW | T_MOD | T_ATAN2)
}

/// Applies `op` to two floats: the value and whether a comparison keeps it.
pub fn elem_op(op: u16, l: f64, r: f64) -> Result<(f64, bool)> {
    Ok(match op {
        T_ADD => (l + r, true),
        T_SUB => (l - r, true),
        T_MUL => (l * r, true),
        T_DIV => (l / r, true),
        T_POW => (l.powf(r), true),
        T_MOD => (l % r, true),
        T_ATAN2 => (l.atan2(r), true),
        T_EQLC => (l, l == r),
        T_NEQ => (l, l != r),
        T_GTR => (l, l > r),
        T_LSS => (l, l < r),
        T_GTE => (l, l >= r),
        T_LTE => (l, l <= r),
        _ => return Err(Error::exec(format!("operator {op} not allowed here"))),
    })
}

/// Applies `op` when at least one side is a native histogram (Prometheus 3 rules):
/// `h * f`, `f * h`, `h / f`, `h + h`, `h - h`, and `==`/`!=` between histograms.
/// Returns the value, the histogram and whether a comparison keeps the sample;
/// `None` when the operation is not defined for these types (the sample is dropped).
pub fn hist_op(
    op: u16,
    l: (f64, Option<&Hist>),
    r: (f64, Option<&Hist>),
) -> Option<(f64, Option<Hist>, bool)> {
    let scaled = |h: &Hist, f: f64, div: bool| {
        let mut h = (**h).clone();
        if div {
            h.div(f);
        } else {
            h.mul(f);
        }
        Some((0.0, Some(Arc::new(h.compact())), true))
    };
    match (l, r) {
        ((lf, None), (_, Some(rh))) => match op {
            T_MUL => scaled(rh, lf, false),
            _ => None,
        },
        ((_, Some(lh)), (rf, None)) => match op {
            T_MUL => scaled(lh, rf, false),
            T_DIV => scaled(lh, rf, true),
            _ => None,
        },
        ((_, Some(lh)), (_, Some(rh))) => match op {
            T_ADD | T_SUB => {
                let sign = if op == T_ADD { 1.0 } else { -1.0 };
                let (h, _) = lh.combine(rh, sign).ok()?;
                Some((0.0, Some(Arc::new(h.compact())), true))
            }
            T_EQLC | T_NEQ => {
                let equal = lh.equals(rh);
                Some((0.0, Some(lh.clone()), equal == (op == T_EQLC)))
            }
            _ => None,
        },
        _ => None,
    }
}

/// Evaluates a binary expression at time `t`.
pub fn eval(ev: &Evaluator<'_>, b: &BinaryExpr, t: i64) -> Result<Value> {
    let op = b.op.id();
    let default_mod = BinModifier::default();
    let m = b.modifier.as_ref().unwrap_or(&default_mod);
    let return_bool = m.return_bool;
    let lhs = ev.eval(&b.lhs, t)?;
    let rhs = ev.eval(&b.rhs, t)?;
    match (lhs, rhs) {
        (Value::Scalar(l), Value::Scalar(r)) => {
            let (v, keep) = elem_op(op, l, r)?;
            if is_comparison(op) {
                Ok(Value::Scalar(if keep { 1.0 } else { 0.0 }))
            } else {
                Ok(Value::Scalar(v))
            }
        }
        (Value::Vector(v), Value::Scalar(s)) => Ok(Value::Vector(vector_scalar(
            op,
            v,
            s,
            false,
            return_bool,
            t,
        )?)),
        (Value::Scalar(s), Value::Vector(v)) => Ok(Value::Vector(vector_scalar(
            op,
            v,
            s,
            true,
            return_bool,
            t,
        )?)),
        (Value::Vector(l), Value::Vector(r)) => {
            let (on, names) = match &m.matching {
                Some(LabelModifier::Include(ls)) => (true, ls.labels.clone()),
                Some(LabelModifier::Exclude(ls)) => (false, ls.labels.clone()),
                None => (false, Vec::new()),
            };
            let keys = MatchKeys {
                site: b as *const BinaryExpr as usize,
                on,
                names: &names,
            };
            let mut interner = ev.interner.borrow_mut();
            let out = match op {
                T_LAND => and(&mut interner, &keys, l, r, t),
                T_LOR => or(&mut interner, &keys, l, r, t),
                T_LUNLESS => unless(&mut interner, &keys, l, r, t),
                _ => vector_vector(&mut interner, &keys, op, l, r, m, t)?,
            };
            Ok(Value::Vector(out))
        }
        (l, r) => Err(Error::exec(format!(
            "binary operator not allowed between {} and {}",
            l.type_name(),
            r.type_name()
        ))),
    }
}

fn vector_scalar(
    op: u16,
    v: Vector,
    s: f64,
    swap: bool,
    return_bool: bool,
    t: i64,
) -> Result<Vector> {
    let mut out = Vec::with_capacity(v.len());
    for mut smp in v {
        if let Some(h) = smp.h.take() {
            let side = (smp.v, Some(&h));
            let (l, r) = if swap {
                ((s, None), side)
            } else {
                (side, (s, None))
            };
            let Some((_, nh, _)) = hist_op(op, l, r) else {
                continue;
            };
            smp.h = nh;
            smp.v = 0.0;
            smp.t = t;
            smp.drop_name |= drops_name(op) || return_bool;
            out.push(smp);
            continue;
        }
        let (l, r) = if swap { (s, smp.v) } else { (smp.v, s) };
        let (mut val, mut keep) = elem_op(op, l, r)?;
        if is_comparison(op) && swap {
            val = r;
        }
        if return_bool {
            val = if keep { 1.0 } else { 0.0 };
            keep = true;
        }
        if keep {
            smp.v = val;
            smp.t = t;
            smp.drop_name |= drops_name(op) || return_bool;
            out.push(smp);
        }
    }
    Ok(out)
}

/// How the two sides of one binary expression are matched: the series' labels `on`
/// the listed `names`, or `ignoring` them and the metric name.
///
/// A range query evaluates the expression at every step with the same series, so the
/// matching key of a series is derived once, through the evaluator's interner (keyed by
/// this expression's address, `site`), and equal keys are one interned set: sides are
/// matched by the key's address, with no string built or hashed per step.
struct MatchKeys<'a> {
    site: usize,
    on: bool,
    names: &'a [String],
}

impl MatchKeys<'_> {
    /// The matching key of `l` (interned: equal keys have equal addresses).
    fn of(&self, interner: &mut Interner, l: &Labels) -> Labels {
        let (on, names) = (self.on, self.names);
        interner.derive(self.site, l, |l| {
            if on {
                l.keep(names)
            } else {
                l.without(names)
            }
        })
    }

    /// The labels of a one-to-one result for the left series `l`: `l` with only the
    /// `on` labels, or without the `ignoring` ones (the metric name goes later, with
    /// `drop_name`). Remembered per series like the key (at `site + 1`: inside this
    /// expression's own node, so no other node's site).
    fn one_to_one(&self, interner: &mut Interner, l: &Labels) -> Labels {
        let (on, names) = (self.on, self.names);
        interner.derive(self.site + 1, l, |l| {
            if on {
                l.keep(names)
            } else {
                let mut l = l.clone();
                for n in names {
                    l.del(n);
                }
                l
            }
        })
    }
}

fn and(interner: &mut Interner, keys: &MatchKeys<'_>, l: Vector, r: Vector, t: i64) -> Vector {
    let right: HashSet<usize> = r
        .iter()
        .map(|s| keys.of(interner, &s.labels).addr())
        .collect();
    l.into_iter()
        .filter(|s| right.contains(&keys.of(interner, &s.labels).addr()))
        .map(|mut s| {
            s.t = t;
            s
        })
        .collect()
}

fn or(interner: &mut Interner, keys: &MatchKeys<'_>, l: Vector, r: Vector, t: i64) -> Vector {
    let left: HashSet<usize> = l
        .iter()
        .map(|s| keys.of(interner, &s.labels).addr())
        .collect();
    let mut out: Vector = l;
    out.extend(
        r.into_iter()
            .filter(|s| !left.contains(&keys.of(interner, &s.labels).addr())),
    );
    for s in &mut out {
        s.t = t;
    }
    out
}

fn unless(interner: &mut Interner, keys: &MatchKeys<'_>, l: Vector, r: Vector, t: i64) -> Vector {
    let right: HashSet<usize> = r
        .iter()
        .map(|s| keys.of(interner, &s.labels).addr())
        .collect();
    l.into_iter()
        .filter(|s| !right.contains(&keys.of(interner, &s.labels).addr()))
        .map(|mut s| {
            s.t = t;
            s
        })
        .collect()
}

fn vector_vector(
    interner: &mut Interner,
    keys: &MatchKeys<'_>,
    op: u16,
    l: Vector,
    r: Vector,
    m: &BinModifier,
    t: i64,
) -> Result<Vector> {
    let one_to_many = matches!(m.card, VectorMatchCardinality::OneToMany(_));
    let include: &[String] = match &m.card {
        VectorMatchCardinality::ManyToOne(ls) | VectorMatchCardinality::OneToMany(ls) => &ls.labels,
        _ => &[],
    };
    let one_to_one = !matches!(
        m.card,
        VectorMatchCardinality::ManyToOne(_) | VectorMatchCardinality::OneToMany(_)
    );
    let (mut fill_l, mut fill_r) = (m.fill_values.lhs, m.fill_values.rhs);
    let (lhs, rhs) = if one_to_many {
        std::mem::swap(&mut fill_l, &mut fill_r);
        (r, l)
    } else {
        (l, r)
    };
    // Keys are interned, so a key's address stands for the key.
    let mut right: HashMap<usize, usize> = HashMap::with_capacity(rhs.len());
    for (i, rs) in rhs.iter().enumerate() {
        let key = keys.of(interner, &rs.labels);
        if let Some(&j) = right.get(&key.addr()) {
            let side = if one_to_many { "left" } else { "right" };
            return Err(Error::exec(format!(
                "found duplicate series for the match group {key} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                rs.labels, rhs[j].labels
            )));
        }
        right.insert(key.addr(), i);
    }
    // One-to-one: the keys matched so far; many-to-one: the result sets per key.
    let mut matched_one: HashSet<usize> = HashSet::new();
    let mut matched: HashMap<usize, HashSet<Labels>> = HashMap::new();
    let mut used_right: HashSet<usize> = HashSet::new();
    let mut out = Vec::with_capacity(lhs.len());
    let mut emit = |interner: &mut Interner,
                    ls: &Sample,
                    rs: &Sample,
                    key: usize,
                    out: &mut Vector|
     -> Result<()> {
        let (fl, fr) = if one_to_many {
            ((rs.v, rs.h.as_ref()), (ls.v, ls.h.as_ref()))
        } else {
            ((ls.v, ls.h.as_ref()), (rs.v, rs.h.as_ref()))
        };
        let (mut val, mut hist, keep) = if fl.1.is_some() || fr.1.is_some() {
            match hist_op(op, fl, fr) {
                Some(x) => x,
                None => return Ok(()),
            }
        } else {
            let (v, k) = elem_op(op, fl.0, fr.0)?;
            (v, None, k)
        };
        if one_to_one && !matched_one.insert(key) {
            return Err(Error::exec(
                "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
            ));
        }
        if m.return_bool {
            val = if keep { 1.0 } else { 0.0 };
            hist = None;
        } else if !keep {
            return Ok(());
        }
        let labels = if one_to_one {
            keys.one_to_one(interner, &ls.labels)
        } else {
            let labels = result_labels(&ls.labels, &rs.labels, include);
            if !matched.entry(key).or_default().insert(labels.clone()) {
                return Err(Error::exec(
                    "multiple matches for labels: grouping labels must ensure unique matches",
                ));
            }
            labels
        };
        out.push(Sample {
            labels,
            t,
            v: val,
            drop_name: drops_name(op) || m.return_bool || ls.drop_name,
            h: hist,
        });
        Ok(())
    };
    for ls in &lhs {
        let key = keys.of(interner, &ls.labels).addr();
        match right.get(&key) {
            Some(&j) => {
                used_right.insert(key);
                emit(interner, ls, &rhs[j], key, &mut out)?;
            }
            None => {
                if let Some(fv) = fill_r {
                    let filler = Sample {
                        labels: ls.labels.clone(),
                        t,
                        v: fv,
                        drop_name: false,
                        h: None,
                    };
                    emit(interner, ls, &filler, key, &mut out)?;
                }
            }
        }
    }
    if let Some(fv) = fill_l {
        for rs in &rhs {
            let key = keys.of(interner, &rs.labels);
            if used_right.contains(&key.addr()) {
                continue;
            }
            let filler = Sample {
                labels: key.clone(),
                t,
                v: fv,
                drop_name: false,
                h: None,
            };
            emit(interner, &filler, rs, key.addr(), &mut out)?;
        }
    }
    Ok(out)
}

/// The labels of a many-to-one (or one-to-many) result: the "many" side's series with
/// the `group_left`/`group_right` labels copied from the "one" side.
fn result_labels(many: &Labels, one: &Labels, include: &[String]) -> Labels {
    let mut l = many.clone();
    for n in include {
        match one.get(n) {
            Some(v) => {
                let v = v.to_string();
                l.set(n, &v)
            }
            None => l.del(n),
        }
    }
    l
}
