//! Per-project rate limits of the relay: the agent's own token bucket (so an error storm
//! in one app cannot fill the spool or flood the collector) and the limits the collector
//! announced (its 429 with `Retry-After` / `X-Sentry-Rate-Limits`), which the relay
//! passes on to SDKs so they back off at the source.
//!
//! ```text
//! HTTP/1.1 429 Too Many Requests
//! Retry-After: 3
//! X-Sentry-Rate-Limits: 3::project      retry_after : categories (empty = all) : scope
//! ```
//! The header is written and read by `calm_wire::sentry::rate_limits`.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The relay's per-project rate: `rate` events per second, bursts up to `burst`.
#[derive(Debug, Clone, Copy)]
pub struct RateConfig {
    /// Sustained events per second per project.
    pub rate: f64,
    /// Bucket size: events accepted at once after a quiet period.
    pub burst: f64,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets per project, plus collector-imposed limits.
pub struct Limits {
    cfg: RateConfig,
    buckets: Mutex<HashMap<u64, Bucket>>,
    collector: Mutex<HashMap<u64, Instant>>,
    /// Per-project rates the collector set (`rate_limit`), when lower than `cfg.rate`.
    project_rates: Mutex<HashMap<u64, f64>>,
}

/// Most projects tracked at once; beyond it, idle buckets (full again) are forgotten.
const MAX_PROJECTS: usize = 10_000;

impl Limits {
    /// Limits with this rate.
    pub fn new(cfg: RateConfig) -> Limits {
        Limits {
            cfg,
            buckets: Mutex::new(HashMap::new()),
            collector: Mutex::new(HashMap::new()),
            project_rates: Mutex::new(HashMap::new()),
        }
    }

    /// The collector's per-project rates (events per second); a project's bucket
    /// fills at the lower of it and the relay's own rate.
    pub fn set_project_rates(&self, rates: HashMap<u64, f64>) {
        *self.project_rates.lock() = rates;
    }

    /// Takes one token for `project`: `Ok(())`, or `Err(wait)` with how long until the
    /// project may send again (the collector's limit, or the bucket refilling).
    pub fn admit(&self, project: u64) -> Result<(), Duration> {
        let now = Instant::now();
        if let Some(until) = self.collector.lock().get(&project).copied() {
            if until > now {
                return Err(until - now);
            }
        }
        let rate = match self.project_rates.lock().get(&project) {
            Some(r) if *r >= 0.0 && *r < self.cfg.rate => *r,
            _ => self.cfg.rate,
        };
        let mut buckets = self.buckets.lock();
        if buckets.len() >= MAX_PROJECTS && !buckets.contains_key(&project) {
            let full = self.cfg.burst;
            let rate = self.cfg.rate;
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < full);
        }
        let b = buckets.entry(project).or_insert(Bucket {
            tokens: self.cfg.burst,
            at: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(self.cfg.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else if rate > 0.0 {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / rate))
        } else {
            Err(Duration::from_secs(60))
        }
    }

    /// Records that the collector refuses `project` for `wait`.
    pub fn collector_limited(&self, project: u64, wait: Duration) {
        let until = Instant::now() + wait;
        let mut m = self.collector.lock();
        m.retain(|_, t| *t > Instant::now());
        let e = m.entry(project).or_insert(until);
        *e = (*e).max(until);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_the_burst_then_refuses_with_a_wait() {
        let l = Limits::new(RateConfig {
            rate: 1.0,
            burst: 3.0,
        });
        for _ in 0..3 {
            assert!(l.admit(1).is_ok());
        }
        let wait = l.admit(1).unwrap_err();
        assert!(wait <= Duration::from_secs(1) && wait > Duration::ZERO);
        // Another project has its own bucket.
        assert!(l.admit(2).is_ok());
        l.collector_limited(2, Duration::from_secs(5));
        assert!(l.admit(2).unwrap_err() > Duration::from_secs(4));
    }
}
