//! [`SampleSink`]: where decoded, validated samples go.

use super::StorageError;
use calm_wire::labels::{validate_series, LabelLimits};
use calm_wire::prompb::TimeSeries;
use calm_wire::remote_write_view::WriteRequestView;
use std::future::Future;
use std::pin::Pin;

pub use crate::tsdb::append::{NewSeriesGate, SeriesLimit, ViewOutcome, WriteSummary};

/// A boxed write future, as [`SampleSink`]'s methods return.
pub type WriteFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StorageError>> + Send + 'a>>;

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
    ) -> WriteFuture<'a, WriteSummary>;

    /// Validates and stores a remote-write request read in place; resolves once the
    /// valid series are durable. Invalid series are skipped and described in the
    /// outcome. The default copies the request into [`TimeSeries`] and calls
    /// [`SampleSink::write`]; the local TSDB overrides it with its faster path.
    fn write_remote<'a>(
        &'a self,
        req: &'a WriteRequestView<'a>,
        limits: &'a LabelLimits,
        gate: Option<NewSeriesGate<'a>>,
    ) -> WriteFuture<'a, ViewOutcome> {
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

    /// The raw-body path: `body` is the request exactly as it came on the wire
    /// (remote-write v1, snappy-compressed protobuf) and `req` the same request decoded
    /// in place. A sink that keeps whole requests (a log) can publish `body` as it is,
    /// without encoding the series again; the default ignores it and calls
    /// [`SampleSink::write_remote`].
    fn write_remote_body<'a>(
        &'a self,
        body: &'a [u8],
        req: &'a WriteRequestView<'a>,
        limits: &'a LabelLimits,
        gate: Option<NewSeriesGate<'a>>,
    ) -> WriteFuture<'a, ViewOutcome> {
        let _ = body;
        self.write_remote(req, limits, gate)
    }
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
