//! Event levels: `debug`, `info`, `warning`, `error`, `fatal`.

use serde_json::Value;

/// The level an event has when it names none.
pub const DEFAULT_LEVEL: &str = "error";

/// Normalises a level given as a name (`warn`, `critical`, `log`, any case) or a
/// number (Python logging's 10–50, or 0–4); `None` when unrecognised.
pub fn normalize(v: &Value) -> Option<&'static str> {
    match v {
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "debug" | "trace" => Some("debug"),
            "info" | "log" | "notice" => Some("info"),
            "warning" | "warn" => Some("warning"),
            "error" | "err" => Some("error"),
            "fatal" | "critical" => Some("fatal"),
            n => n.parse::<i64>().ok().and_then(from_number),
        },
        Value::Number(n) => n.as_i64().and_then(from_number),
        _ => None,
    }
}

fn from_number(n: i64) -> Option<&'static str> {
    Some(match n {
        0 | 10 => "debug",
        1 | 20 => "info",
        2 | 30 => "warning",
        3 | 40 => "error",
        4 | 50 => "fatal",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_and_numbers() {
        assert_eq!(normalize(&json!("WARN")), Some("warning"));
        assert_eq!(normalize(&json!("critical")), Some("fatal"));
        assert_eq!(normalize(&json!(30)), Some("warning"));
        assert_eq!(normalize(&json!("40")), Some("error"));
        assert_eq!(normalize(&json!("loud")), None);
    }
}
