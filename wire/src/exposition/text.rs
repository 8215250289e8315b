//! Prometheus' text format 0.0.4, read as Prometheus' server-side scraper reads it.
//!
//! ```text
//! # HELP name docstring with \\ and \n escapes
//! # TYPE name counter|gauge|histogram|summary|untyped
//! name{label="value",...} value [timestamp_ms]
//! ```
//!
//! Lenient where Prometheus is: blank lines, leading and repeated spaces or tabs, a
//! space between the name and `{`, a trailing comma in a label set, no final newline,
//! other comments anywhere, a repeated `HELP`/`TYPE` or a `TYPE` after samples, an
//! unknown escape kept as written, a raw newline inside a quoted label value. Strict
//! where it is: an unknown type, a bad name, an unquoted value, a float timestamp, an
//! extra token, a repeated label name.

use super::cursor::{parse_float, unescape, Cursor};
use super::family::{FamilyBuilder, MetricType, Sample};
use super::{Family, ParseError};
use std::borrow::Cow;

pub(super) fn parse(body: &str) -> Result<Vec<Family<'_>>, ParseError> {
    let mut c = Cursor::new(body);
    let mut out = FamilyBuilder::default();
    loop {
        c.skip_blanks();
        match c.peek() {
            None => break,
            Some(b'\n') => {
                c.eat(b'\n');
            }
            Some(b'#') => comment(&mut c, &mut out)?,
            Some(_) => sample(&mut c, &mut out)?,
        }
    }
    Ok(out.families)
}

fn end_of_line(c: &mut Cursor<'_>, after: &str) -> Result<(), ParseError> {
    c.skip_blanks();
    if c.at_end() || c.eat(b'\n') {
        Ok(())
    } else {
        Err(c.error(format!(
            "unexpected {:?} after {after}: expected the end of the line",
            preview(c.rest())
        )))
    }
}

/// The start of `s` for an error message.
pub(super) fn preview(s: &str) -> &str {
    let end = s.find('\n').unwrap_or(s.len());
    let mut cut = end.min(40);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

fn comment<'a>(c: &mut Cursor<'a>, out: &mut FamilyBuilder<'a>) -> Result<(), ParseError> {
    c.eat(b'#');
    c.skip_blanks();
    let save = (c.pos, c.line);
    let word = c.take_word();
    let is_meta = (word == "HELP" || word == "TYPE") && c.skip_blanks();
    if !is_meta {
        // An ordinary comment.
        (c.pos, c.line) = save;
        c.take_line();
        c.eat(b'\n');
        return Ok(());
    }
    let name = c.take_metric_name();
    if name.is_empty() {
        // `# HELP` with nothing after it: a comment, as prometheus/common reads it.
        c.take_line();
        c.eat(b'\n');
        return Ok(());
    }
    let spaced = c.skip_blanks();
    let at_eol = c.at_end() || c.peek() == Some(b'\n');
    if !spaced && !at_eol {
        return Err(c.error(format!(
            "invalid metric name in # {word}: {name:?} is followed by {:?}",
            preview(c.rest())
        )));
    }
    let line = c.line;
    let text = c.take_line();
    c.eat(b'\n');
    if word == "HELP" {
        out.for_metadata(name).help = Some(unescape(text, false));
    } else {
        let kind = match text.trim_end_matches([' ', '\t']) {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "summary" => MetricType::Summary,
            "untyped" => MetricType::Unknown,
            other => {
                return Err(ParseError {
                    line,
                    message: format!(
                        "invalid metric type {other:?} for {name}: expected counter, gauge, histogram, summary or untyped"
                    ),
                })
            }
        };
        out.for_metadata(name).kind = kind;
    }
    Ok(())
}

/// Reads `{name="value", ...}` with the text format's freedoms (blanks, trailing comma,
/// raw newlines in values). The cursor is on `{`.
pub(super) fn labels<'a>(
    c: &mut Cursor<'a>,
    lenient: bool,
) -> Result<Vec<(&'a str, Cow<'a, str>)>, ParseError> {
    c.eat(b'{');
    let mut out: Vec<(&'a str, Cow<'a, str>)> = Vec::new();
    loop {
        if lenient {
            c.skip_blanks();
        }
        if c.eat(b'}') {
            if !lenient && !out.is_empty() && c.src.as_bytes()[c.pos - 2] == b',' {
                return Err(c.error("expected a label name after ',', got '}'"));
            }
            return Ok(out);
        }
        let name = c.take_label_name();
        if name.is_empty() {
            return Err(c.error(format!(
                "expected a label name, got {:?}",
                preview(c.rest())
            )));
        }
        if lenient {
            c.skip_blanks();
        }
        if !c.eat(b'=') {
            return Err(c.error(format!(
                "expected '=' after label name {name:?}, got {:?}",
                preview(c.rest())
            )));
        }
        if lenient {
            c.skip_blanks();
        }
        if c.peek() != Some(b'"') {
            return Err(c.error(format!(
                "expected a double-quoted value for label {name:?}, got {:?}",
                preview(c.rest())
            )));
        }
        let value = c.take_quoted(lenient)?;
        if name == "__name__" || out.iter().any(|(n, _)| *n == name) {
            return Err(c.error(format!("label name {name:?} is not unique")));
        }
        out.push((name, value));
        if lenient {
            c.skip_blanks();
        }
        if c.eat(b',') {
            if !lenient && c.peek() == Some(b',') {
                return Err(c.error("expected a label name after ',', got ','"));
            }
            continue;
        }
        if c.peek() == Some(b'}') {
            continue;
        }
        return Err(c.error(format!(
            "expected ',' or '}}' after the value of label {name:?}, got {:?}",
            preview(c.rest())
        )));
    }
}

/// The metric name a sample line starts with, or the error naming what is there.
pub(super) fn sample_name<'a>(c: &mut Cursor<'a>) -> Result<&'a str, ParseError> {
    let name = c.take_metric_name();
    if name.is_empty() {
        return Err(c.error(format!(
            "expected a metric name at the start of a sample, got {:?}",
            preview(c.rest())
        )));
    }
    Ok(name)
}

fn sample<'a>(c: &mut Cursor<'a>, out: &mut FamilyBuilder<'a>) -> Result<(), ParseError> {
    let name = sample_name(c)?;
    let mut spaced = c.skip_blanks();
    let labels = if c.peek() == Some(b'{') {
        let l = labels(c, true)?;
        spaced = true; // `name{...}value` is fine after a label set
        c.skip_blanks();
        l
    } else {
        Vec::new()
    };
    if !spaced || c.at_end() || c.peek() == Some(b'\n') {
        return Err(c.error(format!(
            "expected a value after metric {name:?}, got {:?}",
            preview(c.rest())
        )));
    }
    let word = c.take_word();
    let value = parse_float(word)
        .ok_or_else(|| c.error(format!("invalid value {word:?} for metric {name:?}")))?;
    let mut timestamp_ms = None;
    if c.skip_blanks() && !c.at_end() && c.peek() != Some(b'\n') {
        let ts = c.take_word();
        timestamp_ms = Some(ts.parse::<i64>().map_err(|_| {
            c.error(format!(
                "invalid timestamp {ts:?} for metric {name:?}: expected integer milliseconds"
            ))
        })?);
    }
    end_of_line(c, "the sample")?;
    out.for_sample(name).samples.push(Sample {
        name,
        labels,
        value,
        timestamp_ms,
        exemplar: None,
    });
    Ok(())
}
