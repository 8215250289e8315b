//! Metric names, label names and units, as Prometheus' otlptranslator builds them.
//!
//! ```text
//! metric  split on every char outside [a-zA-Z0-9:] (so runs of '_' collapse, and leading
//!         and trailing '_' go), append the unit suffix unless a token already equals it,
//!         then "total" (monotonic counters) or "ratio" (gauges with unit "1"), join with
//!         '_', prefix '_' if the result starts with a digit
//! unit    "s" → seconds, "By" → bytes, "1" → nothing, "{packets}" → nothing,
//!         "m/s" → meters_per_second, unknown units kept (cleaned)
//! label   chars outside [a-zA-Z0-9] → '_' (runs kept, Prometheus' default), leading digit
//!         → "key_" prefix, a single leading '_' → "key" prefix, "__" prefix kept
//! ```

/// The kind of Prometheus metric an OTLP metric becomes; it decides the name suffixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetricType {
    /// A Gauge: gets `_ratio` when its unit is `1`.
    Gauge,
    /// A monotonic cumulative Sum: a counter, gets `_total`.
    MonotonicCounter,
    /// A non-monotonic cumulative Sum: a gauge, without `_ratio`.
    NonMonotonicCounter,
    /// An explicit-bucket Histogram.
    Histogram,
    /// A Summary.
    Summary,
}

/// UCUM unit → Prometheus unit word.
fn unit_word(unit: &str) -> &str {
    match unit {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "1" => "",
        "%" => "percent",
        other => other,
    }
}

/// UCUM unit after `/` → Prometheus "per" word (singular).
fn per_unit_word(unit: &str) -> &str {
    match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        other => other,
    }
}

fn is_metric_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == ':'
}

/// The main and "per" suffixes of a UCUM unit, before cleaning: `m/s` → (`meters`,
/// `per_second`). Parts in braces (`{packets}`) are annotations and give nothing.
fn unit_suffixes(unit: &str) -> (String, String) {
    let (main, per) = match unit.split_once('/') {
        Some((main, per)) => (main, Some(per)),
        None => (unit, None),
    };
    let usable = |s: &str| !s.is_empty() && !s.contains(['{', '}']);
    let main = main.trim();
    let main_suffix = if usable(main) {
        unit_word(main).to_string()
    } else {
        String::new()
    };
    let per_suffix = match per.map(str::trim) {
        Some(per) if usable(per) => match per_unit_word(per) {
            "" => String::new(),
            word => format!("per_{word}"),
        },
        _ => String::new(),
    };
    (main_suffix, per_suffix)
}

/// Chars outside `[a-zA-Z0-9:]` → `_`, runs of `_` collapsed, one leading `_` removed.
fn clean_unit(unit: &str) -> String {
    let mut out = String::with_capacity(unit.len());
    for c in unit.chars() {
        let c = if is_metric_char(c) { c } else { '_' };
        if c == '_' && out.ends_with('_') {
            continue;
        }
        out.push(c);
    }
    match out.strip_prefix('_') {
        Some(rest) => rest.to_string(),
        None => out,
    }
}

/// The Prometheus metric name for an OTLP metric name, unit and type; an error message
/// when nothing of the name survives.
pub(crate) fn metric_name(name: &str, unit: &str, ty: MetricType) -> Result<String, String> {
    let mut tokens: Vec<String> = name
        .split(|c: char| !is_metric_char(c))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();

    let (main, per) = unit_suffixes(unit);
    let mut main = clean_unit(&main);
    let mut per = clean_unit(&per);
    if tokens.contains(&main) {
        main.clear();
    }
    if per == "per_" {
        per.clear();
    } else {
        if per.ends_with('_') {
            per.pop();
        }
        if tokens.contains(&per) {
            per.clear();
        }
    }
    if !per.is_empty() && main.ends_with('_') {
        main.pop();
    }
    if !main.is_empty() {
        tokens.push(main);
    }
    if !per.is_empty() {
        tokens.push(per);
    }

    if ty == MetricType::MonotonicCounter {
        tokens.retain(|t| t != "total");
        tokens.push("total".to_string());
    }
    if unit == "1" && ty == MetricType::Gauge {
        tokens.retain(|t| t != "ratio");
        tokens.push("ratio".to_string());
    }

    let mut out = tokens.join("_");
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    if out.is_empty() {
        return Err(format!(
            "metric name {name:?} has no character valid in a Prometheus metric name ([a-zA-Z0-9:])"
        ));
    }
    Ok(out)
}

/// The Prometheus unit for an OTLP (UCUM) unit, for metadata: `s` → `seconds`,
/// `By/s` → `bytes_per_second`, `1` → empty.
pub(crate) fn unit_name(unit: &str) -> String {
    let (main, per) = unit_suffixes(unit);
    let (main, per) = (clean_unit(&main), clean_unit(&per));
    let joined = match (main.is_empty(), per.is_empty()) {
        (false, false) => format!("{main}_{per}"),
        (false, true) => main,
        _ => per,
    };
    let s = joined.strip_prefix('_').unwrap_or(&joined);
    s.strip_suffix('_').unwrap_or(s).to_string()
}

/// The Prometheus label name for an OTLP attribute key; an error message for an empty key
/// or one of which nothing but underscores would remain.
pub(crate) fn label_name(key: &str) -> Result<String, String> {
    if key.is_empty() {
        return Err("attribute with an empty name".to_string());
    }
    let sanitized: String = key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let name = if sanitized.starts_with(|c: char| c.is_ascii_digit()) {
        format!("key_{sanitized}")
    } else if sanitized.starts_with('_') && !sanitized.starts_with("__") {
        format!("key{sanitized}")
    } else {
        sanitized
    };
    if name.bytes().all(|b| b == b'_') {
        return Err(format!(
            "attribute name {key:?} has no character valid in a Prometheus label name ([a-zA-Z0-9])"
        ));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::MetricType::*;
    use super::*;

    fn name(n: &str, unit: &str, ty: MetricType) -> String {
        metric_name(n, unit, ty).unwrap()
    }

    #[test]
    fn metric_names_are_sanitised() {
        assert_eq!(
            name("http.server.duration", "", Gauge),
            "http_server_duration"
        );
        assert_eq!(name("a--b..c__d", "", Gauge), "a_b_c_d");
        assert_eq!(
            name("_leading.and.trailing_", "", Gauge),
            "leading_and_trailing"
        );
        assert_eq!(name("with:colon", "", Gauge), "with:colon");
        assert_eq!(name("2xx.count", "", Gauge), "_2xx_count");
        assert_eq!(name("héllo wörld", "", Gauge), "h_llo_w_rld");
        assert!(metric_name("..", "", Gauge).is_err());
        assert!(metric_name("", "", Gauge).is_err());
        assert!(metric_name("ñ", "", Gauge)
            .unwrap_err()
            .contains("no character valid"));
    }

    #[test]
    fn unit_suffixes_are_appended() {
        assert_eq!(
            name("http.server.duration", "s", Histogram),
            "http_server_duration_seconds"
        );
        assert_eq!(name("latency", "ms", Summary), "latency_milliseconds");
        assert_eq!(name("memory.usage", "By", Gauge), "memory_usage_bytes");
        assert_eq!(name("heap", "KiBy", Gauge), "heap_kibibytes");
        assert_eq!(name("speed", "m/s", Gauge), "speed_meters_per_second");
        assert_eq!(
            name("throughput", "By/s", Gauge),
            "throughput_bytes_per_second"
        );
        assert_eq!(name("rate", "1/s", Gauge), "rate_per_second");
        assert_eq!(
            name("packets", "{packets}", MonotonicCounter),
            "packets_total"
        );
        assert_eq!(name("packets", "{packets}/s", Gauge), "packets_per_second");
        assert_eq!(name("temp", "Cel", Gauge), "temp_celsius");
        assert_eq!(name("load", "%", Gauge), "load_percent");
        assert_eq!(name("odd", "foo bar", Gauge), "odd_foo_bar");
        assert_eq!(name("odd", " s ", Gauge), "odd_seconds");
        assert_eq!(name("per", "x/fortnight", Gauge), "per_x_per_fortnight");
    }

    #[test]
    fn unit_already_in_name_is_not_repeated() {
        assert_eq!(name("duration.seconds", "s", Histogram), "duration_seconds");
        assert_eq!(name("seconds.spent", "s", Gauge), "seconds_spent");
        assert_eq!(name("io.bytes", "By", MonotonicCounter), "io_bytes_total");
    }

    #[test]
    fn type_suffixes() {
        assert_eq!(name("requests", "", MonotonicCounter), "requests_total");
        assert_eq!(
            name("requests.total", "", MonotonicCounter),
            "requests_total"
        );
        assert_eq!(
            name("total.requests", "", MonotonicCounter),
            "requests_total"
        );
        assert_eq!(
            name("cpu.time", "s", MonotonicCounter),
            "cpu_time_seconds_total"
        );
        assert_eq!(name("queue.size", "", NonMonotonicCounter), "queue_size");
        assert_eq!(name("cpu.utilization", "1", Gauge), "cpu_utilization_ratio");
        assert_eq!(name("hit.ratio", "1", Gauge), "hit_ratio");
        assert_eq!(name("updown", "1", NonMonotonicCounter), "updown");
        assert_eq!(name("count", "1", MonotonicCounter), "count_total");
        assert_eq!(name("size", "1", Histogram), "size");
    }

    #[test]
    fn units_for_metadata() {
        assert_eq!(unit_name("s"), "seconds");
        assert_eq!(unit_name("By/s"), "bytes_per_second");
        assert_eq!(unit_name("1/s"), "per_second");
        assert_eq!(unit_name("1"), "");
        assert_eq!(unit_name("{request}"), "");
        assert_eq!(unit_name(""), "");
        assert_eq!(unit_name("foo!"), "foo");
    }

    #[test]
    fn label_names() {
        assert_eq!(label_name("http.method").unwrap(), "http_method");
        assert_eq!(label_name("net.peer..name").unwrap(), "net_peer__name");
        assert_eq!(label_name("2xx").unwrap(), "key_2xx");
        assert_eq!(label_name("_private").unwrap(), "key_private");
        assert_eq!(label_name(".hidden").unwrap(), "key_hidden");
        assert_eq!(label_name("__reserved").unwrap(), "__reserved");
        assert_eq!(label_name("__name__").unwrap(), "__name__");
        assert_eq!(label_name("Ünïcode").unwrap(), "key_n_code");
        assert_eq!(label_name("a").unwrap(), "a");
        assert!(label_name("").unwrap_err().contains("empty name"));
        assert!(label_name("..").unwrap_err().contains("no character valid"));
        assert!(label_name("___").is_err());
    }
}
