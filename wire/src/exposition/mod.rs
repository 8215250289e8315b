//! The Prometheus exposition formats, as a scraper reads them: the text format 0.0.4
//! and OpenMetrics 1.0 text, chosen by the response's `Content-Type` as Prometheus does.
//!
//! ```text
//! # HELP http_requests_total Requests served.
//! # TYPE http_requests_total counter
//! http_requests_total{code="200",path="/"} 1027 1395066363000
//! http_request_seconds_bucket{le="0.5"} 129 # {trace_id="KOO5S4vxi0o"} 0.43   (OpenMetrics only)
//! # EOF                                                                        (OpenMetrics only)
//! ```
//!
//! Hand-written rather than taken from a crate: the maintained Rust crates drop or mangle
//! valid input (unknown escapes, tabs and odd whitespace, `NaN`/`±Inf` spellings, label
//! sets with trailing commas, samples out of their family's order), and a scraper must
//! store exactly what Prometheus would store. The rules follow Prometheus' own server-side
//! parsers (`model/textparse`), not the stricter client-side `expfmt` one: where the two
//! differ (a `TYPE` after samples, a repeated `HELP`, an unknown escape such as `\t`
//! kept as is), the scraper behaves like Prometheus' scraper.
//!
//! The parser borrows names and label values from the body (`&str`) and allocates only
//! for values holding escapes. Errors name the line and what was expected there.
//!
//! `_created` series are returned as ordinary samples: Prometheus 2.42 ingests them as
//! such (checked against the real server), and so does Calm's scraper.

mod cursor;
mod family;
mod openmetrics;
mod text;

pub use family::{Exemplar, Family, MetricType, Sample};

use std::fmt;

/// Which of the two formats a body is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`: Prometheus' text format.
    Text,
    /// `application/openmetrics-text; version=1.0.0`: OpenMetrics 1.0 text.
    OpenMetrics,
}

/// The `Accept` header Prometheus 2.42 sends when scraping: OpenMetrics preferred, the
/// text format as the fallback, anything else last.
pub const SCRAPE_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

impl Format {
    /// The format a response's `Content-Type` names. As in Prometheus, only an
    /// `application/openmetrics-text` media type selects OpenMetrics; anything else
    /// (missing, `text/plain`, unknown) is read as the text format.
    ///
    /// ```text
    /// application/openmetrics-text; version=1.0.0; charset=utf-8 → OpenMetrics
    /// text/plain; version=0.0.4                                  → Text
    /// ```
    pub fn from_content_type(content_type: Option<&str>) -> Format {
        let media = content_type
            .and_then(|ct| ct.split(';').next())
            .map(str::trim)
            .unwrap_or("");
        if media.eq_ignore_ascii_case("application/openmetrics-text") {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}

/// Why a body was refused: the 1-based line and what was wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number in the body.
    pub line: usize,
    /// What was expected or wrong.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// Parses a whole body in `format` into metric families, in the order they appear.
///
/// Samples whose name does not belong to the family before them start a family of
/// their own (untyped, without help), as Prometheus treats them.
pub fn parse(body: &str, format: Format) -> Result<Vec<Family<'_>>, ParseError> {
    match format {
        Format::Text => text::parse(body),
        Format::OpenMetrics => openmetrics::parse(body),
    }
}

/// Parses bytes: a body that is not UTF-8 is refused with the line of the first bad byte.
pub fn parse_bytes(body: &[u8], format: Format) -> Result<Vec<Family<'_>>, ParseError> {
    match std::str::from_utf8(body) {
        Ok(s) => parse(s, format),
        Err(e) => {
            let good = &body[..e.valid_up_to()];
            Err(ParseError {
                line: good.iter().filter(|b| **b == b'\n').count() + 1,
                message: format!("body is not valid UTF-8 (byte offset {})", e.valid_up_to()),
            })
        }
    }
}

#[cfg(test)]
mod tests;
