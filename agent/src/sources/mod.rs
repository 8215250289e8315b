//! The agent's sources. Each is a folder of its own (its config section, its code, its
//! tests) behind the [`Source`] trait; a new source is a folder plus one line in
//! [`SOURCES`], and never touches the others.
//!
//! - [`host`]: host metrics with node_exporter names, served at `/metrics` and shipped.
//! - [`scrape`]: apps' `/metrics` pulled as Prometheus pulls them.
//! - [`otlp`]: the OTLP/HTTP metrics receiver (`POST /v1/metrics`) on its own listener.
//! - [`sentry`]: the Sentry relay (`/api/{project_id}/envelope/`, `store/`).
//!
//! `main` builds what every source needs once (a [`Context`]: the shipping handle, the
//! self-metrics registry, the shutdown signal, the agent-wide settings), then starts
//! every entry of [`SOURCES`] with its own config section. What a source gives back
//! ([`Started`]) is routes for the main listener, servers of its own, and work to do on
//! a clean shutdown; `main` does not know which source gave what.

pub mod host;
pub mod otlp;
pub mod scrape;
pub mod sentry;

use crate::config::Config;
use crate::selfmetrics::SelfMetrics;
use crate::spool::Spool;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

/// Every source, one line each, in start order. The name is the source's folder under
/// `src/sources/` (a unit test checks that every folder has its line).
pub const SOURCES: &[Entry] = &[
    entry::<host::Host>(),
    entry::<scrape::Scrape>(),
    entry::<otlp::Otlp>(),
    entry::<sentry::Sentry>(),
];

/// A source of data for the agent to ship.
pub trait Source {
    /// Its name: the folder under `src/sources/` (and the name in logs).
    const NAME: &'static str;
    /// Its config section, as it takes it.
    type Config;
    /// Its section of the whole configuration (checked at load).
    fn section(cfg: &Config) -> Self::Config;
    /// Starts the source: spawns its tasks, registers its self-metrics in
    /// `ctx.metrics`, and says what `main` must serve or wait for. Runs inside the
    /// runtime (it may `tokio::spawn`); an error stops the agent at start.
    fn run(section: Self::Config, ctx: &Context) -> anyhow::Result<Started>;
}

/// One line of [`SOURCES`].
pub struct Entry {
    /// [`Source::NAME`].
    pub name: &'static str,
    start: fn(&Config, &Context) -> anyhow::Result<Started>,
}

impl Entry {
    /// Starts the source with its section of `cfg`.
    pub fn start(&self, cfg: &Config, ctx: &Context) -> anyhow::Result<Started> {
        (self.start)(cfg, ctx)
    }
}

/// The line of [`SOURCES`] for `S`.
pub const fn entry<S: Source>() -> Entry {
    Entry {
        name: S::NAME,
        start: start::<S>,
    }
}

fn start<S: Source>(cfg: &Config, ctx: &Context) -> anyhow::Result<Started> {
    S::run(S::section(cfg), ctx)
}

/// Where a source's data goes: the spool (the shipper sends what it holds to the
/// collectors) and the notify that wakes the shipper after a push.
#[derive(Clone)]
pub struct Shipping {
    pub spool: Arc<Spool>,
    pub wake: Arc<tokio::sync::Notify>,
    /// Per-project event limits: the agent's own buckets and what the collector
    /// announced (the shipper learns the latter from the collector's 429s).
    pub limits: Arc<sentry::limits::Limits>,
}

/// The agent-wide settings a source may read (its own section comes apart).
#[derive(Clone, Debug)]
pub struct Common {
    /// The collectors' base URLs; empty when nothing is shipped.
    pub collectors: Vec<String>,
    /// The bearer token for the collectors.
    pub token: Option<String>,
    /// The agent's data directory.
    pub data_dir: PathBuf,
    /// The largest request body a listener takes (bytes, after decompression).
    pub max_body_bytes: usize,
    /// The `instance` label of the agent's own series (the hostname).
    pub instance: String,
}

/// What every source gets when it starts.
pub struct Context {
    pub common: Common,
    pub ship: Shipping,
    /// The self-metrics registry: a source registers its counters here.
    pub metrics: Arc<SelfMetrics>,
    /// Turns true on SIGINT/SIGTERM: listeners stop taking requests.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// A source's own listener: `[limits]` and the request-duration histogram that
    /// every listener of the agent shares.
    pub serve: calm_serve::Limits,
    pub http_durations: Arc<calm_serve::histogram::RequestDurations>,
}

impl Context {
    /// A server for a source's own listener, with the agent's limits and histogram.
    pub fn server(&self) -> calm_serve::Server {
        calm_serve::Server::with_request_durations(self.serve.clone(), self.http_durations.clone())
    }
}

/// Work a source does on a clean shutdown, after the listeners stopped.
pub type OnShutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What a started source gives back to `main`.
#[derive(Default)]
pub struct Started {
    /// Routes served on the agent's main listener (`listen`).
    pub routes: Option<axum::Router>,
    /// Servers of its own (waited for on shutdown).
    pub servers: Vec<tokio::task::JoinHandle<()>>,
    /// Run once the listeners stopped, before the spool's last flush.
    pub on_shutdown: Option<OnShutdown>,
}

#[cfg(test)]
mod tests {
    use super::SOURCES;
    use std::collections::BTreeSet;

    /// A folder under `src/sources/` without its line in [`SOURCES`] (or a line without
    /// a folder) fails here.
    #[test]
    fn every_source_folder_has_its_line() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/sources");
        let folders: BTreeSet<String> = std::fs::read_dir(&dir)
            .expect("read src/sources")
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        let listed: BTreeSet<String> = SOURCES.iter().map(|e| e.name.to_string()).collect();
        assert_eq!(listed.len(), SOURCES.len(), "a name twice in SOURCES");
        assert_eq!(
            folders, listed,
            "src/sources/ folders vs SOURCES' names: add the folder's line to SOURCES"
        );
    }
}
