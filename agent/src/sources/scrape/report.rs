//! The series Prometheus writes about every scrape, next to the target's own.
//!
//! ```text
//! up{job,instance}                                     1 if the scrape succeeded, else 0
//! scrape_duration_seconds{job,instance}                how long it took
//! scrape_samples_scraped{job,instance}                 samples in the body
//! scrape_samples_post_metric_relabeling{job,instance}  samples kept (no relabeling: the same)
//! scrape_series_added{job,instance}                    series new since the last scrape
//! ```

use calm_wire::prompb::Label;

/// The outcome of one scrape, as reported.
#[derive(Debug, Clone, Copy, Default)]
pub struct Report {
    pub up: bool,
    pub duration_seconds: f64,
    pub samples_scraped: usize,
    pub samples_post_relabeling: usize,
    pub series_added: usize,
}

impl Report {
    /// The five report series with the target's labels, as (labels, value).
    pub fn series(&self, target: &[(String, String)]) -> Vec<(Vec<Label>, f64)> {
        [
            ("up", if self.up { 1.0 } else { 0.0 }),
            ("scrape_duration_seconds", self.duration_seconds),
            ("scrape_samples_scraped", self.samples_scraped as f64),
            (
                "scrape_samples_post_metric_relabeling",
                self.samples_post_relabeling as f64,
            ),
            ("scrape_series_added", self.series_added as f64),
        ]
        .into_iter()
        .map(|(name, v)| {
            let mut labels = vec![Label::new("__name__", name)];
            labels.extend(target.iter().map(|(n, v)| Label::new(n.clone(), v.clone())));
            labels.sort_by(|a, b| a.name.cmp(&b.name));
            (labels, v)
        })
        .collect()
    }
}
