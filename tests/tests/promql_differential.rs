//! Differential PromQL test: the same generated data is remote-written to a real
//! Prometheus 2.42 (`--web.enable-remote-write-receiver`) and to the collector, then
//! a few hundred queries — generated from templates that cover every function,
//! aggregation and operator of PromQL 2.42, with seeded random matchers, ranges and
//! parameters — are run on both as instant and as range queries. The answers must be
//! equal: the same label sets, values to 1e-9 relative (NaN equals NaN), the same
//! order for `sort`, `sort_desc`, `topk` and `bottomk`, and both must fail where one
//! fails (with the same error type).
//!
//! The collector follows Prometheus 3; the reference is Prometheus 2.42. The
//! differences between the two that the test tolerates or steers clear of are listed,
//! with their reasons, in [`KNOWN_DIFFERENCES`]; any other difference fails the test,
//! after printing each query with both answers.
//!
//! `CALM_DIFF_SEED=n` runs another seed; `CALM_DIFF_ONLY=substring` only the queries
//! that contain the substring.

use anyhow::{anyhow, Result};
use calm_tests::api::{parse_query_data, show_labels, InstantSample, Labels};
use calm_tests::write::{request, series, RemoteWriter};
use calm_tests::{fmt_ts, now_ms, require_peer, Collector, PromApi, Prometheus, QueryResult};
use calm_wire::prompb::TimeSeries;
use std::collections::BTreeMap;

/// The Prometheus 2 → 3 differences this test knows about, with what it does about
/// each. Nothing else is tolerated.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[
    (
        "range selectors: left-closed [t-r, t] in 2.x, left-open (t-r, t] in 3",
        "avoided: samples sit at :03/:18/:33/:48, evaluation times at :07.5/:22.5/…, and \
         ranges, offsets, `@` times and subquery steps are multiples of 5 s, so no \
         window boundary (outer, lookback or subquery) ever falls on a sample",
    ),
    (
        "lookback window of instant selectors: [t-5m, t] in 2.x, (t-5m, t] in 3",
        "avoided the same way (no sample 5 m before an evaluation time)",
    ),
    (
        "holt_winters renamed double_exponential_smoothing (and put behind a feature \
         flag) in 3; promql-parser only knows the new name",
        "tolerated: Prometheus is asked holt_winters(…), the collector the same query \
         with double_exponential_smoothing(…)",
    ),
    (
        "UTF-8 label names in 3: label_replace/label_join accept a destination like \
         \"~invalid\" that 2.x refuses",
        "avoided: the invalid destination queried is \"\", invalid in both",
    ),
    (
        "delayed __name__ removal (3, feature flag): label_replace/label_join after a \
         function that drops the name may see __name__",
        "avoided: no query reads __name__ after a name-dropping function",
    ),
    (
        "rate/increase extrapolation towards a counter's zero point where the range \
         starts before the series' first sample: 2.x limits the extrapolation to the \
         zero point before comparing with 1.1× the sample interval, 3 after (so 2.x may \
         extrapolate by up to 1.1 intervals where 3 stops at half an interval)",
        "avoided: counters start at 0 or far above zero (they then agree); a series \
         starting at about one step's increase makes them differ",
    ),
    (
        "regex `.` matches newlines in 3, not in 2.x",
        "avoided: no label value contains a newline",
    ),
    (
        "functions and modifiers new in 3 (sort_by_label, limitk, limit_ratio, \
         mad_over_time, info, double_exponential_smoothing, native histograms)",
        "not queried: 2.42 does not have them",
    ),
    (
        "error messages are worded differently",
        "tolerated: when both fail, only the error type (bad_data, execution, …) is compared",
    ),
    (
        "order of elements with equal values after sort/sort_desc/topk/bottomk (Go's \
         sort is not stable)",
        "tolerated: for those queries the sequence of values must be equal, and the \
         label sets as a set",
    ),
    (
        "topk/bottomk with ties at the cut-off: which of the series with the same value \
         is kept is unspecified (Prometheus: heap order)",
        "tolerated: for top-level topk/bottomk, at each step the values must be equal \
         as a multiset; a series kept on one side only must have a twin of the same \
         value kept on the other",
    ),
];

// ---------------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------------

/// Sample interval.
const STEP_MS: i64 = 15_000;
/// Samples per series: one hour.
const POINTS: i64 = 241;
/// Sample timestamps are ≡ this (mod 15 s): off every 5 s grid.
const SAMPLE_PHASE_MS: i64 = 3_000;
/// Evaluation times are ≡ this (mod 15 s): half way between samples.
const EVAL_PHASE_MS: i64 = 7_500;

/// A seeded SplitMix64: reproducible data and queries without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, n).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn pick<'a, T: ?Sized>(&mut self, items: &[&'a T]) -> &'a T {
        items[self.below(items.len())]
    }
}

/// One generated series: labels and its samples (`None` = no sample at that index,
/// a stale-NaN value = staleness marker).
struct Gen {
    name: String,
    labels: Vec<(String, String)>,
    values: Vec<Option<f64>>,
}

impl Gen {
    fn new(name: &str, labels: &[(&str, &str)], values: Vec<Option<f64>>) -> Gen {
        Gen {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            values,
        }
    }
}

/// A counter: random integer increments, reset to a small value at `reset` if given.
/// It starts at 0 (a new process) or at a large value (a long-running one), never at
/// a value close to one step's increase (see [`KNOWN_DIFFERENCES`]: the zero point).
fn counter(rng: &mut Rng, rate: f64, reset: Option<i64>) -> Vec<Option<f64>> {
    let mut v = if rng.below(2) == 0 {
        0.0
    } else {
        1e6 + (rng.unit() * 1e5).floor()
    };
    (0..POINTS)
        .map(|i| {
            if i == 0 {
                // The first sample is the start value.
            } else if Some(i) == reset {
                v = (rng.unit() * 5.0).floor();
            } else {
                v += (rng.unit() * rate * 2.0).floor();
            }
            Some(v)
        })
        .collect()
}

/// A gauge: a random walk with two decimals around `level`.
fn gauge(rng: &mut Rng, level: f64) -> Vec<Option<f64>> {
    let mut v = level;
    (0..POINTS)
        .map(|_| {
            v += (rng.unit() - 0.5) * level * 0.1;
            Some((v * 100.0).round() / 100.0)
        })
        .collect()
}

/// The data set: ~40 series over an hour.
fn dataset(seed: u64) -> Vec<Gen> {
    let mut rng = Rng(seed);
    let mut out = Vec::new();
    for job in ["api", "web"] {
        for inst in ["i0", "i1"] {
            for method in ["GET", "POST"] {
                for status in ["200", "500"] {
                    let rate = if status == "200" { 20.0 } else { 2.0 };
                    // Some counters restart (a reset) at a random point.
                    let reset = (rng.below(3) == 0).then(|| 40 + rng.below(180) as i64);
                    let labels = [
                        ("job", job),
                        ("instance", inst),
                        ("method", method),
                        ("status", status),
                    ];
                    out.push(Gen::new(
                        "http_requests_total",
                        &labels,
                        counter(&mut rng, rate, reset),
                    ));
                }
            }
        }
    }
    for inst in ["i0", "i1"] {
        for (kind, level) in [("free", 2e9), ("used", 6e9)] {
            let labels = [("job", "api"), ("instance", inst), ("type", kind)];
            out.push(Gen::new(
                "memory_usage_bytes",
                &labels,
                gauge(&mut rng, level),
            ));
        }
        let cores = if inst == "i0" { 4.0 } else { 8.0 };
        out.push(Gen::new(
            "machine_cpu_cores",
            &[("job", "api"), ("instance", inst)],
            vec![Some(cores); POINTS as usize],
        ));
    }
    for inst in ["i0", "i1", "i2"] {
        let mut values = gauge(&mut rng, 50.0);
        match inst {
            // A staleness marker at 30 m; the series comes back at 40 m.
            "i1" => {
                values[120] = Some(calm_wire::value::stale_nan());
                values[121..160].iter_mut().for_each(|v| *v = None);
            }
            // A 12-minute gap (longer than the 5 m lookback) from 20 m.
            "i2" => values[80..128].iter_mut().for_each(|v| *v = None),
            _ => {}
        }
        out.push(Gen::new(
            "cpu_temp_celsius",
            &[("job", "node"), ("instance", inst)],
            values,
        ));
    }
    histogram(&mut rng, &mut out);
    out
}

/// A classic histogram per instance: `_bucket{le}`, `_sum`, `_count`.
fn histogram(rng: &mut Rng, out: &mut Vec<Gen>) {
    const BOUNDS: [&str; 5] = ["0.05", "0.1", "0.5", "1", "+Inf"];
    for inst in ["i0", "i1"] {
        let mut counts = [0.0f64; 5];
        let mut sum = 0.0;
        let mut series: Vec<Vec<Option<f64>>> = vec![Vec::new(); 7];
        for i in 0..POINTS {
            // The first sample is all zeros (a new process), as for counters.
            let observations = if i == 0 { 0 } else { rng.below(30) };
            for _ in 0..observations {
                let x = rng.unit().powi(3) * 2.0;
                sum += x;
                for (c, b) in counts.iter_mut().zip([0.05, 0.1, 0.5, 1.0, f64::INFINITY]) {
                    if x <= b {
                        *c += 1.0;
                    }
                }
            }
            for (s, c) in series.iter_mut().zip(counts) {
                s.push(Some(c));
            }
            series[5].push(Some((sum * 1e6).round() / 1e6));
            series[6].push(Some(counts[4]));
        }
        let mut it = series.into_iter();
        for le in BOUNDS {
            let labels = [("job", "api"), ("instance", inst), ("le", le)];
            out.push(Gen::new(
                "request_duration_seconds_bucket",
                &labels,
                it.next().unwrap_or_default(),
            ));
        }
        let labels = [("job", "api"), ("instance", inst)];
        out.push(Gen::new(
            "request_duration_seconds_sum",
            &labels,
            it.next().unwrap_or_default(),
        ));
        out.push(Gen::new(
            "request_duration_seconds_count",
            &labels,
            it.next().unwrap_or_default(),
        ));
    }
}

/// The batch job's last success: a timestamp (seconds) that moves every 10 minutes.
fn batch_series(start: i64) -> Gen {
    let values = (0..POINTS)
        .map(|i| Some(((start + i * STEP_MS) / 600_000 * 600) as f64))
        .collect();
    Gen::new(
        "batch_last_success_timestamp_seconds",
        &[("job", "batch")],
        values,
    )
}

/// Remote-write requests in time order, 5 minutes per request, so Prometheus' head
/// (which refuses samples more than an hour older than its newest) takes them all.
fn requests(data: &[Gen], start: i64) -> Vec<calm_wire::prompb::WriteRequest> {
    let per_request = 20;
    (0..POINTS)
        .step_by(per_request)
        .map(|first| {
            let last = (first + per_request as i64).min(POINTS);
            let ts: Vec<TimeSeries> = data
                .iter()
                .map(|g| {
                    let samples: Vec<(i64, f64)> = (first..last)
                        .filter_map(|i| g.values[i as usize].map(|v| (start + i * STEP_MS, v)))
                        .collect();
                    let labels: Vec<(&str, &str)> = g
                        .labels
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect();
                    series(&g.name, &labels, &samples)
                })
                .filter(|ts| !ts.samples.is_empty())
                .collect();
            request(ts)
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// Queries
// ---------------------------------------------------------------------------------

/// Round-robin choice for the placeholders that name functions and operators, so that
/// every one of them is queried whatever the seed.
#[derive(Default)]
struct Cycle(BTreeMap<&'static str, usize>);

impl Cycle {
    fn next(&mut self, key: &'static str, items: &[&str]) -> String {
        let n = self.0.entry(key).or_insert(0);
        *n += 1;
        items[(*n - 1) % items.len()].to_string()
    }
}

/// Fills one template's placeholders: selectors, ranges and numbers at random,
/// function and operator names round-robin.
fn fill(rng: &mut Rng, cycle: &mut Cycle, template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        let key = &rest[open + 1..open + close];
        out.push_str(&rest[..open]);
        match choice(rng, cycle, key) {
            Some(v) => out.push_str(&v),
            // Not a placeholder (a label matcher): keep it as is.
            None => out.push_str(&rest[open..=open + close]),
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out
}

/// The value of a placeholder, or `None` for text that is not one.
fn choice(rng: &mut Rng, cycle: &mut Cycle, key: &str) -> Option<String> {
    let v = match key {
        "C" => format!("http_requests_total{}", counter_matchers(rng)),
        "G" => gauge_selector(rng),
        "B" => format!(
            "request_duration_seconds_bucket{}",
            rng.pick(&["", "{instance=\"i0\"}", "{job=\"api\"}", "{le!=\"0.05\"}"])
        ),
        "R" => rng.pick(&["1m", "2m", "5m", "10m", "30m"]).into(),
        "OFF" => rng.pick(&["1m", "5m", "10m", "30m"]).into(),
        "Q" => cycle.next(
            "Q",
            &["0", "0.1", "0.5", "0.75", "0.9", "0.99", "1", "-0.5", "1.5"],
        ),
        "AGG" => cycle.next(
            "AGG",
            &[
                "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
            ],
        ),
        "BY" => rng
            .pick(&[
                "",
                "by ()",
                "by (job)",
                "by (instance)",
                "by (job, instance)",
                "by (nonexistent)",
                "without ()",
                "without (instance)",
                "without (instance, type)",
                "without (method, status)",
            ])
            .into(),
        "TB" => cycle.next("TB", &["topk", "bottomk"]),
        "K" => rng.pick(&["1", "2", "3", "5"]).into(),
        "OP" => cycle.next("OP", &["+", "-", "*", "/", "%", "^"]),
        "CMP" => cycle.next("CMP", &["==", "!=", ">", "<", ">=", "<="]),
        "SET" => cycle.next("SET", &["and", "or", "unless"]),
        "NUM" => rng
            .pick(&["1.2345", "0", "-3", "1e9", "5e9", "50", "NaN", "Inf"])
            .into(),
        "OT" => cycle.next(
            "OT",
            &[
                "avg", "min", "max", "sum", "count", "stddev", "stdvar", "last", "present",
            ],
        ),
        "MATH" => cycle.next(
            "MATH",
            &[
                "abs", "ceil", "floor", "exp", "ln", "log2", "log10", "sqrt", "round", "sgn",
            ],
        ),
        "TRIG" => cycle.next(
            "TRIG",
            &[
                "sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "tanh", "asinh",
                "acosh", "atanh", "deg", "rad",
            ],
        ),
        "DATE" => cycle.next(
            "DATE",
            &[
                "year",
                "month",
                "day_of_month",
                "day_of_week",
                "day_of_year",
                "days_in_month",
                "hour",
                "minute",
            ],
        ),
        "SQ" => rng
            .pick(&["5m:1m", "10m:30s", "15m:15s", "5m:10s", "20m:", "30m:5m"])
            .into(),
        _ => return None,
    };
    Some(v)
}

/// Random label matchers for `http_requests_total` (possibly none).
fn counter_matchers(rng: &mut Rng) -> String {
    let pool = [
        "job=\"api\"",
        "job=~\"api|web\"",
        "job!=\"web\"",
        "method=\"GET\"",
        "method!=\"POST\"",
        "status=~\"5..\"",
        "status!~\"2.*\"",
        "instance=\"i1\"",
        "instance=~\"i.*\"",
    ];
    let n = rng.below(3);
    let mut picked: Vec<&str> = Vec::new();
    for _ in 0..n {
        let m = pool[rng.below(pool.len())];
        if !picked.contains(&m) {
            picked.push(m);
        }
    }
    if picked.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", picked.join(", "))
    }
}

/// A random gauge selector.
fn gauge_selector(rng: &mut Rng) -> String {
    rng.pick(&[
        "memory_usage_bytes",
        "memory_usage_bytes{type=\"free\"}",
        "memory_usage_bytes{instance!=\"i0\"}",
        "memory_usage_bytes{type=~\"u.*\", instance=~\"i0|i1\"}",
        "cpu_temp_celsius",
        "cpu_temp_celsius{instance=\"i1\"}",
        "cpu_temp_celsius{instance=~\"i1|i2\"}",
        "{__name__=~\"memory_usage_bytes|cpu_temp_celsius\", instance=\"i0\"}",
    ])
    .into()
}

/// Query templates: `{C}` counter selector, `{G}` gauge selector, `{B}` histogram
/// buckets, `{R}` range, `{OFF}` offset, `{Q}` quantile, `{AGG}` simple aggregation,
/// `{BY}` grouping, `{TB}` topk/bottomk, `{K}` k, `{OP}` arithmetic, `{CMP}`
/// comparison, `{SET}` and/or/unless, `{NUM}` number, `{OT}` `*_over_time` prefix,
/// `{MATH}`/`{TRIG}` functions, `{DATE}` date functions, `{SQ}` subquery range:step.
/// The number is how many variants of the template to generate.
const TEMPLATES: &[(&str, usize)] = &[
    // Literals and selectors.
    ("42", 1),
    ("-1 ^ 2", 1),
    ("1 * 2 + 4 / 6 - 10 % 2 ^ 2", 1),
    ("0x3d + .123 - 1.23e-3", 1),
    ("{C}", 3),
    ("{G}", 3),
    ("cpu_temp_celsius", 2),
    ("{G} offset {OFF}", 2),
    ("{G} offset -{OFF}", 1),
    ("{C}[{R}]", 2),
    ("cpu_temp_celsius[{R}]", 1),
    ("{__name__=~\"machine_.*\"}", 1),
    ("nonexistent_metric_name", 1),
    ("{__name__=~\".*\"}", 1),
    // Counters.
    ("rate({C}[{R}])", 4),
    ("irate({C}[{R}])", 3),
    ("increase({C}[{R}])", 3),
    ("resets({C}[{R}])", 2),
    ("changes({C}[{R}])", 1),
    ("rate({C}[{R}] offset {OFF})", 2),
    ("rate(nonexistent_metric[5m])", 1),
    ("rate(request_duration_seconds_sum[{R}]) / rate(request_duration_seconds_count[{R}])", 1),
    // Gauges.
    ("delta({G}[{R}])", 3),
    ("idelta({G}[{R}])", 2),
    ("deriv({G}[{R}])", 3),
    ("predict_linear({G}[{R}], 600)", 3),
    ("predict_linear({G}[{R}], -300)", 1),
    ("changes({G}[{R}])", 2),
    ("holt_winters({G}[{R}], 0.5, 0.5)", 2),
    ("holt_winters({G}[{R}], 0.1, 0.9)", 1),
    ("{OT}_over_time({G}[{R}])", 10),
    ("{OT}_over_time({C}[{R}])", 3),
    ("quantile_over_time({Q}, {G}[{R}])", 4),
    ("absent_over_time({G}[{R}])", 1),
    ("absent_over_time(nonexistent{job=\"x\"}[{R}])", 1),
    ("absent_over_time(cpu_temp_celsius{instance=\"i2\"}[1m])", 1),
    // Histograms.
    ("histogram_quantile({Q}, rate({B}[{R}]))", 4),
    ("histogram_quantile({Q}, sum by (le) (rate({B}[{R}])))", 3),
    ("histogram_quantile({Q}, sum without (instance) (increase({B}[{R}])))", 2),
    ("histogram_quantile(0.9, {B})", 1),
    ("histogram_quantile(0.9, memory_usage_bytes)", 1),
    ("histogram_quantile(0.9, {__name__=~\"request_duration_seconds_.+\"})", 1),
    ("histogram_quantile(0.9, nonexistent_metric)", 1),
    ("count_values(\"value\", {B})", 1),
    // Labels.
    ("label_replace({G}, \"dst\", \"value-$1\", \"instance\", \"i(.*)\")", 2),
    ("label_replace(machine_cpu_cores, \"job\", \"destination-value-$1\", \"instance\", \"host:(.*)\")", 1),
    ("label_replace(machine_cpu_cores, \"job\", \"$1-$2\", \"instance\", \"(.)(.*)\")", 1),
    ("label_replace(machine_cpu_cores, \"job\", \"value-$1\", \"nonexistent-src\", \"source-value-(.*)\")", 1),
    ("label_replace(machine_cpu_cores, \"job\", \"value-$1\", \"nonexistent-src\", \"(.*)\")", 1),
    ("label_replace(machine_cpu_cores, \"job\", \"\", \"dst\", \".*\")", 1),
    ("label_replace(machine_cpu_cores, \"job\", \"value-$1\", \"src\", \"(.*\")", 1),
    ("label_replace(machine_cpu_cores, \"\", \"\", \"src\", \"(.*)\")", 1),
    ("label_replace(machine_cpu_cores, \"instance\", \"\", \"\", \"\")", 1),
    ("label_replace(rate({C}[{R}]), \"status\", \"${1}xx\", \"status\", \"(.).*\")", 1),
    // Byte escapes are bytes, as in Go: "caf\xc3\xa9" and "\303\251" spell UTF-8.
    ("label_replace(machine_cpu_cores, \"job\", \"caf\\xc3\\xa9-$1\", \"instance\", \"(.*)\")", 1),
    ("label_replace(machine_cpu_cores, \"job\", \"caf\\303\\251\", \"\", \"\") != bool 0", 1),
    ("label_join(machine_cpu_cores, \"new_label\", \"-\", \"instance\", \"job\")", 1),
    ("label_join(machine_cpu_cores, \"job\", \"-\", \"instance\", \"job\")", 1),
    ("label_join(machine_cpu_cores, \"job\", \"-\", \"instance\")", 1),
    ("label_join({C}, \"key\", \",\", \"method\", \"status\", \"nonexistent\")", 1),
    ("label_join(machine_cpu_cores, \"\", \"-\", \"instance\")", 1),
    // absent, vector, scalar, time.
    ("absent({G})", 1),
    ("absent(nonexistent{job=\"x\", instance=~\"i.*\"})", 1),
    ("absent(nonexistent{job=\"x\", job=\"y\"})", 1),
    ("absent(sum(nonexistent))", 1),
    ("vector(1.23)", 1),
    ("vector(time())", 1),
    ("scalar({G})", 2),
    ("scalar(machine_cpu_cores{instance=\"i1\"}) * {G}", 1),
    ("scalar(sum(machine_cpu_cores))", 1),
    ("time()", 1),
    ("time() - batch_last_success_timestamp_seconds", 1),
    ("timestamp({G})", 2),
    ("timestamp(timestamp({G}))", 1),
    ("timestamp(-{G})", 1),
    ("timestamp({G} * 1)", 1),
    ("timestamp(cpu_temp_celsius offset {OFF})", 1),
    ("{DATE}()", 4),
    ("{DATE}(batch_last_success_timestamp_seconds)", 4),
    ("{DATE}(batch_last_success_timestamp_seconds offset {OFF})", 2),
    ("{DATE}(vector(1709251200))", 2),
    ("{DATE}(vector(951782400 + 86399))", 1),
    // Math.
    ("{MATH}({G})", 7),
    ("{MATH}(-{G})", 3),
    ("{TRIG}({G} / 1e10)", 10),
    ("{TRIG}(-{G} / 1e10)", 4),
    ("round({G}, 0.1)", 1),
    ("round({G}, 7)", 1),
    ("pi() * {G}", 1),
    ("clamp({G}, 0, 1)", 1),
    ("clamp({G}, 40, 55)", 1),
    ("clamp({G}, 1000000000000, 0)", 1),
    ("clamp_min({G}, 45)", 1),
    ("clamp_max({G}, 45)", 1),
    // Sorting.
    ("sort({G})", 2),
    ("sort_desc({G})", 2),
    ("sort(rate({C}[{R}]))", 2),
    ("sort_desc(sum by (job, instance) (rate({C}[{R}])))", 1),
    // Aggregations.
    ("{AGG} {BY} ({G})", 8),
    ("{AGG} {BY} (rate({C}[{R}]))", 8),
    ("{AGG}(nonexistent_metric_name)", 2),
    ("{TB}({K}, {G})", 3),
    ("{TB}({K}, rate({C}[{R}]))", 3),
    ("{TB} by (job) ({K}, {C})", 2),
    ("{TB} without (instance) (2, {G})", 1),
    ("quantile({Q}, {G})", 3),
    ("quantile by (job) ({Q}, rate({C}[{R}]))", 2),
    ("count_values(\"value\", machine_cpu_cores)", 1),
    ("count_values by (job) (\"status\", {C} > 0)", 1),
    ("count_values without (instance) (\"v\", round({G}))", 1),
    ("avg(max by (type) (memory_usage_bytes))", 1),
    ("sum by (job) (group by (job, instance) ({C}))", 1),
    // Binary operators.
    ("{G} {OP} {NUM}", 6),
    ("{NUM} {OP} {G}", 4),
    ("{G} {CMP} {NUM}", 4),
    ("{G} {CMP} bool {NUM}", 4),
    ("{NUM} {CMP} bool {G}", 2),
    ("machine_cpu_cores + (1 {CMP} bool 2)", 2),
    ("{C} {OP} on (job, instance, method, status) {C}", 3),
    ("{C} {CMP} bool on (job, instance, method, status) {C}", 2),
    ("{C} / on (job, instance, method, status, __name__) {C}", 1),
    ("memory_usage_bytes / on (job, instance) group_left machine_cpu_cores", 1),
    ("memory_usage_bytes / on (job, instance) group_left (job) machine_cpu_cores", 1),
    ("machine_cpu_cores * on (job, instance) group_right memory_usage_bytes", 1),
    ("sum by (job, instance) (rate({C}[{R}])) / on (job, instance) group_left machine_cpu_cores", 1),
    ("sum by (instance, type) (memory_usage_bytes) {OP} on (instance, type) group_left (job) memory_usage_bytes", 2),
    ("sum without (job) (memory_usage_bytes) / on (instance, type) memory_usage_bytes", 1),
    ("memory_usage_bytes{type=\"used\"} / ignoring (type) memory_usage_bytes{type=\"free\"}", 1),
    ("http_requests_total{status=\"500\"} / ignoring (status) http_requests_total{status=\"200\"}", 1),
    ("rate(http_requests_total{status=\"500\"}[{R}]) / ignoring (status) group_left rate(http_requests_total{status=\"200\"}[{R}])", 1),
    ("http_requests_total / on (job) http_requests_total", 1),
    ("memory_usage_bytes / on (job) machine_cpu_cores", 1),
    ("{C} {SET} {C}", 4),
    ("{C} {SET} {G}", 2),
    ("{C} {SET} on (instance) {G}", 2),
    ("{C} {SET} ignoring (method, status) machine_cpu_cores", 2),
    ("rate({C}[{R}]) > 0.5 {SET} rate({C}[{R}]) < 2", 2),
    ("machine_cpu_cores * Inf", 1),
    ("machine_cpu_cores * -Inf", 1),
    ("machine_cpu_cores * NaN", 1),
    ("-{G} + -(1)", 1),
    ("time() {OP} 1", 2),
    ("1 {CMP} bool time()", 2),
    ("time() {CMP} bool time()", 1),
    ("time() {OP} {G}", 2),
    ("{G} {OP} time()", 1),
    ("(1 * 2 + 4 / 6 - (10 % 7) ^ 2) {OP} {G}", 1),
    // offset and @.
    ("{G} @ start()", 1),
    ("{G} @ end()", 1),
    ("rate({C}[{R}] @ end())", 2),
    ("rate({C}[{R}] @ start() offset 5m)", 1),
    ("sum(rate({C}[{R}] offset {OFF}))", 1),
    ("{G} @ @AT@", 2),
    ("max_over_time({G}[{R}] @ @AT@ offset {OFF})", 1),
    ("timestamp({G} @ end())", 1),
    // Subqueries.
    ("max_over_time(rate({C}[1m])[{SQ}])", 3),
    ("avg_over_time({G}[{SQ}])", 2),
    ("min_over_time(deriv({G}[5m])[{SQ}])", 1),
    ("rate({C}[5m:])", 1),
    ("sum_over_time(sum by (job) (rate({C}[2m]))[10m:15s] @ end())", 1),
    ("max_over_time((time() - max(batch_last_success_timestamp_seconds) < 1000)[5m:10s] offset 5m)", 1),
    ("avg_over_time(rate(http_requests_total[1m])[2m:10s])", 1),
    ("count_over_time({G}[{SQ}])", 1),
    ("stddev_over_time((memory_usage_bytes / on (job, instance) group_left machine_cpu_cores)[10m:1m])", 1),
];

/// Every function and aggregation of PromQL 2.42 (classic histograms): each must be
/// called by at least one generated query.
const COVERED: &[&str] = &[
    "abs",
    "absent",
    "absent_over_time",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "avg",
    "avg_over_time",
    "bottomk",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "cos",
    "cosh",
    "count",
    "count_over_time",
    "count_values",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "deg",
    "delta",
    "deriv",
    "exp",
    "floor",
    "group",
    "histogram_quantile",
    "holt_winters",
    "hour",
    "idelta",
    "increase",
    "irate",
    "label_join",
    "label_replace",
    "last_over_time",
    "ln",
    "log10",
    "log2",
    "max",
    "max_over_time",
    "min",
    "min_over_time",
    "minute",
    "month",
    "pi",
    "predict_linear",
    "present_over_time",
    "quantile",
    "quantile_over_time",
    "rad",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sin",
    "sinh",
    "sort",
    "sort_desc",
    "sqrt",
    "stddev",
    "stddev_over_time",
    "stdvar",
    "stdvar_over_time",
    "sum",
    "sum_over_time",
    "tan",
    "tanh",
    "time",
    "timestamp",
    "topk",
    "vector",
    "year",
];

/// True when `query` calls function or aggregation `f` (`f(`, `f (`, `f by …`).
fn calls(query: &str, f: &str) -> bool {
    query.match_indices(f).any(|(i, _)| {
        let before = query[..i].chars().next_back();
        let after = query[i + f.len()..].chars().next();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
            && matches!(after, Some('(') | Some(' '))
    })
}

/// One generated query and whether its answer's order matters.
struct Query {
    /// The query as Prometheus 2.42 gets it.
    text: String,
    /// The same query in Prometheus 3's words, as the collector gets it.
    calm_text: String,
    /// `sort`, `sort_desc`, `topk` or `bottomk` over the whole vector.
    ordered: bool,
    /// `topk` or `bottomk` at the top: ties at the cut-off may keep other series.
    top_k: bool,
}

/// Generates the query set from [`TEMPLATES`]; `at` is the time used for `@AT@`.
fn queries(seed: u64, at: i64) -> Vec<Query> {
    let mut rng = Rng(seed ^ 0x5EED);
    let mut cycle = Cycle::default();
    let mut out: Vec<Query> = Vec::new();
    for (template, n) in TEMPLATES {
        for _ in 0..*n {
            let text = fill(&mut rng, &mut cycle, template)
                .replace("@AT@", &fmt_ts(at))
                .replace("  ", " ");
            if out.iter().any(|q| q.text == text) {
                continue;
            }
            // Order matters where the outermost call orders its result over the whole
            // vector (not per group).
            let ordered = ["sort(", "sort_desc(", "topk(", "bottomk("]
                .iter()
                .any(|p| text.starts_with(p));
            let top_k = text.starts_with("topk") || text.starts_with("bottomk");
            let calm_text = text.replace("holt_winters(", "double_exponential_smoothing(");
            out.push(Query {
                text,
                calm_text,
                ordered,
                top_k,
            });
        }
    }
    out
}

// ---------------------------------------------------------------------------------
// Comparison
// ---------------------------------------------------------------------------------

/// An answer: a result, or the error type and message.
#[derive(Debug)]
enum Answer {
    Ok(QueryResult),
    Err { kind: String, message: String },
}

/// Runs one API call and reads the answer.
fn ask(api: &PromApi, path: &str, params: &[(&str, String)]) -> Answer {
    match api.call(false, path, params) {
        Ok((200, v)) => match parse_query_data(&v["data"]) {
            Ok(r) => Answer::Ok(r),
            Err(e) => Answer::Err {
                kind: "unparsable".into(),
                message: format!("{e:#}: {v}"),
            },
        },
        Ok((status, v)) => Answer::Err {
            kind: v["errorType"].as_str().unwrap_or("none").to_string(),
            message: format!("HTTP {status}: {}", v["error"]),
        },
        Err(e) => Answer::Err {
            kind: "transport".into(),
            message: format!("{e:#}"),
        },
    }
}

/// Values equal to 1e-9 relative; NaN equals NaN.
fn close(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a == b {
        return true;
    }
    if a.is_infinite() || b.is_infinite() {
        return false;
    }
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

fn samples_close(a: &[(i64, f64)], b: &[(i64, f64)]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.0 == y.0 && close(x.1, y.1))
}

/// Compares two instant vectors: as maps of labels, and for ordered queries also the
/// sequence of values.
fn vectors_differ(p: &[InstantSample], c: &[InstantSample], ordered: bool) -> Option<String> {
    let pm: BTreeMap<&Labels, (i64, f64)> = p
        .iter()
        .map(|s| (&s.labels, (s.timestamp, s.value)))
        .collect();
    let cm: BTreeMap<&Labels, (i64, f64)> = c
        .iter()
        .map(|s| (&s.labels, (s.timestamp, s.value)))
        .collect();
    if pm.len() != p.len() || cm.len() != c.len() {
        return Some("duplicate label sets in a vector".into());
    }
    if pm.keys().ne(cm.keys()) {
        return Some("label sets differ".into());
    }
    for (l, pv) in &pm {
        let cv = cm[l];
        if pv.0 != cv.0 || !close(pv.1, cv.1) {
            return Some(format!("{}: {pv:?} vs {cv:?}", show_labels(l)));
        }
    }
    if ordered && !p.iter().zip(c).all(|(a, b)| close(a.value, b.value)) {
        return Some("order differs".into());
    }
    None
}

/// One step of an answer: each series' value.
type Step<'a> = BTreeMap<&'a Labels, f64>;

/// Points grouped by step.
fn by_step(pts: &[(Labels, i64, f64)]) -> BTreeMap<i64, Step<'_>> {
    let mut m: BTreeMap<i64, Step> = BTreeMap::new();
    for (l, t, v) in pts {
        m.entry(*t).or_default().insert(l, *v);
    }
    m
}

/// Compares topk/bottomk answers step by step, allowing ties at the cut-off: the
/// values of each step must be equal as a multiset, series on both sides must have
/// equal values, and a series on one side only must have a same-valued twin on the
/// other side only.
fn top_k_differ(p: &[(Labels, i64, f64)], c: &[(Labels, i64, f64)]) -> Option<String> {
    let (ps, cs) = (by_step(p), by_step(c));
    if ps.keys().ne(cs.keys()) {
        return Some("steps differ".into());
    }
    for (t, pm) in &ps {
        let cm = &cs[t];
        let only = |a: &Step, b: &Step| -> Vec<f64> {
            let mut v: Vec<f64> = a
                .iter()
                .filter(|(l, _)| !b.contains_key(*l))
                .map(|(_, v)| *v)
                .collect();
            v.sort_by(f64::total_cmp);
            v
        };
        let common_differ = pm
            .iter()
            .any(|(l, v)| cm.get(l).is_some_and(|w| !close(*v, *w)));
        let (po, co) = (only(pm, cm), only(cm, pm));
        let twins = po.len() == co.len() && po.iter().zip(&co).all(|(a, b)| close(*a, *b));
        if common_differ || !twins {
            return Some(format!("values at {t} differ: {pm:?} vs {cm:?}"));
        }
    }
    None
}

/// Describes how two answers differ, or `None` when they agree.
fn differ(p: &Answer, c: &Answer, q: &Query) -> Option<String> {
    match (p, c) {
        (Answer::Err { kind: a, .. }, Answer::Err { kind: b, .. }) => {
            (a != b).then(|| format!("error types differ: {a} vs {b}"))
        }
        (Answer::Err { .. }, _) => Some("only Prometheus failed".into()),
        (_, Answer::Err { .. }) => Some("only the collector failed".into()),
        (Answer::Ok(p), Answer::Ok(c)) => match (p, c) {
            (QueryResult::Vector(a), QueryResult::Vector(b)) if q.top_k => {
                let points = |v: &[InstantSample]| -> Vec<(Labels, i64, f64)> {
                    v.iter()
                        .map(|s| (s.labels.clone(), s.timestamp, s.value))
                        .collect()
                };
                let ordered = a.iter().zip(b).all(|(x, y)| close(x.value, y.value));
                top_k_differ(&points(a), &points(b))
                    .or_else(|| (!ordered).then(|| "order differs".into()))
            }
            (QueryResult::Vector(a), QueryResult::Vector(b)) => vectors_differ(a, b, q.ordered),
            (QueryResult::Matrix(a), QueryResult::Matrix(b)) if q.top_k => {
                let points = |m: &[calm_tests::Series]| -> Vec<(Labels, i64, f64)> {
                    m.iter()
                        .flat_map(|s| s.samples.iter().map(|&(t, v)| (s.labels.clone(), t, v)))
                        .collect()
                };
                top_k_differ(&points(a), &points(b))
            }
            (QueryResult::Matrix(a), QueryResult::Matrix(b)) => {
                let mut a = a.clone();
                let mut b = b.clone();
                a.sort_by(|x, y| x.labels.cmp(&y.labels));
                b.sort_by(|x, y| x.labels.cmp(&y.labels));
                if a.iter().map(|s| &s.labels).ne(b.iter().map(|s| &s.labels)) {
                    return Some("label sets differ".into());
                }
                a.iter()
                    .zip(&b)
                    .find(|(x, y)| !samples_close(&x.samples, &y.samples))
                    .map(|(x, _)| format!("samples of {} differ", show_labels(&x.labels)))
            }
            (QueryResult::Scalar(t1, v1), QueryResult::Scalar(t2, v2)) => {
                (t1 != t2 || !close(*v1, *v2)).then(|| "scalars differ".into())
            }
            (QueryResult::String(t1, s1), QueryResult::String(t2, s2)) => {
                (t1 != t2 || s1 != s2).then(|| "strings differ".into())
            }
            _ => Some("result types differ".into()),
        },
    }
}

/// True for an answer without data (an empty vector or matrix).
fn is_empty(r: &QueryResult) -> bool {
    match r {
        QueryResult::Vector(v) => v.is_empty(),
        QueryResult::Matrix(m) => m.is_empty(),
        _ => false,
    }
}

/// Renders an answer for a failure report.
fn show(a: &Answer) -> String {
    let vector = |v: &[InstantSample]| -> String {
        v.iter()
            .map(|s| {
                format!(
                    "  {} @{} = {}",
                    show_labels(&s.labels),
                    s.timestamp,
                    s.value
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    match a {
        Answer::Err { kind, message } => format!("  error {kind}: {message}"),
        Answer::Ok(QueryResult::Vector(v)) => format!("vector ({}):\n{}", v.len(), vector(v)),
        Answer::Ok(QueryResult::Matrix(m)) => {
            let lines: Vec<String> = m
                .iter()
                .map(|s| format!("  {} = {:?}", show_labels(&s.labels), s.samples))
                .collect();
            format!("matrix ({}):\n{}", m.len(), lines.join("\n"))
        }
        Answer::Ok(other) => format!("  {other:?}"),
    }
}

/// One query's comparison on one kind of evaluation.
struct Outcome {
    desc: String,
    diff: Option<String>,
    prom: Answer,
    calm: Answer,
}

/// Runs an instant query on both sides.
fn instant(papi: &PromApi, capi: &PromApi, q: &Query, t: i64) -> Outcome {
    let params = |text: &str| [("query", text.to_string()), ("time", fmt_ts(t))];
    let prom = ask(papi, "/api/v1/query", &params(&q.text));
    let calm = ask(capi, "/api/v1/query", &params(&q.calm_text));
    Outcome {
        desc: format!("instant query {:?} at {}", q.text, fmt_ts(t)),
        diff: differ(&prom, &calm, q),
        prom,
        calm,
    }
}

/// Runs a range query on both sides.
fn range(papi: &PromApi, capi: &PromApi, q: &Query, start: i64, end: i64, step: i64) -> Outcome {
    let params = |text: &str| {
        [
            ("query", text.to_string()),
            ("start", fmt_ts(start)),
            ("end", fmt_ts(end)),
            ("step", format!("{}", step / 1000)),
        ]
    };
    let prom = ask(papi, "/api/v1/query_range", &params(&q.text));
    let calm = ask(capi, "/api/v1/query_range", &params(&q.calm_text));
    Outcome {
        desc: format!(
            "range query {:?} start={} end={} step={}s",
            q.text,
            fmt_ts(start),
            fmt_ts(end),
            step / 1000
        ),
        diff: differ(&prom, &calm, q),
        prom,
        calm,
    }
}

/// Writes every request to one side, failing on any refusal.
fn write_all(url: &str, reqs: &[calm_wire::prompb::WriteRequest]) -> Result<()> {
    let w = RemoteWriter::new(url);
    for r in reqs {
        let a = w.send(r)?;
        if !a.ok() {
            return Err(anyhow!("POST {url}: HTTP {}: {}", a.status, a.body));
        }
    }
    Ok(())
}

#[test]
fn promql_answers_equal_prometheus_2_42() {
    let Some(prom_bin) = require_peer("prometheus") else {
        return;
    };
    let seed: u64 = std::env::var("CALM_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_240_301);
    let only = std::env::var("CALM_DIFF_ONLY").ok();

    // An hour of samples ending 4–5 minutes ago, at :03/:18/:33/:48.
    let now = now_ms();
    let end = (now - 5 * 60_000).div_euclid(STEP_MS) * STEP_MS + SAMPLE_PHASE_MS;
    let start = end - (POINTS - 1) * STEP_MS;
    let mut data = dataset(seed);
    data.push(batch_series(start));
    let reqs = requests(&data, start);

    let collector = Collector::start();
    let prom = Prometheus::start(&prom_bin, "global:\n  scrape_interval: 15s\n", true);
    write_all(&format!("{}/api/v1/write", prom.url()), &reqs)
        .unwrap_or_else(|e| panic!("Prometheus refused the data: {e:#}\n{}", prom.log_tail(20)));
    write_all(&collector.write_url(), &reqs).unwrap_or_else(|e| {
        panic!(
            "the collector refused the data: {e:#}\n{}",
            collector.log_tail(20)
        )
    });
    let (papi, capi) = (prom.api(), collector.api());

    // Evaluation times half way between samples: early, around the staleness marker
    // (30 m) and the gap (20–32 m), late, and after the last sample (lookback).
    let eval = |minutes: i64| start + minutes * 60_000 + (EVAL_PHASE_MS - SAMPLE_PHASE_MS);
    let times: Vec<i64> = [6, 12, 21, 27, 30, 33, 41, 47, 55, 59, 62, 64]
        .iter()
        .map(|&m| eval(m))
        .collect();
    let at = start + 25 * 60_000 - SAMPLE_PHASE_MS; // a whole minute: on the 5 s grid
    let qs = queries(seed, at);
    assert!(qs.len() >= 200, "only {} queries generated", qs.len());
    let missing: Vec<&str> = COVERED
        .iter()
        .filter(|f| !qs.iter().any(|q| calls(&q.text, f)))
        .copied()
        .collect();
    assert!(missing.is_empty(), "no query calls {missing:?}");

    let mut rng = Rng(seed ^ 0x7153);
    let mut failures: Vec<Outcome> = Vec::new();
    let mut runs = 0;
    let (mut empty, mut errors) = (0, 0);
    for q in qs
        .iter()
        .filter(|q| only.as_deref().is_none_or(|o| q.text.contains(o)))
    {
        let t = times[rng.below(times.len())];
        let step = [30_000, 60_000, 120_000][rng.below(3)];
        let outcomes = [
            instant(&papi, &capi, q, t),
            range(&papi, &capi, q, eval(8), eval(63), step),
        ];
        runs += outcomes.len();
        for o in &outcomes {
            match (&o.prom, &o.diff) {
                (Answer::Err { .. }, None) => errors += 1,
                (Answer::Ok(r), None) if is_empty(r) => empty += 1,
                _ => {}
            }
        }
        failures.extend(outcomes.into_iter().filter(|o| o.diff.is_some()));
    }

    for f in &failures {
        eprintln!(
            "DIFFERENCE in {}: {}\n Prometheus 2.42: {}\n collector: {}\n",
            f.desc,
            f.diff.as_deref().unwrap_or(""),
            show(&f.prom),
            show(&f.calm)
        );
    }
    eprintln!(
        "{} of {runs} evaluations ({} queries, seed {seed}) differ ({empty} agree on an \
         empty answer, {errors} on an error); known, tolerated or avoided differences:\n{}",
        failures.len(),
        qs.len(),
        KNOWN_DIFFERENCES
            .iter()
            .map(|(what, how)| format!("  - {what}: {how}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        failures.is_empty(),
        "{} evaluations differ from Prometheus 2.42 (listed above): {:?}",
        failures.len(),
        failures.iter().map(|f| &f.desc).collect::<Vec<_>>()
    );
}
