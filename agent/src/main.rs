//! `calm-agent`: host metrics with node_exporter names, spooled on disk and shipped
//! to the collector. See `calm-agent --help`.

mod config;
mod family;
mod heartbeat;
mod selfmetrics;
mod serve;
mod ship;
mod sources;
mod spool;

use anyhow::Context;
use axum::routing::get;
use clap::Parser;
use config::{Config, Flags};
use family::Family;
use sources::host::{self, HostPaths};
use std::sync::Arc;
use std::time::Duration;

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

struct State {
    /// The agent's own families (`calm_agent_*`), registered by each room.
    metrics: Arc<selfmetrics::SelfMetrics>,
    paths: Arc<HostPaths>,
    /// The last host read (by a `/metrics` scrape or the shipper), so the shipper reuses
    /// a scrape's read instead of reading the host a second time in the same interval.
    last_read: parking_lot::Mutex<Option<HostRead>>,
}

/// The host's families and the agent's own, as last shipped.
type LastShipped = (Arc<Vec<Family>>, Vec<Family>);

/// One read of the host's families.
struct HostRead {
    at: std::time::Instant,
    /// When it was read (ms since the epoch): the shipped samples' timestamp.
    t_ms: i64,
    fams: Arc<Vec<Family>>,
    /// Whether the shipper has spooled it already (a read is shipped at most once).
    shipped: bool,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Reads the host now and remembers the read for the shipper (`/metrics` is always
/// served from a read of its own moment, as node_exporter does).
fn read_host_for_scrape(st: &State) -> Arc<Vec<Family>> {
    let t_ms = now_ms();
    let fams = Arc::new(host::collect(&st.paths));
    *st.last_read.lock() = Some(HostRead {
        at: std::time::Instant::now(),
        t_ms,
        fams: fams.clone(),
        shipped: false,
    });
    fams
}

/// The host's families for the shipper's tick: the latest scrape's read if it is
/// younger than `interval` and not shipped yet (one host read per interval when
/// something scrapes `/metrics` too), else a fresh read. Reads are shipped in time
/// order, each at most once.
fn read_host_for_ship(st: &State, interval: Duration) -> (Arc<Vec<Family>>, i64) {
    {
        let mut last = st.last_read.lock();
        if let Some(r) = last.as_mut() {
            if !r.shipped && r.at.elapsed() < interval {
                r.shipped = true;
                return (r.fams.clone(), r.t_ms);
            }
        }
    }
    let t_ms = now_ms();
    let fams = Arc::new(host::collect(&st.paths));
    let mut last = st.last_read.lock();
    // A scrape that read meanwhile is newer: leave it for the next tick.
    if last.as_ref().is_none_or(|r| r.shipped) {
        *last = Some(HostRead {
            at: std::time::Instant::now(),
            t_ms,
            fams: fams.clone(),
            shipped: true,
        });
    }
    (fams, t_ms)
}

/// Most time a clean shutdown waits for the host's stale markers to be shipped.
const STALE_SHIP_WAIT: Duration = Duration::from_secs(5);

/// On a clean shutdown: stale markers for every host series last spooled, so queries
/// stop showing the host at once instead of 5 minutes later (Prometheus does the same
/// for its targets). Spooled like any sample and shipped within [`STALE_SHIP_WAIT`] if
/// a collector takes them; otherwise they stay in the spool for the next start.
async fn mark_host_series_stale(
    spool: &spool::Spool,
    wake: &tokio::sync::Notify,
    series: &[Vec<calm_wire::prompb::Label>],
) {
    if series.is_empty() {
        return;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let req = calm_wire::prompb::WriteRequest {
        timeseries: series
            .iter()
            .map(|labels| calm_wire::prompb::TimeSeries {
                labels: labels.clone(),
                samples: vec![calm_wire::prompb::Sample {
                    value: calm_wire::value::stale_nan(),
                    timestamp: now,
                }],
                exemplars: vec![],
                histograms: vec![],
            })
            .collect(),
        metadata: vec![],
    };
    let body = calm_wire::remote_write::encode(&req);
    let seq = match spool.push_durable(spool::EntryKind::Metrics, &body).await {
        Ok(seq) => seq,
        Err(e) => {
            tracing::warn!(error = %e, "cannot spool the host's stale markers");
            return;
        }
    };
    wake.notify_one();
    let deadline = tokio::time::Instant::now() + STALE_SHIP_WAIT;
    while spool.holds(seq) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::info!(
        series = series.len(),
        shipped = !spool.holds(seq),
        "stale markers for the host's series spooled on shutdown"
    );
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CALM_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, never into log files or journald.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cfg = Config::load(Flags::parse())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        // /metrics and host reads use the blocking pool every interval: keep its thread
        // rather than start one per scrape.
        .thread_keep_alive(Duration::from_secs(120))
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(run(cfg))
}

async fn run(cfg: Config) -> anyhow::Result<()> {
    let interval = cfg.host.interval.get();
    let host_paths = Arc::new(HostPaths {
        textfile_dir: cfg.host.textfile_dir.clone(),
        // Checked at load.
        enabled: host::select(&cfg.host.collectors).map_err(anyhow::Error::msg)?,
        ..HostPaths::default()
    });
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("cannot create {}", cfg.data_dir.display()))?;
    let spool = Arc::new(
        spool::Spool::open(&cfg.data_dir.join("spool"), cfg.spool.max_bytes.get()).map_err(
            |e| {
                // sled holds an exclusive lock on its directory; say who is likely to have it.
                let hint = if e.to_string().contains("lock") {
                    ": another calm-agent probably runs with this data directory; stop it \
                 first, or give this one its own --data-dir"
                } else {
                    ""
                };
                anyhow::anyhow!(
                    "cannot open the spool in {}: {e}{hint}",
                    cfg.data_dir.display()
                )
            },
        )?,
    );
    let stats = Arc::new(ship::ShipStats::default());
    let wake = Arc::new(tokio::sync::Notify::new());
    let limits = Arc::new(sources::sentry::limits::Limits::new(
        sources::sentry::limits::RateConfig {
            rate: cfg.sentry.rate,
            burst: cfg.sentry.burst,
        },
    ));
    let heartbeat_interval = cfg.heartbeat.interval.get();
    let keys = Arc::new(sources::sentry::keys::Keys::load(
        &cfg.data_dir.join("projects.json"),
    ));
    let keys_refresh = cfg.sentry.keys_refresh.get();
    let scrape_stats = Arc::new(sources::scrape::ScrapeStats::default());
    let relay_stats = Arc::new(sources::sentry::relay::RelayStats::default());
    let otlp_stats = Arc::new(sources::otlp::receiver::OtlpStats::default());
    // The self-metrics registry: each room's counters, registered as it is built.
    let metrics = Arc::new(selfmetrics::SelfMetrics::default());
    metrics.register(spool.clone(), selfmetrics::spool);
    metrics.register(stats.clone(), selfmetrics::ship);
    metrics.register(relay_stats.clone(), selfmetrics::relay);
    metrics.register(keys.clone(), selfmetrics::keys);
    metrics.register(otlp_stats.clone(), selfmetrics::otlp);
    metrics.register(scrape_stats.clone(), selfmetrics::scrape);
    // Both listeners (the main one and OTLP's) time their requests into one histogram.
    let http_durations = Arc::new(calm_serve::histogram::RequestDurations::default());
    metrics.register(http_durations.clone(), selfmetrics::http);
    let state = Arc::new(State {
        metrics,
        paths: host_paths.clone(),
        last_read: parking_lot::Mutex::new(None),
    });
    // The host's and the agent's own families last spooled, for their series' stale
    // markers on a clean shutdown.
    let last_host_series: Arc<parking_lot::Mutex<LastShipped>> = Arc::default();
    // The `instance` label of the shipped host series.
    let instance = hostname();
    if cfg.collectors.is_empty() {
        tracing::warn!("no --collector given: host metrics are served at /metrics but not shipped");
    } else {
        tokio::spawn(
            sources::sentry::keys::Refresher {
                keys: keys.clone(),
                collectors: cfg.collectors.clone(),
                token: cfg.token.clone(),
                every: keys_refresh,
                file: cfg.data_dir.join("projects.json"),
                limits: limits.clone(),
            }
            .run(),
        );
        tokio::spawn(ship::run(
            spool.clone(),
            ship::ShipConfig {
                collectors: cfg.collectors.clone(),
                token: cfg.token.clone(),
            },
            stats.clone(),
            wake.clone(),
            limits.clone(),
        ));
        let host = hostname();
        tokio::spawn(
            heartbeat::Heartbeat {
                id: format!("{host} {}", cfg.listen),
                host,
                collectors: cfg.collectors.clone(),
                token: cfg.token.clone(),
                interval: heartbeat_interval,
                spool: spool.clone(),
                stats: stats.clone(),
                started: std::time::Instant::now(),
            }
            .run(),
        );
        let (sp, wk, host) = (spool.clone(), wake.clone(), instance.clone());
        let (st, last) = (state.clone(), last_host_series.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            let mut raw: Vec<u8> = Vec::with_capacity(64 << 10);
            let mut snappy = snap::raw::Encoder::new();
            loop {
                tick.tick().await;
                let st2 = st.clone();
                // The host's families and the agent's own (calm_agent_*), so the fleet
                // can be graphed.
                let (fams, now) = match tokio::task::spawn_blocking(move || {
                    let (host_fams, t_ms) = read_host_for_ship(&st2, interval);
                    (host_fams, st2.metrics.collect(), t_ms)
                })
                .await
                {
                    Ok((h, own, t)) => ((h, own), t),
                    Err(_) => ((Arc::default(), Vec::new()), now_ms()),
                };
                let extra = [("job", "node"), ("instance", host.as_str())];
                // Written straight from the families into protobuf (no series structs,
                // no allocation per label) into a buffer kept across intervals.
                raw.clear();
                family::encode_series(&fams.0, &extra, now, &mut raw);
                family::encode_series(&fams.1, &extra, now, &mut raw);
                let body = match snappy.compress_vec(&raw) {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot compress host metrics");
                        continue;
                    }
                };
                // Kept for the stale markers on a clean shutdown (built only then).
                *last.lock() = (fams.0, fams.1);
                // Durable (flushed to disk) only when the spool holds a backlog, i.e. the
                // collector did not take the last entries: then what an outage spooled
                // survives `kill -9`. In steady state the entry leaves within the
                // interval, and a flush per interval (the largest share of the agent's
                // CPU after the host read) would guard nothing anyone was answered for:
                // at worst one interval of host samples is lost to `kill -9`.
                let pushed = if sp.entries() > 0 {
                    sp.push_durable(spool::EntryKind::Metrics, &body).await
                } else {
                    sp.push(spool::EntryKind::Metrics, &body)
                };
                match pushed {
                    Ok(_) => wk.notify_one(),
                    Err(e) => tracing::error!(error = %e, "cannot spool host metrics"),
                }
            }
        });
    }
    if cfg.collectors.is_empty() && !cfg.scrape.is_empty() {
        tracing::warn!("no --collector given: scrape targets are not scraped");
    } else {
        let n = sources::scrape::start(
            &cfg.scrape,
            sources::scrape::Sink {
                spool: spool.clone(),
                wake: wake.clone(),
                stats: scrape_stats.clone(),
            },
        )?;
        if n > 0 {
            tracing::info!(targets = n, "scrape source started");
        }
    }
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let st = state.clone();
                async move {
                    let text = tokio::task::spawn_blocking(move || {
                        let fams = read_host_for_scrape(&st);
                        let mut out = String::with_capacity(64 << 10);
                        family::render(&fams, &mut out);
                        family::render(&st.metrics.collect(), &mut out);
                        out
                    })
                    .await
                    .unwrap_or_default();
                    (
                        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
                        text,
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(|| async { "ready\n" }))
        .merge(serve::with_body_limits(
            sources::sentry::routes(sources::sentry::relay::RelayState {
                spool: spool.clone(),
                limits,
                wake: wake.clone(),
                stats: relay_stats,
                keys: keys.clone(),
            }),
            cfg.max_body_bytes.as_usize(),
        ));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut servers = Vec::new();
    let serve_limits = cfg.limits.limits();
    let otlp_listen_given = cfg.otlp_listen != config::DEFAULT_OTLP_LISTEN;
    if cfg.otlp_listen != "off" {
        let otlp = serve::with_body_limits(
            sources::otlp::routes(sources::otlp::receiver::OtlpState {
                spool: spool.clone(),
                wake: wake.clone(),
                stats: otlp_stats,
            }),
            cfg.max_body_bytes.as_usize(),
        );
        match tokio::net::TcpListener::bind(&cfg.otlp_listen).await {
            Ok(l) => servers.push(tokio::spawn(serve::serve(
                calm_serve::Server::with_request_durations(
                    serve_limits.clone(),
                    http_durations.clone(),
                ),
                l,
                otlp,
                stop_rx.clone(),
            ))),
            // The default port may be another program's (an OpenTelemetry Collector on
            // the same host): host metrics and the relay still work, so say so and go on.
            Err(e) if !otlp_listen_given => tracing::error!(
                otlp_listen = %cfg.otlp_listen, error = %e,
                "cannot listen for OTLP on the default address; the OTLP receiver is off (set otlp_listen or --otlp-listen)"
            ),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot listen on {} (otlp_listen)", cfg.otlp_listen))
            }
        }
    }
    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    servers.push(tokio::spawn(serve::serve(
        calm_serve::Server::with_request_durations(serve_limits, http_durations),
        listener,
        app,
        stop_rx,
    )));
    tracing::info!(listen = %cfg.listen, otlp_listen = %cfg.otlp_listen, collectors = ?cfg.collectors, "calm-agent ready");
    // SIGINT or SIGTERM: stop serving, let open requests finish, then flush the spool.
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
    let _ = stop_tx.send(true);
    for s in servers {
        let _ = s.await;
    }
    if !cfg.collectors.is_empty() {
        let (host_fams, own) = std::mem::take(&mut *last_host_series.lock());
        let extra = [("job", "node"), ("instance", instance.as_str())];
        let last: Vec<_> = family::to_series(&host_fams, &extra, 0)
            .into_iter()
            .chain(family::to_series(&own, &extra, 0))
            .map(|s| s.labels)
            .collect();
        mark_host_series_stale(&spool, &wake, &last).await;
    }
    spool.flush()?;
    Ok(())
}
