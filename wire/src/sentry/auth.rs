//! Where a request's DSN key comes from, in Sentry's order: `X-Sentry-Auth`, then
//! `Authorization: Sentry …`, then the `sentry_key` query parameter, then the
//! envelope header's `dsn`. Parsing is `sentry-types`' own.

use sentry_types::{Auth, Dsn};

/// Why the credentials present could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// A header or parameter was present but unreadable.
    #[error("cannot read {source_name}: {msg}")]
    Invalid {
        /// Where it came from (`X-Sentry-Auth`, `sentry_key query parameter`, …).
        source_name: &'static str,
        /// What is wrong.
        msg: String,
    },
}

/// Reads an `X-Sentry-Auth` (or `Authorization`) value: `Sentry sentry_key=…, …`.
pub fn from_header(value: &str, source_name: &'static str) -> Result<Auth, AuthError> {
    value
        .trim()
        .parse::<Auth>()
        .map_err(|e| AuthError::Invalid {
            source_name,
            msg: e.to_string(),
        })
}

/// Reads `sentry_key` (and friends) from a query string; `None` when it has no
/// `sentry_key`.
pub fn from_query(query: &str) -> Option<Auth> {
    Auth::from_querystring(query.as_bytes()).ok()
}

/// Reads the public key out of a DSN (`https://KEY@host/PROJECT`).
pub fn from_dsn(dsn: &str) -> Result<Auth, AuthError> {
    let dsn: Dsn = dsn
        .parse()
        .map_err(|e: sentry_types::ParseDsnError| AuthError::Invalid {
            source_name: "envelope header dsn",
            msg: e.to_string(),
        })?;
    Ok(dsn.to_auth(None))
}

/// The request's credentials, from the first place that has any. `Ok(None)` when
/// there are none at all.
pub fn find(
    x_sentry_auth: Option<&str>,
    authorization: Option<&str>,
    query: Option<&str>,
    envelope_dsn: Option<&str>,
) -> Result<Option<Auth>, AuthError> {
    if let Some(h) = x_sentry_auth {
        return from_header(h, "X-Sentry-Auth").map(Some);
    }
    if let Some(h) = authorization {
        if h.trim_start()
            .get(..6)
            .is_some_and(|p| p.eq_ignore_ascii_case("sentry"))
        {
            return from_header(h, "Authorization").map(Some);
        }
    }
    if let Some(a) = query.and_then(from_query) {
        return Ok(Some(a));
    }
    envelope_dsn.map(from_dsn).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_source() {
        let a = find(
            Some("Sentry sentry_key=abc, sentry_version=7, sentry_client=x/1"),
            None,
            None,
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(a.public_key(), "abc");
        let a = find(None, Some("Sentry sentry_key=def"), None, None)
            .unwrap()
            .unwrap();
        assert_eq!(a.public_key(), "def");
        let a = find(None, Some("Bearer t"), Some("x=1&sentry_key=ghi"), None)
            .unwrap()
            .unwrap();
        assert_eq!(a.public_key(), "ghi");
        let a = find(None, None, None, Some("http://jkl@127.0.0.1:9400/1"))
            .unwrap()
            .unwrap();
        assert_eq!(a.public_key(), "jkl");
        assert_eq!(
            find(None, None, Some("x=1"), None)
                .unwrap()
                .map(|a| a.public_key().to_string()),
            None
        );
        assert!(find(Some("Basic abc"), None, None, None).is_err());
        assert!(find(Some("Sentry sentry_version=7"), None, None, None).is_err());
    }
}
