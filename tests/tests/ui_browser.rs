//! The collector's built-in UI in a real browser: headless Chromium (Debian `chromium`,
//! driven by `playwright-core` in `tests/ui/run.mjs`) against a real collector fed by a
//! real `calm-agent` (host metrics, heartbeats), the real Python `sentry-sdk`
//! (`tests/ui/sentry_ui.py`), remote-write, and a rule file with firing, pending and
//! inactive alerts (`tests/rules/ui.yml`). Hostile text goes in through every channel:
//! a label value, Sentry messages / exception values / tags / breadcrumbs / user names,
//! an agent's host name and last error, alert annotations.
//!
//! `run.mjs` opens every page and asserts what a user would check (see its checks),
//! runs axe-core, writes screenshots (light + dark, desktop + phone) to
//! `target/ui-browser/` (or `CALM_UI_OUT`), and prints Navigation Timing figures.
//!
//! Also here: the committed bundle (`collector/ui/dist`) equals a fresh esbuild build of
//! `collector/ui/src`.
//!
//! Skips with a notice (fails under `CALM_REQUIRE_PEERS=1`) when node/npm, chromium,
//! the npm packages (`scripts/install-peers`) or sentry-sdk are missing.

use calm_tests::process::run_bounded;
use calm_tests::sentry_sdk::run_sdk_script;
use calm_tests::write::{request, series, RemoteWriter};
use calm_tests::{
    now_ms, require_peer, require_python_modules, skip_or_fail, wait_for, workspace_root, Agent,
    Collector,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const KEY: &str = "5e1f0c2a9b8d7e6f5a4b3c2d1e0f9a8b";
const HOSTILE_LABEL: &str = r#"<img src=x onerror="window.__xss=1;alert(7)">"#;
const HOSTILE_HOST: &str = r#"<img src=x onerror="window.__xss=1;alert(5)">"#;
const HOSTILE_ERROR: &str = "<script>alert(6)</script> upstream said <b>no</b>";

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

fn get_json(c: &Collector, path: &str) -> Value {
    client()
        .get(format!("{}{path}", c.url()))
        .send()
        .and_then(|r| r.json())
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// Every file of `a` equals the file of the same name in `b` (and no file is missing).
fn same_files(a: &Path, b: &Path) -> Result<(), String> {
    let names = |d: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let (na, nb) = (names(a), names(b));
    if na != nb {
        return Err(format!("files differ: committed {na:?}, built {nb:?}"));
    }
    for n in na {
        if std::fs::read(a.join(&n)).ok() != std::fs::read(b.join(&n)).ok() {
            return Err(format!("{n} differs from a fresh build"));
        }
    }
    Ok(())
}

/// Every package of `dir`'s package-lock.json is installed at its locked version.
fn locked_packages_installed(dir: &Path) -> bool {
    let read =
        |p: PathBuf| -> Option<Value> { serde_json::from_slice(&std::fs::read(p).ok()?).ok() };
    let Some(lock) = read(dir.join("package-lock.json")) else {
        return false;
    };
    let Some(pkgs) = lock["packages"].as_object() else {
        return false;
    };
    pkgs.iter()
        .filter(|(k, v)| k.starts_with("node_modules/") && v["optional"] != true)
        .all(|(k, v)| {
            read(dir.join(k).join("package.json")).is_some_and(|p| p["version"] == v["version"])
        })
}

#[test]
fn committed_ui_bundle_equals_a_fresh_build() {
    let Some(npm) = require_peer("npm") else {
        return;
    };
    let ui = workspace_root().join("collector/ui");
    // scripts/install-peers installs the locked packages; install them here only when
    // they are missing or not the locked versions.
    if !locked_packages_installed(&ui) {
        let out = run_bounded(
            {
                let mut c = Command::new(&npm);
                c.args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                    .current_dir(&ui);
                c
            },
            Duration::from_secs(300),
        );
        assert!(
            out.status.success(),
            "npm ci in collector/ui failed:\n{}",
            out.stderr
        );
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = run_bounded(
        {
            let mut c = Command::new("node");
            c.arg("build.mjs").arg(tmp.path()).current_dir(&ui);
            c
        },
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "node build.mjs failed:\n{}",
        out.stderr
    );
    if let Err(e) = same_files(&ui.join("dist"), tmp.path()) {
        panic!("collector/ui/dist is not the build of collector/ui/src: {e}; run scripts/build-ui and commit dist/");
    }
}

/// `node`, chromium and the test's npm packages, or a skip notice.
fn require_browser() -> Option<(PathBuf, PathBuf)> {
    let node = require_peer("node")?;
    let chromium = std::env::var_os("CALM_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !chromium.is_file() {
        return skip_or_fail(
            &format!("chromium not found at {}", chromium.display()),
            "run scripts/install-peers (Debian package chromium) or set CALM_CHROMIUM",
        );
    }
    let dir = workspace_root().join("tests/ui");
    for p in ["playwright-core", "axe-core"] {
        if !dir
            .join("node_modules")
            .join(p)
            .join("package.json")
            .is_file()
        {
            return skip_or_fail(
                &format!("{p} not installed in tests/ui"),
                "run scripts/install-peers (npm ci in tests/ui)",
            );
        }
    }
    Some((node, dir))
}

#[test]
fn browser_shows_what_was_sent() {
    let Some((node, ui_dir)) = require_browser() else {
        return;
    };
    let Some(python) = require_python_modules(&["sentry_sdk"]) else {
        return;
    };
    let rules = workspace_root().join("tests/rules/ui.yml");
    let mut c = Collector::start_with_config(
        &format!(
            "evaluation_interval = \"2s\"\nrule_files = [{:?}]\n\
             [[projects]]\nid = 1\nname = \"ui\"\npublic_key = \"{KEY}\"\n",
            rules.display().to_string()
        ),
        &[],
    );
    // A silent agent: its last heartbeat 10 minutes ago, kept in agents.json.
    c.terminate(Duration::from_secs(30));
    let quiet = json!([{ "id": "quiet-host 10.0.0.9:9401", "host": "quiet-host", "version": "0.0.9",
        "last_error": "connection refused", "last_seen_unix": now_ms() as f64 / 1000.0 - 600.0 }]);
    std::fs::write(c.data_dir().join("agents.json"), quiet.to_string()).expect("agents.json");
    c.start_again();

    let _agent = Agent::builder()
        .collector(&c.url())
        .config("[host]\ninterval = \"2s\"\n[heartbeat]\ninterval = \"2s\"\n")
        .start();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());

    // Errors from the real sentry-sdk.
    let mut cmd = Command::new(&python);
    cmd.arg(ui_dir.join("sentry_ui.py"))
        .arg(format!("http://{KEY}@127.0.0.1:{}/1", c.port()));
    let sent = run_sdk_script(cmd, Duration::from_secs(120));
    assert_eq!(sent["flushed"], true, "{sent}");

    // An agent with a hostile host name and last error.
    let r = client()
        .post(format!("{}/api/calm/v1/agents/heartbeat", c.url()))
        .header("Content-Type", "application/json")
        .body(
            json!({"id": "hostile 127.0.0.2:9401", "host": HOSTILE_HOST, "version": "0.1.0",
                   "last_error": HOSTILE_ERROR})
            .to_string(),
        )
        .send()
        .expect("heartbeat");
    assert_eq!(r.status().as_u16(), 204);

    // A series with a hostile label value (the HostileText alert fires on it).
    let now = now_ms();
    let samples: Vec<(i64, f64)> = (0..12)
        .map(|i| (now - 55_000 + i * 5_000, i as f64 + 1.0))
        .collect();
    let ans = RemoteWriter::new(&c.write_url())
        .send(&request(vec![series(
            "calm_ui_hostile",
            &[("payload", HOSTILE_LABEL)],
            &samples,
        )]))
        .expect("remote write");
    assert!(ans.ok(), "{ans:?}");

    // Wait for the agent's data (enough points for rates), its heartbeat and the alerts.
    let api = c.api();
    let ready = wait_for(Duration::from_secs(60), Duration::from_millis(500), || {
        let pts = api
            .query_vector("count_over_time(node_load1[1m])", None)
            .ok()?
            .first()?
            .value;
        let agents = get_json(&c, "/api/calm/v1/agents");
        let beat = agents["agents"]
            .as_array()?
            .iter()
            .any(|a| a["host"] == host.as_str());
        let alerts = get_json(&c, "/api/v1/alerts");
        let firing: Vec<&str> = alerts["data"]["alerts"]
            .as_array()?
            .iter()
            .filter(|a| a["state"] == "firing")
            .filter_map(|a| a["labels"]["alertname"].as_str())
            .collect();
        (pts >= 10.0
            && beat
            && firing.contains(&"HostReporting")
            && firing.contains(&"HostileText"))
        .then_some(())
    });
    assert!(
        ready.is_some(),
        "no agent data, heartbeat or firing alerts within 60 s; log:\n{}",
        c.log_tail(30)
    );

    let out_dir = std::env::var_os("CALM_UI_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/ui-browser"));
    let _ = std::fs::remove_dir_all(&out_dir);
    std::fs::create_dir_all(&out_dir).expect("out dir");
    let expect = json!({
        "hosts": [host],
        "hostileHost": HOSTILE_HOST,
        "hostileError": HOSTILE_ERROR,
        "quietHost": "quiet-host",
        "agentVersion": env!("CARGO_PKG_VERSION"),
        "issues": sent["issues"],
        "hostile": sent["hostile"],
        "hostileLabel": HOSTILE_LABEL,
        "firing": ["HostReporting", "HostileText"],
        "pending": ["HostLoadHeld"],
        "inactive": ["NeverFires"],
    });
    std::fs::write(out_dir.join("expect.json"), expect.to_string()).expect("expect.json");
    let mut cmd = Command::new(node);
    cmd.arg(ui_dir.join("run.mjs"))
        .arg(c.url())
        .arg(&out_dir)
        .current_dir(&ui_dir);
    let run = run_bounded(cmd, Duration::from_secs(300));
    println!("{}", run.stdout);
    eprintln!("{}", run.stderr);
    assert!(
        run.status.success(),
        "the browser run failed (screenshots in {}):\n{}\n{}",
        out_dir.display(),
        run.stdout
            .lines()
            .filter(|l| l.starts_with("FAIL") || l.starts_with(" - "))
            .collect::<Vec<_>>()
            .join("\n"),
        run.stderr
    );
}

#[test]
fn login_cookie_with_read_tokens() {
    let c = Collector::start_with_config(
        "[auth]\nagent_tokens = [\"w-secret\"]\nread_tokens = [\"r secret;1\"]\nadmin_tokens = [\"a-secret\"]\n",
        &[],
    );
    let http = client();
    let url = |p: &str| format!("{}{p}", c.url());
    // The shell holds no data: it loads without a token; the API does not.
    for p in ["/", "/issues", "/hosts/web-1", "/ui/app.js"] {
        assert_eq!(
            http.get(url(p)).send().expect("GET").status().as_u16(),
            200,
            "{p}"
        );
    }
    assert_eq!(
        http.get(url("/api/calm/v1/issues"))
            .send()
            .expect("GET")
            .status()
            .as_u16(),
        401
    );
    let login = |token: &str, origin: Option<&str>| {
        let mut r = http
            .post(url("/api/calm/v1/session"))
            .header("Content-Type", "application/json")
            .body(json!({ "token": token }).to_string());
        if let Some(o) = origin {
            r = r.header("Origin", o);
        }
        r.send().expect("POST session")
    };
    let own = c.url();
    assert_eq!(login("r-wrong", Some(&own)).status().as_u16(), 401);
    assert_eq!(
        login("w-secret", Some(&own)).status().as_u16(),
        401,
        "an agent token is no login"
    );
    assert_eq!(
        login("r secret;1", Some("http://evil.example"))
            .status()
            .as_u16(),
        403
    );
    let cookie_of = |r: reqwest::blocking::Response| {
        assert_eq!(r.status().as_u16(), 204);
        let set = r
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/"),
            "{set}"
        );
        set.split(';').next().unwrap_or("").to_string()
    };
    let read_cookie = cookie_of(login("r secret;1", Some(&own)));
    let admin_cookie = cookie_of(login("a-secret", Some(&own)));
    // The cookie reads; changes need an admin token's cookie and the collector's Origin.
    let r = http
        .get(url("/api/calm/v1/issues"))
        .header("Cookie", &read_cookie)
        .send()
        .expect("GET");
    assert_eq!(r.status().as_u16(), 200);
    let put = |cookie: &str, origin: &str| {
        http.put(url("/api/calm/v1/issues/1"))
            .header("Cookie", cookie)
            .header("Origin", origin)
            .header("Content-Type", "application/json")
            .body(r#"{"status":"resolved"}"#)
            .send()
            .expect("PUT")
            .status()
            .as_u16()
    };
    assert_eq!(put(&read_cookie, &own), 403, "a read token does not change");
    assert_eq!(put(&admin_cookie, "http://evil.example"), 403, "cross-site");
    assert_eq!(
        put(&admin_cookie, &own),
        404,
        "admin, own origin: passes (no such issue)"
    );
    // A read cookie does not write.
    let r = http
        .post(url("/api/v1/write"))
        .header("Cookie", &read_cookie)
        .header("Origin", &own)
        .header("Content-Type", "application/x-protobuf")
        .body(Vec::new())
        .send()
        .expect("POST write");
    assert_eq!(r.status().as_u16(), 403);

    // And in the browser, when it is there.
    let Some((node, ui_dir)) = require_browser() else {
        return;
    };
    let mut cmd = Command::new(node);
    cmd.arg(ui_dir.join("login.mjs"))
        .arg(c.url())
        .arg("r secret;1")
        .current_dir(&ui_dir);
    let run = run_bounded(cmd, Duration::from_secs(120));
    println!("{}", run.stdout);
    assert!(run.status.success(), "{}\n{}", run.stdout, run.stderr);
}
