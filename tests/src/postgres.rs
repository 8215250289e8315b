//! A real PostgreSQL server on a free loopback port, for the tests of cluster mode's
//! PostgreSQL stores: `initdb` into a temp dir, `pg_ctl start`, one database per test
//! ([`Postgres::create_db`]), [`Postgres::stop`] / [`Postgres::start`] to simulate an
//! outage, `pg_ctl stop -m immediate` when the handle drops.
//!
//! PostgreSQL refuses to run as root, and CI runs as root: then the data dir is given
//! to the unprivileged system user `nobody` and every server program runs through
//! `runuser -u nobody`. The binaries come from `CALM_PG_BIN` (a directory), else the
//! newest `/usr/lib/postgresql/*/bin` (Debian's `postgresql` package, installed by
//! `scripts/install-peers`), else `PATH`.
//!
//! This file needs only `std`, `libc` and `tempfile`: the collector's unit tests
//! include it too (`collector/src/storage/postgres/tests.rs`, by `#[path]`), so the
//! contract tests of the PostgreSQL stores start their server with the same code as
//! the black-box tests.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The unprivileged user the server runs as when the tests run as root.
const RUN_AS: &str = "nobody";

/// A PostgreSQL server of the test's own (stopped when dropped).
pub struct Postgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    as_user: Option<&'static str>,
    running: bool,
    dbs: u32,
}

/// Where `initdb`, `pg_ctl` and `psql` are, or `None` when PostgreSQL is not installed.
pub fn bin_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("CALM_PG_BIN") {
        return Some(PathBuf::from(d));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_ctl").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, b)) = versions.pop() {
        return Some(b);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|d| d.join("pg_ctl").exists() && d.join("initdb").exists())
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn describe(what: &str, out: &Output) -> String {
    format!(
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

impl Postgres {
    /// Initialises and starts a server, or says why it cannot (PostgreSQL missing,
    /// `initdb` or the start failed).
    pub fn start_new() -> Result<Postgres, String> {
        let bin = bin_dir().ok_or("PostgreSQL not found (scripts/install-peers installs it)")?;
        // SAFETY: geteuid has no preconditions and only reads the process' credentials.
        let root = unsafe { libc::geteuid() } == 0;
        let dir = tempfile::Builder::new()
            .prefix("calm-pg-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let as_user = root.then_some(RUN_AS);
        if let Some(u) = as_user {
            let out = Command::new("chown")
                .arg("-R")
                .arg(format!("{u}:"))
                .arg(dir.path())
                .output()
                .map_err(|e| format!("chown: {e}"))?;
            if !out.status.success() {
                return Err(describe("chown", &out));
            }
            // The temp dir's parent must be searchable by the server's user.
            let _ = Command::new("chmod").arg("0755").arg(dir.path()).output();
        }
        let mut pg = Postgres {
            bin,
            dir,
            port: free_port().map_err(|e| format!("free port: {e}"))?,
            as_user,
            running: false,
            dbs: 0,
        };
        let data = pg.data_dir();
        let out = pg.run(
            "initdb",
            &[
                "-D",
                &data.display().to_string(),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        )?;
        if !out.status.success() {
            return Err(describe("initdb", &out));
        }
        // Tests run many servers side by side: keep each one small.
        let conf = "listen_addresses = '127.0.0.1'\nmax_connections = 60\nshared_buffers = 16MB\nfsync = on\nlog_min_messages = warning\n";
        let conf_path = data.join("postgresql.auto.conf");
        let mut text = std::fs::read_to_string(&conf_path).unwrap_or_default();
        text.push_str(conf);
        std::fs::write(&conf_path, text).map_err(|e| format!("write config: {e}"))?;
        pg.start()?;
        Ok(pg)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The server's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<Output, String> {
        let exe = self.bin.join(program);
        let mut cmd = match self.as_user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", exe.display()))
    }

    /// Starts the (stopped) server on its port again; waits until it takes connections.
    pub fn start(&mut self) -> Result<(), String> {
        let data = self.data_dir().display().to_string();
        let log = self.log_path().display().to_string();
        let opts = format!("-p {} -k {}", self.port, self.dir.path().display());
        let out = self.run(
            "pg_ctl",
            &[
                "start", "-w", "-t", "60", "-D", &data, "-l", &log, "-o", &opts,
            ],
        )?;
        if !out.status.success() {
            let tail = std::fs::read_to_string(self.log_path()).unwrap_or_default();
            return Err(format!("{}\nlog:\n{tail}", describe("pg_ctl start", &out)));
        }
        self.running = true;
        // pg_ctl -w waits for the postmaster; wait for a query to answer too.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.psql("postgres", "SELECT 1") {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Stops the server (fast shutdown: clients are disconnected), as an outage would.
    pub fn stop(&mut self) -> Result<(), String> {
        let data = self.data_dir().display().to_string();
        let out = self.run(
            "pg_ctl",
            &["stop", "-w", "-t", "60", "-m", "fast", "-D", &data],
        )?;
        if !out.status.success() {
            return Err(describe("pg_ctl stop", &out));
        }
        self.running = false;
        Ok(())
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The connection URL of database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs one SQL command with `psql` in database `db`; its output (unaligned,
    /// tuples only) or what went wrong.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let exe = self.bin.join("psql");
        let out = Command::new(&exe)
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                sql,
            ])
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
        if !out.status.success() {
            return Err(describe("psql", &out));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Creates a new, empty database and returns its URL.
    pub fn create_db(&mut self) -> Result<String, String> {
        self.dbs += 1;
        let name = format!("calm_test_{}", self.dbs);
        self.psql("postgres", &format!("CREATE DATABASE {name}"))?;
        Ok(self.url(&name))
    }

    /// The temp dir the server lives in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.running {
            let data = self.data_dir().display().to_string();
            let _ = self.run(
                "pg_ctl",
                &["stop", "-w", "-t", "30", "-m", "immediate", "-D", &data],
            );
        }
    }
}
