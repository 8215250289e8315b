//! Calm under an error storm: per-project and global event rate limits (token buckets),
//! a bound on requests in flight, and the answers SDKs honour.
//!
//! ```text
//! [errors]                       # collector TOML, all optional
//! rate_limit = 1000              # events/s per project (a project's own `rate_limit` wins)
//! global_rate_limit = 5000       # events/s over all projects
//! max_in_flight = 256            # Sentry requests being processed at once
//! queue_events = 4096            # events waiting for the store's writer
//! bodies_per_issue = 100         # full event bodies kept per issue per window ...
//! body_window = "1m"             # ... the rest are counted, not stored
//! max_events_per_issue = 10000   # event bodies kept per issue in all
//!
//! [[projects]]
//! id = 2
//! name = "noisy"
//! public_key = "..."
//! rate_limit = 50                # events/s for this project
//!
//! HTTP/1.1 429 Too Many Requests
//! Retry-After: 2
//! X-Sentry-Rate-Limits: 2:error:project:calm_project_rate
//! {"detail": "project 2 sends more than its rate limit of 50 events/s; retry after 2 s"}
//! ```
//! `X-Sentry-Rate-Limits` is Sentry's `retry_after:categories:scope:reason_code`; SDKs
//! stop sending the named categories (`error` = event items) for that many seconds.
//! Overload (too many requests in flight, a full write queue) answers the same way with
//! scope `organization` and no category (everything waits), 1 second.

use super::detail;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use calm_wire::sentry::rate_limits::RateLimit;
use parking_lot::Mutex;
use serde::Deserialize;
use std::collections::HashMap;
use std::time::Instant;

/// The `[errors]` section of the collector's configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ErrorsConfig {
    /// Events per second a project may send (its `[[projects]] rate_limit` overrides).
    pub rate_limit: f64,
    /// Events per second over all projects.
    pub global_rate_limit: f64,
    /// Sentry requests processed at once; more are answered 429 before their body is read.
    pub max_in_flight: usize,
    /// Events waiting for the event store's writer; more are answered 429.
    pub queue_events: usize,
    /// Full event bodies stored per issue per `body_window` (the rest are only counted).
    pub bodies_per_issue: u64,
    /// The body-sampling window.
    pub body_window: calm_serve::config::Duration,
    /// Event bodies kept per issue in all (the oldest go first).
    pub max_events_per_issue: u64,
}

impl Default for ErrorsConfig {
    fn default() -> Self {
        ErrorsConfig {
            rate_limit: 1000.0,
            global_rate_limit: 5000.0,
            max_in_flight: 256,
            queue_events: 4096,
            bodies_per_issue: 100,
            body_window: calm_serve::config::Duration::from_secs(60),
            max_events_per_issue: 10_000,
        }
    }
}

impl ErrorsConfig {
    /// Checks the values (keys under `[errors]`), naming where a wrong one came from.
    pub fn check(
        &self,
        origin: &calm_serve::config::Origin,
    ) -> Result<(), calm_serve::config::ConfigError> {
        for (key, v) in [
            ("errors.rate_limit", self.rate_limit),
            ("errors.global_rate_limit", self.global_rate_limit),
        ] {
            origin.check(
                v > 0.0 && v.is_finite(),
                key,
                &v,
                "expected a number of events/s above 0",
            )?;
        }
        origin.range("errors.max_in_flight", self.max_in_flight, 1, 1 << 20)?;
        origin.range("errors.queue_events", self.queue_events, 1, 1 << 24)?;
        origin.check(
            !self.body_window.is_zero(),
            "errors.body_window",
            &self.body_window,
            "expected a duration above 0 like \"1m\"",
        )
    }
}

/// A token bucket: `rate` tokens per second, at most `burst` saved up.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: f64, now: Instant) -> Bucket {
        // One second of events may arrive at once (an SDK flushing its queue).
        let burst = rate.max(1.0);
        Bucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        self.last = now;
    }

    /// Takes `n` tokens, or says in how many whole seconds they will be there.
    fn take(&mut self, n: f64, now: Instant) -> Result<(), u64> {
        self.refill(now);
        if self.tokens >= n {
            self.tokens -= n;
            return Ok(());
        }
        let need = n.min(self.burst) - self.tokens;
        Err(((need / self.rate).ceil() as u64).max(1))
    }

    fn give_back(&mut self, n: f64) {
        self.tokens = (self.tokens + n).min(self.burst);
    }
}

/// Why events were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The project's own rate.
    ProjectRate,
    /// The collector-wide rate.
    GlobalRate,
    /// Too many requests in flight or a full write queue.
    Overloaded,
}

impl Refusal {
    /// The reason as counted in `/metrics` and sent as the rate limit's reason code.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::ProjectRate => "calm_project_rate",
            Refusal::GlobalRate => "calm_global_rate",
            Refusal::Overloaded => "calm_overloaded",
        }
    }
}

/// A refusal with its wait, ready to become a 429.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    /// Why.
    pub why: Refusal,
    /// Seconds to wait.
    pub retry_after: u64,
    /// What to tell the sender.
    pub msg: String,
}

impl Limited {
    /// The `X-Sentry-Rate-Limits` value.
    pub fn sentry_header(&self) -> String {
        let (categories, scope) = match self.why {
            Refusal::ProjectRate => ("error", "project"),
            Refusal::GlobalRate => ("error", "organization"),
            Refusal::Overloaded => ("", "organization"),
        };
        RateLimit {
            retry_after: self.retry_after,
            categories,
            scope,
            reason: Some(self.why.reason()),
        }
        .to_string()
    }

    /// The 429 answer with `Retry-After` and `X-Sentry-Rate-Limits`.
    pub fn response(&self) -> Response {
        let mut r = detail(StatusCode::TOO_MANY_REQUESTS, self.msg.clone());
        let h = r.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&self.retry_after.to_string()) {
            h.insert("retry-after", v);
        }
        if let Ok(v) = HeaderValue::from_str(&self.sentry_header()) {
            h.insert("x-sentry-rate-limits", v);
        }
        r
    }

    /// An overload refusal (1 s).
    pub fn overloaded(msg: impl Into<String>) -> Limited {
        Limited {
            why: Refusal::Overloaded,
            retry_after: 1,
            msg: msg.into(),
        }
    }
}

/// The event rate limits of every project and of the whole collector.
#[derive(Debug)]
pub struct RateLimiter {
    default_rate: f64,
    rates: HashMap<u64, f64>,
    projects: Mutex<HashMap<u64, Bucket>>,
    global: Mutex<Bucket>,
}

impl RateLimiter {
    /// Limits from the config: `rates` are the projects' own rates.
    pub fn new(cfg: &ErrorsConfig, rates: HashMap<u64, f64>) -> RateLimiter {
        RateLimiter {
            default_rate: cfg.rate_limit,
            rates,
            projects: Mutex::new(HashMap::new()),
            global: Mutex::new(Bucket::new(cfg.global_rate_limit, Instant::now())),
        }
    }

    /// The rate of `project`, events/s.
    pub fn rate_of(&self, project: u64) -> f64 {
        self.rates
            .get(&project)
            .copied()
            .unwrap_or(self.default_rate)
    }

    /// Admits `n` events of `project`, or says why not and for how long.
    pub fn admit(&self, project: u64, n: usize) -> Result<(), Limited> {
        if n == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let n = n as f64;
        let rate = self.rate_of(project);
        {
            let mut projects = self.projects.lock();
            let b = projects
                .entry(project)
                .or_insert_with(|| Bucket::new(rate, now));
            if let Err(secs) = b.take(n, now) {
                return Err(Limited {
                    why: Refusal::ProjectRate,
                    retry_after: secs,
                    msg: format!(
                        "project {project} sends more than its rate limit of {rate} events/s; retry after {secs} s"
                    ),
                });
            }
        }
        let global = self.global.lock().take(n, now);
        if let Err(secs) = global {
            if let Some(b) = self.projects.lock().get_mut(&project) {
                b.give_back(n);
            }
            return Err(Limited {
                why: Refusal::GlobalRate,
                retry_after: secs,
                msg: format!(
                    "the collector receives more than its global rate limit of events; retry after {secs} s"
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn buckets_refill_and_say_how_long_to_wait() {
        let t0 = Instant::now();
        let mut b = Bucket::new(10.0, t0);
        for _ in 0..10 {
            assert_eq!(b.take(1.0, t0), Ok(()));
        }
        assert_eq!(b.take(1.0, t0), Err(1));
        assert_eq!(b.take(1.0, t0 + Duration::from_millis(150)), Ok(()));
        let mut slow = Bucket::new(0.5, t0);
        assert_eq!(slow.take(1.0, t0), Ok(()));
        assert_eq!(slow.take(1.0, t0), Err(2));
    }

    #[test]
    fn project_rate_then_global_rate() {
        let cfg = ErrorsConfig {
            rate_limit: 100.0,
            global_rate_limit: 150.0,
            ..ErrorsConfig::default()
        };
        let l = RateLimiter::new(&cfg, HashMap::from([(2, 5.0)]));
        assert!(l.admit(2, 5).is_ok());
        let e = l.admit(2, 1).unwrap_err();
        assert_eq!(e.why, Refusal::ProjectRate);
        assert_eq!(e.sentry_header(), "1:error:project:calm_project_rate");
        assert!(l.admit(1, 100).is_ok());
        let e = l.admit(3, 50).unwrap_err();
        assert_eq!(e.why, Refusal::GlobalRate);
        // The refused events did not use up project 3's own budget.
        assert!(l.admit(3, 45).is_ok());
    }
}
