//! Nothing acknowledged is lost: under sustained remote-write load the collector is
//! killed with SIGKILL five times in a row and restarted on the same data dir. After
//! every restart, every sample that got a 2xx before the kill must be readable with
//! its exact timestamp and value.
//!
//! Writers own disjoint series, send one sample per series per request with increasing
//! timestamps, and resend the same request until it is acknowledged, so the
//! acknowledged requests of a writer are exactly `0..acked` (and request `acked` may
//! or may not have been stored). A retried request repeats identical samples, which a
//! Prometheus-compatible receiver accepts.

use calm_tests::api::show_labels;
use calm_tests::write::{request, series, RemoteWriter};
use calm_tests::{now_ms, Collector};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WRITERS: usize = 4;
const SERIES_PER_WRITER: usize = 50;
const KILLS: usize = 5;
/// Timestamp step between a writer's requests (ms).
const STEP_MS: i64 = 2;
/// Pause between a writer's requests, to keep the data set verifiable in seconds.
const PAUSE: Duration = Duration::from_millis(5);

fn value(req: u64, s: usize) -> f64 {
    req as f64 * 1000.0 + s as f64
}

struct Shared {
    base: i64,
    stop: AtomicBool,
    /// Per writer: how many requests (0..n) were acknowledged.
    acked: Vec<AtomicU64>,
    /// Refusals (4xx) and other faults seen by writers.
    faults: Mutex<Vec<String>>,
}

fn writer(id: usize, url: String, shared: Arc<Shared>) {
    let w = RemoteWriter::with_timeout(&url, Duration::from_secs(10));
    let names: Vec<String> = (0..SERIES_PER_WRITER).map(|s| s.to_string()).collect();
    let wid = id.to_string();
    let mut next: u64 = 0;
    while !shared.stop.load(Ordering::Relaxed) {
        let ts = shared.base + next as i64 * STEP_MS;
        let req = request(
            names
                .iter()
                .enumerate()
                .map(|(s, name)| {
                    series(
                        "calm_crash_test",
                        &[("writer", &wid), ("series", name)],
                        &[(ts, value(next, s))],
                    )
                })
                .collect(),
        );
        // Resend until acknowledged (the collector may be down or restarting).
        loop {
            if shared.stop.load(Ordering::Relaxed) {
                return;
            }
            match w.send(&req) {
                Ok(a) if a.ok() => {
                    next += 1;
                    shared.acked[id].store(next, Ordering::SeqCst);
                    break;
                }
                Ok(a) if a.status == 429 || a.status >= 500 => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Ok(a) => {
                    shared.faults.lock().unwrap().push(format!(
                        "writer {id} request {next}: HTTP {} {:?}",
                        a.status, a.body
                    ));
                    return;
                }
                // Connection refused / reset while the collector is down.
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        std::thread::sleep(PAUSE);
    }
}

/// Checks that every acknowledged sample (`acked[w]` requests per writer) is readable.
fn verify(c: &Collector, base: i64, acked: &[u64], when: &str) {
    let api = calm_tests::PromApi::with_timeout(&c.url(), Duration::from_secs(60));
    for (w, &n) in acked.iter().enumerate() {
        if n == 0 {
            continue;
        }
        let last_ts = base + (n as i64 - 1) * STEP_MS;
        // (last_ts - range, last_ts] covers base.
        let range_s = (last_ts - base) / 1000 + 2;
        let q = format!("calm_crash_test{{writer=\"{w}\"}}[{range_s}s]");
        let got = api
            .query_matrix(&q, last_ts)
            .unwrap_or_else(|e| panic!("{when}: query {q}: {e:#}"));
        assert_eq!(
            got.len(),
            SERIES_PER_WRITER,
            "{when}: writer {w} had {n} acknowledged requests, but {q} returns {} series \
             instead of {SERIES_PER_WRITER}: {:?}",
            got.len(),
            got.iter()
                .map(|s| show_labels(&s.labels))
                .collect::<Vec<_>>()
        );
        for s in &got {
            let idx: usize = s
                .labels
                .get("series")
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{when}: unexpected series {}", show_labels(&s.labels)));
            // Every returned sample is one that was sent, in order, without repeats.
            let mut expect_req = 0u64;
            let mut lost = Vec::new();
            for &(t, v) in &s.samples {
                let req = (t - base) / STEP_MS;
                assert!(
                    t >= base && (t - base) % STEP_MS == 0 && req as u64 <= n,
                    "{when}: {} has a sample at {t} that was never sent \
                     (base {base}, {n} acknowledged)",
                    show_labels(&s.labels)
                );
                let req = req as u64;
                assert_eq!(
                    v,
                    value(req, idx),
                    "{when}: {} at {t}: wrong value",
                    show_labels(&s.labels)
                );
                assert!(
                    req >= expect_req,
                    "{when}: {} has timestamps out of order or repeated at {t}",
                    show_labels(&s.labels)
                );
                while expect_req < req {
                    lost.push(expect_req);
                    expect_req += 1;
                }
                expect_req = req + 1;
            }
            while expect_req < n {
                lost.push(expect_req);
                expect_req += 1;
            }
            assert!(
                lost.is_empty(),
                "{when}: {} lost {} of {n} acknowledged samples; first lost timestamps: {:?} \
                 (last returned: {:?})\ncollector log:\n{}",
                show_labels(&s.labels),
                lost.len(),
                lost.iter()
                    .take(10)
                    .map(|r| base + *r as i64 * STEP_MS)
                    .collect::<Vec<_>>(),
                s.samples.last(),
                c.log_tail(20)
            );
        }
    }
}

fn snapshot(shared: &Shared) -> Vec<u64> {
    shared
        .acked
        .iter()
        .map(|a| a.load(Ordering::SeqCst))
        .collect()
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_sample() {
    let started = Instant::now();
    let mut c = Collector::start();
    let shared = Arc::new(Shared {
        // Recent enough for any retention / out-of-order window, never in the future.
        base: now_ms() - 10 * 60 * 1000,
        stop: AtomicBool::new(false),
        acked: (0..WRITERS).map(|_| AtomicU64::new(0)).collect(),
        faults: Mutex::new(Vec::new()),
    });
    // Stop the writers even if an assertion below fails.
    struct StopOnDrop(Arc<Shared>, Vec<std::thread::JoinHandle<()>>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.stop.store(true, Ordering::SeqCst);
            for h in self.1.drain(..) {
                let _ = h.join();
            }
        }
    }
    let handles = (0..WRITERS)
        .map(|id| {
            let (url, shared) = (c.write_url(), shared.clone());
            std::thread::spawn(move || writer(id, url, shared))
        })
        .collect();
    let mut writers = StopOnDrop(shared.clone(), handles);

    // A small deterministic jitter so kills land at different points of the cycle.
    let mut seed = (now_ms() as u64) | 1;
    let mut jitter = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        Duration::from_millis(1_500 + seed % 2_000)
    };

    let mut before = snapshot(&shared);
    for kill in 1..=KILLS {
        std::thread::sleep(jitter());
        let running = snapshot(&shared);
        assert!(
            running.iter().zip(&before).all(|(a, b)| a > b),
            "kill {kill}: not every writer got an acknowledgement since the last restart \
             ({before:?} → {running:?}); faults: {:?}\ncollector log:\n{}",
            shared.faults.lock().unwrap(),
            c.log_tail(20)
        );
        c.kill9();
        // Dead: no more acknowledgements can arrive. Everything counted so far was 2xx.
        let acked = snapshot(&shared);
        let t0 = Instant::now();
        c.start_again();
        let restart = t0.elapsed();
        verify(&c, shared.base, &acked, &format!("after kill -9 #{kill}"));
        eprintln!(
            "kill -9 #{kill}: {} requests acknowledged ({} samples), restart took {restart:?}, \
             verified in {:?}",
            acked.iter().sum::<u64>(),
            acked.iter().sum::<u64>() * SERIES_PER_WRITER as u64,
            t0.elapsed()
        );
        let faults = shared.faults.lock().unwrap().clone();
        assert!(faults.is_empty(), "writers were refused: {faults:?}");
        before = acked;
    }

    // Let the writers run against the last incarnation, then check once more.
    std::thread::sleep(Duration::from_secs(1));
    shared.stop.store(true, Ordering::SeqCst);
    for h in writers.1.drain(..) {
        h.join().expect("writer thread panicked");
    }
    let acked = snapshot(&shared);
    assert!(
        acked.iter().zip(&before).all(|(a, b)| a > b),
        "no writes acknowledged after the last restart: {before:?} → {acked:?}"
    );
    verify(&c, shared.base, &acked, "at the end");
    let faults = shared.faults.lock().unwrap().clone();
    assert!(faults.is_empty(), "writers were refused: {faults:?}");
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(150),
        "the crash test took {elapsed:?}: restarts or queries are far too slow"
    );
    eprintln!("crash test done in {elapsed:?}");
}

/// SIGTERM is a graceful shutdown: the process exits by itself with status 0, promptly,
/// and a restart on the same data dir has every acknowledged sample.
#[test]
fn sigterm_exits_cleanly_and_keeps_data() {
    let mut c = Collector::start();
    let w = RemoteWriter::new(&c.write_url());
    let base = now_ms() - 60_000;
    for i in 0..100i64 {
        let req = request(vec![series(
            "calm_sigterm_test",
            &[("k", "v")],
            &[(base + i * 100, i as f64)],
        )]);
        let a = w.send(&req).expect("write");
        assert!(a.ok(), "write {i}: HTTP {} {}", a.status, a.body);
    }
    let (status, in_time) = c
        .terminate(Duration::from_secs(15))
        .expect("collector was running");
    assert!(
        in_time,
        "calm-collector did not exit within 15 s of SIGTERM; log:\n{}",
        c.log_tail(20)
    );
    assert!(
        status.success(),
        "calm-collector exited with {status:?} after SIGTERM; log:\n{}",
        c.log_tail(20)
    );
    c.start_again();
    let got = c
        .api()
        .query_matrix("calm_sigterm_test[1m]", base + 99 * 100)
        .expect("query");
    assert_eq!(got.len(), 1, "{got:?}");
    let want: Vec<(i64, f64)> = (0..100).map(|i| (base + i * 100, i as f64)).collect();
    assert_eq!(got[0].samples, want, "samples after a graceful restart");
}
