//! The OTLP receiver: apps push OTLP/HTTP metrics to the agent (the OpenTelemetry SDKs'
//! default endpoint, `http://127.0.0.1:4318/v1/metrics`); they are mapped to Prometheus
//! series by `calm_wire::otlp` (the collector's own mapping) and spooled as remote-write.
//!
//! - [`receiver`]: the `POST /v1/metrics` handler.
//!
//! Config (agent TOML): `otlp_listen = "127.0.0.1:4318"` (`"off"` disables it), flag
//! `--otlp-listen`.

pub mod receiver;

use axum::routing::post;
use axum::Router;

/// The receiver's routes (decompression and body limits are the caller's layers).
pub fn routes(state: receiver::OtlpState) -> Router {
    Router::new()
        .route("/v1/metrics", post(receiver::handle))
        .with_state(state)
}

/// The OTLP source's section: `otlp_listen` (`"off"` disables the receiver).
#[derive(Debug, Clone)]
pub struct OtlpSection {
    pub listen: String,
    /// Whether `listen` was set (not the default): then failing to bind stops the agent.
    pub listen_given: bool,
}

/// The OTLP receiver behind [`crate::sources::Source`], on a listener of its own.
pub struct Otlp;

impl crate::sources::Source for Otlp {
    const NAME: &'static str = "otlp";
    type Config = OtlpSection;

    fn section(cfg: &crate::config::Config) -> OtlpSection {
        OtlpSection {
            listen: cfg.otlp_listen.clone(),
            listen_given: cfg.otlp_listen != crate::config::DEFAULT_OTLP_LISTEN,
        }
    }

    fn run(
        section: OtlpSection,
        ctx: &crate::sources::Context,
    ) -> anyhow::Result<crate::sources::Started> {
        use anyhow::Context as _;
        let stats = std::sync::Arc::new(receiver::OtlpStats::default());
        ctx.metrics
            .register(stats.clone(), crate::selfmetrics::otlp);
        let mut started = crate::sources::Started::default();
        if section.listen == "off" {
            return Ok(started);
        }
        let app = crate::serve::with_body_limits(
            routes(receiver::OtlpState {
                spool: ctx.ship.spool.clone(),
                wake: ctx.ship.wake.clone(),
                stats,
            }),
            ctx.common.max_body_bytes,
        );
        let bound = std::net::TcpListener::bind(&section.listen)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .and_then(tokio::net::TcpListener::from_std);
        match bound {
            Ok(l) => started.servers.push(tokio::spawn(crate::serve::serve(
                ctx.server(),
                l,
                app,
                ctx.shutdown.clone(),
            ))),
            // The default port may be another program's (an OpenTelemetry Collector on
            // the same host): host metrics and the relay still work, so say so and go on.
            Err(e) if !section.listen_given => tracing::error!(
                otlp_listen = %section.listen, error = %e,
                "cannot listen for OTLP on the default address; the OTLP receiver is off (set otlp_listen or --otlp-listen)"
            ),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot listen on {} (otlp_listen)", section.listen))
            }
        }
        Ok(started)
    }
}
