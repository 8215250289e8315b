//! Selectors: which samples a vector or range selector sees at an evaluation time.
//!
//! ```text
//! metric offset 5m @ 100     eval time t' = (@ time or t) − offset
//! metric                      newest sample in (t' − lookback, t'], unless it is a stale marker
//! metric[5m]                  every sample in (t' − 5m, t'], stale markers left out
//! ```
//! Before evaluation, [`plan`] walks the tree once and records, per selector, the
//! time span all evaluation steps need; each selector then reads its series from the
//! TSDB once ([`Preloaded`]), not once per step.

use super::value::{Hist, Labels, Sample, Series};
use super::{Error, Result};
use crate::storage::{ErrorKind, SeriesReader, StorageError};
use crate::tsdb::index::{MatchOp, Matcher};
use calm_wire::value::is_stale_nan;
use promql_parser::label::{MatchOp as PMatchOp, Matcher as PMatcher, Matchers};
use promql_parser::parser::{AggregateExpr, AtModifier, Expr, Offset, VectorSelector};
use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// One series read for a selector.
#[derive(Debug, Clone)]
pub struct LoadedSeries {
    /// Labels, decoded.
    pub labels: Labels,
    /// Samples sorted by time, stale markers included.
    pub samples: Vec<(i64, f64)>,
    /// Native histogram samples sorted by time (at other times than `samples`).
    pub histograms: Vec<(i64, Hist)>,
}

/// The series each selector of a query read, keyed by the selector's address.
#[derive(Debug, Default)]
pub struct Preloaded {
    data: HashMap<usize, Vec<LoadedSeries>>,
    /// Samples read in total.
    pub total_samples: usize,
}

/// The key of a selector node.
pub fn key(vs: &VectorSelector) -> usize {
    vs as *const VectorSelector as usize
}

impl Preloaded {
    /// The series read for `vs` (empty when it was never planned).
    pub fn get(&self, vs: &VectorSelector) -> &[LoadedSeries] {
        self.data.get(&key(vs)).map(|v| v.as_slice()).unwrap_or(&[])
    }

    /// Series read, over all selectors.
    pub fn series_count(&self) -> usize {
        self.data.values().map(Vec::len).sum()
    }
}

/// Milliseconds of a `SystemTime`, which may lie before the epoch.
pub fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX / 4),
    }
}

/// Milliseconds of an optional offset (negative offsets look ahead).
pub fn offset_ms(o: &Option<Offset>) -> i64 {
    let ms = |d: &std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4);
    match o {
        None => 0,
        Some(Offset::Pos(d)) => ms(d),
        Some(Offset::Neg(d)) => -ms(d),
    }
}

/// The time an `@` modifier pins evaluation to, if any.
pub fn at_ms(at: &Option<AtModifier>, start: i64, end: i64) -> Option<i64> {
    match at {
        None => None,
        Some(AtModifier::Start) => Some(start),
        Some(AtModifier::End) => Some(end),
        Some(AtModifier::At(t)) => Some(system_time_ms(t)),
    }
}

/// Where the window of a selector ends at each of `times`: the step's time, or the
/// time `@` pins, moved back by `offset`.
pub fn window_ends(vs: &VectorSelector, times: &[i64], start: i64, end: i64) -> Vec<i64> {
    let at = at_ms(&vs.at, start, end);
    let offset = offset_ms(&vs.offset);
    times
        .iter()
        .map(|&t| at.unwrap_or(t).saturating_sub(offset))
        .collect()
}

/// Duration in ms, saturating.
pub fn dur_ms(d: &std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

fn convert_matcher(m: &PMatcher) -> Result<Matcher> {
    let bad =
        |e: regex::Error| Error::BadData(format!("invalid regular expression {:?}: {e}", m.value));
    Ok(match &m.op {
        PMatchOp::Equal => Matcher::equal(&m.name, &m.value),
        PMatchOp::NotEqual => Matcher {
            name: m.name.clone(),
            value: m.value.clone(),
            op: MatchOp::NotEqual,
        },
        PMatchOp::Re(_) => Matcher::regex(&m.name, &m.value, false).map_err(bad)?,
        PMatchOp::NotRe(_) => Matcher::regex(&m.name, &m.value, true).map_err(bad)?,
    })
}

/// The TSDB matcher sets of a selector: one set, or one per `or` alternative.
pub fn matcher_sets(name: Option<&str>, ms: &Matchers) -> Result<Vec<Vec<Matcher>>> {
    let base: Vec<&PMatcher> = ms.matchers.iter().collect();
    let alternatives: Vec<Vec<&PMatcher>> = if ms.or_matchers.is_empty() {
        vec![base]
    } else {
        ms.or_matchers
            .iter()
            .map(|alt| alt.iter().chain(base.iter().copied()).collect())
            .collect()
    };
    let mut out = Vec::with_capacity(alternatives.len());
    for alt in alternatives {
        let mut set = Vec::with_capacity(alt.len() + 1);
        if let Some(n) = name {
            set.push(Matcher::equal("__name__", n));
        }
        for m in alt {
            set.push(convert_matcher(m)?);
        }
        if set.iter().all(|m| m.matches("")) {
            return Err(Error::BadData(
                "vector selector must contain at least one non-empty matcher".into(),
            ));
        }
        out.push(set);
    }
    Ok(out)
}

/// Per selector, the span `[mint, maxt]` of sample times the query needs.
#[derive(Debug, Default)]
pub struct Plan<'a> {
    spans: HashMap<usize, (&'a VectorSelector, i64, i64)>,
    /// Aggregation nodes computed before evaluation (see `streamed.rs`): their
    /// selectors are not preloaded.
    pub skip: std::collections::HashSet<usize>,
}

impl<'a> Plan<'a> {
    fn add(&mut self, vs: &'a VectorSelector, lo: i64, hi: i64) {
        let e = self.spans.entry(key(vs)).or_insert((vs, lo, hi));
        e.1 = e.1.min(lo);
        e.2 = e.2.max(hi);
    }
}

/// Settings the planner needs.
#[derive(Debug, Clone, Copy)]
pub struct PlanCtx {
    /// Query start (for `@ start()`), ms.
    pub start: i64,
    /// Query end (for `@ end()`), ms.
    pub end: i64,
    /// Lookback delta, ms.
    pub lookback: i64,
}

/// Walks `e`, evaluated at times in `[lo, hi]`, and records each selector's span.
pub fn plan<'a>(e: &'a Expr, lo: i64, hi: i64, ctx: &PlanCtx, out: &mut Plan<'a>) {
    let eff = |at: &Option<AtModifier>, off: &Option<Offset>| -> (i64, i64) {
        let o = offset_ms(off);
        match at_ms(at, ctx.start, ctx.end) {
            Some(a) => (a.saturating_sub(o), a.saturating_sub(o)),
            None => (lo.saturating_sub(o), hi.saturating_sub(o)),
        }
    };
    match e {
        Expr::VectorSelector(vs) => {
            let (l, h) = eff(&vs.at, &vs.offset);
            out.add(vs, l.saturating_sub(ctx.lookback), h);
        }
        Expr::MatrixSelector(ms) => {
            let (l, h) = eff(&ms.vs.at, &ms.vs.offset);
            out.add(&ms.vs, l.saturating_sub(dur_ms(&ms.range)), h);
        }
        Expr::Subquery(sq) => {
            let (l, h) = eff(&sq.at, &sq.offset);
            plan(&sq.expr, l.saturating_sub(dur_ms(&sq.range)), h, ctx, out);
        }
        Expr::Aggregate(a) => {
            if out.skip.contains(&(a as *const AggregateExpr as usize)) {
                return;
            }
            if let Some(p) = &a.param {
                plan(p, lo, hi, ctx, out);
            }
            plan(&a.expr, lo, hi, ctx, out);
        }
        Expr::Unary(u) => plan(&u.expr, lo, hi, ctx, out),
        Expr::Binary(b) => {
            plan(&b.lhs, lo, hi, ctx, out);
            plan(&b.rhs, lo, hi, ctx, out);
        }
        Expr::Paren(p) => plan(&p.expr, lo, hi, ctx, out),
        Expr::Call(c) => {
            for a in &c.args.args {
                plan(a, lo, hi, ctx, out);
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

pub(super) fn db_err(e: StorageError) -> Error {
    match e.kind() {
        ErrorKind::Limit => Error::exec(TOO_MANY_SAMPLES),
        ErrorKind::Unavailable => Error::Unavailable(e.to_string()),
        _ => Error::Internal(e.to_string()),
    }
}

/// Prometheus' message when a query reads more samples than allowed.
pub const TOO_MANY_SAMPLES: &str =
    "query processing would load too many samples into memory in query execution";

/// Reads every planned selector from the TSDB, stopping at `max_samples`.
pub fn preload(db: &dyn SeriesReader, plan: &Plan<'_>, max_samples: usize) -> Result<Preloaded> {
    let mut pre = Preloaded::default();
    for (k, (vs, lo, hi)) in &plan.spans {
        let sets = matcher_sets(vs.name.as_deref(), &vs.matchers)?;
        // Left-open windows: nothing at `lo` itself is ever needed.
        let mint = lo.saturating_add(1);
        let mut series: Vec<LoadedSeries> = Vec::new();
        for set in &sets {
            for s in db.select(set, mint, *hi).map_err(db_err)? {
                pre.total_samples += s.samples.len() + s.histograms.len();
                if pre.total_samples > max_samples {
                    return Err(Error::exec(TOO_MANY_SAMPLES));
                }
                series.push(LoadedSeries {
                    labels: Labels::from_encoded(&s.labels),
                    samples: s.samples,
                    histograms: s.histograms,
                });
            }
        }
        if sets.len() > 1 {
            series.sort_by(|a, b| a.labels.cmp(&b.labels));
            series.dedup_by(|a, b| a.labels == b.labels);
        }
        pre.data.insert(*k, series);
    }
    Ok(pre)
}

/// True for Prometheus' stale marker of a histogram series (a histogram whose sum is
/// the staleness NaN).
pub fn is_stale_histogram(h: &Hist) -> bool {
    is_stale_nan(h.sum)
}

/// Per series of one selector, where the previous evaluation step's window ended (and,
/// for range selectors, began): the first sample after the bound.
///
/// Range queries step forward in time, so the next step's bounds lie a few samples
/// further on. Walking there from the previous position reads memory just read, where
/// two binary searches per series per step over a day of samples were mostly cache
/// misses (60% of a 10k-series `sum(rate(…))` over 24 h).
#[derive(Debug, Default, Clone)]
pub struct Cursors {
    /// Float samples: (index of the first sample > lo, index of the first > hi).
    float: Vec<(usize, usize)>,
    /// Histogram samples, the same.
    hist: Vec<(usize, usize)>,
    /// The bounds the indexes are for.
    lo: i64,
    hi: i64,
}

/// Most samples walked before giving up on walking and searching instead.
const WALK: usize = 32;

/// The index of the first element after `x` in `s` (sorted by time), starting from
/// `from`, which is that index for an earlier bound `prev`.
fn seek<T>(s: &[(i64, T)], from: usize, prev: i64, x: i64) -> usize {
    if x < prev || from > s.len() {
        return s.partition_point(|p| p.0 <= x);
    }
    let mut i = from;
    let stop = (from + WALK).min(s.len());
    while i < stop {
        if s[i].0 > x {
            return i;
        }
        i += 1;
    }
    if i == s.len() {
        return i;
    }
    i + s[i..].partition_point(|p| p.0 <= x)
}

impl Cursors {
    /// Positions the cursors at the window `(lo, hi]` and returns, per series, the
    /// float and histogram index ranges inside it.
    fn advance(&mut self, series: &[LoadedSeries], lo: i64, hi: i64) {
        let fresh = self.float.len() != series.len();
        if fresh {
            self.float = vec![(0, 0); series.len()];
            self.hist = vec![(0, 0); series.len()];
        }
        let (plo, phi) = if fresh {
            (i64::MAX, i64::MAX)
        } else {
            (self.lo, self.hi)
        };
        for (i, s) in series.iter().enumerate() {
            let (a, b) = self.float[i];
            self.float[i] = (seek(&s.samples, a, plo, lo), seek(&s.samples, b, phi, hi));
            if !s.histograms.is_empty() {
                let (a, b) = self.hist[i];
                self.hist[i] = (
                    seek(&s.histograms, a, plo, lo),
                    seek(&s.histograms, b, phi, hi),
                );
            }
        }
        self.lo = lo;
        self.hi = hi;
    }
}

/// The instant vector a selector yields at evaluation time `t` (after `@`/offset).
pub fn instant(series: &[LoadedSeries], t: i64, lookback: i64) -> Vec<Sample> {
    instant_with(series, t, lookback, &mut Cursors::default())
}

/// [`instant`], walking on from the previous step's `cursors`.
pub fn instant_with(
    series: &[LoadedSeries],
    t: i64,
    lookback: i64,
    cursors: &mut Cursors,
) -> Vec<Sample> {
    cursors.advance(series, t, t);
    let mut out = Vec::new();
    for (i, s) in series.iter().enumerate() {
        let hidx = if s.histograms.is_empty() {
            0
        } else {
            cursors.hist[i].1
        };
        if let Some((st, v, h)) = newest(s, cursors.float[i].1, hidx, t, lookback) {
            out.push(Sample {
                labels: s.labels.clone(),
                t: st,
                v,
                h,
                drop_name: false,
            });
        }
    }
    out
}

/// The sample an instant selector yields for series `s` at evaluation time `t`, given
/// the index of its first float sample after `t` (`idx`) and of its first histogram
/// sample after `t` (`hidx`): the newer of the two samples before them, unless it is a
/// stale marker or not after `t − lookback`. `(time, value, histogram)`.
fn newest(
    s: &LoadedSeries,
    idx: usize,
    hidx: usize,
    t: i64,
    lookback: i64,
) -> Option<(i64, f64, Option<Hist>)> {
    let float = (idx > 0).then(|| s.samples[idx - 1]);
    let hist = (hidx > 0).then(|| &s.histograms[hidx - 1]);
    let sample = match (float, hist) {
        (Some((ft, _)), Some((ht, h))) if *ht > ft => {
            (!is_stale_histogram(h)).then(|| (*ht, 0.0, Some(h.clone())))
        }
        (Some((ft, v)), _) => (!is_stale_nan(v)).then_some((ft, v, None)),
        (None, Some((ht, h))) => (!is_stale_histogram(h)).then(|| (*ht, 0.0, Some(h.clone()))),
        (None, None) => None,
    };
    sample.filter(|(st, _, _)| *st > t.saturating_sub(lookback))
}

/// One series' instant-selector samples at increasing evaluation times `ends` (after
/// `@`/offset), read in one forward walk: calls `f(k, value, histogram)` for the `k`-th
/// time when the series has a sample there, exactly the one [`instant_with`] yields.
///
/// Series-major, for aggregations of a selector over a range query's steps
/// (`streamed.rs`), as [`series_windows`] is for range selectors.
pub fn series_instants(
    s: &LoadedSeries,
    ends: &[i64],
    lookback: i64,
    mut f: impl FnMut(usize, f64, Option<Hist>),
) {
    let (mut idx, mut hidx) = (0, 0);
    let mut prev = i64::MAX;
    for (k, &t) in ends.iter().enumerate() {
        idx = seek(&s.samples, idx, prev, t);
        if !s.histograms.is_empty() {
            hidx = seek(&s.histograms, hidx, prev, t);
        }
        prev = t;
        if let Some((_, v, h)) = newest(s, idx, hidx, t, lookback) {
            f(k, v, h);
        }
    }
}

/// The range vector a selector yields for the window `(t − range, t]`, walking on
/// from the previous step's `cursors`.
pub fn range_with(
    series: &[LoadedSeries],
    t: i64,
    range: i64,
    cursors: &mut Cursors,
) -> Vec<Series> {
    let mut out = Vec::new();
    range_visit(series, t, range, cursors, |s, points, hpoints| {
        out.push(Series {
            labels: s.labels.clone(),
            points: points.to_vec(),
            hpoints: hpoints.to_vec(),
            drop_name: false,
        })
    });
    out
}

/// The range vector of [`range_with`], one series at a time and without copying it:
/// calls `f(series, floats, histograms)` for every series with samples in the window
/// `(t − range, t]`, stale markers left out.
///
/// A function of a range (`rate(x[5m])`) reads each window once; copying it into a
/// range vector first cost an allocation per series per step.
pub fn range_visit(
    series: &[LoadedSeries],
    t: i64,
    range: i64,
    cursors: &mut Cursors,
    mut f: impl FnMut(&LoadedSeries, &[(i64, f64)], &[(i64, Hist)]),
) {
    let lo = t.saturating_sub(range);
    cursors.advance(series, lo, t);
    let mut bufs = WindowBufs::default();
    for (i, s) in series.iter().enumerate() {
        let hist = if s.histograms.is_empty() {
            (0, 0)
        } else {
            cursors.hist[i]
        };
        let (points, hpoints) = live(s, cursors.float[i], hist, true, &mut bufs);
        if !points.is_empty() || !hpoints.is_empty() {
            f(s, points, hpoints);
        }
    }
}

/// Copies of windows that held a stale marker: floats, histograms.
pub type WindowBufs = (Vec<(i64, f64)>, Vec<(i64, Hist)>);

/// One window of a series: its float points and its histogram points.
type Window<'w> = (&'w [(i64, f64)], &'w [(i64, Hist)]);

/// The samples of `s` at float indexes `a..b` and histogram indexes `ha..hb`, stale
/// markers left out: the slices themselves, or copies in `bufs` when a marker is there
/// (rare: a series that ended). `floats_may_be_stale` false skips the float check.
fn live<'w>(
    s: &'w LoadedSeries,
    (a, b): (usize, usize),
    (ha, hb): (usize, usize),
    floats_may_be_stale: bool,
    bufs: &'w mut WindowBufs,
) -> Window<'w> {
    let (fbuf, hbuf) = bufs;
    let win: &[(i64, f64)] = if a < b { &s.samples[a..b] } else { &[] };
    let points = if floats_may_be_stale && win.iter().any(|p| is_stale_nan(p.1)) {
        fbuf.clear();
        fbuf.extend(win.iter().filter(|p| !is_stale_nan(p.1)).copied());
        &fbuf[..]
    } else {
        win
    };
    let hwin: &[(i64, Hist)] = if ha < hb { &s.histograms[ha..hb] } else { &[] };
    let hpoints = if hwin.iter().any(|p| is_stale_histogram(&p.1)) {
        hbuf.clear();
        hbuf.extend(hwin.iter().filter(|p| !is_stale_histogram(&p.1)).cloned());
        &hbuf[..]
    } else {
        hwin
    };
    (points, hpoints)
}

/// One series' windows `(e − range, e]` for increasing window ends `ends`, read in one
/// forward walk: calls `f(k, floats, histograms)` for the `k`-th window when it holds
/// samples (stale markers left out). `bufs` holds windows that needed a copy.
///
/// Series-major, for a range query's steps: walking one series through all its steps
/// reads its samples once, in order, where visiting every series at each step
/// ([`range_visit`]) meets each series' memory cold again.
pub fn series_windows(
    s: &LoadedSeries,
    ends: &[i64],
    range: i64,
    bufs: &mut WindowBufs,
    mut f: impl FnMut(usize, &[(i64, f64)], &[(i64, Hist)]),
) {
    let (mut a, mut b, mut ha, mut hb) = (0, 0, 0, 0);
    let (mut plo, mut phi) = (i64::MAX, i64::MAX);
    // Whether any window may hold a stale marker, looked up once for all of them.
    let stale = match (ends.first(), ends.last()) {
        (Some(&first), Some(&last)) => {
            let from = s
                .samples
                .partition_point(|p| p.0 <= first.saturating_sub(range));
            let to = s.samples.partition_point(|p| p.0 <= last);
            s.samples[from..to.max(from)]
                .iter()
                .any(|p| is_stale_nan(p.1))
        }
        _ => false,
    };
    for (k, &hi) in ends.iter().enumerate() {
        let lo = hi.saturating_sub(range);
        a = seek(&s.samples, a, plo, lo);
        b = seek(&s.samples, b, phi, hi);
        if !s.histograms.is_empty() {
            ha = seek(&s.histograms, ha, plo, lo);
            hb = seek(&s.histograms, hb, phi, hi);
        }
        (plo, phi) = (lo, hi);
        let (points, hpoints) = live(s, (a, b), (ha, hb), stale, bufs);
        if !points.is_empty() || !hpoints.is_empty() {
            f(k, points, hpoints);
        }
    }
}
