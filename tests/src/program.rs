//! A Calm binary under test (`calm-collector`, `calm-agent`): found in the target dir,
//! started on loopback ports with its own temporary directory (data dir and log file),
//! waited for until `/readyz` answers 200, stopped with SIGTERM or `kill -9`, and started
//! again on the same ports and data. [`crate::Collector`] and [`crate::Agent`] wrap one
//! each and add what is particular to that program (its flags, its URLs).

use crate::process::ChildProcess;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

/// How long a start may take before the test fails (override: `CALM_READY_TIMEOUT_SECS`).
pub fn ready_timeout() -> Duration {
    let secs = std::env::var("CALM_READY_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    Duration::from_secs(secs)
}

/// A workspace binary: the path in `env_var` if set, else `<target>/debug/<name>`
/// (`$CARGO_TARGET_DIR` or `<workspace>/target`). Panics with the fix if it is missing,
/// and warns once when a directory in `sources` (relative to the workspace) holds a file
/// newer than the binary, because `cargo test -p calm-tests` does not rebuild it.
pub fn workspace_bin(env_var: &str, name: &str, sources: &[&str]) -> PathBuf {
    if let Some(p) = std::env::var_os(env_var) {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "{env_var}={} does not exist", p.display());
        return p;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target"));
    let p = target.join("debug").join(name);
    assert!(
        p.is_file(),
        "{} not found: build it first with `cargo build -p {name}` (scripts/test does), \
         or set {env_var}",
        p.display()
    );
    warn_if_stale(&p, name, sources);
    p
}

/// Says so (once per binary and test process) when `sources` are newer than `bin`.
fn warn_if_stale(bin: &Path, name: &str, sources: &[&str]) {
    static WARNED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
    if warned.iter().any(|b| b == bin) {
        return;
    }
    warned.push(bin.to_path_buf());
    let Ok(built) = bin.metadata().and_then(|m| m.modified()) else {
        return;
    };
    let root = crate::workspace_root();
    let newest = sources
        .iter()
        .filter_map(|d| newest_mtime(&root.join(d)))
        .max();
    if newest.is_some_and(|n| n > built) {
        crate::notice(&format!(
            "WARNING: {} is older than its sources ({}); run `cargo build -p {name}` \
             (scripts/test does)",
            bin.display(),
            sources.join(", ")
        ));
    }
}

/// The newest modification time of a `.rs` or `.toml` file at or below `dir`.
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

/// True when a failed start says its listen port was taken (by another process, between
/// the pick and the bind): the caller picks new ports and tries again.
pub fn port_was_taken(start_error: &str) -> bool {
    start_error.contains("in use") || start_error.contains("cannot listen")
}

/// One Calm program under test: its binary, its temp dir (`data/` and `<name>.log`),
/// the current run if any, and how many times it was started.
pub struct Program {
    name: &'static str,
    bin: PathBuf,
    // Field order matters: the process drops (is killed) before its directory is removed.
    process: Option<ChildProcess>,
    starts: u32,
    dir: Option<tempfile::TempDir>,
}

impl Program {
    /// A stopped program `name` (e.g. `calm-agent`) running `bin`, with a fresh temp dir.
    pub fn new(name: &'static str, bin: PathBuf) -> Program {
        let dir = tempfile::Builder::new()
            .prefix(&format!("{name}-"))
            .tempdir()
            .expect("temp dir");
        Program {
            name,
            bin,
            process: None,
            starts: 0,
            dir: Some(dir),
        }
    }

    /// The temp dir (config files go here too).
    pub fn root(&self) -> &Path {
        self.dir.as_ref().expect("temp dir").path()
    }

    /// The data dir, kept across restarts.
    pub fn data_dir(&self) -> PathBuf {
        self.root().join("data")
    }

    /// The log file: stdout and stderr of every start, appended.
    pub fn log_path(&self) -> PathBuf {
        let file = format!("{}.log", self.name.trim_start_matches("calm-"));
        self.root().join(file)
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        crate::file_tail(&self.log_path(), lines)
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.log_path()).unwrap_or_default()).into_owned()
    }

    /// A command for the binary, with `RUST_BACKTRACE=1`.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.env("RUST_BACKTRACE", "1");
        cmd
    }

    /// The process id of the current run.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(|p| p.pid())
    }

    /// How many times the process was started.
    pub fn starts(&self) -> u32 {
        self.starts
    }

    /// Starts `cmd` (from [`Program::command`]) and waits until `GET {base_url}/readyz`
    /// answers 200. On failure (the process exits, or is not ready within
    /// [`ready_timeout`]) the process is gone and the error carries the log's tail.
    pub fn spawn_and_wait(&mut self, cmd: Command, base_url: &str) -> Result<(), String> {
        assert!(self.process.is_none(), "{} is already running", self.name);
        self.starts += 1;
        let label = format!("{} (start #{})", self.name, self.starts);
        let proc = ChildProcess::spawn(&label, cmd, &self.log_path())
            .map_err(|e| format!("cannot start {}: {e}", self.bin.display()))?;
        self.process = Some(proc);
        self.wait_ready(base_url)
    }

    /// Starts `cmd` without waiting for `/readyz` (a test that checks what a starting
    /// or never-ready process answers).
    pub fn spawn_only(&mut self, cmd: Command) -> Result<(), String> {
        assert!(self.process.is_none(), "{} is already running", self.name);
        self.starts += 1;
        let label = format!("{} (start #{})", self.name, self.starts);
        let proc = ChildProcess::spawn(&label, cmd, &self.log_path())
            .map_err(|e| format!("cannot start {}: {e}", self.bin.display()))?;
        self.process = Some(proc);
        Ok(())
    }

    fn wait_ready(&mut self, base_url: &str) -> Result<(), String> {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("http client");
        let url = format!("{base_url}/readyz");
        let timeout = ready_timeout();
        let started = Instant::now();
        loop {
            let proc = self.process.as_mut().expect("process");
            if let Some(status) = proc.exited() {
                self.process = None;
                return Err(format!(
                    "{} exited during start-up ({}) before /readyz said 200; \
                     last log lines:\n{}",
                    self.name,
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
                self.kill9();
                return Err(format!(
                    "{} not ready after {timeout:?} (GET /readyz: {last}); \
                     last log lines:\n{tail}",
                    self.name
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill -9` the process and reap it (for Calm: nothing acknowledged may be lost by this).
    pub fn kill9(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill9();
        }
    }

    /// SIGTERM and wait up to `timeout` (SIGKILL after). Returns the exit status and
    /// whether the process exited by itself in time.
    pub fn terminate(&mut self, timeout: Duration) -> Option<(ExitStatus, bool)> {
        self.process.take().and_then(|mut p| p.terminate(timeout))
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(|p| p.is_running())
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        // Kill first (ChildProcess prints its log tail if the test failed).
        drop(self.process.take());
        if std::thread::panicking() && std::env::var("CALM_KEEP_TMP").is_ok_and(|v| v == "1") {
            if let Some(dir) = self.dir.take() {
                let kept = dir.keep();
                crate::notice(&format!("kept {} dir {}", self.name, kept.display()));
            }
        }
    }
}
