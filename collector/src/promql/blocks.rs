//! Range functions of a range query, evaluated a block of steps at a time, series by
//! series.
//!
//! The tree walk evaluates a range query one step at a time. For `rate(x[5m])` that
//! meant visiting every series at every step: 2,700 series × 1,400 steps touched each
//! series' samples cold 1,400 times. Here the first step of a block computes the
//! function for the next [`BLOCK_STEPS`] steps, one series after the other (its samples
//! read once, in order), and the following steps of the block only read the results.
//!
//! ```text
//!            step t0   t0+1   …   t0+n-1
//! series 0   v         v          –          computed in one walk over series 0
//! series 1   v         –          v
//! ```
//! Used only where a step's value depends on nothing but the step's time: the call's
//! other arguments are number literals, and the step lies on the query's own grid.

use super::eval::Evaluator;
use super::functions::rate_windows;
use super::selectors::{dur_ms, series_windows, window_ends};
use super::value::{Hist, Sample};
use promql_parser::parser::MatrixSelector;

/// Most steps of one block.
pub const BLOCK_STEPS: usize = 64;
/// Most results held by one block (series × steps): bounds its memory (~32 MiB).
const BLOCK_CELLS: usize = 1 << 20;

/// The results of one call node for the steps `t0, t0 + step, …` (`steps` of them):
/// per series, one cell per step.
#[derive(Debug, Default)]
pub struct Block {
    t0: i64,
    steps: usize,
    cells: Vec<Option<(f64, Option<Hist>)>>,
}

/// The value at one window: floats, histograms, the window `(start, end, range)` and
/// the evaluation time.
pub type WindowFn<'f> =
    dyn Fn(&[(i64, f64)], &[(i64, Hist)], (i64, i64, i64), i64) -> Option<(f64, Option<Hist>)> + 'f;

/// The instant vector of the call node `key` (a function of the range selector `ms`)
/// at step `t`, from the node's block, computing the block when `t` is outside it.
/// `None` when `t` is not on the query's grid (the caller evaluates it step by step).
pub fn at_step(
    ev: &Evaluator<'_>,
    key: usize,
    ms: &MatrixSelector,
    t: i64,
    drop_name: bool,
    value: &WindowFn<'_>,
    increase: Option<(bool, bool)>,
) -> Option<Vec<Sample>> {
    if ev.step <= 0 || t < ev.start || t > ev.end || (t - ev.start) % ev.step != 0 {
        return None;
    }
    let series = ev.data.get(&ms.vs);
    let mut blocks = ev.blocks.borrow_mut();
    let b = blocks.entry(key).or_default();
    let inside = b.steps > 0 && t >= b.t0 && (t - b.t0) / ev.step < b.steps as i64;
    if !inside {
        let left = usize::try_from((ev.end - t) / ev.step + 1).unwrap_or(1);
        let steps = left
            .min(BLOCK_STEPS)
            .min((BLOCK_CELLS / series.len().max(1)).max(1));
        compute(ev, b, ms, t, steps, (value, increase));
    }
    let k = ((t - b.t0) / ev.step) as usize;
    let mut out = Vec::new();
    for (i, s) in series.iter().enumerate() {
        if let Some((v, h)) = &b.cells[i * b.steps + k] {
            out.push(Sample {
                labels: s.labels.clone(),
                t,
                v: *v,
                h: h.clone(),
                drop_name,
            });
        }
    }
    Some(out)
}

/// Fills `b` with the results for `steps` steps from `t0`, series by series.
fn compute(
    ev: &Evaluator<'_>,
    b: &mut Block,
    ms: &MatrixSelector,
    t0: i64,
    steps: usize,
    (value, increase): (&WindowFn<'_>, Option<(bool, bool)>),
) {
    let series = ev.data.get(&ms.vs);
    let range = dur_ms(&ms.range);
    let times: Vec<i64> = (0..steps as i64).map(|k| t0 + k * ev.step).collect();
    let ends = window_ends(&ms.vs, &times, ev.start, ev.end);
    b.t0 = t0;
    b.steps = steps;
    b.cells.clear();
    b.cells.resize(series.len() * steps, None);
    let mut bufs = (Vec::new(), Vec::new());
    for (i, s) in series.iter().enumerate() {
        let row = &mut b.cells[i * steps..(i + 1) * steps];
        if let Some(kind) = increase {
            let (samples, hists) = (&s.samples, &s.histograms);
            if rate_windows(samples, hists, &ends, range, kind, |k, v| {
                row[k] = Some((v, None))
            }) {
                continue;
            }
        }
        series_windows(s, &ends, range, &mut bufs, |k, points, hpoints| {
            let w = (ends[k].saturating_sub(range), ends[k], range);
            row[k] = value(points, hpoints, w, times[k]);
        });
    }
}
