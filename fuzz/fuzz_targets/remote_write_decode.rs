//! Fuzzes the remote-write path the collector runs on every body: snappy, protobuf,
//! then label validation of every series. The borrowed reader the collector uses
//! (`decode_view`) is checked against prost's decoding of the same bytes: whatever
//! the view accepts, prost accepts with the same series, labels and samples; whatever
//! prost accepts, the view accepts unless it holds a protobuf group (refused on purpose).
#![no_main]

use calm_wire::labels::{validate_series, LabelLimits};
use calm_wire::remote_write::{decode, decode_view};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Raw bytes as a snappy body, and the same bytes compressed (to reach protobuf).
    let compressed = snap::raw::Encoder::new().compress_vec(data).unwrap_or_default();
    for body in [data, &compressed[..]] {
        let prost = decode(body, 1 << 20);
        let mut buf = Vec::new();
        let view = decode_view(body, 1 << 20, &mut buf);
        match (&prost, &view) {
            (Ok(req), Ok(v)) => {
                assert_eq!(req.timeseries.len(), v.len());
                assert_eq!(req.metadata, v.metadata);
                for (ts, s) in req.timeseries.iter().zip(v.series()) {
                    let mine = v.to_timeseries(s);
                    assert_eq!(ts.labels, mine.labels);
                    assert_eq!(ts.histograms, mine.histograms);
                    assert_eq!(ts.samples.len(), mine.samples.len());
                    for (a, b) in ts.samples.iter().zip(&mine.samples) {
                        assert_eq!(a.timestamp, b.timestamp);
                        assert_eq!(a.value.to_bits(), b.value.to_bits());
                    }
                    let _ = v.raw_labels(s);
                }
            }
            (Err(_), Ok(_)) => panic!("the view accepted what prost refused"),
            (Ok(_), Err(e)) => assert!(e.to_string().contains("groups"), "view refused: {e}"),
            (Err(_), Err(_)) => {}
        }
        if let Ok(mut req) = prost {
            for ts in req.timeseries.iter_mut() {
                let _ = validate_series(ts, &LabelLimits::default());
            }
        }
    }
});
