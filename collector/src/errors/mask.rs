//! Masking of the parts of a message or exception value that vary between
//! occurrences of the same problem: UUIDs, hex numbers, and numbers.

use regex::Regex;
use std::sync::LazyLock;

static UUID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\b")
        .expect("static regex")
});
static HEX: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b0x[0-9a-f]+\b|\b[0-9a-f]*[0-9][0-9a-f]*[a-f][0-9a-f]*\b|\b[0-9a-f]*[a-f][0-9a-f]*[0-9][0-9a-f]*\b")
        .expect("static regex")
});
static NUMBER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\d+(?:\.\d+)?").expect("static regex"));

/// Replaces UUIDs with `<uuid>`, hex numbers (`0x…`, or hex words of 6+ digits mixing
/// digits and letters) with `<hex>`, and other digit runs with `<int>`.
pub fn mask(s: &str) -> String {
    let s = UUID.replace_all(s, "<uuid>");
    let s = HEX.replace_all(&s, |c: &regex::Captures<'_>| {
        let m = &c[0];
        if m.len() >= 6 || m.starts_with("0x") || m.starts_with("0X") {
            "<hex>".to_string()
        } else {
            m.to_string()
        }
    });
    NUMBER.replace_all(&s, "<int>").into_owned()
}

#[cfg(test)]
mod tests {
    use super::mask;

    #[test]
    fn varying_parts() {
        assert_eq!(mask("order 17 failed"), mask("order 4242 failed"));
        assert_eq!(mask("at 0x7fff1234"), "at <hex>");
        assert_eq!(mask("id 4b9a1c2d-3e4f-40a1-b2c3-d4e5f6a7b8c9"), "id <uuid>");
        assert_eq!(mask("commit deadbeef12"), "commit <hex>");
        assert_eq!(mask("took 1.5s"), "took <int>s");
        assert_eq!(mask("a bad cafe"), "a bad cafe");
    }
}
