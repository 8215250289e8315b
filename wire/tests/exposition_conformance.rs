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
//!    Calm accepts exactly what it accepts and finds the same number of samples, and
//!    for every accepted case the same series with the same values as it stored
//!    ([`PROMETHEUS_2_42_STORED`]).
//!
//! The tables were recorded with `wire/tests/exposition_prometheus_verdicts.py` (serves
//! every fixture, lets the real Prometheus scrape it, prints the rows); rerun it when
//! the fixtures change.
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

/// What Prometheus 2.42 stored for each case it accepted (samples without a timestamp
/// of their own; the fixtures' timestamps are years old, out of its TSDB's bounds):
/// the number of series and an FNV-1a hash of their sorted lines
/// `name="v",…` + ` ` + value (as its HTTP API prints it), from
/// `last_over_time({job!=""}[1m])` minus `job`, `instance` and the report series.
/// Cases it accepted but stored nothing for are not listed (0 series, empty hash).
#[rustfmt::skip]
const PROMETHEUS_2_42_STORED: &[(&str, usize, u64)] = &[
    ("om_bad_counter_values_0", 1, 0x0dd5ef1d88bfd366),
    ("om_bad_counter_values_1", 1, 0x73416449a1c6478d),
    ("om_bad_counter_values_10", 1, 0xa7fd9166677c423e),
    ("om_bad_counter_values_11", 2, 0xa8dcbb6ad88d9c65),
    ("om_bad_counter_values_12", 1, 0xd7f28b31b6f15785),
    ("om_bad_counter_values_13", 2, 0x1c60cd9c7eb2f78e),
    ("om_bad_counter_values_14", 2, 0xbdec85c8769c228f),
    ("om_bad_counter_values_15", 1, 0x8d71705a4fb4360b),
    ("om_bad_counter_values_16", 1, 0x87c8e1db41799b27),
    ("om_bad_counter_values_17", 1, 0xf5bedea489920b8a),
    ("om_bad_counter_values_18", 1, 0xf7f66ca1e25bd4e6),
    ("om_bad_counter_values_19", 1, 0xfa5151e5a0596d35),
    ("om_bad_counter_values_2", 1, 0x8d71705a4fb4360b),
    ("om_bad_counter_values_3", 1, 0x87c8e1db41799b27),
    ("om_bad_counter_values_4", 1, 0xa7fd9166677c423e),
    ("om_bad_counter_values_5", 1, 0xf5bedea489920b8a),
    ("om_bad_counter_values_6", 1, 0xf7f66ca1e25bd4e6),
    ("om_bad_counter_values_7", 1, 0xd7f28b31b6f15785),
    ("om_bad_counter_values_8", 3, 0x3128ea43cb0a4535),
    ("om_bad_counter_values_9", 3, 0x4d4836f044481978),
    ("om_bad_exemplar_complex_chars", 1, 0x8f6a024e6279da68),
    ("om_bad_exemplars_6", 1, 0x8f6a024e6279da68),
    ("om_bad_exemplars_on_unallowed_samples_2", 1, 0xba55f14fdbf84b12),
    ("om_bad_grouping_or_ordering_0", 6, 0x9cefa3f1fd150370),
    ("om_bad_grouping_or_ordering_10", 1, 0x7ef2b3df73de43e4),
    ("om_bad_grouping_or_ordering_2", 3, 0x9bc02f3481f1ec7d),
    ("om_bad_grouping_or_ordering_3", 3, 0xf85a95c73f7d6564),
    ("om_bad_grouping_or_ordering_9", 1, 0x7ef2b3df73de43e4),
    ("om_bad_histograms_0", 1, 0xc9985440868a4639),
    ("om_bad_histograms_1", 2, 0x02b4eedc312a423c),
    ("om_bad_histograms_10", 3, 0x2c86e2ceb86041b8),
    ("om_bad_histograms_11", 2, 0x1e7c8ff76910670d),
    ("om_bad_histograms_12", 1, 0x34ebf81dcf130d9d),
    ("om_bad_histograms_13", 2, 0x1e7c8ff76910670d),
    ("om_bad_histograms_14", 2, 0xd13e39eb78c87825),
    ("om_bad_histograms_2", 2, 0x1e7925f7690d7d18),
    ("om_bad_histograms_3", 4, 0x4430bc0115739961),
    ("om_bad_histograms_6", 1, 0x9936b51a1c535c4c),
    ("om_bad_histograms_7", 3, 0x6c37e578b22b666d),
    ("om_bad_histograms_8", 2, 0x9f211c81e2237809),
    ("om_bad_histograms_9", 3, 0xe4ab9efb7490a57a),
    ("om_bad_info_and_stateset_values_0", 1, 0xf93b79e1b7df568d),
    ("om_bad_info_and_stateset_values_1", 1, 0x17ca56446c19893d),
    ("om_bad_metadata_in_wrong_place_0", 1, 0x7ef60ddf73e112a9),
    ("om_bad_metadata_in_wrong_place_1", 1, 0x7ef60ddf73e112a9),
    ("om_bad_metadata_in_wrong_place_2", 1, 0xfe78335a324a69b3),
    ("om_bad_missing_or_invalid_labels_for_a_type_0", 1, 0x7ef2b3df73de43e4),
    ("om_bad_missing_or_invalid_labels_for_a_type_1", 1, 0xb15d45a48dff5f0e),
    ("om_bad_missing_or_invalid_labels_for_a_type_2", 1, 0x5aa8a54525f9ce3c),
    ("om_bad_missing_or_invalid_labels_for_a_type_3", 1, 0x459fea74b4d8b3e0),
    ("om_bad_missing_or_invalid_labels_for_a_type_4", 1, 0x51589c0cb877c85d),
    ("om_bad_missing_or_invalid_labels_for_a_type_5", 1, 0xba59534fdbfb276f),
    ("om_bad_missing_or_invalid_labels_for_a_type_6", 1, 0xba59534fdbfb276f),
    ("om_bad_missing_or_invalid_labels_for_a_type_7", 1, 0x7ef2b3df73de43e4),
    ("om_bad_stateset_info_values_0", 1, 0x7eebebdf73d8845e),
    ("om_bad_stateset_info_values_1", 1, 0x7eebebdf73d8845e),
    ("om_bad_stateset_info_values_2", 1, 0x7eebebdf73d8845e),
    ("om_bad_stateset_info_values_3", 1, 0x7eebebdf73d8845e),
    ("om_counter_unit", 2, 0x34319fa6c0a59c8d),
    ("om_empty_brackets", 1, 0x77dd57e646b7e5f0),
    ("om_empty_help", 1, 0x77dd57e646b7e5f0),
    ("om_empty_label", 2, 0x217c97237e0167fc),
    ("om_escaping", 4, 0x5c1271238d2883d9),
    ("om_exemplars_wide_chars", 1, 0x8f6a024e6279da68),
    ("om_exemplars_with_hash_in_label_values", 3, 0x59cf387920743736),
    ("om_float_gauge", 1, 0x92925c4bbebe073d),
    ("om_hash_in_label_value", 2, 0x7ad2e48e791e837b),
    ("om_help_escaping", 10, 0xbb5d59d17958065a),
    ("om_histogram_exemplars", 3, 0xcc0fba7ba6dd40fb),
    ("om_histogram_noncanonical", 14, 0x1c8b67ce8b7e1292),
    ("om_label_escaping", 10, 0x39bb1b1239b77138),
    ("om_labels_and_infinite", 2, 0xeac8bda914bc9013),
    ("om_labels_with_curly_braces", 1, 0x5d30f8b2897eccb7),
    ("om_leading_zeros_float_gauge", 1, 0x0c12f3c0475d3023),
    ("om_leading_zeros_simple_gauge", 1, 0x7ef60ddf73e112a9),
    ("om_nan", 1, 0xa18052fe5778d65b),
    ("om_nan_gauge", 1, 0xa18052fe5778d65b),
    ("om_negative_bucket_gaugehistogram", 5, 0xb1b0a82b45699e21),
    ("om_negative_bucket_histogram", 3, 0x2e0a85c5b054cefe),
    ("om_no_metadata", 1, 0x7ef60ddf73e112a9),
    ("om_no_newline_after_eof", 1, 0x7ef60ddf73e112a9),
    ("om_roundtrip", 40, 0xfe64faa7570ba7e3),
    ("om_simple_counter", 1, 0x77dd57e646b7e5f0),
    ("om_simple_gauge", 1, 0x7ef60ddf73e112a9),
    ("om_simple_gaugehistogram", 4, 0x1c561f055634cd0a),
    ("om_simple_histogram", 4, 0xd0769b68afd6a4b6),
    ("om_simple_stateset", 2, 0xa635d2ce3141da61),
    ("om_simple_summary", 2, 0x707fc7623d1845de),
    ("om_summary_quantiles", 4, 0x0ded85ae0ae4b02b),
    ("om_type_help_switched", 1, 0x77dd57e646b7e5f0),
    ("om_uint64_counter", 1, 0x890cde149fb7ccc3),
    ("om_unit_gauge", 1, 0x41ea69a35e0f37cb),
    ("om_untyped", 2, 0x05d746b4f33bb4fa),
    ("omfile_1histogram.om.txt", 42, 0x8ad629c91c8ced84),
    ("omfile_alltypes.237mfs.nometa.prom.txt", 1857, 0xfd289592290ac2c3),
    ("omfile_alltypes.237mfs.prom.txt", 1857, 0xfd289592290ac2c3),
    ("omfile_alltypes.5mfs.om.txt", 53, 0x92ad6af7840c0b74),
    ("txt_from_test_parse_1", 2, 0x0d6c400ee52788bb),
    ("txt_from_test_parse_2", 2, 0x5ecba1ad94410569),
    ("txt_from_test_parse_4", 7, 0xd87afa7ec548bbcf),
    ("txt_from_test_parse_error_0", 1, 0x43cecfe45e74dace),
    ("txt_from_test_parse_error_1", 1, 0xd9d329041de3867c),
    ("txt_from_test_parse_error_14", 1, 0xfd68343521506fb8),
    ("txt_from_test_parse_error_19", 1, 0xd484314471e63181),
    ("txt_from_test_parse_error_2", 1, 0x51b599fa83380e2e),
    ("txt_from_test_parse_error_7", 1, 0x1e7f065917d45f2e),
    ("txt_minimal", 1, 0xee1b97c68c287188),
    ("txt_text", 248, 0x0f85cc2f00a3f789),
    ("txtfile_1histogram.om.txt", 42, 0x8ad629c91c8ced84),
    ("txtfile_alltypes.237mfs.nometa.prom.txt", 1857, 0xfd289592290ac2c3),
    ("txtfile_alltypes.237mfs.prom.txt", 1857, 0xfd289592290ac2c3),
    ("txtfile_metrics-test.prom", 27, 0x88079b100aa31de7),
];

/// FNV-1a, 64 bit.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

/// A value as Prometheus' HTTP API prints it: Go's `strconv.FormatFloat` with 'f',
/// or 'e' (two-digit exponent) below 1e-6 and from 1e21 on, as Go's JSON encoder does.
fn api_value(v: f64) -> String {
    let a = v.abs();
    if v.is_finite() && v != 0.0 && !(1e-6..1e21).contains(&a) {
        let s = format!("{v:e}");
        let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp),
        };
        format!("{mant}e{sign}{digits:0>2}")
    } else {
        calm_wire::value::format_value(v)
    }
}

/// The lines [`PROMETHEUS_2_42_STORED`] hashes, from our parse: first sample of each
/// label set, no own timestamp, empty label values dropped, labels sorted.
fn stored_lines(families: &[calm_wire::exposition::Family<'_>]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let mut lines = Vec::new();
    for s in families.iter().flat_map(|f| &f.samples) {
        let mut labels: Vec<(&str, &str)> = vec![("__name__", s.name)];
        // Scraped, the fixture's own job/instance clash with the target's and become
        // exported_* (honor_labels: false).
        labels.extend(
            s.labels
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(n, v)| {
                    let n = match *n {
                        "job" => "exported_job",
                        "instance" => "exported_instance",
                        n => n,
                    };
                    (n, v.as_ref())
                }),
        );
        labels.sort();
        let key: Vec<String> = labels
            .iter()
            .map(|(n, v)| format!("{n}={}", serde_json::to_string(v).unwrap_or_default()))
            .collect();
        let key = key.join(",");
        if s.timestamp_ms.is_some() || !seen.insert(key.clone()) {
            continue;
        }
        lines.push(format!("{key} {}", api_value(s.value)));
    }
    lines.sort();
    lines
}

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
    let mut same_as_stored = 0;
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
        // Against the real Prometheus: the same series and values as it stored.
        if let (Ok(fams), Ok(_)) = (&ours, prom) {
            let lines = stored_lines(fams);
            let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            let (n, hash) = PROMETHEUS_2_42_STORED
                .iter()
                .find(|(c, _, _)| *c == case.name)
                .map(|(_, n, h)| (*n, *h))
                .unwrap_or((0, fnv1a(b"")));
            if lines.len() != n || fnv1a(text.as_bytes()) != hash {
                failures.push(format!(
                    "{}: stored series differ from Prometheus' ({} vs {n} series); ours:\n{text}",
                    case.name,
                    lines.len()
                ));
            } else {
                same_as_stored += 1;
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
         {accepted_like_prometheus} must-reject cases accepted like Prometheus 2.42 (reasons listed); \
         {same_as_stored} accepted cases store exactly the series and values Prometheus stored",
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
