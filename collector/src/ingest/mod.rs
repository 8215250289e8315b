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

use crate::tsdb::append::{ViewOutcome, WriteSummary};
use crate::tsdb::{Db, DbError};
use calm_wire::labels::{validate_series, LabelLimits};
use calm_wire::prompb::TimeSeries;
use calm_wire::remote_write_view::WriteRequestView;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// Where decoded, validated samples go: the local TSDB, or (in cluster mode) a log.
pub trait SampleSink: Send + Sync + 'static {
    /// Stores `series`; resolves once they are durable.
    fn write<'a>(
        &'a self,
        series: &'a [TimeSeries],
    ) -> Pin<Box<dyn Future<Output = Result<WriteSummary, DbError>> + Send + 'a>>;

    /// Validates and stores a remote-write request read in place; resolves once the
    /// valid series are durable. Invalid series are skipped and described in the
    /// outcome. The default copies the request into [`TimeSeries`] and calls
    /// [`SampleSink::write`]; the local TSDB overrides it with its faster path.
    fn write_remote<'a>(
        &'a self,
        req: &'a WriteRequestView<'a>,
        limits: &'a LabelLimits,
    ) -> Pin<Box<dyn Future<Output = Result<ViewOutcome, DbError>> + Send + 'a>> {
        Box::pin(async move {
            let mut series: Vec<TimeSeries> =
                req.series().iter().map(|s| req.to_timeseries(s)).collect();
            let (invalid, invalid_series) = validate_all(&mut series, limits);
            let summary = self.write(&series).await?;
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
    ) -> Pin<Box<dyn Future<Output = Result<WriteSummary, DbError>> + Send + 'a>> {
        Box::pin(Db::write(self, series))
    }

    fn write_remote<'a>(
        &'a self,
        req: &'a WriteRequestView<'a>,
        limits: &'a LabelLimits,
    ) -> Pin<Box<dyn Future<Output = Result<ViewOutcome, DbError>> + Send + 'a>> {
        Box::pin(Db::write_view(self, req, limits))
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
