//! Fuzzes the Sentry path the collector and agent run on every envelope: splitting
//! the envelope, reading each event item leniently, then normalisation, grouping and
//! the issue summary (title, culprit).
#![no_main]

use calm_collector::errors::{grouping, normalize, summary};
use calm_wire::sentry::{envelope, event};
use libfuzzer_sys::fuzz_target;

fn ingest_event(bytes: &[u8]) {
    if let Ok(raw) = event::parse(bytes, 1 << 20) {
        let rx = normalize::Received {
            at: 1_700_000_000.0,
            envelope_event_id: None,
            client_ip: Some("127.0.0.1".into()),
        };
        let ev = normalize::normalize(raw, &rx);
        let _ = grouping::hash(&ev);
        let _ = summary::summarize(&ev);
    }
}

fuzz_target!(|data: &[u8]| {
    // As an envelope, each event item goes the whole way.
    if let Ok(env) = envelope::parse(data, &envelope::EnvelopeLimits::default()) {
        for item in &env.items {
            if item.ty == "event" {
                ingest_event(item.payload);
            }
        }
    }
    // As a legacy /store/ body.
    ingest_event(data);
});
