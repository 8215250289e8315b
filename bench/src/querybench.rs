//! `calm-querybench`: the same PromQL range queries against several Prometheus-API
//! servers, interleaved, with latency percentiles and a comparison of the answers.
//!
//! ```text
//! calm-querybench --target calm=http://127.0.0.1:9400 --target prometheus=http://… \
//!                 --start 1795571802 --end 1795658199 --step 60 [--reps 25] \
//!                 [--query 'name=expr' …] [--reference prometheus]
//! ```
//!
//! Every repetition sends each query once to every target, in an order that rotates
//! between repetitions, so a burst of load elsewhere on the machine hits all targets
//! alike. Latency is the wall time from sending `GET /api/v1/query_range` until the last
//! byte of the answer is read (what Grafana waits for). One untimed warm-up round runs
//! first (page cache, lazy index loading).
//!
//! Answers are compared with the `--reference` target's: same series (label sets) and,
//! for every point, values equal to 1e-6 relative. Targets listed in `--loose` (e.g.
//! VictoriaMetrics, whose `rate` does not extrapolate like Prometheus') are compared
//! by series count only.
//!
//! Prints one JSON object on stdout: per query, per target `median_ms`, `p99_ms`,
//! `min_ms`, `max_ms`, `series`, `points`, `bytes`, and `mismatches` against the reference.

use anyhow::{bail, Context};
use clap::Parser;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(
    name = "calm-querybench",
    about = "PromQL range-query latency, side by side on several servers."
)]
struct Args {
    /// `name=BASE_URL` of a server speaking the Prometheus HTTP API (repeatable).
    #[arg(long = "target", required = true)]
    targets: Vec<String>,
    /// `name=PromQL` (repeatable) [default: the set in `default_queries`].
    #[arg(long = "query")]
    queries: Vec<String>,
    /// Range start, Unix seconds.
    #[arg(long)]
    start: i64,
    /// Range end, Unix seconds.
    #[arg(long)]
    end: i64,
    /// Resolution step in seconds.
    #[arg(long, default_value_t = 60)]
    step: i64,
    /// Timed repetitions of each query on each target.
    #[arg(long, default_value_t = 25)]
    reps: usize,
    /// The target whose answers the others are compared with.
    #[arg(long)]
    reference: Option<String>,
    /// Targets compared by series count only (repeatable).
    #[arg(long = "loose")]
    loose: Vec<String>,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
}

/// The queries of issue 3's benchmark: a plain `rate` over 5m, `sum by`, a
/// `histogram_quantile` over classic buckets, a `topk`, plus a narrow selector and an
/// `*_over_time`, as dashboards send them; and issue 17's one-to-one vector/vector
/// division and `count by (__name__)` over every series.
fn default_queries() -> Vec<(String, String)> {
    [
        ("rate", "rate(node_network_receive_bytes_total[5m])"),
        (
            "sum_by_rate",
            "sum by (instance) (rate(node_cpu_seconds_total{mode!=\"idle\"}[5m]))",
        ),
        (
            "histogram_quantile",
            "histogram_quantile(0.99, sum by (le, handler) (rate(http_request_duration_seconds_bucket[5m])))",
        ),
        (
            "topk",
            "topk(5, rate(node_disk_written_bytes_total[5m]))",
        ),
        (
            "narrow",
            "rate(node_cpu_seconds_total{instance=\"host-00007:9100\",mode=\"user\"}[5m])",
        ),
        ("avg_over_time", "avg_over_time(node_load1[1h])"),
        (
            "vector_ratio",
            "1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes",
        ),
        ("count_by_name", "count by (__name__) ({job=\"node\"})"),
    ]
    .into_iter()
    .map(|(n, q)| (n.to_string(), q.to_string()))
    .collect()
}

fn split_pair(s: &str, what: &str) -> anyhow::Result<(String, String)> {
    match s.split_once('=') {
        Some((a, b)) if !a.is_empty() && !b.is_empty() => Ok((a.to_string(), b.to_string())),
        _ => bail!("{what} must be NAME=VALUE, got {s:?}"),
    }
}

/// One answer, reduced to what is compared: series key → points.
struct Answer {
    series: BTreeMap<String, Vec<(f64, f64)>>,
    bytes: usize,
}

impl Answer {
    fn points(&self) -> usize {
        self.series.values().map(Vec::len).sum()
    }
}

fn series_key(metric: &serde_json::Map<String, Value>) -> String {
    let mut v: Vec<(&String, &str)> = metric
        .iter()
        .map(|(k, v)| (k, v.as_str().unwrap_or("")))
        .collect();
    v.sort();
    v.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn parse_answer(body: &[u8]) -> anyhow::Result<Answer> {
    let v: Value = serde_json::from_slice(body).context("answer is not JSON")?;
    if v["status"] != "success" {
        bail!("query failed: {}", String::from_utf8_lossy(body));
    }
    let mut series = BTreeMap::new();
    for s in v["data"]["result"].as_array().context("no data.result")? {
        let metric = s["metric"].as_object().context("no metric")?;
        let mut points = Vec::new();
        for p in s["values"].as_array().context("no values")? {
            let t = p[0].as_f64().context("bad timestamp")?;
            let x = p[1]
                .as_str()
                .context("value not a string")?
                .parse::<f64>()
                .context("bad value")?;
            points.push((t, x));
        }
        series.insert(series_key(metric), points);
    }
    Ok(Answer {
        series,
        bytes: body.len(),
    })
}

/// Points (or whole series) of `got` that differ from `want`.
fn mismatches(want: &Answer, got: &Answer) -> (usize, Option<String>) {
    let mut n = 0;
    let mut first = None;
    let mut note = |n: &mut usize, s: String| {
        *n += 1;
        if first.is_none() {
            first = Some(s);
        }
    };
    for (k, wp) in &want.series {
        let Some(gp) = got.series.get(k) else {
            note(&mut n, format!("missing series {k}"));
            continue;
        };
        let gm: BTreeMap<i64, f64> = gp.iter().map(|(t, x)| ((t * 1000.0) as i64, *x)).collect();
        for (t, w) in wp {
            match gm.get(&((t * 1000.0) as i64)) {
                None => note(&mut n, format!("{k} has no point at {t}")),
                Some(g) => {
                    let same = (w.is_nan() && g.is_nan())
                        || w == g
                        || (w - g).abs() <= 1e-6 * w.abs().max(g.abs());
                    if !same {
                        note(&mut n, format!("{k} at {t}: {g} instead of {w}"));
                    }
                }
            }
        }
        if gp.len() > wp.len() {
            note(&mut n, format!("{k}: {} extra points", gp.len() - wp.len()));
        }
    }
    for k in got.series.keys() {
        if !want.series.contains_key(k) {
            note(&mut n, format!("unexpected series {k}"));
        }
    }
    (n, first)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let targets: Vec<(String, String)> = args
        .targets
        .iter()
        .map(|t| split_pair(t, "--target"))
        .collect::<anyhow::Result<_>>()?;
    let queries = if args.queries.is_empty() {
        default_queries()
    } else {
        args.queries
            .iter()
            .map(|q| split_pair(q, "--query"))
            .collect::<anyhow::Result<_>>()?
    };
    if args.end <= args.start || args.step <= 0 {
        bail!("need --start < --end and --step > 0");
    }
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(args.timeout_secs))
        .build()?;
    let run = |base: &str, q: &str| -> anyhow::Result<(f64, Vec<u8>)> {
        let url = format!("{}/api/v1/query_range", base.trim_end_matches('/'));
        let t0 = Instant::now();
        let resp = client
            .get(&url)
            .query(&[
                ("query", q.to_string()),
                ("start", args.start.to_string()),
                ("end", args.end.to_string()),
                ("step", args.step.to_string()),
            ])
            .send()
            .with_context(|| format!("GET {url}"))?;
        let status = resp.status();
        let body = resp.bytes()?.to_vec();
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        if !status.is_success() {
            bail!(
                "{url} {q}: HTTP {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok((ms, body))
    };

    let mut out = serde_json::Map::new();
    for (qname, q) in &queries {
        eprintln!("calm-querybench: {qname}: {q}");
        // Warm-up, and the answers that are compared.
        // A target that refuses the query (a limit, an unknown function) is reported
        // as such and left out of the timed runs; the others go on.
        let mut answers: BTreeMap<&str, Answer> = BTreeMap::new();
        let mut refused: BTreeMap<&str, String> = BTreeMap::new();
        for (name, base) in &targets {
            match run(base, q) {
                Ok((_, body)) => {
                    answers.insert(name, parse_answer(&body).with_context(|| name.to_string())?);
                }
                Err(e) => {
                    eprintln!("  {name:<18} refused: {e:#}");
                    refused.insert(name, format!("{e:#}"));
                }
            }
        }
        let mut times: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        for rep in 0..args.reps {
            for i in 0..targets.len() {
                let (name, base) = &targets[(i + rep) % targets.len()];
                if refused.contains_key(name.as_str()) {
                    continue;
                }
                let (ms, _) = run(base, q)?;
                times.entry(name).or_default().push(ms);
            }
        }
        let mut per_target = serde_json::Map::new();
        for (name, _) in &targets {
            if let Some(e) = refused.get(name.as_str()) {
                per_target.insert(name.clone(), json!({ "error": e }));
                continue;
            }
            let mut t = times.remove(name.as_str()).unwrap_or_default();
            t.sort_by(f64::total_cmp);
            let a = &answers[name.as_str()];
            let mut o = json!({
                "median_ms": percentile(&t, 0.5),
                "p99_ms": percentile(&t, 0.99),
                "min_ms": t.first().copied().unwrap_or(f64::NAN),
                "max_ms": t.last().copied().unwrap_or(f64::NAN),
                "series": a.series.len(),
                "points": a.points(),
                "bytes": a.bytes,
            });
            if let Some(r) = &args.reference {
                if !targets.iter().any(|(t, _)| t == r) {
                    bail!("--reference {r} is not a target");
                }
                if let (true, Some(want)) = (r != name, answers.get(r.as_str())) {
                    if args.loose.contains(name) {
                        o["same_series_count"] = json!(want.series.len() == a.series.len());
                    } else {
                        let (n, first) = mismatches(want, a);
                        o["mismatches"] = json!(n);
                        o["first_mismatch"] = json!(first);
                    }
                }
            }
            eprintln!(
                "  {name:<18} median {:>9.1} ms  p99 {:>9.1} ms  series {:>5}  points {:>8}",
                o["median_ms"].as_f64().unwrap_or(f64::NAN),
                o["p99_ms"].as_f64().unwrap_or(f64::NAN),
                a.series.len(),
                a.points()
            );
            per_target.insert(name.clone(), o);
        }
        out.insert(qname.clone(), json!({ "query": q, "targets": per_target }));
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "start": args.start,
            "end": args.end,
            "step": args.step,
            "reps": args.reps,
            "queries": out,
        }))?
    );
    Ok(())
}
