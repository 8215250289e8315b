//! `calm-loadgen`: sends a pre-generated remote-write v1 load and reports throughput.
//!
//! ```text
//! calm-loadgen --url http://127.0.0.1:9400/api/v1/write --series 10000 --duration 1h \
//!              [--interval 15s] [--batch 2000] [--concurrency 4] [--server-pid PID]
//! ```
//! 1. Generates every request body (node_exporter-like series, see `payload.rs`) and
//!    snappy-encodes it, before the clock starts.
//! 2. Sends them over `--concurrency` HTTP/1.1 keep-alive connections. Each connection
//!    owns a fixed set of hosts (so of series) and sends its requests one at a time in
//!    time order: every series' samples arrive in time order.
//! 3. Prints one JSON object on stdout (see README.md for the fields).
//!
//! 429 and 5xx answers and connection errors are retried (honouring Retry-After, at most
//! `--max-retries` times), like a real remote-write sender; every non-2xx answer is
//! counted, and the first error body is kept.

mod payload;
mod procstat;

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Parser;
use payload::{label_key, Expectation, Lane, Spec};
use serde_json::json;
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(
    name = "calm-loadgen",
    about = "Remote-write load generator for side-by-side ingest benchmarks."
)]
struct Args {
    /// Remote-write URL, e.g. http://127.0.0.1:9400/api/v1/write.
    #[arg(long, required_unless_present_any = ["dry_run", "verify"])]
    url: Option<String>,
    /// Number of active series (about 180 per host).
    #[arg(long, default_value_t = 10_000)]
    series: usize,
    /// Time range covered by the samples (ending now), e.g. 1h, 15m, 90s.
    #[arg(long, default_value = "1h")]
    duration: String,
    /// Scrape interval: one sample per series per interval.
    #[arg(long, default_value = "15s")]
    interval: String,
    /// Most samples per request (one scrape round of a slice of series).
    #[arg(long, default_value_t = 2000)]
    batch: usize,
    /// HTTP/1.1 keep-alive connections, each owning a fixed set of series.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Seed of the value generator; same arguments and seed give identical bodies.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Newest timestamp allowed, ms since the epoch [default: now]. Fixing it makes
    /// the bodies byte-identical between runs.
    #[arg(long)]
    end_ms: Option<i64>,
    /// Threads used to generate the bodies [default: available cores].
    #[arg(long)]
    gen_threads: Option<usize>,
    /// A server process to measure during the send phase (CPU from /proc/PID/stat,
    /// RSS and peak RSS from /proc/PID/status).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Bearer token sent in Authorization.
    #[arg(long, env = "CALM_LOADGEN_TOKEN")]
    bearer: Option<String>,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
    /// Retries of one request after 429/5xx or a connection error.
    #[arg(long, default_value_t = 5)]
    max_retries: u32,
    /// Add a classic request-latency histogram (28 series) to every host, for query
    /// benchmarks (`histogram_quantile`).
    #[arg(long)]
    histograms: bool,
    /// Generate and report sizes only; send nothing.
    #[arg(long)]
    dry_run: bool,
    /// Instead of sending: query the Prometheus HTTP API at this base URL
    /// (http://HOST:PORT) for every host's raw samples and compare them with the load
    /// the same arguments generate (give the same --end-ms).
    #[arg(long, value_name = "BASE_URL", conflicts_with = "dry_run")]
    verify: Option<String>,
}

/// Parses `1h`, `15m`, `90s`, `500ms`, `1h30m` into milliseconds.
fn parse_duration_ms(s: &str) -> anyhow::Result<i64> {
    let mut total: i64 = 0;
    let mut num = String::new();
    let mut chars = s.trim().chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        if c == 'm' && chars.peek() == Some(&'s') {
            unit.push(chars.next().unwrap_or('s'));
        }
        let n: i64 = num
            .parse()
            .with_context(|| format!("invalid duration {s:?}"))?;
        num.clear();
        let mult = match unit.as_str() {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => bail!("invalid duration {s:?}: unknown unit {unit:?} (use ms, s, m, h, d)"),
        };
        total += n * mult;
        any = true;
    }
    if !num.is_empty() || !any || total <= 0 {
        bail!("invalid duration {s:?} (use e.g. 1h, 15m, 90s)");
    }
    Ok(total)
}

/// What one connection saw.
#[derive(Default)]
struct LaneStats {
    samples_ok: u64,
    samples_failed: u64,
    requests: u64,
    non_2xx: u64,
    retries: u64,
    transport_errors: u64,
    first_error: Option<String>,
    latencies_us: Vec<u32>,
    status: std::collections::BTreeMap<u16, u64>,
}

async fn send_lane(
    client: reqwest::Client,
    url: String,
    bearer: Option<String>,
    bodies: Vec<(Bytes, u32)>,
    max_retries: u32,
) -> LaneStats {
    let mut st = LaneStats {
        latencies_us: Vec::with_capacity(bodies.len()),
        ..Default::default()
    };
    for (body, samples) in bodies {
        let mut attempt = 0;
        loop {
            let mut req = client
                .post(&url)
                .header("Content-Encoding", "snappy")
                .header("Content-Type", "application/x-protobuf")
                .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                .header("User-Agent", "calm-loadgen")
                .body(body.clone());
            if let Some(t) = &bearer {
                req = req.bearer_auth(t);
            }
            let t0 = Instant::now();
            let res = req.send().await;
            st.requests += 1;
            let (retry, wait) = match res {
                Ok(resp) => {
                    let code = resp.status();
                    *st.status.entry(code.as_u16()).or_default() += 1;
                    let retry_after = resp
                        .headers()
                        .get("Retry-After")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok());
                    // Read the body to the end so the connection is reused.
                    let text = resp.bytes().await.unwrap_or_default();
                    st.latencies_us
                        .push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    if code.is_success() {
                        st.samples_ok += u64::from(samples);
                        break;
                    }
                    st.non_2xx += 1;
                    if st.first_error.is_none() {
                        let body =
                            String::from_utf8_lossy(&text[..text.len().min(2000)]).into_owned();
                        st.first_error =
                            Some(format!("HTTP {}: {}", code.as_u16(), body.trim_end()));
                    }
                    let retriable = code.as_u16() == 429 || code.is_server_error();
                    (retriable, Duration::from_secs(retry_after.unwrap_or(1)))
                }
                Err(e) => {
                    st.transport_errors += 1;
                    if st.first_error.is_none() {
                        st.first_error = Some(format!("transport: {e}"));
                    }
                    (true, Duration::from_millis(200 << attempt.min(5)))
                }
            };
            if retry && attempt < max_retries {
                attempt += 1;
                st.retries += 1;
                tokio::time::sleep(wait).await;
                continue;
            }
            st.samples_failed += u64::from(samples);
            break;
        }
    }
    st
}

/// Queries every host's raw samples (`{instance="…",job="node"}[range]` at the end
/// time) and compares them with what the load carries.
async fn verify(
    base: &str,
    spec: &Spec,
    bearer: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<serde_json::Value> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .context("cannot build the HTTP client")?;
    let mut exp = Expectation::new(spec);
    let range_ms = spec.rounds as i64 * spec.interval_ms;
    let time = format!("{:.3}", spec.end_ms as f64 / 1000.0);
    let url = format!("{}/api/v1/query", base.trim_end_matches('/'));
    let (mut series_expected, mut series_found, mut missing_series, mut unexpected_series) =
        (0u64, 0u64, 0u64, 0u64);
    let (mut samples_expected, mut samples_found, mut samples_missing, mut samples_extra) =
        (0u64, 0u64, 0u64, 0u64);
    let (mut value_mismatches, mut max_rel_err) = (0u64, 0f64);
    let (mut query_errors, mut first_problem): (u64, Option<String>) = (0, None);
    let t0 = Instant::now();
    for h in 0..exp.hosts() {
        let expected = exp.host(h);
        series_expected += expected.len() as u64;
        samples_expected += expected.iter().map(|e| e.samples.len() as u64).sum::<u64>();
        let query = format!(
            "{{instance=\"{}\",job=\"node\"}}[{range_ms}ms]",
            Expectation::instance(h)
        );
        let mut req = client.get(&url).query(&[
            ("query", query.as_str()),
            ("time", time.as_str()),
            ("nocache", "1"),
        ]);
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        let body: serde_json::Value = match req.send().await {
            Ok(r) => {
                let code = r.status();
                let text = r.text().await.unwrap_or_default();
                match serde_json::from_str(&text) {
                    Ok(v) if code.is_success() => v,
                    _ => {
                        query_errors += 1;
                        missing_series += expected.len() as u64;
                        first_problem.get_or_insert_with(|| {
                            format!(
                                "{query}: HTTP {}: {}",
                                code.as_u16(),
                                &text[..text.len().min(300)]
                            )
                        });
                        continue;
                    }
                }
            }
            Err(e) => {
                query_errors += 1;
                missing_series += expected.len() as u64;
                first_problem.get_or_insert_with(|| format!("{query}: {e}"));
                continue;
            }
        };
        let mut by_key: std::collections::HashMap<&str, &payload::ExpectedSeries> =
            expected.iter().map(|e| (e.key.as_str(), e)).collect();
        let results = body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for r in &results {
            let key = label_key(
                r["metric"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or(""))),
            );
            let got: Vec<(i64, f64)> = r["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| {
                    let ts = p.get(0)?.as_f64()?;
                    let v: f64 = p.get(1)?.as_str()?.parse().ok()?;
                    Some(((ts * 1000.0).round() as i64, v))
                })
                .collect();
            samples_found += got.len() as u64;
            let Some(e) = by_key.remove(key.as_str()) else {
                unexpected_series += 1;
                first_problem.get_or_insert_with(|| {
                    format!("unexpected series {{{}}}", key.replace('\x1f', ","))
                });
                continue;
            };
            series_found += 1;
            // Merge walk over both time-ordered lists.
            let (mut i, mut j) = (0, 0);
            while i < e.samples.len() || j < got.len() {
                match (e.samples.get(i), got.get(j)) {
                    (Some(a), Some(b)) if a.0 == b.0 => {
                        if a.1 != b.1 && !(a.1.is_nan() && b.1.is_nan()) {
                            value_mismatches += 1;
                            let rel = ((a.1 - b.1) / a.1.abs().max(f64::MIN_POSITIVE)).abs();
                            max_rel_err = max_rel_err.max(rel);
                            first_problem.get_or_insert_with(|| {
                                format!(
                                    "{{{}}} @{}: sent {}, got {}",
                                    key.replace('\x1f', ","),
                                    a.0,
                                    a.1,
                                    b.1
                                )
                            });
                        }
                        i += 1;
                        j += 1;
                    }
                    (Some(a), Some(b)) if a.0 < b.0 => {
                        samples_missing += 1;
                        i += 1;
                    }
                    (Some(_), None) => {
                        samples_missing += 1;
                        i += 1;
                    }
                    _ => {
                        samples_extra += 1;
                        j += 1;
                    }
                }
            }
        }
        if !by_key.is_empty() {
            missing_series += by_key.len() as u64;
            samples_missing += by_key.values().map(|e| e.samples.len() as u64).sum::<u64>();
            if let Some(k) = by_key.keys().next() {
                first_problem.get_or_insert_with(|| {
                    format!("missing series {{{}}}", k.replace('\x1f', ","))
                });
            }
        }
    }
    let ok = query_errors == 0
        && missing_series == 0
        && unexpected_series == 0
        && samples_missing == 0
        && samples_extra == 0
        && value_mismatches == 0;
    Ok(json!({
        "verify_url": url,
        "ok": ok,
        "hosts": exp.hosts(),
        "series_expected": series_expected,
        "series_found": series_found,
        "series_missing": missing_series,
        "series_unexpected": unexpected_series,
        "samples_expected": samples_expected,
        "samples_found": samples_found,
        "samples_missing": samples_missing,
        "samples_extra": samples_extra,
        "value_mismatches": value_mismatches,
        "max_relative_error": max_rel_err,
        "query_errors": query_errors,
        "first_problem": first_problem,
        "seconds": t0.elapsed().as_secs_f64(),
    }))
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let interval_ms = parse_duration_ms(&args.interval)?;
    let duration_ms = parse_duration_ms(&args.duration)?;
    if duration_ms < interval_ms {
        bail!(
            "--duration {} is shorter than --interval {}",
            args.duration,
            args.interval
        );
    }
    if args.series == 0 || args.batch == 0 || args.concurrency == 0 {
        bail!("--series, --batch and --concurrency must be at least 1");
    }
    let rounds = (duration_ms / interval_ms) as usize;
    let end_ms = match args.end_ms {
        Some(t) => t,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .context("clock before 1970")?
            .as_millis() as i64,
    };
    let spec = Spec {
        series: args.series,
        rounds,
        interval_ms,
        end_ms,
        batch: args.batch,
        concurrency: args.concurrency,
        seed: args.seed,
        histograms: args.histograms,
    };
    let threads = args.gen_threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });

    if let Some(base) = &args.verify {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let report = rt.block_on(verify(
            base,
            &spec,
            args.bearer.as_deref(),
            Duration::from_secs(args.timeout_secs.max(300)),
        ))?;
        eprintln!(
            "calm-loadgen: verify {base}: {} of {} series, {} of {} samples, {} values differ",
            report["series_found"],
            report["series_expected"],
            report["samples_found"],
            report["samples_expected"],
            report["value_mismatches"]
        );
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }

    // 1. Generate, before the clock starts.
    let g0 = Instant::now();
    let gcpu0 = procstat::self_cpu_seconds();
    let load = payload::generate(&spec, threads);
    let gen_seconds = g0.elapsed().as_secs_f64();
    let gen_cpu = procstat::self_cpu_seconds() - gcpu0;
    let bodies: u64 = load.lanes.iter().map(|l| l.bodies.len() as u64).sum();
    let samples: u64 = load
        .lanes
        .iter()
        .flat_map(|l| l.bodies.iter())
        .map(|b| u64::from(b.samples))
        .sum();
    let wire_bytes: u64 = load
        .lanes
        .iter()
        .flat_map(|l| l.bodies.iter())
        .map(|b| b.bytes.len() as u64)
        .sum();
    let raw_bytes: u64 = load
        .lanes
        .iter()
        .flat_map(|l| l.bodies.iter())
        .map(|b| u64::from(b.raw_len))
        .sum();
    // A fingerprint of all bodies, so runs can be checked to carry the same load.
    let fingerprint = {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for b in load.lanes.iter().flat_map(|l| l.bodies.iter()) {
            h.update(&(b.bytes.len() as u64).to_le_bytes());
            h.update(&b.bytes);
        }
        h.digest()
    };
    eprintln!(
        "calm-loadgen: generated {samples} samples of {} series ({} hosts) in {bodies} requests, {:.1} MB on the wire, in {gen_seconds:.1}s",
        spec.series,
        load.hosts,
        wire_bytes as f64 / 1e6
    );
    let mut out = json!({
        "series": spec.series,
        "hosts": load.hosts,
        "series_per_host": load.series_per_host,
        "points_per_series": rounds,
        "interval_ms": interval_ms,
        "first_ts_ms": load.first_ts_ms,
        "last_ts_ms": load.last_ts_ms,
        "samples": samples,
        "requests_planned": bodies,
        "batch": spec.batch,
        "concurrency": spec.concurrency,
        "seed": spec.seed,
        "wire_bytes": wire_bytes,
        "raw_bytes": raw_bytes,
        "wire_bytes_per_sample": wire_bytes as f64 / samples.max(1) as f64,
        "body_fingerprint": format!("{fingerprint:016x}"),
        "gen_seconds": gen_seconds,
        "gen_cpu_seconds": gen_cpu,
    });
    if args.dry_run {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let url = args.url.clone().context("--url is required")?;

    // 2. Send.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.timeout_secs))
        .pool_max_idle_per_host(args.concurrency)
        .tcp_nodelay(true)
        .build()
        .context("cannot build the HTTP client")?;
    let lanes: Vec<Vec<(Bytes, u32)>> = load
        .lanes
        .into_iter()
        .map(|Lane { bodies }| bodies.into_iter().map(|b| (b.bytes, b.samples)).collect())
        .collect();
    // One thread drives every connection: the loadgen leaves the other cores to the server.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let server_before = args.server_pid.map(|pid| {
        (
            procstat::cpu_seconds(pid),
            procstat::status_bytes(pid, "VmRSS"),
        )
    });
    let cpu0 = procstat::self_cpu_seconds();
    let t0 = Instant::now();
    let stats: Vec<LaneStats> = rt.block_on(async {
        let tasks: Vec<_> = lanes
            .into_iter()
            .map(|bodies| {
                tokio::spawn(send_lane(
                    client.clone(),
                    url.clone(),
                    args.bearer.clone(),
                    bodies,
                    args.max_retries,
                ))
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("sender task panicked"));
        }
        out
    });
    let seconds = t0.elapsed().as_secs_f64();
    let send_cpu = procstat::self_cpu_seconds() - cpu0;
    let server_after = args.server_pid.map(|pid| {
        (
            procstat::cpu_seconds(pid),
            procstat::status_bytes(pid, "VmRSS"),
            procstat::status_bytes(pid, "VmHWM"),
        )
    });

    // 3. Report.
    let sum = |f: fn(&LaneStats) -> u64| stats.iter().map(f).sum::<u64>();
    let samples_ok = sum(|s| s.samples_ok);
    let mut lat: Vec<u32> = stats
        .iter()
        .flat_map(|s| s.latencies_us.iter().copied())
        .collect();
    lat.sort_unstable();
    let mut status = std::collections::BTreeMap::<String, u64>::new();
    for s in &stats {
        for (k, v) in &s.status {
            *status.entry(k.to_string()).or_default() += v;
        }
    }
    let first_error = stats.iter().find_map(|s| s.first_error.clone());
    let o = out.as_object_mut().context("report is an object")?;
    o.insert("url".into(), json!(url));
    o.insert("samples_sent".into(), json!(samples_ok));
    o.insert("samples_failed".into(), json!(sum(|s| s.samples_failed)));
    o.insert("requests".into(), json!(sum(|s| s.requests)));
    o.insert("retries".into(), json!(sum(|s| s.retries)));
    o.insert("non_2xx".into(), json!(sum(|s| s.non_2xx)));
    o.insert(
        "transport_errors".into(),
        json!(sum(|s| s.transport_errors)),
    );
    o.insert("status".into(), json!(status));
    o.insert("first_error".into(), json!(first_error));
    o.insert("seconds".into(), json!(seconds));
    o.insert("samples_per_s".into(), json!(samples_ok as f64 / seconds));
    o.insert(
        "requests_per_s".into(),
        json!(sum(|s| s.requests) as f64 / seconds),
    );
    o.insert("latency_ms_p50".into(), json!(percentile(&lat, 0.5)));
    o.insert("latency_ms_p99".into(), json!(percentile(&lat, 0.99)));
    o.insert("latency_ms_max".into(), json!(percentile(&lat, 1.0)));
    o.insert("loadgen_send_cpu_seconds".into(), json!(send_cpu));
    o.insert(
        "loadgen_cpu_us_per_sample".into(),
        json!(send_cpu * 1e6 / samples.max(1) as f64),
    );
    o.insert(
        "loadgen_samples_per_cpu_second".into(),
        json!(if send_cpu > 0.0 {
            samples as f64 / send_cpu
        } else {
            0.0
        }),
    );
    if let (Some((cpu0, rss0)), Some((cpu1, rss1, hwm))) = (server_before, server_after) {
        o.insert("server_pid".into(), json!(args.server_pid));
        o.insert("server_cpu_before_s".into(), json!(cpu0));
        o.insert("server_cpu_after_s".into(), json!(cpu1));
        if let (Some(a), Some(b)) = (cpu0, cpu1) {
            o.insert("server_cpu_seconds".into(), json!(b - a));
            o.insert(
                "server_cpu_us_per_sample".into(),
                json!((b - a) * 1e6 / samples_ok.max(1) as f64),
            );
        }
        o.insert("server_rss_before_bytes".into(), json!(rss0));
        o.insert("server_rss_after_bytes".into(), json!(rss1));
        o.insert("server_rss_peak_bytes".into(), json!(hwm));
    }
    eprintln!(
        "calm-loadgen: sent {samples_ok} samples in {seconds:.2}s = {:.0} samples/s, {} non-2xx",
        samples_ok as f64 / seconds,
        sum(|s| s.non_2xx)
    );
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_duration_ms;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("15s").unwrap(), 15_000);
        assert_eq!(parse_duration_ms("1h30m").unwrap(), 5_400_000);
        assert_eq!(parse_duration_ms("500ms").unwrap(), 500);
        assert!(parse_duration_ms("15").is_err());
        assert!(parse_duration_ms("x").is_err());
        assert!(parse_duration_ms("0s").is_err());
    }
}
