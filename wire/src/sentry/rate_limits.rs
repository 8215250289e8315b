//! Sentry's rate-limit announcement, the `X-Sentry-Rate-Limits` header of a 429 (or any)
//! answer: a comma-separated list of limits, each
//!
//! ```text
//! retry_after : categories : scope [: reason_code]
//! 2:error:project:calm_project_rate, 60:transaction;span:key, 1::organization
//! ```
//! `categories` is `;`-separated (`error` = event items, `default` = messages); empty
//! means every category. SDKs stop sending the named categories for `retry_after`
//! seconds. The collector and the agent's relay write it; the agent's shipper reads it.

use std::fmt;
use std::time::Duration;

/// Longest wait read from a header: a bogus value cannot stop sending for hours.
pub const MAX_WAIT: Duration = Duration::from_secs(3600);

/// One limit, ready to be written as (part of) an `X-Sentry-Rate-Limits` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit<'a> {
    /// Whole seconds to wait.
    pub retry_after: u64,
    /// `;`-separated data categories; empty for all.
    pub categories: &'a str,
    /// `project`, `organization`, `key`.
    pub scope: &'a str,
    /// Why, for the SDK's client reports; `None` writes no fourth field.
    pub reason: Option<&'a str>,
}

impl fmt::Display for RateLimit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.retry_after, self.categories, self.scope)?;
        if let Some(r) = self.reason {
            write!(f, ":{r}")?;
        }
        Ok(())
    }
}

/// The longest wait in an `X-Sentry-Rate-Limits` value that applies to error events (a
/// limit with no categories, or with `error` or `default` among them), at most
/// [`MAX_WAIT`]; `None` when no limit applies or none can be read.
pub fn error_wait(header: &str) -> Option<Duration> {
    header
        .split(',')
        .filter_map(|limit| {
            let mut parts = limit.trim().split(':');
            let secs: f64 = parts.next()?.trim().parse().ok()?;
            let cats = parts.next().unwrap_or("");
            let applies = cats.trim().is_empty()
                || cats
                    .split(';')
                    .any(|c| matches!(c.trim(), "error" | "default"));
            (applies && secs.is_finite() && secs >= 0.0).then_some(secs)
        })
        .reduce(f64::max)
        .map(|s| Duration::from_secs_f64(s.min(MAX_WAIT.as_secs_f64())))
}

/// Whole seconds for `Retry-After` and `retry_after`: `wait` rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs_f64().ceil() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn written_as_sdks_read_it() {
        let l = RateLimit {
            retry_after: 2,
            categories: "error",
            scope: "project",
            reason: Some("calm_project_rate"),
        };
        assert_eq!(l.to_string(), "2:error:project:calm_project_rate");
        let all = RateLimit {
            retry_after: 3,
            categories: "",
            scope: "project",
            reason: None,
        };
        assert_eq!(all.to_string(), "3::project");
        assert_eq!(error_wait(&all.to_string()), Some(Duration::from_secs(3)));
    }

    #[test]
    fn only_limits_on_errors_count() {
        assert_eq!(
            error_wait("60:transaction:key, 2::organization"),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            error_wait("7:error;default:project"),
            Some(Duration::from_secs(7))
        );
        assert_eq!(error_wait("60:transaction:key"), None);
        assert_eq!(error_wait("garbage"), None);
        assert_eq!(error_wait("99999999:error:project"), Some(MAX_WAIT));
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
    }

    proptest! {
        #[test]
        fn any_header_gives_a_bounded_wait_or_none(h in ".{0,200}") {
            if let Some(w) = error_wait(&h) {
                prop_assert!(w <= MAX_WAIT);
            }
        }
    }
}
