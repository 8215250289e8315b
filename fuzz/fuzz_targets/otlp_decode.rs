//! Fuzzes the OTLP path: protobuf and JSON decoding, then the mapping to series.
#![no_main]

use calm_wire::otlp::{decode_request, to_write_request, Format};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for format in [Format::Protobuf, Format::Json] {
        if let Ok(req) = decode_request(data, format) {
            let _ = to_write_request(&req);
        }
    }
});
