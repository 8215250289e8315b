//! The Sentry relay: SDKs whose DSN points at the agent post here; each accepted request
//! goes durably into the spool and on to the collector with its project id and the SDK's
//! own credentials, so the collector authenticates it exactly as if the SDK had posted
//! directly. The SDK gets its answer as soon as the entry is on disk, whether or not a
//! collector is reachable, so the app is never slowed by an outage.
//!
//! - [`relay`]: the handlers (`/api/{project_id}/envelope/` and `store/`).
//! - [`entry`]: how a relayed request is kept in the spool.
//! - [`limits`]: per-project token buckets and the collector's announced limits.
//! - [`keys`]: the projects' DSN keys fetched from the collector, cached on disk.
//!
//! Config (agent TOML):
//!
//! ```text
//! [sentry]
//! rate = 50      # events per second per project, sustained
//! burst = 200    # events accepted at once
//! keys_refresh = "60s"   # how often the DSN keys are fetched from the collector
//! ```

pub mod entry;
pub mod keys;
pub mod limits;
pub mod relay;

use axum::routing::post;
use axum::Router;
use serde::Deserialize;

/// The `[sentry]` config section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SentryConfig {
    /// Events per second per project, sustained.
    pub rate: f64,
    /// Events accepted at once after a quiet period.
    pub burst: f64,
    /// How often the projects' DSN keys are fetched from the collector.
    pub keys_refresh: calm_serve::config::Duration,
}

impl Default for SentryConfig {
    fn default() -> Self {
        SentryConfig {
            rate: 50.0,
            burst: 200.0,
            keys_refresh: calm_serve::config::Duration::from_secs(60),
        }
    }
}

impl SentryConfig {
    /// Checks the values (keys under `[sentry]`), naming where a wrong one came from.
    pub fn check(
        &self,
        o: &calm_serve::config::Origin,
    ) -> Result<(), calm_serve::config::ConfigError> {
        for (key, v) in [("sentry.rate", self.rate), ("sentry.burst", self.burst)] {
            o.check(
                v > 0.0 && v.is_finite(),
                key,
                &v,
                "expected a number of events above 0",
            )?;
        }
        o.check(
            !self.keys_refresh.is_zero(),
            "sentry.keys_refresh",
            &self.keys_refresh,
            "expected a duration above 0 like \"1m\"",
        )
    }
}

/// The relay routes (decompression and body limits are the caller's layers).
pub fn routes(state: relay::RelayState) -> Router {
    Router::new()
        .route("/api/{project_id}/envelope/", post(relay::envelope_handle))
        .route("/api/{project_id}/envelope", post(relay::envelope_handle))
        .route("/api/{project_id}/store/", post(relay::store_handle))
        .route("/api/{project_id}/store", post(relay::store_handle))
        .with_state(state)
}

/// The relay behind [`crate::sources::Source`]: its routes on the main listener, and,
/// when collectors are configured, the DSN keys' refresher.
pub struct Sentry;

impl crate::sources::Source for Sentry {
    const NAME: &'static str = "sentry";
    type Config = SentryConfig;

    fn section(cfg: &crate::config::Config) -> SentryConfig {
        cfg.sentry.clone()
    }

    fn run(
        section: SentryConfig,
        ctx: &crate::sources::Context,
    ) -> anyhow::Result<crate::sources::Started> {
        use std::sync::Arc;
        let file = ctx.common.data_dir.join("projects.json");
        let keys = Arc::new(keys::Keys::load(&file));
        let stats = Arc::new(relay::RelayStats::default());
        ctx.metrics
            .register(stats.clone(), crate::selfmetrics::relay);
        ctx.metrics.register(keys.clone(), crate::selfmetrics::keys);
        if !ctx.common.collectors.is_empty() {
            tokio::spawn(
                keys::Refresher {
                    keys: keys.clone(),
                    collectors: ctx.common.collectors.clone(),
                    token: ctx.common.token.clone(),
                    every: section.keys_refresh.get(),
                    file,
                    limits: ctx.ship.limits.clone(),
                }
                .run(),
            );
        }
        let app = crate::serve::with_body_limits(
            routes(relay::RelayState {
                spool: ctx.ship.spool.clone(),
                limits: ctx.ship.limits.clone(),
                wake: ctx.ship.wake.clone(),
                stats,
                keys,
            }),
            ctx.common.max_body_bytes,
        );
        Ok(crate::sources::Started {
            routes: Some(app),
            ..Default::default()
        })
    }
}
