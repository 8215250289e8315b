//! Trimming: bounded strings, lists and nesting, so one event cannot make the store
//! grow without bound.

use serde_json::Value;

/// Bounds applied by [`trim`].
#[derive(Debug, Clone, Copy)]
pub struct TrimLimits {
    /// Longest string kept, in characters (longer ones end with `...`).
    pub max_string_chars: usize,
    /// Most elements kept in one array or object.
    pub max_items: usize,
    /// Deepest nesting kept; deeper values become the string `"[depth limit]"`.
    pub max_depth: usize,
}

impl Default for TrimLimits {
    fn default() -> Self {
        TrimLimits {
            max_string_chars: 8192,
            max_items: 500,
            max_depth: 12,
        }
    }
}

/// Truncates a string to `max` characters, the last three replaced by `...`.
pub fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let keep = max.saturating_sub(3);
    let mut out: String = s.chars().take(keep).collect();
    out.push_str("...");
    out
}

/// Trims `v` in place within `limits`.
pub fn trim(v: &mut Value, limits: &TrimLimits) {
    trim_at(v, limits, 0);
}

fn trim_at(v: &mut Value, limits: &TrimLimits, depth: usize) {
    if depth >= limits.max_depth && (v.is_array() || v.is_object()) {
        *v = Value::String("[depth limit]".into());
        return;
    }
    match v {
        Value::String(s) if s.len() > limits.max_string_chars => {
            *s = truncate_chars(s, limits.max_string_chars);
        }
        Value::Array(a) => {
            a.truncate(limits.max_items);
            for x in a {
                trim_at(x, limits, depth + 1);
            }
        }
        Value::Object(o) => {
            if o.len() > limits.max_items {
                let extra: Vec<String> = o.keys().skip(limits.max_items).cloned().collect();
                for k in extra {
                    o.remove(&k);
                }
            }
            for (_, x) in o.iter_mut() {
                trim_at(x, limits, depth + 1);
            }
        }
        _ => {}
    }
}

/// Keeps the last `max` elements of an array (breadcrumbs: the newest matter most).
pub fn keep_last(list: &mut Vec<Value>, max: usize) {
    if list.len() > max {
        list.drain(..list.len() - max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bounds() {
        assert_eq!(truncate_chars("abcdef", 5), "ab...");
        assert_eq!(truncate_chars("abc", 5), "abc");
        let limits = TrimLimits {
            max_string_chars: 4,
            max_items: 2,
            max_depth: 2,
        };
        let mut v = json!({"a": "abcdefgh", "b": [1, 2, 3], "c": {"d": {"e": 1}}});
        trim(&mut v, &limits);
        assert_eq!(v["a"], "a...");
        assert_eq!(v["b"], json!([1, 2]));
        assert!(v.get("c").is_none());
        let mut w = json!({"c": {"d": {"e": 1}}});
        trim(&mut w, &limits);
        assert_eq!(w["c"]["d"], "[depth limit]");
        let mut l = vec![json!(1), json!(2), json!(3)];
        keep_last(&mut l, 2);
        assert_eq!(l, vec![json!(2), json!(3)]);
    }
}
