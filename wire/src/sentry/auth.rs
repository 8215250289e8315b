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
    /// No credentials anywhere in the request.
    #[error("missing DSN key: send X-Sentry-Auth: Sentry sentry_key=<public key>, or ?sentry_key=<public key>")]
    Missing,
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

/// The header that carries Sentry credentials, read through `header` (a lookup by
/// lowercase name): `x-sentry-auth`, else `authorization` when its scheme is `Sentry`.
/// This is the value to forward when relaying the request.
pub fn auth_header<'h>(
    header: impl Fn(&str) -> Option<&'h str>,
) -> Option<(&'h str, &'static str)> {
    if let Some(h) = header("x-sentry-auth") {
        return Some((h, "X-Sentry-Auth"));
    }
    header("authorization")
        .filter(|h| {
            h.trim_start()
                .get(..6)
                .is_some_and(|p| p.eq_ignore_ascii_case("sentry"))
        })
        .map(|h| (h, "Authorization"))
}

/// The request's credentials, from the first place that has any: the auth header
/// ([`auth_header`], through `header`), the query string, the envelope header's `dsn`.
/// [`AuthError::Missing`] when there are none at all.
pub fn find<'h>(
    header: impl Fn(&str) -> Option<&'h str>,
    query: Option<&str>,
    envelope_dsn: Option<&str>,
) -> Result<Auth, AuthError> {
    if let Some((h, name)) = auth_header(header) {
        return from_header(h, name);
    }
    if let Some(a) = query.and_then(from_query) {
        return Ok(a);
    }
    envelope_dsn
        .map(from_dsn)
        .unwrap_or(Err(AuthError::Missing))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header lookup over `(name, value)` pairs.
    fn headers<'h>(pairs: &'h [(&'h str, &'h str)]) -> impl Fn(&str) -> Option<&'h str> {
        move |name| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    #[test]
    fn every_source() {
        let sentry = [(
            "x-sentry-auth",
            "Sentry sentry_key=abc, sentry_version=7, sentry_client=x/1",
        )];
        let a = find(headers(&sentry), None, None).unwrap();
        assert_eq!(a.public_key(), "abc");
        let a = find(
            headers(&[("authorization", "Sentry sentry_key=def")]),
            None,
            None,
        )
        .unwrap();
        assert_eq!(a.public_key(), "def");
        let bearer = [("authorization", "Bearer t")];
        assert_eq!(auth_header(headers(&bearer)), None);
        let a = find(headers(&bearer), Some("x=1&sentry_key=ghi"), None).unwrap();
        assert_eq!(a.public_key(), "ghi");
        let a = find(headers(&[]), None, Some("http://jkl@127.0.0.1:9400/1")).unwrap();
        assert_eq!(a.public_key(), "jkl");
        let missing = find(headers(&[]), Some("x=1"), None).unwrap_err();
        assert_eq!(missing, AuthError::Missing);
        assert!(find(headers(&[("x-sentry-auth", "Basic abc")]), None, None).is_err());
        let no_key = [("x-sentry-auth", "Sentry sentry_version=7")];
        assert!(find(headers(&no_key), None, None).is_err());
    }
}
