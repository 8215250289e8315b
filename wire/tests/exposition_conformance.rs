//! The exposition parsers against the conformance fixtures in
//! `$CALM_CONFORMANCE_DIR/exposition` (default `../shared/conformance`, next to the
//! workspace): the OpenMetrics project's parser suite, `prometheus/common`'s accept/reject
//! corpus and Prometheus' own real-world scrape bodies.
//!
//! Two references are checked, case by case:
//! 1. the fixture's own verdict (`shouldParse`, `from_test_parse_error_N`, "every file
//!    must parse"): every must-parse case parses; every must-reject case is rejected,
//!    unless it is listed in [`PROMETHEUS_2_42`] as accepted by Prometheus' scraper, in
//!    which case Calm's scraper accepts it too, as it must to store what Prometheus stores;
//! 2. the verdict of a real Prometheus 2.42 (Debian's `prometheus` package) scraping each
//!    fixture served with the matching `Content-Type`, recorded in [`PROMETHEUS_2_42`]
//!    with the number of samples it scraped (`scrape_samples_scraped`) or its error:
//!    Calm accepts exactly what it accepts and finds the same number of samples.
//!
//! The one deliberate difference is listed in [`DIFFERENT_FROM_PROMETHEUS`].
//! Run with `--nocapture` for the counts.

use calm_wire::exposition::{parse_bytes, Format};
use std::path::{Path, PathBuf};

/// Cases where Calm's verdict differs from Prometheus 2.42's, and why.
const DIFFERENT_FROM_PROMETHEUS: &[(&str, &str)] = &[(
    "txt_from_test_parse_3",
    "a negative timestamp (`decoy -1 -2`): prometheus/common says must parse; Prometheus \
     2.42's lexer takes only digits in a timestamp. Calm follows the fixture.",
)];

/// Why Prometheus' scraper accepts a case the fixture says must be rejected, by case
/// name prefix. Every accepted must-reject case must have a reason here.
const WHY_PROMETHEUS_ACCEPTS: &[(&str, &str)] = &[
    (
        "om_bad_clashing_names_",
        "two families with clashing names: Prometheus does not track family names across lines",
    ),
    (
        "om_bad_counter_values_",
        "counter values (negative, NaN, non-integer count) are not checked against the type",
    ),
    (
        "om_bad_exemplar_complex_chars",
        "exemplar label length (128 runes) is not checked",
    ),
    (
        "om_bad_exemplars_6",
        "exemplar label length (128 runes) is not checked",
    ),
    (
        "om_bad_exemplars_on_unallowed_samples_2",
        "exemplars are allowed on any _total/_bucket sample name, whatever the family type",
    ),
    (
        "om_bad_grouping_or_ordering_",
        "interleaved families, label-set order and bucket order are not checked",
    ),
    (
        "om_bad_histograms_",
        "histogram structure (missing +Inf, le order, _count/_sum presence) is not checked",
    ),
    (
        "om_bad_info_and_stateset_values_",
        "info/stateset values are not checked",
    ),
    (
        "om_bad_metadata_in_wrong_place_",
        "metadata after samples starts a new family; not an error",
    ),
    (
        "om_bad_missing_or_invalid_labels_for_a_type_",
        "le/quantile/stateset labels are not required or checked",
    ),
    (
        "om_bad_repeated_metadata_",
        "a repeated HELP/UNIT replaces the earlier one",
    ),
    (
        "om_bad_stateset_info_values_",
        "info/stateset values are not checked",
    ),
    (
        "om_bad_unit_",
        "a UNIT on an info or stateset family is not checked against the type",
    ),
    (
        "txt_from_test_parse_error_0",
        "a missing final newline is fine for Prometheus' text parser",
    ),
    (
        "txt_from_test_parse_error_1",
        "an unknown escape (\\t) is kept as written; no final newline is fine",
    ),
    (
        "txt_from_test_parse_error_2",
        "a raw newline inside a quoted label value is taken as part of the value",
    ),
    (
        "txt_from_test_parse_error_7",
        "quantile label values are not checked",
    ),
    (
        "txt_from_test_parse_error_12",
        "a repeated HELP replaces the earlier one",
    ),
    (
        "txt_from_test_parse_error_13",
        "a repeated TYPE replaces the earlier one",
    ),
    (
        "txt_from_test_parse_error_14",
        "a TYPE after the family's samples starts a new family",
    ),
    (
        "txt_from_test_parse_error_19",
        "le label values are not checked",
    ),
];

/// What Prometheus 2.42 did with each case: `Ok(samples scraped)` or `Err(its error)`.
/// Case names: `om_<dir>` OpenMetrics suite; `txt_<file>` prometheus/common corpus (text);
/// `txtfile_<file>` / `omfile_<file>` Prometheus' testdata read as text / OpenMetrics.
#[rustfmt::skip]
const PROMETHEUS_2_42: &[(&str, Result<usize, &str>)] = &[
    ("om_bad_blank_line", Err("\"INVALID\" \"\\n\" is not a valid start token")),
    ("om_bad_clashing_names_0", Ok(0)),
    ("om_bad_clashing_names_1", Ok(0)),
    ("om_bad_clashing_names_2", Ok(0)),
    ("om_bad_counter_values_0", Ok(1)),
    ("om_bad_counter_values_1", Ok(1)),
    ("om_bad_counter_values_10", Ok(1)),
    ("om_bad_counter_values_11", Ok(2)),
    ("om_bad_counter_values_12", Ok(1)),
    ("om_bad_counter_values_13", Ok(2)),
    ("om_bad_counter_values_14", Ok(2)),
    ("om_bad_counter_values_15", Ok(1)),
    ("om_bad_counter_values_16", Ok(1)),
    ("om_bad_counter_values_17", Ok(1)),
    ("om_bad_counter_values_18", Ok(1)),
    ("om_bad_counter_values_19", Ok(1)),
    ("om_bad_counter_values_2", Ok(1)),
    ("om_bad_counter_values_3", Ok(1)),
    ("om_bad_counter_values_4", Ok(1)),
    ("om_bad_counter_values_5", Ok(1)),
    ("om_bad_counter_values_6", Ok(1)),
    ("om_bad_counter_values_7", Ok(1)),
    ("om_bad_counter_values_8", Ok(3)),
    ("om_bad_counter_values_9", Ok(3)),
    ("om_bad_exemplar_complex_chars", Ok(1)),
    ("om_bad_exemplar_timestamp_0", Err("invalid exemplar timestamp")),
    ("om_bad_exemplar_timestamp_1", Err("invalid exemplar timestamp")),
    ("om_bad_exemplar_timestamp_2", Err("invalid exemplar timestamp")),
    ("om_bad_exemplars_0", Err("strconv.ParseFloat: parsing \"#\": invalid syntax")),
    ("om_bad_exemplars_1", Err("strconv.ParseFloat: parsing \"1#\": invalid syntax")),
    ("om_bad_exemplars_10", Err("expected next entry after timestamp, got \"INVALID\"")),
    ("om_bad_exemplars_11", Err("expected next entry after timestamp, got \"TIMESTAMP\"")),
    ("om_bad_exemplars_12", Err("expected next entry after timestamp, got \"TIMESTAMP\"")),
    ("om_bad_exemplars_2", Err("strconv.ParseFloat: parsing \"#{}\": invalid syntax")),
    ("om_bad_exemplars_3", Err("expected value after exemplar labels, got \"INVALID\"")),
    ("om_bad_exemplars_4", Err("expected timestamp or comment, got \"INVALID\"")),
    ("om_bad_exemplars_5", Err("expected next entry after exemplar timestamp, got \"INVALID\"")),
    ("om_bad_exemplars_6", Ok(1)),
    ("om_bad_exemplars_7", Err("unsupported character in float")),
    ("om_bad_exemplars_8", Err("unsupported character in float")),
    ("om_bad_exemplars_9", Err("expected value after exemplar labels, got \"INVALID\"")),
    ("om_bad_exemplars_on_unallowed_metric_types_0", Err("metric name a does not support exemplars")),
    ("om_bad_exemplars_on_unallowed_metric_types_1", Err("metric name a_info does not support exemplars")),
    ("om_bad_exemplars_on_unallowed_metric_types_2", Err("metric name a does not support exemplars")),
    ("om_bad_exemplars_on_unallowed_samples_0", Err("metric name a_sum does not support exemplars")),
    ("om_bad_exemplars_on_unallowed_samples_1", Err("metric name a_sum does not support exemplars")),
    ("om_bad_exemplars_on_unallowed_samples_2", Ok(1)),
    ("om_bad_exemplars_on_unallowed_samples_3", Err("metric name a_created does not support exemplars")),
    ("om_bad_grouping_or_ordering_0", Ok(6)),
    ("om_bad_grouping_or_ordering_1", Err("expected comma or left brace, got \"INVALID\"")),
    ("om_bad_grouping_or_ordering_10", Ok(2)),
    ("om_bad_grouping_or_ordering_2", Ok(3)),
    ("om_bad_grouping_or_ordering_3", Ok(3)),
    ("om_bad_grouping_or_ordering_4", Ok(2)),
    ("om_bad_grouping_or_ordering_5", Ok(2)),
    ("om_bad_grouping_or_ordering_6", Ok(2)),
    ("om_bad_grouping_or_ordering_7", Ok(2)),
    ("om_bad_grouping_or_ordering_8", Ok(2)),
    ("om_bad_grouping_or_ordering_9", Ok(2)),
    ("om_bad_help_0", Err("\"INVALID\" \"\\n\" is not a valid start token")),
    ("om_bad_help_1", Err("expected metric name after HELP, got \"INVALID\"")),
    ("om_bad_help_2", Err("expected text in HELP")),
    ("om_bad_help_3", Err("expected text in HELP")),
    ("om_bad_help_4", Err("\"INVALID\" \" \" is not a valid start token")),
    ("om_bad_histograms_0", Ok(1)),
    ("om_bad_histograms_1", Ok(2)),
    ("om_bad_histograms_10", Ok(3)),
    ("om_bad_histograms_11", Ok(2)),
    ("om_bad_histograms_12", Ok(1)),
    ("om_bad_histograms_13", Ok(2)),
    ("om_bad_histograms_14", Ok(2)),
    ("om_bad_histograms_2", Ok(2)),
    ("om_bad_histograms_3", Ok(4)),
    ("om_bad_histograms_4", Err("\"INVALID\" \"a\" is not a valid start token")),
    ("om_bad_histograms_5", Err("\"INVALID\" \"a\" is not a valid start token")),
    ("om_bad_histograms_6", Ok(1)),
    ("om_bad_histograms_7", Ok(3)),
    ("om_bad_histograms_8", Ok(2)),
    ("om_bad_histograms_9", Ok(3)),
    ("om_bad_info_and_stateset_values_0", Ok(1)),
    ("om_bad_info_and_stateset_values_1", Ok(1)),
    ("om_bad_invalid_labels_0", Err("expected label name or left brace, got \"INVALID\"")),
    ("om_bad_invalid_labels_1", Err("expected label name or left brace, got \"INVALID\"")),
    ("om_bad_invalid_labels_2", Err("label name \"a\" is not unique: invalid sample")),
    ("om_bad_invalid_labels_3", Err("expected comma, got \"LNAME\"")),
    ("om_bad_invalid_labels_4", Err("expected label name or left brace, got \"INVALID\"")),
    ("om_bad_invalid_labels_5", Err("label name \"a\" is not unique: invalid sample")),
    ("om_bad_invalid_labels_6", Err("expected value after metric, got \"INVALID\"")),
    ("om_bad_invalid_labels_7", Err("expected label value, got \"INVALID\"")),
    ("om_bad_invalid_labels_8", Err("expected comma, got \"LNAME\"")),
    ("om_bad_metadata", Err("\"INVALID\" \"F\" is not a valid start token")),
    ("om_bad_metadata_in_wrong_place_0", Ok(1)),
    ("om_bad_metadata_in_wrong_place_1", Ok(1)),
    ("om_bad_metadata_in_wrong_place_2", Ok(1)),
    ("om_bad_metric_names_0", Err("\"INVALID\" \"0\" is not a valid start token")),
    ("om_bad_metric_names_1", Err("expected value after metric, got \"INVALID\"")),
    ("om_bad_metric_names_2", Err("expected value after metric, got \"INVALID\"")),
    ("om_bad_missing_equal_or_label_value_0", Err("expected equal, got \"BCLOSE\"")),
    ("om_bad_missing_equal_or_label_value_1", Err("expected equal, got \"INVALID\"")),
    ("om_bad_missing_equal_or_label_value_2", Err("expected equal, got \"INVALID\"")),
    ("om_bad_missing_equal_or_label_value_3", Err("expected label value, got \"INVALID\"")),
    ("om_bad_missing_equal_or_label_value_4", Err("expected label value, got \"INVALID\"")),
    ("om_bad_missing_or_extra_commas_0", Err("expected comma, got \"LNAME\"")),
    ("om_bad_missing_or_extra_commas_1", Err("expected label name, got \"COMMA\"")),
    ("om_bad_missing_or_extra_commas_2", Err("expected label name, got \"BCLOSE\"")),
    ("om_bad_missing_or_invalid_labels_for_a_type_0", Ok(1)),
    ("om_bad_missing_or_invalid_labels_for_a_type_1", Ok(1)),
    ("om_bad_missing_or_invalid_labels_for_a_type_2", Ok(1)),
    ("om_bad_missing_or_invalid_labels_for_a_type_3", Ok(1)),
    ("om_bad_missing_or_invalid_labels_for_a_type_4", Ok(1)),
    ("om_bad_missing_or_invalid_labels_for_a_type_5", Ok(1)),
    ("om_bad_missing_or_invalid_labels_for_a_type_6", Ok(1)),
    ("om_bad_missing_or_invalid_labels_for_a_type_7", Ok(1)),
    ("om_bad_missing_or_wrong_quotes_on_label_value_0", Err("expected label value, got \"INVALID\"")),
    ("om_bad_missing_or_wrong_quotes_on_label_value_1", Err("expected label value, got \"INVALID\"")),
    ("om_bad_missing_or_wrong_quotes_on_label_value_2", Err("expected label value, got \"INVALID\"")),
    ("om_bad_missing_value_0", Err("expected value after metric, got \"INVALID\"")),
    ("om_bad_missing_value_1", Err("expected value after metric, got \"INVALID\"")),
    ("om_bad_no_eof", Err("data does not end with # EOF")),
    ("om_bad_repeated_metadata_0", Ok(0)),
    ("om_bad_repeated_metadata_1", Ok(0)),
    ("om_bad_repeated_metadata_2", Err("invalid metric type \"untyped\"")),
    ("om_bad_repeated_metadata_3", Ok(0)),
    ("om_bad_stateset_info_values_0", Ok(1)),
    ("om_bad_stateset_info_values_1", Ok(1)),
    ("om_bad_stateset_info_values_2", Ok(1)),
    ("om_bad_stateset_info_values_3", Ok(1)),
    ("om_bad_text_after_eof_0", Err("unexpected data after # EOF")),
    ("om_bad_text_after_eof_1", Err("unexpected data after # EOF")),
    ("om_bad_timestamp_0", Err("strconv.ParseFloat: parsing \"z\": invalid syntax")),
    ("om_bad_timestamp_1", Err("strconv.ParseFloat: parsing \"1z\": invalid syntax")),
    ("om_bad_timestamp_2", Err("unsupported character in float")),
    ("om_bad_timestamp_3", Err("strconv.ParseFloat: parsing \"1.1.1\": invalid syntax")),
    ("om_bad_timestamp_4", Err("invalid timestamp")),
    ("om_bad_timestamp_5", Err("invalid timestamp")),
    ("om_bad_timestamp_6", Err("expected timestamp or # symbol, got \"INVALID\"")),
    ("om_bad_timestamp_7", Err("invalid timestamp")),
    ("om_bad_timestamp_8", Err("unsupported character in float")),
    ("om_bad_type_0", Err("\"INVALID\" \"\\n\" is not a valid start token")),
    ("om_bad_type_1", Err("expected metric name after TYPE, got \"INVALID\"")),
    ("om_bad_type_2", Err("expected text in TYPE")),
    ("om_bad_type_3", Err("expected text in TYPE")),
    ("om_bad_type_4", Err("invalid metric type \"meh\"")),
    ("om_bad_type_5", Err("invalid metric type \"meh \"")),
    ("om_bad_type_6", Err("invalid metric type \"gauge \"")),
    ("om_bad_type_7", Err("invalid metric type \"untyped\"")),
    ("om_bad_unit_0", Err("\"INVALID\" \"\\n\" is not a valid start token")),
    ("om_bad_unit_1", Err("expected metric name after UNIT, got \"INVALID\"")),
    ("om_bad_unit_2", Err("expected text in UNIT")),
    ("om_bad_unit_3", Err("expected text in UNIT")),
    ("om_bad_unit_4", Err("unit not a suffix of metric \"a\"")),
    ("om_bad_unit_5", Err("unit not a suffix of metric \"a_seconds\"")),
    ("om_bad_unit_6", Ok(0)),
    ("om_bad_unit_7", Ok(0)),
    ("om_bad_value_0", Err("strconv.ParseFloat: parsing \"a\": invalid syntax")),
    ("om_bad_value_1", Err("expected value after metric, got \"INVALID\"")),
    ("om_bad_value_10", Err("strconv.ParseFloat: parsing \"0X1\": invalid syntax")),
    ("om_bad_value_11", Err("strconv.ParseFloat: parsing \"0o1\": invalid syntax")),
    ("om_bad_value_12", Err("strconv.ParseFloat: parsing \"0O1\": invalid syntax")),
    ("om_bad_value_2", Err("strconv.ParseFloat: parsing \"1\\t\": invalid syntax")),
    ("om_bad_value_3", Err("expected timestamp or # symbol, got \"INVALID\"")),
    ("om_bad_value_4", Err("unsupported character in float")),
    ("om_bad_value_5", Err("unsupported character in float")),
    ("om_bad_value_6", Err("unsupported character in float")),
    ("om_bad_value_7", Err("strconv.ParseFloat: parsing \"0b1\": invalid syntax")),
    ("om_bad_value_8", Err("strconv.ParseFloat: parsing \"0B1\": invalid syntax")),
    ("om_bad_value_9", Err("strconv.ParseFloat: parsing \"0x1\": invalid syntax")),
    ("om_counter_exemplars", Ok(1)),
    ("om_counter_exemplars_empty_brackets", Ok(1)),
    ("om_counter_unit", Ok(2)),
    ("om_duplicate_timestamps_0", Ok(5)),
    ("om_duplicate_timestamps_1", Ok(5)),
    ("om_empty_brackets", Ok(1)),
    ("om_empty_help", Ok(1)),
    ("om_empty_label", Ok(2)),
    ("om_empty_metadata", Ok(0)),
    ("om_escaping", Ok(4)),
    ("om_exemplars_wide_chars", Ok(1)),
    ("om_exemplars_with_hash_in_label_values", Ok(3)),
    ("om_float_gauge", Ok(1)),
    ("om_gaugehistogram_exemplars", Ok(3)),
    ("om_hash_in_label_value", Ok(2)),
    ("om_help_escaping", Ok(10)),
    ("om_histogram_exemplars", Ok(3)),
    ("om_histogram_noncanonical", Ok(14)),
    ("om_info_timestamps", Ok(2)),
    ("om_label_escaping", Ok(10)),
    ("om_labels_and_infinite", Ok(2)),
    ("om_labels_with_curly_braces", Ok(1)),
    ("om_leading_zeros_float_gauge", Ok(1)),
    ("om_leading_zeros_simple_gauge", Ok(1)),
    ("om_nan", Ok(1)),
    ("om_nan_gauge", Ok(1)),
    ("om_negative_bucket_gaugehistogram", Ok(5)),
    ("om_negative_bucket_histogram", Ok(3)),
    ("om_no_metadata", Ok(1)),
    ("om_no_newline_after_eof", Ok(1)),
    ("om_null_byte", Ok(0)),
    ("om_roundtrip", Ok(40)),
    ("om_simple_counter", Ok(1)),
    ("om_simple_gauge", Ok(1)),
    ("om_simple_gaugehistogram", Ok(4)),
    ("om_simple_histogram", Ok(4)),
    ("om_simple_stateset", Ok(2)),
    ("om_simple_summary", Ok(2)),
    ("om_summary_quantiles", Ok(4)),
    ("om_timestamps", Ok(6)),
    ("om_type_help_switched", Ok(1)),
    ("om_uint64_counter", Ok(1)),
    ("om_unit_gauge", Ok(1)),
    ("om_untyped", Ok(2)),
    ("omfile_1histogram.om.txt", Ok(42)),
    ("omfile_alltypes.237mfs.nometa.prom.txt", Ok(1857)),
    ("omfile_alltypes.237mfs.prom.txt", Ok(1857)),
    ("omfile_alltypes.5mfs.om.txt", Ok(53)),
    ("omfile_metrics-test.prom", Err("data does not end with # EOF")),
    ("txt_from_test_parse_0", Ok(0)),
    ("txt_from_test_parse_1", Ok(3)),
    ("txt_from_test_parse_2", Ok(4)),
    ("txt_from_test_parse_3", Err("expected timestamp or new record, got \"INVALID\"")),
    ("txt_from_test_parse_4", Ok(7)),
    ("txt_from_test_parse_error_0", Ok(1)),
    ("txt_from_test_parse_error_1", Ok(1)),
    ("txt_from_test_parse_error_10", Err("expected next entry after timestamp, got \"TIMESTAMP\"")),
    ("txt_from_test_parse_error_11", Err("strconv.ParseFloat: parsing \"blubb\": invalid syntax")),
    ("txt_from_test_parse_error_12", Ok(0)),
    ("txt_from_test_parse_error_13", Ok(0)),
    ("txt_from_test_parse_error_14", Ok(1)),
    ("txt_from_test_parse_error_15", Err("invalid metric type \"bla\"")),
    ("txt_from_test_parse_error_16", Err("invalid metric type \"ric\"")),
    ("txt_from_test_parse_error_17", Err("\"INVALID\" is not a valid start token")),
    ("txt_from_test_parse_error_18", Err("\"INVALID\" is not a valid start token")),
    ("txt_from_test_parse_error_19", Ok(1)),
    ("txt_from_test_parse_error_2", Ok(1)),
    ("txt_from_test_parse_error_3", Err("expected label name, got \"INVALID\"")),
    ("txt_from_test_parse_error_4", Err("label name \"__name__\" is not unique: invalid sample")),
    ("txt_from_test_parse_error_5", Err("expected equal, got \"INVALID\"")),
    ("txt_from_test_parse_error_6", Err("expected label value, got \"INVALID\"")),
    ("txt_from_test_parse_error_7", Ok(1)),
    ("txt_from_test_parse_error_8", Err("expected label name, got \"INVALID\"")),
    ("txt_from_test_parse_error_9", Err("expected next entry after timestamp, got \"INVALID\"")),
    ("txt_minimal", Ok(1)),
    ("txt_text", Ok(248)),
    ("txtfile_1histogram.om.txt", Ok(42)),
    ("txtfile_alltypes.237mfs.nometa.prom.txt", Ok(1857)),
    ("txtfile_alltypes.237mfs.prom.txt", Ok(1857)),
    ("txtfile_alltypes.5mfs.om.txt", Err("expected timestamp or new record, got \"INVALID\"")),
    ("txtfile_metrics-test.prom", Ok(27)),
];

fn conformance_dir() -> Option<PathBuf> {
    let base = match std::env::var("CALM_CONFORMANCE_DIR") {
        Ok(d) => PathBuf::from(d),
        Err(_) => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance"),
    };
    let dir = base.join("exposition");
    dir.is_dir().then_some(dir)
}

/// A fixture: where it is, how it is read, and what the fixture itself expects
/// (`None` when the fixture says nothing: a file read in the other format).
struct Case {
    name: String,
    path: PathBuf,
    format: Format,
    must_parse: Option<bool>,
}

fn cases(dir: &Path) -> Vec<Case> {
    let mut out = Vec::new();
    let om = dir.join("openmetrics-parsers");
    let mut names: Vec<String> = std::fs::read_dir(&om)
        .expect("read openmetrics-parsers")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for n in names {
        let meta: serde_json::Value = serde_json::from_slice(
            &std::fs::read(om.join(&n).join("test.json")).expect("read test.json"),
        )
        .expect("test.json is JSON");
        out.push(Case {
            name: format!("om_{n}"),
            path: om.join(&n).join(meta["file"].as_str().unwrap_or("metrics")),
            format: Format::OpenMetrics,
            must_parse: meta["shouldParse"].as_bool(),
        });
    }
    let corpus = dir.join("prometheus-common-expfmt/corpus");
    let mut files: Vec<String> = std::fs::read_dir(&corpus)
        .expect("read expfmt corpus")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    for f in files {
        out.push(Case {
            name: format!("txt_{f}"),
            path: corpus.join(&f),
            format: Format::Text,
            must_parse: Some(!f.starts_with("from_test_parse_error")),
        });
    }
    out.push(Case {
        name: "txt_text".into(),
        path: dir.join("prometheus-common-expfmt/text"),
        format: Format::Text,
        must_parse: Some(true),
    });
    for f in [
        "1histogram.om.txt",
        "alltypes.237mfs.nometa.prom.txt",
        "alltypes.237mfs.prom.txt",
        "alltypes.5mfs.om.txt",
        "metrics-test.prom",
    ] {
        let native_om = f.ends_with(".om.txt");
        for (prefix, format, native) in [
            ("txtfile", Format::Text, !native_om),
            ("omfile", Format::OpenMetrics, native_om),
        ] {
            out.push(Case {
                name: format!("{prefix}_{f}"),
                path: dir.join("prometheus-textparse").join(f),
                format,
                must_parse: native.then_some(true),
            });
        }
    }
    out
}

#[test]
fn exposition_conformance() {
    let Some(dir) = conformance_dir() else {
        if std::env::var("CALM_REQUIRE_PEERS").as_deref() == Ok("1") {
            panic!("exposition conformance fixtures not found and CALM_REQUIRE_PEERS=1");
        }
        eprintln!(
            "\n*** SKIP: exposition conformance fixtures not found (set CALM_CONFORMANCE_DIR) ***\n"
        );
        return;
    };
    let cases = cases(&dir);
    assert!(
        cases.len() > 240,
        "only {} cases found in {}",
        cases.len(),
        dir.display()
    );
    let (mut parsed, mut rejected, mut accepted_like_prometheus) = (0, 0, 0);
    let mut failures = Vec::new();
    for case in &cases {
        let body = std::fs::read(&case.path).expect("read fixture");
        let ours = parse_bytes(&body, case.format);
        let prom = PROMETHEUS_2_42
            .iter()
            .find(|(n, _)| *n == case.name)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("{}: no recorded Prometheus verdict", case.name));
        let differs = DIFFERENT_FROM_PROMETHEUS
            .iter()
            .any(|(n, _)| *n == case.name);
        let ours_count = ours
            .as_ref()
            .map(|fams| fams.iter().map(|f| f.samples.len()).sum::<usize>());
        match (&ours_count, case.must_parse) {
            (Ok(_), Some(true)) | (Ok(_), None) => parsed += 1,
            (Err(_), Some(false)) | (Err(_), None) => rejected += 1,
            (Ok(_), Some(false)) => {
                let why = WHY_PROMETHEUS_ACCEPTS
                    .iter()
                    .find(|(p, _)| case.name.starts_with(p));
                if why.is_some() && prom.is_ok() {
                    accepted_like_prometheus += 1;
                } else {
                    failures.push(format!(
                        "{}: must be rejected but parsed (Prometheus: {prom:?})",
                        case.name
                    ));
                }
            }
            (Err(e), Some(true)) => {
                failures.push(format!("{}: must parse but failed: {e}", case.name))
            }
        }
        // Against the real Prometheus: same verdict and the same number of samples.
        match (&ours_count, prom) {
            (Ok(n), Ok(m)) if *n != m => failures.push(format!(
                "{}: {n} samples, Prometheus scraped {m}",
                case.name
            )),
            (Ok(_), Err(pe)) if !differs => failures.push(format!(
                "{}: parsed, but Prometheus refused it ({pe})",
                case.name
            )),
            (Err(e), Ok(_)) if !differs => failures.push(format!(
                "{}: refused ({e}), but Prometheus accepted it",
                case.name
            )),
            _ => {}
        }
    }
    println!(
        "exposition conformance: {} cases: {parsed} parsed, {rejected} rejected, \
         {accepted_like_prometheus} must-reject cases accepted like Prometheus 2.42 (reasons listed)",
        cases.len()
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A sample as (name, labels, value bits), for comparing two parses.
type FlatSample = (String, Vec<(String, String)>, u64);

/// The real-world bodies parse to what their README says they hold.
#[test]
fn real_world_bodies_have_the_documented_families() {
    let Some(dir) = conformance_dir() else {
        eprintln!("\n*** SKIP: exposition conformance fixtures not found ***\n");
        return;
    };
    let read = |f: &str| std::fs::read(dir.join("prometheus-textparse").join(f)).expect("read");
    let body = read("alltypes.237mfs.prom.txt");
    let fams = parse_bytes(&body, Format::Text).expect("parses");
    let count = |k: &str| fams.iter().filter(|f| f.kind.as_str() == k).count();
    assert_eq!(fams.len(), 237);
    assert_eq!(
        (
            count("counter"),
            count("gauge"),
            count("histogram"),
            count("summary")
        ),
        (112, 97, 15, 13)
    );
    assert!(fams.iter().all(|f| f.help.is_some()));
    let nometa = read("alltypes.237mfs.nometa.prom.txt");
    let bare = parse_bytes(&nometa, Format::Text).expect("parses");
    assert!(bare
        .iter()
        .all(|f| f.kind.as_str() == "unknown" && f.help.is_none()));
    let flat = |fs: &[calm_wire::exposition::Family<'_>]| -> Vec<FlatSample> {
        fs.iter()
            .flat_map(|f| f.samples.iter())
            .map(|s| {
                (
                    s.name.to_string(),
                    s.labels
                        .iter()
                        .map(|(n, v)| (n.to_string(), v.to_string()))
                        .collect(),
                    s.value.to_bits(),
                )
            })
            .collect()
    };
    assert_eq!(
        flat(&fams),
        flat(&bare),
        "the same samples with and without metadata"
    );

    let om = read("alltypes.5mfs.om.txt");
    let fams = parse_bytes(&om, Format::OpenMetrics).expect("parses");
    assert_eq!(fams.len(), 5);
    let exemplars: usize = fams
        .iter()
        .flat_map(|f| &f.samples)
        .filter(|s| s.exemplar.is_some())
        .count();
    assert_eq!(exemplars, 6);
    let created = fams
        .iter()
        .flat_map(|f| &f.samples)
        .filter(|s| s.name.ends_with("_created"))
        .count();
    assert_eq!(
        created, 9,
        "_created series are samples, as Prometheus 2.42 stores them"
    );
}
