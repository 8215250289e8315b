//! `calm-agent`: host metrics with node_exporter names, spooled on disk and shipped
//! to the collector. See `calm-agent --help`.

mod family;
mod heartbeat;
mod serve;
mod ship;
mod sources;
mod spool;

use anyhow::Context;
use axum::routing::get;
use clap::Parser;
use family::{Family, Kind};
use serde::Deserialize;
use sources::host::{self, HostPaths};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Flags; each overrides the config file when given.
#[derive(Debug, Parser)]
#[command(
    name = "calm-agent",
    version,
    about = "Calm's per-host agent: host metrics (node_exporter names), spooled to disk and shipped to the collector."
)]
struct Flags {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:9401].
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Data directory (the spool) [default: ./data/agent].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Collector base URL; repeat for failover.
    #[arg(long = "collector", value_name = "URL")]
    collectors: Vec<String>,
    /// Bearer token sent to the collector.
    #[arg(long)]
    token: Option<String>,
    /// Address of the OTLP/HTTP receiver, or "off" [default: 127.0.0.1:4318].
    #[arg(long, value_name = "ADDR")]
    otlp_listen: Option<String>,
    /// Largest request body accepted by the OTLP receiver and the Sentry relay, after
    /// decompression [default: 16777216].
    #[arg(long, value_name = "BYTES")]
    max_body_bytes: Option<usize>,
    /// Scrape this URL's exposition-format metrics (repeatable; added to the
    /// `[[scrape]]` targets of the config file, with their defaults).
    #[arg(long = "scrape", value_name = "URL")]
    scrape: Vec<String>,
    /// Directory of `*.prom` files for the textfile collector (node_exporter's
    /// `--collector.textfile.directory`).
    #[arg(long, value_name = "DIR")]
    textfile_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct HostSection {
    interval: Option<String>,
    /// Directory of `*.prom` files for the textfile collector.
    textfile_dir: Option<PathBuf>,
    /// `name = true|false`: switches a collector on or off (all of node_exporter's
    /// default ones are on).
    collectors: std::collections::BTreeMap<String, bool>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct SpoolSection {
    max_bytes: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct HeartbeatSection {
    interval: Option<String>,
}

/// `[limits]`: the serving layer's keys; anything else is refused by name at load
/// (`flatten` rules out `deny_unknown_fields`).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
struct LimitsSection {
    #[serde(flatten)]
    serve: calm_serve::ServeConfig,
    #[serde(flatten)]
    unknown: calm_serve::UnknownKeys,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    listen: String,
    data_dir: PathBuf,
    collectors: Vec<String>,
    token: Option<String>,
    otlp_listen: String,
    max_body_bytes: usize,
    host: HostSection,
    spool: SpoolSection,
    sentry: sources::sentry::SentryConfig,
    heartbeat: HeartbeatSection,
    scrape: Vec<sources::scrape::ScrapeConfig>,
    /// `[limits]`: connections, header/body/idle timeouts, in-flight body bytes.
    limits: LimitsSection,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:9401".into(),
            data_dir: PathBuf::from("./data/agent"),
            collectors: Vec::new(),
            token: None,
            otlp_listen: "127.0.0.1:4318".into(),
            max_body_bytes: 16 << 20,
            host: HostSection::default(),
            spool: SpoolSection::default(),
            sentry: sources::sentry::SentryConfig::default(),
            heartbeat: HeartbeatSection::default(),
            scrape: Vec::new(),
            limits: LimitsSection::default(),
        }
    }
}

fn load(flags: Flags) -> anyhow::Result<Config> {
    let mut cfg = match &flags.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            let cfg: Config = toml::from_str(&text)
                .with_context(|| format!("config file {} is not valid", p.display()))?;
            calm_serve::refuse_unknown_keys("limits", &cfg.limits.unknown, p, &text)
                .map_err(anyhow::Error::msg)?;
            cfg
        }
        None => Config::default(),
    };
    if let Some(v) = flags.listen {
        cfg.listen = v;
    }
    if let Some(v) = flags.data_dir {
        cfg.data_dir = v;
    }
    if !flags.collectors.is_empty() {
        cfg.collectors = flags.collectors;
    }
    if flags.token.is_some() {
        cfg.token = flags.token;
    }
    if let Some(v) = flags.otlp_listen {
        cfg.otlp_listen = v;
    }
    cfg.scrape.extend(
        flags
            .scrape
            .iter()
            .map(|u| sources::scrape::ScrapeConfig::from_url(u)),
    );
    if flags.textfile_dir.is_some() {
        cfg.host.textfile_dir = flags.textfile_dir;
    }
    if let Some(v) = flags.max_body_bytes {
        cfg.max_body_bytes = v;
    }
    if let Ok(v) = std::env::var("CALM_LISTEN") {
        cfg.listen = v;
    }
    if let Ok(v) = std::env::var("CALM_DATA_DIR") {
        cfg.data_dir = v.into();
    }
    if let Ok(v) = std::env::var("CALM_COLLECTORS") {
        cfg.collectors = v
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
    }
    if let Ok(v) = std::env::var("CALM_TOKEN") {
        cfg.token = Some(v);
    }
    Ok(cfg)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

struct State {
    spool: Arc<spool::Spool>,
    stats: Arc<ship::ShipStats>,
    relay: Arc<sources::sentry::relay::RelayStats>,
    otlp: Arc<sources::otlp::receiver::OtlpStats>,
    scrape: Arc<sources::scrape::ScrapeStats>,
    paths: Arc<HostPaths>,
    keys: Arc<sources::sentry::keys::Keys>,
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

fn own_metrics(st: &State) -> Vec<Family> {
    vec![
        Family::single(
            "calm_agent_spool_entries",
            "Entries waiting in the spool.",
            Kind::Gauge,
            st.spool.entries() as f64,
        ),
        Family::single(
            "calm_agent_spool_bytes",
            "Bytes waiting in the spool.",
            Kind::Gauge,
            st.spool.bytes() as f64,
        ),
        Family::single(
            "calm_agent_shipped_total",
            "Entries the collector took.",
            Kind::Counter,
            st.stats.shipped.load(Ordering::Relaxed) as f64,
        ),
        Family::single(
            "calm_agent_ship_retries_total",
            "Failed sends that will be retried.",
            Kind::Counter,
            st.stats.retries.load(Ordering::Relaxed) as f64,
        ),
        Family::single(
            "calm_agent_ship_rejected_total",
            "Entries the collector refused for good (4xx), dropped.",
            Kind::Counter,
            st.stats.rejected.load(Ordering::Relaxed) as f64,
        ),
        Family::single(
            "calm_agent_spool_dropped_total",
            "Entries dropped because the spool was full.",
            Kind::Counter,
            st.spool.dropped_full.load(Ordering::Relaxed) as f64,
        ),
        Family::single(
            "calm_agent_spool_dropped_events_total",
            "Event entries dropped because the spool was full (only when dropping metrics could not make room).",
            Kind::Counter,
            st.spool.dropped_events.load(Ordering::Relaxed) as f64,
        ),
        Family::single(
            "calm_agent_ship_requests_total",
            "Requests sent to collectors.",
            Kind::Counter,
            st.stats.requests.load(Ordering::Relaxed) as f64,
        ),
        Family::single(
            "calm_agent_sentry_accepted_total",
            "Sentry requests the relay spooled.",
            Kind::Counter,
            st.relay.accepted.load(Ordering::Relaxed) as f64,
        ),
        Family::single(
            "calm_agent_sentry_rate_limited_total",
            "Sentry requests the relay answered 429.",
            Kind::Counter,
            st.relay.rate_limited.load(Ordering::Relaxed) as f64,
        ),
        Family::single(
            "calm_agent_sentry_invalid_total",
            "Sentry requests the relay refused as invalid (4xx).",
            Kind::Counter,
            st.relay.invalid.load(Ordering::Relaxed) as f64,
        ),
        Family::single(
            "calm_agent_sentry_projects_known",
            "Projects whose DSN keys the relay knows (fetched from the collector); 0 until the first fetch or cache.",
            Kind::Gauge,
            st.keys.count() as f64,
        ),
        Family::single(
            "calm_agent_sentry_key_refreshes_total",
            "Successful fetches of the projects' DSN keys from the collector.",
            Kind::Counter,
            st.keys.refreshes.load(Ordering::Relaxed) as f64,
        ),
        Family::single(
            "calm_agent_sentry_key_refresh_failures_total",
            "Failed fetches of the projects' DSN keys (the last known ones stay in use).",
            Kind::Counter,
            st.keys.failures.load(Ordering::Relaxed) as f64,
        ),
        Family::single(
            "calm_agent_otlp_requests_total",
            "OTLP requests spooled.",
            Kind::Counter,
            st.otlp.requests.load(Ordering::Relaxed) as f64,
        ),
        Family::single(
            "calm_agent_otlp_samples_total",
            "OTLP samples spooled.",
            Kind::Counter,
            st.otlp.samples.load(Ordering::Relaxed) as f64,
        ),
        Family::single(
            "calm_agent_otlp_invalid_total",
            "OTLP requests refused (4xx).",
            Kind::Counter,
            st.otlp.invalid.load(Ordering::Relaxed) as f64,
        ),
        Family::single(
            "calm_agent_scrapes_total",
            "Scrapes of [[scrape]] targets attempted.",
            Kind::Counter,
            st.scrape.scrapes.load(Ordering::Relaxed) as f64,
        ),
        Family::single(
            "calm_agent_scrape_failures_total",
            "Scrapes that failed (up = 0), for any reason.",
            Kind::Counter,
            st.scrape.failed.load(Ordering::Relaxed) as f64,
        ),
        Family::single(
            "calm_agent_scrape_body_too_large_total",
            "Scrapes failed because the body passed body_size_limit.",
            Kind::Counter,
            st.scrape.body_too_large.load(Ordering::Relaxed) as f64,
        ),
        Family::single(
            "calm_agent_scrape_timeouts_total",
            "Scrapes failed because they took longer than the timeout.",
            Kind::Counter,
            st.scrape.timeouts.load(Ordering::Relaxed) as f64,
        ),
        Family::single(
            "calm_agent_scrape_sample_limit_exceeded_total",
            "Scrapes failed because the body had more samples than sample_limit.",
            Kind::Counter,
            st.scrape.sample_limit_exceeded.load(Ordering::Relaxed) as f64,
        ),
        Family::single(
            "calm_agent_scrape_parse_errors_total",
            "Scrapes failed because the body was not valid exposition format.",
            Kind::Counter,
            st.scrape.parse_errors.load(Ordering::Relaxed) as f64,
        ),
        Family::single(
            "calm_agent_scrape_samples_total",
            "Samples spooled by the scrape source (report series and stale markers included).",
            Kind::Counter,
            st.scrape.samples.load(Ordering::Relaxed) as f64,
        ),
    ]
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
    let cfg = load(Flags::parse())?;
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
    let interval = match &cfg.host.interval {
        Some(s) => promql_parser::util::parse_duration(s)
            .map_err(|e| anyhow::anyhow!("[host] interval {s:?}: {e}"))?,
        None => Duration::from_secs(15),
    };
    let host_paths = Arc::new(HostPaths {
        textfile_dir: cfg.host.textfile_dir.clone(),
        enabled: host::select(&cfg.host.collectors).map_err(anyhow::Error::msg)?,
        ..HostPaths::default()
    });
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("cannot create {}", cfg.data_dir.display()))?;
    let spool = Arc::new(
        spool::Spool::open(
            &cfg.data_dir.join("spool"),
            cfg.spool.max_bytes.unwrap_or(1 << 30),
        )
        .map_err(|e| {
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
        })?,
    );
    let stats = Arc::new(ship::ShipStats::default());
    let wake = Arc::new(tokio::sync::Notify::new());
    let limits = Arc::new(sources::sentry::limits::Limits::new(
        sources::sentry::limits::RateConfig {
            rate: cfg.sentry.rate,
            burst: cfg.sentry.burst,
        },
    ));
    let heartbeat_interval = match &cfg.heartbeat.interval {
        Some(s) => promql_parser::util::parse_duration(s)
            .map_err(|e| anyhow::anyhow!("[heartbeat] interval {s:?}: {e}"))?,
        None => Duration::from_secs(30),
    };
    let keys = Arc::new(sources::sentry::keys::Keys::load(
        &cfg.data_dir.join("projects.json"),
    ));
    let keys_refresh = match &cfg.sentry.keys_refresh {
        Some(s) => promql_parser::util::parse_duration(s)
            .map_err(|e| anyhow::anyhow!("[sentry] keys_refresh {s:?}: {e}"))?,
        None => Duration::from_secs(60),
    };
    if keys_refresh.is_zero() {
        anyhow::bail!("[sentry] keys_refresh must be longer than 0s");
    }
    let scrape_stats = Arc::new(sources::scrape::ScrapeStats::default());
    let relay_stats = Arc::new(sources::sentry::relay::RelayStats::default());
    let otlp_stats = Arc::new(sources::otlp::receiver::OtlpStats::default());
    let state = Arc::new(State {
        spool: spool.clone(),
        stats: stats.clone(),
        relay: relay_stats.clone(),
        otlp: otlp_stats.clone(),
        scrape: scrape_stats.clone(),
        paths: host_paths.clone(),
        keys: keys.clone(),
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
                    (host_fams, own_metrics(&st2), t_ms)
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
                        family::render(&own_metrics(&st), &mut out);
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
            cfg.max_body_bytes,
        ));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut servers = Vec::new();
    let serve_limits = cfg.limits.serve.limits().map_err(anyhow::Error::msg)?;
    let otlp_listen_given = cfg.otlp_listen != Config::default().otlp_listen;
    if cfg.otlp_listen != "off" {
        let otlp = serve::with_body_limits(
            sources::otlp::routes(sources::otlp::receiver::OtlpState {
                spool: spool.clone(),
                wake: wake.clone(),
                stats: otlp_stats,
            }),
            cfg.max_body_bytes,
        );
        match tokio::net::TcpListener::bind(&cfg.otlp_listen).await {
            Ok(l) => servers.push(tokio::spawn(serve::serve(
                calm_serve::Server::new(serve_limits.clone()),
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
        calm_serve::Server::new(serve_limits),
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
