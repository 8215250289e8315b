//! Parsed families → remote-write series, with the target's labels attached as
//! Prometheus attaches them.
//!
//! ```text
//! scraped  http_requests_total{job="x",path="/"} 7      target job="api", instance="h:80"
//! honor_labels = false → {__name__="http_requests_total", exported_job="x", instance="h:80", job="api", path="/"}
//! honor_labels = true  → {__name__="http_requests_total", instance="h:80", job="x", path="/"}
//! ```
//!
//! Histograms and summaries arrive already as their `_bucket`/`_sum`/`_count` and
//! `quantile` series, exactly as Prometheus stores classic ones; label values (`le`,
//! `quantile`) are kept as written, as Prometheus 2.x keeps them.

use calm_wire::exposition::Family;
use calm_wire::labels::{validate_series, LabelLimits};
use calm_wire::prompb::{Label, Sample, TimeSeries};
use std::hash::{Hash, Hasher};

/// One scraped series with its sample.
#[derive(Debug, Clone)]
pub struct Scraped {
    /// Sorted labels, `__name__` included, target labels applied.
    pub labels: Vec<Label>,
    pub value: f64,
    pub timestamp_ms: i64,
    /// True when the body gave the timestamp (such series get no staleness markers,
    /// as in Prometheus).
    pub explicit_timestamp: bool,
}

/// A label set's identity within a target.
pub fn hash_labels(labels: &[Label]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for l in labels {
        l.name.hash(&mut h);
        l.value.hash(&mut h);
    }
    h.finish()
}

/// Applies target labels to one scraped label set.
fn merge(
    name: &str,
    scraped: &[(&str, std::borrow::Cow<'_, str>)],
    target: &[(String, String)],
    honor_labels: bool,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(scraped.len() + target.len() + 1);
    out.push(("__name__".into(), name.to_string()));
    // An empty value means "no such label": it neither clashes nor is stored.
    for (n, v) in scraped.iter().filter(|(_, v)| !v.is_empty()) {
        out.push((n.to_string(), v.to_string()));
    }
    for (tn, tv) in target {
        match out.iter().position(|(n, _)| n == tn) {
            None => out.push((tn.clone(), tv.clone())),
            Some(_) if honor_labels => {} // the scraped value stays
            Some(i) => {
                // The scraped label moves aside to exported_<name> (repeatedly, if that
                // is taken too), and the target's value takes its place.
                let mut exported = format!("exported_{tn}");
                while out.iter().any(|(n, _)| *n == exported) {
                    exported = format!("exported_{exported}");
                }
                let old = std::mem::replace(&mut out[i].1, tv.clone());
                out.push((exported, old));
            }
        }
    }
    out
}

/// Turns parsed families into series: target labels applied, label rules checked,
/// timestamps set (`now_ms` unless the body gave one and `honor_timestamps`). A
/// series that breaks a label rule fails the whole scrape, as in Prometheus.
pub fn to_scraped(
    families: &[Family<'_>],
    target: &[(String, String)],
    honor_labels: bool,
    honor_timestamps: bool,
    now_ms: i64,
    metric_relabel: &[super::relabel::Rule],
) -> Result<Vec<Scraped>, String> {
    let limits = LabelLimits::default();
    let mut out = Vec::new();
    for f in families {
        for s in &f.samples {
            let mut pairs = merge(s.name, &s.labels, target, honor_labels);
            if !metric_relabel.is_empty() && !super::relabel::process(&mut pairs, metric_relabel) {
                continue;
            }
            let mut ts = TimeSeries {
                labels: pairs.into_iter().map(|(n, v)| Label::new(n, v)).collect(),
                samples: vec![],
                exemplars: vec![],
                histograms: vec![],
            };
            validate_series(&mut ts, &limits).map_err(|e| e.to_string())?;
            let (timestamp_ms, explicit) = match s.timestamp_ms {
                Some(t) if honor_timestamps => (t, true),
                _ => (now_ms, false),
            };
            out.push(Scraped {
                labels: ts.labels,
                value: s.value,
                timestamp_ms,
                explicit_timestamp: explicit,
            });
        }
    }
    Ok(out)
}

/// Remote-write series of single samples.
pub fn to_timeseries(series: impl IntoIterator<Item = (Vec<Label>, f64, i64)>) -> Vec<TimeSeries> {
    series
        .into_iter()
        .map(|(labels, value, timestamp)| TimeSeries {
            labels,
            samples: vec![Sample { value, timestamp }],
            exemplars: vec![],
            histograms: vec![],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use calm_wire::exposition::{parse, Format};

    fn names(s: &Scraped) -> Vec<String> {
        s.labels
            .iter()
            .map(|l| format!("{}={}", l.name_str(), l.value_str()))
            .collect()
    }

    #[test]
    fn honor_labels_false_exports_clashing_labels() {
        let fams = parse("m{job=\"x\",exported_job=\"y\",a=\"\"} 1 5\n", Format::Text).unwrap();
        let target = vec![
            ("instance".into(), "h:1".into()),
            ("job".into(), "api".into()),
        ];
        let s = to_scraped(&fams, &target, false, true, 99, &[]).unwrap();
        assert_eq!(
            names(&s[0]),
            vec![
                "__name__=m",
                "exported_exported_job=x",
                "exported_job=y",
                "instance=h:1",
                "job=api"
            ]
        );
        assert_eq!((s[0].timestamp_ms, s[0].explicit_timestamp), (5, true));
        let s = to_scraped(&fams, &target, true, false, 99, &[]).unwrap();
        assert_eq!(
            names(&s[0]),
            vec!["__name__=m", "exported_job=y", "instance=h:1", "job=x"]
        );
        assert_eq!((s[0].timestamp_ms, s[0].explicit_timestamp), (99, false));
    }
}
