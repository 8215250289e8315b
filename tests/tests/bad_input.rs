//! Bad input gets a clear answer: every malformed remote-write or OTLP request gets a
//! 4xx whose body names the problem, nothing of it is stored, and the collector keeps
//! serving (a valid write right after succeeds, /healthz says 200).

use calm_tests::write::{post, request, series, Answer, RemoteWriter};
use calm_tests::{now_ms, Collector};
use calm_wire::prompb::{Label, Sample, TimeSeries, WriteRequest};
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

const MAX_BODY: usize = 1024 * 1024;

fn series_with(labels: Vec<Label>) -> TimeSeries {
    TimeSeries {
        labels,
        samples: vec![Sample {
            value: 1.0,
            timestamp: now_ms(),
        }],
        exemplars: vec![],
        histograms: vec![],
    }
}

fn one(ts: TimeSeries) -> WriteRequest {
    request(vec![ts])
}

/// Checks the collector is still fine after a bad request: a valid write is accepted,
/// its sample can be read back, and /healthz says 200.
fn still_serving(c: &mut Collector, w: &RemoteWriter, after: &str, n: usize) {
    assert!(
        c.is_running(),
        "the collector process died after {after}; log:\n{}",
        c.log_tail(30)
    );
    let ts = now_ms();
    let value = n as f64 + 0.5;
    let ans = w
        .send(&request(vec![series(
            "calm_bad_input_ok",
            &[("after", &n.to_string())],
            &[(ts, value)],
        )]))
        .unwrap_or_else(|e| panic!("valid write after {after} failed: {e:#}"));
    assert!(
        ans.ok(),
        "valid write after {after} was refused: HTTP {} {}",
        ans.status,
        ans.body
    );
    let got = c
        .api()
        .query_vector(&format!("calm_bad_input_ok{{after=\"{n}\"}}"), Some(ts))
        .unwrap_or_else(|e| panic!("query after {after}: {e:#}"));
    assert_eq!(
        got.len(),
        1,
        "the valid write after {after} is not readable: {got:?}"
    );
    assert_eq!(
        got[0].value, value,
        "the valid write after {after}: {got:?}"
    );
    let (status, body) = c.api().get("/healthz").expect("GET /healthz");
    assert_eq!(status, 200, "/healthz after {after}: {body}");
}

/// Asserts a 4xx (exactly `status` if given) whose body contains every key word.
fn assert_refused(what: &str, ans: &Answer, status: Option<u16>, words: &[&str]) {
    match status {
        Some(s) => assert_eq!(
            ans.status, s,
            "{what}: expected HTTP {s}, got {} with body {:?}",
            ans.status, ans.body
        ),
        None => assert!(
            (400..500).contains(&ans.status),
            "{what}: expected a 4xx, got {} with body {:?}",
            ans.status,
            ans.body
        ),
    }
    let lower = ans.body.to_lowercase();
    for w in words {
        assert!(
            lower.contains(&w.to_lowercase()),
            "{what}: HTTP {} body does not name the problem (no {w:?}): {:?}",
            ans.status,
            ans.body
        );
    }
}

/// (what, body, the expected status or None for any 4xx, key words of the answer)
type Case = (&'static str, Vec<u8>, Option<u16>, Vec<&'static str>);

#[test]
fn remote_write_bad_input_gets_a_clear_4xx_and_nothing_breaks() {
    let mut c = Collector::start_with(&["--max-body-bytes", &MAX_BODY.to_string()]);
    let w = RemoteWriter::new(&c.write_url());
    let mut n = 0;
    still_serving(&mut c, &w, "start-up", n);

    let valid = calm_wire::remote_write::encode(&one(series_with(vec![
        Label::new("__name__", "calm_bad_truncated"),
        Label::new("job", "x"),
    ])));

    // (what, body, expected status or any 4xx, key words)
    let mut cases: Vec<Case> = Vec::new();
    cases.push((
        "truncated snappy",
        valid[..valid.len() / 2].to_vec(),
        Some(400),
        vec!["snappy"],
    ));
    cases.push((
        "framed snappy instead of block format",
        {
            let mut enc = snap::write::FrameEncoder::new(Vec::new());
            std::io::Write::write_all(&mut enc, b"not a write request").unwrap();
            enc.into_inner().unwrap()
        },
        Some(400),
        vec!["snappy"],
    ));
    cases.push((
        "garbage protobuf",
        snap::raw::Encoder::new().compress_vec(&[0xff; 64]).unwrap(),
        Some(400),
        vec!["protobuf"],
    ));
    // A valid request whose decompressed size is > 2 MiB (the limit is 1 MiB).
    let big = request(
        (0..20_000)
            .map(|i| {
                series_with(vec![
                    Label::new("__name__", "calm_bad_oversized"),
                    Label::new("i", i.to_string()),
                    Label::new("pad", "x".repeat(100)),
                ])
            })
            .collect(),
    );
    let big_body = calm_wire::remote_write::encode(&big);
    assert!(prost::Message::encoded_len(&big) > 2 * MAX_BODY);
    cases.push(("oversized body", big_body, Some(413), vec!["limit"]));
    // A tiny body whose snappy header claims 2 GiB: must be refused without allocating.
    cases.push((
        "snappy header claiming 2 GiB",
        vec![0x80, 0x80, 0x80, 0x80, 0x08, 0x00, 0x01, 0x02],
        Some(413),
        vec!["limit"],
    ));
    let label_cases: Vec<(&str, Vec<Label>, &str)> = vec![
        (
            "invalid label name",
            vec![
                Label::new("__name__", "calm_bad_label_name"),
                Label::new("bad-name", "x"),
            ],
            "invalid label name",
        ),
        (
            "duplicate label names",
            vec![
                Label::new("__name__", "calm_bad_duplicate"),
                Label::new("job", "a"),
                Label::new("job", "b"),
            ],
            "duplicate",
        ),
        (
            "empty label name",
            vec![
                Label::new("__name__", "calm_bad_empty_name"),
                Label::new("", "x"),
            ],
            "empty label name",
        ),
        (
            "series without __name__",
            vec![Label::new("job", "calm_bad_no_name")],
            "metric name",
        ),
        (
            "series with 100 labels",
            std::iter::once(Label::new("__name__", "calm_bad_too_many"))
                .chain((0..99).map(|i| Label::new(format!("l{i:02}"), "v")))
                .collect(),
            "labels",
        ),
    ];
    for (what, labels, word) in label_cases {
        cases.push((
            what,
            calm_wire::remote_write::encode(&one(series_with(labels))),
            Some(400),
            vec![word],
        ));
    }

    for (what, body, status, words) in cases {
        let ans = w
            .send_raw(body)
            .unwrap_or_else(|e| panic!("{what}: no HTTP answer: {e:#}"));
        assert_refused(what, &ans, status, &words);
        n += 1;
        still_serving(&mut c, &w, what, n);
    }

    // A Remote-Write 2.0 request (as Prometheus 3 sends with protobuf_message:
    // io.prometheus.write.v2.Request) decodes as an empty 1.0 request: it must get 415,
    // so the sender falls back, rather than a 204 that drops its samples.
    let v2 = reqwest::blocking::Client::new()
        .post(c.write_url())
        .header("Content-Encoding", "snappy")
        .header(
            "Content-Type",
            "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        )
        .header("X-Prometheus-Remote-Write-Version", "2.0.0")
        .body(valid.clone())
        .send()
        .expect("POST a 2.0 request");
    let status = v2.status().as_u16();
    let text = v2.text().unwrap_or_default();
    assert_eq!(status, 415, "Remote-Write 2.0 request: {text}");
    assert!(text.contains("prometheus.WriteRequest"), "{text}");
    n += 1;
    still_serving(&mut c, &w, "Remote-Write 2.0 request", n);

    // An incompressible body larger than the limit on the wire: refused (413, or 400
    // for its meaningless snappy header), promptly and without harm. (A fresh client:
    // what happens to the keep-alive connection is checked by its own test below.)
    let fresh = RemoteWriter::new(&c.write_url());
    match fresh.send_raw(noise(2 * MAX_BODY)) {
        Ok(ans) => assert!(
            ans.status == 413 || ans.status == 400,
            "2 MiB of noise: expected 413 or 400, got {} {:?}",
            ans.status,
            ans.body
        ),
        // Closing the connection on an oversized upload is acceptable too.
        Err(e) => eprintln!("2 MiB of noise: connection closed early: {e:#}"),
    }
    n += 1;
    still_serving(&mut c, &w, "2 MiB of noise", n);

    // Nothing of the refused requests was stored.
    let api = c.api();
    for name in [
        "calm_bad_truncated",
        "calm_bad_oversized",
        "calm_bad_label_name",
        "calm_bad_duplicate",
        "calm_bad_empty_name",
        "calm_bad_too_many",
    ] {
        let got = api
            .query_vector(name, None)
            .unwrap_or_else(|e| panic!("query {name}: {e:#}"));
        assert!(got.is_empty(), "refused series {name} was stored: {got:?}");
    }
    let got = api
        .query_vector("{job=\"calm_bad_no_name\"}", None)
        .unwrap_or_else(|e| panic!("query {{job=\"calm_bad_no_name\"}}: {e:#}"));
    assert!(
        got.is_empty(),
        "refused nameless series was stored: {got:?}"
    );
}

/// `len` bytes of xorshift noise (incompressible, no valid snappy header).
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Reads one HTTP/1.1 response (head and Content-Length body) from `s`.
fn read_response(s: &mut TcpStream) -> std::io::Result<(String, String)> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "connection closed after {} bytes of response head",
                    buf.len()
                ),
            ));
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    Ok((head, String::from_utf8_lossy(&body).into_owned()))
}

/// A server that refuses an upload before reading all of it must either read (drain)
/// the rest and keep the connection usable, or say `Connection: close`. Otherwise a
/// keep-alive client (Prometheus' Go client, reqwest) sends its next request into a
/// connection the server has dropped, and that request fails.
#[test]
fn oversized_upload_leaves_keep_alive_clients_working() {
    let c = Collector::start_with(&["--max-body-bytes", &MAX_BODY.to_string()]);
    let mut s = TcpStream::connect(("127.0.0.1", c.port())).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let body = noise(2 * MAX_BODY);
    let head = format!(
        "POST /api/v1/write HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Encoding: snappy\r\n\
         Content-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut ws = s.try_clone().unwrap();
    let uploader = std::thread::spawn(move || {
        ws.write_all(head.as_bytes())
            .and_then(|_| ws.write_all(&body))
    });
    let (head1, body1) = read_response(&mut s).expect("an answer to the oversized upload");
    let uploaded = uploader.join().unwrap();
    assert!(
        head1.starts_with("http/1.1 413") || head1.starts_with("http/1.1 400"),
        "oversized upload: expected 413 or 400, got:\n{head1}{body1}"
    );
    if head1.contains("connection: close") {
        return; // The client knows not to reuse the connection.
    }
    let valid = calm_wire::remote_write::encode(&request(vec![series(
        "calm_keep_alive_probe",
        &[],
        &[(now_ms(), 1.0)],
    )]));
    let second = format!(
        "POST /api/v1/write HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Encoding: snappy\r\n\
         Content-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
        valid.len()
    );
    let answer = s
        .write_all(second.as_bytes())
        .and_then(|_| s.write_all(&valid))
        .and_then(|_| read_response(&mut s));
    match answer {
        Ok((head2, body2)) => assert!(
            head2.starts_with("http/1.1 20"),
            "the valid request after the oversized upload, on the same connection: \
             {head2}{body2}"
        ),
        Err(e) => panic!(
            "the collector answered the oversized upload with\n{}\n\n{}\nwithout \
             `Connection: close`, then dropped the connection (upload: {:?}); the next \
             request on it failed: {e}. Keep-alive clients (Prometheus, reqwest) see this \
             as a failed request. Send `Connection: close` with such answers, or drain \
             the body.",
            head1.trim_end(),
            body1,
            uploaded.err()
        ),
    }
}

#[test]
fn label_limit_boundary_64_labels_is_accepted() {
    let mut c = Collector::start();
    let w = RemoteWriter::new(&c.write_url());
    // 64 labels, __name__ included: exactly at the default limit.
    let labels: Vec<Label> = std::iter::once(Label::new("__name__", "calm_sixty_four"))
        .chain((0..63).map(|i| Label::new(format!("l{i:02}"), "v")))
        .collect();
    let ts = now_ms();
    let ans = w
        .send(&one(TimeSeries {
            labels,
            samples: vec![Sample {
                value: 64.0,
                timestamp: ts,
            }],
            exemplars: vec![],
            histograms: vec![],
        }))
        .expect("write");
    assert!(
        ans.ok(),
        "a series with 64 labels (the default limit) was refused: HTTP {} {}",
        ans.status,
        ans.body
    );
    let got = c
        .api()
        .query_vector("calm_sixty_four", Some(ts))
        .expect("query");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].labels.len(), 64, "{:?}", got[0].labels);
    assert!(c.is_running());
}

#[test]
fn otlp_bad_input_gets_a_400() {
    let mut c = Collector::start();
    let url = format!("{}/v1/metrics", c.url());
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "OTLP garbage protobuf",
            "application/x-protobuf",
            vec![0xff; 64],
        ),
        (
            "OTLP truncated protobuf",
            "application/x-protobuf",
            // field 1 (resource_metrics), length 100, then only 3 bytes.
            vec![0x0a, 100, 1, 2, 3],
        ),
        (
            "OTLP garbage JSON",
            "application/json",
            b"{not json".to_vec(),
        ),
    ];
    for (what, ct, body) in cases {
        let ans = post(&url, ct, body).unwrap_or_else(|e| panic!("{what}: {e:#}"));
        assert_eq!(
            ans.status, 400,
            "{what}: expected 400, got {} {:?}",
            ans.status, ans.body
        );
        assert!(
            !ans.body.trim().is_empty(),
            "{what}: 400 with an empty body"
        );
        assert!(c.is_running(), "collector died after {what}");
        let (status, body) = c.api().get("/healthz").expect("GET /healthz");
        assert_eq!(status, 200, "/healthz after {what}: {body}");
    }
}
