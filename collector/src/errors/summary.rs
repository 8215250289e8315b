//! What an issue is called: Sentry's `type` (`error` or `default`), `title`,
//! `culprit`, `location` and `metadata`, computed as Sentry computes them.

use calm_wire::sentry::event::values_refs;
use calm_wire::sentry::stacktrace::{field, frames, is_in_app};
use calm_wire::sentry::trimming::truncate_chars;
use serde_json::{json, Map, Value};

/// Longest title (characters).
pub const MAX_TITLE: usize = 100;
/// Longest culprit (characters).
pub const MAX_CULPRIT: usize = 200;

/// The names of an event.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// `error` when the event has exceptions, else `default`.
    pub event_type: String,
    /// The one-line title.
    pub title: String,
    /// Where it happened (transaction, crash frame, or request URL).
    pub culprit: String,
    /// The crash frame's file, if any.
    pub location: Option<String>,
    /// `{type, value, filename, function}` for errors, `{title}` otherwise.
    pub metadata: Value,
}

/// Computes the summary of a normalised event.
pub fn summarize(event: &Map<String, Value>) -> Summary {
    let excs = values_refs(event.get("exception"));
    let culprit = culprit(event, &excs);
    if let Some(last) = excs.last() {
        let ty = last
            .get("type")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("Error");
        let value = last.get("value").and_then(Value::as_str).unwrap_or("");
        let mut metadata =
            json!({ "type": truncate_chars(ty, 128), "value": truncate_chars(value, 1024) });
        let crash = crash_frame(event, last);
        let location = crash.and_then(|f| field(f, "filename").or_else(|| field(f, "abs_path")));
        if let Some(l) = location {
            metadata["filename"] = l.into();
        }
        if let Some(func) = crash
            .and_then(|f| field(f, "function"))
            .filter(|f| *f != "?")
        {
            metadata["function"] = func.into();
        }
        let first_line = value.lines().next().unwrap_or("");
        let title = if first_line.is_empty() {
            ty.to_string()
        } else {
            format!("{ty}: {}", truncate_chars(first_line, MAX_TITLE))
        };
        return Summary {
            event_type: "error".into(),
            title,
            culprit,
            location: location.map(str::to_string),
            metadata,
        };
    }
    let msg = event
        .get("logentry")
        .and_then(|l| l.get("formatted").or_else(|| l.get("message")))
        .and_then(Value::as_str)
        .and_then(|s| s.lines().find(|l| !l.trim().is_empty()))
        .map(|l| truncate_chars(l.trim(), MAX_TITLE))
        .unwrap_or_else(|| "<unlabeled event>".into());
    Summary {
        event_type: "default".into(),
        title: msg.clone(),
        culprit,
        location: None,
        metadata: json!({ "title": msg }),
    }
}

/// The frame an error is located at: the newest frame with a function and a file,
/// among the in-app frames when there are any.
fn crash_frame<'a>(event: &'a Map<String, Value>, last: &'a Value) -> Option<&'a Value> {
    let mut fr = frames(last.get("stacktrace"));
    if fr.is_empty() {
        fr = frames(event.get("stacktrace"));
    }
    let any_in_app = fr.iter().any(is_in_app);
    let located = |f: &&Value| {
        (!any_in_app || is_in_app(f))
            && field(f, "function").is_some()
            && (field(f, "filename").is_some() || field(f, "abs_path").is_some())
    };
    fr.iter().rev().find(located).or_else(|| fr.last())
}

fn culprit(event: &Map<String, Value>, excs: &[&Value]) -> String {
    for key in ["culprit", "transaction"] {
        if let Some(s) = event
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            return truncate_chars(s, MAX_CULPRIT);
        }
    }
    let platform = event
        .get("platform")
        .and_then(Value::as_str)
        .unwrap_or("other");
    let synthetic = excs
        .last()
        .and_then(|e| e.pointer("/mechanism/synthetic"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if synthetic {
        return String::new();
    }
    let stacktrace = if excs.is_empty() {
        event.get("stacktrace")
    } else {
        excs.iter()
            .rev()
            .filter_map(|e| e.get("stacktrace"))
            .find(|s| !frames(Some(s)).is_empty())
    };
    let mut default = None;
    for f in frames(stacktrace).iter().rev() {
        let c = frame_culprit(f, platform);
        if is_in_app(f) && !c.is_empty() {
            return truncate_chars(&c, MAX_CULPRIT);
        }
        if default.is_none() {
            default = Some(c);
        }
    }
    if let Some(c) = default.filter(|c| !c.is_empty()) {
        return truncate_chars(&c, MAX_CULPRIT);
    }
    event
        .get("request")
        .and_then(|r| r.get("url"))
        .and_then(Value::as_str)
        .map(|u| truncate_chars(u, MAX_CULPRIT))
        .unwrap_or_default()
}

fn frame_culprit(f: &Value, platform: &str) -> String {
    let platform = field(f, "platform").unwrap_or(platform);
    let func = field(f, "function");
    if matches!(platform, "objc" | "cocoa" | "native") {
        return func.unwrap_or("?").to_string();
    }
    let Some(loc) = field(f, "module").or_else(|| field(f, "filename")) else {
        return String::new();
    };
    if matches!(platform, "javascript" | "node") {
        format!("{}({loc})", func.unwrap_or("?"))
    } else {
        format!("{loc} in {}", func.unwrap_or("?"))
    }
}
