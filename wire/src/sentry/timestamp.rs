//! Event timestamps: seconds since the epoch (a number or a numeric string) or an
//! RFC 3339 / ISO 8601 date-time, UTC when it carries no offset.

use chrono::{DateTime, NaiveDateTime};
use serde_json::Value;

/// How far in the future a timestamp may lie before it is replaced by the receive time.
pub const MAX_FUTURE_SECS: f64 = 60.0;
/// How old a timestamp may be before it is replaced by the receive time (30 days).
pub const MAX_AGE_SECS: f64 = 30.0 * 86_400.0;

/// Parses a timestamp into seconds since the epoch.
pub fn parse(v: &Value) -> Option<f64> {
    let secs = match v {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => parse_str(s.trim())?,
        _ => return None,
    };
    secs.is_finite().then_some(secs)
}

fn parse_str(s: &str) -> Option<f64> {
    if let Ok(n) = s.parse::<f64>() {
        return Some(n);
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.timestamp_micros() as f64 / 1e6);
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(dt.and_utc().timestamp_micros() as f64 / 1e6);
        }
    }
    None
}

/// The timestamp to keep: `given` when present and within [`MAX_AGE_SECS`] before and
/// [`MAX_FUTURE_SECS`] after `received`, else `received`.
pub fn clamp(given: Option<f64>, received: f64) -> f64 {
    match given {
        Some(t) if t <= received + MAX_FUTURE_SECS && t >= received - MAX_AGE_SECS => t,
        _ => received,
    }
}

/// Formats seconds since the epoch as RFC 3339 with microseconds (`…Z`).
pub fn format(secs: f64) -> String {
    let micros = (secs * 1e6).round() as i64;
    DateTime::from_timestamp_micros(micros)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shapes() {
        assert_eq!(parse(&json!(1.5)), Some(1.5));
        assert_eq!(parse(&json!("1700000000")), Some(1.7e9));
        assert_eq!(parse(&json!("2020-01-01T00:00:00Z")), Some(1_577_836_800.0));
        assert_eq!(
            parse(&json!("2020-01-01T00:00:00.5")),
            Some(1_577_836_800.5)
        );
        assert_eq!(
            parse(&json!("2020-01-01T01:00:00+01:00")),
            Some(1_577_836_800.0)
        );
        assert_eq!(parse(&json!("yesterday")), None);
        assert_eq!(clamp(Some(10.0), 1e9), 1e9);
        assert_eq!(clamp(None, 5.0), 5.0);
        assert_eq!(format(1_577_836_800.5), "2020-01-01T00:00:00.500000Z");
    }
}
