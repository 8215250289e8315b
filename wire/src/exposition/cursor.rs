//! A byte cursor over the body with the line number it is on, and the token readers
//! both formats share (names, quoted label values, numbers).

use super::ParseError;
use std::borrow::Cow;

/// Position in the body; `line` is 1-based and counts the `\n`s passed.
pub(super) struct Cursor<'a> {
    pub src: &'a str,
    pub pos: usize,
    pub line: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(src: &'a str) -> Cursor<'a> {
        Cursor {
            src,
            pos: 0,
            line: 1,
        }
    }

    pub fn at_end(&self) -> bool {
        self.pos >= self.src.len()
    }

    pub fn peek(&self) -> Option<u8> {
        self.src.as_bytes().get(self.pos).copied()
    }

    pub fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    /// Consumes `b` if it is next.
    pub fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            if b == b'\n' {
                self.line += 1;
            }
            true
        } else {
            false
        }
    }

    /// Consumes `s` if it comes next (it must not hold a newline).
    pub fn eat_str(&mut self, s: &str) -> bool {
        if self.rest().starts_with(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    /// Skips spaces and tabs; returns whether it skipped any.
    pub fn skip_blanks(&mut self) -> bool {
        let start = self.pos;
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
        self.pos > start
    }

    /// The rest of the current line (without the `\n`), leaving the cursor on the `\n`.
    pub fn take_line(&mut self) -> &'a str {
        let rest = self.rest();
        let end = rest.find('\n').unwrap_or(rest.len());
        self.pos += end;
        &rest[..end]
    }

    /// Takes bytes up to (not including) a space, tab or newline.
    pub fn take_word(&mut self) -> &'a str {
        let rest = self.rest();
        let end = rest.find([' ', '\t', '\n']).unwrap_or(rest.len());
        self.pos += end;
        &rest[..end]
    }

    /// Takes a classic metric name `[a-zA-Z_:][a-zA-Z0-9_:]*` (may be empty).
    pub fn take_metric_name(&mut self) -> &'a str {
        let b = self.src.as_bytes();
        let start = self.pos;
        while let Some(&c) = b.get(self.pos) {
            let ok = c.is_ascii_alphabetic()
                || c == b'_'
                || c == b':'
                || (self.pos > start && c.is_ascii_digit());
            if !ok {
                break;
            }
            self.pos += 1;
        }
        &self.src[start..self.pos]
    }

    /// Takes a label name `[a-zA-Z_][a-zA-Z0-9_]*` (may be empty).
    pub fn take_label_name(&mut self) -> &'a str {
        let b = self.src.as_bytes();
        let start = self.pos;
        while let Some(&c) = b.get(self.pos) {
            let ok =
                c.is_ascii_alphabetic() || c == b'_' || (self.pos > start && c.is_ascii_digit());
            if !ok {
                break;
            }
            self.pos += 1;
        }
        &self.src[start..self.pos]
    }

    /// Reads a double-quoted label value (the cursor is on the opening quote).
    /// `\\`, `\"` and `\n` are resolved; any other escape is kept as written, as
    /// Prometheus keeps it. A raw newline is allowed only if `newline_ok`.
    pub fn take_quoted(&mut self, newline_ok: bool) -> Result<Cow<'a, str>, ParseError> {
        let open_line = self.line;
        if !self.eat(b'"') {
            return Err(self.error("expected a double-quoted label value"));
        }
        let b = self.src.as_bytes();
        let start = self.pos;
        let mut escaped = false;
        loop {
            match b.get(self.pos) {
                None => {
                    return Err(ParseError {
                        line: open_line,
                        message: "label value has no closing double quote".into(),
                    })
                }
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    self.pos += 1;
                    match b.get(self.pos) {
                        None => continue,
                        Some(b'\n') if !newline_ok => {
                            return Err(self.error("newline inside a label value"))
                        }
                        Some(b'\n') => self.line += 1,
                        Some(_) => {}
                    }
                    // Step over the escaped character (it may be multi-byte).
                    self.pos += utf8_len(b[self.pos]);
                }
                Some(b'\n') => {
                    if !newline_ok {
                        return Err(self.error("newline inside a label value (write it as \\n)"));
                    }
                    self.line += 1;
                    self.pos += 1;
                }
                Some(_) => self.pos += 1,
            }
        }
        let raw = &self.src[start..self.pos];
        self.pos += 1; // closing quote
        Ok(if escaped {
            unescape(raw, true)
        } else {
            Cow::Borrowed(raw)
        })
    }

    /// A parse error at the current line.
    pub fn error(&self, message: impl Into<String>) -> ParseError {
        ParseError {
            line: self.line,
            message: message.into(),
        }
    }
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

/// Resolves `\\`, `\n` and (in label values) `\"`; other escapes stay as written.
pub(super) fn unescape(raw: &str, quotes: bool) -> Cow<'_, str> {
    if !raw.contains('\\') {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if quotes => out.push('"'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    Cow::Owned(out)
}

/// Parses a sample value the way Prometheus does (Go's `strconv.ParseFloat` restricted
/// to pre-Go-1.13 forms): decimal with optional exponent, `NaN`, `Inf`, `+Inf`, `-Inf`
/// in any case; no hex floats, no `_` digit separators.
pub(super) fn parse_float(s: &str) -> Option<f64> {
    if s.is_empty() || s.contains(['p', 'P', '_', 'x', 'X']) {
        return None;
    }
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let lower = body.to_ascii_lowercase();
    if lower == "inf" || lower == "infinity" {
        return Some(if s.starts_with('-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    if lower == "nan" {
        // Go accepts no sign on NaN.
        return (body.len() == s.len()).then_some(f64::NAN);
    }
    // Anything else must be digits, one '.', and an exponent: Rust's parser also takes
    // "inf"/"nan" spellings handled above and nothing Go refuses.
    if !body
        .bytes()
        .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return None;
    }
    s.parse::<f64>().ok()
}
