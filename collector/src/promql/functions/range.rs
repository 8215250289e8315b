//! Range functions: `rate`, `increase`, `delta`, `irate`, `idelta`, `deriv`,
//! `predict_linear`, `resets`, `changes`, the `*_over_time` family and
//! `double_exponential_smoothing`/`holt_winters`, over floats and native histograms; and
//! the series-major paths of range queries ([`RangeSteps`], [`range_rows`]).

use super::{arg, kahan_inc, matrix_arg, quantile, scalar_arg, unwrap_paren};
use crate::promql::eval::Evaluator;
use crate::promql::selectors;
use crate::promql::value::{Hist, Labels, Sample, Value};
use crate::promql::{Error, Result};
use calm_wire::value::is_stale_nan;
use promql_parser::parser::{Call, Expr, MatrixSelector};

fn linear_regression(points: &[(i64, f64)], intercept_t: i64) -> (f64, f64) {
    let mut n = 0.0;
    let (mut sx, mut cx, mut sy, mut cy, mut sxy, mut cxy, mut sx2, mut cx2) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    let init_y = points[0].1;
    let mut const_y = true;
    for (i, &(pt, pv)) in points.iter().enumerate() {
        if const_y && i > 0 && pv != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (pt - intercept_t) as f64 / 1e3;
        (sx, cx) = kahan_inc(x, sx, cx);
        (sy, cy) = kahan_inc(pv, sy, cy);
        (sxy, cxy) = kahan_inc(x * pv, sxy, cxy);
        (sx2, cx2) = kahan_inc(x * x, sx2, cx2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    sx += cx;
    sy += cy;
    sxy += cxy;
    sx2 += cx2;
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    let intercept = sy / n - slope * sx / n;
    (slope, intercept)
}

fn extrapolated_rate(
    p: &[(i64, f64)],
    w: (i64, i64, i64),
    counter: bool,
    rate: bool,
) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    // Most windows of a counter hold no reset: finding that out needs no chain of
    // additions (the compiler vectorises the comparisons), summing the resets does.
    let resets = counter && p.windows(2).fold(false, |any, w| any | (w[1].1 < w[0].1));
    Some(extrapolated(p, resets, w, counter, rate))
}

/// [`extrapolated_rate`] of a window `p` of two or more samples, told whether a counter
/// resets in it (`resets`: else no sample is below the one before).
fn extrapolated(
    p: &[(i64, f64)],
    resets: bool,
    w: (i64, i64, i64),
    counter: bool,
    rate: bool,
) -> f64 {
    let n1 = p.len() - 1;
    let mut result = p[n1].1 - p[0].1;
    if resets {
        let mut prev = p[0].1;
        for &(_, v) in &p[1..] {
            if v < prev {
                result += prev;
            }
            prev = v;
        }
    }
    let factor = extrapolation_factor(p[0].0, p[n1].0, n1, w, counter, rate, result, p[0].1);
    result * factor
}

/// `(counter, rate)` of [`rate_windows`] for `rate`, `increase` and `delta`.
pub fn increase_kind(name: &str) -> Option<(bool, bool)> {
    match name {
        "rate" => Some((true, true)),
        "increase" => Some((true, false)),
        "delta" => Some((false, false)),
        _ => None,
    }
}

/// `rate`, `increase` or `delta` (`counter`, `rate` as in `extrapolated_rate`) of one
/// series at the windows `(e − range, e]` of `ends` (increasing): calls `f(k, value)`
/// for each window `k` with two samples or more. The same arithmetic as
/// `extrapolated_rate` window by window, so the same bits. Returns false, having called
/// nothing, when the series is not one it computes: it has histograms, or a stale
/// marker inside the windows (windows here are slices of the samples), or `ends` are not
/// in order; the caller then takes the window-by-window path.
///
/// A range query slides its windows a step at a time over the same samples (a 5 m
/// window every 60 s holds each sample five times): comparing every pair of a window
/// for a reset was a fifth of such a query. Here the series' resets are found once
/// (positions `i` where sample `i` is below sample `i − 1`: few, mostly none), and a
/// window `a..b` holds one when the first reset after `a` is before `b`.
pub fn rate_windows<H>(
    samples: &[(i64, f64)],
    histograms: &[H],
    ends: &[i64],
    range: i64,
    (counter, rate): (bool, bool),
    mut f: impl FnMut(usize, f64),
) -> bool {
    let Some((windows, from, to)) = float_windows(samples, histograms, ends, range) else {
        return false;
    };
    let mut resets: Vec<usize> = Vec::new();
    if counter {
        resets.extend(
            samples[from..to]
                .windows(2)
                .enumerate()
                .filter(|(_, w)| w[1].1 < w[0].1)
                .map(|(i, _)| from + i + 1),
        );
    }
    let mut r = 0usize;
    for &(k, a, b) in &windows {
        if b - a < 2 {
            continue;
        }
        while r < resets.len() && resets[r] <= a {
            r += 1;
        }
        let reset_inside = r < resets.len() && resets[r] < b;
        let (lo, hi) = (ends[k].saturating_sub(range), ends[k]);
        f(
            k,
            extrapolated(&samples[a..b], reset_inside, (lo, hi, range), counter, rate),
        );
    }
    true
}

/// Prometheus' extrapolation of an increase seen between the first and last sample
/// (`first_t`, `last_t`, `n1` intervals apart) to the window `w`; `result` and
/// `first_v` (value or histogram count) limit the extrapolation of counters to zero.
#[allow(clippy::too_many_arguments)]
fn extrapolation_factor(
    first_t: i64,
    last_t: i64,
    n1: usize,
    w: (i64, i64, i64),
    counter: bool,
    rate: bool,
    result: f64,
    first_v: f64,
) -> f64 {
    let (range_start, range_end, range) = w;
    let mut to_start = (first_t - range_start) as f64 / 1000.0;
    let mut to_end = (range_end - last_t) as f64 / 1000.0;
    let sampled = (last_t - first_t) as f64 / 1000.0;
    let avg = sampled / n1 as f64;
    let threshold = avg * 1.1;
    let mut extrapolate_to = sampled;
    if to_start >= threshold {
        to_start = avg / 2.0;
    }
    if counter && result > 0.0 && first_v >= 0.0 {
        let to_zero = sampled * (first_v / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    extrapolate_to += to_start;
    if to_end >= threshold {
        to_end = avg / 2.0;
    }
    extrapolate_to += to_end;
    let mut factor = extrapolate_to / sampled;
    if rate {
        factor /= range as f64 / 1000.0;
    }
    factor
}

/// One sample of a series whose floats and histograms are merged by time.
#[derive(Clone)]
enum Point<'a> {
    F(i64, f64),
    H(i64, &'a Hist),
}

impl Point<'_> {
    fn t(&self) -> i64 {
        match self {
            Point::F(t, _) | Point::H(t, _) => *t,
        }
    }
}

fn merged<'a>(points: &[(i64, f64)], hpoints: &'a [(i64, Hist)]) -> Vec<Point<'a>> {
    let mut out: Vec<Point<'a>> = points
        .iter()
        .map(|p| Point::F(p.0, p.1))
        .chain(hpoints.iter().map(|p| Point::H(p.0, &p.1)))
        .collect();
    out.sort_by_key(|p| p.t());
    out
}

/// Range functions over a series holding native histograms (maybe also floats).
/// `None`: the function reads floats only (histograms are left out); `Some(None)`: no
/// result for this series; `Some(Some((value, histogram)))`: the result.
#[allow(clippy::type_complexity)]
fn histogram_range(
    name: &str,
    points: &[(i64, f64)],
    hpoints: &[(i64, Hist)],
    w: (i64, i64, i64),
) -> Option<Option<(f64, Option<Hist>)>> {
    use crate::promql::histograms as nh;
    let float = |v: f64| Some(Some((v, None)));
    let hist =
        |h: Option<crate::promql::value::FloatHistogram>| Some(h.map(|h| (0.0, Some(nh::wrap(h)))));
    let m = || merged(points, hpoints);
    let value_of = |p: &Point| match p {
        Point::F(_, v) => (*v, None),
        Point::H(_, h) => (0.0, Some((*h).clone())),
    };
    match name {
        "rate" | "increase" | "delta" => {
            if !points.is_empty() || hpoints.len() < 2 {
                return Some(None);
            }
            let counter = name != "delta";
            let Some(mut h) = nh::rate_delta(hpoints, counter) else {
                return Some(None);
            };
            let n1 = hpoints.len() - 1;
            let factor = extrapolation_factor(
                hpoints[0].0,
                hpoints[n1].0,
                n1,
                w,
                counter,
                name == "rate",
                h.count,
                hpoints[0].1.count,
            );
            h.mul(factor);
            hist(Some(h))
        }
        "irate" | "idelta" => {
            let all = m();
            if all.len() < 2 {
                return Some(None);
            }
            let (prev, last) = (&all[all.len() - 2], &all[all.len() - 1]);
            let interval = last.t() - prev.t();
            let rate = name == "irate";
            match (prev, last) {
                (Point::F(pt, pv), Point::F(lt, lv)) => {
                    float_instant(&[(*pt, *pv), (*lt, *lv)], rate).map_or(Some(None), float)
                }
                (Point::H(_, ph), Point::H(_, lh)) => {
                    if interval == 0 {
                        return Some(None);
                    }
                    let Some(mut h) = nh::instant_delta(ph, lh, rate) else {
                        return Some(None);
                    };
                    if rate {
                        h.div(interval as f64 / 1000.0);
                    }
                    hist(Some(h))
                }
                _ => Some(None),
            }
        }
        "resets" | "changes" => {
            let all = m();
            let mut n = 0usize;
            for pair in all.windows(2) {
                let hit = match (&pair[0], &pair[1]) {
                    (Point::F(_, a), Point::F(_, b)) => {
                        if name == "resets" {
                            b < a
                        } else {
                            !(a == b || (a.is_nan() && b.is_nan()))
                        }
                    }
                    (Point::H(_, a), Point::H(_, b)) => {
                        if name == "resets" {
                            b.detect_reset(a)
                        } else {
                            !a.equals(b)
                        }
                    }
                    _ => true,
                };
                n += hit as usize;
            }
            float(n as f64)
        }
        "count_over_time" => float((points.len() + hpoints.len()) as f64),
        "present_over_time" => float(1.0),
        "last_over_time" | "first_over_time" => {
            let all = m();
            let p = if name == "last_over_time" {
                all.last()
            } else {
                all.first()
            };
            Some(p.map(value_of))
        }
        "ts_of_last_over_time" | "ts_of_first_over_time" => {
            let all = m();
            let p = if name == "ts_of_last_over_time" {
                all.last()
            } else {
                all.first()
            };
            Some(p.map(|p| (p.t() as f64 / 1000.0, None)))
        }
        "sum_over_time" | "avg_over_time" => {
            if !points.is_empty() {
                return Some(None);
            }
            let mut h = nh::sum(hpoints);
            if name == "avg_over_time" {
                if let Some(h) = h.as_mut() {
                    h.div(hpoints.len() as f64);
                }
            }
            hist(h)
        }
        _ => None,
    }
}

fn float_instant(p: &[(i64, f64)], rate: bool) -> Option<f64> {
    instant_value(p, rate)
}

fn instant_value(p: &[(i64, f64)], rate: bool) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (lt, lv) = p[p.len() - 1];
    let (pt, pv) = p[p.len() - 2];
    let mut r = if rate && lv < pv { lv } else { lv - pv };
    let interval = lt - pt;
    if interval == 0 {
        return None;
    }
    if rate {
        r /= interval as f64 / 1000.0;
    }
    Some(r)
}

/// One step's window over a series' samples: `(step, first sample, end)`.
type Window = (usize, usize, usize);

/// The windows `(e − range, e]` of `ends` over one series' float samples, found with
/// two cursors: `(k, a, b)` for each step `k` whose window holds `samples[a..b]`
/// (non-empty), and the span `from..to` of the samples any window holds. `None` when
/// the series has histograms or a stale marker in that span, or `ends` is not ordered
/// (the per-window path, which leaves stale markers out, runs instead).
fn float_windows<H>(
    samples: &[(i64, f64)],
    histograms: &[H],
    ends: &[i64],
    range: i64,
) -> Option<(Vec<Window>, usize, usize)> {
    let (&first, &last) = (ends.first()?, ends.last()?);
    // Only the samples some window holds (a block of steps holds few of a day's).
    let from = samples.partition_point(|p| p.0 <= first.saturating_sub(range));
    let to = samples.partition_point(|p| p.0 <= last).max(from);
    if !histograms.is_empty()
        || !ends.windows(2).all(|w| w[0] <= w[1])
        || samples[from..to].iter().any(|p| is_stale_nan(p.1))
    {
        return None;
    }
    let mut windows = Vec::with_capacity(ends.len());
    let (mut a, mut b) = (from, from);
    for (k, &hi) in ends.iter().enumerate() {
        let lo = hi.saturating_sub(range);
        while a < to && samples[a].0 <= lo {
            a += 1;
        }
        b = b.max(a);
        while b < to && samples[b].0 <= hi {
            b += 1;
        }
        if b > a {
            windows.push((k, a, b));
        }
    }
    Some((windows, from, to))
}

/// `avg_over_time` of one series at the windows `(e − range, e]` of `ends`
/// (increasing): calls `f(k, value)` for each window holding a sample, the value
/// [`avg_over`] gives, bit for bit. `false` (nothing called) when the series has
/// histograms or a stale marker among the windows' samples, or `ends` is not ordered.
///
/// A window's Kahan sum is a chain of dependent additions: one window at a time, each
/// sample waits for the one before. Here [`LANES`] windows are summed side by side, each
/// with its own chain and the same operations in the same order, so the additions of
/// different windows overlap. A window whose sum overflows goes through [`avg_over`].
pub fn avg_windows<H>(
    samples: &[(i64, f64)],
    histograms: &[H],
    ends: &[i64],
    range: i64,
    mut f: impl FnMut(usize, f64),
) -> bool {
    let Some((windows, _, _)) = float_windows(samples, histograms, ends, range) else {
        return false;
    };
    for group in windows.chunks(LANES) {
        if group.len() < LANES {
            for &(k, a, b) in group {
                f(k, avg_over(&samples[a..b]));
            }
            continue;
        }
        let mut sum = [0.0f64; LANES];
        let mut c = [0.0f64; LANES];
        let mut overflow = [false; LANES];
        for l in 0..LANES {
            sum[l] = samples[group[l].1].1;
        }
        // Side by side over the samples all windows of the group have.
        let common = group.iter().map(|w| w.2 - w.1).min().unwrap_or(0);
        for j in 1..common {
            for l in 0..LANES {
                let (ns, nc) = kahan_inc(samples[group[l].1 + j].1, sum[l], c[l]);
                overflow[l] |= ns.is_infinite();
                sum[l] = ns;
                c[l] = nc;
            }
        }
        for l in 0..LANES {
            let (k, a, b) = group[l];
            if overflow[l] {
                f(k, avg_over(&samples[a..b]));
                continue;
            }
            let (mut s, mut cl) = (sum[l], c[l]);
            let mut over = false;
            for &(_, v) in &samples[a + common.max(1)..b] {
                let (ns, nc) = kahan_inc(v, s, cl);
                if ns.is_infinite() {
                    over = true;
                    break;
                }
                s = ns;
                cl = nc;
            }
            if over {
                f(k, avg_over(&samples[a..b]));
            } else {
                let count = (b - a) as f64;
                f(k, s / count + cl / count);
            }
        }
    }
    true
}

/// Windows [`avg_windows`] sums side by side.
const LANES: usize = 4;

fn avg_over(p: &[(i64, f64)]) -> f64 {
    let (mut sum, mut count) = (p[0].1, 1.0);
    let (mut mean, mut c) = (0.0, 0.0);
    let mut incremental = false;
    for (i, &(_, f)) in p[1..].iter().enumerate() {
        count = (i + 2) as f64;
        if !incremental {
            let (ns, nc) = kahan_inc(f, sum, c);
            if !ns.is_infinite() {
                sum = ns;
                c = nc;
                continue;
            }
            incremental = true;
            mean = sum / (count - 1.0);
            c /= count - 1.0;
        }
        let q = (count - 1.0) / count;
        (mean, c) = kahan_inc(f / count, q * mean, q * c);
    }
    if incremental {
        mean + c
    } else {
        sum / count + c / count
    }
}

fn stdvar_over(p: &[(i64, f64)]) -> f64 {
    let (mut count, mut mean, mut cmean, mut aux, mut caux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(_, f) in p {
        count += 1.0;
        let delta = f - (mean + cmean);
        (mean, cmean) = kahan_inc(delta / count, mean, cmean);
        (aux, caux) = kahan_inc(delta * (f - (mean + cmean)), aux, caux);
    }
    (aux + caux) / count
}

/// True for the functions [`range_fn`] evaluates.
fn is_range_fn(name: &str) -> bool {
    matches!(
        name,
        "rate"
            | "increase"
            | "delta"
            | "irate"
            | "idelta"
            | "deriv"
            | "predict_linear"
            | "resets"
            | "changes"
            | "avg_over_time"
            | "sum_over_time"
            | "count_over_time"
            | "min_over_time"
            | "max_over_time"
            | "last_over_time"
            | "first_over_time"
            | "stddev_over_time"
            | "stdvar_over_time"
            | "quantile_over_time"
            | "present_over_time"
            | "mad_over_time"
            | "ts_of_last_over_time"
            | "ts_of_first_over_time"
            | "ts_of_max_over_time"
            | "ts_of_min_over_time"
            | "double_exponential_smoothing"
            | "holt_winters"
    )
}

/// Checks a call of a range function and evaluates its number parameters at `t`.
fn range_call(ev: &Evaluator<'_>, c: &Call, t: i64) -> Result<RangeCall> {
    let name = c.func.name;
    let mi = range_arg_index(name);
    if !is_range_fn(name) {
        return Err(Error::exec(format!("function {name:?} is not supported")));
    }
    let p1 = match name {
        "predict_linear" | "double_exponential_smoothing" | "holt_winters" => {
            scalar_arg(ev, c, 1, t)?
        }
        "quantile_over_time" => scalar_arg(ev, c, 0, t)?,
        _ => 0.0,
    };
    let p2 = match name {
        "double_exponential_smoothing" | "holt_winters" => scalar_arg(ev, c, 2, t)?,
        _ => 0.0,
    };
    if matches!(name, "double_exponential_smoothing" | "holt_winters") {
        if p1 <= 0.0 || p1 >= 1.0 {
            return Err(Error::exec(format!(
                "invalid smoothing factor. Expected: 0 < sf < 1, got: {p1}"
            )));
        }
        if p2 <= 0.0 || p2 >= 1.0 {
            return Err(Error::exec(format!(
                "invalid trend factor. Expected: 0 < tf < 1, got: {p2}"
            )));
        }
    }
    let keep_name = matches!(name, "last_over_time" | "first_over_time");
    Ok(RangeCall {
        name,
        mi,
        p1,
        p2,
        keep_name,
    })
}

/// What [`range_fn`] needs of a call of a range function, checked: its name, where its
/// range argument is, its number parameters, and whether the metric name stays.
struct RangeCall {
    name: &'static str,
    mi: usize,
    p1: f64,
    p2: f64,
    keep_name: bool,
}

/// A range function of a range selector with number literals for its other
/// arguments (`rate(x[5m])`, `quantile_over_time(0.9, x[1h])`), ready to be computed
/// for every step of a range query, one series at a time.
pub struct RangeSteps<'e> {
    rc: RangeCall,
    /// The range selector.
    pub ms: &'e MatrixSelector,
    range: i64,
    /// Evaluation time of each step.
    pub times: Vec<i64>,
    /// End of each step's window (moved by `@` and `offset`).
    ends: Vec<i64>,
}

impl<'e> RangeSteps<'e> {
    /// `None` when `c` is not of that shape or the query is not a range query;
    /// `Some(Err)` when its parameters are invalid (as the first step would find).
    pub fn new(ev: &Evaluator<'_>, c: &'e Call) -> Option<Result<RangeSteps<'e>>> {
        let ms = match c
            .args
            .args
            .get(range_arg_index(c.func.name))
            .map(|a| unwrap_paren(a))
        {
            Some(Expr::MatrixSelector(ms)) => ms,
            _ => return None,
        };
        let constant_args = c.args.args.iter().all(|a| {
            matches!(
                unwrap_paren(a),
                Expr::NumberLiteral(_) | Expr::MatrixSelector(_)
            )
        });
        if ev.step <= 0 || ev.end < ev.start || !constant_args || !is_range_fn(c.func.name) {
            return None;
        }
        let rc = match range_call(ev, c, ev.start) {
            Ok(rc) => rc,
            Err(e) => return Some(Err(e)),
        };
        let steps = (ev.end - ev.start) / ev.step + 1;
        let times: Vec<i64> = (0..steps).map(|k| ev.start + k * ev.step).collect();
        let ends = selectors::window_ends(&ms.vs, &times, ev.start, ev.end);
        Some(Ok(RangeSteps {
            rc,
            ms,
            range: selectors::dur_ms(&ms.range),
            times,
            ends,
        }))
    }

    /// The first and last window end: the selector's windows span
    /// `(first − range, last]`.
    pub fn span(&self) -> (i64, i64) {
        let lo = self.ends.iter().copied().min().unwrap_or(0);
        let hi = self.ends.iter().copied().max().unwrap_or(0);
        (lo, hi)
    }

    /// True when the result keeps the metric name (`last_over_time`).
    pub fn keep_name(&self) -> bool {
        self.rc.keep_name
    }

    /// Calls `f(k, value, histogram)` for every step `k` at which `s` has a result.
    pub fn run(
        &self,
        s: &selectors::LoadedSeries,
        bufs: &mut selectors::WindowBufs,
        mut f: impl FnMut(usize, f64, Option<Hist>),
    ) {
        let rc = &self.rc;
        if let Some(kind) = increase_kind(rc.name) {
            let (samples, hists) = (&s.samples, &s.histograms);
            if rate_windows(samples, hists, &self.ends, self.range, kind, |k, v| {
                f(k, v, None)
            }) {
                return;
            }
        }
        if rc.name == "avg_over_time"
            && avg_windows(&s.samples, &s.histograms, &self.ends, self.range, |k, v| {
                f(k, v, None)
            })
        {
            return;
        }
        selectors::series_windows(s, &self.ends, self.range, bufs, |k, pts, hpts| {
            let w = (
                self.ends[k].saturating_sub(self.range),
                self.ends[k],
                self.range,
            );
            if let Some((v, h)) = range_value(rc.name, pts, hpts, w, self.times[k], rc.p1, rc.p2) {
                f(k, v, h);
            }
        });
    }
}

/// The rows of a range query whose whole expression is `c`, a range function of a
/// range selector ([`RangeSteps`]): each series walked once through all steps, its
/// row built directly. `None` when the query is not of that shape, or when two result
/// series would share a label set (the step-by-step path then decides per step).
///
/// The step-by-step path builds an instant vector per step, interns each label set and
/// files each point under its row: per point, more work than the function itself.
pub fn range_rows(
    ev: &Evaluator<'_>,
    c: &Call,
    points_limit: usize,
) -> Option<Result<Vec<crate::promql::value::MatrixRow>>> {
    let rs = match RangeSteps::new(ev, c)? {
        Ok(rs) => rs,
        Err(e) => return Some(Err(e)),
    };
    let series = ev.data.get(&rs.ms.vs);
    let labels: Vec<Labels> = series
        .iter()
        .map(|s| {
            if rs.keep_name() {
                s.labels.clone()
            } else {
                s.labels.without_name()
            }
        })
        .collect();
    {
        let mut sorted: Vec<&Labels> = labels.iter().collect();
        sorted.sort();
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            return None;
        }
    }
    let points = std::sync::atomic::AtomicUsize::new(0);
    // The evaluator stays on this thread (it holds per-query caches); the others get
    // what they read.
    let deadline = ev.deadline;
    let rs = &rs;
    let run = |from: usize, to: usize| -> Result<Vec<crate::promql::value::MatrixRow>> {
        let mut bufs = (Vec::new(), Vec::new());
        let mut rows = Vec::with_capacity(to - from);
        for i in from..to {
            if i % 16 == 0 && std::time::Instant::now() > deadline {
                return Err(Error::Timeout(crate::promql::eval::TIMEOUT.into()));
            }
            let (mut f, mut h) = (Vec::new(), Vec::new());
            rs.run(&series[i], &mut bufs, |k, v, hist| match hist {
                None => f.push((rs.times[k], v)),
                Some(hist) => h.push((rs.times[k], hist)),
            });
            let n = f.len() + h.len();
            if points.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n > points_limit {
                return Err(Error::exec(selectors::TOO_MANY_SAMPLES));
            }
            if n > 0 {
                rows.push((labels[i].clone(), f, h));
            }
        }
        Ok(rows)
    };
    // The work of a series: a visit of each step, and of each sample in each window
    // that holds it (`avg_over_time(x[1h])` at step 1m reads each sample 60 times).
    let samples: usize = series.iter().map(|s| s.samples.len()).sum();
    let visits = (rs.range / ev.step.max(1)).max(1) as usize;
    let per_series = rs
        .times
        .len()
        .max(samples.saturating_mul(visits) / series.len().max(1));
    let parts = split_series(series.len(), per_series, &run);
    let mut rows = Vec::with_capacity(series.len());
    for p in parts {
        match p {
            Ok(r) => rows.extend(r),
            Err(e) => return Some(Err(e)),
        }
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    Some(Ok(rows))
}

/// Runs `run(from, to)` over `0..n` series, split over the cores when `n × steps` is
/// large; the parts come back in series order.
pub fn split_series<T: Send>(
    n: usize,
    steps: usize,
    run: &(dyn Fn(usize, usize) -> Result<T> + Sync),
) -> Vec<Result<T>> {
    let threads = if n.saturating_mul(steps) < 200_000 || n < 2 {
        1
    } else {
        std::thread::available_parallelism()
            .map_or(1, |t| t.get())
            .min(n)
    };
    let per = n.div_ceil(threads.max(1)).max(1);
    if threads <= 1 {
        return vec![run(0, n)];
    }
    std::thread::scope(|sc| {
        let handles: Vec<_> = (1..threads)
            .map(|k| sc.spawn(move || run((k * per).min(n), ((k + 1) * per).min(n))))
            .collect();
        let mut parts = vec![run(0, per.min(n))];
        for h in handles {
            parts.push(
                h.join()
                    .unwrap_or_else(|_| Err(Error::exec("query evaluation thread panicked"))),
            );
        }
        parts
    })
}

/// Position of the range argument of range function `name`.
fn range_arg_index(name: &str) -> usize {
    match name {
        "quantile_over_time" => 1,
        _ => 0,
    }
}

pub(super) fn range_fn(ev: &Evaluator<'_>, c: &Call, t: i64) -> Result<Value> {
    let RangeCall {
        name,
        mi,
        p1,
        p2,
        keep_name,
    } = range_call(ev, c, t)?;
    let mut out = Vec::new();
    let e = arg(c, mi)?;
    if let Expr::MatrixSelector(ms) = unwrap_paren(e) {
        // In a range query, blocks of steps series by series (when the other arguments
        // cannot change from step to step).
        let constant_args = c
            .args
            .args
            .iter()
            .enumerate()
            .all(|(i, a)| i == mi || matches!(unwrap_paren(a), Expr::NumberLiteral(_)));
        if constant_args {
            let value =
                |p: &[(i64, f64)], hp: &[(i64, Hist)], w, t| range_value(name, p, hp, w, t, p1, p2);
            let key = c as *const Call as usize;
            let increase = increase_kind(name);
            if let Some(v) =
                crate::promql::blocks::at_step(ev, key, ms, t, !keep_name, &value, increase)
            {
                return Ok(Value::Vector(v));
            }
        }
        // Straight from the selector's windows, without building a range vector.
        let w = ev.window(e, t).unwrap_or((t, t, 0));
        ev.visit_range(ms, t, |s, points, hpoints| {
            if let Some((v, h)) = range_value(name, points, hpoints, w, t, p1, p2) {
                out.push(Sample {
                    labels: s.labels.clone(),
                    t,
                    v,
                    h,
                    drop_name: !keep_name,
                });
            }
        });
        return Ok(Value::Vector(out));
    }
    let (m, w) = matrix_arg(ev, c, mi, t)?;
    for s in m {
        if let Some((v, h)) = range_value(name, &s.points, &s.hpoints, w, t, p1, p2) {
            out.push(Sample {
                labels: s.labels,
                t,
                v,
                h,
                drop_name: s.drop_name || !keep_name,
            });
        }
    }
    Ok(Value::Vector(out))
}

/// The value of the range function `name` over one series' window: its float points
/// and histogram points (stale markers left out), the window `w` and the parameters.
/// `None` when the function gives no sample for this series.
#[allow(clippy::too_many_arguments)]
fn range_value(
    name: &str,
    points: &[(i64, f64)],
    hpoints: &[(i64, Hist)],
    w: (i64, i64, i64),
    t: i64,
    p1: f64,
    p2: f64,
) -> Option<(f64, Option<Hist>)> {
    if !hpoints.is_empty() {
        if let Some(res) = histogram_range(name, points, hpoints, w) {
            return res;
        }
    }
    if points.is_empty() {
        return None;
    }
    let p = points;
    let v = match name {
        "rate" => extrapolated_rate(p, w, true, true),
        "increase" => extrapolated_rate(p, w, true, false),
        "delta" => extrapolated_rate(p, w, false, false),
        "irate" => instant_value(p, true),
        "idelta" => instant_value(p, false),
        "deriv" => (p.len() >= 2).then(|| linear_regression(p, p[0].0).0),
        "predict_linear" => (p.len() >= 2).then(|| {
            let (slope, intercept) = linear_regression(p, t);
            slope * p1 + intercept
        }),
        "resets" => Some(p.windows(2).filter(|x| x[1].1 < x[0].1).count() as f64),
        "changes" => Some(
            p.windows(2)
                .filter(|x| !(x[1].1 == x[0].1 || (x[1].1.is_nan() && x[0].1.is_nan())))
                .count() as f64,
        ),
        "avg_over_time" => Some(avg_over(p)),
        "sum_over_time" => {
            let (mut s, mut c) = (0.0, 0.0);
            for &(_, f) in p {
                (s, c) = kahan_inc(f, s, c);
            }
            Some(if c.is_finite() { s + c } else { s })
        }
        "count_over_time" => Some(p.len() as f64),
        "min_over_time" | "max_over_time" => {
            let mut best = p[0].1;
            for &(_, f) in p {
                let better = if name == "max_over_time" {
                    f > best
                } else {
                    f < best
                };
                if better || best.is_nan() {
                    best = f;
                }
            }
            Some(best)
        }
        "ts_of_min_over_time" | "ts_of_max_over_time" => {
            let mut best = p[0];
            for &(pt, f) in p {
                let better = if name == "ts_of_max_over_time" {
                    f >= best.1
                } else {
                    f <= best.1
                };
                if better || best.1.is_nan() {
                    best = (pt, f);
                }
            }
            Some(best.0 as f64 / 1000.0)
        }
        "last_over_time" => p.last().map(|x| x.1),
        "first_over_time" => p.first().map(|x| x.1),
        "ts_of_last_over_time" => p.last().map(|x| x.0 as f64 / 1000.0),
        "ts_of_first_over_time" => p.first().map(|x| x.0 as f64 / 1000.0),
        "stdvar_over_time" => Some(stdvar_over(p)),
        "stddev_over_time" => Some(stdvar_over(p).sqrt()),
        "present_over_time" => Some(1.0),
        "quantile_over_time" => {
            let mut vals: Vec<f64> = p.iter().map(|x| x.1).collect();
            Some(quantile(p1, &mut vals))
        }
        "mad_over_time" if p.iter().any(|x| x.1.is_nan()) => Some(f64::NAN),
        "mad_over_time" => {
            let mut vals: Vec<f64> = p.iter().map(|x| x.1).collect();
            let med = quantile(0.5, &mut vals);
            let mut dev: Vec<f64> = vals.iter().map(|x| (x - med).abs()).collect();
            Some(quantile(0.5, &mut dev))
        }
        "double_exponential_smoothing" | "holt_winters" => {
            if p.len() < 2 {
                None
            } else {
                let (mut s0, mut s1, mut b) = (0.0, p[0].1, p[1].1 - p[0].1);
                for (i, &(_, f)) in p.iter().enumerate().skip(1) {
                    let x = p1 * f;
                    if i > 1 {
                        b = p2 * (s1 - s0) + (1.0 - p2) * b;
                    }
                    let y = (1.0 - p1) * (s1 + b);
                    s0 = s1;
                    s1 = x + y;
                }
                Some(s1)
            }
        }
        _ => None,
    };
    v.map(|v| (v, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// `rate_windows` gives, window by window, the bits `extrapolated_rate` gives for
        /// the samples in that window: counters with resets, gaps, any step and range.
        #[test]
        fn sliding_windows_equal_each_window_alone(
            gaps in proptest::collection::vec(1i64..40_000, 2..400),
            incs in proptest::collection::vec(0u32..5_000, 400),
            resets in proptest::collection::vec(0usize..400, 0..6),
            start in 0i64..2_000_000,
            step in 1_000i64..120_000,
            steps in 1usize..200,
            range in 1_000i64..900_000,
            kind in 0usize..3,
        ) {
            let mut t = 0i64;
            let mut v = 0.0f64;
            let samples: Vec<(i64, f64)> = gaps
                .iter()
                .enumerate()
                .map(|(i, g)| {
                    t += g;
                    v = if resets.contains(&i) { incs[i] as f64 / 8.0 } else { v + incs[i] as f64 / 8.0 };
                    (t, v)
                })
                .collect();
            let ends: Vec<i64> = (0..steps as i64).map(|k| start + k * step).collect();
            let (counter, rate) = [(true, true), (true, false), (false, false)][kind];
            let mut got = vec![None; steps];
            let none: &[()] = &[];
            let applied = rate_windows(&samples, none, &ends, range, (counter, rate), |k, v| got[k] = Some(v.to_bits()));
            prop_assert!(applied);
            let want: Vec<Option<u64>> = ends
                .iter()
                .map(|&hi| {
                    let lo = hi - range;
                    let w: Vec<(i64, f64)> =
                        samples.iter().copied().filter(|p| p.0 > lo && p.0 <= hi).collect();
                    extrapolated_rate(&w, (lo, hi, range), counter, rate).map(f64::to_bits)
                })
                .collect();
            prop_assert_eq!(got, want);
        }

        /// `avg_windows` sums windows side by side: each window's value is the one
        /// `avg_over` gives it alone, bit for bit, overflowing sums included.
        #[test]
        fn side_by_side_averages_equal_each_window_alone(
            gaps in proptest::collection::vec(1i64..40_000, 1..400),
            vals in proptest::collection::vec(-1e6f64..1e6, 400),
            huge in proptest::collection::vec(0usize..400, 0..4),
            start in 0i64..2_000_000,
            step in 1_000i64..120_000,
            steps in 1usize..200,
            range in 1_000i64..900_000,
        ) {
            let mut t = 0i64;
            let samples: Vec<(i64, f64)> = gaps
                .iter()
                .enumerate()
                .map(|(i, g)| {
                    t += g;
                    (t, if huge.contains(&i) { f64::MAX / 1.5 } else { vals[i] * 1.37 })
                })
                .collect();
            let ends: Vec<i64> = (0..steps as i64).map(|k| start + k * step).collect();
            let mut got = vec![None; steps];
            let none: &[()] = &[];
            prop_assert!(avg_windows(&samples, none, &ends, range, |k, v| got[k] = Some(v.to_bits())));
            let want: Vec<Option<u64>> = ends
                .iter()
                .map(|&hi| {
                    let w: Vec<(i64, f64)> =
                        samples.iter().copied().filter(|p| p.0 > hi - range && p.0 <= hi).collect();
                    (!w.is_empty()).then(|| avg_over(&w).to_bits())
                })
                .collect();
            prop_assert_eq!(got, want);
        }
    }
}
