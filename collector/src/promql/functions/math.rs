//! Math on instant vectors: `abs`, `ceil`, `exp`, `ln`, trigonometry, `sgn`, `deg`,
//! `rad`, …, `clamp*`, `round`; `min_of`/`max_of` on scalars.

use super::{go_max, go_min, map_vector, scalar_arg, vector_arg};
use crate::promql::eval::Evaluator;
use crate::promql::value::Value;
use crate::promql::Result;
use promql_parser::parser::Call;

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

/// The one-argument math functions (`abs`, `ceil`, …): `math_fn(name)` on each float.
pub(super) fn math(ev: &Evaluator<'_>, c: &Call, t: i64) -> Result<Value> {
    let name = c.func.name;
    let f = math_fn(name)
        .ok_or_else(|| crate::promql::Error::exec(format!("function {name:?} is not supported")))?;
    let v = vector_arg(ev, c, 0, t)?;
    Ok(map_vector(v, t, f))
}

/// `min_of(a, b)` and `max_of(a, b)`.
pub(super) fn min_max_of(ev: &Evaluator<'_>, c: &Call, t: i64) -> Result<Value> {
    let name = c.func.name;
    let a = scalar_arg(ev, c, 0, t)?;
    let b = scalar_arg(ev, c, 1, t)?;
    Ok(Value::Scalar(if name == "min_of" {
        go_min(a, b)
    } else {
        go_max(a, b)
    }))
}

/// `clamp(v, min, max)`.
pub(super) fn clamp(ev: &Evaluator<'_>, c: &Call, t: i64) -> Result<Value> {
    let v = vector_arg(ev, c, 0, t)?;
    let lo = scalar_arg(ev, c, 1, t)?;
    let hi = scalar_arg(ev, c, 2, t)?;
    if hi < lo {
        return Ok(Value::Vector(Vec::new()));
    }
    Ok(map_vector(v, t, |x| go_min(go_max(x, lo), hi)))
}

/// `clamp_min(v, min)`.
pub(super) fn clamp_min(ev: &Evaluator<'_>, c: &Call, t: i64) -> Result<Value> {
    let v = vector_arg(ev, c, 0, t)?;
    let lo = scalar_arg(ev, c, 1, t)?;
    Ok(map_vector(v, t, |x| go_max(x, lo)))
}

/// `clamp_max(v, max)`.
pub(super) fn clamp_max(ev: &Evaluator<'_>, c: &Call, t: i64) -> Result<Value> {
    let v = vector_arg(ev, c, 0, t)?;
    let hi = scalar_arg(ev, c, 1, t)?;
    Ok(map_vector(v, t, |x| go_min(x, hi)))
}

/// `round(v, to_nearest=1)`.
pub(super) fn round(ev: &Evaluator<'_>, c: &Call, t: i64) -> Result<Value> {
    let v = vector_arg(ev, c, 0, t)?;
    let to = if c.args.args.len() > 1 {
        scalar_arg(ev, c, 1, t)?
    } else {
        1.0
    };
    let inv = 1.0 / to;
    Ok(map_vector(v, t, |x| (x * inv + 0.5).floor() / inv))
}
