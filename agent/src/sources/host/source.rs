//! The host source behind [`crate::sources::Source`]: `/metrics` on the main listener
//! (the host's families read at the scrape's moment, then the agent's own), and, when
//! collectors are configured, a read every `[host] interval` spooled for shipping, with
//! stale markers for every series last spooled on a clean shutdown.

use super::{collect, select, HostPaths};
use crate::config::HostSection;
use crate::family::{self, Family};
use crate::selfmetrics::SelfMetrics;
use crate::sources::{Context, Source, Started};
use crate::spool;
use axum::routing::get;
use std::sync::Arc;
use std::time::Duration;

/// The host source.
pub struct Host;

impl Source for Host {
    const NAME: &'static str = "host";
    type Config = HostSection;

    fn section(cfg: &crate::config::Config) -> HostSection {
        cfg.host.clone()
    }

    fn run(section: HostSection, ctx: &Context) -> anyhow::Result<Started> {
        let interval = section.interval.get();
        let paths = Arc::new(HostPaths {
            textfile_dir: section.textfile_dir.clone(),
            // Checked at load.
            enabled: select(&section.collectors).map_err(anyhow::Error::msg)?,
            ..HostPaths::default()
        });
        let state = Arc::new(State {
            metrics: ctx.metrics.clone(),
            paths,
            last_read: parking_lot::Mutex::new(None),
        });
        let mut started = Started {
            routes: Some(metrics_route(state.clone())),
            ..Started::default()
        };
        if ctx.common.collectors.is_empty() {
            tracing::warn!(
                "no --collector given: host metrics are served at /metrics but not shipped"
            );
            return Ok(started);
        }
        // The host's and the agent's own families last spooled, for their series' stale
        // markers on a clean shutdown.
        let last_host_series: Arc<parking_lot::Mutex<LastShipped>> = Arc::default();
        tokio::spawn(ship_loop(
            state,
            ctx.ship.spool.clone(),
            ctx.ship.wake.clone(),
            ctx.common.instance.clone(),
            interval,
            last_host_series.clone(),
        ));
        let (spool, wake, instance) = (
            ctx.ship.spool.clone(),
            ctx.ship.wake.clone(),
            ctx.common.instance.clone(),
        );
        started.on_shutdown = Some(Box::pin(async move {
            let (host_fams, own) = std::mem::take(&mut *last_host_series.lock());
            let extra = [("job", "node"), ("instance", instance.as_str())];
            let last: Vec<_> = family::to_series(&host_fams, &extra, 0)
                .into_iter()
                .chain(family::to_series(&own, &extra, 0))
                .map(|s| s.labels)
                .collect();
            mark_host_series_stale(&spool, &wake, &last).await;
        }));
        Ok(started)
    }
}

/// The machine's hostname: the `instance` label of the agent's series.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

struct State {
    /// The agent's own families (`calm_agent_*`), registered by each room.
    metrics: Arc<SelfMetrics>,
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

/// `GET /metrics`: the host's families, then the agent's own.
fn metrics_route(state: Arc<State>) -> axum::Router {
    axum::Router::new().route(
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
}

/// Reads the host now and remembers the read for the shipper (`/metrics` is always
/// served from a read of its own moment, as node_exporter does).
fn read_host_for_scrape(st: &State) -> Arc<Vec<Family>> {
    let t_ms = now_ms();
    let fams = Arc::new(collect(&st.paths));
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
    let fams = Arc::new(collect(&st.paths));
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

/// Every `interval`: the host's families and the agent's own, spooled for shipping.
async fn ship_loop(
    st: Arc<State>,
    sp: Arc<spool::Spool>,
    wk: Arc<tokio::sync::Notify>,
    host: String,
    interval: Duration,
    last: Arc<parking_lot::Mutex<LastShipped>>,
) {
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
    let now = now_ms();
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
