//! Cluster mode (issue 14), the metrics path: many collectors on one NATS JetStream
//! log, behind the storage traits (`storage/`), so handlers never know which mode runs.
//!
//! - [`log`]: [`log::LogSink`], the stateless ingest ([`crate::storage::SampleSink`]):
//!   validated and clock-checked as in embedded mode, split by partition (a stable
//!   hash of the series' labels, [`partition_of_pairs`]), one snappy remote-write
//!   message per part published to the partition's stream (`calm-p-<gen>-<n>`, R3),
//!   2xx only once every part is acknowledged, 503 + Retry-After otherwise.
//! - [`lease`]: leases in the `calm-cluster` KV bucket, the revision as fencing
//!   token; node heartbeats; the partition-generation record; the ownership history.
//! - [`owner`]: which partitions this collector owns (rendezvous hashing over live
//!   nodes, `owners_per_partition` each, make-before-break), and one consumer per owned
//!   partition applying the stream to the local TSDB with the stream position in the
//!   same durable write (a WAL record) as the samples.
//! - [`fanout`]: [`fanout::FanoutReader`] ([`crate::storage::SeriesReader`]): reads raw
//!   series from one ready owner of every partition, merged and deduplicated; the
//!   internal endpoint `POST /internal/calm/v1/select` the owners answer it on; a
//!   partition without a ready owner is a Prometheus warning (or 503 when strict).
//!
//! - [`read_after_write`]: a rule group's round waits (bounded) until the owners the
//!   fan-out reads from have applied the log up to where it stood when the round
//!   began; the internal endpoint `POST /internal/calm/v1/applied` they answer it on.
//!
//! The one alert evaluator is a PostgreSQL lease (`storage/evaluator.rs`,
//! `storage/postgres/evaluator.rs`): it fences writes that live in PostgreSQL.
//!
//! A clean stop hands the partitions over first ([`owner::Node::leave`]); a collector
//! cut off from NATS steps down on its own clock and says so on `/readyz`. Tested with
//! real processes: `tests/tests/cluster_topology.rs` (join and leave under query),
//! `cluster_partition.rs` (network namespaces), `cluster_script.rs` (`scripts/cluster`).

pub mod config;
pub mod fanout;
pub mod lease;
pub mod log;
pub mod owner;
pub mod read_after_write;

use xxhash_rust::xxh3::Xxh3;

/// The KV bucket of leases, node heartbeats, the generation record and the history.
pub const BUCKET: &str = "calm-cluster";

/// Name of the position series each owner writes with the samples it applies
/// (`{__name__="calm_cluster_applied_position", partition="<n>", stream="…"}`): the
/// stream sequence applied, in the same WAL record as the samples.
pub const POSITION_METRIC: &str = "calm_cluster_applied_position";

/// The partition of a series from its labels as `(name, value)` pairs sorted by name
/// (empty values skipped: the TSDB drops them). The same function at ingest and at
/// query time.
pub fn partition_of_pairs<'a>(
    pairs: impl Iterator<Item = (&'a str, &'a str)>,
    partitions: u32,
) -> u32 {
    let mut h = Xxh3::new();
    for (n, v) in pairs {
        if v.is_empty() {
            continue;
        }
        h.update(n.as_bytes());
        h.update(&[0xff]);
        h.update(v.as_bytes());
        h.update(&[0xfe]);
    }
    (h.digest() % u64::from(partitions.max(1))) as u32
}

/// [`partition_of_pairs`] of a series' encoded labels (`tsdb::labels`).
pub fn partition_of_encoded(labels: &[u8], partitions: u32) -> u32 {
    partition_of_pairs(crate::tsdb::labels::iter(labels), partitions)
}

/// [`partition_of_pairs`] of a remote-write series (labels in any order).
pub fn partition_of_series(ts: &calm_wire::prompb::TimeSeries, partitions: u32) -> u32 {
    let mut pairs: Vec<(&str, &str)> = ts
        .labels
        .iter()
        .map(|l| (l.name_str(), l.value_str()))
        .collect();
    pairs.sort_unstable();
    partition_of_pairs(pairs.into_iter(), partitions)
}

/// The stream of partition `p` in generation `gen`.
pub fn stream_name(gen: u32, p: u32) -> String {
    format!("calm-p-{gen}-{p}")
}

/// The subject of partition `p` in generation `gen`.
pub fn subject(gen: u32, p: u32) -> String {
    format!("calm.p.{gen}.{p}")
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;
    use calm_wire::prompb::{Label, TimeSeries};

    #[test]
    fn ingest_and_query_agree_on_the_partition() {
        let ts = TimeSeries {
            labels: vec![
                Label::new("job", "a"),
                Label::new("__name__", "up"),
                Label::new("empty", ""),
            ],
            ..Default::default()
        };
        let enc = crate::tsdb::labels::encode_pairs([("__name__", "up"), ("job", "a")]);
        for n in [1, 7, 16, 1024] {
            assert_eq!(partition_of_series(&ts, n), partition_of_encoded(&enc, n));
        }
        // Spread: 1000 series over 16 partitions all land somewhere, none empty.
        let mut seen = [0u32; 16];
        for i in 0..1000 {
            let v = i.to_string();
            seen[partition_of_pairs([("__name__", "m"), ("i", v.as_str())].into_iter(), 16)
                as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 20), "{seen:?}");
    }
}
