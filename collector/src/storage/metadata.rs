//! The metric metadata store (a small store): per-family type, help and unit as
//! remote-write requests carry it (`WriteRequest.metadata`) and as the OTLP mapping
//! produces it; `/api/v1/metadata` (`api/metadata.rs`) answers from it.
//!
//! Kept in memory only (Prometheus itself keeps it in its scrape caches, which a
//! restart empties too) and bounded: at most [`MAX_FAMILIES`] families, each with at
//! most [`MAX_PER_FAMILY`] distinct entries (the newest kept), help texts cut at
//! [`MAX_HELP_BYTES`].

use calm_wire::prompb::MetricMetadata;
use parking_lot::RwLock;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Most metric families kept; metadata of further families is dropped.
pub const MAX_FAMILIES: usize = 20_000;
/// Most distinct entries kept per family (different senders may disagree).
pub const MAX_PER_FAMILY: usize = 4;
/// Longest help text kept, in bytes.
pub const MAX_HELP_BYTES: usize = 4096;
/// Longest family name or unit accepted, in bytes.
const MAX_NAME_BYTES: usize = 1024;

/// One metadata entry of a family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Prometheus' type name (`counter`, `gauge`, `histogram`, …, `unknown`).
    pub r#type: &'static str,
    pub help: String,
    pub unit: String,
}

/// The in-memory metadata of all families, shared by the ingest handlers and the API.
#[derive(Debug, Default)]
pub struct MetadataStore {
    families: RwLock<BTreeMap<String, Vec<Entry>>>,
}

/// Cuts `s` to at most `max` bytes, on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl MetadataStore {
    /// An empty store.
    pub fn new() -> MetadataStore {
        MetadataStore::default()
    }

    /// Records the metadata of a request; entries without a family name, with an
    /// oversized name or unit, or of new families beyond [`MAX_FAMILIES`] are ignored.
    pub fn record(&self, metadata: &[MetricMetadata]) {
        if metadata.is_empty() {
            return;
        }
        let mut families = self.families.write();
        for m in metadata {
            let name = &m.metric_family_name;
            if name.is_empty() || name.len() > MAX_NAME_BYTES || m.unit.len() > MAX_NAME_BYTES {
                continue;
            }
            let entry = Entry {
                r#type: m.type_name(),
                help: truncate(&m.help, MAX_HELP_BYTES).to_string(),
                unit: m.unit.clone(),
            };
            if let Some(entries) = families.get_mut(name.as_str()) {
                add_entry(entries, entry);
            } else if families.len() < MAX_FAMILIES {
                families.insert(name.clone(), vec![entry]);
            }
        }
    }

    /// The number of families known.
    pub fn len(&self) -> usize {
        self.families.read().len()
    }

    /// True when no metadata is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The metadata answer: families (only `metric` when given, at most `limit` of
    /// them), each with at most `limit_per_metric` entries (`None`: no limit).
    pub fn query(
        &self,
        metric: Option<&str>,
        limit: Option<usize>,
        limit_per_metric: Option<usize>,
    ) -> Value {
        let families = self.families.read();
        let selected: Box<dyn Iterator<Item = (&String, &Vec<Entry>)>> = match metric {
            Some(name) => Box::new(families.get_key_value(name).into_iter()),
            None => Box::new(families.iter()),
        };
        let mut out = Map::new();
        for (name, entries) in selected.take(limit.unwrap_or(usize::MAX)) {
            let list: Vec<Value> = entries
                .iter()
                .take(limit_per_metric.unwrap_or(usize::MAX))
                .map(|e| json!({"type": e.r#type, "help": e.help, "unit": e.unit}))
                .collect();
            out.insert(name.clone(), Value::Array(list));
        }
        Value::Object(out)
    }
}

/// Adds `entry` to a family's entries unless it is there already; the oldest entry
/// makes room when the family is full.
fn add_entry(entries: &mut Vec<Entry>, entry: Entry) {
    if entries.contains(&entry) {
        return;
    }
    if entries.len() >= MAX_PER_FAMILY {
        entries.remove(0);
    }
    entries.push(entry);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str, r#type: i32, help: &str) -> MetricMetadata {
        MetricMetadata {
            r#type,
            metric_family_name: name.into(),
            help: help.into(),
            unit: String::new(),
        }
    }

    #[test]
    fn records_and_answers_in_prometheus_shape() {
        let s = MetadataStore::new();
        s.record(&[meta("up", 2, "Up."), meta("http_total", 1, "Requests.")]);
        s.record(&[meta("up", 2, "Up.")]);
        assert_eq!(
            s.query(None, None, None),
            json!({
                "http_total": [{"type": "counter", "help": "Requests.", "unit": ""}],
                "up": [{"type": "gauge", "help": "Up.", "unit": ""}],
            })
        );
        assert_eq!(
            s.query(Some("up"), None, None),
            json!({"up": [{"type": "gauge", "help": "Up.", "unit": ""}]})
        );
        assert_eq!(s.query(Some("nope"), None, None), json!({}));
        assert_eq!(
            s.query(None, Some(1), None).as_object().map(Map::len),
            Some(1)
        );
        assert_eq!(s.query(None, Some(0), None), json!({}));
    }

    #[test]
    fn distinct_entries_are_kept_up_to_a_bound() {
        let s = MetadataStore::new();
        for i in 0..10 {
            s.record(&[meta("x", 1, &format!("help {i}"))]);
        }
        let v = s.query(Some("x"), None, None);
        let list = v["x"].as_array().expect("list");
        assert_eq!(list.len(), MAX_PER_FAMILY);
        assert_eq!(list[MAX_PER_FAMILY - 1]["help"], "help 9");
        assert_eq!(
            s.query(Some("x"), None, Some(1))["x"]
                .as_array()
                .map(Vec::len),
            Some(1)
        );
    }

    #[test]
    fn bad_entries_are_ignored_and_help_is_cut() {
        let s = MetadataStore::new();
        s.record(&[
            meta("", 1, "no name"),
            meta("long", 9, &"é".repeat(MAX_HELP_BYTES)),
        ]);
        assert_eq!(s.len(), 1);
        let v = s.query(Some("long"), None, None);
        assert_eq!(v["long"][0]["type"], "unknown");
        assert!(v["long"][0]["help"].as_str().map(str::len) <= Some(MAX_HELP_BYTES));
    }
}
