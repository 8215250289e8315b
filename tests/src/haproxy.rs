//! A real HAProxy in front of collectors on loopback, configured like
//! `deploy/haproxy/haproxy.cfg` (least connections, health checks on `/readyz`,
//! redispatch and 2 retries on connection failures) with faster checks, its config
//! written into a temp dir, on a free port; killed on drop.
//!
//! ```no_run
//! let c = calm_tests::Collector::start();
//! let Some(h) = calm_tests::haproxy::Haproxy::start(&[c.port()]) else { return };
//! let url = h.url(); // http://127.0.0.1:PORT
//! ```

use crate::process::ChildProcess;
use crate::wait_for;
use std::process::Command;
use std::time::Duration;

/// A running HAProxy.
pub struct Haproxy {
    _dir: tempfile::TempDir,
    process: ChildProcess,
    port: u16,
}

/// The HAProxy config for `backends` (collector ports on 127.0.0.1), listening on `port`.
pub fn config(port: u16, backends: &[u16]) -> String {
    let mut cfg = format!(
        "global\n    maxconn 1000\n\n\
         defaults\n    mode http\n    option redispatch\n    retries 2\n\
         \x20   timeout connect 3s\n    timeout client 60s\n    timeout server 60s\n\
         \x20   timeout http-request 10s\n    option http-server-close\n\n\
         frontend calm\n    bind 127.0.0.1:{port}\n    default_backend collectors\n\n\
         backend collectors\n    balance leastconn\n    option httpchk GET /readyz\n\
         \x20   http-check expect status 200\n\
         \x20   default-server inter 500ms fall 2 rise 2\n"
    );
    for (i, b) in backends.iter().enumerate() {
        cfg.push_str(&format!(
            "    server collector-{} 127.0.0.1:{b} check\n",
            i + 1
        ));
    }
    cfg
}

impl Haproxy {
    /// Starts HAProxy in front of `backends` and waits until it routes `/readyz` to a
    /// ready one (200). None (after the harness' notice) when haproxy is not installed.
    pub fn start(backends: &[u16]) -> Option<Haproxy> {
        let bin = crate::require_peer("haproxy")?;
        let dir = tempfile::tempdir().expect("temp dir");
        let port = crate::ports::free_port();
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(&cfg, config(port, backends)).expect("write haproxy.cfg");
        let check = Command::new(&bin)
            .arg("-c")
            .arg("-q")
            .arg("-f")
            .arg(&cfg)
            .output()
            .expect("run haproxy -c");
        assert!(
            check.status.success(),
            "haproxy refuses its config: {}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        let mut cmd = Command::new(&bin);
        cmd.arg("-db").arg("-f").arg(&cfg);
        let log = dir.path().join("haproxy.log");
        let process = ChildProcess::spawn("haproxy", cmd, &log).expect("spawn haproxy");
        let h = Haproxy {
            _dir: dir,
            process,
            port,
        };
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("http client");
        let ready = wait_for(Duration::from_secs(30), Duration::from_millis(200), || {
            client
                .get(format!("{}/readyz", h.url()))
                .send()
                .ok()
                .filter(|r| r.status().as_u16() == 200)
                .map(|_| ())
        });
        assert!(
            ready.is_some(),
            "HAProxy on {} does not route /readyz to a ready collector; log:\n{}",
            h.url(),
            h.log_tail(20)
        );
        Some(h)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The listen port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The last `lines` lines of HAProxy's output.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }
}
