//! Black-box test harness: the real `calm-collector` binary against real peers
//! (Prometheus, node_exporter, the OpenTelemetry Python SDK), all on loopback.
//!
//! - [`ports`]: free loopback ports.
//! - [`postgres`](mod@postgres): a real PostgreSQL server (initdb, start/stop, a database per test).
//! - [`process`]: a child process that is killed when its handle drops, even on panic.
//! - [`program`]: a Calm binary under test (temp dir, log, ready wait, stop, restart),
//!   shared by [`Collector`] and [`Agent`].
//! - [`otel_sdk`]: the OpenTelemetry Python SDK pushing OTLP/HTTP.
//! - [`sentry_sdk`]: runs the real Sentry SDK scripts; checks shared by the error tests.
//! - [`collector`]: [`Collector`], the collector under test (start, `kill -9`, restart).
//! - [`agent`]: [`Agent`], the agent under test (start, SIGTERM, `kill -9`, restart, own metrics).
//! - [`peers`]: [`Prometheus`], [`NodeExporter`], and [`require_peer`] to find them.
//! - [`nats`]: a 3-node NATS JetStream cluster (nats-server >= 2.12) for cluster mode.
//! - [`api`]: a client for the Prometheus HTTP API that both sides serve.
//! - [`write`](mod@write): remote-write senders.
//! - [`alertmanager`]: a real Alertmanager; [`webhook`]: a webhook receiver that records
//!   payloads and can answer 500, hang or close (alerting tests).
//!
//! Every network call has a timeout and every wait loop has a deadline, so a misbehaving
//! collector fails a test instead of hanging it.
//!
//! Environment:
//! - `CALM_COLLECTOR_BIN`: the collector binary (default `target/debug/calm-collector`).
//! - `CALM_AGENT_BIN`: the agent binary (default `target/debug/calm-agent`).
//! - `CALM_REQUIRE_PEERS=1`: a missing peer fails the test instead of skipping it.
//! - `CALM_SKIP_LOG`: a file that skip notices are appended to (scripts/test prints it).
//! - `CALM_CONFORMANCE_DIR`: conformance data (default `../shared/conformance`).
//! - `CALM_PYTHON`: the Python interpreter for the SDK clients (default `python3`).
//! - `CALM_KEEP_TMP=1`: keep the temp dirs (data, logs) of a failed test.

pub mod agent;
pub mod alertmanager;
pub mod api;
pub mod collector;
pub mod haproxy;
pub mod nats;
pub mod otel_sdk;
pub mod peers;
pub mod ports;
pub mod postgres;
pub mod process;
pub mod program;
pub mod sentry_sdk;
pub mod webhook;
pub mod write;

pub use agent::Agent;
pub use api::{PromApi, QueryResult, Series};
pub use collector::Collector;
pub use peers::{require_peer, require_python_modules, NodeExporter, Prometheus};

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// True when `CALM_REQUIRE_PEERS=1`: missing peers and data are failures, not skips.
pub fn peers_required() -> bool {
    std::env::var("CALM_REQUIRE_PEERS").is_ok_and(|v| v == "1" || v == "true")
}

/// Prints a notice where the user sees it even when the test harness captures output
/// (straight to the process' stderr), and appends it to `CALM_SKIP_LOG` if set.
pub fn notice(msg: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{msg}");
    if let Ok(path) = std::env::var("CALM_SKIP_LOG") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{msg}");
        }
    }
}

/// Skips (returns None after a visible notice) or, with `CALM_REQUIRE_PEERS=1`, panics.
pub fn skip_or_fail<T>(what: &str, hint: &str) -> Option<T> {
    let test = std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_string();
    if peers_required() {
        panic!("{what} ({hint}); CALM_REQUIRE_PEERS=1 makes this a failure");
    }
    notice(&format!("SKIP: {what} ({hint}) [{test}]"));
    None
}

/// The conformance data directory, or a skip/failure when it is absent.
pub fn conformance_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("CALM_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/conformance"));
    if dir.is_dir() {
        Some(dir)
    } else {
        skip_or_fail(
            &format!("conformance data not found at {}", dir.display()),
            "set CALM_CONFORMANCE_DIR",
        )
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// Formats a millisecond timestamp as the API's seconds with 3 decimals.
pub fn fmt_ts(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// Polls `f` every `every` until it returns `Some`, or gives up after `timeout`.
pub fn wait_for<T>(
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// The last `lines` lines of a text file (lossy UTF-8), for failure messages.
pub fn file_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            all[start..].join("\n")
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}
