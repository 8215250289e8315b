//! Fuzzes what the collector does with a native histogram a writer sends: the
//! protobuf `Histogram` from bytes, conversion to a float histogram, validation, and
//! for valid ones the stored form (round trip) and the PromQL arithmetic the engine
//! applies (add/subtract with another, reset detection, quantile, fraction, stdvar,
//! bucket iteration). Nothing may panic or loop.
#![no_main]

use calm_collector::promql::histograms;
use calm_collector::tsdb::histogram::FloatHistogram;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let (a, b) = data.split_at(data.len() / 2);
    let parse = |d: &[u8]| -> Option<FloatHistogram> {
        let p = calm_wire::prompb::Histogram::decode(d).ok()?;
        let h = FloatHistogram::from_prompb(&p);
        h.validate().ok()?;
        Some(h)
    };
    let (Some(x), y) = (parse(a), parse(b)) else {
        return;
    };
    let mut buf = Vec::new();
    x.encode(&mut buf);
    let mut r: &[u8] = &buf;
    let back = FloatHistogram::decode(&mut r).expect("own encoding decodes");
    assert!(back == x || x.sum.is_nan() || x.count.is_nan() || x.zero_threshold.is_nan() || x.zero_count.is_nan() || x.positive_buckets.iter().chain(&x.negative_buckets).any(|v| v.is_nan()) || x.custom_values.iter().any(|v| v.is_nan()));
    let _ = x.buckets_ascending();
    let _ = histograms::quantile(0.9, &x);
    let _ = histograms::fraction(-1.0, 2.5, &x);
    let _ = histograms::stdvar(&x);
    let _ = x.compact();
    if let Some(y) = y {
        let _ = x.combine(&y, 1.0);
        let _ = x.combine(&y, -1.0);
        let _ = x.detect_reset(&y);
        let _ = x.equals(&y);
    }
});
