//! Serving HTTP for `calm-collector` and `calm-agent`, with the ceilings a server on a
//! network needs against slow, stalled and greedy clients:
//!
//! ```text
//! open connections over max_connections     → new ones wait in the kernel's backlog
//!                                              until one closes (stalled ones close at
//!                                              the header timeout)
//! request head not complete in header_read_timeout → connection closed
//! keep-alive connection idle for idle_timeout      → connection closed
//! request body not complete in body_read_timeout   → 408, connection closed
//! bodies held in memory over inflight_body_bytes   → 503 + Retry-After, connection closed
//! body over max_body_bytes (wire or decompressed)  → 413 naming the limit
//! ```
//!
//! The in-flight budget counts the bytes of request bodies being read, after
//! gzip/deflate decompression on the routes that decompress ([`with_body_limits`]), and
//! as sent on the others; a request's bytes count until its answer is ready. A body
//! that would take the total past the budget fails at once with 503, so a few clients
//! holding half-sent, highly compressed bodies cannot take the process's memory.
//!
//! Idle keep-alive: hyper starts its head timer when a connection waits for the next
//! request, so an idle connection is closed after `min(idle_timeout, header_read_timeout)`
//! (the idle timer is the header timer; `idle_timeout` larger than it has no effect).

pub mod config;
pub mod histogram;

use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt;
use tower_http::decompression::RequestDecompressionLayer;

/// The ceilings of one server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Longest wait for a complete request head (also the keep-alive idle limit).
    pub header_read_timeout: Duration,
    /// Longest time to receive a whole request body, from the end of its head.
    pub body_read_timeout: Duration,
    /// Longest a keep-alive connection may sit idle (capped by `header_read_timeout`).
    pub idle_timeout: Duration,
    /// Most bytes of request bodies held at once, all requests together.
    pub inflight_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            inflight_body_bytes: 256 << 20,
        }
    }
}

/// What the server counted (exported by the programs at `/metrics`).
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted.
    pub connections_accepted: AtomicU64,
    /// Connections open now.
    pub connections_open: AtomicU64,
    /// Requests refused because the body budget was spent (503).
    pub body_budget_refusals: AtomicU64,
    /// Requests whose body did not arrive within `body_read_timeout` (408).
    pub body_timeouts: AtomicU64,
    /// Body bytes held now.
    pub inflight_body_bytes: AtomicUsize,
    /// Request durations by route template, method and status (`calm_http_request_duration_seconds`).
    pub requests: Arc<histogram::RequestDurations>,
}

/// The shared body budget and counters of one server (clone it into the layers).
#[derive(Debug, Clone)]
pub struct Server {
    pub limits: Limits,
    pub stats: Arc<Stats>,
}

impl Server {
    pub fn new(limits: Limits) -> Server {
        Server {
            limits,
            stats: Arc::new(Stats::default()),
        }
    }

    /// A server whose request durations go to `requests` (shared by a program's
    /// listeners, so `/metrics` shows one histogram).
    pub fn with_request_durations(
        limits: Limits,
        requests: Arc<histogram::RequestDurations>,
    ) -> Server {
        Server {
            limits,
            stats: Arc::new(Stats {
                requests,
                ..Stats::default()
            }),
        }
    }

    /// Marks `app` as served behind a forwarding router that was [`Server::guard`]ed:
    /// its matched route reaches the request timer through the response.
    pub fn forwarded(&self, app: Router) -> Router {
        app.layer(middleware::from_fn(histogram::remember_route))
    }

    /// Wraps `app` with the body deadline and the in-flight budget (outermost layers),
    /// and around them the request timer ([`histogram`]: every answer counted, the
    /// 408/503 of the guard included). Routes that decompress should use
    /// [`with_body_limits`] so decompressed bytes are what count.
    pub fn guard(&self, app: Router) -> Router {
        app.layer(middleware::from_fn_with_state(self.clone(), guard))
            .layer(middleware::from_fn_with_state(
                self.stats.requests.clone(),
                histogram::time,
            ))
    }

    /// Serves `app` (already [`Server::guard`]ed) on `listener` until `shutdown`
    /// resolves, then lets open requests finish (up to 5 s).
    pub async fn serve(
        &self,
        listener: TcpListener,
        app: Router,
        shutdown: impl Future<Output = ()> + Send,
    ) {
        let mut builder = Builder::new(TokioExecutor::new());
        let head_timeout = self
            .limits
            .header_read_timeout
            .min(self.limits.idle_timeout);
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(head_timeout);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(self.limits.idle_timeout));
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let permits = Arc::new(Semaphore::new(self.limits.max_connections.max(1)));
        tokio::pin!(shutdown);
        loop {
            // At the cap, stop accepting: new connections wait in the backlog.
            let permit = tokio::select! {
                p = permits.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
                _ = &mut shutdown => break,
            };
            let (stream, peer) = tokio::select! {
                conn = listener.accept() => match conn {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: wait instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            self.stats
                .connections_accepted
                .fetch_add(1, Ordering::Relaxed);
            self.stats.connections_open.fetch_add(1, Ordering::Relaxed);
            let svc = app
                .clone()
                .map_request(move |mut req: Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    req
                });
            let svc = TowerToHyperService::new(svc);
            let stats = self.stats.clone();
            let builder = builder.clone();
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                // hyper's head timer starts only once it has told HTTP/1 from HTTP/2.
                if first_bytes(&stream, head_timeout).await {
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                    let _ = watcher.watch(conn.into_owned()).await;
                }
                stats.connections_open.fetch_sub(1, Ordering::Relaxed);
                drop(permit);
            });
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
    }
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Waits until the client has sent enough to tell HTTP/1 from HTTP/2 (the first byte
/// that is not the HTTP/2 preface's, or the whole preface); false when it has not
/// within `timeout` or closed.
async fn first_bytes(stream: &TcpStream, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = [0u8; 24];
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(Ok(n)) => n,
            _ => return false,
        };
        if n == 0 {
            return false;
        }
        if n >= H2_PREFACE.len() || buf[..n] != H2_PREFACE[..n] {
            return true;
        }
        // Part of the preface: wait for the rest (peek returns at once while data is there).
        if tokio::time::timeout_at(deadline, tokio::time::sleep(Duration::from_millis(20)))
            .await
            .is_err()
        {
            return false;
        }
    }
}

/// One request's share of the budget: what it holds and why it failed, if it did.
#[derive(Debug)]
struct Charge {
    stats: Arc<Stats>,
    budget: usize,
    held: AtomicUsize,
    over_budget: AtomicBool,
    timed_out: AtomicBool,
}

impl Charge {
    /// Takes `n` more bytes; false (and nothing taken) when that passes the budget.
    fn take(&self, n: usize) -> bool {
        let total = &self.stats.inflight_body_bytes;
        let mut cur = total.load(Ordering::Relaxed);
        loop {
            let next = cur.saturating_add(n);
            if next > self.budget {
                self.over_budget.store(true, Ordering::Relaxed);
                return false;
            }
            match total.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => {
                    self.held.fetch_add(n, Ordering::Relaxed);
                    return true;
                }
                Err(c) => cur = c,
            }
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        let held = *self.held.get_mut();
        self.stats
            .inflight_body_bytes
            .fetch_sub(held, Ordering::AcqRel);
    }
}

/// A body that charges its bytes to the request's [`Charge`] and fails when the
/// budget is spent or (if `deadline` is set) when it is not complete in time.
struct CountedBody {
    inner: Body,
    charge: Arc<Charge>,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

#[derive(Debug)]
struct BodyError(&'static str);

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for BodyError {}

impl hyper::body::Body for CountedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Some(d) = this.deadline.as_mut() {
            if d.as_mut().poll(cx).is_ready() {
                this.charge.timed_out.store(true, Ordering::Relaxed);
                return Poll::Ready(Some(Err(axum::Error::new(BodyError(
                    "request body not received in time",
                )))));
            }
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if !this.charge.take(data.len()) {
                        return Poll::Ready(Some(Err(axum::Error::new(BodyError(
                            "the server holds too many request body bytes",
                        )))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Encodings that a decompression layer inside counts itself.
fn decompressed_inside(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let v = v.trim().to_ascii_lowercase();
            v == "gzip" || v == "deflate" || v == "x-gzip"
        })
}

async fn guard(State(server): State<Server>, mut req: Request, next: Next) -> Response {
    let stats = server.stats.clone();
    let budget = server.limits.inflight_body_bytes;
    if stats.inflight_body_bytes.load(Ordering::Relaxed) >= budget && has_body(&req) {
        return over_budget(&server);
    }
    let charge = Arc::new(Charge {
        stats: stats.clone(),
        budget,
        held: AtomicUsize::new(0),
        over_budget: AtomicBool::new(false),
        timed_out: AtomicBool::new(false),
    });
    let deadline = Some(Box::pin(tokio::time::sleep(
        server.limits.body_read_timeout,
    )));
    let count_here = !decompressed_inside(&req);
    let c = charge.clone();
    req = req.map(move |b| {
        Body::new(CountedBody {
            inner: b,
            charge: c,
            deadline,
        })
    });
    if count_here {
        req.extensions_mut().insert(Counted);
    }
    req.extensions_mut().insert(charge.clone());
    let resp = next.run(req).await;
    if charge.timed_out.load(Ordering::Relaxed) {
        stats.body_timeouts.fetch_add(1, Ordering::Relaxed);
        return close(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "request body not received within {} s (body_read_timeout)\n",
                server.limits.body_read_timeout.as_secs_f64()
            ),
            None,
        );
    }
    if charge.over_budget.load(Ordering::Relaxed) {
        return over_budget(&server);
    }
    resp
}

/// Marks a request whose body the outer guard already counts.
#[derive(Clone, Copy)]
struct Counted;

/// Counts the decompressed body (placed inside a decompression layer).
async fn count_decompressed(mut req: Request, next: Next) -> Response {
    if req.extensions().get::<Counted>().is_none() {
        if let Some(charge) = req.extensions().get::<Arc<Charge>>().cloned() {
            req.extensions_mut().insert(Counted);
            req = req.map(move |b| {
                Body::new(CountedBody {
                    inner: b,
                    charge,
                    deadline: None,
                })
            });
        }
    }
    next.run(req).await
}

fn has_body(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.trim() != "0")
        && !matches!(
            *req.method(),
            axum::http::Method::GET | axum::http::Method::HEAD
        )
}

fn over_budget(server: &Server) -> Response {
    server
        .stats
        .body_budget_refusals
        .fetch_add(1, Ordering::Relaxed);
    close(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "the server already holds {} bytes of request bodies (inflight_body_bytes); retry shortly\n",
            server.limits.inflight_body_bytes
        ),
        Some("2"),
    )
}

fn close(code: StatusCode, msg: String, retry_after: Option<&'static str>) -> Response {
    let mut resp = (code, msg).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Some(s) = retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from_static(s));
    }
    resp
}

/// Adds gzip/deflate decompression (its output counted against the budget), the body
/// limit (`max_body` bytes, decompressed) with a 413 that names it, to `router`'s routes.
pub fn with_body_limits(router: Router, max_body: usize) -> Router {
    router
        .layer(middleware::from_fn(count_decompressed))
        .layer(RequestDecompressionLayer::new())
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(max_body, explain_too_large))
}

/// The middleware function behind [`count_layer`].
type CountFn = fn(Request, Next) -> Pin<Box<dyn Future<Output = Response> + Send>>;
/// What [`count_layer`] returns.
pub type CountLayer = axum::middleware::FromFnLayer<CountFn, (), (Request,)>;

/// Counts a decompressed body against the budget: add it as a layer directly inside
/// a `RequestDecompressionLayer` (as [`with_body_limits`] does).
pub fn count_layer() -> CountLayer {
    middleware::from_fn(|req, next| Box::pin(count_decompressed(req, next)))
}

/// Rewrites a 413 into a message that names the limit, and closes the connection (the
/// rest of the upload was never read, so the connection cannot carry another request).
pub async fn explain_too_large(State(limit): State<usize>, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    if resp.status() != StatusCode::PAYLOAD_TOO_LARGE {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    parts
        .headers
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    let own = parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/plain"));
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = match axum::body::to_bytes(body, 64 * 1024).await {
        Ok(b)
            if own
                && b.windows(5).any(|w| w == b"limit")
                && !b.starts_with(b"Failed to buffer") =>
        {
            Body::from(b)
        }
        _ => Body::from(format!(
            "request body is larger than the limit of {limit} bytes (set with --max-body-bytes / max_body_bytes)\n"
        )),
    };
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Response::from_parts(parts, body)
}

/// The peer of a request served by [`Server::serve`].
pub fn peer(req_ext: &axum::http::Extensions) -> Option<SocketAddr> {
    req_ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0)
}

/// The `[limits]` keys of the serving layer, typed when the config file is read
/// (durations as `10s`, `500ms`, `2m`). The agent's `[limits]` is this; the collector's
/// holds the same keys beside its own.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    /// Most connections served at once (default 1024).
    pub max_connections: usize,
    /// Longest wait for a complete request head (default 10s).
    pub header_read_timeout: config::Duration,
    /// Longest time to receive a whole request body (default 60s).
    pub body_read_timeout: config::Duration,
    /// Longest a keep-alive connection sits idle (default 60s; capped by header_read_timeout).
    pub idle_timeout: config::Duration,
    /// Most bytes of request bodies (decompressed) held at once (default 268435456).
    pub inflight_body_bytes: config::ByteSize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            max_connections: 1024,
            header_read_timeout: config::Duration::from_secs(10),
            body_read_timeout: config::Duration::from_secs(60),
            idle_timeout: config::Duration::from_secs(60),
            inflight_body_bytes: config::ByteSize(256 << 20),
        }
    }
}

impl ServeConfig {
    /// Checks the values (keys under `section`, e.g. `limits`), naming where a wrong
    /// one came from.
    pub fn check(&self, section: &str, origin: &config::Origin) -> Result<(), config::ConfigError> {
        origin.range(
            &format!("{section}.max_connections"),
            self.max_connections,
            1,
            1 << 20,
        )?;
        for (key, d) in [
            ("header_read_timeout", self.header_read_timeout),
            ("body_read_timeout", self.body_read_timeout),
            ("idle_timeout", self.idle_timeout),
        ] {
            origin.check(
                !d.is_zero(),
                &format!("{section}.{key}"),
                &d,
                "expected a duration above 0 like \"10s\"",
            )?;
        }
        origin.at_least(
            &format!("{section}.inflight_body_bytes"),
            self.inflight_body_bytes.get(),
            1024,
        )
    }

    /// The limits.
    pub fn limits(&self) -> Limits {
        Limits {
            max_connections: self.max_connections,
            header_read_timeout: self.header_read_timeout.get(),
            body_read_timeout: self.body_read_timeout.get(),
            idle_timeout: self.idle_timeout.get(),
            inflight_body_bytes: self.inflight_body_bytes.as_usize(),
        }
    }
}

/// `250ms`, `10s`, `2m`, `1h`, `1.5s`, `15d` (see [`config::parse_duration`]; a bare
/// number other than `0` is refused).
pub fn parse_duration(s: &str) -> Option<Duration> {
    config::parse_duration(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration("10"), None);
        let origin = config::Origin::default();
        assert!(ServeConfig::default().check("limits", &origin).is_ok());
    }
}
