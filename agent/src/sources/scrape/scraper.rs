//! The scrape loop of one target: fetch, parse, label, mark what vanished as stale,
//! report, spool. One task per target; a slow or broken target only delays itself.
//!
//! ```text
//! every interval:  fetch (timeout, body_size_limit) → parse (Content-Type) →
//!                  sample_limit → target labels → stale markers → report series →
//!                  one remote-write entry in the spool
//! any failure:     up = 0, every series of the last good scrape marked stale,
//!                  a warning naming the target and the cause, a counter
//! ```

use super::config::Target;
use super::fetch::{fetch, FetchError};
use super::report::Report;
use super::series::{hash_labels, to_scraped, to_timeseries, Scraped};
use super::staleness::SeriesCache;
use crate::spool::{EntryKind, Spool};
use calm_wire::exposition::{parse_bytes, Format, MetricType};
use calm_wire::prompb::{Label, MetricMetadata, WriteRequest};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Counters over all targets (served at the agent's `/metrics`).
#[derive(Debug, Default)]
pub struct ScrapeStats {
    /// Scrapes attempted.
    pub scrapes: AtomicU64,
    /// Scrapes that failed, for any reason.
    pub failed: AtomicU64,
    /// Failed: the body passed body_size_limit.
    pub body_too_large: AtomicU64,
    /// Failed: the timeout passed.
    pub timeouts: AtomicU64,
    /// Failed: more samples than sample_limit.
    pub sample_limit_exceeded: AtomicU64,
    /// Failed: the body is not valid exposition format.
    pub parse_errors: AtomicU64,
    /// Samples spooled (report series and stale markers included).
    pub samples: AtomicU64,
}

/// Where scraped samples go.
#[derive(Clone)]
pub struct Sink {
    pub spool: Arc<Spool>,
    pub wake: Arc<tokio::sync::Notify>,
    pub stats: Arc<ScrapeStats>,
}

/// How often the families' metadata (type, help, unit) is sent along, as Prometheus'
/// remote-write sends it once a minute.
const METADATA_EVERY: Duration = Duration::from_secs(60);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn metadata_type(t: MetricType) -> i32 {
    match t {
        MetricType::Counter => 1,
        MetricType::Gauge => 2,
        MetricType::Histogram => 3,
        MetricType::GaugeHistogram => 4,
        MetricType::Summary => 5,
        MetricType::Info => 6,
        MetricType::StateSet => 7,
        MetricType::Unknown => 0,
    }
}

/// A scrape that got a body and parsed it.
struct Parsed {
    series: Vec<Scraped>,
    metadata: Vec<MetricMetadata>,
    /// Samples in the body, before metric relabeling.
    scraped: usize,
}

/// Why a scrape failed; the counter it bumps follows from it.
enum Failure {
    Fetch(FetchError),
    Parse(String),
    SampleLimit { samples: usize, limit: usize },
    Labels(String),
}

impl Failure {
    fn describe(&self) -> String {
        match self {
            Failure::Fetch(e) => e.to_string(),
            Failure::Parse(e) => format!("body is not valid exposition format: {e}"),
            Failure::SampleLimit { samples, limit } => format!(
                "sample limit exceeded: the body has {samples} samples, sample_limit is {limit}; \
                 the scrape fails (raise sample_limit or drop series at the target)"
            ),
            Failure::Labels(e) => format!("invalid series: {e}"),
        }
    }
}

fn parse_and_label(
    bytes: &[u8],
    content_type: Option<&str>,
    target: &Target,
    target_labels: &[(String, String)],
    now: i64,
    with_metadata: bool,
) -> Result<Parsed, (Failure, usize)> {
    let format = Format::from_content_type(content_type);
    let families = parse_bytes(bytes, format).map_err(|e| (Failure::Parse(e.to_string()), 0))?;
    let samples: usize = families.iter().map(|f| f.samples.len()).sum();
    let series = to_scraped(
        &families,
        target_labels,
        target.honor_labels,
        target.honor_timestamps,
        now,
        &target.metric_relabel,
    )
    .map_err(|e| (Failure::Labels(e), samples))?;
    // As in Prometheus, the limit counts what metric relabeling kept.
    if target.sample_limit > 0 && series.len() > target.sample_limit {
        return Err((
            Failure::SampleLimit {
                samples: series.len(),
                limit: target.sample_limit,
            },
            samples,
        ));
    }
    let metadata = if with_metadata {
        families
            .iter()
            .filter(|f| f.kind != MetricType::Unknown || f.help.is_some())
            .map(|f| MetricMetadata {
                r#type: metadata_type(f.kind),
                metric_family_name: f.name.to_string(),
                help: f.help.as_deref().unwrap_or("").to_string(),
                unit: f.unit.unwrap_or("").to_string(),
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(Parsed {
        series,
        metadata,
        scraped: samples,
    })
}

/// Scrapes `target` every interval until `stop` is notified (a file_sd target that
/// went away): then its series, report series included, get stale markers, as
/// Prometheus marks a vanished target's series.
pub async fn run(
    target: Target,
    client: reqwest::Client,
    sink: Sink,
    stop: Arc<tokio::sync::Notify>,
) {
    let target = Arc::new(target);
    let target_labels: Arc<Vec<(String, String)>> = Arc::new(target.target_labels());
    let mut cache = SeriesCache::default();
    let mut last_metadata: Option<Instant> = None;
    // Each target starts at its own offset within the interval (derived from its URL
    // and job, so stable across restarts), as Prometheus spreads its scrapes: many
    // targets do not all hit the network and the spool in the same instant.
    let offset = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (target.url.as_str(), &target.job).hash(&mut h);
        let nanos = target.interval.as_nanos().max(1) as u64;
        Duration::from_nanos(h.finish() % nanos)
    };
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + offset, target.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(url = %target.url, job = %target.job, interval = ?target.interval, "scraping target");
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.notified() => {
                let now = now_ms();
                let mut out: Vec<(Vec<Label>, f64, i64)> = cache
                    .fail()
                    .into_iter()
                    .map(|l| (l, calm_wire::value::stale_nan(), now))
                    .collect();
                out.extend(
                    Report::default()
                        .series(&target_labels)
                        .into_iter()
                        .map(|(l, _)| (l, calm_wire::value::stale_nan(), now)),
                );
                let body = calm_wire::remote_write::encode(&WriteRequest {
                    timeseries: to_timeseries(out),
                    metadata: vec![],
                });
                if sink.spool.push_durable(EntryKind::Metrics, &body).await.is_ok() {
                    sink.wake.notify_one();
                }
                tracing::info!(url = %target.url, job = %target.job, "target gone: no longer scraped, its series marked stale");
                return;
            }
        }
        let started = Instant::now();
        let now = now_ms();
        sink.stats.scrapes.fetch_add(1, Ordering::Relaxed);
        let with_metadata = last_metadata.is_none_or(|t| t.elapsed() >= METADATA_EVERY);
        let outcome = match fetch(&client, &target).await {
            Err(e) => Err((Failure::Fetch(e), 0)),
            Ok(body) => {
                let (t, tl) = (target.clone(), target_labels.clone());
                // Parsing a large body is CPU work: off the async threads.
                tokio::task::spawn_blocking(move || {
                    parse_and_label(
                        &body.bytes,
                        body.content_type.as_deref(),
                        &t,
                        &tl,
                        now,
                        with_metadata,
                    )
                })
                .await
                .unwrap_or_else(|e| Err((Failure::Parse(format!("parser task failed: {e}")), 0)))
            }
        };
        let mut report = Report {
            duration_seconds: started.elapsed().as_secs_f64(),
            ..Report::default()
        };
        let mut out: Vec<(Vec<Label>, f64, i64)> = Vec::new();
        let mut metadata = Vec::new();
        match outcome {
            Ok(parsed) => {
                report.up = true;
                report.samples_scraped = parsed.scraped;
                // A series given twice in one body for the same moment: the first
                // sample wins (Prometheus refuses the later one as a duplicate).
                let mut hashes = HashSet::with_capacity(parsed.series.len());
                let keyed: Vec<(u64, Scraped)> = parsed
                    .series
                    .into_iter()
                    .map(|s| (hash_labels(&s.labels), s))
                    .filter(|(h, s)| hashes.insert((*h, s.timestamp_ms)))
                    .collect();
                let (gone, added) = cache.update(
                    keyed
                        .iter()
                        .map(|(h, s)| (*h, &s.labels[..], !s.explicit_timestamp)),
                );
                report.samples_post_relabeling = keyed.len();
                report.series_added = added;
                out.extend(
                    keyed
                        .into_iter()
                        .map(|(_, s)| (s.labels, s.value, s.timestamp_ms)),
                );
                out.extend(
                    gone.into_iter()
                        .map(|l| (l, calm_wire::value::stale_nan(), now)),
                );
                if with_metadata {
                    metadata = parsed.metadata;
                    last_metadata = Some(Instant::now());
                }
            }
            Err((failure, samples)) => {
                let counter = match &failure {
                    Failure::Fetch(FetchError::TooLarge(_)) => Some(&sink.stats.body_too_large),
                    Failure::Fetch(FetchError::Timeout(_)) => Some(&sink.stats.timeouts),
                    Failure::SampleLimit { .. } => Some(&sink.stats.sample_limit_exceeded),
                    Failure::Parse(_) | Failure::Labels(_) => Some(&sink.stats.parse_errors),
                    Failure::Fetch(_) => None,
                };
                if let Some(c) = counter {
                    c.fetch_add(1, Ordering::Relaxed);
                }
                sink.stats.failed.fetch_add(1, Ordering::Relaxed);
                report.samples_scraped = samples;
                tracing::warn!(
                    url = %target.url, job = %target.job,
                    error = %failure.describe(),
                    "scrape failed; up = 0 and the target's series are marked stale"
                );
                out.extend(
                    cache
                        .fail()
                        .into_iter()
                        .map(|l| (l, calm_wire::value::stale_nan(), now)),
                );
            }
        }
        out.extend(
            report
                .series(&target_labels)
                .into_iter()
                .map(|(l, v)| (l, v, now)),
        );
        let n = out.len() as u64;
        let body = calm_wire::remote_write::encode(&WriteRequest {
            timeseries: to_timeseries(out),
            metadata,
        });
        // On disk before the next scrape: a kill -9 loses no scrape already taken.
        match sink.spool.push_durable(EntryKind::Metrics, &body).await {
            Ok(_) => {
                sink.stats.samples.fetch_add(n, Ordering::Relaxed);
                sink.wake.notify_one();
            }
            Err(e) => {
                tracing::error!(url = %target.url, error = %e, "cannot spool scraped samples")
            }
        }
    }
}
