//! Engine tests on a real TSDB: selectors, operators, aggregations, functions,
//! limits and robustness against hostile queries.

use super::engine::{Engine, EngineOptions};
use super::value::{Labels, QueryValue};
use super::Error;
use crate::storage::embedded::TestTsdb;
use crate::tsdb;
use calm_wire::prompb::{Label, Sample, TimeSeries};
use std::time::Duration;

/// A series to load: labels and samples.
type TestSeries<'a> = (&'a [(&'a str, &'a str)], &'a [(i64, f64)]);

fn db_with(series: &[TestSeries<'_>]) -> (tempfile::TempDir, TestTsdb) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = TestTsdb::open(dir.path(), i64::MAX / 4).expect("open");
    let batch: Vec<TimeSeries> = series
        .iter()
        .map(|(labels, samples)| {
            let mut ls: Vec<Label> = labels.iter().map(|(n, v)| Label::new(*n, *v)).collect();
            ls.sort_by(|a, b| a.name.cmp(&b.name));
            TimeSeries {
                labels: ls,
                samples: samples
                    .iter()
                    .map(|(t, v)| Sample {
                        value: *v,
                        timestamp: *t,
                    })
                    .collect(),
                exemplars: Vec::new(),
                histograms: vec![],
            }
        })
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(db.sink().write(&batch, None)).expect("write");
    (dir, db)
}

fn counters() -> (tempfile::TempDir, TestTsdb) {
    let a: Vec<(i64, f64)> = (0..=10).map(|i| (i * 60_000, i as f64 * 10.0)).collect();
    let b: Vec<(i64, f64)> = (0..=10).map(|i| (i * 60_000, i as f64 * 20.0)).collect();
    db_with(&[
        (&[("__name__", "req"), ("job", "a")], &a),
        (&[("__name__", "req"), ("job", "b")], &b),
    ])
}

fn vector(v: QueryValue) -> Vec<(String, f64)> {
    match v {
        QueryValue::Vector(v) => {
            let mut out: Vec<(String, f64)> = v
                .into_iter()
                .map(|(l, _, f, _)| (l.to_string(), f))
                .collect();
            out.sort_by(|a, b| a.0.cmp(&b.0));
            out
        }
        other => panic!("not a vector: {other:?}"),
    }
}

#[test]
fn selectors_lookback_offset_and_at() {
    let (_d, db) = counters();
    let e = Engine::new(db.reader());
    let v = vector(e.instant("req", 600_000).expect("query"));
    assert_eq!(v.len(), 2);
    assert_eq!(v[0].1, 100.0);
    let v = vector(e.instant("req offset 5m", 600_000).expect("query"));
    assert_eq!(v[0].1, 50.0);
    let v = vector(e.instant("req @ 120", 600_000).expect("query"));
    assert_eq!(v[0].1, 20.0);
    // Beyond the 5m lookback nothing is left.
    assert!(vector(e.instant("req", 600_000 + 300_000).expect("query")).is_empty());
}

#[test]
fn rate_sum_and_matching() {
    let (_d, db) = counters();
    let e = Engine::new(db.reader());
    let v = vector(e.instant("sum(rate(req[5m]))", 600_000).expect("query"));
    assert_eq!(v.len(), 1);
    assert!((v[0].1 - 0.5).abs() < 1e-9, "{v:?}");
    let v = vector(e.instant("req / on(job) req", 600_000).expect("query"));
    assert_eq!(
        v,
        vec![("{job=\"a\"}".into(), 1.0), ("{job=\"b\"}".into(), 1.0)]
    );
    let v = vector(e.instant("req > bool 150", 600_000).expect("query"));
    assert_eq!(v[0].1, 0.0);
    assert_eq!(v[1].1, 1.0);
}

#[test]
fn range_query_steps() {
    let (_d, db) = counters();
    let e = Engine::new(db.reader());
    match e
        .range("req{job=\"a\"} * 2", 0, 120_000, 60_000)
        .expect("query")
    {
        QueryValue::Matrix(m) => {
            assert_eq!(m.len(), 1);
            assert_eq!(m[0].0, Labels::from_pairs(vec![("job".into(), "a".into())]));
            assert_eq!(m[0].1, vec![(0, 0.0), (60_000, 20.0), (120_000, 40.0)]);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        e.range("req[5m]", 0, 1, 1),
        Err(Error::BadData(_))
    ));
    assert!(matches!(
        e.range("req", 0, 100_000_000, 1),
        Err(Error::BadData(_))
    ));
}

#[test]
fn errors_and_hostile_input_do_not_panic() {
    let (_d, db) = counters();
    let opts = EngineOptions {
        timeout: Duration::from_secs(10),
        ..EngineOptions::default()
    };
    let e = Engine::with_options(db.reader(), opts);
    assert!(matches!(e.instant("sum(", 0), Err(Error::BadData(_))));
    assert!(matches!(
        e.instant("sum_over_time(req[1y:1ms])", 0),
        Err(Error::Execution(_))
    ));
    assert!(e
        .instant("label_replace(req, \"x\", \"$1\", \"job\", \"(\")", 0)
        .is_err());
    for q in [
        "req / 0",
        "1 / 0",
        "0 / 0",
        "-req % 0",
        "rate(req[1y])",
        "max_over_time(req[1000y])",
        "sum_over_time(req[1y:1ms])",
        "histogram_quantile(NaN, req)",
        "topk(1e300, req)",
        "quantile(-1, req)",
        "round(req, 0)",
        "day_of_month(vector(1e300))",
        "predict_linear(req[1m], 1e308)",
        "req @ 1e10 offset -1y",
        "count_values(\"v\", req)",
        "absent_over_time(nope[1m])",
    ] {
        let _ = e.instant(q, 600_000);
        let _ = e.range(q, 0, 600_000, 60_000);
    }
}

#[test]
fn limits_are_enforced() {
    let (_d, db) = counters();
    let small = EngineOptions {
        max_samples: 5,
        ..EngineOptions::default()
    };
    let e = Engine::with_options(db.reader(), small);
    assert!(matches!(
        e.instant("req[1h]", 600_000),
        Err(Error::Execution(_))
    ));
    let slow = EngineOptions {
        timeout: Duration::ZERO,
        ..EngineOptions::default()
    };
    let e = Engine::with_options(db.reader(), slow);
    std::thread::sleep(Duration::from_millis(2));
    assert!(matches!(e.instant("req", 600_000), Err(Error::Timeout(_))));
}

/// The series-major paths of range queries (`functions::range_rows`, `streamed.rs`)
/// give the very same bits as the step-by-step path, over persisted pages and the head,
/// with counter resets, stale markers, irregular scrapes and enough series for batches
/// and threads.
#[test]
fn series_major_paths_equal_the_step_path() {
    let step = 15_000i64;
    let n = 5 * 3600 * 1000 / step; // 5 h: two buckets to pages, the rest in the head
    let mut owned: Vec<Owned> = Vec::new();
    // More series than a streamed batch holds in tests (64), and enough to decode
    // pages on two threads.
    for i in 0..150u32 {
        let job = format!("j{}", i % 7);
        let inst = format!("i{i}");
        let mut c = (i as f64) * 1.37;
        let mut m = Vec::new();
        let mut g = Vec::new();
        let mut h = [Vec::new(), Vec::new(), Vec::new()];
        for k in 0..n {
            // Jittered and, for some series, missing scrapes.
            let t = k * step + ((k * 7919 + i as i64) % 5) - 2;
            if (i % 11 == 3) && (k / 100) % 3 == 1 {
                continue;
            }
            c += ((k * 31 + i as i64) % 17) as f64 * 0.25;
            if (k + i as i64) % 997 == 0 {
                c = 0.0; // counter reset
            }
            let v = if i % 13 == 5 && k == n / 2 {
                calm_wire::value::stale_nan()
            } else {
                c
            };
            m.push((t, v));
            g.push((t, ((k * 13 + i as i64) % 101) as f64 - 50.5));
            for (b, hb) in h.iter_mut().enumerate() {
                hb.push((t, c * (b as f64 + 1.0) / 3.0));
            }
        }
        let base = vec![("job".to_string(), job), ("i".to_string(), inst)];
        let with = |name: &str, extra: Option<(&str, &str)>| {
            let mut l = base.clone();
            l.push(("__name__".into(), name.into()));
            if let Some((a, b)) = extra {
                l.push((a.into(), b.into()));
            }
            l
        };
        owned.push((with("m", None), m));
        owned.push((with("g", None), g));
        for (b, le) in ["0.1", "1", "+Inf"].iter().enumerate() {
            owned.push((with("h_bucket", Some(("le", le))), h[b].clone()));
        }
    }
    let (_d, db) = persisted_two_buckets(&owned);
    let fast = Engine::new(db.reader());
    let slow = Engine::with_options(
        db.reader(),
        EngineOptions {
            series_major: false,
            ..EngineOptions::default()
        },
    );
    let (start, end) = (10 * 60_000 + 7_000, n * step - 60_000);
    for q in [
        "rate(m[5m])",
        "increase(m[10m] offset 7m)",
        "delta(g[3m])",
        "last_over_time(g[10m])",
        "quantile_over_time(0.3, g[30m])",
        "predict_linear(g[20m], 600)",
        "sum by (job) (rate(m[5m]))",
        "sum(rate(m[5m]))",
        "sum without (i) (irate(m[2m]))",
        "max by (job) (increase(m[10m]))",
        "min(delta(g[3m]))",
        "count by (job) (changes(g[10m]))",
        "group by (job) (resets(m[30m]))",
        "sum by (job) (last_over_time(g[10m]))",
        "sum(rate(m[5m] @ end()))",
        "histogram_quantile(0.9, sum by (le) (rate(h_bucket[5m])))",
        "histogram_quantile(0.5, sum by (job, le) (rate(h_bucket[5m])))",
        "1 + sum by (job) (rate(m[5m])) / count by (job) (rate(m[5m]))",
        "topk(3, rate(m[5m]))",
        "sum(rate({__name__=~\"m|g\"}[5m]))",
        "sum by (__name__) (rate({__name__=~\"m|g\"}[5m]))",
        "avg_over_time(g[1h])",
        "avg by (job) (rate(m[5m]))",
        "avg(delta(g[3m]))",
        // series_rows.rs: arithmetic, comparisons and topk of rows
        "1 - g / m",
        "g / ignoring(job) m",
        "rate(m[5m]) * on(i, job) group by (i, job) (g)",
        "m > on(i) g",
        "m >= bool 100",
        "-g + 2 * rate(m[5m]) / 3",
        "2 ^ (g / 100) % 3",
        "(g < 10) * -1",
        "topk(3, rate(m[5m]) / m)",
        "bottomk by (job) (2, g)",
        "limitk(4, -g)",
        "topk(2, g > 0)",
    ] {
        for step in [60_000, 45_000] {
            let a = fast.range(q, start, end, step).map(matrix_bits);
            let b = slow.range(q, start, end, step).map(matrix_bits);
            match (a, b) {
                (Ok(a), Ok(b)) => {
                    assert!(!a.is_empty(), "{q}: empty");
                    assert!(a == b, "{q} at step {step}: the two paths differ");
                }
                (a, b) => assert_eq!(a.is_err(), b.is_err(), "{q}: {a:?} vs {b:?}"),
            }
        }
    }
    // Two series with one label set once the name is dropped: an error either way.
    let a = fast.range("rate({__name__=~\"m|g\"}[5m])", start, end, 60_000);
    let b = slow.range("rate({__name__=~\"m|g\"}[5m])", start, end, 60_000);
    assert!(a.is_err() && b.is_err());
}

/// A test series with owned labels and its samples.
type Owned = (Vec<(String, String)>, Vec<(i64, f64)>);

/// A TSDB holding `owned`, its first two buckets persisted as pages (the rest in the
/// head).
fn persisted_two_buckets(owned: &[Owned]) -> (tempfile::TempDir, TestTsdb) {
    let pairs: Vec<Vec<(&str, &str)>> = owned
        .iter()
        .map(|(l, _)| l.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect())
        .collect();
    let series: Vec<TestSeries<'_>> = pairs
        .iter()
        .zip(owned)
        .map(|(l, (_, s))| (l.as_slice(), s.as_slice()))
        .collect();
    let (d, db) = db_with(&series);
    for b in 0..2 {
        db.persist_bucket(b * tsdb::BUCKET_MS).expect("persist");
    }
    (d, db)
}

/// A range query's matrix as label sets and point bits (floats only).
fn matrix_bits(v: QueryValue) -> Vec<(String, Vec<(i64, u64)>)> {
    match v {
        QueryValue::Matrix(rows) => rows
            .into_iter()
            .map(|(l, f, h)| {
                assert!(h.is_empty());
                (
                    l.to_string(),
                    f.into_iter().map(|(t, v)| (t, v.to_bits())).collect(),
                )
            })
            .collect(),
        other => panic!("not a matrix: {other:?}"),
    }
}

/// Aggregations of a plain selector in a range query, streamed series by series
/// (`streamed.rs`, `selectors::series_instants`; `count` and `group` reading
/// timestamps only), give the very same bits as the step-by-step path: every op, with
/// stale markers (in persisted pages and in the head), gaps longer than the lookback
/// delta, series that appear and disappear mid-range, offsets and `@`, values that
/// overflow a sum (avg's running mean), NaN and infinities; and they hold one batch of
/// samples at a time, where the step path preloads every series.
#[test]
fn selector_aggregations_equal_the_step_path() {
    let step = 15_000i64;
    let n = 5 * 3600 * 1000 / step; // 5 h: two buckets to pages, the rest in the head
    let stale = calm_wire::value::stale_nan();
    let mut owned: Vec<Owned> = Vec::new();
    // More series than a streamed batch holds in tests (64).
    for i in 0..150i64 {
        let mut u = Vec::new(); // short decimals: decimal chunks in pages
        let mut w = Vec::new(); // long fractions: XOR chunks in pages
        let mut big = Vec::new(); // sums that overflow, NaN, infinities
        for k in 0..n {
            let t = k * step + ((k * 7919 + i) % 5) - 2;
            // Gaps of 25 min, longer than the lookback delta.
            if i % 11 == 3 && (k / 100) % 3 == 1 {
                continue;
            }
            // Series that appear late, or disappear early (without a stale marker).
            if (i % 9 == 2 && k < n / 4) || (i % 9 == 4 && k > 3 * n / 4) {
                continue;
            }
            // Stale markers that end a series for a while: in a persisted bucket
            // (around 2.5 h) and in the head (around 4.5 h).
            let ended = |at: i64| i % 13 == 5 && (at..at + 60).contains(&k);
            if ended(n / 2) || ended(9 * n / 10) {
                if k == n / 2 || k == 9 * n / 10 {
                    for s in [&mut u, &mut w, &mut big] {
                        s.push((t, stale));
                    }
                }
                continue;
            }
            u.push((t, ((k * 13 + i) % 101) as f64 * 0.25 - 12.5));
            w.push((t, ((k + i) as f64 * 0.37).sin() * (i + 1) as f64));
            let b = match (k + i) % 50 {
                0 if i % 5 == 0 => f64::NAN,
                1 if i % 7 == 0 => f64::INFINITY,
                2 if i % 7 == 1 => f64::NEG_INFINITY,
                _ => 1.5e308 * (((k * 3 + i) % 7) as f64 - 2.0) / 4.0,
            };
            big.push((t, b));
        }
        let labels = |name: &str| {
            vec![
                ("__name__".to_string(), name.to_string()),
                ("job".to_string(), format!("j{}", i % 7)),
                ("i".to_string(), format!("i{i}")),
            ]
        };
        owned.push((labels("u"), u));
        owned.push((labels("w"), w));
        owned.push((labels("big"), big));
    }
    let (_d, db) = persisted_two_buckets(&owned);
    let fast = Engine::new(db.reader());
    let slow = Engine::with_options(
        db.reader(),
        EngineOptions {
            series_major: false,
            ..EngineOptions::default()
        },
    );
    let (start, end) = (7 * 60_000 + 3_000, n * step - 60_000);
    let mut checked = 0;
    for op in ["sum", "avg", "min", "max", "count", "group"] {
        for shape in [
            "OP(u)",
            "OP(w)",
            "OP(big)",
            "OP by (job) (u)",
            "OP by (job) (w)",
            "OP by (job) (big)",
            "OP without (i) (w)",
            "OP by (__name__) ({__name__=~\"u|w|big\"})",
            "OP by (job) (u offset 7m)",
            "OP(w offset -3m)",
            "OP by (job) (u @ end())",
            "OP(w @ 3600)",
            "OP by (i) ({__name__=\"u\", job=~\"j[0-3]\"})",
        ] {
            let q = shape.replace("OP", op);
            // Steps off the scrape instants, and on them (samples exactly one lookback
            // delta before a step).
            for (start, step) in [(start, 60_000), (start, 45_000), (600_000, 30_000)] {
                let a = fast.range(&q, start, end, step).map(matrix_bits);
                let b = slow.range(&q, start, end, step).map(matrix_bits);
                let (a, b) = match (a, b) {
                    (Ok(a), Ok(b)) => (a, b),
                    (a, b) => panic!("{q}: {a:?} vs {b:?}"),
                };
                assert!(!a.is_empty(), "{q}: empty");
                assert!(a == b, "{q} at step {step}: the two paths differ");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 6 * 13 * 3);
    // The answers are what the data says, not only the same both ways: at 2.5 h + 5 m
    // the series of `u` ended by their stale markers (i % 13 == 5) and those in a
    // gap (i % 11 == 3) are not counted.
    let t = n / 2 * step + 5 * 60_000;
    let counted = |q: &str| match fast.range(q, t, t, 60_000).expect(q) {
        QueryValue::Matrix(rows) => rows[0].1[0].1,
        other => panic!("{other:?}"),
    };
    let want = (0..150)
        .filter(|i| i % 13 != 5 && !(i % 11 == 3 && (n / 2 / 100) % 3 == 1))
        .count();
    assert_eq!(counted("count(u)"), want as f64);
    assert_eq!(counted("count(w)"), want as f64);

    // A sample limit the preload passes (3 × 150 series × ~1,200 samples), one batch
    // (64 series) does not: the streamed path answers, the step path is refused.
    let limited = |series_major| {
        Engine::with_options(
            db.reader(),
            EngineOptions {
                max_samples: 100_000,
                series_major,
                ..EngineOptions::default()
            },
        )
    };
    for q in [
        "count by (__name__) ({__name__=~\"u|w\"})",
        "sum by (job) (w)",
    ] {
        let a = limited(true).range(q, start, end, 60_000).map(matrix_bits);
        let b = slow.range(q, start, end, 60_000).map(matrix_bits);
        assert_eq!(a.expect(q), b.expect(q), "{q}");
        assert!(
            matches!(limited(false).range(q, start, end, 60_000), Err(Error::Execution(m)) if m.contains("too many samples")),
            "{q}"
        );
    }
    // A batch over the limit is still refused.
    let tiny = Engine::with_options(
        db.reader(),
        EngineOptions {
            max_samples: 10_000,
            ..EngineOptions::default()
        },
    );
    assert!(matches!(
        tiny.range("count(u)", start, end, 60_000),
        Err(Error::Execution(_))
    ));
}

/// Hostile shapes at nesting `n` (the depth limit's tests and the stack probe below).
pub(crate) fn hostile_shape(shape: &str, n: usize) -> String {
    match shape {
        "parens" => format!("{}req{}", "(".repeat(n), ")".repeat(n)),
        "unary" => format!("{}req", "-".repeat(n)),
        "or" => format!("req{}", " or req".repeat(n)),
        "plus" => format!("req{}", " + req".repeat(n)),
        "pow" => format!("req{}", " ^ req".repeat(n)),
        "abs" => format!("{}req{}", "abs(".repeat(n), ")".repeat(n)),
        "sum" => format!("{}req{}", "sum by (job) (".repeat(n), ")".repeat(n)),
        "subquery" => format!("{}req{}", "max_over_time(".repeat(n), "[2m:1m])".repeat(n)),
        "mixed" => format!("{}req{}", "-(abs(1 + ".repeat(n), "))".repeat(n)),
        other => panic!("unknown shape {other}"),
    }
}

/// Parses, evaluates (instant and range), prettifies and drops one hostile query on a
/// thread with `CALM_PROBE_STACK` bytes of stack. Run by hand, one process per shape and
/// depth, to find how deep each stage survives (a stack overflow aborts the process):
///
/// ```text
/// CALM_PROBE_SHAPE=or CALM_PROBE_DEPTH=5000 CALM_PROBE_STACK=2097152 \
///   cargo test -p calm-collector --lib stack_probe -- --ignored --nocapture
/// ```
#[test]
#[ignore]
fn stack_probe() {
    let shape = std::env::var("CALM_PROBE_SHAPE").unwrap_or_else(|_| "parens".into());
    let n: usize = std::env::var("CALM_PROBE_DEPTH")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let stack: usize = std::env::var("CALM_PROBE_STACK")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2 << 20);
    let q = hostile_shape(&shape, n);
    let (_d, db) = counters();
    let est = super::limits::depth(&q);
    let h = std::thread::Builder::new()
        .stack_size(stack)
        .spawn(move || {
            let expr = promql_parser::parser::parse(&q);
            let ok = expr.is_ok();
            if let Ok(e) = expr {
                let _ = e.prettify();
                let engine = Engine::with_options(
                    db.reader(),
                    EngineOptions {
                        series_major: true,
                        ..EngineOptions::default()
                    },
                );
                let r1 = engine.instant_expr(&e, 600_000).map(|_| ());
                let r2 = engine.range_expr(&e, 0, 600_000, 60_000).map(|_| ());
                println!("instant {r1:?} range {r2:?}");
            }
            ok
        })
        .unwrap();
    let ok = h.join().unwrap();
    println!("PROBE shape={shape} n={n} estimate={est} parsed={ok} survived");
}
