//! Bad input on every agent endpoint other than scrape: the OTLP receiver and the
//! Sentry relay. Garbage, lies, wrong content types, huge and decompression-bomb bodies
//! get a clear 4xx naming the problem; slow clients that never finish their request
//! head are cut off by the header read timeout; the process stays up, keeps serving,
//! and its memory stays bounded.

use calm_tests::{Agent, Collector};
use flate2::write::GzEncoder;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const LIMIT: usize = 1 << 20;

fn start() -> (Collector, Agent) {
    let c = Collector::start_with_config(
        "[[projects]]\nid = 1\nname = \"web\"\npublic_key = \"0123456789abcdef0123456789abcdef\"\n",
        &[],
    );
    let a = Agent::builder()
        .collector(&c.url())
        .config("[host]\ninterval = \"1h\"\n")
        .args(&["--max-body-bytes", &LIMIT.to_string()])
        .start();
    (c, a)
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// POSTs and returns (status, body).
fn post(url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> (u16, String) {
    let mut r = client().post(url).body(body);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    match r.send() {
        Ok(resp) => {
            let s = resp.status().as_u16();
            (s, resp.text().unwrap_or_default())
        }
        Err(e) => panic!("POST {url}: {e}"),
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

struct Case {
    what: &'static str,
    url: String,
    headers: Vec<(&'static str, &'static str)>,
    body: Vec<u8>,
    status: u16,
    says: &'static str,
}

const AUTH: (&str, &str) = (
    "X-Sentry-Auth",
    "Sentry sentry_key=0123456789abcdef0123456789abcdef, sentry_version=7",
);

#[test]
fn bad_bodies_get_a_clear_4xx_and_the_agent_stays_up_with_bounded_memory() {
    let (_c, agent) = start();
    let otlp = format!("{}/v1/metrics", agent.otlp_url());
    let env = format!("{}/api/1/envelope/", agent.url());
    let store = format!("{}/api/1/store/", agent.url());
    let pb = ("Content-Type", "application/x-protobuf");
    let js = ("Content-Type", "application/json");
    let gz = ("Content-Encoding", "gzip");
    let huge = vec![b'x'; LIMIT + 1];
    let bomb = gzip(&vec![0u8; 64 * LIMIT]);
    let ev = br#"{"message":"ok"}"#;
    let cases = vec![
        Case {
            what: "OTLP protobuf garbage",
            url: otlp.clone(),
            headers: vec![pb],
            body: b"\xff\xff\xff\xff garbage".to_vec(),
            status: 400,
            says: "protobuf",
        },
        Case {
            what: "OTLP JSON garbage",
            url: otlp.clone(),
            headers: vec![js],
            body: b"{not json".to_vec(),
            status: 400,
            says: "JSON",
        },
        Case {
            what: "OTLP empty JSON",
            url: otlp.clone(),
            headers: vec![js],
            body: b"  ".to_vec(),
            status: 400,
            says: "empty",
        },
        Case {
            what: "OTLP wrong content type",
            url: otlp.clone(),
            headers: vec![("Content-Type", "text/plain")],
            body: b"hello".to_vec(),
            status: 415,
            says: "Content-Type",
        },
        Case {
            what: "OTLP huge body",
            url: otlp.clone(),
            headers: vec![pb],
            body: huge.clone(),
            status: 413,
            says: "limit of 1048576 bytes",
        },
        Case {
            what: "OTLP gzip bomb (64 MiB of zeros)",
            url: otlp.clone(),
            headers: vec![pb, gz],
            body: bomb.clone(),
            status: 413,
            says: "limit of 1048576 bytes",
        },
        Case {
            what: "OTLP body that is not gzip",
            url: otlp.clone(),
            headers: vec![pb, gz],
            body: b"not gzip at all".to_vec(),
            status: 400,
            says: "",
        },
        Case {
            what: "envelope garbage",
            url: env.clone(),
            headers: vec![AUTH],
            body: b"\x00\x01\x02 not an envelope".to_vec(),
            status: 400,
            says: "envelope",
        },
        Case {
            what: "envelope with a lying item length",
            url: env.clone(),
            headers: vec![AUTH],
            body: b"{}\n{\"type\":\"event\",\"length\":9999}\n{}\n".to_vec(),
            status: 400,
            says: "length",
        },
        Case {
            what: "envelope event that is not JSON",
            url: env.clone(),
            headers: vec![AUTH],
            body: b"{}\n{\"type\":\"event\"}\nnot json\n".to_vec(),
            status: 400,
            says: "event",
        },
        Case {
            what: "envelope without any DSN key",
            url: env.clone(),
            headers: vec![],
            body: format!(
                "{{}}\n{{\"type\":\"event\"}}\n{}\n",
                std::str::from_utf8(ev).unwrap()
            )
            .into_bytes(),
            status: 401,
            says: "DSN key",
        },
        Case {
            what: "unreadable X-Sentry-Auth",
            url: env.clone(),
            headers: vec![("X-Sentry-Auth", "Basic abc")],
            body: b"{}\n".to_vec(),
            status: 401,
            says: "X-Sentry-Auth",
        },
        Case {
            what: "project id that is not a number",
            url: format!("{}/api/web/envelope/", agent.url()),
            headers: vec![AUTH],
            body: b"{}\n".to_vec(),
            status: 404,
            says: "project",
        },
        Case {
            what: "huge envelope",
            url: env.clone(),
            headers: vec![AUTH],
            body: huge.clone(),
            status: 413,
            says: "limit of 1048576 bytes",
        },
        Case {
            what: "gzip bomb envelope",
            url: env.clone(),
            headers: vec![AUTH, gz],
            body: bomb.clone(),
            status: 413,
            says: "limit of 1048576 bytes",
        },
        Case {
            what: "store body that is not JSON",
            url: store.clone(),
            headers: vec![AUTH, js],
            body: b"<html>".to_vec(),
            status: 400,
            says: "JSON",
        },
        Case {
            what: "store JSON that is not an object",
            url: store.clone(),
            headers: vec![AUTH, js],
            body: b"[1,2,3]".to_vec(),
            status: 400,
            says: "",
        },
    ];
    let mut failures = Vec::new();
    for c in &cases {
        let (status, body) = post(&c.url, &c.headers, c.body.clone());
        println!(
            "{:<40} → {status} {}",
            c.what,
            body.trim().chars().take(140).collect::<String>()
        );
        if status != c.status || !body.to_lowercase().contains(&c.says.to_lowercase()) {
            failures.push(format!(
                "{}: want {} mentioning {:?}, got {status} {body:?}",
                c.what, c.status, c.says
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let (status, _) = post(&store, &[AUTH, js], ev.to_vec());
    assert_eq!(status, 200, "a good event after all that is still taken");
    // Refusals by the handlers are counted (the body limit answers before them).
    assert_eq!(
        agent.metric("calm_agent_sentry_invalid_total"),
        Some(8.0),
        "relay refusals counted"
    );
    assert_eq!(
        agent.metric("calm_agent_otlp_invalid_total"),
        Some(4.0),
        "OTLP refusals counted"
    );
    let hwm = agent.peak_rss_kib().expect("VmHWM");
    println!("agent peak RSS after the bad input: {} MiB", hwm / 1024);
    assert!(
        hwm < 256 * 1024,
        "peak RSS {hwm} KiB: a 64 MiB bomb must not be inflated in memory"
    );
}

/// Opens a connection and sends `head` one byte every `every`, reading what comes back;
/// returns how long until the server closed the connection (None: still open at `give_up`).
fn trickle(addr: &str, head: &[u8], every: Duration, give_up: Duration) -> Option<Duration> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
    let t0 = Instant::now();
    let mut i = 0;
    let mut buf = [0u8; 1024];
    while t0.elapsed() < give_up {
        if i < head.len() && s.write_all(&head[i..i + 1]).is_err() {
            return Some(t0.elapsed());
        }
        i += 1;
        let step = Instant::now();
        while step.elapsed() < every {
            match s.read(&mut buf) {
                Ok(0) => return Some(t0.elapsed()),
                Ok(_) => {} // a 408 or similar before the close is fine
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return Some(t0.elapsed()),
            }
        }
    }
    None
}

#[test]
fn slow_clients_are_cut_off_by_the_header_timeout_while_others_are_served() {
    let (_c, agent) = start();
    // A request head that never ends, one byte every 200 ms, on both listeners, and a
    // crowd of idle connections that never send anything.
    let head = b"POST /v1/metrics HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let idle: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(("127.0.0.1", agent.port())).expect("connect"))
        .collect();
    let addrs = [
        format!("127.0.0.1:{}", agent.otlp_port()),
        format!("127.0.0.1:{}", agent.port()),
    ];
    let slow: Vec<_> = addrs
        .iter()
        .cloned()
        .map(|a| {
            std::thread::spawn(move || {
                trickle(
                    &a,
                    head,
                    Duration::from_millis(200),
                    Duration::from_secs(40),
                )
            })
        })
        .collect();
    // Meanwhile, normal requests are served.
    std::thread::sleep(Duration::from_secs(1));
    let t = Instant::now();
    let ok = client()
        .get(format!("{}/healthz", agent.url()))
        .send()
        .map(|r| r.status().as_u16());
    assert_eq!(ok.ok(), Some(200), "healthz while slow clients hang");
    println!(
        "healthz answered in {:?} with 200 idle and 2 trickling connections",
        t.elapsed()
    );
    for (h, a) in slow.into_iter().zip(addrs) {
        let closed = h.join().expect("trickle thread");
        println!("slow client on {a}: closed after {closed:?}");
        let closed = closed
            .unwrap_or_else(|| panic!("{a}: a request head trickling for 40 s was never cut off"));
        assert!(
            closed >= Duration::from_secs(5),
            "{a}: closed after {closed:?}, before the client even stalled"
        );
    }
    // The idle ones are closed too.
    let mut closed = 0;
    for mut s in idle {
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut b = [0u8; 16];
        if matches!(s.read(&mut b), Ok(0) | Err(_)) {
            closed += 1;
        }
    }
    println!("idle connections closed by the agent: {closed} of 200");
    assert!(
        closed >= 190,
        "only {closed} of 200 idle connections were closed"
    );
    let mut agent = agent;
    assert!(agent.is_running(), "the agent is still up");
}
