//! The agent under test: `target/debug/calm-agent` on loopback ports (its listen address
//! and its OTLP receiver) with its own temporary data dir (the spool), restartable.
//!
//! ```no_run
//! let c = calm_tests::Collector::start();
//! let mut a = calm_tests::Agent::builder().collector(&c.url()).start();
//! a.terminate(std::time::Duration::from_secs(10)); // SIGTERM: flushes the spool
//! a.start_again();                                 // same ports, same spool
//! let depth = a.metric("calm_agent_spool_entries");
//! ```

use crate::program::{port_was_taken, workspace_bin, Program};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// The agent binary: `CALM_AGENT_BIN`, else `<target>/debug/calm-agent`. Panics with the
/// fix if it is missing; warns when the agent's sources are newer than it.
pub fn agent_bin() -> PathBuf {
    let sources = [
        "agent/src",
        "agent/Cargo.toml",
        "wire/src",
        "wire/Cargo.toml",
        "serve/src",
        "serve/Cargo.toml",
    ];
    workspace_bin("CALM_AGENT_BIN", "calm-agent", &sources)
}

/// How to start an [`Agent`].
#[derive(Default, Clone)]
pub struct AgentBuilder {
    collectors: Vec<String>,
    config_toml: Option<String>,
    args: Vec<OsString>,
    env: Vec<(String, String)>,
}

impl AgentBuilder {
    /// Ships to this collector base URL (repeat for failover).
    pub fn collector(mut self, url: &str) -> AgentBuilder {
        self.collectors.push(url.to_string());
        self
    }

    /// Writes this TOML into the agent's temp dir and passes `--config`. `{agent_url}` in
    /// it becomes the agent's own `http://127.0.0.1:PORT` (e.g. to scrape its own `/metrics`).
    pub fn config(mut self, toml: &str) -> AgentBuilder {
        self.config_toml = Some(toml.to_string());
        self
    }

    /// Extra flags.
    pub fn args(mut self, args: &[&str]) -> AgentBuilder {
        self.args.extend(args.iter().map(OsString::from));
        self
    }

    /// An environment variable for the process.
    pub fn env(mut self, key: &str, value: &str) -> AgentBuilder {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Starts the agent and waits until `/readyz` answers 200. Panics if it does not.
    pub fn start(self) -> Agent {
        let program = Program::new("calm-agent", agent_bin());
        let mut args: Vec<OsString> = Vec::new();
        let config_path = program.root().join("agent.toml");
        if self.config_toml.is_some() {
            args.push("--config".into());
            args.push(config_path.clone().into_os_string());
        }
        for c in &self.collectors {
            args.push("--collector".into());
            args.push(c.into());
        }
        args.extend(self.args.iter().cloned());
        let mut a = Agent {
            program,
            port: 0,
            otlp_port: 0,
            args,
            env: self.env,
        };
        // Another process may take a port between the pick and the bind: retry then.
        for attempt in 0..3 {
            a.port = crate::ports::free_port();
            a.otlp_port = crate::ports::free_port();
            if let Some(toml) = &self.config_toml {
                let toml = toml.replace("{agent_url}", &a.url());
                std::fs::write(&config_path, toml).expect("write agent config");
            }
            match a.spawn_and_wait() {
                Ok(()) => return a,
                Err(msg) if attempt < 2 && port_was_taken(&msg) => continue,
                Err(msg) => panic!("{msg}"),
            }
        }
        unreachable!()
    }
}

/// A running (or stopped, restartable) `calm-agent`.
pub struct Agent {
    program: Program,
    port: u16,
    otlp_port: u16,
    args: Vec<OsString>,
    env: Vec<(String, String)>,
}

impl Agent {
    /// A builder: collectors, config, flags.
    pub fn builder() -> AgentBuilder {
        AgentBuilder::default()
    }

    /// `http://127.0.0.1:PORT` (the agent's listen address: /metrics, Sentry relay).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The listen port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT` of the OTLP/HTTP receiver.
    pub fn otlp_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.otlp_port)
    }

    /// The OTLP receiver's port.
    pub fn otlp_port(&self) -> u16 {
        self.otlp_port
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let mut cmd = self.program.command();
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--otlp-listen")
            .arg(format!("127.0.0.1:{}", self.otlp_port))
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(&self.args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let url = self.url();
        self.program.spawn_and_wait(cmd, &url)
    }

    /// Starts again on the same ports and data dir; panics if it does not become ready.
    pub fn start_again(&mut self) {
        if let Err(msg) = self.spawn_and_wait() {
            panic!("agent restart #{}: {msg}", self.starts());
        }
    }

    /// The agent's `/metrics` text.
    pub fn metrics_text(&self) -> String {
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client")
            .get(format!("{}/metrics", self.url()))
            .send()
            .and_then(|r| r.text())
            .unwrap_or_else(|e| panic!("GET {}/metrics: {e}", self.url()))
    }

    /// The value of an unlabelled sample `name` on the agent's `/metrics`, if present.
    pub fn metric(&self, name: &str) -> Option<f64> {
        sample_value(&self.metrics_text(), name)
    }

    /// `VmHWM` (peak resident set) of the current run, in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        proc_status_kib(self.pid()?, "VmHWM:")
    }

    /// `VmRSS` (resident set now) of the current run, in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        proc_status_kib(self.pid()?, "VmRSS:")
    }
}

/// The value of the sample line `name VALUE` in an exposition-format text: `name` is
/// the line up to the value, a bare name or one with its labels as written
/// (`x_total{limit="total"}`).
pub fn sample_value(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix(' ')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// A `kB` field of `/proc/<pid>/status` (`VmHWM:`, `VmRSS:`), in KiB.
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The shared part: data dir, log, pid, starts, `kill9`, `terminate`, `is_running`.
impl std::ops::Deref for Agent {
    type Target = Program;
    fn deref(&self) -> &Program {
        &self.program
    }
}

impl std::ops::DerefMut for Agent {
    fn deref_mut(&mut self) -> &mut Program {
        &mut self.program
    }
}
