//! Latency histograms, Prometheus-style (cumulative `le` buckets, `_sum`, `_count`),
//! kept here so both programs count HTTP requests the same way: one
//! [`RequestDurations`] per server, filled by the timing layer of
//! [`crate::Server::guard`] and rendered by each program at `/metrics` as
//! `calm_http_request_duration_seconds{handler,method,code}`.
//!
//! Cardinality is bounded: `handler` is the route template (axum's `MatchedPath`, e.g.
//! `/api/v1/query_range`, never the raw path), `"unmatched"` for requests no route
//! took; `method` is one of the standard methods or `OTHER`; `code` is the status.

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Prometheus' default buckets (seconds): 5 ms to 10 s.
pub const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The `handler` label of requests that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// One histogram over [`BUCKETS`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Observations per bucket, not cumulative (the last slot is `+Inf` only).
    counts: [u64; BUCKETS.len() + 1],
    /// Sum of the observations, seconds.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

impl Histogram {
    /// Adds one observation.
    pub fn observe(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(BUCKETS.len());
        self.counts[i] += 1;
        self.sum += s;
        self.count += 1;
    }

    /// `(upper bound, cumulative count)` for each finite bucket; `+Inf` is `count`.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut acc = 0;
        BUCKETS
            .iter()
            .zip(self.counts.iter())
            .map(|(b, c)| {
                acc += c;
                (*b, acc)
            })
            .collect()
    }

    /// `(upper bound, count in that bucket alone)`, `+Inf` last, as
    /// prometheus-client's `encode_histogram` takes them.
    pub fn per_bucket(&self) -> Vec<(f64, u64)> {
        BUCKETS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.counts.iter().copied())
            .collect()
    }
}

/// Histograms keyed by a label set, behind one lock (an observation is a few adds).
#[derive(Debug)]
pub struct Histograms<K: Ord>(Mutex<BTreeMap<K, Histogram>>);

impl<K: Ord> Default for Histograms<K> {
    fn default() -> Self {
        Histograms(Mutex::new(BTreeMap::new()))
    }
}

impl<K: Ord + Clone> Histograms<K> {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<K, Histogram>> {
        // A panic while holding the lock leaves plain numbers behind: keep using them.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds one observation under `key`.
    pub fn observe(&self, key: K, d: Duration) {
        self.lock().entry(key).or_default().observe(d);
    }

    /// Every label set's histogram, in key order.
    pub fn snapshot(&self) -> Vec<(K, Histogram)> {
        self.lock()
            .iter()
            .map(|(k, h)| (k.clone(), h.clone()))
            .collect()
    }
}

/// The label set of one request: `(handler, method, code)`.
pub type RequestKey = (String, &'static str, u16);

/// HTTP request durations by handler, method and status code.
pub type RequestDurations = Histograms<RequestKey>;

/// The bounded `method` label.
pub fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "OTHER",
    }
}

/// Times a request to its response head; route-level (`Router::layer`) so the
/// `MatchedPath` is known.
pub(crate) async fn time(
    State(durations): State<Arc<RequestDurations>>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let method = method_label(req.method());
    let resp = next.run(req).await;
    // A router served behind another (the collector's start-up router forwards to the
    // full one) tells its route through the response ([`remember_route`]).
    let handler = resp
        .extensions()
        .get::<MatchedPath>()
        .or(matched.as_ref())
        .map_or_else(|| UNMATCHED.to_string(), |p| p.as_str().to_string());
    durations.observe((handler, method, resp.status().as_u16()), started.elapsed());
    resp
}

/// Copies the route template a router matched into the response, so that a timer
/// outside a forwarding router ([`time`]) still labels the request by its route.
pub(crate) async fn remember_route(req: Request, next: Next) -> Response {
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let mut resp = next.run(req).await;
    if let Some(m) = matched {
        resp.extensions_mut().insert(m);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative() {
        let mut h = Histogram::default();
        h.observe(Duration::from_millis(1));
        h.observe(Duration::from_millis(30));
        h.observe(Duration::from_secs(60));
        assert_eq!(h.count, 3);
        let c = h.cumulative();
        assert_eq!(c[0], (0.005, 1));
        assert_eq!(c[2], (0.025, 1));
        assert_eq!(c[3], (0.05, 2));
        assert_eq!(c[10], (10.0, 2));
        let p = h.per_bucket();
        assert_eq!(p.len(), 12);
        assert_eq!(p[11].1, 1);
        assert!(p[11].0.is_infinite());
    }
}
