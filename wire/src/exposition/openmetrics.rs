//! OpenMetrics 1.0 text, read as Prometheus' scraper reads it (`application/openmetrics-text`).
//!
//! ```text
//! # TYPE name counter|gauge|histogram|gaugehistogram|summary|info|stateset|unknown
//! # UNIT name unit                (the name must end in _unit)
//! # HELP name docstring
//! name_total{label="value"} 17 1520879607.789 # {trace_id="abc"} 1 1520879607.1
//! # EOF
//! ```
//!
//! Stricter than the text format, as the spec and Prometheus are: every line ends in
//! `\n` (the final `# EOF` may not), single spaces between tokens, no blank lines, no
//! comments other than `HELP`/`TYPE`/`UNIT`/`EOF`, nothing after `# EOF`, no trailing
//! comma in a label set, timestamps in (float) seconds, exemplars only on `_total` and
//! `_bucket` samples. Like Prometheus, and unlike a full OpenMetrics validator, it does
//! not check values against the type (a negative counter, buckets out of order, a
//! histogram without `+Inf`): those bodies are scraped as Prometheus scrapes them.

use super::cursor::{parse_float, unescape, Cursor};
use super::family::{Exemplar, FamilyBuilder, MetricType, Sample};
use super::text::{labels, preview, sample_name};
use super::{Family, ParseError};

pub(super) fn parse(body: &str) -> Result<Vec<Family<'_>>, ParseError> {
    let mut c = Cursor::new(body);
    let mut out = FamilyBuilder::default();
    loop {
        if c.at_end() {
            return Err(c.error("body does not end with # EOF (required in OpenMetrics)"));
        }
        if c.eat_str("# EOF") {
            if (c.eat(b'\n') || c.at_end()) && c.at_end() {
                return Ok(out.families);
            }
            return Err(c.error("unexpected data after # EOF"));
        }
        match c.peek() {
            Some(b'#') => metadata(&mut c, &mut out)?,
            Some(b'\n') => return Err(c.error("blank line (not allowed in OpenMetrics)")),
            Some(b' ' | b'\t') => return Err(c.error("line starts with whitespace")),
            _ => sample(&mut c, &mut out)?,
        }
    }
}

fn newline(c: &mut Cursor<'_>, after: &str) -> Result<(), ParseError> {
    if c.eat(b'\n') {
        Ok(())
    } else if c.at_end() {
        Err(c.error(format!("{after} does not end with a newline")))
    } else {
        Err(c.error(format!(
            "unexpected {:?} after {after}: expected a newline",
            preview(c.rest())
        )))
    }
}

fn metadata<'a>(c: &mut Cursor<'a>, out: &mut FamilyBuilder<'a>) -> Result<(), ParseError> {
    let word = if c.eat_str("# HELP ") {
        "HELP"
    } else if c.eat_str("# TYPE ") {
        "TYPE"
    } else if c.eat_str("# UNIT ") {
        "UNIT"
    } else {
        return Err(c.error(format!(
            "{:?} is not allowed: OpenMetrics has no comments other than # HELP, # TYPE, # UNIT and # EOF",
            preview(c.rest())
        )));
    };
    let name = c.take_metric_name();
    if name.is_empty() {
        return Err(c.error(format!(
            "expected a metric name after # {word}, got {:?}",
            preview(c.rest())
        )));
    }
    if !c.eat(b' ') {
        return Err(c.error(format!(
            "expected a space and text after # {word} {name}, got {:?}",
            preview(c.rest())
        )));
    }
    let line = c.line;
    let text = c.take_line();
    newline(c, "the metadata line")?;
    let err = |message: String| ParseError { line, message };
    match word {
        "HELP" => out.for_metadata(name).help = Some(unescape(text, false)),
        "TYPE" => {
            out.for_metadata(name).kind = match text {
                "counter" => MetricType::Counter,
                "gauge" => MetricType::Gauge,
                "histogram" => MetricType::Histogram,
                "gaugehistogram" => MetricType::GaugeHistogram,
                "summary" => MetricType::Summary,
                "info" => MetricType::Info,
                "stateset" => MetricType::StateSet,
                "unknown" => MetricType::Unknown,
                other => return Err(err(format!(
                    "invalid metric type {other:?} for {name}: expected counter, gauge, histogram, gaugehistogram, summary, info, stateset or unknown"
                ))),
            }
        }
        _ => {
            let suffixed = name
                .strip_suffix(text)
                .is_some_and(|stem| stem.ends_with('_'));
            if !text.is_empty() && !suffixed {
                return Err(err(format!(
                    "unit {text:?} is not a suffix of metric {name:?} (it must end in _{text})"
                )));
            }
            out.for_metadata(name).unit = Some(text);
        }
    }
    Ok(())
}

/// A token up to the next space or newline (tabs are part of it, and make it invalid).
fn token<'a>(c: &mut Cursor<'a>) -> &'a str {
    let rest = c.rest();
    let end = rest.find([' ', '\n']).unwrap_or(rest.len());
    c.pos += end;
    &rest[..end]
}

/// A float timestamp in seconds → milliseconds (truncated, as Prometheus does).
fn timestamp(c: &Cursor<'_>, word: &str, what: &str) -> Result<i64, ParseError> {
    let ts = parse_float(word).ok_or_else(|| {
        c.error(format!(
            "invalid {what} timestamp {word:?}: expected seconds"
        ))
    })?;
    if !ts.is_finite() {
        return Err(c.error(format!("invalid {what} timestamp {word:?}: must be finite")));
    }
    Ok((ts * 1000.0) as i64)
}

fn sample<'a>(c: &mut Cursor<'a>, out: &mut FamilyBuilder<'a>) -> Result<(), ParseError> {
    let name = sample_name(c)?;
    let labels = if c.peek() == Some(b'{') {
        labels(c, false)?
    } else {
        Vec::new()
    };
    if !c.eat(b' ') {
        return Err(c.error(format!(
            "expected a space and a value after metric {name:?}, got {:?}",
            preview(c.rest())
        )));
    }
    let word = token(c);
    let value = parse_float(word)
        .ok_or_else(|| c.error(format!("invalid value {word:?} for metric {name:?}")))?;
    let mut timestamp_ms = None;
    let mut exemplar = None;
    if c.eat(b' ') {
        if c.peek() != Some(b'#') {
            let ts = token(c);
            timestamp_ms = Some(timestamp(c, ts, "sample")?);
            if c.eat(b' ') && c.peek() != Some(b'#') {
                return Err(c.error(format!(
                    "unexpected {:?} after the timestamp of {name:?}",
                    preview(c.rest())
                )));
            }
        }
        if c.peek() == Some(b'#') {
            exemplar = Some(read_exemplar(c, name)?);
        }
    }
    newline(c, "the sample")?;
    out.for_sample(name).samples.push(Sample {
        name,
        labels,
        value,
        timestamp_ms,
        exemplar,
    });
    Ok(())
}

/// ` # {labels} value [timestamp]` after a sample; the cursor is on `#`.
fn read_exemplar<'a>(c: &mut Cursor<'a>, name: &str) -> Result<Exemplar<'a>, ParseError> {
    if !c.eat_str("# {") {
        return Err(c.error(format!(
            "expected an exemplar \"# {{labels}} value\" after the sample, got {:?}",
            preview(c.rest())
        )));
    }
    c.pos -= 1; // back onto '{'
    if !(name.ends_with("_total") || name.ends_with("_bucket")) {
        return Err(c.error(format!(
            "metric name {name} does not support exemplars (only _total and _bucket samples have them)"
        )));
    }
    let labels = labels(c, false)?;
    if !c.eat(b' ') {
        return Err(c.error(format!(
            "expected a space and a value after the exemplar's labels, got {:?}",
            preview(c.rest())
        )));
    }
    let word = token(c);
    let value =
        parse_float(word).ok_or_else(|| c.error(format!("invalid exemplar value {word:?}")))?;
    let mut timestamp_ms = None;
    if c.eat(b' ') {
        let ts = token(c);
        timestamp_ms = Some(timestamp(c, ts, "exemplar")?);
    }
    Ok(Exemplar {
        labels,
        value,
        timestamp_ms,
    })
}
