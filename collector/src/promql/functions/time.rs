//! Time functions: `time`, `start`, `end`, `step`, `range`, `timestamp`, and the date
//! functions (`day_of_month`, `day_of_week`, `day_of_year`, `days_in_month`, `hour`,
//! `minute`, `month`, `year`).

use super::{arg, unwrap_paren, vector_arg};
use crate::promql::eval::Evaluator;
use crate::promql::selectors::{self, at_ms, offset_ms};
use crate::promql::value::{Labels, Sample, Value};
use crate::promql::Result;
use chrono::{Datelike, Timelike};
use promql_parser::parser::{Call, Expr};

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

fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// `time()`.
pub(super) fn time(_: &Evaluator<'_>, _: &Call, t: i64) -> Result<Value> {
    Ok(Value::Scalar(secs(t)))
}

/// `start()`.
pub(super) fn start(ev: &Evaluator<'_>, _: &Call, _: i64) -> Result<Value> {
    Ok(Value::Scalar(secs(ev.start)))
}

/// `end()`.
pub(super) fn end(ev: &Evaluator<'_>, _: &Call, _: i64) -> Result<Value> {
    Ok(Value::Scalar(secs(ev.end)))
}

/// `step()`.
pub(super) fn step(ev: &Evaluator<'_>, _: &Call, _: i64) -> Result<Value> {
    Ok(Value::Scalar(secs(ev.step)))
}

/// `range()`.
pub(super) fn range(ev: &Evaluator<'_>, _: &Call, _: i64) -> Result<Value> {
    Ok(Value::Scalar(secs(ev.end - ev.start)))
}

/// `timestamp(v)`.
pub(super) fn timestamp(ev: &Evaluator<'_>, c: &Call, t: i64) -> Result<Value> {
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
    Ok(Value::Vector(
        v.into_iter()
            .map(|s| Sample {
                v: secs(s.t),
                t,
                drop_name: true,
                h: None,
                labels: s.labels,
            })
            .collect(),
    ))
}

/// The date functions: `day_of_month`, `day_of_week`, `day_of_year`, `days_in_month`,
/// `hour`, `minute`, `month`, `year`.
pub(super) fn date(ev: &Evaluator<'_>, c: &Call, t: i64) -> Result<Value> {
    let name = c.func.name;
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
    Ok(Value::Vector(
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
    ))
}
