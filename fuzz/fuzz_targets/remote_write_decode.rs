//! Fuzzes the remote-write path the collector runs on every body: snappy, protobuf,
//! then label validation of every series.
#![no_main]

use calm_wire::labels::{validate_series, LabelLimits};
use calm_wire::remote_write::decode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Raw bytes as a snappy body, and the same bytes compressed (to reach protobuf).
    let compressed = snap::raw::Encoder::new().compress_vec(data).unwrap_or_default();
    for body in [data, &compressed[..]] {
        if let Ok(mut req) = decode(body, 1 << 20) {
            for ts in req.timeseries.iter_mut() {
                let _ = validate_series(ts, &LabelLimits::default());
            }
        }
    }
});
