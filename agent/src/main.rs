//! `calm-agent`: host metrics with node_exporter names, spooled on disk and shipped
//! to the collector. See `calm-agent --help`.

mod family;
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
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
struct HostSection {
    interval: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
struct SpoolSection {
    max_bytes: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
struct Config {
    listen: String,
    data_dir: PathBuf,
    collectors: Vec<String>,
    token: Option<String>,
    host: HostSection,
    spool: SpoolSection,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:9401".into(),
            data_dir: PathBuf::from("./data/agent"),
            collectors: Vec::new(),
            token: None,
            host: HostSection::default(),
            spool: SpoolSection::default(),
        }
    }
}

fn load(flags: Flags) -> anyhow::Result<Config> {
    let mut cfg = match &flags.config {
        Some(p) => toml::from_str(
            &std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?,
        )
        .with_context(|| format!("config file {} is not valid", p.display()))?,
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
    paths: HostPaths,
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
    ]
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CALM_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cfg = load(Flags::parse())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
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
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("cannot create {}", cfg.data_dir.display()))?;
    let spool = Arc::new(
        spool::Spool::open(
            &cfg.data_dir.join("spool"),
            cfg.spool.max_bytes.unwrap_or(1 << 30),
        )
        .with_context(|| format!("cannot open the spool in {}", cfg.data_dir.display()))?,
    );
    let stats = Arc::new(ship::ShipStats::default());
    let wake = Arc::new(tokio::sync::Notify::new());
    if cfg.collectors.is_empty() {
        tracing::warn!("no --collector given: host metrics are served at /metrics but not shipped");
    } else {
        tokio::spawn(ship::run(
            spool.clone(),
            ship::ShipConfig {
                collectors: cfg.collectors.clone(),
                token: cfg.token.clone(),
            },
            stats.clone(),
            wake.clone(),
        ));
        let (sp, wk, host) = (spool.clone(), wake.clone(), hostname());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            loop {
                tick.tick().await;
                let fams = tokio::task::spawn_blocking(|| host::collect(&HostPaths::default()))
                    .await
                    .unwrap_or_default();
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as i64)
                    .unwrap_or(0);
                let series = family::to_series(&fams, &[("job", "node"), ("instance", &host)], now);
                let body = calm_wire::remote_write::encode(&calm_wire::prompb::WriteRequest {
                    timeseries: series,
                    metadata: vec![],
                });
                match sp.push(spool::EntryKind::Metrics, &body) {
                    Ok(_) => wk.notify_one(),
                    Err(e) => tracing::error!(error = %e, "cannot spool host metrics"),
                }
            }
        });
    }
    let state = Arc::new(State {
        spool: spool.clone(),
        stats,
        paths: HostPaths::default(),
    });
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let st = state.clone();
                async move {
                    let text = tokio::task::spawn_blocking(move || {
                        let mut fams = host::collect(&st.paths);
                        fams.extend(own_metrics(&st));
                        let mut out = String::new();
                        family::render(&fams, &mut out);
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
        .route("/readyz", get(|| async { "ready\n" }));
    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    tracing::info!(listen = %cfg.listen, collectors = ?cfg.collectors, "calm-agent ready");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            // SIGINT or SIGTERM: stop serving, then flush the spool below.
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
        })
        .await?;
    spool.flush()?;
    Ok(())
}
