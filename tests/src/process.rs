//! A child process tied to the test that started it.
//!
//! The child is killed (SIGKILL) and reaped when its [`ChildProcess`] drops, which also
//! happens while a failing test unwinds. As a second net, the child gets
//! `PR_SET_PDEATHSIG = SIGKILL`: if the thread that spawned it dies (the test thread,
//! or the whole test process on a hard abort), the kernel kills the child.
//! Its stdout and stderr go to a log file, appended across restarts.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A running child process whose output goes to `log`.
pub struct ChildProcess {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl ChildProcess {
    /// Spawns `cmd` with stdin closed and stdout+stderr appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> std::io::Result<ChildProcess> {
        let mut file = OpenOptions::new().create(true).append(true).open(log)?;
        writeln!(file, "==== {name}: {cmd:?} ====")?;
        let err = file.try_clone()?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err));
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        Ok(ChildProcess {
            name: name.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
        })
    }

    /// The process id, while the process runs (or until it is reaped).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The log file (stdout and stderr).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        crate::file_tail(&self.log, lines)
    }

    /// `Some(status)` if the process has exited (reaping it), `None` while it runs.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status),
            Ok(None) => None,
            Err(e) => panic!("{}: try_wait failed: {e}", self.name),
        }
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child.is_some() && self.exited().is_none()
    }

    /// Sends a signal (no-op if the process is gone).
    pub fn signal(&self, sig: libc::c_int) {
        if let Some(child) = &self.child {
            // SAFETY: kill(2) with a pid we own and have not reaped yet.
            unsafe {
                libc::kill(child.id() as libc::pid_t, sig);
            }
        }
    }

    /// SIGKILL, then reap. Returns the exit status.
    pub fn kill9(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = child.kill();
        child.wait().ok()
    }

    /// SIGTERM, wait up to `timeout` for it to exit; SIGKILL after that.
    /// Returns the exit status and whether it exited by itself in time.
    pub fn terminate(&mut self, timeout: Duration) -> Option<(ExitStatus, bool)> {
        self.child.as_ref()?;
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                self.child = None;
                return Some((status, true));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill9().map(|s| (s, false))
    }

    /// Describes how the process ended, e.g. "exit code 1" or "signal 9".
    pub fn describe_status(status: &ExitStatus) -> String {
        match (status.code(), status.signal()) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(sig)) => format!("signal {sig}"),
            _ => format!("{status:?}"),
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if panicking {
            eprintln!(
                "---- last lines of {} log ({}) ----\n{}\n----",
                self.name,
                self.log.display(),
                crate::file_tail(&self.log, 25)
            );
        }
    }
}

/// Removes from `cmd`'s environment every variable of the test's own environment whose
/// name starts with `prefix` (`SENTRY_`, `OTEL_`): a client under test must read only
/// the settings the test gives it.
pub fn remove_env_prefix(cmd: &mut Command, prefix: &str) {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with(prefix) {
            cmd.env_remove(k);
        }
    }
}

/// The result of [`run_bounded`].
#[derive(Debug)]
pub struct RunOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` to completion with stdout and stderr captured, killing it (and failing
/// the test) if it takes longer than `timeout`.
pub fn run_bounded(mut cmd: Command, timeout: Duration) -> RunOutput {
    let dir = tempfile::tempdir().expect("temp dir");
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let out = std::fs::File::create(&out_path).expect("stdout file");
    let err = std::fs::File::create(&err_path).expect("stderr file");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err));
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {desc}: {e}"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{desc} did not finish within {timeout:?}; stderr:\n{}",
                crate::file_tail(&err_path, 40)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read =
        |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
    RunOutput {
        status,
        stdout: read(&out_path),
        stderr: read(&err_path),
    }
}
