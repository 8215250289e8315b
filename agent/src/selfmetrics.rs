//! The agent's own metrics (`calm_agent_*`), served at `/metrics` after the host's and
//! shipped with them. One mechanism: a [`SelfMetrics`] registry that `main` hands each
//! room's counters to when it builds the room; each registration is a function that
//! reads the counters at scrape time (the hot paths only bump atomics). The list of
//! every name exposed is `dashboards/self-metrics.txt` (checked by
//! `tests/tests/self_metrics.rs`).

use crate::family::{Family, Kind};
use std::sync::atomic::Ordering;
use std::sync::Arc;

type Source = Box<dyn Fn(&mut Vec<Family>) + Send + Sync>;

/// The registry: every room's families, in registration order.
#[derive(Default)]
pub struct SelfMetrics {
    sources: parking_lot::Mutex<Vec<Source>>,
}

impl SelfMetrics {
    /// Adds the families `read(&room)` gives, read at every scrape.
    pub fn register<T: Send + Sync + 'static>(&self, room: Arc<T>, read: fn(&T, &mut Vec<Family>)) {
        self.sources
            .lock()
            .push(Box::new(move |out: &mut Vec<Family>| read(&room, out)));
    }

    /// Every registered family, read now.
    pub fn collect(&self) -> Vec<Family> {
        let mut out = Vec::new();
        for s in self.sources.lock().iter() {
            s(&mut out);
        }
        out
    }
}

/// The families of `crate::spool::Spool`.
pub fn spool(s: &crate::spool::Spool, out: &mut Vec<Family>) {
    out.push(Family::single(
        "calm_agent_spool_entries",
        "Entries waiting in the spool.",
        Kind::Gauge,
        s.entries() as f64,
    ));
    out.push(Family::single(
        "calm_agent_spool_bytes",
        "Bytes waiting in the spool.",
        Kind::Gauge,
        s.bytes() as f64,
    ));
    out.push(Family::single(
        "calm_agent_spool_dropped_total",
        "Entries dropped because the spool was full.",
        Kind::Counter,
        s.dropped_full.load(Ordering::Relaxed) as f64,
    ));
    out.push(Family::single(
        "calm_agent_spool_dropped_events_total",
        "Event entries dropped because the spool was full (only when dropping metrics could not make room).",
        Kind::Counter,
        s.dropped_events.load(Ordering::Relaxed) as f64,
    ));
}

/// The families of `crate::ship::ShipStats`.
pub fn ship(s: &crate::ship::ShipStats, out: &mut Vec<Family>) {
    out.push(Family::single(
        "calm_agent_shipped_total",
        "Entries the collector took.",
        Kind::Counter,
        s.shipped.load(Ordering::Relaxed) as f64,
    ));
    out.push(Family::single(
        "calm_agent_ship_retries_total",
        "Failed sends that will be retried.",
        Kind::Counter,
        s.retries.load(Ordering::Relaxed) as f64,
    ));
    out.push(Family::single(
        "calm_agent_ship_rejected_total",
        "Entries the collector refused for good (4xx), dropped.",
        Kind::Counter,
        s.rejected.load(Ordering::Relaxed) as f64,
    ));
    out.push(Family::single(
        "calm_agent_ship_requests_total",
        "Requests sent to collectors.",
        Kind::Counter,
        s.requests.load(Ordering::Relaxed) as f64,
    ));
}

/// The families of `crate::sources::sentry::relay::RelayStats`.
pub fn relay(s: &crate::sources::sentry::relay::RelayStats, out: &mut Vec<Family>) {
    out.push(Family::single(
        "calm_agent_sentry_accepted_total",
        "Sentry requests the relay spooled.",
        Kind::Counter,
        s.accepted.load(Ordering::Relaxed) as f64,
    ));
    out.push(Family::single(
        "calm_agent_sentry_rate_limited_total",
        "Sentry requests the relay answered 429.",
        Kind::Counter,
        s.rate_limited.load(Ordering::Relaxed) as f64,
    ));
    out.push(Family::single(
        "calm_agent_sentry_invalid_total",
        "Sentry requests the relay refused as invalid (4xx).",
        Kind::Counter,
        s.invalid.load(Ordering::Relaxed) as f64,
    ));
}

/// The families of `crate::sources::sentry::keys::Keys`.
pub fn keys(s: &crate::sources::sentry::keys::Keys, out: &mut Vec<Family>) {
    out.push(Family::single(
        "calm_agent_sentry_projects_known",
        "Projects whose DSN keys the relay knows (fetched from the collector); 0 until the first fetch or cache.",
        Kind::Gauge,
        s.count() as f64,
    ));
    out.push(Family::single(
        "calm_agent_sentry_key_refreshes_total",
        "Successful fetches of the projects' DSN keys from the collector.",
        Kind::Counter,
        s.refreshes.load(Ordering::Relaxed) as f64,
    ));
    out.push(Family::single(
        "calm_agent_sentry_key_refresh_failures_total",
        "Failed fetches of the projects' DSN keys (the last known ones stay in use).",
        Kind::Counter,
        s.failures.load(Ordering::Relaxed) as f64,
    ));
}

/// The families of `crate::sources::otlp::receiver::OtlpStats`.
pub fn otlp(s: &crate::sources::otlp::receiver::OtlpStats, out: &mut Vec<Family>) {
    out.push(Family::single(
        "calm_agent_otlp_requests_total",
        "OTLP requests spooled.",
        Kind::Counter,
        s.requests.load(Ordering::Relaxed) as f64,
    ));
    out.push(Family::single(
        "calm_agent_otlp_samples_total",
        "OTLP samples spooled.",
        Kind::Counter,
        s.samples.load(Ordering::Relaxed) as f64,
    ));
    out.push(Family::single(
        "calm_agent_otlp_invalid_total",
        "OTLP requests refused (4xx).",
        Kind::Counter,
        s.invalid.load(Ordering::Relaxed) as f64,
    ));
}

/// The families of `crate::sources::scrape::ScrapeStats`.
pub fn scrape(s: &crate::sources::scrape::ScrapeStats, out: &mut Vec<Family>) {
    out.push(Family::single(
        "calm_agent_scrapes_total",
        "Scrapes of [[scrape]] targets attempted.",
        Kind::Counter,
        s.scrapes.load(Ordering::Relaxed) as f64,
    ));
    out.push(Family::single(
        "calm_agent_scrape_failures_total",
        "Scrapes that failed (up = 0), for any reason.",
        Kind::Counter,
        s.failed.load(Ordering::Relaxed) as f64,
    ));
    out.push(Family::single(
        "calm_agent_scrape_body_too_large_total",
        "Scrapes failed because the body passed body_size_limit.",
        Kind::Counter,
        s.body_too_large.load(Ordering::Relaxed) as f64,
    ));
    out.push(Family::single(
        "calm_agent_scrape_timeouts_total",
        "Scrapes failed because they took longer than the timeout.",
        Kind::Counter,
        s.timeouts.load(Ordering::Relaxed) as f64,
    ));
    out.push(Family::single(
        "calm_agent_scrape_sample_limit_exceeded_total",
        "Scrapes failed because the body had more samples than sample_limit.",
        Kind::Counter,
        s.sample_limit_exceeded.load(Ordering::Relaxed) as f64,
    ));
    out.push(Family::single(
        "calm_agent_scrape_parse_errors_total",
        "Scrapes failed because the body was not valid exposition format.",
        Kind::Counter,
        s.parse_errors.load(Ordering::Relaxed) as f64,
    ));
    out.push(Family::single(
        "calm_agent_scrape_samples_total",
        "Samples spooled by the scrape source (report series and stale markers included).",
        Kind::Counter,
        s.samples.load(Ordering::Relaxed) as f64,
    ));
}

/// The HTTP request latency histogram of the agent's listeners (calm-serve's timer).
pub fn http(d: &calm_serve::histogram::RequestDurations, out: &mut Vec<Family>) {
    use crate::family::SAMPLE_NAME;
    let mut f = Family::new(
        "calm_http_request_duration_seconds",
        "HTTP request latency to the response head, by route template (unmatched: no route), method and status code.",
        Kind::Histogram,
    );
    // The bounds are fixed: their text is made once, not per series and read.
    static LE: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let le_text = LE.get_or_init(|| {
        calm_serve::histogram::BUCKETS
            .iter()
            .map(|b| calm_wire::value::format_value(*b))
            .collect()
    });
    let bucket = "calm_http_request_duration_seconds_bucket";
    for ((handler, method, code), h) in d.snapshot() {
        let code = code.to_string();
        let (handler, code) = (handler.as_str(), code.as_str());
        for (i, (le, c)) in h.cumulative().into_iter().enumerate() {
            let le = match le_text.get(i) {
                Some(t) => std::borrow::Cow::Borrowed(t.as_str()),
                None => std::borrow::Cow::Owned(calm_wire::value::format_value(le)),
            };
            f.push(
                &[
                    (SAMPLE_NAME, bucket),
                    ("handler", handler),
                    ("method", method),
                    ("code", code),
                    ("le", &le),
                ],
                c as f64,
            );
        }
        f.push(
            &[
                (SAMPLE_NAME, bucket),
                ("handler", handler),
                ("method", method),
                ("code", code),
                ("le", "+Inf"),
            ],
            h.count as f64,
        );
        f.push(
            &[
                (SAMPLE_NAME, "calm_http_request_duration_seconds_sum"),
                ("handler", handler),
                ("method", method),
                ("code", code),
            ],
            h.sum,
        );
        f.push(
            &[
                (SAMPLE_NAME, "calm_http_request_duration_seconds_count"),
                ("handler", handler),
                ("method", method),
                ("code", code),
            ],
            h.count as f64,
        );
    }
    out.push(f);
}
