//! Bad configuration stops `calm-collector` and `calm-agent` at start, with one line
//! naming the key, where it came from (the file and line, a flag or a `CALM_*`
//! variable) and the form expected — for an unknown key, a mistyped key in a section,
//! a bad duration, an out-of-range value and a wrong type, in both programs:
//!
//! ```text
//! Error: /tmp/…/calm.toml:3: retention = "30x": expected a duration like "15d", "12h", "90s"
//! ```
//! Each case runs the real binary on a file and asserts exit status 1 and that exact
//! refusal on stderr; a value that is a secret (tokens, URLs) is not echoed.

use calm_tests::agent::agent_bin;
use calm_tests::collector::collector_bin;
use calm_tests::process::run_bounded;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Runs `bin` with `config` as its file (and `args`, `env`), expecting a refusal:
/// returns stderr after asserting exit status 1 and that the process did not serve.
fn refused(bin: &Path, dir: &Path, config: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let path = dir.join("calm.toml");
    std::fs::write(&path, config).expect("write config");
    let mut cmd = Command::new(bin);
    cmd.arg("--config")
        .arg(&path)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(args);
    for var in [
        "CALM_LISTEN",
        "CALM_DATA_DIR",
        "CALM_RETENTION",
        "CALM_MAX_BODY_BYTES",
        "CALM_COLLECTORS",
        "CALM_TOKEN",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run_bounded(cmd, Duration::from_secs(60));
    assert_eq!(
        out.status.code(),
        Some(1),
        "{} must refuse this config and exit 1:\n{config}\nstderr:\n{}",
        bin.display(),
        out.stderr
    );
    assert!(
        !out.stderr.contains("ready"),
        "refused before serving:\n{}",
        out.stderr
    );
    out.stderr
}

fn assert_refusal(stderr: &str, want: &str) {
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with(&format!("Error: {want}"))),
        "the refusal is one line starting `Error: {want}`; stderr:\n{stderr}"
    );
}

const DURATION: &str = r#"expected a duration like "15d", "12h", "90s""#;
const SIZE: &str = r#"expected a size in bytes like 33554432 or "32MiB""#;

fn temp() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let p = dir.path().to_path_buf();
    (dir, p)
}

#[test]
fn the_collector_refuses_bad_config_naming_key_file_line_and_form() {
    let bin = collector_bin();
    let (_keep, dir) = temp();
    let file = dir.join("calm.toml");
    let f = file.display();
    let cases: Vec<(&str, String)> = vec![
        // An unknown key at the top level: a typo would silently keep the default.
        (
            "listen = \"127.0.0.1:0\"\n\nretenion = \"30d\"\n",
            format!("{f}:3: retenion = \"30d\": unknown field `retenion`, expected one of"),
        ),
        // A mistyped key in a section (a token's value is not echoed).
        (
            "[auth]\nagent_tokens = []\nread_token = [\"r\"]\n",
            format!("{f}:3: read_token = <hidden>: unknown field `read_token`"),
        ),
        // ... also in [limits], whose keys come from two rooms (serving and storage).
        (
            "[limits]\nmax_series = 10\nidle_timout = \"5s\"\n",
            format!("{f}:3: idle_timout = \"5s\": unknown field `idle_timout`"),
        ),
        // A bad duration.
        (
            "# retention\nretention = \"30x\"\n",
            format!("{f}:2: retention = \"30x\": {DURATION}"),
        ),
        (
            "[errors]\nbody_window = \"1 minute\"\n",
            format!("{f}:2: body_window = \"1 minute\": {DURATION}"),
        ),
        // Out of range.
        (
            "[query]\nmax_depth = 4096\n",
            format!("{f}:2: max_depth = 4096: expected a number from 8 to 512"),
        ),
        (
            "maintenance_interval = \"10ms\"\n",
            format!("{f}:1: maintenance_interval = \"10ms\": expected a duration of at least 100ms like \"10s\""),
        ),
        (
            "[limits]\nmax_series = 0\n",
            format!("{f}:2: max_series = 0: expected at least 1"),
        ),
        // A wrong type.
        (
            "max_body_bytes = true\n",
            format!("{f}:1: max_body_bytes = true: invalid type: boolean `true`, {SIZE}"),
        ),
        (
            "evaluation_interval = 60\n",
            format!("{f}:1: evaluation_interval = 60: invalid type: integer `60`, {DURATION}"),
        ),
    ];
    for (config, want) in &cases {
        let stderr = refused(&bin, &dir, config, &[], &[]);
        assert_refusal(&stderr, want);
    }
    // A secret is not echoed: the webhook URL (often the credential itself).
    let stderr = refused(
        &bin,
        &dir,
        "[[alerting.webhooks]]\nurl = \"ftp://hooks.example/T0KEN-s3cret\"\n",
        &[],
        &[],
    );
    assert!(
        stderr.contains(&format!("{f}:2: url = <hidden>: ")),
        "{stderr}"
    );
    assert!(
        !stderr.contains("s3cret"),
        "the URL's secret is not logged:\n{stderr}"
    );
    // Flags and variables override the file, and a refusal names them instead.
    let stderr = refused(
        &bin,
        &dir,
        "retention = \"1d\"\n",
        &["--retention", "30x"],
        &[],
    );
    assert_refusal(&stderr, &format!("--retention 30x: {DURATION}"));
    let stderr = refused(
        &bin,
        &dir,
        "retention = \"1d\"\n",
        &["--retention", "2d"],
        &[("CALM_MAX_BODY_BYTES", "lots")],
    );
    assert_refusal(&stderr, &format!("CALM_MAX_BODY_BYTES=lots: {SIZE}"));
}

#[test]
fn the_agent_refuses_bad_config_naming_key_file_line_and_form() {
    let bin = agent_bin();
    let (_keep, dir) = temp();
    let file = dir.join("calm.toml");
    let f = file.display();
    let cases: Vec<(&str, String)> = vec![
        // An unknown key at the top level.
        (
            "listen = \"127.0.0.1:0\"\ncolectors = [\"http://127.0.0.1:9400\"]\n",
            format!("{f}:2: colectors = [\"http://127.0.0.1:9400\"]: unknown field `colectors`, expected one of"),
        ),
        // A mistyped key in a section.
        (
            "[spool]\nmax_byte = 5\n",
            format!("{f}:2: max_byte = 5: unknown field `max_byte`"),
        ),
        (
            "[limits]\nheader_read_timout = \"5s\"\n",
            format!("{f}:2: header_read_timout = \"5s\": unknown field `header_read_timout`"),
        ),
        // A bad duration.
        (
            "[host]\ninterval = \"1h\"\n[heartbeat]\ninterval = \"30x\"\n",
            format!("{f}:4: interval = \"30x\": {DURATION}"),
        ),
        // Out of range.
        (
            "[limits]\nmax_connections = 0\n",
            format!("{f}:2: max_connections = 0: expected a number from 1 to 1048576"),
        ),
        (
            "[sentry]\nkeys_refresh = \"0s\"\n",
            format!("{f}:2: keys_refresh = \"0s\": expected a duration above 0 like \"1m\""),
        ),
        // A wrong type.
        (
            "[sentry]\nrate = \"fast\"\n",
            format!("{f}:2: rate = \"fast\": invalid type: string \"fast\", expected f64"),
        ),
        (
            "[spool]\nmax_bytes = [1]\n",
            format!("{f}:2: max_bytes = [1]: invalid type: sequence, {SIZE}"),
        ),
    ];
    for (config, want) in &cases {
        let stderr = refused(&bin, &dir, config, &[], &[]);
        assert_refusal(&stderr, want);
    }
    // Variables override flags, and a refusal names the variable.
    let stderr = refused(
        &bin,
        &dir,
        "listen = \"127.0.0.1:0\"\n",
        &["--collector", "http://127.0.0.1:9"],
        &[("CALM_COLLECTORS", "collector:9400")],
    );
    assert_refusal(
        &stderr,
        "CALM_COLLECTORS=collector:9400: expected collector URLs like \"http://collector:9400\"",
    );
}
