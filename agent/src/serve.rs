//! Serving HTTP: the shared `calm-serve` module (connection cap, header/body/idle
//! timeouts, in-flight body budget; see its docs), set from the agent's `[limits]`.

use axum::Router;
pub use calm_serve::with_body_limits;
use tokio::net::TcpListener;

/// Serves `app` on `listener` with `server`'s limits until `shutdown` turns true, then
/// lets open requests finish (up to 5 s).
pub async fn serve(
    server: calm_serve::Server,
    listener: TcpListener,
    app: Router,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let app = server.guard(app);
    server
        .serve(listener, app, async move {
            let _ = shutdown.changed().await;
        })
        .await
}
