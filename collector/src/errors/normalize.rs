//! Normalisation: whatever an SDK sent (legacy interface names, bare lists, numeric
//! ids, tags as objects) becomes one canonical event, bounded in size.

use calm_wire::sentry::event::{self, scalar_string, tag_pairs, values_owned};
use calm_wire::sentry::trimming::{keep_last, trim, truncate_chars, TrimLimits};
use calm_wire::sentry::{ids, level, stacktrace, timestamp};
use serde_json::{json, Map, Value};

/// Most breadcrumbs kept (the newest).
pub const MAX_BREADCRUMBS: usize = 100;
/// Most exceptions kept in a chain.
pub const MAX_EXCEPTIONS: usize = 25;

/// What the receiver knows about an event besides its payload.
#[derive(Debug, Clone, Default)]
pub struct Received {
    /// Receive time, seconds since the epoch.
    pub at: f64,
    /// The envelope header's `event_id`, used when the payload has none.
    pub envelope_event_id: Option<String>,
    /// The client's address, for `{{auto}}` user IPs.
    pub client_ip: Option<String>,
}

/// Normalises `raw` into the canonical event.
pub fn normalize(mut raw: Map<String, Value>, rx: &Received) -> Map<String, Value> {
    event::canonicalize_interfaces(&mut raw);
    let mut ev = Map::new();
    let event_id = raw
        .get("event_id")
        .and_then(Value::as_str)
        .and_then(ids::normalize_event_id)
        .or_else(|| {
            rx.envelope_event_id
                .as_deref()
                .and_then(ids::normalize_event_id)
        })
        .unwrap_or_else(new_event_id);
    ev.insert("event_id".into(), event_id.into());
    let ts = timestamp::clamp(raw.get("timestamp").and_then(timestamp::parse), rx.at);
    ev.insert("timestamp".into(), json!(ts));
    ev.insert("datetime".into(), timestamp::format(ts).into());
    ev.insert("received".into(), json!(rx.at));
    let platform = platform(raw.get("platform"));
    ev.insert("platform".into(), platform.clone().into());
    let lvl = raw
        .get("level")
        .and_then(level::normalize)
        .unwrap_or(level::DEFAULT_LEVEL);
    ev.insert("level".into(), lvl.into());
    for (key, max) in [
        ("logger", 64),
        ("transaction", 200),
        ("server_name", 200),
        ("release", 200),
        ("dist", 64),
        ("environment", 64),
        ("culprit", 200),
    ] {
        if let Some(s) = raw.get(key).and_then(short_string) {
            ev.insert(key.into(), truncate_chars(&s, max).into());
        }
    }
    if let Some((template, formatted)) = event::message(&raw) {
        let mut le = Map::new();
        le.insert("message".into(), truncate_chars(&template, 8192).into());
        le.insert("formatted".into(), truncate_chars(&formatted, 8192).into());
        if let Some(p) = raw.get("logentry").and_then(|l| l.get("params")) {
            le.insert("params".into(), p.clone());
        }
        ev.insert("logentry".into(), Value::Object(le));
    }
    if let Some(user) = user(raw.get("user"), rx) {
        ev.insert("user".into(), user);
    }
    let tags: Vec<Value> = tag_pairs(raw.get("tags"))
        .into_iter()
        .take(200)
        .map(|(k, v)| json!([truncate_chars(&k, 200), truncate_chars(&v, 200)]))
        .collect();
    if !tags.is_empty() {
        ev.insert("tags".into(), Value::Array(tags));
    }
    if let Some(Value::Object(c)) = raw.remove("contexts") {
        let ctx: Map<String, Value> = c.into_iter().filter(|(_, v)| v.is_object()).collect();
        ev.insert("contexts".into(), Value::Object(ctx));
    }
    let mut crumbs = values_owned(raw.remove("breadcrumbs"));
    keep_last(&mut crumbs, MAX_BREADCRUMBS);
    if !crumbs.is_empty() {
        for c in &mut crumbs {
            normalize_breadcrumb(c, ts);
        }
        ev.insert("breadcrumbs".into(), json!({ "values": crumbs }));
    }
    let mut excs = values_owned(raw.remove("exception"));
    if excs.len() > MAX_EXCEPTIONS {
        excs.drain(..excs.len() - MAX_EXCEPTIONS);
    }
    if !excs.is_empty() {
        let values: Vec<Value> = excs.into_iter().map(|e| exception(e, &platform)).collect();
        ev.insert("exception".into(), json!({ "values": values }));
    }
    if let Some(mut st) = raw.remove("stacktrace").filter(Value::is_object) {
        stacktrace::normalize(&mut st, &platform);
        // As Sentry does: a lone exception without frames takes the event's stack trace.
        match ev
            .get_mut("exception")
            .and_then(|e| e.get_mut("values"))
            .and_then(Value::as_array_mut)
        {
            Some(values) if values.len() == 1 && values[0].get("stacktrace").is_none() => {
                if let Some(e) = values[0].as_object_mut() {
                    e.insert("stacktrace".into(), st);
                }
            }
            _ => {
                ev.insert("stacktrace".into(), st);
            }
        }
    }
    let mut threads = values_owned(raw.remove("threads"));
    if !threads.is_empty() {
        threads.truncate(50);
        for t in &mut threads {
            if let Some(st) = t.get_mut("stacktrace") {
                stacktrace::normalize(st, &platform);
            }
        }
        ev.insert("threads".into(), json!({ "values": threads }));
    }
    if let Some(fp) = fingerprint(raw.get("fingerprint")) {
        ev.insert("fingerprint".into(), fp);
    }
    for key in ["request", "sdk", "extra", "modules", "user_agent"] {
        if let Some(v) = raw.remove(key).filter(|v| !v.is_null()) {
            ev.insert(key.into(), v);
        }
    }
    let mut out = Value::Object(ev);
    trim(&mut out, &TrimLimits::default());
    match out {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// A fresh random event id (32 hex digits).
pub fn new_event_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn platform(v: Option<&Value>) -> String {
    match v
        .and_then(Value::as_str)
        .map(|s| s.trim().to_ascii_lowercase())
    {
        Some(p)
            if !p.is_empty()
                && p.len() <= 64
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            p
        }
        _ => "other".into(),
    }
}

fn short_string(v: &Value) -> Option<String> {
    match v {
        Value::Array(_) | Value::Object(_) => None,
        other => scalar_string(other)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty()),
    }
}

fn user(v: Option<&Value>, rx: &Received) -> Option<Value> {
    let Value::Object(u) = v? else { return None };
    let mut out = Map::new();
    for key in ["id", "email", "username", "ip_address", "name", "segment"] {
        if let Some(s) = u.get(key).and_then(short_string) {
            out.insert(key.into(), truncate_chars(&s, 128).into());
        }
    }
    if out.get("ip_address").and_then(Value::as_str) == Some("{{auto}}") {
        match &rx.client_ip {
            Some(ip) => out.insert("ip_address".into(), ip.clone().into()),
            None => out.remove("ip_address"),
        };
    }
    if let Some(d) = u.get("data").filter(|d| d.is_object()) {
        out.insert("data".into(), d.clone());
    }
    (!out.is_empty()).then_some(Value::Object(out))
}

fn normalize_breadcrumb(c: &mut Value, event_ts: f64) {
    let Some(m) = c.as_object_mut() else { return };
    let ts = m
        .get("timestamp")
        .and_then(timestamp::parse)
        .unwrap_or(event_ts);
    m.insert("timestamp".into(), json!(ts));
    let lvl = m.get("level").and_then(level::normalize).unwrap_or("info");
    m.insert("level".into(), lvl.into());
    if let Some(msg) = m
        .get("message")
        .filter(|v| !v.is_string())
        .and_then(scalar_string)
    {
        m.insert("message".into(), msg.into());
    }
}

fn exception(e: Value, platform: &str) -> Value {
    let Value::Object(mut e) = e else {
        return Value::Object(Map::new());
    };
    let mut out = Map::new();
    if let Some(t) = e.get("type").and_then(short_string) {
        out.insert("type".into(), truncate_chars(&t, 256).into());
    }
    if let Some(v) = e.get("value").and_then(scalar_string) {
        out.insert("value".into(), truncate_chars(&v, 8192).into());
    }
    if let Some(m) = e.get("module").and_then(short_string) {
        out.insert("module".into(), m.into());
    }
    for key in ["mechanism", "thread_id"] {
        if let Some(v) = e.remove(key) {
            out.insert(key.into(), v);
        }
    }
    if let Some(mut st) = e.remove("stacktrace").filter(Value::is_object) {
        stacktrace::normalize(&mut st, platform);
        out.insert("stacktrace".into(), st);
    }
    Value::Object(out)
}

fn fingerprint(v: Option<&Value>) -> Option<Value> {
    let list = v?.as_array()?;
    let parts: Vec<Value> = list
        .iter()
        .filter_map(scalar_string)
        .take(50)
        .map(|s| Value::String(truncate_chars(&s, 256)))
        .collect();
    (!parts.is_empty()).then_some(Value::Array(parts))
}
