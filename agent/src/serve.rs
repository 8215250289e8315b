//! Serving HTTP with the limits a sidecar needs against misbehaving clients:
//!
//! ```text
//! request head not complete within 10 s      → connection closed (slowloris)
//! request body stalls for 30 s between chunks → 408
//! body over the limit (on the wire or after gzip/deflate) → 413 naming the limit
//! ```
//! `axum::serve` has no header read timeout, so connections are served by hyper-util's
//! builder directly, with graceful shutdown.

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use std::time::Duration;
use tokio::net::TcpListener;
use tower_http::decompression::RequestDecompressionLayer;
use tower_http::timeout::RequestBodyTimeoutLayer;

/// Longest wait for a complete request head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest pause between two body chunks.
pub const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Adds decompression, the body limit (`max_body` bytes, decompressed) with a 413 that
/// names it, and the body timeout to `router`'s routes.
pub fn with_body_limits(router: Router, max_body: usize) -> Router {
    router
        .layer(RequestDecompressionLayer::new())
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(max_body, explain_too_large))
        .layer(RequestBodyTimeoutLayer::new(BODY_IDLE_TIMEOUT))
}

/// Rewrites axum's 413 into a message that names the limit, and closes the connection
/// (the rest of the upload was never read).
async fn explain_too_large(State(limit): State<usize>, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    if resp.status() != StatusCode::PAYLOAD_TOO_LARGE {
        return resp;
    }
    let (mut parts, _) = resp.into_parts();
    parts.headers.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    parts.headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(
        parts,
        axum::body::Body::from(format!(
            "request body is larger than the limit of {limit} bytes (set with --max-body-bytes / max_body_bytes)\n"
        )),
    )
}

/// Serves `app` on `listener` until `shutdown` turns true, then lets open requests
/// finish (up to 5 s).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        tokio::select! {
            conn = listener.accept() => {
                let stream = match conn {
                    Ok((s, _)) => s,
                    Err(e) => {
                        // Out of file descriptors and the like: wait instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let svc = TowerToHyperService::new(app.clone());
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                let fut = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    let _ = fut.await;
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
}
