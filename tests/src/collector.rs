//! The collector under test: `target/debug/calm-collector` on a loopback port with its
//! own temporary data dir.
//!
//! ```no_run
//! let mut c = calm_tests::Collector::start();
//! c.kill9();
//! c.start_again(); // same port, same data dir
//! ```

use crate::api::PromApi;
use crate::process::ChildProcess;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

/// How long a start may take before the test fails (override: `CALM_READY_TIMEOUT_SECS`).
fn ready_timeout() -> Duration {
    let secs = std::env::var("CALM_READY_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    Duration::from_secs(secs)
}

/// The collector binary: `CALM_COLLECTOR_BIN`, else `<workspace>/target/debug/calm-collector`
/// (or `$CARGO_TARGET_DIR/debug/calm-collector`). Panics with the fix if it is missing.
pub fn collector_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CALM_COLLECTOR_BIN") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "CALM_COLLECTOR_BIN={} does not exist",
            p.display()
        );
        return p;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target"));
    let p = target.join("debug").join("calm-collector");
    assert!(
        p.is_file(),
        "{} not found: build it first with `cargo build -p calm-collector` \
         (scripts/test does), or set CALM_COLLECTOR_BIN",
        p.display()
    );
    warn_if_stale(&p);
    p
}

/// `cargo test -p calm-tests` does not rebuild the collector: say so when its sources
/// are newer than the binary (once per process).
fn warn_if_stale(bin: &Path) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Ok(built) = bin.metadata().and_then(|m| m.modified()) else {
            return;
        };
        let root = crate::workspace_root();
        // What the binary is built from (not collector/tests, benches, fuzz targets).
        let newest = [
            "collector/src",
            "collector/Cargo.toml",
            "wire/src",
            "wire/Cargo.toml",
        ]
        .iter()
        .filter_map(|d| newest_mtime(&root.join(d)))
        .max();
        if newest.is_some_and(|n| n > built) {
            crate::notice(&format!(
                "WARNING: {} is older than the collector/wire sources; \
                 run `cargo build -p calm-collector` (scripts/test does)",
                bin.display()
            ));
        }
    });
}

fn newest_mtime(dir: &Path) -> Option<std::time::SystemTime> {
    if dir.is_file() {
        return dir.metadata().and_then(|m| m.modified()).ok();
    }
    let mut newest = None;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "rs" || x == "toml") {
                if let Ok(m) = meta.modified() {
                    newest = newest.max(Some(m));
                }
            }
        }
    }
    newest
}

/// A running (or killed, restartable) collector.
pub struct Collector {
    bin: PathBuf,
    port: u16,
    extra_args: Vec<OsString>,
    // Field order matters: the process drops (is killed) before its directory is removed.
    process: Option<ChildProcess>,
    starts: u32,
    dir: Option<tempfile::TempDir>,
}

impl Collector {
    /// Starts a collector with default flags and waits until `/readyz` says 200.
    pub fn start() -> Collector {
        Collector::start_with(&[])
    }

    /// Starts a collector with extra flags (e.g. `["--max-body-bytes", "1048576"]`).
    pub fn start_with(extra_args: &[&str]) -> Collector {
        Collector::start_inner(None, extra_args)
    }

    /// Starts a collector with a TOML config file (written into its temp dir) plus flags.
    pub fn start_with_config(config_toml: &str, extra_args: &[&str]) -> Collector {
        Collector::start_inner(Some(config_toml), extra_args)
    }

    fn start_inner(config_toml: Option<&str>, extra_args: &[&str]) -> Collector {
        let bin = collector_bin();
        let dir = tempfile::Builder::new()
            .prefix("calm-collector-")
            .tempdir()
            .expect("temp dir");
        std::fs::create_dir_all(dir.path().join("data")).expect("data dir");
        let mut args: Vec<OsString> = Vec::new();
        if let Some(toml) = config_toml {
            let path = dir.path().join("collector.toml");
            std::fs::write(&path, toml).expect("write config");
            args.push("--config".into());
            args.push(path.into_os_string());
        }
        args.extend(extra_args.iter().map(OsString::from));
        let mut c = Collector {
            bin,
            port: 0,
            extra_args: args,
            process: None,
            starts: 0,
            dir: Some(dir),
        };
        // Another process may grab the port between the pick and the bind: retry then.
        for attempt in 0..3 {
            c.port = crate::ports::free_port();
            match c.spawn_and_wait() {
                Ok(()) => return c,
                Err(msg) if attempt < 2 && msg.contains("in use") => continue,
                Err(msg) => panic!("{msg}"),
            }
        }
        unreachable!()
    }

    fn root(&self) -> &Path {
        self.dir.as_ref().expect("temp dir").path()
    }

    /// The data dir, kept across restarts.
    pub fn data_dir(&self) -> PathBuf {
        self.root().join("data")
    }

    /// The log file (stderr and stdout of every start).
    pub fn log_path(&self) -> PathBuf {
        self.root().join("collector.log")
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        crate::file_tail(&self.log_path(), lines)
    }

    /// The listen port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The remote-write endpoint.
    pub fn write_url(&self) -> String {
        format!("{}/api/v1/write", self.url())
    }

    /// A Prometheus HTTP API client for this collector.
    pub fn api(&self) -> PromApi {
        PromApi::new(&self.url())
    }

    /// The process id of the current run.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(|p| p.pid())
    }

    /// How many times the process was started.
    pub fn starts(&self) -> u32 {
        self.starts
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        assert!(self.process.is_none(), "collector is already running");
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(&self.extra_args)
            .env("RUST_BACKTRACE", "1");
        self.starts += 1;
        let log = self.log_path();
        let name = format!("calm-collector (start #{})", self.starts);
        let proc = ChildProcess::spawn(&name, cmd, &log)
            .map_err(|e| format!("cannot start {}: {e}", self.bin.display()))?;
        self.process = Some(proc);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("http client");
        let url = format!("{}/readyz", self.url());
        let timeout = ready_timeout();
        let started = Instant::now();
        loop {
            let proc = self.process.as_mut().expect("process");
            if let Some(status) = proc.exited() {
                self.process = None;
                return Err(format!(
                    "calm-collector exited during start-up ({}) before /readyz said 200; \
                     last log lines:\n{}",
                    ChildProcess::describe_status(&status),
                    self.log_tail(30)
                ));
            }
            let last = match client.get(&url).send() {
                Ok(r) if r.status().as_u16() == 200 => return Ok(()),
                Ok(r) => format!("HTTP {}", r.status()),
                Err(e) => format!("{e}"),
            };
            if started.elapsed() > timeout {
                let tail = self.log_tail(30);
                if let Some(mut p) = self.process.take() {
                    p.kill9();
                }
                return Err(format!(
                    "calm-collector not ready after {timeout:?} (GET /readyz: {last}); \
                     last log lines:\n{tail}"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill -9` the process and reap it. Nothing acknowledged may be lost by this.
    pub fn kill9(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill9();
        }
    }

    /// SIGTERM and wait up to `timeout` for a graceful exit. Returns the exit status and
    /// whether the process exited in time (if not, it was killed with SIGKILL).
    pub fn terminate(&mut self, timeout: Duration) -> Option<(ExitStatus, bool)> {
        self.process.take().and_then(|mut p| p.terminate(timeout))
    }

    /// Starts the process again (after [`Collector::kill9`] or [`Collector::terminate`])
    /// on the same port and data dir, and waits until it is ready. Panics if it is not.
    pub fn start_again(&mut self) {
        if let Err(msg) = self.spawn_and_wait() {
            panic!("restart #{}: {msg}", self.starts);
        }
    }

    /// Graceful stop (SIGTERM, 30 s) if running, then a start on the same data dir.
    pub fn restart(&mut self) {
        if let Some((status, in_time)) = self.terminate(Duration::from_secs(30)) {
            assert!(
                in_time,
                "calm-collector did not exit within 30 s of SIGTERM; log:\n{}",
                self.log_tail(30)
            );
            let _ = status;
        }
        self.start_again();
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(|p| p.is_running())
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        // Kill first (ChildProcess prints its log tail if the test failed).
        drop(self.process.take());
        if std::thread::panicking() && std::env::var("CALM_KEEP_TMP").is_ok_and(|v| v == "1") {
            if let Some(dir) = self.dir.take() {
                let kept = dir.keep();
                crate::notice(&format!("kept collector dir {}", kept.display()));
            }
        }
    }
}
