//! The entry point: parses a query, plans and preloads its selectors, evaluates it
//! at one time (instant query) or at every step (range query), within limits.

use super::eval::Evaluator;
use super::intern::{SITE_DROP_NAME, SITE_KEEP};
use super::selectors::{plan, preload, Plan, PlanCtx, Preloaded};
use super::value::{Hist, Labels, MatrixRow, QueryValue, Value, Vector, METRIC_NAME};
use super::{Error, Result};
use crate::storage::SeriesReader;
use promql_parser::parser::value::ValueType;
use promql_parser::parser::Expr;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Most points a range query may return per series.
pub const MAX_POINTS: i64 = 11_000;

/// Limits and settings of the engine.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Lookback delta (Prometheus' default: 5m).
    pub lookback_ms: i64,
    /// Step of subqueries that give none (Prometheus' default evaluation interval: 1m).
    pub default_subquery_step_ms: i64,
    /// Most samples a query may hold.
    pub max_samples: usize,
    /// How long a query may run.
    pub timeout: Duration,
    /// Range queries compute range functions of selectors, and aggregations of them,
    /// series by series over all steps (`functions::range_rows`, `streamed.rs`)
    /// instead of step by step. Off only in tests that compare the two.
    pub series_major: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_ms: 5 * 60 * 1000,
            default_subquery_step_ms: 60 * 1000,
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
            series_major: true,
        }
    }
}

/// Evaluates PromQL over a [`SeriesReader`] (one dynamic call per selector or batch
/// of series, never per sample).
pub struct Engine<'a> {
    db: &'a dyn SeriesReader,
    opts: EngineOptions,
}

/// Parses a query into an expression (`bad_data` errors).
pub fn parse(q: &str) -> Result<Expr> {
    parse_guarded(q).map_err(|e| Error::BadData(format!("invalid parameter \"query\": {e}")))
}

/// Runs promql-parser, turning a panic inside it into a parse error.
///
/// promql-parser 0.11.1 panics on number durations out of `Duration`'s range
/// (`x[5e22]`, `x offset 1e400`: `Duration::from_secs_f64` in its grammar), found by
/// fuzz/fuzz_targets/promql_eval.rs. Without this guard the request's task dies and
/// the client sees a dropped connection instead of a 400. The parser holds no shared
/// state, so unwinding out of it leaves nothing half-changed (hence AssertUnwindSafe).
///
/// Byte escapes above 0x80 in string literals are first read as Go reads them
/// (see `string_escapes.rs`).
///
/// Before any of that, the text is held to the process-wide length and depth limits
/// (`limits.rs`): the parser and everything that walks its tree recurse once per
/// level, and a stack overflow would abort the process.
pub fn parse_guarded(q: &str) -> std::result::Result<Expr, String> {
    super::limits::check(q)?;
    let q = super::string_escapes::rewrite(q)?;
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        promql_parser::parser::parse(&q)
    })) {
        Ok(r) => r.map_err(explain_regex_error),
        Err(_) => {
            Err("a number in the query is out of range (too large or not finite)".to_string())
        }
    }
}

/// promql-parser says only "illegal regex for X" when a matcher's regex does not
/// compile; the regex crate's own error says why, e.g. that the compiled program is
/// over its size limit (10 MiB), which bounds what one regex can cost.
fn explain_regex_error(msg: String) -> String {
    let Some(pattern) = msg.strip_prefix("illegal regex for ") else {
        return msg;
    };
    match regex::Regex::new(&format!("^(?:{pattern})$")) {
        Err(regex::Error::CompiledTooBig(limit)) => format!(
            "{msg}: the compiled regular expression is over the size limit of {limit} bytes"
        ),
        Err(e) => format!(
            "{msg}: {}",
            e.to_string().lines().last().unwrap_or("").trim()
        ),
        Ok(_) => msg,
    }
}

impl<'a> Engine<'a> {
    /// An engine over `db`, with `max_samples` taken from the reader's limit.
    pub fn new(db: &'a dyn SeriesReader) -> Engine<'a> {
        let opts = EngineOptions {
            max_samples: db.max_query_samples(),
            ..EngineOptions::default()
        };
        Engine { db, opts }
    }

    /// An engine with explicit options.
    pub fn with_options(db: &'a dyn SeriesReader, opts: EngineOptions) -> Engine<'a> {
        Engine { db, opts }
    }

    /// Runs an instant query at `t` (ms).
    pub fn instant(&self, q: &str, t: i64) -> Result<QueryValue> {
        let expr = parse(q)?;
        self.instant_expr(&expr, t)
    }

    /// Runs a parsed instant query at `t` (ms).
    pub fn instant_expr(&self, expr: &Expr, t: i64) -> Result<QueryValue> {
        let deadline = Instant::now() + self.opts.timeout;
        let ctx = PlanCtx {
            start: t,
            end: t,
            lookback: self.opts.lookback_ms,
        };
        let mut p = Plan::default();
        plan(expr, t, t, &ctx, &mut p);
        let data = preload(self.db, &p, self.opts.max_samples)?;
        let ev = self.evaluator(&data, t, t, 0, deadline);
        Ok(match ev.eval(expr, t)? {
            Value::Scalar(v) => QueryValue::Scalar(t, v),
            Value::String(s) => QueryValue::String(t, s),
            Value::Vector(v) => QueryValue::Vector(
                cleanup(&ev, v)?
                    .into_iter()
                    .map(|(l, v, h)| (l, t, v, h))
                    .collect(),
            ),
            Value::Matrix(m) => {
                let mut out: Vec<MatrixRow> = m
                    .into_iter()
                    .map(|mut s| {
                        if s.drop_name {
                            s.labels.del(METRIC_NAME);
                        }
                        (s.labels, s.points, s.hpoints)
                    })
                    .collect();
                out.sort_by(|a, b| a.0.cmp(&b.0));
                if out.windows(2).any(|w| w[0].0 == w[1].0) {
                    return Err(Error::exec(SAME_LABELSET));
                }
                QueryValue::Matrix(out)
            }
        })
    }

    /// Runs a range query from `start` to `end` (inclusive) every `step` (all ms).
    pub fn range(&self, q: &str, start: i64, end: i64, step: i64) -> Result<QueryValue> {
        let expr = parse(q)?;
        self.range_expr(&expr, start, end, step)
    }

    /// Runs a parsed range query.
    pub fn range_expr(&self, expr: &Expr, start: i64, end: i64, step: i64) -> Result<QueryValue> {
        if step <= 0 {
            return Err(Error::BadData(
                "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        if end < start {
            return Err(Error::BadData(
                "end timestamp must not be before start time".into(),
            ));
        }
        if end.saturating_sub(start) / step > MAX_POINTS {
            return Err(Error::BadData(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"
                    .into(),
            ));
        }
        match expr.value_type() {
            ValueType::Scalar | ValueType::Vector => {}
            other => {
                let name = match other {
                    ValueType::Matrix => "range vector",
                    _ => "string",
                };
                return Err(Error::BadData(format!(
                    "invalid expression type \"{name}\" for range query, must be Scalar or instant Vector"
                )));
            }
        }
        let deadline = Instant::now() + self.opts.timeout;
        let ctx = PlanCtx {
            start,
            end,
            lookback: self.opts.lookback_ms,
        };
        // Aggregations of a range function: all steps first, streaming the series.
        let nothing = Preloaded::default();
        let ev0 = self.evaluator(&nothing, start, end, step, deadline);
        let streamed = if self.opts.series_major {
            super::streamed::compute(self.db, expr, &ev0, self.opts.max_samples)?
        } else {
            super::streamed::Streamed::default()
        };
        let mut p = Plan::default();
        p.skip.extend(streamed.nodes());
        plan(expr, start, end, &ctx, &mut p);
        let data = preload(self.db, &p, self.opts.max_samples)?;
        // A range function of a selector: series by series, all steps at once.
        let top = super::functions::unwrap_paren(expr);
        if self.opts.series_major {
            let ev = self.evaluator(&data, start, end, step, deadline);
            if let Expr::Call(c) = top {
                if let Some(rows) = super::functions::range_rows(&ev, c, self.opts.max_samples) {
                    return Ok(QueryValue::Matrix(rows?));
                }
            }
            // Arithmetic, comparisons and topk of those: series by series too.
            if let Some(rows) = super::series_rows::matrix(&ev, top, self.opts.max_samples) {
                return Ok(QueryValue::Matrix(rows?));
            }
        }
        // Steps are independent: on a large query, consecutive runs of steps go to
        // separate threads (each with its own evaluator, whose cursors walk forward),
        // and their results are appended in step order.
        let steps = (end - start) / step + 1;
        let loaded: usize = data.series_count();
        let threads = if (steps as usize).saturating_mul(loaded.max(1)) < PARALLEL_WORK {
            1
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .min(steps as usize / 16)
                .max(1)
        };
        let points = AtomicUsize::new(0);
        let per = (steps + threads as i64 - 1) / threads as i64;
        let run = |k: i64| {
            let from = start + k * per * step;
            let to = (from + (per - 1) * step).min(end);
            self.eval_steps(
                expr, &data, &streamed, start, end, step, from, to, deadline, &points,
            )
        };
        let parts: Vec<Result<Rows>> = if threads == 1 {
            vec![run(0)]
        } else {
            std::thread::scope(|sc| {
                // These threads walk the tree too: as big a stack as the pool's.
                let handles: Vec<_> = (1..threads as i64)
                    .map(|k| {
                        std::thread::Builder::new()
                            .stack_size(super::pool::DEFAULT_STACK_BYTES)
                            .spawn_scoped(sc, move || run(k))
                    })
                    .collect();
                let mut parts = vec![run(0)];
                for h in handles {
                    parts.push(match h {
                        Ok(h) => h.join().unwrap_or_else(|_| {
                            Err(Error::exec("query evaluation thread panicked"))
                        }),
                        Err(e) => Err(Error::Internal(format!(
                            "cannot start a query evaluation thread: {e}"
                        ))),
                    });
                }
                parts
            })
        };
        // Each thread interned its own label sets: rows of the parts meet by value.
        let mut out: BTreeMap<Labels, Points> = BTreeMap::new();
        for part in parts {
            for (l, (f, h)) in part?.rows {
                let e = out.entry(l).or_default();
                e.0.extend(f);
                e.1.extend(h);
            }
        }
        Ok(QueryValue::Matrix(
            out.into_iter().map(|(l, (f, h))| (l, f, h)).collect(),
        ))
    }
}

impl Engine<'_> {
    /// An evaluator over `data` for the steps `start..=end` with this engine's options.
    fn evaluator<'d>(
        &self,
        data: &'d Preloaded,
        start: i64,
        end: i64,
        step: i64,
        deadline: Instant,
    ) -> Evaluator<'d> {
        Evaluator::new(
            data,
            start,
            end,
            step,
            self.opts.lookback_ms,
            self.opts.default_subquery_step_ms,
            deadline,
            self.opts.max_samples,
        )
    }

    /// Evaluates the steps `from..=to` of a range query over `start..=end`.
    #[allow(clippy::too_many_arguments)]
    fn eval_steps(
        &self,
        expr: &Expr,
        data: &Preloaded,
        streamed: &super::streamed::Streamed,
        start: i64,
        end: i64,
        step: i64,
        from: i64,
        to: i64,
        deadline: Instant,
        points: &AtomicUsize,
    ) -> Result<Rows> {
        let ev = self
            .evaluator(data, start, end, step, deadline)
            .with_streamed(streamed);
        let mut out = Rows::default();
        let mut t = from;
        while t <= to {
            ev.check_deadline()?;
            match ev.eval(expr, t)? {
                Value::Scalar(v) => out.row(Labels::default()).0.push((t, v)),
                Value::Vector(v) => {
                    let n = points.fetch_add(v.len(), Ordering::Relaxed) + v.len();
                    if n > self.opts.max_samples {
                        return Err(Error::exec(super::selectors::TOO_MANY_SAMPLES));
                    }
                    for (l, v, h) in cleanup(&ev, v)? {
                        let e = out.row(l);
                        match h {
                            Some(h) => e.1.push((t, h)),
                            None => e.0.push((t, v)),
                        }
                    }
                }
                other => {
                    return Err(Error::BadData(format!(
                        "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                        other.type_name()
                    )))
                }
            }
            t = match t.checked_add(step) {
                Some(n) => n,
                None => break,
            };
        }
        Ok(out)
    }
}

/// Below this many (steps × series read), a range query runs on one thread.
const PARALLEL_WORK: usize = 200_000;

/// Float and histogram points of one result series of a range query.
type Points = (Vec<(i64, f64)>, Vec<(i64, Hist)>);

/// Prometheus' message for a result with two equal label sets.
pub const SAME_LABELSET: &str = "vector cannot contain metrics with the same labelset";

/// The rows of a range query's result as one thread builds them, found by the address
/// of their interned labels (one `Arc` per distinct set, see `intern.rs`).
#[derive(Default)]
struct Rows {
    index: hashbrown::HashMap<usize, usize>,
    rows: Vec<(Labels, Points)>,
}

impl Rows {
    /// The row of `l`, which must be interned by this thread's evaluator.
    fn row(&mut self, l: Labels) -> &mut Points {
        let n = self.rows.len();
        let i = *self.index.entry(l.addr()).or_insert(n);
        if i == n {
            self.rows.push((l, Points::default()));
        }
        &mut self.rows[i].1
    }
}

/// Drops metric names marked for removal, interns the label sets and rejects
/// duplicate label sets.
fn cleanup(ev: &Evaluator<'_>, v: Vector) -> Result<Vec<(Labels, f64, Option<Hist>)>> {
    let mut interner = ev.interner.borrow_mut();
    let out: Vec<(Labels, f64, Option<Hist>)> = v
        .into_iter()
        .map(|s| {
            let l = if s.drop_name {
                interner.derive(SITE_DROP_NAME, &s.labels, Labels::without_name)
            } else {
                interner.derive(SITE_KEEP, &s.labels, Labels::clone)
            };
            (l, s.v, s.h)
        })
        .collect();
    if out.len() > 1 {
        // Interned: equal sets have one address.
        let mut seen = hashbrown::HashSet::with_capacity(out.len());
        for (l, _, _) in &out {
            if !seen.insert(l.addr()) {
                return Err(Error::exec(SAME_LABELSET));
            }
        }
    }
    Ok(out)
}
