//! Cluster mode, rules read after write (issue 14): 3 real NATS nodes, PostgreSQL (one
//! evaluator), 2 collectors whose owners apply the log late (the failpoint
//! `cluster.apply.delay`, every batch), one recording rule `copy_total = sum(src_total)`
//! every 3 s. Just before a round (400 ms before its slot) the test writes
//! `src_total` = a new value through a collector and checks the write was acknowledged
//! before the slot; then it reads the sample the round recorded at the slot.
//!
//! - wait on (`rule_read_after_write_wait = "1400ms"`), owners 800 ms late: every
//!   round's recorded value is the value written just before it;
//! - wait off (`0s`), same lag: every round records the value before it (the write is
//!   missed): the assertion above fails without the wait;
//! - owners 2.5 s late, wait 1.4 s: every round still runs at its slot (no slot
//!   missed, `calm_rule_group_iterations_missed_total` 0), records without the write,
//!   and counts `calm_rule_read_after_write_timeouts_total`; the evaluator's log names
//!   the lagging partition and owner.

use calm_tests::nats::NatsCluster;
use calm_tests::postgres::Postgres;
use calm_tests::write::{request, series, RemoteWriter};
use calm_tests::{now_ms, wait_for, Collector};
use std::sync::Mutex;
use std::time::Duration;

const INTERVAL_MS: i64 = 3000;
/// How long before a slot the test's write is sent.
const WRITE_BEFORE_MS: i64 = 400;
const ROUNDS: usize = 3;

const RULES: &str = r#"groups:
  - name: copy
    interval: 3s
    rules:
      - record: copy_total
        expr: sum(src_total)
"#;

/// One scenario at a time: each starts its own NATS cluster, PostgreSQL and
/// collectors, and their timing is what is measured.
static SERIAL: Mutex<()> = Mutex::new(());

struct Cluster {
    cs: Vec<Collector>,
    _pg: Postgres,
    _nats: NatsCluster,
    _dir: tempfile::TempDir,
}

fn config(nats: &NatsCluster, pg_url: &str, rules: &str, node: &str, wait: &str) -> String {
    format!(
        "rule_files = [\"{rules}\"]\nevaluation_interval = \"3s\"\n\
         [cluster]\nnats_urls = {}\nnode_id = \"{node}\"\npartitions = 2\n\
         owners_per_partition = 1\n\
         lease_ttl = \"6s\"\nlease_renew = \"1s\"\npublish_timeout = \"3s\"\n\
         fanout_timeout = \"3s\"\n\
         evaluator_lease_ttl = \"3s\"\nevaluator_lease_renew = \"500ms\"\n\
         rule_read_after_write_wait = \"{wait}\"\n\
         [postgres]\nurl = \"{pg_url}\"\npool_size = 4\ntimeout = \"2s\"\n",
        nats.toml_urls()
    )
}

/// NATS, PostgreSQL and 2 collectors whose owners apply each batch `delay_ms` late;
/// `None` (after a skip notice) when a peer is missing.
fn start(wait: &str, delay_ms: u64) -> Option<Cluster> {
    let nats = NatsCluster::start(3)?;
    let mut pg = match Postgres::start_new() {
        Ok(pg) => pg,
        Err(e) => {
            return calm_tests::skip_or_fail(
                &format!("PostgreSQL: {e}"),
                "run scripts/install-peers",
            )
        }
    };
    let pg_url = pg.create_db().expect("create database");
    let dir = tempfile::tempdir().expect("tmp");
    let rules = dir.path().join("copy.yml");
    std::fs::write(&rules, RULES).expect("rules");
    let failpoint = format!("cluster.apply.delay=delay({delay_ms})@1-");
    let cs: Vec<Collector> = (1..=2)
        .map(|i| {
            Collector::start_inner_env(
                Some(&config(
                    &nats,
                    &pg_url,
                    &rules.display().to_string(),
                    &format!("c{i}"),
                    wait,
                )),
                &[],
                &[("CALM_FAILPOINTS", failpoint.as_str())],
            )
        })
        .collect();
    Some(Cluster {
        cs,
        _pg: pg,
        _nats: nats,
        _dir: dir,
    })
}

/// A metric of a collector's `/metrics` (None when absent or not answering).
fn metric(c: &Collector, name: &str) -> Option<f64> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .ok()?;
    let text = client
        .get(format!("{}/metrics", c.url()))
        .send()
        .ok()?
        .text()
        .ok()?;
    calm_tests::agent::sample_value(&text, name)
}

fn metric_sum(cs: &[Collector], name: &str) -> f64 {
    cs.iter().filter_map(|c| metric(c, name)).sum()
}

/// The raw samples of `copy_total` over the last minute before `at`.
fn recorded(c: &Collector, at: i64) -> Vec<(i64, f64)> {
    c.api()
        .query_matrix("copy_total[1m]", at)
        .ok()
        .and_then(|m| m.into_iter().next())
        .map(|s| s.samples)
        .unwrap_or_default()
}

/// Writes `src_total = value` through `c`; the instant it was acknowledged.
fn write(c: &Collector, value: f64) -> i64 {
    let w = RemoteWriter::with_timeout(&c.write_url(), Duration::from_secs(5));
    let req = request(vec![series(
        "src_total",
        &[("job", "w")],
        &[(now_ms(), value)],
    )]);
    let answer = w.send(&req).expect("remote write");
    assert!(answer.ok(), "write not acknowledged: {answer:?}");
    now_ms()
}

/// One round as the test saw it.
#[derive(Debug)]
struct Round {
    slot: i64,
    /// The value written just before the slot.
    written: f64,
    /// What the round recorded at the slot.
    recorded: f64,
    /// How long before the slot the write was acknowledged, ms.
    acked_before_ms: i64,
}

/// Learns the group's slots from what it records, then `ROUNDS` times: writes a new
/// value `WRITE_BEFORE_MS` before a slot and reads what the round recorded at it.
fn rounds(cl: &Cluster) -> Vec<Round> {
    let cs = &cl.cs;
    write(&cs[0], 1.0);
    let first = wait_for(Duration::from_secs(60), Duration::from_millis(200), || {
        recorded(&cs[0], now_ms()).last().map(|s| s.0)
    });
    let Some(phase) = first else {
        panic!(
            "no copy_total recorded within 60 s; logs:\n{}\n{}",
            cs[0].log_tail(30),
            cs[1].log_tail(30)
        );
    };
    let mut out = Vec::new();
    let mut attempts = 0;
    while out.len() < ROUNDS {
        attempts += 1;
        assert!(
            attempts <= 3 * ROUNDS,
            "could not write before a slot: {out:?}"
        );
        let now = now_ms();
        let mut slot = phase + ((now - phase) / INTERVAL_MS + 1) * INTERVAL_MS;
        if slot - WRITE_BEFORE_MS - now < 300 {
            slot += INTERVAL_MS;
        }
        let value = 10.0 + out.len() as f64;
        std::thread::sleep(Duration::from_millis(
            (slot - WRITE_BEFORE_MS - now_ms()).max(0) as u64,
        ));
        let acked = write(&cs[out.len() % cs.len()], value);
        if acked >= slot - 50 {
            eprintln!(
                "write acknowledged {} ms before slot {slot}: too late, again",
                slot - acked
            );
            continue;
        }
        let got = wait_for(Duration::from_secs(30), Duration::from_millis(200), || {
            recorded(&cs[0], slot + 1)
                .iter()
                .find(|s| s.0 == slot)
                .map(|s| s.1)
        });
        let Some(got) = got else {
            panic!(
                "round {slot} recorded nothing within 30 s (recorded: {:?}); logs:\n{}\n{}",
                recorded(&cs[0], now_ms()),
                cs[0].log_tail(30),
                cs[1].log_tail(30)
            );
        };
        out.push(Round {
            slot,
            written: value,
            recorded: got,
            acked_before_ms: slot - acked,
        });
    }
    eprintln!("rounds: {out:?}");
    out
}

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn a_write_acknowledged_just_before_a_round_is_in_its_result() {
    let _serial = serial();
    let Some(cl) = start("1400ms", 800) else {
        return;
    };
    let rs = rounds(&cl);
    for r in &rs {
        assert_eq!(
            r.recorded, r.written,
            "the round at {} recorded {} but {} was acknowledged {} ms before it: {rs:?}",
            r.slot, r.recorded, r.written, r.acked_before_ms
        );
    }
    let waits = metric_sum(&cl.cs, "calm_rule_read_after_write_waits_total");
    let timeouts = metric_sum(&cl.cs, "calm_rule_read_after_write_timeouts_total");
    eprintln!("rounds that waited: {waits}, timeouts: {timeouts}");
    assert!(
        waits >= ROUNDS as f64,
        "every round waited for the late owner: {waits}"
    );
    assert_eq!(timeouts, 0.0, "no round timed out");
}

#[test]
fn without_the_wait_the_same_rounds_miss_the_write() {
    let _serial = serial();
    let Some(cl) = start("0s", 800) else {
        return;
    };
    let rs = rounds(&cl);
    for r in &rs {
        assert_ne!(
            r.recorded, r.written,
            "with the wait off, the round at {} saw the write the late owner had not applied: {rs:?}",
            r.slot
        );
    }
    assert_eq!(
        metric_sum(&cl.cs, "calm_rule_read_after_write_waits_total"),
        0.0,
        "no barrier with the wait off"
    );
}

#[test]
fn an_owner_later_than_the_bound_times_out_and_the_round_runs_in_its_interval() {
    let _serial = serial();
    let Some(cl) = start("1400ms", 2500) else {
        return;
    };
    let rs = rounds(&cl);
    for r in &rs {
        // Evaluated anyway, at the bound, before the owner applied the write.
        assert_ne!(r.recorded, r.written, "{rs:?}");
    }
    let timeouts = metric_sum(&cl.cs, "calm_rule_read_after_write_timeouts_total");
    eprintln!("timeouts: {timeouts}");
    assert!(
        timeouts >= ROUNDS as f64,
        "each round with a late write timed out and was counted: {timeouts}"
    );
    // Every slot from the first measured round to the last was evaluated (no round
    // pushed past its interval).
    let (first, last) = (rs[0].slot, rs[rs.len() - 1].slot);
    let slots: Vec<i64> = recorded(&cl.cs[0], last + 1)
        .iter()
        .map(|s| s.0)
        .filter(|t| *t >= first && *t <= last)
        .collect();
    let want: Vec<i64> = (0..=(last - first) / INTERVAL_MS)
        .map(|k| first + k * INTERVAL_MS)
        .collect();
    assert_eq!(slots, want, "a recorded sample at every slot");
    assert_eq!(
        metric_sum(&cl.cs, "calm_rule_group_iterations_missed_total"),
        0.0,
        "no round missed its slot"
    );
    let logs: String = cl.cs.iter().map(|c| c.log()).collect();
    let warn = logs
        .lines()
        .find(|l| l.contains("rule_read_after_write_wait passed"))
        .unwrap_or_else(|| panic!("no WARN about the late owners in the logs"));
    assert!(
        warn.contains("partition ") && (warn.contains(" on c1") || warn.contains(" on c2")),
        "the WARN names the partition and the owner: {warn}"
    );
}
