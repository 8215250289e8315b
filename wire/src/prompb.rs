//! Prometheus remote-write v1 messages (`prometheus/prompb/{remote,types}.proto`),
//! written by hand as prost structs.
//!
//! Label names and values are `bytes` here although the .proto says `string`: the wire
//! encoding is the same (length-delimited), and decoding from a [`bytes::Bytes`] buffer
//! then slices the request instead of allocating one `String` per label. UTF-8 is
//! checked once, in [`crate::labels::validate_series`].
//!
//! ```text
//! WriteRequest { repeated TimeSeries timeseries = 1; repeated MetricMetadata metadata = 3; }
//! TimeSeries   { repeated Label labels = 1; repeated Sample samples = 2;
//!                repeated Exemplar exemplars = 3; repeated Histogram histograms = 4; }
//! Label        { string name = 1; string value = 2; }
//! Sample       { double value = 1; int64 timestamp = 2; }   // timestamp in ms
//! ```
//! Native histograms (field 4, [`Histogram`]) are decoded and stored as float
//! histograms by the collector's TSDB.

use bytes::Bytes;

/// A remote-write request: many series, each with its samples.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

/// One series: its label set (including `__name__`) and samples in time order.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    #[prost(message, repeated, tag = "3")]
    pub exemplars: Vec<Exemplar>,
    /// Native histogram samples, in time order.
    #[prost(message, repeated, tag = "4")]
    pub histograms: Vec<Histogram>,
}

/// A label pair. Bytes, checked to be UTF-8 by validation.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Message)]
pub struct Label {
    #[prost(bytes = "bytes", tag = "1")]
    pub name: Bytes,
    #[prost(bytes = "bytes", tag = "2")]
    pub value: Bytes,
}

impl Label {
    /// A label from two strings (copies them).
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Label {
        Label {
            name: Bytes::from(name.into()),
            value: Bytes::from(value.into()),
        }
    }

    /// The name as text; empty if it is not UTF-8 (validation rejects that earlier).
    pub fn name_str(&self) -> &str {
        std::str::from_utf8(&self.name).unwrap_or("")
    }

    /// The value as text; empty if it is not UTF-8 (validation rejects that earlier).
    pub fn value_str(&self) -> &str {
        std::str::from_utf8(&self.value).unwrap_or("")
    }
}

/// A float sample: value and timestamp in milliseconds since the Unix epoch.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// An exemplar; read so the decoder accepts it, not stored.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Exemplar {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(double, tag = "2")]
    pub value: f64,
    #[prost(int64, tag = "3")]
    pub timestamp: i64,
}

/// Per-metric-family metadata (type, help, unit) as Prometheus sends it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricMetadata {
    /// 0 unknown, 1 counter, 2 gauge, 3 histogram, 4 gaugehistogram, 5 summary, 6 info, 7 stateset.
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    #[prost(string, tag = "4")]
    pub help: String,
    #[prost(string, tag = "5")]
    pub unit: String,
}

impl MetricMetadata {
    /// The Prometheus API's name for this metadata type.
    pub fn type_name(&self) -> &'static str {
        match self.r#type {
            1 => "counter",
            2 => "gauge",
            3 => "histogram",
            4 => "gaugehistogram",
            5 => "summary",
            6 => "info",
            7 => "stateset",
            _ => "unknown",
        }
    }
}

/// A native histogram sample (`prompb.Histogram` of remote-write 1.0).
///
/// Counts are integers (`*_int`, buckets as deltas: each the difference to the bucket
/// before it) or floats (`*_float`, buckets as absolute counts). The `oneof`s of the
/// .proto are two optional fields here: the encoding on the wire is the same.
///
/// ```text
/// Histogram { oneof count { uint64 count_int = 1; double count_float = 2; }
///             double sum = 3; sint32 schema = 4; double zero_threshold = 5;
///             oneof zero_count { uint64 zero_count_int = 6; double zero_count_float = 7; }
///             repeated BucketSpan negative_spans = 8; repeated sint64 negative_deltas = 9;
///             repeated double negative_counts = 10; repeated BucketSpan positive_spans = 11;
///             repeated sint64 positive_deltas = 12; repeated double positive_counts = 13;
///             ResetHint reset_hint = 14; int64 timestamp = 15;
///             repeated double custom_values = 16; }
/// BucketSpan { sint32 offset = 1; uint32 length = 2; }
/// ```
#[derive(Clone, PartialEq, prost::Message)]
pub struct Histogram {
    #[prost(uint64, optional, tag = "1")]
    pub count_int: Option<u64>,
    #[prost(double, optional, tag = "2")]
    pub count_float: Option<f64>,
    #[prost(double, tag = "3")]
    pub sum: f64,
    /// Resolution: buckets are powers of 2^(2^-schema); -53 means custom buckets.
    #[prost(sint32, tag = "4")]
    pub schema: i32,
    #[prost(double, tag = "5")]
    pub zero_threshold: f64,
    #[prost(uint64, optional, tag = "6")]
    pub zero_count_int: Option<u64>,
    #[prost(double, optional, tag = "7")]
    pub zero_count_float: Option<f64>,
    #[prost(message, repeated, tag = "8")]
    pub negative_spans: Vec<BucketSpan>,
    #[prost(sint64, repeated, tag = "9")]
    pub negative_deltas: Vec<i64>,
    #[prost(double, repeated, tag = "10")]
    pub negative_counts: Vec<f64>,
    #[prost(message, repeated, tag = "11")]
    pub positive_spans: Vec<BucketSpan>,
    #[prost(sint64, repeated, tag = "12")]
    pub positive_deltas: Vec<i64>,
    #[prost(double, repeated, tag = "13")]
    pub positive_counts: Vec<f64>,
    /// 0 unknown, 1 counter reset, 2 no counter reset, 3 gauge histogram.
    #[prost(int32, tag = "14")]
    pub reset_hint: i32,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "15")]
    pub timestamp: i64,
    /// Upper bounds of custom buckets (schema -53), ascending, +Inf left out.
    #[prost(double, repeated, tag = "16")]
    pub custom_values: Vec<f64>,
}

/// A run of consecutive buckets: `offset` is the gap (in bucket indexes) to the end of
/// the previous span (to index 0 for the first span), `length` the number of buckets.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct BucketSpan {
    #[prost(sint32, tag = "1")]
    pub offset: i32,
    #[prost(uint32, tag = "2")]
    pub length: u32,
}

impl Histogram {
    /// True when the counts are integers (`count_int` set, or no float count given).
    pub fn is_int(&self) -> bool {
        self.count_float.is_none() && self.zero_count_float.is_none()
    }

    /// Absolute bucket counts of one side (positive or negative) as floats: integer
    /// histograms carry deltas, float histograms absolute counts.
    pub fn absolute_counts(&self, positive: bool) -> Vec<f64> {
        let (deltas, counts) = if positive {
            (&self.positive_deltas, &self.positive_counts)
        } else {
            (&self.negative_deltas, &self.negative_counts)
        };
        if !counts.is_empty() || deltas.is_empty() {
            return counts.clone();
        }
        let mut cur: i64 = 0;
        deltas
            .iter()
            .map(|d| {
                cur = cur.wrapping_add(*d);
                cur as f64
            })
            .collect()
    }

    /// The total count as a float.
    pub fn count(&self) -> f64 {
        self.count_float
            .unwrap_or_else(|| self.count_int.unwrap_or(0) as f64)
    }

    /// The zero bucket's count as a float.
    pub fn zero_count(&self) -> f64 {
        self.zero_count_float
            .unwrap_or_else(|| self.zero_count_int.unwrap_or(0) as f64)
    }
}
