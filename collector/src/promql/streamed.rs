//! Aggregations over every step of a range query, computed before the step-by-step
//! evaluation: series by series, the series read from the TSDB a batch at a time. Of a
//! range function of a selector (`sum by (instance) (rate(x[5m]))`) or of a plain
//! selector (`count by (__name__) ({job="node"})`).
//!
//! ```text
//! series (by labels) ─ batch of BATCH ─▶ decode ─▶ value at every step ─▶ fold into
//!                     (the query's thread)         (a second thread,     grid[group][step]
//!                                                   split over 2)
//! step t of the evaluation: the aggregation node answers from grid[·][t]
//! ```
//! Preloading every selected series held a day of samples of thousands of series at
//! once (a query's peak memory), and the step path built, interned and grouped an
//! instant vector of all of them at every step. Here only batches of samples are held,
//! and a group's cell gets its series' values in the same order as the step path adds
//! them (series sorted by labels, Kahan sums alike), so the results are the same bits.
//! The query's sample limit bounds the samples of one batch (as Prometheus'
//! `query.max-samples`, "loaded into memory at once"); two batches are held at once,
//! one being computed while the next is read.
//!
//! A series' value at a step is what the step path computes: the range function of its
//! window (`RangeSteps::run`), or the instant selector's sample
//! (`selectors::series_instants`, the same pick as `selectors::instant_with`). `count`
//! and `group` of a selector need no values, only where stale markers end a series:
//! they read timestamps only (`SeriesReader::read_timestamps`).
//!
//! Used for `sum`, `avg`, `min`, `max`, `count` and `group` without a parameter, over a
//! range function whose other arguments are number literals or over a vector selector,
//! outside subqueries (whose steps are not the query's). Anything else, native
//! histograms among the values, or more groups × steps than `MAX_CELLS`, takes the step
//! path.

use super::aggregations::{avg_add, group_labels, grouping};
use super::eval::Evaluator;
use super::functions::{kahan_inc, split_series, RangeSteps};
use super::selectors::{self, db_err, matcher_sets, LoadedSeries, TOO_MANY_SAMPLES};
use super::value::{Hist, Labels, Sample, Vector};
use super::{Error, Result};
use crate::storage::SeriesReader;
use promql_parser::parser::token::{T_AVG, T_COUNT, T_GROUP, T_MAX, T_MIN, T_SUM};
use promql_parser::parser::{AggregateExpr, Expr, VectorSelector};
use std::collections::HashMap;

/// Series read from the TSDB at a time (fewer in tests, so that they see several).
/// Two batches are held at once (one read while the one before is computed): at 512,
/// the query phase's peak RSS on the 10k × 24 h bench went from 167 to 279 MiB; at 256
/// it is 167 again, for the same latency (`bench/RESULTS.md`, query section).
const BATCH: usize = if cfg!(test) { 64 } else { 256 };

/// Most cells (groups × steps) of one aggregation.
const MAX_CELLS: usize = 1 << 22;

/// One series' values: `(step index, value)` for the steps where it has one.
type StepValues = Vec<(u32, f64)>;

/// One group at one step: the running value, its Kahan compensation, samples seen, and
/// for `avg`, whether `value` went from a sum to a running mean (the sum overflowed).
#[derive(Debug, Clone, Copy, Default)]
struct Cell {
    value: f64,
    /// `avg` past an overflow: the running mean (see `aggregations::avg_add`).
    mean: f64,
    kahan: f64,
    n: u32,
    incremental: bool,
}

/// An aggregation's result at every step of the query.
#[derive(Debug)]
pub struct Grid {
    op: u16,
    start: i64,
    step: i64,
    steps: usize,
    /// Group labels and whether the metric name is to be dropped.
    groups: Vec<(Labels, bool)>,
    /// Group-major: `cells[g * steps + k]`.
    cells: Vec<Cell>,
}

impl Grid {
    /// The aggregation's instant vector at `t`; `None` when `t` is not a step.
    pub fn at(&self, t: i64) -> Option<Vector> {
        if self.step <= 0 || t < self.start || (t - self.start) % self.step != 0 {
            return None;
        }
        let k = usize::try_from((t - self.start) / self.step).ok()?;
        if k >= self.steps {
            return None;
        }
        let mut out = Vec::new();
        for (g, (labels, drop_name)) in self.groups.iter().enumerate() {
            let c = self.cells[g * self.steps + k];
            if c.n == 0 {
                continue;
            }
            let v = match self.op {
                T_SUM => c.value + c.kahan,
                T_AVG if c.incremental => c.mean + c.kahan,
                T_AVG => (c.value + c.kahan) / c.n as f64,
                T_COUNT => c.n as f64,
                T_GROUP => 1.0,
                _ => c.value,
            };
            out.push(Sample {
                labels: labels.clone(),
                t,
                v,
                h: None,
                drop_name: *drop_name,
            });
        }
        Some(out)
    }
}

/// The aggregations of one query computed here, by node address.
#[derive(Debug, Default)]
pub struct Streamed {
    grids: HashMap<usize, Grid>,
}

impl Streamed {
    /// The grid of aggregation node `a`, if it was computed here.
    pub fn get(&self, a: &AggregateExpr) -> Option<&Grid> {
        self.grids.get(&(a as *const AggregateExpr as usize))
    }

    /// Addresses of the nodes computed here (their selectors need no preload).
    pub fn nodes(&self) -> impl Iterator<Item = usize> + '_ {
        self.grids.keys().copied()
    }
}

fn unparen(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unparen(&p.expr),
        other => other,
    }
}

/// The aggregation nodes of `e` this module computes, outside subqueries.
fn candidates<'e>(e: &'e Expr, out: &mut Vec<&'e AggregateExpr>) {
    match e {
        Expr::Aggregate(a) => {
            let op = a.op.id();
            if a.param.is_none()
                && matches!(op, T_SUM | T_AVG | T_MIN | T_MAX | T_COUNT | T_GROUP)
                && matches!(unparen(&a.expr), Expr::Call(_) | Expr::VectorSelector(_))
            {
                out.push(a);
            } else {
                if let Some(p) = &a.param {
                    candidates(p, out);
                }
                candidates(&a.expr, out);
            }
        }
        Expr::Unary(u) => candidates(&u.expr, out),
        Expr::Binary(b) => {
            candidates(&b.lhs, out);
            candidates(&b.rhs, out);
        }
        Expr::Paren(p) => candidates(&p.expr, out),
        Expr::Call(c) => c.args.args.iter().for_each(|a| candidates(a, out)),
        // A subquery evaluates its inner expression at its own steps.
        Expr::Subquery(_)
        | Expr::VectorSelector(_)
        | Expr::MatrixSelector(_)
        | Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::Extension(_) => {}
    }
}

/// Computes every aggregation of `expr` this module can, for the steps of `ev` (an
/// evaluator over no preloaded data: only its times, limits and literals are used).
pub fn compute(
    db: &dyn SeriesReader,
    expr: &Expr,
    ev: &Evaluator<'_>,
    max_samples: usize,
) -> Result<Streamed> {
    let mut out = Streamed::default();
    if ev.step <= 0 {
        return Ok(out);
    }
    let mut nodes = Vec::new();
    candidates(expr, &mut nodes);
    for a in nodes {
        if let Some(g) = aggregate(db, a, ev, max_samples)? {
            out.grids.insert(a as *const AggregateExpr as usize, g);
        }
    }
    Ok(out)
}

/// What an aggregation here aggregates, walked one series at a time over all steps.
enum Source<'e> {
    /// A range function of a range selector.
    Range(RangeSteps<'e>),
    /// A vector selector: at each step, its sample within the lookback delta at or
    /// before the step's time moved by `@` and `offset` (`ends`).
    Instant {
        vs: &'e VectorSelector,
        ends: Vec<i64>,
        lookback: i64,
    },
}

impl<'e> Source<'e> {
    /// The source of argument `e`; `None` when it is neither shape, or a range
    /// function with invalid parameters (the step path reports them as it always did).
    fn new(ev: &Evaluator<'_>, e: &'e Expr) -> Option<Source<'e>> {
        match unparen(e) {
            Expr::Call(c) => RangeSteps::new(ev, c)?.ok().map(Source::Range),
            Expr::VectorSelector(vs) => {
                let steps = (ev.end - ev.start) / ev.step + 1;
                let times: Vec<i64> = (0..steps).map(|k| ev.start + k * ev.step).collect();
                Some(Source::Instant {
                    vs,
                    ends: selectors::window_ends(vs, &times, ev.start, ev.end),
                    lookback: ev.lookback,
                })
            }
            _ => None,
        }
    }

    fn selector(&self) -> &VectorSelector {
        match self {
            Source::Range(rs) => &rs.ms.vs,
            Source::Instant { vs, .. } => vs,
        }
    }

    fn steps(&self) -> usize {
        match self {
            Source::Range(rs) => rs.times.len(),
            Source::Instant { ends, .. } => ends.len(),
        }
    }

    /// The sample times `[mint, maxt]` every step's value needs (windows are
    /// left-open: nothing at their start itself, as preload).
    fn span(&self) -> (i64, i64) {
        let (lo, hi, back) = match self {
            Source::Range(rs) => {
                let (lo, hi) = rs.span();
                (lo, hi, selectors::dur_ms(&rs.ms.range))
            }
            Source::Instant { ends, lookback, .. } => {
                let lo = ends.iter().copied().min().unwrap_or(0);
                let hi = ends.iter().copied().max().unwrap_or(0);
                (lo, hi, *lookback)
            }
        };
        (lo.saturating_sub(back).saturating_add(1), hi)
    }

    /// Whether the values lose their metric name (as the step path marks them).
    fn drop_name(&self) -> bool {
        match self {
            Source::Range(rs) => !rs.keep_name(),
            Source::Instant { .. } => false,
        }
    }

    /// Calls `f(k, value, histogram)` for every step `k` at which `s` has a value.
    fn run(
        &self,
        s: &LoadedSeries,
        bufs: &mut selectors::WindowBufs,
        f: impl FnMut(usize, f64, Option<Hist>),
    ) {
        match self {
            Source::Range(rs) => rs.run(s, bufs, f),
            Source::Instant { ends, lookback, .. } => {
                selectors::series_instants(s, ends, *lookback, f)
            }
        }
    }
}

/// One aggregation's grid, or `None` when it is left to the step path.
fn aggregate(
    db: &dyn SeriesReader,
    a: &AggregateExpr,
    ev: &Evaluator<'_>,
    max_samples: usize,
) -> Result<Option<Grid>> {
    let Some(src) = Source::new(ev, &a.expr) else {
        return Ok(None);
    };
    let vs = src.selector();
    let sets = matcher_sets(vs.name.as_deref(), &vs.matchers)?;
    let [set] = sets.as_slice() else {
        return Ok(None);
    };
    let op = a.op.id();
    let (without, names) = grouping(a);
    let steps = src.steps();
    let (mint, maxt) = src.span();
    // `count` and `group` of a selector only ask whether a series has a sample.
    let times_only = matches!(op, T_COUNT | T_GROUP) && matches!(src, Source::Instant { .. });
    let series = db.select_labels(set);
    let grid = Grid {
        op,
        start: ev.start,
        step: ev.step,
        steps,
        groups: Vec::new(),
        cells: Vec::new(),
    };
    let fold_in = Folder {
        grid,
        index: HashMap::new(),
        key: Vec::new(),
        without,
        names: &names,
        drop_name: src.drop_name(),
    };
    let src = &src;
    // Two stages, one batch apart: this thread reads batch i + 1 (the reader's calls
    // stay on the thread that answers the query: its warnings are per thread) while
    // the computing thread turns batch i into values at every step and folds them in
    // series order. One after the other, each stage left a core idle: reading and
    // computing are each about half of such a query.
    let (to_compute, batches) = std::sync::mpsc::sync_channel::<Batch<'_>>(0);
    std::thread::scope(|sc| {
        let computing = sc.spawn(move || compute_batches(src, steps, fold_in, batches));
        let read = read_batches(
            db,
            &series,
            (mint, maxt),
            times_only,
            max_samples,
            ev,
            &to_compute,
        );
        drop(to_compute);
        let computed = computing
            .join()
            .unwrap_or_else(|_| Err(Error::exec("query evaluation thread panicked")));
        // A read error stands unless the computing side stopped first (its answer
        // ended the reads).
        match (read, computed) {
            (Err(e), Ok(Some(_))) => Err(e),
            (_, computed) => computed,
        }
    })
}

/// One batch of series read: their labels (TSDB encoding) and samples, in label order.
type Batch<'s> = (Vec<&'s [u8]>, Vec<LoadedSeries>);

/// Reads the samples of `series` a batch at a time and hands each batch to `out`;
/// returns when all are read, when the computing side hung up, or on an error.
fn read_batches<'s>(
    db: &dyn SeriesReader,
    series: &'s [(crate::storage::reader::SeriesHandle, Box<[u8]>)],
    (mint, maxt): (i64, i64),
    times_only: bool,
    max_samples: usize,
    ev: &Evaluator<'_>,
    out: &std::sync::mpsc::SyncSender<Batch<'s>>,
) -> Result<()> {
    for batch in series.chunks(BATCH) {
        ev.check_deadline()?;
        let refs: Vec<_> = batch.iter().map(|s| s.0).collect();
        let mut held = 0usize;
        let data = if times_only {
            db.read_timestamps(&refs, mint, maxt, &mut held)
        } else {
            db.read_samples(&refs, mint, maxt, &mut held)
        }
        .map_err(db_err)?;
        if held > max_samples {
            return Err(Error::exec(TOO_MANY_SAMPLES));
        }
        let mut encoded = Vec::with_capacity(batch.len());
        let loaded: Vec<LoadedSeries> = batch
            .iter()
            .zip(data)
            .filter(|(_, (f, h))| !f.is_empty() || !h.is_empty())
            .map(|((_, l), (samples, histograms))| {
                encoded.push(&l[..]);
                LoadedSeries {
                    // Not read by the range functions; the group's labels come from
                    // `encoded`.
                    labels: Labels::default(),
                    samples,
                    histograms,
                }
            })
            .collect();
        if out.send((encoded, loaded)).is_err() {
            break;
        }
    }
    Ok(())
}

/// The grid being filled and how groups are found.
struct Folder<'n> {
    grid: Grid,
    /// Groups by the group's labels in the TSDB's encoding (`group_key`): a series
    /// decoded into `Labels` only when it opens a new group (decoding every series
    /// was a tenth of the query, in small allocations).
    index: HashMap<Box<[u8]>, usize>,
    key: Vec<u8>,
    without: bool,
    names: &'n [String],
    drop_name: bool,
}

/// Computes each batch from `batches` and folds it into the grid, in order; `None`
/// (the step path decides) on a native histogram or too many cells.
fn compute_batches(
    src: &Source<'_>,
    steps: usize,
    mut fo: Folder<'_>,
    batches: std::sync::mpsc::Receiver<Batch<'_>>,
) -> Result<Option<Grid>> {
    for (encoded, loaded) in batches {
        // Each series' values at every step, on the cores; folded below in order.
        let run = |from: usize, to: usize| -> Result<Option<Vec<StepValues>>> {
            let mut bufs = (Vec::new(), Vec::new());
            let mut rows = Vec::with_capacity(to - from);
            for s in &loaded[from..to] {
                let mut row = Vec::with_capacity(steps);
                let mut hist = false;
                src.run(s, &mut bufs, |k, v, h| {
                    hist |= h.is_some();
                    row.push((k as u32, v));
                });
                if hist {
                    return Ok(None);
                }
                rows.push(row);
            }
            Ok(Some(rows))
        };
        let parts = split_series(loaded.len(), steps, &run);
        drop(loaded);
        let mut i = 0;
        for part in parts {
            let Some(rows) = part? else {
                return Ok(None);
            };
            for row in rows {
                let enc = encoded[i];
                i += 1;
                if row.is_empty() {
                    continue;
                }
                group_key(enc, fo.without, fo.names, &mut fo.key);
                let g = match fo.index.get(fo.key.as_slice()) {
                    Some(&g) => g,
                    None => {
                        let n = fo.grid.groups.len();
                        if (n + 1).saturating_mul(steps) > MAX_CELLS {
                            return Ok(None);
                        }
                        let gl = group_labels(&Labels::from_encoded(enc), fo.without, fo.names);
                        fo.grid.groups.push((gl, fo.drop_name));
                        fo.grid.cells.resize((n + 1) * steps, Cell::default());
                        fo.index.insert(fo.key.as_slice().into(), n);
                        n
                    }
                };
                let cells = &mut fo.grid.cells[g * steps..(g + 1) * steps];
                for (k, f) in row {
                    fold(fo.grid.op, &mut cells[k as usize], f);
                }
            }
        }
    }
    Ok(Some(fo.grid))
}

/// The labels of the group of the series `enc` (TSDB encoding), in that encoding, into
/// `key`: those named in `names` (`by`), or all but those and the metric name
/// (`without`), in name order, each string length-prefixed. Equal keys are equal
/// [`group_labels`] of the decoded set.
fn group_key(enc: &[u8], without: bool, names: &[String], key: &mut Vec<u8>) {
    key.clear();
    for (n, v) in crate::tsdb::labels::iter(enc) {
        let listed = names.iter().any(|k| k == n);
        let take = if without {
            !listed && n != super::value::METRIC_NAME
        } else {
            listed
        };
        if take {
            for s in [n, v] {
                crate::tsdb::labels::put_uvarint(key, s.len() as u64);
                key.extend_from_slice(s.as_bytes());
            }
        }
    }
}

/// Adds float `f` to a group's cell as the step path's aggregation does
/// (`aggregations::simple`).
fn fold(op: u16, c: &mut Cell, f: f64) {
    if c.n == 0 {
        *c = Cell {
            value: f,
            mean: f,
            kahan: 0.0,
            n: 1,
            incremental: false,
        };
        return;
    }
    c.n += 1;
    match op {
        T_SUM => (c.value, c.kahan) = kahan_inc(f, c.value, c.kahan),
        T_AVG => avg_add(
            &mut c.value,
            &mut c.mean,
            &mut c.kahan,
            &mut c.incremental,
            f64::from(c.n),
            f,
        ),
        T_MAX if c.value < f || c.value.is_nan() => c.value = f,
        T_MIN if c.value > f || c.value.is_nan() => c.value = f,
        _ => {}
    }
}
