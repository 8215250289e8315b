//! The values a template handles (Go's `interface{}` as Prometheus' templates see it).

use super::*;
use crate::alerts::gofmt::format_v;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Val {
    Nil,
    Bool(bool),
    Num(f64),
    Int(i64),
    Str(String),
    Map(BTreeMap<String, String>),
    Struct(BTreeMap<String, Val>),
    List(Vec<Val>),
    Sample(QuerySample),
}

impl Val {
    pub(super) fn truthy(&self) -> bool {
        match self {
            Val::Nil => false,
            Val::Bool(b) => *b,
            Val::Num(f) => *f != 0.0,
            Val::Int(i) => *i != 0,
            Val::Str(s) => !s.is_empty(),
            Val::Map(m) => !m.is_empty(),
            Val::Struct(_) | Val::Sample(_) => true,
            Val::List(l) => !l.is_empty(),
        }
    }

    /// Go's `fmt.Sprint` of the value.
    pub(super) fn print(&self) -> String {
        match self {
            Val::Nil => "<no value>".into(),
            Val::Bool(b) => b.to_string(),
            Val::Num(f) => format_v(*f),
            Val::Int(i) => i.to_string(),
            Val::Str(s) => s.clone(),
            Val::Map(m) => {
                let inner: Vec<String> = m.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("map[{}]", inner.join(" "))
            }
            Val::Struct(m) => {
                let inner: Vec<String> = m.values().map(|v| v.print()).collect();
                format!("{{{}}}", inner.join(" "))
            }
            Val::List(l) => {
                let inner: Vec<String> = l.iter().map(|v| v.print()).collect();
                format!("[{}]", inner.join(" "))
            }
            Val::Sample(s) => {
                let inner: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("{{map[{}] {}}}", inner.join(" "), format_v(s.value))
            }
        }
    }

    pub(super) fn type_name(&self) -> &'static str {
        match self {
            Val::Nil => "nil",
            Val::Bool(_) => "bool",
            Val::Num(_) => "float64",
            Val::Int(_) => "int",
            Val::Str(_) => "string",
            Val::Map(_) => "map[string]string",
            Val::Struct(_) => "struct",
            Val::List(_) => "slice",
            Val::Sample(_) => "*template.sample",
        }
    }

    /// Prometheus' `convertToFloat`: numbers, and strings that parse as numbers.
    pub(super) fn to_float(&self) -> R<f64> {
        match self {
            Val::Num(f) => Ok(*f),
            Val::Int(i) => Ok(*i as f64),
            Val::Str(s) => s
                .trim()
                .parse::<f64>()
                .or_else(|_| match s.trim() {
                    "NaN" => Ok(f64::NAN),
                    "+Inf" | "Inf" => Ok(f64::INFINITY),
                    "-Inf" => Ok(f64::NEG_INFINITY),
                    _ => Err(()),
                })
                .or_else(|_| err(format!("strconv.ParseFloat: parsing {s:?}: invalid syntax"))),
            other => err(format!("can't convert {} to float", other.type_name())),
        }
    }
}

pub(super) fn compare(a: &Val, b: &Val) -> R<std::cmp::Ordering> {
    use std::cmp::Ordering;
    let num = |v: &Val| match v {
        Val::Num(f) => Some(*f),
        Val::Int(i) => Some(*i as f64),
        _ => None,
    };
    match (a, b) {
        (Val::Str(x), Val::Str(y)) => Ok(x.cmp(y)),
        (Val::Bool(x), Val::Bool(y)) => Ok(x.cmp(y)),
        (Val::Nil, Val::Nil) => Ok(Ordering::Equal),
        _ => match (num(a), num(b)) {
            (Some(x), Some(y)) => Ok(x.partial_cmp(&y).unwrap_or(Ordering::Less)),
            _ => err(format!(
                "error calling comparison: incompatible types for comparison: {} and {}",
                a.type_name(),
                b.type_name()
            )),
        },
    }
}
