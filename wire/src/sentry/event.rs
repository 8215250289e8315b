//! An event payload read as plain JSON, with limits, and helpers for the legacy shapes
//! SDKs still send (bare lists, `values` wrappers, `sentry.interfaces.*` names, tags as
//! objects or pairs, `message` vs `logentry`).
//!
//! Depth: serde_json refuses nesting deeper than 128 levels with an error, so a
//! hostile payload cannot exhaust the stack; that limit is kept on purpose.

use serde_json::{Map, Value};

/// Why a payload is not an event.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    /// Larger than the limit.
    #[error("event payload is {size} bytes, more than the limit of {max}")]
    TooLarge {
        /// Payload size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Not UTF-8.
    #[error("event payload is not valid UTF-8 (first bad byte at offset {0})")]
    NotUtf8(usize),
    /// Not JSON (or nested too deeply).
    #[error("event payload is not valid JSON: {0}")]
    Json(String),
    /// JSON, but not an object.
    #[error("event payload must be a JSON object")]
    NotObject,
}

/// Parses an event payload, at most `max_bytes` long.
pub fn parse(bytes: &[u8], max_bytes: usize) -> Result<Map<String, Value>, EventError> {
    if bytes.len() > max_bytes {
        return Err(EventError::TooLarge {
            size: bytes.len(),
            max: max_bytes,
        });
    }
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(EventError::NotUtf8(e.valid_up_to()));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(EventError::NotObject),
        Err(e) => Err(EventError::Json(e.to_string())),
    }
}

/// Legacy interface names and the canonical keys they stand for.
const INTERFACES: &[(&str, &str)] = &[
    ("sentry.interfaces.Exception", "exception"),
    ("sentry.interfaces.Message", "logentry"),
    ("sentry.interfaces.Stacktrace", "stacktrace"),
    ("sentry.interfaces.Http", "request"),
    ("sentry.interfaces.User", "user"),
    ("sentry.interfaces.Breadcrumbs", "breadcrumbs"),
    ("sentry.interfaces.Template", "template"),
    ("sentry.interfaces.Threads", "threads"),
    ("sentry.interfaces.Contexts", "contexts"),
    ("sentry.interfaces.DebugMeta", "debug_meta"),
];

/// Renames `sentry.interfaces.*` keys to their canonical names (unless the canonical
/// key is already present), and a `message` object to `logentry`.
pub fn canonicalize_interfaces(event: &mut Map<String, Value>) {
    for (legacy, canonical) in INTERFACES {
        if let Some(v) = event.remove(*legacy) {
            event.entry(canonical.to_string()).or_insert(v);
        }
    }
    if matches!(event.get("message"), Some(Value::Object(_))) {
        if let Some(m) = event.remove("message") {
            event.entry("logentry".to_string()).or_insert(m);
        }
    }
}

/// The entries of a list interface: a bare list, `{"values": [...]}`, or one object.
pub fn values_list(v: Option<&Value>) -> Vec<Value> {
    values_refs(v).into_iter().cloned().collect()
}

/// [`values_list`] without copying: the entries, borrowed.
pub fn values_refs(v: Option<&Value>) -> Vec<&Value> {
    match v {
        Some(Value::Array(a)) => a.iter().filter(|x| x.is_object()).collect(),
        Some(Value::Object(o)) => match o.get("values") {
            Some(Value::Array(a)) => a.iter().filter(|x| x.is_object()).collect(),
            Some(_) => Vec::new(),
            None if o.is_empty() => Vec::new(),
            None => v.into_iter().collect(),
        },
        _ => Vec::new(),
    }
}

/// [`values_list`] of a value the caller owns: the entries, moved out (no copy).
pub fn values_owned(v: Option<Value>) -> Vec<Value> {
    let keep = |a: Vec<Value>| a.into_iter().filter(Value::is_object).collect();
    match v {
        Some(Value::Array(a)) => keep(a),
        Some(Value::Object(mut o)) => match o.remove("values") {
            Some(Value::Array(a)) => keep(a),
            Some(_) => Vec::new(),
            None if o.is_empty() => Vec::new(),
            None => vec![Value::Object(o)],
        },
        _ => Vec::new(),
    }
}

/// A scalar as a string the way Sentry shows it (numbers and booleans written out);
/// `None` for null, JSON text for arrays and objects.
pub fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        other => Some(other.to_string()),
    }
}

/// Tags as `(key, value)` pairs, from an object or a list of `[key, value]` pairs (or
/// `"key:value"` strings). Empty keys and null values are dropped.
pub fn tag_pairs(v: Option<&Value>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    match v {
        Some(Value::Object(o)) => {
            for (k, v) in o {
                if let Some(s) = scalar_string(v) {
                    out.push((k.clone(), s));
                }
            }
        }
        Some(Value::Array(a)) => {
            for item in a {
                match item {
                    Value::Array(p) if p.len() == 2 => {
                        if let (Some(k), Some(v)) = (scalar_string(&p[0]), scalar_string(&p[1])) {
                            out.push((k, v));
                        }
                    }
                    Value::String(s) => {
                        if let Some((k, v)) = s.split_once(':') {
                            out.push((k.to_string(), v.to_string()));
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
    out.retain(|(k, _)| !k.is_empty());
    out
}

/// The message of an event: `(template, formatted)`. Reads `logentry` (or a legacy
/// `message` object) with `message`/`formatted`/`params`, or a plain string `message`.
/// `%s`-style and `{name}` params are substituted into `formatted` when it is absent.
pub fn message(event: &Map<String, Value>) -> Option<(String, String)> {
    let obj = event
        .get("logentry")
        .or_else(|| event.get("message").filter(|m| m.is_object()));
    if let Some(Value::Object(le)) = obj {
        let template = le.get("message").and_then(scalar_string);
        let formatted = le.get("formatted").and_then(scalar_string);
        let params = le.get("params");
        let template = template.or_else(|| formatted.clone())?;
        let formatted = formatted.unwrap_or_else(|| format_params(&template, params));
        return Some((template, formatted));
    }
    if let Some(Value::String(s)) = obj {
        return Some((s.clone(), s.clone()));
    }
    match event.get("message") {
        Some(Value::String(s)) if !s.is_empty() => Some((s.clone(), s.clone())),
        _ => None,
    }
}

/// Substitutes `%s`/`%d`/`%r`… (positional list) or `{name}` (object) params.
pub fn format_params(template: &str, params: Option<&Value>) -> String {
    match params {
        Some(Value::Array(list)) => {
            let mut out = String::with_capacity(template.len());
            let mut it = list.iter();
            let mut chars = template.chars().peekable();
            while let Some(c) = chars.next() {
                if c == '%' {
                    match chars.peek() {
                        Some('%') => {
                            chars.next();
                            out.push('%');
                            continue;
                        }
                        Some(f) if f.is_ascii_alphabetic() => {
                            let f = *f;
                            chars.next();
                            match it.next() {
                                Some(v) => {
                                    out.push_str(&scalar_string(v).unwrap_or_else(|| "None".into()))
                                }
                                None => {
                                    out.push('%');
                                    out.push(f);
                                }
                            }
                            continue;
                        }
                        _ => {}
                    }
                }
                out.push(c);
            }
            out
        }
        Some(Value::Object(map)) => {
            let mut out = template.to_string();
            for (k, v) in map {
                let needle = format!("{{{k}}}");
                if let Some(s) = scalar_string(v) {
                    out = out.replace(&needle, &s);
                }
            }
            out
        }
        _ => template.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn legacy_shapes() {
        assert_eq!(values_list(Some(&json!([{"type": "A"}]))).len(), 1);
        assert_eq!(
            values_list(Some(&json!({"values": [{"type": "A"}, {"type": "B"}]}))).len(),
            2
        );
        assert_eq!(values_list(Some(&json!({"type": "A"}))).len(), 1);
        assert!(values_list(Some(&json!({}))).is_empty());
        assert_eq!(
            tag_pairs(Some(&json!({"a": 1, "b": null}))),
            vec![("a".into(), "1".into())]
        );
        assert_eq!(tag_pairs(Some(&json!([["a", "x"], "b:y"]))).len(), 2);
        let mut ev = json!({"sentry.interfaces.Message": {"message": "hi %s", "params": ["x"]}});
        let m = ev.as_object_mut().unwrap();
        canonicalize_interfaces(m);
        assert_eq!(message(m), Some(("hi %s".into(), "hi x".into())));
        assert_eq!(format_params("a {foo}", Some(&json!({"foo": "b"}))), "a b");
    }

    #[test]
    fn limits() {
        assert!(matches!(
            parse(b"{\"a\":\"\xff\"}", 100),
            Err(EventError::NotUtf8(6))
        ));
        assert!(matches!(parse(b"[1]", 100), Err(EventError::NotObject)));
        assert!(matches!(parse(b"{}", 1), Err(EventError::TooLarge { .. })));
        let deep = "[".repeat(100_000);
        assert!(matches!(
            parse(deep.as_bytes(), 1 << 20),
            Err(EventError::Json(_))
        ));
    }
}
