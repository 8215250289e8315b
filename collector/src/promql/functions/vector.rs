//! Making and checking vectors: `vector`, `scalar`, `absent`, `absent_over_time`, `pi`.

use super::{arg, matrix_arg, scalar_arg, vector_arg};
use crate::promql::eval::Evaluator;
use crate::promql::value::{Labels, Sample, Value, METRIC_NAME};
use crate::promql::Result;
use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{Call, Expr};
use std::collections::HashSet;

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

/// `pi()`.
pub(super) fn pi(_: &Evaluator<'_>, _: &Call, _: i64) -> Result<Value> {
    Ok(Value::Scalar(std::f64::consts::PI))
}

/// `vector(s)`.
pub(super) fn vector(ev: &Evaluator<'_>, c: &Call, t: i64) -> Result<Value> {
    let v = scalar_arg(ev, c, 0, t)?;
    Ok(Value::Vector(vec![Sample {
        labels: Labels::default(),
        t,
        v,
        drop_name: false,
        h: None,
    }]))
}

/// `scalar(v)`.
pub(super) fn scalar(ev: &Evaluator<'_>, c: &Call, t: i64) -> Result<Value> {
    let v = vector_arg(ev, c, 0, t)?;
    // Histograms are left out: one float sample gives its value.
    let mut floats = v.iter().filter(|s| s.h.is_none());
    Ok(Value::Scalar(match (floats.next(), floats.next()) {
        (Some(s), None) => s.v,
        _ => f64::NAN,
    }))
}

/// `absent(v)`.
pub(super) fn absent(ev: &Evaluator<'_>, c: &Call, t: i64) -> Result<Value> {
    let v = vector_arg(ev, c, 0, t)?;
    if !v.is_empty() {
        return Ok(Value::Vector(Vec::new()));
    }
    Ok(Value::Vector(vec![Sample {
        labels: absent_labels(arg(c, 0)?),
        t,
        v: 1.0,
        drop_name: false,
        h: None,
    }]))
}

/// `absent_over_time(m)`.
pub(super) fn absent_over_time(ev: &Evaluator<'_>, c: &Call, t: i64) -> Result<Value> {
    let (m, _) = matrix_arg(ev, c, 0, t)?;
    if m.iter()
        .any(|s| !s.points.is_empty() || !s.hpoints.is_empty())
    {
        return Ok(Value::Vector(Vec::new()));
    }
    Ok(Value::Vector(vec![Sample {
        labels: absent_labels(arg(c, 0)?),
        t,
        v: 1.0,
        drop_name: false,
        h: None,
    }]))
}
