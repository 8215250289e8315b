//! No disk error loses an acknowledged write (issue 12, class 2).
//!
//! The real collector with injected failures (`CALM_FAILPOINTS`, see
//! `collector/src/failpoint.rs`) at chosen points of the WAL and the event store, and
//! with its data dir on a real, full tmpfs: writers resend each request until it is
//! acknowledged (as Prometheus and the Sentry SDKs' transports do on 5xx), then the
//! collector is killed with `kill -9` and started again without failures. Every sample
//! and event that got a 2xx must be there, each sample exactly once.
//!
//! What would fail without the fixes: the head takes samples before the WAL, so a retry
//! of a batch whose WAL write failed counts as duplicates and was acknowledged without
//! being durable; a half-written record stayed in the segment and replay stopped there,
//! dropping every later acknowledged record; after one failed flush sled refuses every
//! write, so the event store answered 503 until a restart.

use calm_tests::write::{request, series, Answer, RemoteWriter};
use calm_tests::{now_ms, Collector};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const KEY: &str = "0123456789abcdef0123456789abcdef";

/// Sends `req` until it gets a 2xx. Returns how many 503s it got first. Panics on any
/// other answer or after `deadline`.
fn send_until_acked(
    w: &RemoteWriter,
    req: &calm_wire::prompb::WriteRequest,
    deadline: Duration,
) -> u32 {
    let started = Instant::now();
    let mut unavailable = 0;
    loop {
        match w.send(req) {
            Ok(a) if a.ok() => return unavailable,
            Ok(Answer { status: 503, .. }) => unavailable += 1,
            Ok(a) => panic!("unexpected answer {}: {}", a.status, a.body),
            Err(e) => panic!("request failed: {e:#}"),
        }
        assert!(
            started.elapsed() < deadline,
            "not acknowledged within {deadline:?} ({unavailable} answers 503)"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The collector's `/metrics` value of `name` (first line starting with it).
fn metric(c: &Collector, name: &str) -> f64 {
    c.metric(name).unwrap_or(0.0)
}

/// Every raw sample of the series selected by `selector` (one hour back from `at`),
/// by series label `series`.
fn raw(c: &Collector, selector: &str, at: i64) -> Vec<(String, Vec<(i64, f64)>)> {
    c.api()
        .query_matrix(&format!("{selector}[1h]"), at)
        .expect("query")
        .into_iter()
        .map(|s| {
            (
                s.labels.get("series").cloned().unwrap_or_default(),
                s.samples,
            )
        })
        .collect()
}

/// Request `i`: one sample on the long-lived series `a`, one on a series created by
/// this request (`new<i>`, so a failed record also loses a series definition).
fn req(metric_name: &str, base: i64, i: usize) -> calm_wire::prompb::WriteRequest {
    let t = base + i as i64 * 1000;
    request(vec![
        series(metric_name, &[("series", "a")], &[(t, i as f64)]),
        series(
            metric_name,
            &[("series", &format!("new{i}"))],
            &[(t, i as f64 + 0.5)],
        ),
    ])
}

/// Checks that request `0..n` are each stored exactly once.
fn check_all_there(c: &Collector, metric_name: &str, base: i64, n: usize) {
    let at = base + n as i64 * 1000 + 1000;
    let got = raw(c, metric_name, at);
    let a = got
        .iter()
        .find(|(s, _)| s == "a")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let want: Vec<(i64, f64)> = (0..n).map(|i| (base + i as i64 * 1000, i as f64)).collect();
    assert_eq!(a, want, "series a: every acknowledged sample, exactly once");
    for i in 0..n {
        let name = format!("new{i}");
        let s = got.iter().find(|(s, _)| *s == name).map(|(_, v)| v.clone());
        assert_eq!(
            s,
            Some(vec![(base + i as i64 * 1000, i as f64 + 0.5)]),
            "series {name}"
        );
    }
}

#[test]
fn wal_write_and_fsync_failures_lose_no_acknowledged_sample() {
    // The 4th write fails half-way (a torn record in the file), the 8th and 9th fsyncs
    // fail (the retry fails again), the 14th write fails.
    let spec = "wal.write=fail@4,wal.sync=fail@8-9,wal.write=fail@14";
    let mut c = Collector::start_with_env(&[], &[("CALM_FAILPOINTS", spec)]);
    let w = RemoteWriter::with_timeout(&c.write_url(), Duration::from_secs(10));
    let base = now_ms() - 60_000;
    const N: usize = 20;
    let mut unavailable = 0;
    for i in 0..N {
        unavailable += send_until_acked(&w, &req("calm_fi_wal", base, i), Duration::from_secs(30));
    }
    let failures = metric(&c, "calm_tsdb_wal_failures_total");
    assert!(
        unavailable >= 3 && failures >= 3.0,
        "the failpoints fired: {unavailable} answers 503, {failures} WAL failures"
    );
    eprintln!("WAL failpoints: {unavailable} answers 503, {failures} WAL failures, {N} requests acknowledged");
    // Still answering from memory: each sample once.
    check_all_there(&c, "calm_fi_wal", base, N);
    c.kill9();
    c.set_env(&[]);
    c.start_again();
    check_all_there(&c, "calm_fi_wal", base, N);
    // And writes go on after the restart.
    send_until_acked(&w, &req("calm_fi_wal", base, N), Duration::from_secs(30));
    c.kill9();
    c.start_again();
    check_all_there(&c, "calm_fi_wal", base, N + 1);
}

#[test]
fn a_retry_whose_samples_the_head_holds_is_acknowledged_only_once_they_are_durable() {
    // The 3rd WAL write fails: request 2's samples are in memory, not on disk. Its
    // retry finds them there (duplicates, nothing new to log); it must not be
    // acknowledged before the failed record is written again. kill -9 right after the
    // acknowledgement shows whether it was.
    let mut c = Collector::start_with_env(&[], &[("CALM_FAILPOINTS", "wal.write=fail@3")]);
    let w = RemoteWriter::with_timeout(&c.write_url(), Duration::from_secs(10));
    let base = now_ms() - 60_000;
    let mut unavailable = 0;
    for i in 0..3 {
        unavailable += send_until_acked(&w, &req("calm_fi_twin", base, i), Duration::from_secs(30));
    }
    assert_eq!(unavailable, 1, "the 3rd write failed once and was retried");
    c.kill9();
    c.set_env(&[]);
    c.start_again();
    check_all_there(&c, "calm_fi_twin", base, 3);
}

#[test]
fn damage_before_the_end_of_the_wal_stops_start_up_naming_file_and_offset() {
    let mut c = Collector::start();
    let w = RemoteWriter::with_timeout(&c.write_url(), Duration::from_secs(10));
    let base = now_ms() - 60_000;
    send_until_acked(&w, &req("calm_fi_damage", base, 0), Duration::from_secs(30));
    c.kill9();
    c.start_again();
    send_until_acked(&w, &req("calm_fi_damage", base, 1), Duration::from_secs(30));
    c.kill9();
    // Flip the last byte of segment 1 (its only record's payload): records follow in
    // segment 2, so this is not a torn tail but damage in the middle of the log.
    let seg = c.data_dir().join("wal").join("00000001");
    let mut data = std::fs::read(&seg).expect("segment 1");
    let last = data.len() - 1;
    data[last] ^= 0xff;
    std::fs::write(&seg, &data).expect("damage segment 1");
    // start_again panics when the start fails (its message is printed: expected here).
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.start_again()))
        .expect_err("a damaged WAL must stop the start");
    // The error as the collector printed it (the log of the failed start).
    let log = c.log();
    let msg = log
        .lines()
        .rev()
        .find(|l| l.contains("damaged"))
        .unwrap_or_default()
        .to_string();
    eprintln!("start-up error: {msg}");
    let file = seg.display().to_string();
    assert!(
        msg.contains(&file) && msg.contains("damaged at byte 0") && msg.contains("truncate -s 0"),
        "the error names the file, the offset and what to do: {msg}"
    );
}

/// Posts one event with a fixed id; the answer's status.
fn post_event(url: &str, id: &str, msg: &str) -> u16 {
    let body = serde_json::json!({
        "event_id": id,
        "level": "error",
        "platform": "python",
        "message": msg,
        "exception": {"values": [{"type": "FaultInjected", "value": msg}]},
    });
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    match client
        .post(format!("{url}/api/1/store/?sentry_key={KEY}"))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
    {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

/// Sends event `id` until it gets a 2xx; returns how many 5xx came first.
fn event_until_acked(url: &str, id: &str, deadline: Duration) -> u32 {
    let started = Instant::now();
    let mut failed = 0;
    loop {
        match post_event(url, id, &format!("fault {id}")) {
            200..=299 => return failed,
            s if s >= 500 || s == 429 || s == 0 => failed += 1,
            s => panic!("event {id}: unexpected status {s}"),
        }
        assert!(
            started.elapsed() < deadline,
            "event {id} not acknowledged within {deadline:?} ({failed} failures)"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The sum of the `count` of every issue (each acknowledged event counts once).
fn events_counted(c: &Collector) -> u64 {
    let (status, body) = c
        .api()
        .get("/api/calm/v1/issues?limit=100")
        .expect("issues");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("issues JSON");
    let list = v
        .get("issues")
        .or_else(|| v.get("data"))
        .and_then(|l| l.as_array())
        .cloned()
        .or_else(|| v.as_array().cloned())
        .unwrap_or_default();
    list.iter()
        .map(|i| match i.get("count") {
            Some(serde_json::Value::String(s)) => s.parse().unwrap_or(0),
            Some(n) => n.as_u64().unwrap_or(0),
            None => 0,
        })
        .sum()
}

fn event_id(i: usize) -> String {
    format!("{:032x}", 0xfa17_0000_u64 + i as u64)
}

#[test]
fn event_store_flush_failures_recover_without_restart_and_lose_nothing() {
    let projects = format!("[[projects]]\nid = 1\nname = \"web\"\npublic_key = \"{KEY}\"\n");
    // Flushes 3 to 5 fail (the first retries fail again), and the 9th.
    let spec = "events.flush=fail@3-5,events.flush=fail@9";
    let mut c = Collector::start_inner_env(Some(&projects), &[], &[("CALM_FAILPOINTS", spec)]);
    const N: usize = 12;
    let mut failures = 0;
    for i in 0..N {
        failures += event_until_acked(&c.url(), &event_id(i), Duration::from_secs(30));
    }
    assert!(
        failures >= 3,
        "the failpoint fired and the store recovered without a restart ({failures} failures)"
    );
    eprintln!("event store failpoints: {failures} failed answers, {N} events acknowledged");
    assert_eq!(events_counted(&c), N as u64, "each event counted once");
    c.kill9();
    c.set_env(&[]);
    c.start_again();
    assert_eq!(
        events_counted(&c),
        N as u64,
        "every acknowledged event survives kill -9"
    );
    // Retries of acknowledged events are duplicates, not new counts.
    for i in 0..N {
        event_until_acked(&c.url(), &event_id(i), Duration::from_secs(30));
    }
    assert_eq!(events_counted(&c), N as u64);
}

/// A tmpfs of `mib` MiB mounted at `dir`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, mib: u64) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).ok()?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs(dir.to_path_buf())),
            Ok(o) => calm_tests::skip_or_fail(
                &format!(
                    "cannot mount a tmpfs ({})",
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
                "run as root (CI does) to test a full disk",
            ),
            Err(e) => calm_tests::skip_or_fail(
                &format!("cannot run mount: {e}"),
                "run as root (CI does) to test a full disk",
            ),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system of `dir` with a ballast file until a write fails.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write as _;
    let path = dir.join("ballast");
    let mut f = std::fs::File::create(&path).expect("ballast");
    let chunk = vec![0xa5u8; 64 << 10];
    while f.write_all(&chunk).is_ok() {}
    let small = [0u8; 512];
    while f.write_all(&small).is_ok() {}
    let _ = f.sync_all();
    path
}

#[test]
fn disk_full_on_tmpfs_loses_no_acknowledged_sample_or_event() {
    let projects = format!("[[projects]]\nid = 1\nname = \"web\"\npublic_key = \"{KEY}\"\n");
    let mut c = Collector::start_with_config(&projects, &[]);
    c.kill9();
    // The data dir moves onto a tmpfs of 96 MiB (fresh: the collector starts again on it).
    let data = c.data_dir();
    let _ = std::fs::remove_dir_all(&data);
    let Some(_fs) = Tmpfs::mount(&data, 96) else {
        return;
    };
    c.start_again();
    let w = RemoteWriter::with_timeout(&c.write_url(), Duration::from_secs(10));
    let base = now_ms() - 120_000;
    let mut acked = 0usize;
    let mut events = 0usize;
    // Some writes while there is room.
    for _ in 0..5 {
        send_until_acked(
            &w,
            &req("calm_fi_full", base, acked),
            Duration::from_secs(30),
        );
        acked += 1;
        event_until_acked(&c.url(), &event_id(1000 + events), Duration::from_secs(30));
        events += 1;
    }
    // Disk full: writes get 503 (nothing acknowledged that is not on disk).
    let ballast = fill(&data);
    let mut refused = 0;
    let mut event_refused = false;
    // The last page of the WAL file may still have room for some small records; a
    // sample acknowledged there is durable like any other.
    for _ in 0..500 {
        match w.send(&req("calm_fi_full", base, acked)) {
            Ok(a) if a.ok() => acked += 1,
            Ok(Answer { status: 503, .. }) => refused += 1,
            Ok(a) => panic!("disk full: unexpected answer {}: {}", a.status, a.body),
            Err(e) => panic!("disk full: request failed: {e:#}"),
        }
        if !event_refused {
            match post_event(&c.url(), &event_id(1000 + events), "while full") {
                200..=299 => events += 1,
                _ => event_refused = true,
            }
        }
        if refused >= 3 && event_refused {
            break;
        }
    }
    assert!(refused > 0, "a full disk refuses writes with 503");
    assert!(event_refused, "a full disk refuses events");
    assert!(c.is_running(), "a full disk does not stop the collector");
    // Space back: the refused batch and later ones are acknowledged; events recover
    // without a restart.
    std::fs::remove_file(&ballast).expect("free the ballast");
    for _ in 0..5 {
        send_until_acked(
            &w,
            &req("calm_fi_full", base, acked),
            Duration::from_secs(60),
        );
        acked += 1;
    }
    // The event sent while full may or may not have been stored: send it until acked.
    for _ in 0..5 {
        event_until_acked(&c.url(), &event_id(1000 + events), Duration::from_secs(60));
        events += 1;
    }
    eprintln!(
        "disk full: {acked} write requests acknowledged, {refused} answered 503 while full; \
         {events} events acknowledged"
    );
    check_all_there(&c, "calm_fi_full", base, acked);
    c.kill9();
    c.start_again();
    check_all_there(&c, "calm_fi_full", base, acked);
    assert_eq!(
        events_counted(&c),
        events as u64,
        "every acknowledged event, once"
    );
}
