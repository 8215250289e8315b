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
use std::sync::Arc;
use std::time::Duration;

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
    // The self-metrics registry: each room's counters, registered as it is built.
    let metrics = Arc::new(selfmetrics::SelfMetrics::default());
    metrics.register(spool.clone(), selfmetrics::spool);
    metrics.register(stats.clone(), selfmetrics::ship);
    // Every listener (the main one and the sources' own) times its requests into one
    // histogram.
    let http_durations = Arc::new(calm_serve::histogram::RequestDurations::default());
    metrics.register(http_durations.clone(), selfmetrics::http);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let ctx = sources::Context {
        common: sources::Common {
            collectors: cfg.collectors.clone(),
            token: cfg.token.clone(),
            data_dir: cfg.data_dir.clone(),
            max_body_bytes: cfg.max_body_bytes.as_usize(),
            instance: sources::host::hostname(),
        },
        ship: sources::Shipping {
            spool: spool.clone(),
            wake: wake.clone(),
            limits: limits.clone(),
        },
        metrics,
        shutdown: stop_rx.clone(),
        serve: cfg.limits.limits(),
        http_durations: http_durations.clone(),
    };
    // The shipper and the heartbeat (each source says what it does without collectors).
    if !cfg.collectors.is_empty() {
        tokio::spawn(ship::run(
            spool.clone(),
            ship::ShipConfig {
                collectors: cfg.collectors.clone(),
                token: cfg.token.clone(),
            },
            stats.clone(),
            wake.clone(),
            limits,
        ));
        let host = ctx.common.instance.clone();
        tokio::spawn(
            heartbeat::Heartbeat {
                id: format!("{host} {}", cfg.listen),
                host,
                collectors: cfg.collectors.clone(),
                token: cfg.token.clone(),
                interval: cfg.heartbeat.interval.get(),
                spool: spool.clone(),
                stats: stats.clone(),
                started: std::time::Instant::now(),
            }
            .run(),
        );
    }
    // Every source, each with its own section.
    let mut app = axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(|| async { "ready\n" }));
    let mut servers = Vec::new();
    let mut on_shutdown = Vec::new();
    for source in sources::SOURCES {
        let started = source
            .start(&cfg, &ctx)
            .with_context(|| format!("cannot start the {} source", source.name))?;
        if let Some(routes) = started.routes {
            app = app.merge(routes);
        }
        servers.extend(started.servers);
        on_shutdown.extend(started.on_shutdown);
    }
    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    servers.push(tokio::spawn(serve::serve(
        ctx.server(),
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
    for work in on_shutdown {
        work.await;
    }
    spool.flush()?;
    Ok(())
}
