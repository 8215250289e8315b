//! Event ids: 32 lowercase hex digits, as Sentry stores them.

use sentry_types::Uuid;

/// Normalises an event id given as a UUID with or without dashes; `None` when it is
/// not one (the caller then assigns a fresh id).
pub fn normalize_event_id(s: &str) -> Option<String> {
    let u = Uuid::try_parse(s.trim()).ok()?;
    if u.is_nil() {
        return None;
    }
    Some(u.simple().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dashes_and_case() {
        assert_eq!(
            normalize_event_id("4B9A1C2D-3E4F-40A1-B2C3-D4E5F6A7B8C9").as_deref(),
            Some("4b9a1c2d3e4f40a1b2c3d4e5f6a7b8c9")
        );
        assert_eq!(normalize_event_id("nope"), None);
        assert_eq!(normalize_event_id("00000000000000000000000000000000"), None);
    }
}
