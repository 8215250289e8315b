//! The conversion driver: walks resources and scopes, hands each metric to
//! [`super::points`], which writes into an [`Output`]; the output becomes a [`Conversion`].
//!
//! Data points that end up with the same label set (the same metric at several times, or
//! attributes that collide after sanitising) share one series; samples are put in time
//! order at the end. Every resource that has attributes besides the identifying ones gets
//! a `target_info` sample at the latest timestamp of its data points.

use super::attrs::{PointLabeler, ResourceLabels};
use super::output::{meta_type, Output};
use super::points::convert_metric;
use super::{Conversion, ExportMetricsServiceRequest};
use crate::prompb::Sample;

/// Maps a request to Prometheus series: the series with per-family metadata, and the
/// data points refused (with one reason per metric) so the HTTP layer can answer with
/// OTLP partial success.
pub fn to_write_request(req: &ExportMetricsServiceRequest) -> Conversion {
    let mut out = Output::default();
    for rm in &req.resource_metrics {
        let resource = ResourceLabels::new(rm.resource.as_ref());
        out.start_resource();
        for sm in &rm.scope_metrics {
            let labeler = PointLabeler::new(&resource, sm.scope.as_ref());
            for metric in &sm.metrics {
                convert_metric(metric, &labeler, &mut out);
            }
        }
        if let (Some(ts), Some(labels)) = (out.latest(), resource.target_info()) {
            out.push(
                labels,
                Sample {
                    value: 1.0,
                    timestamp: ts,
                },
            );
            out.metadata("target_info", meta_type::GAUGE, "Target metadata", "");
        }
    }
    out.finish()
}
