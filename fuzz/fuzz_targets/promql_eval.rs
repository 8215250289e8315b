//! Fuzzes the PromQL engine: arbitrary query text is parsed by `promql-parser` and, when
//! it parses, evaluated by Calm's engine as an instant query and as a small range query
//! over a fixed in-memory data set (counters with a reset, gauges, a classic histogram,
//! a stale marker and a gap). Errors are fine; panics, hangs and unbounded memory are not.
//!
//! promql-parser 0.11.1 itself panics on number durations too large for a `Duration`
//! (`x[5e22]`, `x offset 1e400`: `Duration::from_secs_f64` in its grammar actions). That
//! bug is known and reported; `CALM_FUZZ_PARSER_PANICS=1` lets it crash the run again,
//! by default such inputs are skipped so the fuzzer gets past them to the engine.
//!
//! Inputs go through `promql::engine::parse_guarded`, as every query of the collector
//! does: the length and depth limits (`promql/limits.rs`, the collector's defaults)
//! come first, so a deep input (`((((…`, `- - - …`, `a or a or …`) must be refused
//! before the parser, the evaluator or `Drop` can overflow the stack. No input is cut
//! short here: run with `-max_len=204800` to feed queries up to 200 KB.
#![no_main]

use calm_collector::promql::{Engine, EngineOptions};
use calm_collector::tsdb::{self, Db};
use calm_wire::prompb::{Label, Sample, TimeSeries};
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Sample interval of the fixed data.
const STEP_MS: i64 = 15_000;
/// Samples per series (10 minutes).
const POINTS: i64 = 40;

/// The data set and the temp dir that holds it (kept alive for the whole run).
struct Fixture {
    _dir: tempfile::TempDir,
    db: Arc<Db>,
}

/// One series from a name, labels and a value function of the sample index; `None`
/// leaves a gap, `Some(NaN)` from [`tsdb::stale_nan`] writes a stale marker.
fn series(name: &str, labels: &[(&str, &str)], value: impl Fn(i64) -> Option<f64>) -> TimeSeries {
    let mut l = vec![Label::new("__name__", name)];
    l.extend(labels.iter().map(|(k, v)| Label::new(*k, *v)));
    let samples = (0..POINTS)
        .filter_map(|i| {
            value(i).map(|value| Sample {
                value,
                timestamp: i * STEP_MS,
            })
        })
        .collect();
    let mut ts = TimeSeries {
        labels: l,
        samples,
        exemplars: Vec::new(),
        histograms: Vec::new(),
    };
    calm_wire::labels::validate_series(&mut ts, &Default::default()).expect("valid series");
    ts
}

/// The fixed series.
fn data() -> Vec<TimeSeries> {
    let mut out = Vec::new();
    for (inst, k) in [("a", 1.0), ("b", 3.0)] {
        out.push(series(
            "http_requests_total",
            &[("job", "api"), ("instance", inst)],
            |i| {
                Some(if i < 20 {
                    i as f64 * k
                } else {
                    (i - 20) as f64 * k
                })
            },
        ));
        out.push(series(
            "temperature",
            &[("job", "node"), ("instance", inst)],
            |i| match i {
                10 => Some(tsdb::stale_nan()),
                25..=29 => None,
                _ => Some((i as f64 / 3.0).sin() * 10.0 * k),
            },
        ));
        for (le, share) in [("0.1", 0.2), ("1", 0.7), ("+Inf", 1.0)] {
            out.push(series(
                "latency_seconds_bucket",
                &[("job", "api"), ("instance", inst), ("le", le)],
                move |i| Some((i as f64 * 10.0 * share * k).floor()),
            ));
        }
        out.push(series(
            "latency_seconds_count",
            &[("job", "api"), ("instance", inst)],
            |i| Some(i as f64 * 10.0 * k),
        ));
    }
    out
}

/// Opens the Db once per process and loads the data.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut opts = tsdb::Options::new(dir.path());
        opts.ooo_window_ms = i64::MAX / 4;
        opts.retention_ms = i64::MAX / 4;
        opts.max_query_samples = 200_000;
        let db = Db::open(opts).expect("open db");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let summary = rt.block_on(db.write(&data())).expect("write");
        assert_eq!(summary.rejected, 0, "fixture samples rejected");
        Fixture { _dir: dir, db }
    })
}

/// Parses `text` behind the collector's limits; `None` when the parser panicked (see
/// the module docs).
fn parse(text: &str) -> Option<Result<promql_parser::parser::Expr, String>> {
    static LET_PANIC: OnceLock<bool> = OnceLock::new();
    if *LET_PANIC.get_or_init(|| std::env::var_os("CALM_FUZZ_PARSER_PANICS").is_some()) {
        calm_collector::promql::limits::check(text).ok()?;
        return Some(promql_parser::parser::parse(text));
    }
    // The limits' own pass runs outside the quiet hook: a panic in it is a finding.
    if calm_collector::promql::limits::check(text).is_err() {
        return Some(Err("over the limits".into()));
    }
    // libFuzzer's panic hook aborts: swap it out around the parser only (the fuzzer
    // runs one input at a time). `parse_guarded` is the collector's own entry (limits,
    // Go string escapes, the parser's panics caught).
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let out = std::panic::catch_unwind(|| {
        calm_collector::promql::engine::parse_guarded(text)
    })
    .ok();
    std::panic::set_hook(hook);
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some(Ok(expr)) = parse(text) else {
        return;
    };
    let fx = fixture();
    let opts = EngineOptions {
        max_samples: 200_000,
        timeout: Duration::from_secs(2),
        ..EngineOptions::default()
    };
    let engine = Engine::with_options(&*fx.db, opts);
    let _ = engine.instant_expr(&expr, 307_500);
    let _ = engine.range_expr(&expr, 120_000, 420_000, 30_000);
});
