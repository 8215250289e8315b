//! How long a restart takes with many series: `cargo bench -p calm-collector --bench restart`.
//!
//! Writes `CALM_BENCH_SERIES` (default 1,000,000) node_exporter-like series with
//! `CALM_BENCH_SAMPLES` samples each (default 8, 15 s apart) straight into the TSDB,
//! then measures three starts:
//!   1. after a clean shutdown (head checkpointed),
//!   2. after a crash with the whole head in the WAL (no checkpoint yet),
//!   3. after a crash with a checkpoint and a WAL tail.
//!
//! Prints one JSON line per case: seconds to open, series, samples, peak RSS.

use calm_collector::tsdb::{Db, Options};
use calm_wire::prompb::{Label, Sample, TimeSeries};
use std::time::Instant;

fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn rss_peak_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn series_batch(from: usize, to: usize, t: i64, round: usize) -> Vec<TimeSeries> {
    (from..to)
        .map(|i| {
            let host = i / 500;
            let mut labels = vec![
                Label::new("__name__", "node_cpu_seconds_total"),
                Label::new("cpu", (i % 500 / 8).to_string()),
                Label::new("instance", format!("host-{host:05}:9100")),
                Label::new("job", "node"),
                Label::new(
                    "mode",
                    [
                        "idle", "user", "system", "iowait", "irq", "softirq", "steal", "nice",
                    ][i % 8],
                ),
            ];
            labels.sort_by(|a, b| a.name.cmp(&b.name));
            TimeSeries {
                labels,
                samples: vec![Sample {
                    timestamp: t,
                    value: (round * 15) as f64 * 0.37 + i as f64,
                }],
                exemplars: vec![],
                histograms: vec![],
            }
        })
        .collect()
}

fn open(dir: &std::path::Path) -> (std::sync::Arc<Db>, f64) {
    let started = Instant::now();
    let db = Db::open(Options::new(dir)).expect("open");
    (db, started.elapsed().as_secs_f64())
}

fn main() {
    let n = env_usize("CALM_BENCH_SERIES", 1_000_000);
    let rounds = env_usize("CALM_BENCH_SAMPLES", 8);
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("rt");
    let t0 = chrono::Utc::now().timestamp_millis() - rounds as i64 * 15_000;
    let write_all = |db: &Db, rounds: std::ops::Range<usize>| {
        for r in rounds {
            for from in (0..n).step_by(5000) {
                let batch = series_batch(from, (from + 5000).min(n), t0 + r as i64 * 15_000, r);
                rt.block_on(db.write(&batch)).expect("write");
            }
        }
    };
    let report = |case: &str, secs: f64, db: &Db| {
        println!(
            "{{\"case\":\"{case}\",\"open_seconds\":{secs:.3},\"series\":{},\"samples_per_series\":{rounds},\"peak_rss_mb\":{},\"disk_mb\":{}}}",
            db.series_count(),
            rss_peak_kb() / 1024,
            db.disk_bytes() >> 20
        );
    };
    let started = Instant::now();
    {
        let (db, _) = open(dir.path());
        write_all(&db, 0..rounds);
        eprintln!(
            "wrote {} samples in {:.1}s",
            n * rounds,
            started.elapsed().as_secs_f64()
        );
        // Crash: drop without checkpoint; the whole head is in the WAL.
    }
    let (db, secs) = open(dir.path());
    report("crash, whole head in WAL", secs, &db);
    db.close().expect("close");
    drop(db);
    let (db, secs) = open(dir.path());
    report("clean shutdown (checkpoint)", secs, &db);
    calm_collector::tsdb::checkpoint::checkpoint(&db).expect("checkpoint");
    write_all(&db, rounds..rounds + 2);
    drop(db);
    let (db, secs) = open(dir.path());
    report("crash, checkpoint + 2 rounds in WAL", secs, &db);
}
