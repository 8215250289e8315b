//! Special sample values.
//!
//! Prometheus marks a series as stale with one particular NaN bit pattern; every other
//! NaN is an ordinary (if odd) value. Storage must keep the bits exactly, and readers
//! must tell the two apart by bits, never by `is_nan()` alone.
//!
//! ```text
//! stale marker  = 0x7ff0000000000002
//! ordinary NaN  = 0x7ff8000000000001 (what Prometheus writes for math.NaN())
//! ```

/// The bit pattern of Prometheus' staleness marker.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The staleness marker as a float.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// True when `v` is the staleness marker (by bits, not by `is_nan`).
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// Formats a sample value as Prometheus' HTTP API writes it (`jsonutil.MarshalFloat`):
/// Go's `strconv.FormatFloat(v, 'f', -1, 64)`, the shortest digits that round-trip and
/// no exponent, except below 1e-6 and from 1e21 on (in magnitude), where it switches to
/// Go's `'e'` form (signed exponent of at least two digits); `NaN`, `+Inf`, `-Inf`.
///
/// ```text
/// 1.5 → "1.5"   1e20 → "100000000000000000000"   1e21 → "1e+21"   7.83e-7 → "7.83e-07"
/// ```
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let abs = v.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        // Rust writes "7.83e-7" / "1e21"; Go writes "7.83e-07" / "1e+21".
        let e = format!("{v:e}");
        let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp),
        };
        return format!("{mantissa}e{sign}{digits:0>2}");
    }
    format!("{v}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_marker_is_a_nan_but_not_every_nan_is_stale() {
        assert!(stale_nan().is_nan());
        assert!(is_stale_nan(stale_nan()));
        assert!(!is_stale_nan(f64::NAN));
        assert!(!is_stale_nan(1.0));
    }

    #[test]
    fn values_print_like_prometheus() {
        assert_eq!(format_value(1.5), "1.5");
        assert_eq!(format_value(1e20), "100000000000000000000");
        assert_eq!(format_value(1e21), "1e+21");
        assert_eq!(format_value(-1.5e300), "-1.5e+300");
        assert_eq!(format_value(7.83e-7), "7.83e-07");
        assert_eq!(format_value(1e-6), "0.000001");
        assert_eq!(format_value(0.0), "0");
        assert_eq!(format_value(-0.0), "-0");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
    }
}
