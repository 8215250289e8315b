//! The collector under test: `target/debug/calm-collector` on a loopback port with its
//! own temporary data dir.
//!
//! ```no_run
//! let mut c = calm_tests::Collector::start();
//! c.kill9();
//! c.start_again(); // same port, same data dir
//! ```

use crate::api::PromApi;
use crate::program::{port_was_taken, workspace_bin, Program};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// The collector binary: `CALM_COLLECTOR_BIN`, else `<workspace>/target/debug/calm-collector`
/// (or `$CARGO_TARGET_DIR/debug/calm-collector`). Panics with the fix if it is missing;
/// warns when the collector's sources are newer than it.
pub fn collector_bin() -> PathBuf {
    // What the binary is built from (not collector/tests, benches, fuzz targets).
    let sources = [
        "collector/src",
        "collector/Cargo.toml",
        "wire/src",
        "wire/Cargo.toml",
        "serve/src",
        "serve/Cargo.toml",
    ];
    workspace_bin("CALM_COLLECTOR_BIN", "calm-collector", &sources)
}

/// A running (or killed, restartable) collector.
pub struct Collector {
    program: Program,
    port: u16,
    extra_args: Vec<OsString>,
    /// Extra environment of every start (e.g. `CALM_FAILPOINTS`); see [`Collector::set_env`].
    env: Vec<(String, String)>,
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

    /// Starts a collector with extra flags and environment variables (e.g.
    /// `CALM_FAILPOINTS`, see `collector/src/failpoint.rs`).
    pub fn start_with_env(extra_args: &[&str], env: &[(&str, &str)]) -> Collector {
        Collector::start_inner_env(None, extra_args, env)
    }

    /// Replaces the extra flags for the next start (the listen address and data dir
    /// stay).
    pub fn set_args(&mut self, extra_args: &[&str]) {
        self.extra_args = extra_args.iter().map(OsString::from).collect();
    }

    /// Replaces the extra environment for the next start.
    pub fn set_env(&mut self, env: &[(&str, &str)]) {
        self.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    }

    fn start_inner(config_toml: Option<&str>, extra_args: &[&str]) -> Collector {
        Collector::start_inner_env(config_toml, extra_args, &[])
    }

    /// Starts a collector with an optional TOML config, flags and environment.
    pub fn start_inner_env(
        config_toml: Option<&str>,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Collector {
        let program = Program::new("calm-collector", collector_bin());
        std::fs::create_dir_all(program.data_dir()).expect("data dir");
        let mut args: Vec<OsString> = Vec::new();
        if let Some(toml) = config_toml {
            let path = program.root().join("collector.toml");
            std::fs::write(&path, toml).expect("write config");
            args.push("--config".into());
            args.push(path.into_os_string());
        }
        args.extend(extra_args.iter().map(OsString::from));
        let mut c = Collector {
            program,
            port: 0,
            extra_args: args,
            env: Vec::new(),
        };
        c.set_env(env);
        // Another process may grab the port between the pick and the bind: retry then.
        for attempt in 0..3 {
            c.port = crate::ports::free_port();
            match c.spawn_and_wait() {
                Ok(()) => return c,
                Err(msg) if attempt < 2 && port_was_taken(&msg) => continue,
                Err(msg) => panic!("{msg}"),
            }
        }
        unreachable!()
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

    /// The collector's own `/metrics` text.
    pub fn metrics_text(&self) -> String {
        let (_, text) = self
            .api()
            .get("/metrics")
            .unwrap_or_else(|e| panic!("GET {}/metrics: {e:#}", self.url()));
        text
    }

    /// The value of the sample `name` on the collector's `/metrics` (the name as the
    /// line starts, with its labels if it has any), if present.
    pub fn metric(&self, name: &str) -> Option<f64> {
        crate::agent::sample_value(&self.metrics_text(), name)
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let mut cmd = self.program.command();
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(&self.extra_args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        let url = self.url();
        self.program.spawn_and_wait(cmd, &url)
    }

    /// Starts the process again on the same port and data dir without waiting for
    /// `/readyz` (which may stay 503).
    pub fn start_again_unready(&mut self) {
        let mut cmd = self.program.command();
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(&self.extra_args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Err(msg) = self.program.spawn_only(cmd) {
            panic!("restart #{}: {msg}", self.starts());
        }
    }

    /// Starts the process again (after [`Program::kill9`] or [`Program::terminate`])
    /// on the same port and data dir, and waits until it is ready. Panics if it is not.
    pub fn start_again(&mut self) {
        if let Err(msg) = self.spawn_and_wait() {
            panic!("restart #{}: {msg}", self.starts());
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
}

/// The shared part: data dir, log, pid, starts, `kill9`, `terminate`, `is_running`.
impl std::ops::Deref for Collector {
    type Target = Program;
    fn deref(&self) -> &Program {
        &self.program
    }
}

impl std::ops::DerefMut for Collector {
    fn deref_mut(&mut self) -> &mut Program {
        &mut self.program
    }
}
