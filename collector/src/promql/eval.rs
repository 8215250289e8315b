//! The tree walk: evaluates an expression at one evaluation time.
//!
//! Range queries evaluate the tree once per step; selectors read the series the
//! planner preloaded, so storage is read once per selector per query. Subquery steps
//! are cached by (node, time), so overlapping subquery windows of consecutive steps
//! are evaluated once.

use super::intern::Interner;
use super::selectors::{self, at_ms, dur_ms, offset_ms, Preloaded};
use super::value::{Labels, Matrix, Sample, Series, Value};
use super::{aggregations, binary, functions, Error, Result};
use crate::tsdb::histogram::ResetHint;
use promql_parser::parser::{Expr, MatrixSelector, SubqueryExpr};
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Instant;

/// Evaluation state shared by all steps of one query.
pub struct Evaluator<'a> {
    /// Series read for each selector.
    pub data: &'a Preloaded,
    /// Query start, ms (for `@ start()` and `start()`).
    pub start: i64,
    /// Query end, ms (for `@ end()` and `end()`).
    pub end: i64,
    /// Query step, ms (0 for instant queries).
    pub step: i64,
    /// Lookback delta, ms.
    pub lookback: i64,
    /// Step of subqueries that give none, ms.
    pub default_step: i64,
    /// When the query must give up.
    pub deadline: Instant,
    /// Most samples (points) subqueries may hold.
    pub max_samples: usize,
    cache: RefCell<HashMap<(usize, i64), Value>>,
    sub_points: RefCell<usize>,
    /// Per selector node, where its series stood at the previous step.
    cursors: RefCell<HashMap<usize, selectors::Cursors>>,
    /// Label sets of this evaluation, interned (see `intern.rs`).
    pub interner: RefCell<Interner>,
    /// Per call node, a block of precomputed steps (see `blocks.rs`).
    pub blocks: RefCell<HashMap<usize, super::blocks::Block>>,
    /// Aggregations computed for every step before evaluation (see `streamed.rs`).
    pub streamed: Option<&'a super::streamed::Streamed>,
}

/// Prometheus' timeout message.
pub const TIMEOUT: &str = "query timed out in query execution";

impl<'a> Evaluator<'a> {
    /// A new evaluator over preloaded data.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        data: &'a Preloaded,
        start: i64,
        end: i64,
        step: i64,
        lookback: i64,
        default_step: i64,
        deadline: Instant,
        max_samples: usize,
    ) -> Evaluator<'a> {
        Evaluator {
            data,
            start,
            end,
            step,
            lookback,
            default_step,
            deadline,
            max_samples,
            cache: RefCell::new(HashMap::new()),
            sub_points: RefCell::new(0),
            cursors: RefCell::new(HashMap::new()),
            interner: RefCell::new(Interner::default()),
            blocks: RefCell::new(HashMap::new()),
            streamed: None,
        }
    }

    /// This evaluator, answering the aggregations of `s` from their grids.
    pub fn with_streamed(mut self, s: &'a super::streamed::Streamed) -> Evaluator<'a> {
        self.streamed = Some(s);
        self
    }

    /// Fails when the deadline has passed.
    pub fn check_deadline(&self) -> Result<()> {
        if Instant::now() > self.deadline {
            return Err(Error::Timeout(TIMEOUT.into()));
        }
        Ok(())
    }

    /// Evaluates `e` at time `t` (ms).
    pub fn eval(&self, e: &Expr, t: i64) -> Result<Value> {
        self.check_deadline()?;
        match e {
            Expr::NumberLiteral(n) => Ok(Value::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(Value::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, t),
            Expr::Unary(u) => match self.eval(&u.expr, t)? {
                Value::Scalar(v) => Ok(Value::Scalar(-v)),
                Value::Vector(v) => Ok(Value::Vector(
                    v.into_iter()
                        .map(|s| Sample {
                            v: -s.v,
                            t,
                            drop_name: true,
                            h: s.h.map(|h| {
                                let mut h = (*h).clone();
                                h.mul(-1.0);
                                std::sync::Arc::new(h)
                            }),
                            labels: s.labels,
                        })
                        .collect(),
                )),
                other => Err(Error::exec(format!(
                    "unary expression only allowed on expressions of type scalar or instant vector, got {}",
                    other.type_name()
                ))),
            },
            Expr::VectorSelector(vs) => {
                let base = at_ms(&vs.at, self.start, self.end).unwrap_or(t).saturating_sub(offset_ms(&vs.offset));
                let mut cursors = self.cursors.borrow_mut();
                let c = cursors.entry(vs as *const _ as usize).or_default();
                Ok(Value::Vector(selectors::instant_with(self.data.get(vs), base, self.lookback, c)))
            }
            Expr::MatrixSelector(ms) => {
                let base = at_ms(&ms.vs.at, self.start, self.end).unwrap_or(t).saturating_sub(offset_ms(&ms.vs.offset));
                let mut cursors = self.cursors.borrow_mut();
                let c = cursors.entry(&ms.vs as *const _ as usize).or_default();
                Ok(Value::Matrix(selectors::range_with(
                    self.data.get(&ms.vs),
                    base,
                    dur_ms(&ms.range),
                    c,
                )))
            }
            Expr::Subquery(sq) => Ok(Value::Matrix(self.subquery(sq, t)?)),
            Expr::Aggregate(a) => match self.streamed.and_then(|s| s.get(a)) {
                // Its selector was not preloaded: a time off the grid has no answer.
                Some(g) => g.at(t).map(Value::Vector).ok_or_else(|| {
                    Error::Internal(format!("aggregation computed for the query steps asked at {t}"))
                }),
                None => aggregations::eval(self, a, t),
            },
            Expr::Binary(b) => binary::eval(self, b, t),
            Expr::Call(c) => functions::eval(self, c, t),
            Expr::Extension(_) => Err(Error::exec("extension expressions are not supported")),
        }
    }

    /// Calls `f(series, floats, histograms)` for every series of the range selector
    /// `ms` with samples in its window at `t` ([`selectors::range_visit`]).
    pub fn visit_range(
        &self,
        ms: &MatrixSelector,
        t: i64,
        f: impl FnMut(&selectors::LoadedSeries, &[(i64, f64)], &[(i64, super::value::Hist)]),
    ) {
        let base = at_ms(&ms.vs.at, self.start, self.end)
            .unwrap_or(t)
            .saturating_sub(offset_ms(&ms.vs.offset));
        let mut cursors = self.cursors.borrow_mut();
        let c = cursors.entry(&ms.vs as *const _ as usize).or_default();
        selectors::range_visit(self.data.get(&ms.vs), base, dur_ms(&ms.range), c, f);
    }

    /// Evaluates `e` at `t`, reusing an earlier result for the same node and time.
    fn eval_cached(&self, e: &Expr, t: i64) -> Result<Value> {
        let k = (e as *const Expr as usize, t);
        if let Some(v) = self.cache.borrow().get(&k) {
            return Ok(v.clone());
        }
        let v = self.eval(e, t)?;
        self.cache.borrow_mut().insert(k, v.clone());
        Ok(v)
    }

    /// The window `(start, end]` a range argument covers at `t`, and its length.
    pub fn window(&self, e: &Expr, t: i64) -> Option<(i64, i64, i64)> {
        match e {
            Expr::Paren(p) => self.window(&p.expr, t),
            Expr::MatrixSelector(ms) => {
                let end = at_ms(&ms.vs.at, self.start, self.end)
                    .unwrap_or(t)
                    .saturating_sub(offset_ms(&ms.vs.offset));
                let r = dur_ms(&ms.range);
                Some((end.saturating_sub(r), end, r))
            }
            Expr::Subquery(sq) => {
                let end = at_ms(&sq.at, self.start, self.end)
                    .unwrap_or(t)
                    .saturating_sub(offset_ms(&sq.offset));
                let r = dur_ms(&sq.range);
                Some((end.saturating_sub(r), end, r))
            }
            _ => None,
        }
    }

    fn subquery(&self, sq: &SubqueryExpr, t: i64) -> Result<Matrix> {
        let base = at_ms(&sq.at, self.start, self.end)
            .unwrap_or(t)
            .saturating_sub(offset_ms(&sq.offset));
        let range = dur_ms(&sq.range);
        let step = sq
            .step
            .as_ref()
            .map(dur_ms)
            .filter(|s| *s > 0)
            .unwrap_or(self.default_step)
            .max(1);
        let lo = base.saturating_sub(range);
        // Every subquery step costs at least one sample of the query's budget.
        let steps = usize::try_from(range / step).unwrap_or(usize::MAX);
        {
            let mut n = self.sub_points.borrow_mut();
            *n = n.saturating_add(steps);
            if *n > self.max_samples {
                return Err(Error::exec(selectors::TOO_MANY_SAMPLES));
            }
        }
        let mut ts = step.saturating_mul(lo / step);
        if ts <= lo {
            ts = ts.saturating_add(step);
        }
        let mut index: HashMap<Labels, usize> = HashMap::new();
        let mut out: Matrix = Vec::new();
        while ts <= base {
            match self.eval_cached(&sq.expr, ts)? {
                Value::Scalar(v) => {
                    let i = *index.entry(Labels::default()).or_insert_with(|| {
                        out.push(Series {
                            labels: Labels::default(),
                            points: Vec::new(),
                            hpoints: Vec::new(),
                            drop_name: false,
                        });
                        out.len() - 1
                    });
                    out[i].points.push((ts, v));
                }
                Value::Vector(vec) => {
                    {
                        let mut n = self.sub_points.borrow_mut();
                        *n += vec.len();
                        if *n > self.max_samples {
                            return Err(Error::exec(selectors::TOO_MANY_SAMPLES));
                        }
                    }
                    for s in vec {
                        let i = match index.get(&s.labels) {
                            Some(&i) => i,
                            None => {
                                index.insert(s.labels.clone(), out.len());
                                out.push(Series {
                                    labels: s.labels,
                                    points: Vec::new(),
                                    hpoints: Vec::new(),
                                    drop_name: false,
                                });
                                out.len() - 1
                            }
                        };
                        out[i].drop_name |= s.drop_name;
                        match s.h {
                            // A subquery may skip the sample that carried a counter
                            // reset, or repeat it: its points' reset hints mean nothing
                            // (Prometheus clears them too), gauges stay gauges.
                            Some(h)
                                if matches!(
                                    h.counter_reset_hint,
                                    ResetHint::Reset | ResetHint::NotReset
                                ) =>
                            {
                                let mut c = (*h).clone();
                                c.counter_reset_hint = ResetHint::Unknown;
                                out[i].hpoints.push((ts, std::sync::Arc::new(c)));
                            }
                            Some(h) => out[i].hpoints.push((ts, h)),
                            None => out[i].points.push((ts, s.v)),
                        }
                    }
                }
                other => {
                    return Err(Error::exec(format!(
                        "subquery is only allowed on instant vector, got {}",
                        other.type_name()
                    )))
                }
            }
            ts = match ts.checked_add(step) {
                Some(n) => n,
                None => break,
            };
        }
        Ok(out)
    }
}
