//! Secrets and files: the collector's logs (start-up, refused requests, failing
//! webhooks and Alertmanagers) carry no DSN key, token or notifier URL; data files are
//! the owner's only (0600, directories 0700), also after an older version left them
//! readable; a damaged event store refuses the start, naming the store and what to do,
//! instead of starting with part of it.

use calm_tests::collector::{collector_bin, Collector};
use calm_tests::program::Program;
use calm_tests::wait_for;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

const KEY1: &str = "0123456789abcdef0123456789abcdef";
const KEY2: &str = "fedcba9876543210fedcba9876543210";
const AGENT: &str = "agent-token-s3cr3t";
const READ: &str = "read-token-s3cr3t";
const ADMIN: &str = "admin-token-s3cr3t";

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

#[test]
fn logs_carry_no_key_token_or_notifier_url() {
    let rules = tempfile::tempdir().expect("tempdir");
    let file = rules.path().join("always.yml");
    std::fs::write(
        &file,
        "groups:\n  - name: g\n    rules:\n      - alert: Always\n        expr: vector(1)\n",
    )
    .expect("rules");
    // Nothing listens on these ports: every delivery fails and is logged.
    let dead = calm_tests::ports::free_port();
    let hook = format!("http://127.0.0.1:{dead}/services/T0HOOKPATH/B0/hooksecret?token=qs-secret");
    let am = format!("http://amuser:ampass@127.0.0.1:{dead}/am-secret-path");
    let config = format!(
        "rule_files = [\"{}\"]\nevaluation_interval = \"1s\"\n\
         [auth]\nagent_tokens = [\"{AGENT}\"]\nread_tokens = [\"{READ}\"]\nadmin_tokens = [\"{ADMIN}\"]\n\
         [[alerting.webhooks]]\nurl = \"{hook}\"\ngroup_wait = \"0s\"\ngroup_interval = \"1s\"\ntimeout = \"1s\"\n\
         [[alerting.alertmanagers]]\nurl = \"{am}\"\n\
         [[projects]]\nid = 1\nname = \"web\"\npublic_key = \"{KEY1}\"\n\
         [[projects]]\nid = 2\nname = \"jobs\"\npublic_key = \"{KEY2}\"\n",
        file.display()
    );
    let c = Collector::start_with_config(&config, &["--max-body-bytes", "1048576"]);
    // Refused calls with secrets in them: a wrong token, a key of the wrong project.
    for tok in [READ, "guess-token", AGENT] {
        let _ = client()
            .put(format!("{}/api/calm/v1/issues/1", c.url()))
            .bearer_auth(tok)
            .header("Content-Type", "application/json")
            .body("{}")
            .send();
    }
    let _ = client()
        .post(format!("{}/api/1/store/?sentry_key={KEY2}", c.url()))
        .header("Content-Type", "application/json")
        .body("{}")
        .send();
    let logged = wait_for(Duration::from_secs(60), Duration::from_millis(200), || {
        let log = c.log();
        (log.contains("webhook notification failed")
            && log.contains("cannot deliver alerts to Alertmanager"))
        .then_some(log)
    });
    let log = logged.unwrap_or_else(|| {
        panic!(
            "no webhook and Alertmanager failures logged within 60 s:\n{}",
            c.log_tail(40)
        )
    });
    for secret in [
        KEY1,
        KEY2,
        AGENT,
        READ,
        ADMIN,
        "guess-token",
        "T0HOOKPATH",
        "hooksecret",
        "qs-secret",
        "ampass",
        "am-secret-path",
    ] {
        assert!(
            !log.contains(secret),
            "{secret:?} is in the log:\n{}",
            log.lines()
                .filter(|l| l.contains(secret))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    for l in log.lines().filter(|l| {
        l.contains("Sentry project")
            || l.contains("notification failed")
            || l.contains("Alertmanager")
    }) {
        println!("{l}");
    }
    // What the log says instead: enough to tell which key and which receiver.
    assert!(log.contains("0123…(fp "), "a masked key is logged:\n{log}");
    assert!(
        log.contains(&format!("http://127.0.0.1:{dead}/…(fp ")),
        "a masked URL is logged:\n{log}"
    );
    // The full DSN is there for an admin who asks.
    let v: serde_json::Value = client()
        .get(format!("{}/api/calm/v1/projects", c.url()))
        .bearer_auth(ADMIN)
        .send()
        .and_then(|r| r.json())
        .expect("projects");
    assert!(
        v["data"][0]["dsn"]
            .as_str()
            .unwrap_or_default()
            .contains(KEY1),
        "{v}"
    );
}

/// Every file under `dir` is 0600-or-less for the group and others (nothing for them),
/// every directory too; returns how many entries were checked.
fn assert_private(dir: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mode = std::fs::metadata(&d).expect("stat").permissions().mode();
        assert_eq!(
            mode & 0o077,
            0,
            "{} is mode {:o}",
            d.display(),
            mode & 0o777
        );
        n += 1;
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            let meta = std::fs::symlink_metadata(&p).expect("stat");
            if meta.is_dir() {
                stack.push(p);
            } else {
                let mode = meta.permissions().mode();
                assert_eq!(
                    mode & 0o077,
                    0,
                    "{} is mode {:o}",
                    p.display(),
                    mode & 0o777
                );
                n += 1;
            }
        }
    }
    n
}

#[test]
fn data_files_are_the_owners_only() {
    // Default project (projects.json with its key), an event, a sample, a heartbeat.
    let mut c = Collector::start();
    let list: serde_json::Value = client()
        .get(format!("{}/api/calm/v1/projects", c.url()))
        .send()
        .and_then(|r| r.json())
        .expect("projects");
    let key = list["data"][0]["public_key"]
        .as_str()
        .expect("key")
        .to_string();
    let r = client()
        .post(format!("{}/api/1/store/?sentry_key={key}", c.url()))
        .header("Content-Type", "application/json")
        .body(r#"{"message":"private"}"#)
        .send()
        .expect("event");
    assert_eq!(r.status().as_u16(), 200);
    let body = calm_wire::remote_write::encode(&calm_tests::write::request(vec![
        calm_tests::write::series("private_test", &[], &[(calm_tests::now_ms(), 1.0)]),
    ]));
    let w = calm_tests::write::RemoteWriter::new(&c.write_url())
        .send_raw(body)
        .expect("write");
    assert_eq!(w.status, 204, "{}", w.body);
    let r = client()
        .post(format!("{}/api/calm/v1/agents/heartbeat", c.url()))
        .header("Content-Type", "application/json")
        .body(r#"{"id":"private-agent"}"#)
        .send()
        .expect("heartbeat");
    assert_eq!(r.status().as_u16(), 204);
    let data = c.data_dir();
    let saved = wait_for(Duration::from_secs(30), Duration::from_millis(200), || {
        data.join("agents.json").exists().then_some(())
    });
    assert!(saved.is_some(), "agents.json was never written");
    c.terminate(Duration::from_secs(30));
    assert!(data.join("projects.json").exists());
    let n = assert_private(&data);
    println!("{n} files and directories under the data dir, all private");

    // What an older version left readable is tightened at the next start.
    for (p, mode) in [(data.clone(), 0o755), (data.join("projects.json"), 0o644)] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    c.start_again();
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("projects.json")), 0o600);
}

/// Starts a collector on `data` (a copy): `Ok` once ready, `Err(whole log)` if it exits.
fn start_on(p: &mut Program, port: u16) -> Result<(), String> {
    let mut cmd = p.command();
    cmd.env("RUST_BACKTRACE", "0")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(p.data_dir());
    match p.spawn_and_wait(cmd, &format!("http://127.0.0.1:{port}")) {
        Ok(()) => Ok(()),
        Err(e) => Err(format!("{e}\n{}", p.log())),
    }
}

fn copy_dir(from: &Path, to: &Path) {
    let ok = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(ok.success());
}

#[test]
fn a_damaged_event_store_refuses_to_start_and_says_what_to_do() {
    const ISSUES: usize = 150;
    let mut c = Collector::start();
    let list: serde_json::Value = client()
        .get(format!("{}/api/calm/v1/projects", c.url()))
        .send()
        .and_then(|r| r.json())
        .expect("projects");
    let key = list["data"][0]["public_key"]
        .as_str()
        .expect("key")
        .to_string();
    // One event per new issue: one flushed write batch each.
    for i in 0..ISSUES {
        let r = client()
            .post(format!("{}/api/1/store/?sentry_key={key}", c.url()))
            .header("Content-Type", "application/json")
            .body(format!(
                r#"{{"exception":{{"values":[{{"type":"Damage{i}Error","value":"v"}}]}}}}"#
            ))
            .send()
            .expect("event");
        assert_eq!(r.status().as_u16(), 200);
    }
    c.terminate(Duration::from_secs(30));
    // A clean stop records the last flushed write batch next to the store.
    let mark = std::fs::read_to_string(c.data_dir().join("events.mark")).unwrap_or_default();
    let batches: usize = mark.trim().parse().unwrap_or(0);
    assert!(
        (1..=ISSUES).contains(&batches),
        "events.mark names the flushed batches: {mark:?}"
    );
    println!("{batches} write batches recorded in events.mark");
    let db = c.data_dir().join("events").join("db");
    let len = std::fs::metadata(&db).expect("events/db").len();
    // Garbage at the start, middle and end of sled's log; each on a fresh copy. Each
    // start must either refuse, naming the store, or serve every issue: never a part.
    let mut refused = 0;
    for at in [0, len / 2, len.saturating_sub(8192)] {
        let mut p = Program::new("calm-collector", collector_bin());
        std::fs::remove_dir_all(p.data_dir()).ok();
        copy_dir(&c.data_dir(), &p.data_dir());
        let copy = p.data_dir().join("events").join("db");
        let mut bytes = std::fs::read(&copy).expect("read db");
        let end = (at as usize + 4096).min(bytes.len());
        bytes[at as usize..end].fill(0xA5);
        std::fs::write(&copy, bytes).expect("write db");
        let port = calm_tests::ports::free_port();
        match start_on(&mut p, port) {
            Err(log) => {
                refused += 1;
                assert!(log.contains("exited during start-up"), "{log}");
                for words in ["is damaged", "events", "restore", "move it aside"] {
                    assert!(log.contains(words), "the refusal says {words:?}:\n{log}");
                }
                println!("garbage at byte {at}: refused");
            }
            Ok(()) => {
                let v: serde_json::Value = client()
                    .get(format!(
                        "http://127.0.0.1:{port}/api/calm/v1/issues?limit=1000"
                    ))
                    .send()
                    .and_then(|r| r.json())
                    .expect("issues");
                let n = v["data"].as_array().map(Vec::len).unwrap_or(0);
                assert_eq!(
                    n, ISSUES,
                    "started with garbage at byte {at} but serves {n} of {ISSUES} issues"
                );
                println!("garbage at byte {at}: unused space, all {n} issues served");
                p.terminate(Duration::from_secs(30));
            }
        }
    }
    assert!(
        refused > 0,
        "no damage was detected at any of the three places"
    );
}
