//! A webhook receiver for the alerting tests: a tiny HTTP/1.1 server on a loopback
//! port (std only) that records every POST and answers as the test says — 200, an
//! error status, hang without answering, or close the connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 200 OK.
    Ok,
    /// This status code.
    Status(u16),
    /// Never answer (until the mode changes and the client gave up).
    Hang,
    /// Close the connection without a response.
    Close,
}

/// One request received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Request path.
    pub path: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// Every header, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// The body as JSON (Null if it was not JSON).
    pub body: serde_json::Value,
    /// When it arrived.
    pub at: Instant,
    /// How it was answered.
    pub answered: Mode,
}

#[derive(Default)]
struct Shared {
    mode: Option<Mode>,
    got: Vec<Received>,
}

/// The receiver; stops accepting when dropped (its thread ends with the test).
pub struct WebhookReceiver {
    port: u16,
    shared: Arc<Mutex<Shared>>,
}

impl WebhookReceiver {
    /// Starts listening on a free loopback port, answering 200.
    pub fn start() -> WebhookReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let shared = Arc::new(Mutex::new(Shared {
            mode: Some(Mode::Ok),
            got: Vec::new(),
        }));
        let s = shared.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let s = s.clone();
                std::thread::spawn(move || serve(conn, s));
            }
        });
        WebhookReceiver { port, shared }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Changes how requests are answered from now on.
    pub fn set_mode(&self, m: Mode) {
        self.lock().mode = Some(m);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.lock().got.clone()
    }

    /// Requests to `path` that were answered 200.
    pub fn delivered(&self, path: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.path == path && r.answered == Mode::Ok)
            .collect()
    }

    /// Waits until a delivered request to `path` satisfies `pred`.
    pub fn wait_for(
        &self,
        path: &str,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<Received> {
        crate::wait_for(timeout, Duration::from_millis(50), || {
            self.delivered(path).into_iter().find(|r| pred(&r.body))
        })
    }
}

fn serve(conn: TcpStream, s: Arc<Mutex<Shared>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(120)));
    let mut reader = BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut out = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut len = 0usize;
        let mut auth = None;
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                let k = k.trim().to_ascii_lowercase();
                headers.push((k.clone(), v.trim().to_string()));
                if k == "content-length" {
                    len = v.trim().parse().unwrap_or(0);
                } else if k == "authorization" {
                    auth = Some(v.trim().to_string());
                }
            }
        }
        let mut body = vec![0u8; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let mode = s
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .mode
            .unwrap_or(Mode::Ok);
        s.lock()
            .unwrap_or_else(|e| e.into_inner())
            .got
            .push(Received {
                path,
                authorization: auth,
                headers,
                body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
                at: Instant::now(),
                answered: mode,
            });
        match mode {
            Mode::Ok => {
                let _ = out.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
            }
            Mode::Status(c) => {
                let msg = format!("HTTP/1.1 {c} Error\r\nContent-Length: 13\r\n\r\nreceiver down");
                let _ = out.write_all(msg.as_bytes());
            }
            Mode::Hang => {
                std::thread::sleep(Duration::from_secs(60));
                return;
            }
            Mode::Close => {
                let _ = out.shutdown(std::net::Shutdown::Both);
                return;
            }
        }
    }
}

/// An RFC 3339 time (any fraction, `Z`) → ms since the epoch (0 when malformed).
pub fn rfc3339_ms(s: &str) -> i64 {
    let (date, time) = s.split_once('T').unwrap_or(("", ""));
    let time = time.trim_end_matches('Z');
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let d: Vec<i64> = date.split('-').filter_map(|x| x.parse().ok()).collect();
    let h: Vec<i64> = hms.split(':').filter_map(|x| x.parse().ok()).collect();
    if d.len() != 3 || h.len() != 3 {
        return 0;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m, dd) = (if d[1] <= 2 { d[0] - 1 } else { d[0] }, d[1], d[2]);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + dd - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let mut ms_frac = 0;
    for (i, c) in frac.chars().take(3).enumerate() {
        ms_frac += (c as i64 - '0' as i64) * [100, 10, 1][i];
    }
    (days * 86_400 + h[0] * 3600 + h[1] * 60 + h[2]) * 1000 + ms_frac
}
