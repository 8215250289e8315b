//! PromQL functions, as Prometheus' `FunctionCalls` table: [`FUNCTIONS`] maps each
//! function's name to its argument types, its return type and the function that
//! evaluates it; the implementations are grouped by concept:
//!
//! - `range.rs`: `rate`, `increase`, `delta`, `deriv`, `predict_linear`, the
//!   `*_over_time` family, `double_exponential_smoothing`, and the series-major paths
//!   of range queries;
//! - `math.rs`: `abs`, `ln`, trigonometry, `clamp*`, `round`, `min_of`/`max_of`;
//! - `time.rs`: `time`, `timestamp`, `start`/`end`/`step`/`range`, the date functions;
//! - `labels.rs`: `label_replace`, `label_join`;
//! - `histogram.rs`: `histogram_*` on native histograms and classic buckets;
//! - `sort.rs`: `sort`, `sort_desc`, `sort_by_label*`;
//! - `vector.rs`: `vector`, `scalar`, `absent*`, `pi`.
//!
//! The parser (promql-parser) checks a call's arity and argument types; a unit test
//! checks that this table says the same. Helpers shared by the groups (argument
//! evaluation, Kahan summation, Go's min/max, `quantile`) are here.

mod histogram;
mod labels;
mod math;
mod range;
mod sort;
mod time;
mod vector;

pub use histogram::{bucket_fraction, bucket_quantile};
pub use range::{range_rows, rate_windows, split_series, RangeSteps};

use super::{Error, Result};
use crate::promql::eval::Evaluator;
use crate::promql::value::{Matrix, Sample, Value, Vector};
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{Call, Expr};

/// How a function is evaluated at one time: the evaluator, the call, the time (ms).
pub type Eval = fn(&Evaluator<'_>, &Call, i64) -> Result<Value>;

/// One function: its name, argument types (`variadic` as Prometheus counts it: 0 =
/// exactly these, n > 0 = up to n of the last type may be left out or repeated, -1 = the
/// last repeats without bound), return type, and implementation.
pub struct FunctionCall {
    pub name: &'static str,
    pub args: &'static [ValueType],
    pub variadic: i32,
    pub returns: ValueType,
    pub call: Eval,
}

const V: ValueType = ValueType::Vector;
const S: ValueType = ValueType::Scalar;
const M: ValueType = ValueType::Matrix;
const STR: ValueType = ValueType::String;

const fn f(
    name: &'static str,
    args: &'static [ValueType],
    variadic: i32,
    returns: ValueType,
    call: Eval,
) -> FunctionCall {
    FunctionCall {
        name,
        args,
        variadic,
        returns,
        call,
    }
}

/// Every function Calm evaluates, sorted by name (looked up by binary search).
pub const FUNCTIONS: &[FunctionCall] = &[
    f("abs", &[V], 0, V, math::math),
    f("absent", &[V], 0, V, vector::absent),
    f("absent_over_time", &[M], 0, V, vector::absent_over_time),
    f("acos", &[V], 0, V, math::math),
    f("acosh", &[V], 0, V, math::math),
    f("asin", &[V], 0, V, math::math),
    f("asinh", &[V], 0, V, math::math),
    f("atan", &[V], 0, V, math::math),
    f("atanh", &[V], 0, V, math::math),
    f("avg_over_time", &[M], 0, V, range::range_fn),
    f("ceil", &[V], 0, V, math::math),
    f("changes", &[M], 0, V, range::range_fn),
    f("clamp", &[V, S, S], 0, V, math::clamp),
    f("clamp_max", &[V, S], 0, V, math::clamp_max),
    f("clamp_min", &[V, S], 0, V, math::clamp_min),
    f("cos", &[V], 0, V, math::math),
    f("cosh", &[V], 0, V, math::math),
    f("count_over_time", &[M], 0, V, range::range_fn),
    f("day_of_month", &[V], 1, V, time::date),
    f("day_of_week", &[V], 1, V, time::date),
    f("day_of_year", &[V], 1, V, time::date),
    f("days_in_month", &[V], 1, V, time::date),
    f("deg", &[V], 0, V, math::math),
    f("delta", &[M], 0, V, range::range_fn),
    f("deriv", &[M], 0, V, range::range_fn),
    f(
        "double_exponential_smoothing",
        &[M, S, S],
        0,
        V,
        range::range_fn,
    ),
    f("end", &[], 0, S, time::end),
    f("exp", &[V], 0, V, math::math),
    f("first_over_time", &[M], 0, V, range::range_fn),
    f("floor", &[V], 0, V, math::math),
    f("histogram_avg", &[V], 0, V, histogram::stat),
    f("histogram_count", &[V], 0, V, histogram::stat),
    f("histogram_fraction", &[S, S, V], 0, V, histogram::fraction),
    f("histogram_quantile", &[S, V], 0, V, histogram::quantile_fn),
    f(
        "histogram_quantiles",
        &[V, STR, S, S],
        9,
        V,
        histogram::quantiles,
    ),
    f("histogram_stddev", &[V], 0, V, histogram::stat),
    f("histogram_stdvar", &[V], 0, V, histogram::stat),
    f("histogram_sum", &[V], 0, V, histogram::stat),
    f("hour", &[V], 1, V, time::date),
    f("idelta", &[M], 0, V, range::range_fn),
    f("increase", &[M], 0, V, range::range_fn),
    f("irate", &[M], 0, V, range::range_fn),
    f("label_join", &[V, STR, STR, STR], -1, V, labels::label_join),
    f(
        "label_replace",
        &[V, STR, STR, STR, STR],
        0,
        V,
        labels::label_replace,
    ),
    f("last_over_time", &[M], 0, V, range::range_fn),
    f("ln", &[V], 0, V, math::math),
    f("log10", &[V], 0, V, math::math),
    f("log2", &[V], 0, V, math::math),
    f("mad_over_time", &[M], 0, V, range::range_fn),
    f("max_of", &[S, S], 0, S, math::min_max_of),
    f("max_over_time", &[M], 0, V, range::range_fn),
    f("min_of", &[S, S], 0, S, math::min_max_of),
    f("min_over_time", &[M], 0, V, range::range_fn),
    f("minute", &[V], 1, V, time::date),
    f("month", &[V], 1, V, time::date),
    f("pi", &[], 0, S, vector::pi),
    f("predict_linear", &[M, S], 0, V, range::range_fn),
    f("present_over_time", &[M], 0, V, range::range_fn),
    f("quantile_over_time", &[S, M], 0, V, range::range_fn),
    f("rad", &[V], 0, V, math::math),
    f("range", &[], 0, S, time::range),
    f("rate", &[M], 0, V, range::range_fn),
    f("resets", &[M], 0, V, range::range_fn),
    f("round", &[V, S], 1, V, math::round),
    f("scalar", &[V], 0, S, vector::scalar),
    f("sgn", &[V], 0, V, math::math),
    f("sin", &[V], 0, V, math::math),
    f("sinh", &[V], 0, V, math::math),
    f("sort", &[V], 0, V, sort::sort),
    f("sort_by_label", &[V, STR], -1, V, sort::sort_by_label),
    f("sort_by_label_desc", &[V, STR], -1, V, sort::sort_by_label),
    f("sort_desc", &[V], 0, V, sort::sort),
    f("sqrt", &[V], 0, V, math::math),
    f("start", &[], 0, S, time::start),
    f("stddev_over_time", &[M], 0, V, range::range_fn),
    f("stdvar_over_time", &[M], 0, V, range::range_fn),
    f("step", &[], 0, S, time::step),
    f("sum_over_time", &[M], 0, V, range::range_fn),
    f("tan", &[V], 0, V, math::math),
    f("tanh", &[V], 0, V, math::math),
    f("time", &[], 0, S, time::time),
    f("timestamp", &[V], 0, V, time::timestamp),
    f("ts_of_first_over_time", &[M], 0, V, range::range_fn),
    f("ts_of_last_over_time", &[M], 0, V, range::range_fn),
    f("ts_of_max_over_time", &[M], 0, V, range::range_fn),
    f("ts_of_min_over_time", &[M], 0, V, range::range_fn),
    f("vector", &[S], 0, V, vector::vector),
    f("year", &[V], 1, V, time::date),
];

/// The table's entry for `name`.
pub fn lookup(name: &str) -> Option<&'static FunctionCall> {
    FUNCTIONS
        .binary_search_by(|f| f.name.cmp(name))
        .ok()
        .map(|i| &FUNCTIONS[i])
}

/// [`lookup`] for a name with a fixed address (the parser's names are `&'static str`s
/// out of its own table, so every call of one function names it at one address): the
/// last few addresses found are remembered per thread and compared as integers. This
/// runs for every function call at every step of a range query, and the binary search
/// compared strings through libc's `memcmp`, ~0.3 µs a step (`vector(1)` over 10,801
/// steps took 2.4× as long as before the table).
fn lookup_static(name: &'static str) -> Option<&'static FunctionCall> {
    use std::cell::Cell;
    type Found = ((usize, usize), Option<&'static FunctionCall>);
    const WAYS: usize = 8;
    thread_local! {
        // The found entries by the name's address, and the way to replace next.
        static RECENT: Cell<([Found; WAYS], usize)> = const { Cell::new(([((0, 0), None); WAYS], 0)) };
    }
    // A `&'static str` is never freed, so its address and length name it for good.
    let key = (name.as_ptr() as usize, name.len());
    let (mut ways, next) = RECENT.with(Cell::get);
    if let Some(&(_, f)) = ways.iter().find(|w| w.0 == key && w.1.is_some()) {
        return f;
    }
    let f = lookup(name);
    if f.is_some() {
        ways[next] = (key, f);
        RECENT.with(|r| r.set((ways, (next + 1) % WAYS)));
    }
    f
}

/// Evaluates a function call at time `t`.
pub fn eval(ev: &Evaluator<'_>, c: &Call, t: i64) -> Result<Value> {
    match lookup_static(c.func.name) {
        Some(f) => (f.call)(ev, c, t),
        None => Err(Error::exec(format!(
            "function {:?} is not supported",
            c.func.name
        ))),
    }
}

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

/// `e` without the parentheses around it.
pub(crate) fn unwrap_paren(e: &Expr) -> &Expr {
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

#[cfg(test)]
mod tests {
    use super::FUNCTIONS;
    use promql_parser::parser::{self, value::ValueType, Expr};

    #[test]
    fn the_table_is_sorted_and_unique() {
        for w in FUNCTIONS.windows(2) {
            assert!(w[0].name < w[1].name, "{} before {}", w[0].name, w[1].name);
        }
    }

    /// Each entry's types are the parser's: a call built from the table parses, and
    /// the parser's function has the same argument types, variadic count and return
    /// type.
    #[test]
    fn the_table_says_what_the_parser_checks() {
        for f in FUNCTIONS {
            let args: Vec<&str> = f
                .args
                .iter()
                .map(|t| match t {
                    ValueType::Vector => "x",
                    ValueType::Scalar => "1",
                    ValueType::Matrix => "x[1m]",
                    ValueType::String => "\"a\"",
                })
                .collect();
            let q = format!("{}({})", f.name, args.join(", "));
            let e = parser::parse(&q).unwrap_or_else(|e| panic!("{q}: {e}"));
            let Expr::Call(c) = e else {
                panic!("{q} is not a call")
            };
            assert_eq!(c.func.arg_types, f.args, "{}: argument types", f.name);
            assert_eq!(c.func.variadic, f.variadic, "{}: variadic", f.name);
            assert_eq!(c.func.return_type, f.returns, "{}: return type", f.name);
        }
    }
}
