//! Unit tests of the exposition parsers on hand-written bodies; the conformance
//! fixtures are in `wire/tests/exposition_conformance.rs`.

use super::*;

fn one(body: &str, f: Format) -> Vec<Family<'_>> {
    parse(body, f).unwrap_or_else(|e| panic!("{body:?}: {e}"))
}

#[test]
fn text_format_families_labels_values_timestamps() {
    let body = "# HELP rpc_seconds RPC \\\\ latency\\n.\n# TYPE rpc_seconds summary\n\
                rpc_seconds{quantile=\"0.5\",svc=\"a\\\"b\\\\c\\nd\\t\"} 1.5\n\
                rpc_seconds_sum{svc=\"a\"} +Inf 1700000000000\n\
                rpc_seconds_count { svc = \"a\" , } NaN\n\
                other -Inf -5\n";
    let fams = one(body, Format::Text);
    assert_eq!(fams.len(), 2);
    let f = &fams[0];
    assert_eq!(f.name, "rpc_seconds");
    assert_eq!(f.kind, MetricType::Summary);
    assert_eq!(f.help.as_deref(), Some("RPC \\ latency\n."));
    assert_eq!(f.samples.len(), 3);
    assert_eq!(f.samples[0].labels[1].1, "a\"b\\c\nd\\t");
    assert_eq!(f.samples[1].value, f64::INFINITY);
    assert_eq!(f.samples[1].timestamp_ms, Some(1_700_000_000_000));
    assert!(f.samples[2].value.is_nan());
    assert_eq!(fams[1].kind, MetricType::Unknown);
    assert_eq!(fams[1].samples[0].timestamp_ms, Some(-5));
}

#[test]
fn text_format_errors_name_the_line() {
    let cases = [
        ("a 1\nb{c=d} 2\n", 2, "double-quoted"),
        ("a 1\n\n# TYPE a bogus\n", 3, "invalid metric type"),
        ("a 1 1.5\n", 1, "invalid timestamp"),
        ("a 1 2 3\n", 1, "expected the end of the line"),
        ("a{x=\"1\",x=\"2\"} 1\n", 1, "not unique"),
        ("a{__name__=\"b\"} 1\n", 1, "not unique"),
        ("a blubb\n", 1, "invalid value"),
        ("{a=\"b\"} 1\n", 1, "expected a metric name"),
        ("a{b=\"c} 1\n", 1, "no closing double quote"),
        ("a_b-c 1\n", 1, "expected a value"),
    ];
    for (body, line, want) in cases {
        let e = parse(body, Format::Text).expect_err(body);
        assert_eq!(e.line, line, "{body:?}: {e}");
        assert!(e.message.contains(want), "{body:?}: {e}");
    }
}

#[test]
fn openmetrics_exemplars_units_created_and_eof() {
    let body = "# TYPE req_seconds histogram\n# UNIT req_seconds seconds\n\
                req_seconds_bucket{le=\"0.5\"} 3 # {trace_id=\"x\"} 0.4 1.5\n\
                req_seconds_bucket{le=\"+Inf\"} 4\nreq_seconds_sum 2.5\nreq_seconds_count 4\n\
                req_seconds_created 1.7e9\n# TYPE c counter\nc_total 1 1.25\n# EOF\n";
    let fams = one(body, Format::OpenMetrics);
    assert_eq!(fams.len(), 2);
    assert_eq!(fams[0].unit, Some("seconds"));
    assert_eq!(fams[0].samples.len(), 5);
    let ex = fams[0].samples[0].exemplar.as_ref().expect("exemplar");
    assert_eq!(ex.value, 0.4);
    assert_eq!(ex.timestamp_ms, Some(1500));
    assert_eq!(fams[0].samples[4].name, "req_seconds_created");
    assert_eq!(fams[1].samples[0].timestamp_ms, Some(1250));
}

#[test]
fn openmetrics_errors() {
    let cases = [
        ("a 1\n", "does not end with # EOF"),
        ("a 1\n# EOF\nb 1\n", "after # EOF"),
        ("a 1\n\n# EOF\n", "blank line"),
        ("# comment\n# EOF\n", "no comments"),
        ("a  1\n# EOF\n", "invalid value"),
        ("a{b=\"c\",} 1\n# EOF\n", "expected a label name"),
        ("a 1 NaN\n# EOF\n", "must be finite"),
        (
            "# TYPE a gauge\na 1 # {b=\"c\"} 1\n# EOF\n",
            "does not support exemplars",
        ),
        ("# UNIT a seconds\n# EOF\n", "not a suffix"),
        ("a 0x1p-3\n# EOF\n", "invalid value"),
    ];
    for (body, want) in cases {
        let e = parse(body, Format::OpenMetrics).expect_err(body);
        assert!(e.message.contains(want), "{body:?}: {e}");
    }
}

#[test]
fn content_type_picks_the_parser() {
    assert_eq!(
        Format::from_content_type(Some(
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        )),
        Format::OpenMetrics
    );
    assert_eq!(
        Format::from_content_type(Some("text/plain; version=0.0.4")),
        Format::Text
    );
    assert_eq!(Format::from_content_type(None), Format::Text);
}

#[test]
fn non_utf8_is_refused_with_its_line() {
    let e = parse_bytes(b"a 1\nb{c=\"\xff\"} 1\n", Format::Text).unwrap_err();
    assert_eq!(e.line, 2);
}
