//! `calm-sink`: a remote-write endpoint that accepts and drops everything.
//!
//! ```text
//! calm-sink --listen 127.0.0.1:PORT [--decode]
//! POST /api/v1/write  → 204 (with --decode: 400 unless the body is a valid WriteRequest)
//! GET  /healthz       → 200
//! ```
//! Run `calm-loadgen` against it to see how fast the harness alone can go: it is the
//! ceiling of what the benchmark can measure on this machine.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "calm-sink",
    about = "Null remote-write receiver: the benchmark harness' ceiling."
)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9499")]
    listen: String,
    /// Decompress and decode each body (checks the load; costs CPU).
    #[arg(long)]
    decode: bool,
}

async fn write(State(decode): State<bool>, body: Bytes) -> (StatusCode, String) {
    if decode {
        if let Err(e) = calm_wire::remote_write::decode(&body, 64 << 20) {
            return (StatusCode::BAD_REQUEST, format!("{e}\n"));
        }
    }
    (StatusCode::NO_CONTENT, String::new())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let app = Router::new()
            .route("/api/v1/write", post(write))
            .route("/healthz", get(|| async { "ok\n" }))
            .layer(DefaultBodyLimit::max(64 << 20))
            .with_state(args.decode);
        let listener = tokio::net::TcpListener::bind(&args.listen).await?;
        eprintln!(
            "calm-sink: listening on http://{}/api/v1/write",
            listener.local_addr()?
        );
        let shutdown = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await?;
        anyhow::Ok(())
    })
}
