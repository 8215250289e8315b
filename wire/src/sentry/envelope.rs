//! Envelope framing (develop.sentry.dev, "Envelopes"):
//!
//! ```text
//! Envelope = Headers { "\n" Item } [ "\n" ]
//! Item     = Headers "\n" Payload
//! ```
//! Headers are one line of JSON. With a `length`, the payload is exactly that many
//! bytes and must be followed by `\n` or the end; without one it runs to the next `\n`.
//! Item types are kept as strings: a type this code does not know is the caller's to
//! skip, never a reason to reject the envelope.

use serde_json::{Map, Value};

/// Bounds on what one envelope may contain.
#[derive(Debug, Clone, Copy)]
pub struct EnvelopeLimits {
    /// Most items accepted in one envelope.
    pub max_items: usize,
}

impl Default for EnvelopeLimits {
    fn default() -> Self {
        EnvelopeLimits { max_items: 1000 }
    }
}

/// A parsed envelope borrowing its payloads from the request body.
#[derive(Debug)]
pub struct Envelope<'a> {
    /// The envelope header (`event_id`, `dsn`, `sent_at`, `sdk`, `trace`, …).
    pub header: Map<String, Value>,
    /// The items, in order.
    pub items: Vec<Item<'a>>,
}

impl Envelope<'_> {
    /// The envelope header's `event_id`, if it is a string.
    pub fn event_id(&self) -> Option<&str> {
        self.header.get("event_id").and_then(Value::as_str)
    }

    /// The envelope header's `dsn`, if it is a string.
    pub fn dsn(&self) -> Option<&str> {
        self.header.get("dsn").and_then(Value::as_str)
    }
}

/// One item: its header and payload bytes.
#[derive(Debug)]
pub struct Item<'a> {
    /// The item type (`event`, `transaction`, `attachment`, or anything newer).
    pub ty: String,
    /// The whole item header.
    pub header: Map<String, Value>,
    /// The payload bytes.
    pub payload: &'a [u8],
}

/// Why an envelope could not be split into items.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    /// The body is empty.
    #[error("envelope is empty: expected a JSON header line")]
    Empty,
    /// The envelope header line is not a JSON object.
    #[error("envelope header (line 1) is not a JSON object: {0}")]
    BadHeader(String),
    /// An item header is not a JSON object.
    #[error("item {index} header is not a JSON object: {msg}")]
    BadItemHeader {
        /// Zero-based item index.
        index: usize,
        /// What is wrong.
        msg: String,
    },
    /// An item header has no string `type`.
    #[error("item {index} header has no string \"type\"")]
    MissingType {
        /// Zero-based item index.
        index: usize,
    },
    /// An item header's `length` is not a non-negative integer.
    #[error("item {index} header: \"length\" must be a non-negative integer")]
    BadLength {
        /// Zero-based item index.
        index: usize,
    },
    /// The body ends before `length` payload bytes.
    #[error(
        "item {index} ({ty}) declares length {length} but only {available} bytes follow its header"
    )]
    LengthOverrun {
        /// Zero-based item index.
        index: usize,
        /// The item type.
        ty: String,
        /// The declared length.
        length: u64,
        /// Bytes left in the body.
        available: usize,
    },
    /// The byte after a length-delimited payload is neither `\n` nor the end.
    #[error("item {index} ({ty}) declares length {length} but its payload is not followed by a newline: the length is wrong")]
    BadTerminator {
        /// Zero-based item index.
        index: usize,
        /// The item type.
        ty: String,
        /// The declared length.
        length: u64,
    },
    /// More items than [`EnvelopeLimits::max_items`].
    #[error("envelope has more than {0} items")]
    TooManyItems(usize),
}

/// Splits `body` into header and items.
pub fn parse<'a>(body: &'a [u8], limits: &EnvelopeLimits) -> Result<Envelope<'a>, EnvelopeError> {
    let (first, mut pos) = line(body, 0);
    if first.iter().all(u8::is_ascii_whitespace) {
        return Err(EnvelopeError::Empty);
    }
    let header = json_object(first).map_err(EnvelopeError::BadHeader)?;
    let mut items = Vec::new();
    while pos < body.len() {
        let (hline, after) = line(body, pos);
        pos = after;
        if hline.iter().all(u8::is_ascii_whitespace) {
            // A blank line where an item header would start: tolerated padding.
            continue;
        }
        let index = items.len();
        if index >= limits.max_items {
            return Err(EnvelopeError::TooManyItems(limits.max_items));
        }
        let ih = json_object(hline).map_err(|msg| EnvelopeError::BadItemHeader { index, msg })?;
        let ty = ih
            .get("type")
            .and_then(Value::as_str)
            .ok_or(EnvelopeError::MissingType { index })?
            .to_string();
        let payload = match ih.get("length") {
            None | Some(Value::Null) => {
                let (p, after) = line(body, pos);
                pos = after;
                p
            }
            Some(v) => {
                let length = v.as_u64().ok_or(EnvelopeError::BadLength { index })?;
                let available = body.len() - pos;
                if length > available as u64 {
                    return Err(EnvelopeError::LengthOverrun {
                        index,
                        ty,
                        length,
                        available,
                    });
                }
                let end = pos + length as usize;
                let p = &body[pos..end];
                match body.get(end) {
                    None => pos = end,
                    Some(b'\n') => pos = end + 1,
                    Some(_) => return Err(EnvelopeError::BadTerminator { index, ty, length }),
                }
                p
            }
        };
        items.push(Item {
            ty,
            header: ih,
            payload,
        });
    }
    Ok(Envelope { header, items })
}

/// The bytes from `start` to the next `\n` (excluded) and the position after it.
fn line(body: &[u8], start: usize) -> (&[u8], usize) {
    match body[start..].iter().position(|&b| b == b'\n') {
        Some(n) => (&body[start..start + n], start + n + 1),
        None => (&body[start..], body.len()),
    }
}

fn json_object(bytes: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(format!("found {}", kind(&other))),
        Err(e) => Err(e.to_string()),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(b: &[u8]) -> Result<Envelope<'_>, EnvelopeError> {
        parse(b, &EnvelopeLimits::default())
    }

    #[test]
    fn explicit_and_implicit_lengths() {
        let env = p(b"{\"event_id\":\"a\"}\n{\"type\":\"attachment\",\"length\":4}\nab\r\n\n{\"type\":\"event\"}\n{}\n").unwrap();
        assert_eq!(env.event_id(), Some("a"));
        assert_eq!(env.items.len(), 2);
        assert_eq!(env.items[0].payload, b"ab\r\n");
        assert_eq!(env.items[1].ty, "event");
        assert_eq!(env.items[1].payload, b"{}");
    }

    #[test]
    fn lies_and_garbage_are_errors() {
        assert!(matches!(
            p(b"{}\n{\"type\":\"event\",\"length\":50}\n{}"),
            Err(EnvelopeError::LengthOverrun { .. })
        ));
        assert!(matches!(
            p(b"{}\n{\"type\":\"event\",\"length\":1}\n{}\n"),
            Err(EnvelopeError::BadTerminator { .. })
        ));
        assert!(matches!(p(b"not json\n"), Err(EnvelopeError::BadHeader(_))));
        assert!(matches!(
            p(b"{}\n[1]\n"),
            Err(EnvelopeError::BadItemHeader { .. })
        ));
        assert!(matches!(
            p(b"{}\n{\"length\":0}\n\n"),
            Err(EnvelopeError::MissingType { .. })
        ));
        assert!(matches!(
            p(b"{}\n{\"type\":\"x\",\"length\":-1}\n"),
            Err(EnvelopeError::BadLength { .. })
        ));
        assert_eq!(p(b"").unwrap_err(), EnvelopeError::Empty);
    }

    #[test]
    fn header_only_and_zero_length() {
        assert!(p(b"{}").unwrap().items.is_empty());
        let env = p(b"{}\n{\"type\":\"attachment\",\"length\":0}\n\n{\"type\":\"attachment\",\"length\":0}\n").unwrap();
        assert_eq!(env.items.len(), 2);
        assert!(env.items.iter().all(|i| i.payload.is_empty()));
    }
}
