//! The stored form of a series' label set.
//!
//! One canonical byte string per series: it is the key the head hashes, the bytes the
//! WAL and the sled `series` tree keep, and what equality is checked on. Labels are
//! sorted by name (validation in `calm_wire::labels` guarantees it).
//!
//! ```text
//! labels := ( uvarint(len(name)) name uvarint(len(value)) value )*
//! ```

use calm_wire::prompb::Label;

/// Appends the canonical encoding of `labels` to `out`.
pub fn encode_into(labels: &[Label], out: &mut Vec<u8>) {
    for l in labels {
        put_uvarint(out, l.name.len() as u64);
        out.extend_from_slice(&l.name);
        put_uvarint(out, l.value.len() as u64);
        out.extend_from_slice(&l.value);
    }
}

/// Encodes string pairs (already sorted by name).
pub fn encode_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, v) in pairs {
        put_uvarint(&mut out, n.len() as u64);
        out.extend_from_slice(n.as_bytes());
        put_uvarint(&mut out, v.len() as u64);
        out.extend_from_slice(v.as_bytes());
    }
    out
}

/// Iterates the `(name, value)` pairs of an encoded label set. Stops at the first
/// malformed pair (stored label sets are written by us, so that means corruption).
pub fn iter(buf: &[u8]) -> LabelIter<'_> {
    LabelIter { buf }
}

/// See [`iter`].
pub struct LabelIter<'a> {
    buf: &'a [u8],
}

impl<'a> Iterator for LabelIter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            return None;
        }
        let name = take_str(&mut self.buf);
        let value = take_str(&mut self.buf);
        match (name, value) {
            (Some(n), Some(v)) => Some((n, v)),
            _ => {
                self.buf = &[];
                None
            }
        }
    }
}

/// Orders two encoded label sets as their `(name, value)` pairs order (what
/// [`iter`] would compare), without checking UTF-8 on every comparison: sorting the
/// series of a selector compares each set log(n) times.
pub fn cmp(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    fn next<'a>(buf: &mut &'a [u8]) -> Option<(&'a [u8], &'a [u8])> {
        let n = take_bytes(buf)?;
        let v = take_bytes(buf)?;
        Some((n, v))
    }
    let (mut a, mut b) = (a, b);
    loop {
        match (next(&mut a), next(&mut b)) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => match x.cmp(&y) {
                std::cmp::Ordering::Equal => {}
                other => return other,
            },
        }
    }
}

fn take_bytes<'a>(buf: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = get_uvarint(buf)? as usize;
    if buf.len() < len {
        return None;
    }
    let (s, rest) = buf.split_at(len);
    *buf = rest;
    Some(s)
}

fn take_str<'a>(buf: &mut &'a [u8]) -> Option<&'a str> {
    let len = get_uvarint(buf)? as usize;
    if buf.len() < len {
        return None;
    }
    let (s, rest) = buf.split_at(len);
    *buf = rest;
    std::str::from_utf8(s).ok()
}

/// The value of label `name`, if present.
pub fn get<'a>(buf: &'a [u8], name: &str) -> Option<&'a str> {
    iter(buf).find(|(n, _)| *n == name).map(|(_, v)| v)
}

/// Owned pairs, for API answers.
pub fn to_pairs(buf: &[u8]) -> Vec<(String, String)> {
    // Sized once: a collect from this iterator (no size hint) grew the Vec 3-4 times.
    let mut out = Vec::with_capacity(iter(buf).count());
    out.extend(iter(buf).map(|(n, v)| (n.to_string(), v.to_string())));
    out
}

/// Appends an unsigned LEB128 varint.
pub fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads an unsigned LEB128 varint, advancing `buf`. `None` on truncation or overflow.
pub fn get_uvarint(buf: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for (i, b) in buf.iter().enumerate() {
        if i >= 10 {
            return None;
        }
        v |= ((b & 0x7f) as u64) << (7 * i);
        if b & 0x80 == 0 {
            *buf = &buf[i + 1..];
            return Some(v);
        }
    }
    None
}

/// Appends a zigzag-encoded signed varint.
pub fn put_varint(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, ((v << 1) ^ (v >> 63)) as u64);
}

/// Reads a zigzag-encoded signed varint.
pub fn get_varint(buf: &mut &[u8]) -> Option<i64> {
    let u = get_uvarint(buf)?;
    Some(((u >> 1) as i64) ^ -((u & 1) as i64))
}

/// Reads `n` bytes, advancing `buf`.
pub fn get_bytes<'a>(buf: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if buf.len() < n {
        return None;
    }
    let (a, b) = buf.split_at(n);
    *buf = b;
    Some(a)
}

/// Reads a little-endian u64, advancing `buf`.
pub fn get_u64(buf: &mut &[u8]) -> Option<u64> {
    let b = get_bytes(buf, 8)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Some(u64::from_le_bytes(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let enc = encode_pairs([("__name__", "up"), ("job", "node")]);
        assert_eq!(
            iter(&enc).collect::<Vec<_>>(),
            vec![("__name__", "up"), ("job", "node")]
        );
        assert_eq!(get(&enc, "job"), Some("node"));
        // cmp orders like the pairs do, a prefix first.
        let sets = [
            encode_pairs([("__name__", "up")]),
            encode_pairs([("__name__", "up"), ("job", "a")]),
            encode_pairs([("__name__", "up"), ("job", "b")]),
            encode_pairs([("__name__", "upx")]),
            encode_pairs([("a", "z")]),
        ];
        for x in &sets {
            for y in &sets {
                assert_eq!(cmp(x, y), iter(x).cmp(iter(y)));
            }
        }
        let mut b: &[u8] = &[0x80];
        assert_eq!(get_uvarint(&mut b), None);
    }
}
