//! Byte escapes in PromQL string literals, read as Prometheus (Go) reads them.
//!
//! ```text
//! "caf\xc3\xa9"   Go: the bytes c a f 0xC3 0xA9 = "café"      promql-parser: "cafÃ©"
//! "a\xc5z"        Go: a, 0xC5, z = not UTF-8 (an invalid name) promql-parser: "aÅz"
//! "\303\251"      octal escapes are bytes too                  = "é"
//! ```
//! promql-parser 0.11 turns `\xNN` and `\NNN` escapes into the code point U+00NN
//! instead of the byte 0xNN. Below 0x80 the two agree; above it they differ. Before
//! parsing, [`rewrite`] decodes every quoted literal that holds such an escape the way
//! Go does: if the bytes are UTF-8 the literal is written back with the characters
//! themselves; if they are not, the query is refused (Calm's strings are UTF-8, and a
//! label name or value that is not UTF-8 is invalid anyway). Written by hand: the
//! lexing needed (skip comments and raw strings, find quoted literals) is a few lines,
//! and no crate reads Go string escapes.

use std::borrow::Cow;

/// The query with every quoted literal that holds a byte escape of 0x80 or above
/// rewritten as Go would read it; the query unchanged (borrowed) when none does.
/// Literals this cannot decode (a bad escape, no closing quote) are left alone for the
/// parser to report.
pub fn rewrite(q: &str) -> Result<Cow<'_, str>, String> {
    // Fast path: no escape that could be a high byte.
    if !q.contains('\\') {
        return Ok(Cow::Borrowed(q));
    }
    let b = q.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0; // bytes of q already in `out`
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'#' => {
                // A comment runs to the end of the line.
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'`' => {
                // Raw strings have no escapes.
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
                i += 1;
            }
            quote @ (b'"' | b'\'') => {
                let Some(end) = literal_end(b, i, quote) else {
                    return Ok(out.map_or(Cow::Borrowed(q), Cow::Owned));
                };
                let inner = &q[i + 1..end];
                if let Some(bytes) = go_bytes(inner, quote) {
                    if bytes.high_byte_escape {
                        let text = String::from_utf8(bytes.bytes).map_err(|_| {
                            format!(
                                "string literal {} is not valid UTF-8 once its byte escapes are read",
                                &q[i..=end]
                            )
                        })?;
                        let o = out.get_or_insert_with(|| String::with_capacity(q.len()));
                        o.push_str(&q[copied..i]);
                        o.push('"');
                        o.push_str(&promql_parser::util::escape_string(&text));
                        o.push('"');
                        copied = end + 1;
                    }
                }
                i = end + 1;
            }
            _ => i += 1,
        }
    }
    Ok(match out {
        None => Cow::Borrowed(q),
        Some(mut o) => {
            o.push_str(&q[copied..]);
            Cow::Owned(o)
        }
    })
}

/// Index of the quote closing the literal that opens at `start`, skipping escapes.
fn literal_end(b: &[u8], start: usize, quote: u8) -> Option<usize> {
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'\n' => return None,
            c if c == quote => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// A literal's contents decoded as Go's `strconv.Unquote` does.
struct GoBytes {
    bytes: Vec<u8>,
    /// Whether a `\x` or octal escape gave a byte of 0x80 or above.
    high_byte_escape: bool,
}

/// Decodes the inside of a quoted literal; `None` on an escape Go would refuse too.
fn go_bytes(inner: &str, quote: u8) -> Option<GoBytes> {
    let b = inner.as_bytes();
    let mut out = GoBytes {
        bytes: Vec::with_capacity(b.len()),
        high_byte_escape: false,
    };
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.bytes.push(b[i]);
            i += 1;
            continue;
        }
        let c = *b.get(i + 1)?;
        i += 2;
        let simple = match c {
            b'a' => Some(0x07),
            b'b' => Some(0x08),
            b'f' => Some(0x0c),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'v' => Some(0x0b),
            b'\\' => Some(b'\\'),
            b'"' | b'\'' if c == quote => Some(c),
            _ => None,
        };
        if let Some(v) = simple {
            out.bytes.push(v);
            continue;
        }
        match c {
            b'x' => {
                let v = u8::from_str_radix(inner.get(i..i + 2)?, 16).ok()?;
                out.high_byte_escape |= v >= 0x80;
                out.bytes.push(v);
                i += 2;
            }
            b'0'..=b'7' => {
                let v = u32::from_str_radix(inner.get(i - 1..i + 2)?, 8).ok()?;
                let v = u8::try_from(v).ok()?;
                out.high_byte_escape |= v >= 0x80;
                out.bytes.push(v);
                i += 2;
            }
            b'u' | b'U' => {
                let n = if c == b'u' { 4 } else { 8 };
                let v = u32::from_str_radix(inner.get(i..i + n)?, 16).ok()?;
                let ch = char::from_u32(v)?;
                let mut buf = [0u8; 4];
                out.bytes
                    .extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                i += n;
            }
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::rewrite;

    #[test]
    fn utf8_byte_escapes_become_characters() {
        assert_eq!(rewrite(r#"x{a="caf\xc3\xa9"}"#).unwrap(), r#"x{a="café"}"#);
        assert_eq!(rewrite(r#"x{a='\303\251\n'}"#).unwrap(), r#"x{a="é\n"}"#);
        assert_eq!(
            rewrite(r#"label_replace(x, "d", "\xc3\xa9\"\\", "s", "(.*)")"#).unwrap(),
            r#"label_replace(x, "d", "é\"\\", "s", "(.*)")"#
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_are_refused() {
        let e = rewrite(r#"count_values("a\xc5z", version)"#).unwrap_err();
        assert!(e.contains(r#""a\xc5z""#), "{e}");
        assert!(rewrite(r#"x{a="\377"}"#).is_err());
    }

    #[test]
    fn everything_else_is_left_alone() {
        for q in [
            r#"x{a="plain", b='\x41\u00e9\t'}"#,
            r#"x{a=`\xff`}"#,
            "x # a comment \"\\xff\"\n + 1",
            r#"x{a="\xff"#,
            r#"x{a="\q\xff"}"#,
            r#"x{a="\xf"}"#,
        ] {
            let r = rewrite(q).unwrap();
            assert_eq!(r, q);
            assert!(matches!(r, std::borrow::Cow::Borrowed(_)), "{q}");
        }
    }
}
