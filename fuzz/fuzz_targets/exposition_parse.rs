//! Fuzzes the exposition parsers the agent's scraper runs on every target's body: the
//! same bytes as Prometheus text and as OpenMetrics. Besides "no panic", what parses
//! must hold only valid names (the parsers promise it to the scraper).
#![no_main]

use calm_wire::exposition::{parse_bytes, Format};
use calm_wire::labels::{is_valid_label_name, is_valid_metric_name};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for format in [Format::Text, Format::OpenMetrics] {
        match parse_bytes(data, format) {
            Ok(families) => {
                for f in &families {
                    assert!(is_valid_metric_name(f.name.as_bytes()));
                    for s in &f.samples {
                        assert!(is_valid_metric_name(s.name.as_bytes()));
                        for (n, _) in &s.labels {
                            assert!(is_valid_label_name(n.as_bytes()) && *n != "__name__");
                        }
                        if let Some(e) = &s.exemplar {
                            assert!(format == Format::OpenMetrics);
                            assert!(e
                                .labels
                                .iter()
                                .all(|(n, _)| is_valid_label_name(n.as_bytes())));
                        }
                    }
                }
            }
            Err(e) => {
                // Line numbers point into the body.
                let lines = data.iter().filter(|b| **b == b'\n').count() + 1;
                assert!(e.line >= 1 && e.line <= lines, "line {} of {lines}", e.line);
            }
        }
    }
});
