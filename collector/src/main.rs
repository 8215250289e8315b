//! `calm-collector`: see `calm-collector --help`.

use anyhow::Context;
use calm_collector::config::{Config, Flags};
use calm_collector::data_dir_lock::DataDirLock;
use calm_collector::storage::Stores;
use clap::Parser;
use std::sync::Arc;

/// Stack of the async workers and blocking threads (tokio's default is 2 MiB). A debug
/// build needs up to ~13 KiB a level for the worst shapes (`abs(abs(…))`), so 16 MiB
/// holds ~1300 levels, 2.5 times the highest `[query] max_depth` allowed (512).
const RUNTIME_STACK_BYTES: usize = 16 << 20;

/// Caps glibc's malloc arenas at one per core, unless `MALLOC_ARENA_MAX` says otherwise.
///
/// glibc gives threads their own arenas, up to 8 per core, and memory freed in an arena
/// stays in that arena (only its top can go back to the system). Queries run on the
/// query pool, the async workers and short-lived decoding threads, so each arena kept
/// its own high-water mark: on the query benchmark (10k series × 24 h, bench/RESULTS.md)
/// the collector's peak RSS was 1036 MiB for 189 MiB of peak live heap (heaptrack);
/// with one arena per core, 273 MiB.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        // SAFETY: mallopt sets one of glibc's allocator tunables and has no memory
        // effects of its own; it runs first thing in main, before any other thread
        // exists, so no allocation races with the change.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, cores.min(64) as libc::c_int);
        }
    }
}

fn main() -> anyhow::Result<()> {
    limit_malloc_arenas();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CALM_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, never into log files or journald.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // Data files (DSN keys, events) are the owner's only: 0600 files, 0700 dirs.
    calm_collector::secrets::private_umask();
    let flags = Flags::parse();
    if let Some(cmd) = &flags.command {
        // `check rules` holds expressions to the same limits as the server (the
        // defaults, or the --query-max-* flags).
        let mut q = calm_collector::config::QueryConfig::default();
        q.max_length = flags.query_max_length.unwrap_or(q.max_length);
        q.max_depth = flags.query_max_depth.unwrap_or(q.max_depth);
        calm_collector::promql::limits::set(q.limits());
        std::process::exit(calm_collector::alerts::check::run(cmd));
    }
    let cfg = Config::load(&flags)?;
    calm_collector::failpoint::init_from_env().map_err(anyhow::Error::msg)?;
    calm_collector::promql::limits::set(cfg.query.limits());
    calm_collector::promql::pool::init(cfg.query.pool())
        .context("cannot start the query threads")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Rule evaluation (spawn_blocking) walks PromQL trees too; the depth limit keeps
        // them shallow, and this keeps a wide margin under it.
        .thread_stack_size(RUNTIME_STACK_BYTES)
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(run(cfg))
}

async fn run(cfg: Config) -> anyhow::Result<()> {
    let addr = calm_collector::auth::listen_address(cfg.listen_addr()?, &cfg.auth)?;
    // Held until the process exits: one collector per data directory.
    let _data_dir_lock = DataDirLock::acquire(&cfg.data_dir)?;
    calm_collector::secrets::restrict_data_dir(&cfg.data_dir);
    // Listen first: `/healthz` and `/readyz` (saying what the start waits for) answer
    // while the stores open, which in cluster mode waits for NATS and PostgreSQL.
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let bound_addr = listener.local_addr().unwrap_or(addr);
    let bound = bound_addr.to_string();
    let server = calm_serve::Server::new(cfg.limits.serve().limits());
    let boot = calm_collector::startup::Boot::new();
    // Cluster mode: a clean stop first hands the partitions over while the server
    // still answers (set once the stores are open; `Stores::leave_cluster`).
    let leave: LeaveHook = Arc::new(std::sync::Mutex::new(None));
    let mut serving = {
        let server = server.clone();
        let app = server.guard(boot.router());
        let leave = leave.clone();
        tokio::spawn(async move {
            server
                .serve(listener, app, async move {
                    shutdown_signal().await;
                    let hook = leave.lock().ok().and_then(|mut h| h.take());
                    if let Some(hook) = hook {
                        hook.await;
                    }
                })
                .await
        })
    };
    let started = tokio::select! {
        r = start(&cfg, &server, bound_addr, bound) => r?,
        _ = &mut serving => {
            tracing::info!("stopped while starting");
            return Ok(());
        }
    };
    let (stores, app) = started;
    if let Ok(mut h) = leave.lock() {
        *h = Some(Box::pin(stores.leave_cluster()));
    }
    boot.ready(server.forwarded(app));
    tracing::info!(%addr, data_dir = %cfg.data_dir.display(), "calm-collector ready: http://{addr}/");
    let _ = serving.await;
    stores.release_leases().await;
    tracing::info!("shutting down: writing a head checkpoint");
    tokio::task::spawn_blocking(stores.closer()).await??;
    Ok(())
}

/// Opens the stores and builds the rooms and the full router.
async fn start(
    cfg: &Config,
    server: &calm_serve::Server,
    bound_addr: std::net::SocketAddr,
    bound: String,
) -> anyhow::Result<(Stores, axum::Router)> {
    let cfg = cfg.clone();
    // The one composition root: the stores are chosen and built here, and the rooms
    // get them as traits (`storage/mod.rs`).
    let stores: Stores = Stores::open(&cfg).await?;
    stores.start_maintenance(cfg.maintenance_interval.get());
    if stores.projects_created {
        tracing::info!("no [[projects]] configured: created default project 1 with a random key");
    }
    // The self-metrics registry: each room registers its families as it is built.
    let self_metrics = calm_collector::selfmetrics::SelfMetrics::new();
    self_metrics.register_boxed(stores.metrics());
    if let Some(m) = stores.cluster_metrics() {
        self_metrics.register_boxed(m);
    }
    // Error rules hear about new issues and regressions through this broadcast.
    let (issue_tx, issue_rx) = tokio::sync::broadcast::channel(4096);
    let events = Arc::new(calm_collector::errors::hook::NotifyingStore::new(
        stores.events.clone(),
        issue_tx,
    ));
    let sentry = calm_collector::ingest::sentry::new(
        &cfg.errors,
        cfg.max_body_bytes.as_usize(),
        stores.projects.clone(),
        events,
        stores.sink.clone(),
    );
    self_metrics.register(sentry.metrics());
    // Keys are secrets: logged masked; the full DSN is in GET /api/calm/v1/projects
    // (admin token when auth is on) and, for the default project, in projects.json.
    for p in sentry.projects.list() {
        tracing::info!(
            project = p.id,
            name = %p.name,
            key = %calm_collector::secrets::mask_key(&p.public_key),
            "Sentry project: DSN http://<key>@{bound}/{}; the full DSN: GET /api/calm/v1/projects{}",
            p.id,
            if cfg.auth.has_no_credentials() { "" } else { " with an admin token" },
        );
    }
    let alerts = calm_collector::alerts::start(
        &cfg.alerting,
        cfg.rules(),
        &stores,
        issue_rx,
        &bound,
        &self_metrics,
    )
    .await?;
    #[cfg(unix)]
    {
        let m = alerts.clone();
        tokio::spawn(async move {
            let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                return;
            };
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the rule files");
                let _ = m.reload().await;
            }
        });
    }
    let router_cfg = calm_collector::server::RouterConfig {
        max_body_bytes: cfg.max_body_bytes.as_usize(),
        max_labels_per_series: cfg.max_labels_per_series,
        max_new_series_per_sender_per_minute: cfg.limits.max_new_series_per_sender_per_minute,
        auth: &cfg.auth,
    };
    let app = calm_collector::server::router(router_cfg, &stores, self_metrics.clone())
        .merge(calm_collector::server::errors_router(
            cfg.max_body_bytes.as_usize(),
            sentry,
            bound,
        ))
        .merge(calm_collector::server::alerts_router(alerts));
    let app = match stores.cluster_routes() {
        Some(r) => app.merge(r),
        None => app,
    };
    let app = calm_collector::server::with_auth(app, &cfg.auth, bound_addr);
    self_metrics.register(calm_collector::selfmetrics::ServeCollector(
        server.stats.clone(),
    ));
    calm_collector::selfmetrics::start_storing(
        &cfg.self_metrics,
        self_metrics.clone(),
        stores.sink.clone(),
        bound_addr.to_string(),
    );
    Ok((stores, app))
}

/// What a clean stop runs before the server stops taking requests.
type LeaveHook =
    Arc<std::sync::Mutex<Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>>>;

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
