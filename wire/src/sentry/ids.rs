//! Ids: event ids (32 lowercase hex digits, as Sentry stores them) and the project id
//! of a request path (`/api/{project_id}/envelope/`).

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

/// A request path's project id that is not a number (answered 404, as Sentry does).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown project {0:?}: project ids are numbers")]
pub struct BadProjectId(pub String);

/// The project id of a request path segment.
pub fn project_id(segment: &str) -> Result<u64, BadProjectId> {
    segment
        .trim()
        .parse::<u64>()
        .map_err(|_| BadProjectId(segment.to_string()))
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

    #[test]
    fn project_ids_are_numbers() {
        assert_eq!(project_id("42"), Ok(42));
        assert_eq!(
            project_id("web").unwrap_err().to_string(),
            "unknown project \"web\": project ids are numbers"
        );
    }
}
