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
    ValueBuf::new().format(v).to_string()
}

/// A stack buffer [`format_value`] writes into without allocating: a range query's
/// answer holds hundreds of thousands of values, and a `String` per value was 15% of
/// such a query.
///
/// The shortest round-trip digits come from `ryu`, which picks, among the shortest
/// digit strings, the one closest to the value, as Go and `std` do (`zmij`, used here
/// once, sometimes picked the other one: 992988403977373.2 where Go prints …373.3).
/// `std`'s `{:e}` gives the same digits but cost 6× as much (grisu and `fmt`
/// machinery: 28% of a selective range query in callgrind); the tests below compare
/// every case with `std`. Only the layout (Go's plain or exponent form) is done here,
/// by hand, because no crate writes Go's layout.
pub struct ValueBuf {
    digits: ryu::Buffer,
    bytes: [u8; 40],
}

impl Default for ValueBuf {
    fn default() -> Self {
        ValueBuf::new()
    }
}

impl ValueBuf {
    /// An empty buffer.
    pub fn new() -> ValueBuf {
        ValueBuf {
            digits: ryu::Buffer::new(),
            bytes: [0; 40],
        }
    }

    /// `v` as [`format_value`] writes it, borrowed from this buffer.
    pub fn format(&mut self, v: f64) -> &str {
        if v.is_nan() {
            return "NaN";
        }
        if v.is_infinite() {
            return if v > 0.0 { "+Inf" } else { "-Inf" };
        }
        if v == 0.0 {
            return if v.is_sign_negative() { "-0" } else { "0" };
        }
        // ryu writes "1.5", "123.0", "0.001" (plain, from 1e-5 to 1e16), else "1e16",
        // "1.5e-7". Plain is Go's 'f' form but for the ".0" of integers, and is taken
        // as it is when `v` cannot lie halfway between two shortest strings (see
        // [`halfway_above`]: its binary exponent is outside −26..=22, as for most
        // fractional values); the rest is read back as digits and a decimal exponent,
        // and laid out below.
        let tie_possible = (-26..=22).contains(&odd_exponent(v).1);
        let plain = self.digits.format_finite(v);
        if !tie_possible && !plain.as_bytes().contains(&b'e') {
            return plain.strip_suffix(".0").unwrap_or(plain);
        }
        let s = plain.as_bytes();
        let mut digits = [0u8; 24];
        let mut nd = 0usize; // digits kept
        let mut point: i32 = 0; // digits before the decimal point, as written
        let mut seen_dot = false;
        let mut leading = true;
        let mut exp: i32 = 0;
        let mut i = usize::from(s.first() == Some(&b'-'));
        while i < s.len() {
            match s[i] {
                b'.' => seen_dot = true,
                b'e' | b'E' => {
                    let (neg, from) = match s.get(i + 1) {
                        Some(b'-') => (true, i + 2),
                        Some(b'+') => (false, i + 2),
                        _ => (false, i + 1),
                    };
                    let mut e = 0i32;
                    for &c in &s[from..] {
                        e = e * 10 + i32::from(c - b'0');
                    }
                    exp = if neg { -e } else { e };
                    break;
                }
                c => {
                    if !seen_dot {
                        point += 1;
                    }
                    if leading && c == b'0' {
                        // A leading zero moves the point left instead of being kept.
                        point -= 1;
                    } else if nd < digits.len() {
                        leading = false;
                        digits[nd] = c;
                        nd += 1;
                    }
                }
            }
            i += 1;
        }
        while nd > 1 && digits[nd - 1] == b'0' {
            nd -= 1;
        }
        // value = 0.d₁d₂…dₙ × 10^point
        let mut point = point + exp;
        // When `v` lies exactly halfway between two shortest strings, ryu takes the
        // one with an even last digit; Go and std take the upper one.
        if halfway_above(v, &digits[..nd], point) {
            let mut i = nd;
            loop {
                if i == 0 {
                    // 9…9 + 1: "1" one place further left.
                    digits[0] = b'1';
                    nd = 1;
                    point += 1;
                    break;
                }
                i -= 1;
                if digits[i] == b'9' {
                    digits[i] = b'0';
                } else {
                    digits[i] += 1;
                    break;
                }
            }
            while nd > 1 && digits[nd - 1] == b'0' {
                nd -= 1;
            }
        }
        let digits = &digits[..nd];
        let out = &mut self.bytes;
        let mut n = 0usize;
        let mut put = |b: u8| {
            out[n] = b;
            n += 1;
        };
        if v < 0.0 {
            put(b'-');
        }
        let abs = v.abs();
        if !(1e-6..1e21).contains(&abs) {
            put(digits[0]);
            if digits.len() > 1 {
                put(b'.');
                digits[1..].iter().for_each(|&d| put(d));
            }
            put(b'e');
            let e = point - 1;
            put(if e < 0 { b'-' } else { b'+' });
            let e = e.unsigned_abs();
            if e >= 100 {
                put(b'0' + (e / 100) as u8);
            }
            put(b'0' + (e / 10 % 10) as u8);
            put(b'0' + (e % 10) as u8);
        } else if point <= 0 {
            put(b'0');
            put(b'.');
            (0..-point).for_each(|_| put(b'0'));
            digits.iter().for_each(|&d| put(d));
        } else if point as usize >= digits.len() {
            digits.iter().for_each(|&d| put(d));
            (digits.len()..point as usize).for_each(|_| put(b'0'));
        } else {
            let p = point as usize;
            digits[..p].iter().for_each(|&d| put(d));
            put(b'.');
            digits[p..].iter().for_each(|&d| put(d));
        }
        // Only ASCII digits, '-', '+', '.' and 'e' were written.
        std::str::from_utf8(&self.bytes[..n]).unwrap_or("NaN")
    }
}

/// `|v|` as m·2^e with m odd (m = 0 for zero).
fn odd_exponent(v: f64) -> (u64, i32) {
    let bits = v.to_bits();
    let exp_bits = ((bits >> 52) & 0x7ff) as i32;
    let frac = bits & ((1 << 52) - 1);
    let (m, e) = if exp_bits == 0 {
        (frac, -1074)
    } else {
        (frac | (1 << 52), exp_bits - 1075)
    };
    if m == 0 {
        return (0, 0);
    }
    let tz = m.trailing_zeros();
    (m >> tz, e + tz as i32)
}

/// True when `|v|` is exactly `0.d₁…dₙ5 × 10^point`: halfway between `digits` and
/// the next string of as many digits. Exact and cheap: with `|v|` = m·2^e, m odd, and
/// the midpoint M·10^q (M = d₁…dₙ5, odd, no trailing zero), equality needs q = e and
/// m = M·5^e when e ≥ 0 (so e ≤ 22, m being below 2^53), or q = e and m·5^−e = M when
/// e < 0 (so −e ≤ 26, M being below 10^18): the exponents are compared first, and the
/// products (which fit in 128 bits) only for the rare value that passes.
fn halfway_above(v: f64, digits: &[u8], point: i32) -> bool {
    let (m, e) = odd_exponent(v);
    if m == 0 || digits.len() > 17 {
        return false;
    }
    if point - digits.len() as i32 - 1 != e || !(-26..=22).contains(&e) {
        return false;
    }
    let mut mid: u128 = 0;
    for &d in digits {
        mid = mid * 10 + u128::from(d - b'0');
    }
    mid = mid * 10 + 5;
    let pow5 = 5u128.pow(e.unsigned_abs());
    if e >= 0 {
        mid * pow5 == u128::from(m)
    } else {
        u128::from(m) * pow5 == mid
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
        assert_eq!(format_value(1e20), "100000000000000000000");
        assert_eq!(format_value(1e21), "1e+21");
        assert_eq!(format_value(-1.5e300), "-1.5e+300");
        assert_eq!(format_value(7.83e-7), "7.83e-07");
        assert_eq!(format_value(1e-6), "0.000001");
        assert_eq!(format_value(0.0), "0");
        assert_eq!(format_value(-0.0), "-0");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(5e-324), "5e-324");
        assert_eq!(format_value(1e-7), "1e-07");
        assert_eq!(format_value(123.0), "123");
        assert_eq!(format_value(0.001), "0.001");
        // Two shortest digit strings round-trip; the closer one is printed (Go, std).
        assert_eq!(
            format_value(f64::from_bits(4831299108145620202)),
            "992988403977373.3"
        );
    }

    /// What `format_value` printed before it used zmij (std::fmt's shortest digits,
    /// laid out by hand): the faster path must print the very same bytes.
    fn reference(v: f64) -> String {
        if v.is_nan() {
            return "NaN".into();
        }
        if v.is_infinite() {
            return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
        }
        let abs = v.abs();
        if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
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

    #[test]
    fn fast_path_prints_what_std_fmt_printed() {
        let mut vals = vec![
            0.0,
            -0.0,
            1e21,
            -1e21,
            1e-7,
            1e-6,
            5e-324,
            -5e-324,
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            f64::EPSILON,
            f64::NAN,
            -f64::NAN,
            crate::value::stale_nan(),
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.1 + 0.2,
            1.0 / 3.0,
            123456789012345680000.0,
            9007199254740993.0,
            1e15,
            1e16,
            1e17,
            0.000001234,
            0.00001,
        ];
        // Boundaries of the two forms, and the floats right next to them.
        for b in [1e-6f64, 1e21, 1e-5, 1e16, 1e17, 1.0, 1e-300, 1e300] {
            for x in [b, -b] {
                vals.push(x);
                vals.push(f64::from_bits(x.to_bits() + 1));
                vals.push(f64::from_bits(x.to_bits() - 1));
            }
        }
        // Every power of ten and a few mantissas at each.
        for e in -325..=308 {
            for m in [1.0, 1.5, 2.5, 9.999, 1.2345678901234567, 7.83] {
                vals.push(m * 10f64.powi(e));
                vals.push(-m * 10f64.powi(e));
            }
        }
        // Exporter-like decimals and counters.
        for i in 0..20_000u64 {
            vals.push(i as f64 * 0.01);
            vals.push((i * 7919) as f64 / 1000.0);
            vals.push(i as f64 * 1048576.0 + 0.5);
        }
        for v in vals {
            assert_eq!(format_value(v), reference(v), "bits {:#x}", v.to_bits());
        }
    }

    /// A million pseudo-random bit patterns (every exponent, any mantissa) and the
    /// neighbours of 400,000 random decimals: ryu's choice among the shortest
    /// strings must be std's (and Go's) every time.
    #[test]
    fn random_bits_print_like_std_fmt() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..1_000_000 {
            let v = f64::from_bits(next());
            assert_eq!(format_value(v), reference(v), "bits {:#x}", v.to_bits());
        }
        for _ in 0..400_000 {
            let d = (next() % 1_000_000_000_000) as f64 / 10f64.powi((next() % 20) as i32);
            for v in [
                d,
                f64::from_bits(d.to_bits() + 1),
                f64::from_bits(d.to_bits() - 1),
            ] {
                assert_eq!(format_value(v), reference(v), "bits {:#x}", v.to_bits());
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn any_bits_print_like_std_fmt(bits in proptest::prelude::any::<u64>()) {
            let v = f64::from_bits(bits);
            proptest::prop_assert_eq!(format_value(v), reference(v));
        }

        #[test]
        fn any_ratio_prints_like_std_fmt(a in -1_000_000_000i64..1_000_000_000, k in 0u32..12) {
            let v = a as f64 / 10f64.powi(k as i32);
            proptest::prop_assert_eq!(format_value(v), reference(v));
        }
    }
}
