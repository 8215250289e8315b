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

/// Formats a sample value as Prometheus writes it, in the exposition format and the
/// HTTP API alike (Go's `strconv.FormatFloat(v, 'f', -1, 64)`): shortest digits that
/// round-trip, no exponent, `NaN`, `+Inf`, `-Inf`.
///
/// ```text
/// 1.5 → "1.5"    1e21 → "1000000000000000000000"    -∞ → "-Inf"
/// ```
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
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
        assert_eq!(format_value(1e21), "1000000000000000000000");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
    }
}
