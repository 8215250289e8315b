//! `scripts/cluster`, the one command that starts a local cluster (3 NATS, PostgreSQL,
//! 3 collectors, HAProxy from `deploy/haproxy/`, an agent), run as a newcomer would,
//! with the debug binaries already built (`CALM_BIN_DIR`) on a port range of its own:
//! it prints the URL; a remote-write through HAProxy is read back through HAProxy, the
//! agent's host metrics arrive through it, the cluster view names 3 collectors; then a
//! SIGTERM (what Ctrl-C does) stops every process it started and removes its temp dir.

use calm_tests::api::PromApi;
use calm_tests::write::{request, series, RemoteWriter};
use calm_tests::{now_ms, wait_for};
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The script's process (its own process group), stopped on drop.
struct Script {
    child: Child,
    log: std::path::PathBuf,
}

impl Script {
    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then up to `secs` for it to exit. True if it did.
    fn stop(&mut self, secs: u64) -> bool {
        // SAFETY: kill(2) on the pid of our own unreaped child.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        wait_for(
            Duration::from_secs(secs),
            Duration::from_millis(200),
            || self.child.try_wait().ok().flatten(),
        )
        .is_some()
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() && !self.stop(90) {
            // SAFETY: kill(2) on our child's process group (it was made its leader).
            unsafe {
                libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL);
            }
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- scripts/cluster output ----\n{}", self.output());
        }
    }
}

#[test]
fn scripts_cluster_starts_a_local_cluster_behind_haproxy_and_stops_it() {
    if calm_tests::nats::require_nats_server().is_none()
        || calm_tests::require_peer("haproxy").is_none()
    {
        return;
    }
    if calm_tests::postgres::bin_dir().is_none() {
        calm_tests::skip_or_fail::<()>("PostgreSQL not installed", "run scripts/install-peers");
        return;
    }
    let bin_dir = calm_tests::collector::collector_bin()
        .parent()
        .expect("bin dir")
        .to_path_buf();
    assert!(
        bin_dir.join("calm-agent").exists(),
        "build the agent too: cargo build -p calm-collector -p calm-agent"
    );
    // A port range of its own (HAProxy at base, the rest up to base+50), free a moment
    // ago and below the ephemeral range, where an outgoing connection's local end cannot
    // take a port before NATS listens on it (a CI run once had nats-1 never answer on a
    // range picked blindly inside it).
    let base = calm_tests::ports::free_range(50);
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = tmp.path().join("cluster.out");
    let out = std::fs::File::create(&log).expect("log file");
    let mut cmd = Command::new("bash");
    cmd.arg(calm_tests::workspace_root().join("scripts/cluster"))
        .env("PROFILE", "debug")
        .env("CALM_BIN_DIR", &bin_dir)
        .env("CALM_CLUSTER_BASE", base.to_string())
        .env(
            "CALM_NATS_SERVER",
            calm_tests::nats::require_nats_server().expect("nats-server"),
        )
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup"))
        .stderr(out)
        .process_group(0);
    let mut script = Script {
        child: cmd.spawn().expect("start scripts/cluster"),
        log,
    };
    let url = format!("http://127.0.0.1:{base}");
    let started = wait_for(Duration::from_secs(240), Duration::from_millis(500), || {
        let text = script.output();
        if script.child.try_wait().ok().flatten().is_some() {
            panic!("scripts/cluster exited early:\n{text}");
        }
        text.contains("A Calm cluster is running").then_some(text)
    })
    .expect("scripts/cluster printed that the cluster runs within 240 s");
    assert!(
        started.contains(&format!("URL (HAProxy):        {url}/")),
        "{started}"
    );
    let dir = started
        .lines()
        .find_map(|l| l.trim().strip_prefix("logs and data:"))
        .map(|d| std::path::PathBuf::from(d.trim()))
        .expect("the script names its temp dir");
    assert!(dir.is_dir(), "{}", dir.display());

    // A write through HAProxy is read back through HAProxy.
    let t = now_ms() - 5_000;
    let w = RemoteWriter::with_timeout(&format!("{url}/api/v1/write"), Duration::from_secs(20));
    let a = w
        .send(&request(vec![series(
            "script_probe",
            &[("via", "haproxy")],
            &[(t, 42.0)],
        )]))
        .expect("write through HAProxy");
    assert!(a.ok(), "write through HAProxy: {} {}", a.status, a.body);
    let api = PromApi::new(&url);
    let mut last = String::new();
    let read = wait_for(Duration::from_secs(60), Duration::from_millis(500), || {
        let v = api.query_vector("script_probe", Some(t));
        last = format!("{v:?}");
        v.ok()
            .filter(|v| v.len() == 1 && v[0].value == 42.0)
            .map(|_| ())
    });
    assert!(read.is_some(), "script_probe through HAProxy: {last}");
    // The agent's host metrics arrive through HAProxy too.
    let host = wait_for(Duration::from_secs(90), Duration::from_millis(1000), || {
        api.query_vector("node_load1", None)
            .ok()
            .filter(|v| !v.is_empty())
    });
    assert!(
        host.is_some(),
        "no node_load1 from the agent through HAProxy"
    );
    // Each collector's view follows the membership on its own renew: the three may
    // take a round to show in the view of whichever collector HAProxy picks.
    let mut last = String::new();
    let view = wait_for(Duration::from_secs(30), Duration::from_millis(500), || {
        let (code, body) = api.get("/api/calm/v1/cluster").ok()?;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        last = format!("{code} {body:.500}");
        (code == 200 && v["data"]["nodes"].as_array().map(Vec::len) == Some(3)).then_some(())
    });
    assert!(
        view.is_some(),
        "the cluster view through HAProxy names 3 collectors: {last}"
    );

    // SIGTERM (Ctrl-C): everything stops, the temp dir goes.
    assert!(
        script.stop(120),
        "scripts/cluster did not stop within 120 s"
    );
    let gone = wait_for(Duration::from_secs(10), Duration::from_millis(200), || {
        std::net::TcpStream::connect(("127.0.0.1", base as u16))
            .is_err()
            .then_some(())
    });
    assert!(gone.is_some(), "HAProxy still listens after the stop");
    assert!(!dir.exists(), "{} was not removed", dir.display());
}
