//! `calm-errgen`: sends Sentry envelopes like an SDK does and reports events ingested
//! and grouped per second, per core of the server, and the ingest latency.
//!
//! ```text
//! calm-errgen --url http://127.0.0.1:9400 --key KEY --project 1 --events 50000 \
//!             --size typical --concurrency 16 [--kinds 20] [--server-pid PID]
//! ```
//! 1. Before the clock: generates `--events` envelopes of `--size` (`small`: ~1 KB, 4
//!    frames; `typical`: ~8 KB, 30 frames, breadcrumbs, contexts, request), spread over
//!    `--kinds` different exceptions (so that many issues are grouped into), each with
//!    its own event id and varying line numbers and values.
//! 2. Sends them over `--concurrency` keep-alive connections, one request at a time on
//!    each, as fast as the server answers; a 429 or 503 is retried after its Retry-After
//!    (counted), like an SDK's transport would.
//! 3. Prints one JSON object: events, seconds, events_per_s, latency p50/p99/max (ms,
//!    per acknowledged request, retries excluded), status counts, bytes per event, and
//!    with `--server-pid` the server's CPU seconds during the send phase,
//!    `events_per_server_cpu_s` (= events per second per core) and its peak RSS.

mod procstat;

use anyhow::{bail, Context};
use clap::Parser;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(name = "calm-errgen", about = "Sentry envelope load generator.")]
struct Args {
    /// Base URL of the server (http://HOST:PORT).
    #[arg(long)]
    url: String,
    /// The project's DSN public key.
    #[arg(long)]
    key: String,
    /// The project id.
    #[arg(long, default_value_t = 1)]
    project: u64,
    /// Envelopes to send (one event each).
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// `small` (~1 KB) or `typical` (~8 KB, 30 frames).
    #[arg(long, default_value = "typical")]
    size: String,
    /// Different exceptions (issues) the events are spread over.
    #[arg(long, default_value_t = 20)]
    kinds: usize,
    /// Keep-alive connections.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// A server process to measure (CPU and peak RSS from /proc).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Seed for event ids, so that runs do not collide in one store.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn frame(i: usize, kind: usize, seq: usize, in_app: bool, rich: bool) -> Value {
    let (module, file) = if in_app {
        (
            format!("shop.orders.step{}", i % 7),
            format!("shop/orders/step{}.py", i % 7),
        )
    } else {
        (
            format!("framework.core.layer{i}"),
            format!("framework/core/layer{i}.py"),
        )
    };
    let mut f = json!({
        "filename": file,
        "abs_path": format!("/srv/app/{file}"),
        "module": module,
        "function": format!("handler_{kind}_{i}"),
        "lineno": 10 + i * 3 + seq % 11,
        "in_app": in_app,
    });
    if rich && in_app {
        f["context_line"] = json!(format!(
            "        result = handler_{kind}_{}(ctx, payload)",
            i + 1
        ));
        f["pre_context"] = json!([
            "",
            "    def run(self, ctx, payload):",
            "        ctx.check()"
        ]);
        f["post_context"] = json!(["        return result", ""]);
        f["vars"] = json!({"ctx": "<Context id=42>", "payload": {"order": seq, "items": 3}});
    }
    f
}

/// One envelope (header, item header with length, event payload).
fn envelope(size: &str, kind: usize, seq: usize, seed: u64) -> Vec<u8> {
    let typical = size == "typical";
    let event_id = format!("{:016x}{:016x}", seed, seq);
    let n_frames = if typical { 30 } else { 4 };
    let frames: Vec<Value> = (0..n_frames)
        .map(|i| frame(i, kind, seq, i >= n_frames - n_frames / 3, typical))
        .collect();
    let mut ev = json!({
        "event_id": event_id,
        "timestamp": 1.76e9 + seq as f64 / 1000.0,
        "platform": "python",
        "level": "error",
        "release": "shop@3.1.4",
        "environment": "production",
        "server_name": format!("web-{}", seq % 8),
        "sdk": {"name": "sentry.python", "version": "2.19.0"},
        "user": {"id": format!("u{}", seq % 1000)},
        "tags": {"endpoint": format!("/orders/{kind}")},
        "exception": {"values": [{
            "type": format!("OrderError{kind}"),
            "value": format!("order {seq} failed after {} retries", seq % 5),
            "mechanism": {"type": "generic", "handled": false},
            "stacktrace": {"frames": frames},
        }]},
    });
    if typical {
        ev["breadcrumbs"] = json!({"values": (0..8).map(|i| json!({
            "timestamp": 1.76e9 + i as f64, "category": "query", "level": "info",
            "message": format!("SELECT id, total, status FROM orders WHERE customer_id = {} LIMIT 50", i * 7),
        })).collect::<Vec<_>>()});
        ev["contexts"] = json!({
            "runtime": {"name": "CPython", "version": "3.11.2"},
            "os": {"name": "Linux", "version": "6.1.0"},
            "trace": {"trace_id": format!("{:032x}", seq), "span_id": format!("{:016x}", seq)},
        });
        ev["request"] = json!({
            "url": format!("https://shop.example/orders/{seq}"), "method": "POST",
            "headers": {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36", "Accept": "application/json"},
        });
        ev["extra"] = json!({"sys.argv": ["gunicorn", "shop.wsgi"]});
    }
    let payload = serde_json::to_vec(&ev).unwrap_or_default();
    let mut out = format!(
        "{{\"event_id\":\"{event_id}\",\"sent_at\":\"2026-01-01T00:00:00Z\",\"sdk\":{{\"name\":\"sentry.python\",\"version\":\"2.19.0\"}}}}\n\
         {{\"type\":\"event\",\"content_type\":\"application/json\",\"length\":{}}}\n",
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(&payload);
    out.push(b'\n');
    out
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.size != "small" && args.size != "typical" {
        bail!("--size must be small or typical");
    }
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..args.events)
            .map(|i| envelope(&args.size, i % args.kinds.max(1), i, args.seed))
            .collect(),
    );
    let bytes: usize = bodies.iter().map(Vec::len).sum();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let url = format!(
        "{}/api/{}/envelope/",
        args.url.trim_end_matches('/'),
        args.project
    );
    let auth = format!(
        "Sentry sentry_key={}, sentry_version=7, sentry_client=calm-errgen/1",
        args.key
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .timeout(Duration::from_secs(60))
        .build()?;
    let cpu0 = args.server_pid.and_then(procstat::cpu_seconds);
    let self0 = procstat::self_cpu_seconds();
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let results = rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..args.concurrency {
            let (client, url, auth, bodies, next) = (
                client.clone(),
                url.clone(),
                auth.clone(),
                bodies.clone(),
                next.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut status: BTreeMap<u16, u64> = BTreeMap::new();
                let mut first_error = None;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else { break };
                    for _attempt in 0..20 {
                        let t = Instant::now();
                        let r = client
                            .post(&url)
                            .header("Content-Type", "application/x-sentry-envelope")
                            .header("X-Sentry-Auth", &auth)
                            .body(body.clone())
                            .send()
                            .await;
                        let (code, retry) = match r {
                            Ok(r) => {
                                let code = r.status().as_u16();
                                let retry = r
                                    .headers()
                                    .get("retry-after")
                                    .and_then(|v| v.to_str().ok())
                                    .and_then(|v| v.parse::<u64>().ok());
                                let text = r.text().await.unwrap_or_default();
                                if !(200..300).contains(&code) && first_error.is_none() {
                                    first_error = Some(format!("{code}: {text}"));
                                }
                                (code, retry)
                            }
                            Err(e) => {
                                if first_error.is_none() {
                                    first_error = Some(e.to_string());
                                }
                                (0, Some(1))
                            }
                        };
                        *status.entry(code).or_default() += 1;
                        if (200..300).contains(&code) {
                            lat.push(t.elapsed().as_secs_f64() * 1e3);
                            break;
                        }
                        if code == 429 || code == 503 || code == 0 {
                            tokio::time::sleep(Duration::from_secs(retry.unwrap_or(1))).await;
                            continue;
                        }
                        break;
                    }
                }
                (lat, status, first_error)
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.context("sender task")?);
        }
        anyhow::Ok(out)
    })?;
    let secs = started.elapsed().as_secs_f64();
    let self_cpu = procstat::self_cpu_seconds() - self0;
    let cpu1 = args.server_pid.and_then(procstat::cpu_seconds);
    let mut lat = Vec::new();
    let mut status: BTreeMap<u16, u64> = BTreeMap::new();
    let mut first_error = None;
    for (l, s, e) in results {
        lat.extend(l);
        for (k, v) in s {
            *status.entry(k).or_default() += v;
        }
        first_error = first_error.or(e);
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    let ok = lat.len();
    let server_cpu = match (cpu0, cpu1) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let report = json!({
        "size": args.size,
        "events": args.events,
        "events_ok": ok,
        "kinds": args.kinds,
        "concurrency": args.concurrency,
        "bytes_per_event": bytes / args.events.max(1),
        "seconds": secs,
        "events_per_s": ok as f64 / secs,
        "latency_ms": {"p50": pct(&lat, 0.5), "p99": pct(&lat, 0.99), "max": lat.last().copied().unwrap_or(0.0)},
        "status": status,
        "first_error": first_error,
        "loadgen_cpu_seconds": self_cpu,
        "server_cpu_seconds": server_cpu,
        "server_cores_busy": server_cpu.map(|c| c / secs),
        "events_per_server_cpu_s": server_cpu.map(|c| ok as f64 / c),
        "server_peak_rss_bytes": args.server_pid.and_then(|p| procstat::status_bytes(p, "VmHWM")),
    });
    println!("{report}");
    Ok(())
}
