//! The stateless ingest: [`LogSink`] publishes validated samples to the partitions'
//! streams and resolves only once every part is acknowledged by JetStream (which, with
//! `sync_interval: always` at R3, means on disk on a quorum of NATS nodes).
//!
//! What embedded mode checks before the TSDB is checked here the same way: labels by
//! `calm_wire::labels::validate_series` (the trait's default `write_remote` path), and
//! the clock rules (`[now − retention, now + future_grace]`) per sample, counted in the
//! summary as the TSDB counts them. What only the owners can check (series limits,
//! out-of-order windows, conflicts) is applied when they consume the log.

use super::{now_ms, partition_of_series, stream_name, subject};
use crate::storage::sink::{NewSeriesGate, SampleSink, WriteFuture, WriteSummary};
use crate::storage::{ErrorKind, StorageError};
use async_nats::jetstream;
use calm_wire::prompb::{TimeSeries, WriteRequest};
use prost::Message as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Largest message published (encoded, before snappy): well under NATS' default
/// `max_payload` of 1 MiB, so a part is never refused for its size.
pub const MAX_MESSAGE_BYTES: usize = 512 * 1024;

/// Counters of the ingest path (`/metrics`).
#[derive(Debug, Default)]
pub struct LogStats {
    /// Messages acknowledged by JetStream.
    pub published: AtomicU64,
    /// Samples in acknowledged messages.
    pub samples: AtomicU64,
    /// Publishes that failed or timed out (the write got 503).
    pub failures: AtomicU64,
    /// Retried publishes that JetStream recognised as duplicates (`Nats-Msg-Id`).
    pub duplicates: AtomicU64,
}

/// The metrics log as a [`SampleSink`].
pub struct LogSink {
    js: jetstream::Context,
    generation: u32,
    partitions: u32,
    publish_timeout: Duration,
    retention_ms: i64,
    future_grace_ms: i64,
    /// Counters for `/metrics`.
    pub stats: Arc<LogStats>,
}

impl LogSink {
    /// A sink publishing to generation `generation`'s `partitions` streams.
    pub fn new(
        js: jetstream::Context,
        generation: u32,
        partitions: u32,
        publish_timeout: Duration,
        retention_ms: i64,
        future_grace_ms: i64,
    ) -> LogSink {
        LogSink {
            js,
            generation,
            partitions,
            publish_timeout,
            retention_ms,
            future_grace_ms,
            stats: Arc::new(LogStats::default()),
        }
    }

    /// Drops the samples outside `[now − retention, now + future_grace]` (counted as
    /// the TSDB counts them) and splits the rest by partition into messages.
    fn split(&self, series: &[TimeSeries], summary: &mut WriteSummary) -> Vec<(u32, Vec<u8>)> {
        let now = now_ms();
        let oldest = now.saturating_sub(self.retention_ms);
        let newest = now.saturating_add(self.future_grace_ms);
        let mut parts: Vec<Vec<TimeSeries>> = vec![Vec::new(); self.partitions as usize];
        for ts in series {
            let mut ts = ts.clone();
            let refuse = |t: i64, summary: &mut WriteSummary| -> bool {
                let late = t > newest;
                if late || t < oldest {
                    summary.refuse_by_clock(late, t, || ts_labels(&ts.labels));
                    false
                } else {
                    true
                }
            };
            let samples: Vec<_> = ts
                .samples
                .iter()
                .copied()
                .filter(|s| refuse(s.timestamp, summary))
                .collect();
            let hists: Vec<_> = ts
                .histograms
                .iter()
                .filter(|h| refuse(h.timestamp, summary))
                .cloned()
                .collect();
            ts.samples = samples;
            ts.histograms = hists;
            ts.exemplars.clear();
            if ts.samples.is_empty() && ts.histograms.is_empty() {
                continue;
            }
            summary.appended += (ts.samples.len() + ts.histograms.len()) as u64;
            let p = partition_of_series(&ts, self.partitions);
            parts[p as usize].push(ts);
        }
        let mut out = Vec::new();
        for (p, list) in parts.into_iter().enumerate() {
            let mut cur = WriteRequest::default();
            let mut size = 0;
            for ts in list {
                let len = ts.encoded_len() + 8;
                if size + len > MAX_MESSAGE_BYTES && !cur.timeseries.is_empty() {
                    out.push((p as u32, std::mem::take(&mut cur).encode_to_vec()));
                    size = 0;
                }
                size += len;
                cur.timeseries.push(ts);
            }
            if !cur.timeseries.is_empty() {
                out.push((p as u32, cur.encode_to_vec()));
            }
        }
        out
    }

    /// Publishes one message and waits for its acknowledgement.
    async fn publish(
        js: jetstream::Context,
        subject: String,
        stream: String,
        payload: Vec<u8>,
        timeout: Duration,
        stats: Arc<LogStats>,
    ) -> Result<(), StorageError> {
        // The id is the content's hash: a retried request (same samples) is dropped by
        // JetStream inside its duplicate window, and the owners' TSDB drops identical
        // samples after it.
        let id = format!(
            "{:032x}",
            xxhash_rust::xxh3::xxh3_128(&payload) ^ u128::from(payload.len() as u64)
        );
        let body = snap::raw::Encoder::new()
            .compress_vec(&payload)
            .map_err(|e| StorageError::new(ErrorKind::BadInput, format!("snappy: {e}")))?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", id.as_str());
        headers.insert("Nats-Expected-Stream", stream.as_str());
        let unavailable = |what: String| {
            stats.failures.fetch_add(1, Ordering::Relaxed);
            StorageError::new(
                ErrorKind::Unavailable,
                format!("the metrics log (NATS JetStream) did not acknowledge the write: {what}"),
            )
        };
        let fut = async {
            let ack = js
                .publish_with_headers(subject, headers, body.into())
                .await
                .map_err(|e| e.to_string())?;
            ack.await.map_err(|e| e.to_string())
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(Ok(ack)) => {
                stats.published.fetch_add(1, Ordering::Relaxed);
                if ack.duplicate {
                    stats.duplicates.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            }
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(unavailable(format!(
                "no acknowledgement within {timeout:?}"
            ))),
        }
    }
}

fn ts_labels(labels: &[calm_wire::prompb::Label]) -> String {
    labels
        .iter()
        .map(|l| format!("{}={:?}", l.name_str(), l.value_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

impl SampleSink for LogSink {
    /// Publishes `series` (validated by the caller, as for the TSDB). `gate` (a
    /// sender's budget of new series) is not applied: a stateless collector cannot
    /// tell a new series from a known one; the owners' series limits apply instead.
    fn write<'a>(
        &'a self,
        series: &'a [TimeSeries],
        gate: Option<NewSeriesGate<'a>>,
    ) -> WriteFuture<'a, WriteSummary> {
        let _ = gate;
        Box::pin(async move {
            let mut summary = WriteSummary::default();
            let parts = self.split(series, &mut summary);
            let mut set = tokio::task::JoinSet::new();
            let mut samples = 0u64;
            for (p, payload) in parts {
                let js = self.js.clone();
                let stats = self.stats.clone();
                let (sub, stream) = (subject(self.generation, p), stream_name(self.generation, p));
                let timeout = self.publish_timeout;
                set.spawn(Self::publish(js, sub, stream, payload, timeout, stats));
            }
            let mut first_err = None;
            while let Some(r) = set.join_next().await {
                let r = r.unwrap_or_else(|e| {
                    Err(StorageError::new(
                        ErrorKind::Unavailable,
                        format!("publish task: {e}"),
                    ))
                });
                if let Err(e) = r {
                    first_err.get_or_insert(e);
                }
            }
            if let Some(e) = first_err {
                // Parts already acknowledged stay in the log: the sender's retry
                // publishes the same messages (same ids), deduplicated.
                return Err(e);
            }
            samples += summary.appended;
            self.stats.samples.fetch_add(samples, Ordering::Relaxed);
            Ok(summary)
        })
    }
}
