//! Outage (issue 4, must-show 4): steady load on the agent — host metrics every second,
//! an OTLP gauge with known values (one sample every 250 ms, each value its sequence
//! number) and Sentry events — while the collector is stopped for a while and the agent
//! is restarted in the middle, once with SIGTERM and once with `kill -9`. After the
//! collector returns: every acknowledged sample and event arrives, in order, with no
//! duplicates in query results; the spool drains (the agent's spool gauges go to 0);
//! the agent's peak RSS is reported per run and stays flat.
//!
//! The outage lasts 45 s by default; `CALM_LONG=1` runs the full 10 minutes.
//!
//! Spool full: a small `[spool] max_bytes`, an outage long enough to overflow it: the
//! oldest metrics are dropped first, events are kept, and the drops are counted in the
//! agent's `/metrics` and logged.

use calm_tests::{now_ms, wait_for, Agent, Collector};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KEY: &str = "0123456789abcdef0123456789abcdef";

fn projects() -> String {
    format!("[[projects]]\nid = 1\nname = \"web\"\npublic_key = \"{KEY}\"\n")
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

fn long() -> bool {
    std::env::var("CALM_LONG").is_ok_and(|v| v == "1")
}

/// What the load threads got acknowledged by the agent.
#[derive(Default)]
struct Acked {
    samples: Vec<(i64, f64)>,
    events: Vec<String>,
    refused: u64,
}

fn otlp_body(ts_ms: i64, value: f64) -> Vec<u8> {
    let ns = (ts_ms as u128 * 1_000_000).to_string();
    serde_json::to_vec(&json!({
        "resourceMetrics": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "outage"}},
                {"key": "service.instance.id", "value": {"stringValue": "load-1"}}
            ]},
            "scopeMetrics": [{"metrics": [{"name": "calm_outage_seq", "gauge": {"dataPoints": [
                {"timeUnixNano": ns, "asDouble": value}
            ]}}]}]
        }]
    }))
    .unwrap()
}

fn envelope(event_id: &str, n: u64) -> Vec<u8> {
    let ev = format!(
        r#"{{"event_id":"{event_id}","message":"outage event {n}","level":"error","platform":"python","exception":{{"values":[{{"type":"OutageError","value":"outage event {n}"}}]}}}}"#
    );
    format!(
        "{{\"event_id\":\"{event_id}\"}}\n{{\"type\":\"event\",\"length\":{}}}\n{ev}\n",
        ev.len()
    )
    .into_bytes()
}

/// Sends the OTLP gauge (every 250 ms, retrying a sample until the agent acknowledges
/// it, so acknowledged samples are in time order) and a Sentry event every second.
fn load(
    otlp: String,
    relay: String,
    acked: Arc<Mutex<Acked>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let c = client();
        let mut seq = 0u64;
        let mut events = 0u64;
        let mut last_event = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            seq += 1;
            let ts = now_ms();
            let body = otlp_body(ts, seq as f64);
            loop {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                match c
                    .post(&otlp)
                    .header("Content-Type", "application/json")
                    .body(body.clone())
                    .send()
                {
                    Ok(r) if r.status().is_success() => {
                        acked.lock().unwrap().samples.push((ts, seq as f64));
                        break;
                    }
                    _ => {
                        acked.lock().unwrap().refused += 1;
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
            if last_event.elapsed() >= Duration::from_secs(1) {
                last_event = Instant::now();
                events += 1;
                let id = format!("{:032x}", 0xca1d_0000_0000u64 + events);
                let ok = c
                    .post(&relay)
                    .header(
                        "X-Sentry-Auth",
                        format!("Sentry sentry_key={KEY}, sentry_version=7"),
                    )
                    .body(envelope(&id, events))
                    .send()
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    acked.lock().unwrap().events.push(id);
                }
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    })
}

/// Peak RSS seen by sampling VmRSS every second, per agent run.
fn watch_rss(pid: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0;
        while !stop.load(Ordering::Relaxed) {
            match calm_tests::agent::proc_status_kib(pid, "VmHWM:") {
                Some(v) => peak = peak.max(v),
                None => break,
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        peak
    })
}

fn events_counted(c: &Collector) -> u64 {
    let v: Value = client()
        .get(format!(
            "{}/api/calm/v1/issues?project=1&limit=1000",
            c.url()
        ))
        .send()
        .and_then(|r| r.json())
        .unwrap_or(Value::Null);
    v["data"]
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["count"].as_u64()).sum())
        .unwrap_or(0)
}

fn sleep_logged(what: &str, d: Duration) {
    println!(
        "[{:>7.1}s] {what} ({d:?})",
        now_ms() as f64 / 1000.0 % 10_000.0
    );
    std::thread::sleep(d);
}

#[test]
fn collector_outage_and_agent_restarts_lose_nothing_and_the_spool_drains() {
    let (outage, before) = if long() {
        (Duration::from_secs(600), Duration::from_secs(10))
    } else {
        (Duration::from_secs(45), Duration::from_secs(5))
    };
    let mut c = Collector::start_with_config(&projects(), &[]);
    let mut agent = Agent::builder()
        .collector(&c.url())
        .config("[host]\ninterval = \"1s\"\n[heartbeat]\ninterval = \"1s\"\n")
        .start();
    let acked = Arc::new(Mutex::new(Acked::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let loader = load(
        format!("{}/v1/metrics", agent.otlp_url()),
        format!("{}/api/1/envelope/", agent.url()),
        acked.clone(),
        stop.clone(),
    );
    let mut peaks = Vec::new();
    let rss_stop = Arc::new(AtomicBool::new(false));
    let mut rss = watch_rss(agent.pid().unwrap(), rss_stop.clone());

    sleep_logged("load with the collector up", before);
    let t_down = now_ms();
    c.terminate(Duration::from_secs(30));
    sleep_logged("collector down", outage / 3);

    // Restart 1: SIGTERM (the spool is flushed on the way out).
    rss_stop.store(true, Ordering::Relaxed);
    peaks.push(("run 1", rss.join().unwrap()));
    let spooled_before = agent.metric("calm_agent_spool_entries").unwrap_or(0.0);
    let (_, in_time) = agent.terminate(Duration::from_secs(30)).expect("agent ran");
    assert!(in_time, "the agent exits within 30 s of SIGTERM");
    agent.start_again();
    let spooled_after = agent.metric("calm_agent_spool_entries").unwrap_or(0.0);
    println!("SIGTERM restart: spool entries {spooled_before} before, {spooled_after} after");
    assert!(
        spooled_after >= spooled_before,
        "the spool survives a restart ({spooled_before} → {spooled_after})"
    );
    rss_stop.store(false, Ordering::Relaxed);
    rss = watch_rss(agent.pid().unwrap(), rss_stop.clone());
    sleep_logged("collector still down", outage / 3);

    // Restart 2: kill -9 (acknowledged entries were flushed before the answer).
    rss_stop.store(true, Ordering::Relaxed);
    peaks.push(("run 2", rss.join().unwrap()));
    agent.kill9();
    agent.start_again();
    rss_stop.store(false, Ordering::Relaxed);
    rss = watch_rss(agent.pid().unwrap(), rss_stop.clone());
    sleep_logged("collector still down", outage / 3);

    let spool_peak_entries = agent.metric("calm_agent_spool_entries").unwrap_or(0.0);
    let spool_peak_bytes = agent.metric("calm_agent_spool_bytes").unwrap_or(0.0);
    c.start_again();
    let t_up = Instant::now();
    let t_up_ms = now_ms();
    sleep_logged("load with the collector back", Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    loader.join().unwrap();
    let drained = wait_for(Duration::from_secs(180), Duration::from_millis(200), || {
        (agent.metric("calm_agent_spool_entries") == Some(0.0)
            && agent.metric("calm_agent_spool_bytes") == Some(0.0))
        .then(|| t_up.elapsed())
    })
    .unwrap_or_else(|| {
        panic!(
            "the spool did not drain in 180 s: {:?} entries left; agent log:\n{}",
            agent.metric("calm_agent_spool_entries"),
            agent.log_tail(20)
        )
    });
    rss_stop.store(true, Ordering::Relaxed);
    peaks.push(("run 3", rss.join().unwrap()));

    let acked = acked.lock().unwrap();
    // Every acknowledged sample, in order, once.
    let api = c.api();
    let window = (now_ms() - acked.samples[0].0) / 1000 + 60;
    let got = api
        .query_matrix(
            &format!("calm_outage_seq{{job=\"outage\"}}[{window}s]"),
            now_ms(),
        )
        .expect("range query");
    assert_eq!(got.len(), 1, "one series: {got:?}");
    let got = &got[0].samples;
    let missing: Vec<_> = acked.samples.iter().filter(|s| !got.contains(s)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged samples missing, first {:?}",
        missing.len(),
        acked.samples.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(
        got.windows(2).all(|w| w[0].0 < w[1].0),
        "samples in time order, each timestamp once"
    );
    assert_eq!(
        got.len(),
        acked.samples.len(),
        "no sample that was not acknowledged, none twice"
    );
    assert!(
        got.windows(2).all(|w| w[0].1 < w[1].1),
        "values (sequence numbers) increase with time"
    );
    // Every acknowledged event, counted once (the collector dedupes by event id, so a
    // resend after kill -9 cannot inflate it).
    let events = wait_for(Duration::from_secs(30), Duration::from_millis(250), || {
        let n = events_counted(&c);
        (n == acked.events.len() as u64).then_some(n)
    });
    assert_eq!(
        events,
        Some(acked.events.len() as u64),
        "events counted in issues ({}) vs acknowledged ({})",
        events_counted(&c),
        acked.events.len()
    );
    // Host metrics taken while the collector was down arrived too.
    let host = api
        .query_matrix(&format!("node_load1{{job=\"node\"}}[{window}s]"), now_ms())
        .expect("host query");
    let during: usize = host
        .iter()
        .map(|s| {
            s.samples
                .iter()
                .filter(|(t, _)| *t > t_down && *t < t_up_ms)
                .count()
        })
        .sum();
    let outage_s = (t_up_ms - t_down) / 1000;
    println!(
        "outage {outage_s} s: {} samples and {} events acknowledged ({} refused pushes while the agent was restarting), \
         all arrived; {during} host samples (node_load1) from the outage arrived; \
         spool peak {spool_peak_entries} entries / {spool_peak_bytes} bytes drained in {drained:?}",
        acked.samples.len(),
        acked.events.len(),
        acked.refused
    );
    assert!(
        during as i64 >= outage_s / 2,
        "host samples from the outage: {during} for {outage_s} s at 1 s (minus agent restarts)"
    );
    for (run, kib) in &peaks {
        println!(
            "agent {run}: peak RSS (VmHWM) {:.1} MiB",
            *kib as f64 / 1024.0
        );
    }
    let max = peaks.iter().map(|p| p.1).max().unwrap();
    assert!(max < 200 * 1024, "agent peak RSS {max} KiB");
    // The collector's fleet view sees the drained spool too (heartbeats every second).
    // A heartbeat reports the depth at the moment it is sent, while the host source
    // still adds an entry every second: on a loaded machine one or two entries may be
    // on their way at every heartbeat, so "drained" here is at most 2 (the agent's own
    // /metrics showed 0 above).
    let fleet = wait_for(Duration::from_secs(30), Duration::from_millis(250), || {
        let v: Value = client()
            .get(format!("{}/api/calm/v1/agents", c.url()))
            .send()
            .and_then(|r| r.json())
            .ok()?;
        let a = v["agents"].as_array()?.first()?.clone();
        (a["spool_entries"].as_u64()? <= 2 && a["shipped"].as_u64()? > 0).then_some(a)
    });
    println!("fleet view after the outage: {fleet:?}");
    assert!(
        fleet.is_some(),
        "the fleet view shows the agent with an empty spool"
    );
}

#[test]
fn a_full_spool_drops_the_oldest_metrics_first_keeps_events_and_counts() {
    let mut c = Collector::start_with_config(&projects(), &[]);
    let agent = Agent::builder()
        .collector(&c.url())
        .config("[host]\ninterval = \"200ms\"\n[spool]\nmax_bytes = 150000\n")
        .start();
    c.terminate(Duration::from_secs(30));
    let t_down = now_ms();
    let relay = format!("{}/api/1/envelope/", agent.url());
    let mut ids = Vec::new();
    for n in 0..10u64 {
        let id = format!("{:032x}", 0x5b00_0000u64 + n);
        let r = client()
            .post(&relay)
            .header(
                "X-Sentry-Auth",
                format!("Sentry sentry_key={KEY}, sentry_version=7"),
            )
            .body(envelope(&id, n))
            .send()
            .expect("post event");
        assert_eq!(r.status().as_u16(), 200);
        ids.push(id);
    }
    // Host metrics every 200 ms: several KB each, so 150 KB fill within seconds.
    let dropped = wait_for(Duration::from_secs(60), Duration::from_millis(250), || {
        agent
            .metric("calm_agent_spool_dropped_total")
            .filter(|&d| d >= 5.0)
    })
    .unwrap_or_else(|| {
        panic!(
            "the spool never overflowed; agent /metrics:\n{}",
            agent.metrics_text()
        )
    });
    let bytes = agent.metric("calm_agent_spool_bytes").unwrap_or(f64::MAX);
    let events_dropped = agent.metric("calm_agent_spool_dropped_events_total");
    println!(
        "spool full: {dropped} entries dropped, {events_dropped:?} of them events; {bytes} bytes held (max 150000)"
    );
    assert!(
        bytes <= 150_000.0,
        "the spool stays within max_bytes: {bytes}"
    );
    assert_eq!(
        events_dropped,
        Some(0.0),
        "events are kept while metrics can be dropped"
    );
    assert!(
        agent.log().contains("spool full"),
        "drops are logged; log:\n{}",
        agent.log_tail(10)
    );
    // Back up: all 10 events arrive, and the newest metrics rather than the oldest.
    let t_back = now_ms();
    c.start_again();
    let events = wait_for(Duration::from_secs(60), Duration::from_millis(250), || {
        let n = events_counted(&c);
        (n == 10).then_some(n)
    });
    assert_eq!(
        events,
        Some(10),
        "every event survived the full spool: {}",
        events_counted(&c)
    );
    // The oldest metrics were the ones dropped: the first host sample kept from the
    // outage is younger than the outage by at least the dropped entries (200 ms each).
    let first = wait_for(Duration::from_secs(60), Duration::from_millis(250), || {
        let host = c
            .api()
            .query_matrix("node_load1{job=\"node\"}[10m]", now_ms())
            .ok()?;
        host.iter()
            .flat_map(|s| s.samples.iter().map(|x| x.0).find(|t| *t > t_down))
            .min()
    })
    .expect("host metrics from the outage arrived");
    assert!(
        first - t_down >= 500,
        "the oldest outage samples were dropped: the first kept one is {} ms after the outage began",
        first - t_down
    );
    let spooled_for = t_back - first;
    println!(
        "oldest host sample that survived is {spooled_for} ms older than the collector's return"
    );
}
