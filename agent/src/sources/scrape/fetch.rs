//! One HTTP scrape: `GET` with Prometheus' `Accept` header and gzip, the body read up
//! to a byte limit within the timeout, so a target that sends 100 MB or never stops
//! costs at most the limit in memory and the timeout in time.
//!
//! ```text
//! GET /metrics
//! Accept: application/openmetrics-text;version=1.0.0,…,text/plain;version=0.0.4;q=0.5,*/*;q=0.1
//! Accept-Encoding: gzip
//! X-Prometheus-Scrape-Timeout-Seconds: 10
//! ```
//!
//! reqwest only decompresses when built with its `gzip` feature and then gives no
//! control over the decompressed size; the body is gunzipped here with a cap instead.

use super::config::Target;
use calm_wire::exposition::SCRAPE_ACCEPT;
use std::io::Read;
use std::time::Duration;

/// A body as fetched: decompressed bytes and the `Content-Type` that picks the parser.
#[derive(Debug)]
pub struct Body {
    pub bytes: Vec<u8>,
    pub content_type: Option<String>,
}

/// Why a scrape got no body. The message says what happened and what to change.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("scrape timed out after {0:?} (raise `timeout`, at most the interval)")]
    Timeout(Duration),
    #[error("body is larger than body_size_limit = {0} bytes; the scrape fails (raise body_size_limit if the target is right)")]
    TooLarge(usize),
    #[error("server returned HTTP status {0}")]
    Status(reqwest::StatusCode),
    #[error("request failed: {0}")]
    Http(String),
    #[error("cannot gunzip the body: {0}")]
    Gzip(std::io::Error),
}

/// The HTTP client shared by every target: no redirects limit beyond reqwest's, no
/// proxy from the environment surprises (loopback apps are scraped directly).
pub fn client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!("calm-agent/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
}

/// Fetches the target's body within its timeout and size limit.
pub async fn fetch(client: &reqwest::Client, target: &Target) -> Result<Body, FetchError> {
    match tokio::time::timeout(target.timeout, fetch_inner(client, target)).await {
        Ok(r) => r,
        Err(_) => Err(FetchError::Timeout(target.timeout)),
    }
}

async fn fetch_inner(client: &reqwest::Client, target: &Target) -> Result<Body, FetchError> {
    let limit = target.body_size_limit;
    let mut resp = client
        .get(target.url.clone())
        .header("Accept", SCRAPE_ACCEPT)
        .header("Accept-Encoding", "gzip")
        .header(
            "X-Prometheus-Scrape-Timeout-Seconds",
            format!("{}", target.timeout.as_secs_f64()),
        )
        .send()
        .await
        .map_err(|e| FetchError::Http(without_url(&e)))?;
    if !resp.status().is_success() {
        return Err(FetchError::Status(resp.status()));
    }
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(FetchError::TooLarge(limit));
    }
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let content_type = header("content-type");
    let gzip = header("content-encoding").is_some_and(|e| e.eq_ignore_ascii_case("gzip"));
    let mut bytes = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| FetchError::Http(without_url(&e)))?
    {
        let need = bytes.len() + chunk.len();
        if need > limit {
            return Err(FetchError::TooLarge(limit));
        }
        if need > bytes.capacity() {
            // Double as Vec would, but never past the limit: a body just under it must
            // not hold twice the limit in capacity.
            let cap = (bytes.capacity() * 2).max(need).max(64 << 10).min(limit);
            bytes.reserve_exact(cap - bytes.len());
        }
        bytes.extend_from_slice(&chunk);
    }
    if gzip {
        bytes = gunzip(&bytes, limit)?;
    }
    Ok(Body {
        bytes,
        content_type,
    })
}

/// Decompresses at most `limit` bytes; more is [`FetchError::TooLarge`].
fn gunzip(compressed: &[u8], limit: usize) -> Result<Vec<u8>, FetchError> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(compressed)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(FetchError::Gzip)?;
    if out.len() > limit {
        return Err(FetchError::TooLarge(limit));
    }
    Ok(out)
}

/// reqwest's message with its causes (connection refused, reset, …).
fn without_url(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn gunzip_stops_at_the_limit() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&vec![b'a'; 1 << 20]).unwrap();
        let gz = enc.finish().unwrap();
        assert!(gz.len() < 10_000, "a zip bomb in miniature");
        assert!(matches!(gunzip(&gz, 1000), Err(FetchError::TooLarge(1000))));
        assert_eq!(gunzip(&gz, 1 << 20).unwrap().len(), 1 << 20);
    }
}
