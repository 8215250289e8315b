//! Stack traces: frames (oldest first, as the protocol orders them), `in_app`, and
//! the frame fields grouping and titles read.

use serde_json::{Map, Value};

/// Most frames kept per stack trace; longer ones lose frames from the middle.
pub const MAX_FRAMES: usize = 250;

/// The frames of a stacktrace object (empty when it has none).
pub fn frames(stacktrace: Option<&Value>) -> &[Value] {
    stacktrace
        .and_then(|s| s.get("frames"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// True when the frame says `in_app: true` (absent means not in app).
pub fn is_in_app(frame: &Value) -> bool {
    match frame.get("in_app") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        _ => false,
    }
}

/// A string field of a frame, empty strings treated as absent.
pub fn field<'a>(frame: &'a Value, name: &str) -> Option<&'a str> {
    frame
        .get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Normalises a stacktrace object in place: non-object frames dropped, `in_app`
/// made a boolean, JavaScript URL file names reduced to their path (the URL kept in
/// `abs_path`), and at most [`MAX_FRAMES`] frames (the middle dropped, counted in
/// `frames_omitted`).
pub fn normalize(stacktrace: &mut Value, platform: &str) {
    let Some(st) = stacktrace.as_object_mut() else {
        *stacktrace = Value::Object(Map::new());
        return;
    };
    let mut frames: Vec<Value> = match st.remove("frames") {
        Some(Value::Array(a)) => a.into_iter().filter(Value::is_object).collect(),
        _ => Vec::new(),
    };
    for f in &mut frames {
        normalize_frame(f, platform);
    }
    if frames.len() > MAX_FRAMES {
        let omitted = frames.len() - MAX_FRAMES;
        let keep_head = MAX_FRAMES / 2;
        frames.drain(keep_head..keep_head + omitted);
        st.insert("frames_omitted".into(), Value::from(omitted as u64));
    }
    st.insert("frames".into(), Value::Array(frames));
}

fn normalize_frame(frame: &mut Value, platform: &str) {
    let in_app = is_in_app(frame);
    let Some(f) = frame.as_object_mut() else {
        return;
    };
    if f.contains_key("in_app") {
        f.insert("in_app".into(), Value::Bool(in_app));
    }
    let frame_platform = f
        .get("platform")
        .and_then(Value::as_str)
        .unwrap_or(platform);
    if matches!(frame_platform, "javascript" | "node") {
        let url = f
            .get("abs_path")
            .or_else(|| f.get("filename"))
            .and_then(Value::as_str)
            .map(str::to_string);
        if let Some(url) = url {
            if let Some(path) = url_path(&url) {
                f.insert("abs_path".into(), Value::String(url.clone()));
                f.insert("filename".into(), Value::String(path.to_string()));
            }
        }
    }
}

/// The path part of an `http(s)://host/path?query` URL.
fn url_path(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let path = &rest[rest.find('/')?..];
    Some(path.split(['?', '#']).next().unwrap_or(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn js_urls_and_limits() {
        let mut st =
            json!({"frames": [{"filename": "http://h:1/dist/a.js?x=1", "in_app": "true"}, 5]});
        normalize(&mut st, "javascript");
        let f = &frames(Some(&st))[0];
        assert_eq!(field(f, "filename"), Some("/dist/a.js"));
        assert!(is_in_app(f));
        assert_eq!(frames(Some(&st)).len(), 1);
        let mut big = json!({"frames": (0..300).map(|i| json!({"lineno": i})).collect::<Vec<_>>()});
        normalize(&mut big, "python");
        assert_eq!(frames(Some(&big)).len(), MAX_FRAMES);
        assert_eq!(big["frames_omitted"], 50);
        assert_eq!(frames(Some(&big))[249]["lineno"], 299);
    }
}
