//! Grouping: which issue an event belongs to.
//!
//! The default components, in order of preference:
//! 1. exceptions with stack frames: each exception's type plus its frames' module (or
//!    file name) and function; only in-app frames when the event has any, else all
//!    frames. Line numbers never count, so an edit elsewhere in a file keeps the group.
//! 2. exceptions without frames: type plus the value with numbers, hex and UUIDs masked.
//! 3. a stack trace without exceptions (`attach_stacktrace`): its frames.
//! 4. the message template (`logentry.message`, else the formatted message), masked.
//!
//! An SDK `fingerprint` replaces them; `{{ default }}` inside it stands for them.

use super::mask::mask;
use calm_wire::sentry::event::values_refs;
use calm_wire::sentry::stacktrace::{field, frames, is_in_app};
use serde_json::{Map, Value};
use xxhash_rust::xxh3::xxh3_128;

/// The grouping hash (32 hex digits) of a normalised event.
pub fn hash(event: &Map<String, Value>) -> String {
    let comps = components(event);
    let mut joined = String::new();
    for c in &comps {
        joined.push_str(c);
        joined.push('\u{1f}');
    }
    format!("{:032x}", xxh3_128(joined.as_bytes()))
}

/// The components hashed: the fingerprint with `{{ default }}` expanded.
pub fn components(event: &Map<String, Value>) -> Vec<String> {
    let fp: Vec<&str> = event
        .get("fingerprint")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if fp.is_empty() || fp.iter().all(|p| is_var(p, "default")) {
        return default_components(event);
    }
    let mut out = vec!["fingerprint".to_string()];
    for part in fp {
        if is_var(part, "default") {
            out.extend(default_components(event));
        } else if let Some(v) = variable(event, part) {
            out.push(v);
        } else {
            out.push(part.to_string());
        }
    }
    out
}

/// True for `{{ name }}` (any spacing and case).
fn is_var(part: &str, name: &str) -> bool {
    var_name(part).is_some_and(|n| n.eq_ignore_ascii_case(name))
}

fn var_name(part: &str) -> Option<&str> {
    let inner = part.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    Some(inner.trim())
}

fn variable(event: &Map<String, Value>, part: &str) -> Option<String> {
    let name = var_name(part)?.to_ascii_lowercase();
    let last_exc = || values_refs(event.get("exception")).pop();
    let s = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
    Some(match name.as_str() {
        "transaction" => s(event.get("transaction")),
        "level" => s(event.get("level")),
        "logger" => s(event.get("logger")),
        "message" => s(event.get("logentry").and_then(|l| l.get("formatted"))),
        "type" | "error.type" => s(last_exc().as_ref().and_then(|e| e.get("type"))),
        "error.value" => s(last_exc().as_ref().and_then(|e| e.get("value"))),
        _ => return None,
    })
}

fn default_components(event: &Map<String, Value>) -> Vec<String> {
    let excs = values_refs(event.get("exception"));
    let any_in_app = excs
        .iter()
        .flat_map(|e| frames(e.get("stacktrace")))
        .any(is_in_app);
    if !excs.is_empty() {
        let mut out = vec!["exception".to_string()];
        for e in &excs {
            out.push(
                e.get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("Error")
                    .to_string(),
            );
            let fr = frame_components(frames(e.get("stacktrace")), any_in_app);
            if fr.is_empty() {
                out.push(mask(e.get("value").and_then(Value::as_str).unwrap_or("")));
            } else {
                out.extend(fr);
            }
        }
        return out;
    }
    let st = event.get("stacktrace");
    let in_app = frames(st).iter().any(is_in_app);
    let fr = frame_components(frames(st), in_app);
    if !fr.is_empty() {
        let mut out = vec!["stacktrace".to_string()];
        out.extend(fr);
        return out;
    }
    let template = event
        .get("logentry")
        .and_then(|l| l.get("message").or_else(|| l.get("formatted")))
        .and_then(Value::as_str);
    match template {
        Some(t) => vec!["message".to_string(), mask(t)],
        None => vec!["fallback".to_string()],
    }
}

fn frame_components(frames: &[Value], only_in_app: bool) -> Vec<String> {
    frames
        .iter()
        .filter(|f| !only_in_app || is_in_app(f))
        .filter_map(|f| {
            let place = field(f, "module").or_else(|| field(f, "filename"))?;
            let func = field(f, "function").unwrap_or("?");
            Some(format!("{place}\u{1e}{func}"))
        })
        .collect()
}
