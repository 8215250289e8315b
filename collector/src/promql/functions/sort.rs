//! Sorting functions: `sort`, `sort_desc`, `sort_by_label`, `sort_by_label_desc`.

use super::{string_arg, vector_arg};
use crate::promql::eval::Evaluator;
use crate::promql::value::{Value, Vector};
use crate::promql::Result;
use promql_parser::parser::Call;

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

/// `sort(v)` and `sort_desc(v)`.
pub(super) fn sort(ev: &Evaluator<'_>, c: &Call, t: i64) -> Result<Value> {
    let name = c.func.name;
    // Sorting is by float value: native histograms are left out.
    let mut v: Vector = vector_arg(ev, c, 0, t)?
        .into_iter()
        .filter(|s| s.h.is_none())
        .collect();
    if name == "sort" {
        v.sort_by(|a, b| crate::promql::aggregations::cmp_asc_nan_last(a.v, b.v));
    } else {
        v.sort_by(|a, b| crate::promql::aggregations::cmp_desc_nan_last(a.v, b.v));
    }
    for s in &mut v {
        s.t = t;
    }
    Ok(Value::Vector(v))
}

/// `sort_by_label(v, names…)` and `sort_by_label_desc(v, names…)`.
pub(super) fn sort_by_label(ev: &Evaluator<'_>, c: &Call, t: i64) -> Result<Value> {
    let name = c.func.name;
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
    Ok(Value::Vector(v))
}
