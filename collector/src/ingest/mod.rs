//! Ingest: the endpoints that take samples in, check them, and hand them to a
//! [`SampleSink`].
//!
//! - [`remote_write`]: `POST /api/v1/write`, Prometheus remote-write v1.
//! - [`otlp`]: `POST /v1/metrics`, OTLP/HTTP metrics (protobuf or JSON).
//! - [`sentry`]: `POST /api/{project_id}/envelope/` and `store/`, Sentry SDK events.
//!
//! [`SampleSink`] and [`validate_all`] live in [`crate::storage::sink`] (re-exported
//! here for the handlers).
//!
//! Both answer bad input with a 4xx whose body says what is wrong, and answer only
//! after the sink says the samples are durable.

pub mod otlp;
pub mod remote_write;
pub mod sentry;

pub use crate::storage::sink::{validate_all, SampleSink};
use calm_wire::labels::LabelLimits;
use std::sync::Arc;

/// New series per sender per minute (`limits.max_new_series_per_sender_per_minute`).
/// A sender is its bearer token, or its IP address when it sends none. Windows are
/// calendar minutes; checked as each series is created, so concurrent requests of one
/// sender share the budget exactly.
pub struct SenderLimiter {
    per_minute: u64,
    windows: parking_lot::Mutex<std::collections::HashMap<u64, (i64, u64)>>,
}

impl SenderLimiter {
    /// A limiter allowing `per_minute` new series to each sender per minute.
    pub fn new(per_minute: u64) -> SenderLimiter {
        SenderLimiter {
            per_minute,
            windows: Default::default(),
        }
    }

    fn minute() -> i64 {
        chrono::Utc::now().timestamp().div_euclid(60)
    }

    /// Takes one new series from `sender`'s budget of this minute.
    pub fn try_take(&self, sender: u64) -> bool {
        let now = Self::minute();
        let mut w = self.windows.lock();
        if w.len() > 100_000 {
            w.retain(|_, (m, _)| *m == now);
        }
        let e = w.entry(sender).or_insert((now, 0));
        if e.0 != now {
            *e = (now, 0);
        }
        if e.1 >= self.per_minute {
            return false;
        }
        e.1 += 1;
        true
    }

    /// Seconds until the next window starts.
    pub fn retry_after_secs() -> i64 {
        60 - chrono::Utc::now().timestamp().rem_euclid(60)
    }
}

/// Who sent a request, for [`SenderLimiter`]: a hash of its bearer token, else of its
/// IP address.
pub fn sender_key(headers: &axum::http::HeaderMap, peer: Option<std::net::SocketAddr>) -> u64 {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .map(|(_, t)| t.trim())
        .filter(|t| !t.is_empty());
    match (token, peer) {
        (Some(t), _) => xxhash_rust::xxh3::xxh3_64(format!("token:{t}").as_bytes()),
        (None, Some(p)) => xxhash_rust::xxh3::xxh3_64(format!("ip:{}", p.ip()).as_bytes()),
        (None, None) => 0,
    }
}

/// Shared by the ingest handlers.
#[derive(Clone)]
pub struct IngestState {
    pub sink: Arc<dyn SampleSink>,
    pub limits: LabelLimits,
    pub max_body_bytes: usize,
    /// Metric metadata carried by the requests, for `/api/v1/metadata`.
    pub metadata: Arc<crate::storage::metadata::MetadataStore>,
    /// New series per sender per minute.
    pub senders: Arc<SenderLimiter>,
}
