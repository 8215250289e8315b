//! Ingest: the endpoints that take samples in, check them, and hand them to a
//! [`SampleSink`].
//!
//! - [`remote_write`]: `POST /api/v1/write`, Prometheus remote-write v1.
//! - [`otlp`]: `POST /v1/metrics`, OTLP/HTTP metrics (protobuf or JSON).
//! - [`sentry`]: `POST /api/{project_id}/envelope/` and `store/`, Sentry SDK events.
//!
//! Both answer bad input with a 4xx whose body says what is wrong, and answer only
//! after the sink says the samples are durable.

pub mod otlp;
pub mod remote_write;
pub mod sentry;

use crate::tsdb::append::{NewSeriesGate, ViewOutcome, WriteSummary};
use crate::tsdb::{Db, DbError};
use calm_wire::labels::{validate_series, LabelLimits};
use calm_wire::prompb::TimeSeries;
use calm_wire::remote_write_view::WriteRequestView;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// Where decoded, validated samples go: the local TSDB, or (in cluster mode) a log.
///
/// `gate`, where given, is a sender's budget of new series: asked once per series the
/// write would create, a `false` refuses that series (counted in the summary). `None`
/// means no per-sender budget (rules, error counts).
pub trait SampleSink: Send + Sync + 'static {
    /// Stores `series`; resolves once they are durable.
    fn write<'a>(
        &'a self,
        series: &'a [TimeSeries],
        gate: Option<NewSeriesGate<'a>>,
    ) -> Pin<Box<dyn Future<Output = Result<WriteSummary, DbError>> + Send + 'a>>;

    /// Validates and stores a remote-write request read in place; resolves once the
    /// valid series are durable. Invalid series are skipped and described in the
    /// outcome. The default copies the request into [`TimeSeries`] and calls
    /// [`SampleSink::write`]; the local TSDB overrides it with its faster path.
    fn write_remote<'a>(
        &'a self,
        req: &'a WriteRequestView<'a>,
        limits: &'a LabelLimits,
        gate: Option<NewSeriesGate<'a>>,
    ) -> Pin<Box<dyn Future<Output = Result<ViewOutcome, DbError>> + Send + 'a>> {
        Box::pin(async move {
            let mut series: Vec<TimeSeries> =
                req.series().iter().map(|s| req.to_timeseries(s)).collect();
            let (invalid, invalid_series) = validate_all(&mut series, limits);
            let summary = self.write(&series, gate).await?;
            Ok(ViewOutcome {
                summary,
                invalid_series,
                invalid,
            })
        })
    }
}

impl SampleSink for Db {
    fn write<'a>(
        &'a self,
        series: &'a [TimeSeries],
        gate: Option<NewSeriesGate<'a>>,
    ) -> Pin<Box<dyn Future<Output = Result<WriteSummary, DbError>> + Send + 'a>> {
        Box::pin(Db::write_gated(self, series, gate))
    }

    fn write_remote<'a>(
        &'a self,
        req: &'a WriteRequestView<'a>,
        limits: &'a LabelLimits,
        gate: Option<NewSeriesGate<'a>>,
    ) -> Pin<Box<dyn Future<Output = Result<ViewOutcome, DbError>> + Send + 'a>> {
        Box::pin(Db::write_view_gated(self, req, limits, gate))
    }
}

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
    pub metadata: Arc<crate::api::metadata::MetadataStore>,
    /// New series per sender per minute.
    pub senders: Arc<SenderLimiter>,
}

/// Validates every series in place, keeping the valid ones. Returns the problems
/// found (at most a few described, all counted).
pub fn validate_all(series: &mut Vec<TimeSeries>, limits: &LabelLimits) -> (Vec<String>, usize) {
    let mut errors = Vec::new();
    let mut bad = 0;
    series.retain_mut(|ts| match validate_series(ts, limits) {
        Ok(()) => true,
        Err(e) => {
            bad += 1;
            if errors.len() < 5 {
                errors.push(e.to_string());
            }
            false
        }
    });
    (errors, bad)
}
