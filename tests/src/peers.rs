//! Real peers, started on loopback with their own temp dirs: Prometheus (scraper,
//! remote-write sender, reference query engine) and node_exporter (reference host
//! metrics). Tests find them with [`require_peer`]; a missing peer skips the test with a
//! visible notice, or fails it under `CALM_REQUIRE_PEERS=1`.

use crate::api::PromApi;
use crate::process::ChildProcess;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Where each peer's binary may be: Debian's path first, then names on `PATH`.
fn candidates(peer: &str) -> Vec<String> {
    match peer {
        "prometheus" => vec!["/usr/bin/prometheus".into(), "prometheus".into()],
        "prometheus-node-exporter" | "node_exporter" | "node-exporter" => vec![
            "/usr/bin/prometheus-node-exporter".into(),
            "prometheus-node-exporter".into(),
            "node_exporter".into(),
        ],
        "victoria-metrics" => vec![
            "/usr/bin/victoria-metrics".into(),
            "victoria-metrics".into(),
            "victoria-metrics-prod".into(),
        ],
        other => vec![format!("/usr/bin/{other}"), other.to_string()],
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return is_executable(&p).then_some(p);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| is_executable(p))
    })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The path of a peer's binary (`prometheus`, `prometheus-node-exporter`,
/// `victoria-metrics`, or any program name), or `None` after printing
/// "SKIP: `<peer>` not installed (run scripts/install-peers)". Panics instead when
/// `CALM_REQUIRE_PEERS=1`.
pub fn require_peer(name: &str) -> Option<PathBuf> {
    if let Some(p) = candidates(name).iter().find_map(|c| find_on_path(c)) {
        return Some(p);
    }
    crate::skip_or_fail(
        &format!("{name} not installed"),
        "run scripts/install-peers",
    )
}

/// The Python interpreter (`CALM_PYTHON`, default `python3`) if it can import every one
/// of `modules`; otherwise a skip notice (or a panic under `CALM_REQUIRE_PEERS=1`).
pub fn require_python_modules(modules: &[&str]) -> Option<PathBuf> {
    let python = std::env::var("CALM_PYTHON").unwrap_or_else(|_| "python3".into());
    let Some(path) = find_on_path(&python) else {
        return crate::skip_or_fail(
            &format!("{python} not installed"),
            "run scripts/install-peers",
        );
    };
    let imports = format!("import {}", modules.join(", "));
    let out = Command::new(&path)
        .arg("-c")
        .arg(&imports)
        .output()
        .expect("run python");
    if out.status.success() {
        Some(path)
    } else {
        crate::skip_or_fail(
            &format!(
                "python modules missing ({imports}: {})",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            ),
            "run scripts/install-peers",
        )
    }
}

/// Polls `url` until it answers 200, failing fast if the process exits.
fn wait_http_ok(proc: &mut ChildProcess, name: &str, url: &str, timeout: Duration) {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("http client");
    let start = Instant::now();
    loop {
        if let Some(status) = proc.exited() {
            panic!(
                "{name} exited during start-up ({}); log:\n{}",
                ChildProcess::describe_status(&status),
                proc.log_tail(30)
            );
        }
        let last = match client.get(url).send() {
            Ok(r) if r.status().as_u16() == 200 => return,
            Ok(r) => format!("HTTP {}", r.status()),
            Err(e) => e.to_string(),
        };
        if start.elapsed() > timeout {
            panic!(
                "{name} not ready after {timeout:?} (GET {url}: {last}); log:\n{}",
                proc.log_tail(30)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A Prometheus server on a loopback port with its own config and TSDB dir.
/// A Prometheus config that scrapes one node_exporter (`target`) every second, job
/// `node`, and remote-writes to `write_url` with short deadlines and backoffs, so
/// samples reach a collector within about a second.
pub fn node_remote_write_config(target: &str, write_url: &str) -> String {
    format!(
        r#"
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: node
    static_configs:
      - targets: ["{target}"]
remote_write:
  - url: {write_url}
    remote_timeout: 10s
    queue_config:
      batch_send_deadline: 1s
      min_backoff: 100ms
      max_backoff: 1s
"#
    )
}

pub struct Prometheus {
    // Dropped (killed) before the directory is removed.
    process: ChildProcess,
    port: u16,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Replaced by Prometheus' own listen port in the config given to [`Prometheus::start`].
    pub const PORT_PLACEHOLDER: &'static str = "${PROMETHEUS_PORT}";

    /// Writes `config_yaml` as prometheus.yml and starts `bin` with it, listening on a
    /// free loopback port; with `remote_write_receiver`, it accepts remote writes at
    /// `/api/v1/write`. Waits until `/-/ready` says 200. [`Prometheus::PORT_PLACEHOLDER`]
    /// in the config stands for its own port (for scraping itself).
    pub fn start(bin: &Path, config_yaml: &str, remote_write_receiver: bool) -> Prometheus {
        Prometheus::start_with(bin, config_yaml, remote_write_receiver, &[])
    }

    /// [`Prometheus::start`] with more flags (e.g. `--enable-feature=native-histograms`).
    pub fn start_with(
        bin: &Path,
        config_yaml: &str,
        remote_write_receiver: bool,
        extra_args: &[&str],
    ) -> Prometheus {
        let dir = tempfile::Builder::new()
            .prefix("calm-prometheus-")
            .tempdir()
            .expect("temp dir");
        let config = dir.path().join("prometheus.yml");
        let port = crate::ports::free_port();
        let config_yaml = config_yaml.replace(Prometheus::PORT_PLACEHOLDER, &port.to_string());
        std::fs::write(&config, config_yaml).expect("write prometheus.yml");
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=info");
        if remote_write_receiver {
            cmd.arg("--web.enable-remote-write-receiver");
        }
        cmd.args(extra_args);
        let mut process =
            ChildProcess::spawn("prometheus", cmd, &dir.path().join("prometheus.log"))
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let url = format!("http://127.0.0.1:{port}/-/ready");
        wait_http_ok(&mut process, "prometheus", &url, Duration::from_secs(60));
        Prometheus { process, port, dir }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The listen port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its Prometheus HTTP API.
    pub fn api(&self) -> PromApi {
        PromApi::new(&self.url())
    }

    /// Its temp dir (config, TSDB, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }
}

/// A node_exporter on a loopback port.
pub struct NodeExporter {
    process: ChildProcess,
    port: u16,
    _dir: tempfile::TempDir,
}

impl NodeExporter {
    /// Starts `bin` on a free loopback port (plus `extra_args`), waits until `/metrics`
    /// answers 200.
    pub fn start(bin: &Path, extra_args: &[&str]) -> NodeExporter {
        let dir = tempfile::Builder::new()
            .prefix("calm-node-exporter-")
            .tempdir()
            .expect("temp dir");
        let port = crate::ports::free_port();
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(extra_args);
        let mut process =
            ChildProcess::spawn("node_exporter", cmd, &dir.path().join("node_exporter.log"))
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let url = format!("http://127.0.0.1:{port}/metrics");
        wait_http_ok(&mut process, "node_exporter", &url, Duration::from_secs(30));
        NodeExporter {
            process,
            port,
            _dir: dir,
        }
    }

    /// `127.0.0.1:PORT`, as a scrape target.
    pub fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The last lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }
}
