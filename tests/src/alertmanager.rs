//! A real Alertmanager (Debian's `prometheus-alertmanager`) on a loopback port, with
//! clustering off and its own data dir, for the alerting tests.

use crate::process::ChildProcess;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A running Alertmanager.
pub struct Alertmanager {
    process: ChildProcess,
    port: u16,
    _dir: tempfile::TempDir,
}

/// The binary, or a skip notice (failure under `CALM_REQUIRE_PEERS=1`).
pub fn require_alertmanager() -> Option<std::path::PathBuf> {
    for c in ["/usr/bin/prometheus-alertmanager", "/usr/bin/alertmanager"] {
        if Path::new(c).is_file() {
            return Some(c.into());
        }
    }
    crate::require_peer("prometheus-alertmanager")
}

impl Alertmanager {
    /// Writes `config_yaml` and starts `bin` on a free port; waits for `/-/ready`.
    pub fn start(bin: &Path, config_yaml: &str) -> Alertmanager {
        let dir = tempfile::Builder::new()
            .prefix("calm-alertmanager-")
            .tempdir()
            .expect("temp dir");
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(&config, config_yaml).expect("write alertmanager.yml");
        let port = crate::ports::free_port();
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!("--web.external-url=http://127.0.0.1:{port}"))
            // Empty: no gossip cluster (it would bind 0.0.0.0:9094).
            .arg("--cluster.listen-address=")
            .arg("--log.level=debug");
        let mut process =
            ChildProcess::spawn("alertmanager", cmd, &dir.path().join("alertmanager.log"))
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("client");
        let url = format!("http://127.0.0.1:{port}/-/ready");
        let start = Instant::now();
        loop {
            if let Some(st) = process.exited() {
                panic!(
                    "alertmanager exited during start-up ({}); log:\n{}",
                    ChildProcess::describe_status(&st),
                    process.log_tail(30)
                );
            }
            if client
                .get(&url)
                .send()
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "alertmanager not ready; log:\n{}",
                process.log_tail(30)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Alertmanager {
            process,
            port,
            _dir: dir,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its `GET /api/v2/alerts`.
    pub fn alerts(&self) -> serde_json::Value {
        reqwest::blocking::Client::new()
            .get(format!("{}/api/v2/alerts", self.url()))
            .timeout(Duration::from_secs(5))
            .send()
            .and_then(|r| r.json())
            .unwrap_or(serde_json::Value::Null)
    }

    /// The last lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }
}
