//! Label sets: data-point attributes, scope and resource → Prometheus labels.
//!
//! A data point's labels are built in the order Prometheus builds them, each step
//! overriding the one before:
//!
//! ```text
//! 1. data-point attributes, sorted by original key, names sanitised; keys that collide
//!    after sanitising get their values joined with ';' in that order
//! 2. otel_scope_name, otel_scope_version (when not empty)
//! 3. job      = service.namespace "/" service.name (or service.name alone)
//!    instance = service.instance.id
//! 4. __name__, and le / quantile (added per series by the caller)
//! ```
//! Empty values are left out: an empty label is an absent label in Prometheus.

use super::names::label_name;
use super::values::any_value_to_string;
use crate::labels::METRIC_NAME;
use crate::prompb::Label;
use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

/// Resource attributes that become `job` and `instance` rather than `target_info` labels.
const IDENTIFYING: [&str; 3] = ["service.name", "service.namespace", "service.instance.id"];

/// Attributes → sanitised label names and values, collisions joined with `;` in the order
/// of the original keys. Attributes whose names cannot become label names are left out;
/// the first such problem is returned beside the labels.
fn attributes_to_labels(
    attrs: &[KeyValue],
    skip: &[&str],
) -> (BTreeMap<String, String>, Option<String>) {
    let mut pairs: Vec<(&str, String)> = attrs
        .iter()
        .filter(|kv| !skip.contains(&kv.key.as_str()))
        .map(|kv| (kv.key.as_str(), any_value_to_string(kv.value.as_ref())))
        .filter(|(_, v)| !v.is_empty())
        .collect();
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = BTreeMap::new();
    let mut problem = None;
    for (key, value) in pairs {
        match label_name(key) {
            Ok(name) => match out.entry(name) {
                Entry::Vacant(e) => {
                    e.insert(value);
                }
                Entry::Occupied(mut e) => {
                    let joined = e.get_mut();
                    joined.push(';');
                    joined.push_str(&value);
                }
            },
            Err(msg) => {
                problem.get_or_insert(msg);
            }
        }
    }
    (out, problem)
}

/// A label map as labels sorted by name.
fn to_labels(map: BTreeMap<String, String>) -> Vec<Label> {
    map.into_iter()
        .map(|(name, value)| Label {
            name: Bytes::from(name),
            value: Bytes::from(value),
        })
        .collect()
}

/// What one resource contributes: `job`, `instance`, and its `target_info` labels.
#[derive(Debug, Clone, Default)]
pub(crate) struct ResourceLabels {
    job: Option<String>,
    instance: Option<String>,
    /// The labels of the resource's `target_info` series (without `__name__`), when it
    /// gets one: it has attributes besides the identifying ones, and a job or instance.
    target_info: Option<Vec<Label>>,
}

impl ResourceLabels {
    /// Reads the identifying attributes and prepares `target_info`.
    pub(crate) fn new(resource: Option<&Resource>) -> ResourceLabels {
        let attrs = resource.map_or(&[][..], |r| &r.attributes[..]);
        let get = |key: &str| {
            attrs
                .iter()
                .find(|kv| kv.key == key)
                .map(|kv| any_value_to_string(kv.value.as_ref()))
        };
        let job = get("service.name").map(|name| match get("service.namespace") {
            Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
            _ => name,
        });
        let job = job.filter(|j| !j.is_empty());
        let instance = get("service.instance.id").filter(|i| !i.is_empty());

        let mut target_info = None;
        if job.is_some() || instance.is_some() {
            // Invalid attribute names are dropped from target_info, not fatal.
            let (mut map, _) = attributes_to_labels(attrs, &IDENTIFYING);
            if !map.is_empty() {
                if let Some(job) = &job {
                    map.insert("job".to_string(), job.clone());
                }
                if let Some(instance) = &instance {
                    map.insert("instance".to_string(), instance.clone());
                }
                target_info = Some(to_labels(map));
            }
        }
        ResourceLabels {
            job,
            instance,
            target_info,
        }
    }

    /// The labels of this resource's `target_info` series, `__name__` included, if it has one.
    pub(crate) fn target_info(&self) -> Option<Vec<Label>> {
        let labels = self.target_info.as_ref()?;
        Some(with_name(labels, &Bytes::from_static(b"target_info"), None))
    }
}

/// Builds the base labels of data points under one resource and scope.
#[derive(Debug, Clone)]
pub(crate) struct PointLabeler<'a> {
    resource: &'a ResourceLabels,
    scope_name: String,
    scope_version: String,
}

impl<'a> PointLabeler<'a> {
    /// A labeler for the points of one scope of one resource.
    pub(crate) fn new(
        resource: &'a ResourceLabels,
        scope: Option<&InstrumentationScope>,
    ) -> PointLabeler<'a> {
        PointLabeler {
            resource,
            scope_name: scope.map(|s| s.name.clone()).unwrap_or_default(),
            scope_version: scope.map(|s| s.version.clone()).unwrap_or_default(),
        }
    }

    /// A data point's labels without `__name__`, sorted by name; an error message when an
    /// attribute name cannot become a label name.
    pub(crate) fn labels(&self, attrs: &[KeyValue]) -> Result<Vec<Label>, String> {
        let (mut map, problem) = attributes_to_labels(attrs, &[]);
        if let Some(problem) = problem {
            return Err(problem);
        }
        let mut set = |name: &str, value: &str| {
            if !value.is_empty() {
                map.insert(name.to_string(), value.to_string());
            }
        };
        set("otel_scope_name", &self.scope_name);
        set("otel_scope_version", &self.scope_version);
        if let Some(job) = &self.resource.job {
            set("job", job);
        }
        if let Some(instance) = &self.resource.instance {
            set("instance", instance);
        }
        Ok(to_labels(map))
    }
}

/// `base` plus `__name__` (and one more label such as `le`), replacing labels of the same
/// names, sorted by name. Label bytes are shared with `base`, not copied.
pub(crate) fn with_name(base: &[Label], name: &Bytes, extra: Option<(&str, &Bytes)>) -> Vec<Label> {
    let extra_name = extra.map(|(n, _)| n.as_bytes());
    let mut out: Vec<Label> = Vec::with_capacity(base.len() + 2);
    out.extend(
        base.iter()
            .filter(|l| &l.name[..] != METRIC_NAME.as_bytes() && Some(&l.name[..]) != extra_name)
            .cloned(),
    );
    out.push(Label {
        name: Bytes::from_static(METRIC_NAME.as_bytes()),
        value: name.clone(),
    });
    if let Some((n, v)) = extra {
        out.push(Label {
            name: Bytes::copy_from_slice(n.as_bytes()),
            value: v.clone(),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue};

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(Value::StringValue(v.into())),
            }),
            key_strindex: 0,
        }
    }

    fn pairs(labels: &[Label]) -> Vec<(String, String)> {
        labels
            .iter()
            .map(|l| (l.name_str().to_string(), l.value_str().to_string()))
            .collect()
    }

    fn resource(attrs: Vec<KeyValue>) -> Resource {
        Resource {
            attributes: attrs,
            dropped_attributes_count: 0,
            entity_refs: vec![],
        }
    }

    #[test]
    fn colliding_names_join_values_in_key_order() {
        let attrs = [kv("foo_bar", "b"), kv("foo.bar", "a"), kv("foo-bar", "c")];
        let (map, problem) = attributes_to_labels(&attrs, &[]);
        assert!(problem.is_none());
        // '-' < '.' < '_' in byte order.
        assert_eq!(map.get("foo_bar").map(String::as_str), Some("c;a;b"));
    }

    #[test]
    fn empty_values_are_absent_and_bad_names_reported() {
        let attrs = [kv("a", ""), kv("b", "x"), kv("", "y"), kv("..", "z")];
        let (map, problem) = attributes_to_labels(&attrs, &[]);
        assert_eq!(map.len(), 1);
        assert!(problem.unwrap().contains("empty name"));
    }

    #[test]
    fn job_instance_and_scope_override_attributes() {
        let res = resource(vec![
            kv("service.name", "api"),
            kv("service.namespace", "shop"),
            kv("service.instance.id", "i-1"),
        ]);
        let rl = ResourceLabels::new(Some(&res));
        let scope = InstrumentationScope {
            name: "lib".into(),
            version: "".into(),
            attributes: vec![],
            dropped_attributes_count: 0,
        };
        let pl = PointLabeler::new(&rl, Some(&scope));
        let labels = pl
            .labels(&[kv("job", "mine"), kv("otel.scope.name", "x"), kv("k", "v")])
            .unwrap();
        assert_eq!(
            pairs(&labels),
            vec![
                ("instance".into(), "i-1".into()),
                ("job".into(), "shop/api".into()),
                ("k".into(), "v".into()),
                ("otel_scope_name".into(), "lib".into()),
            ]
        );
        // Only identifying attributes: no target_info.
        assert!(rl.target_info().is_none());
    }

    #[test]
    fn target_info_needs_other_attributes_and_an_identifier() {
        let res = resource(vec![kv("service.name", "api"), kv("host.name", "h1")]);
        let ti = ResourceLabels::new(Some(&res)).target_info().unwrap();
        assert_eq!(
            pairs(&ti),
            vec![
                ("__name__".into(), "target_info".into()),
                ("host_name".into(), "h1".into()),
                ("job".into(), "api".into()),
            ]
        );
        let anonymous = resource(vec![kv("host.name", "h1")]);
        assert!(ResourceLabels::new(Some(&anonymous))
            .target_info()
            .is_none());
        assert!(ResourceLabels::new(None).target_info().is_none());
    }

    #[test]
    fn with_name_replaces_and_sorts() {
        let base = vec![
            Label::new("__name__", "old"),
            Label::new("le", "x"),
            Label::new("z", "1"),
        ];
        let out = with_name(
            &base,
            &Bytes::from("m_bucket"),
            Some(("le", &Bytes::from("0.5"))),
        );
        assert_eq!(
            pairs(&out),
            vec![
                ("__name__".into(), "m_bucket".into()),
                ("le".into(), "0.5".into()),
                ("z".into(), "1".into()),
            ]
        );
    }
}
