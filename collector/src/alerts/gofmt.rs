//! Go's number formatting, as Prometheus' templates and API print numbers.
//!
//! Annotations are Go `text/template` output, so `{{ $value }}` prints a float as
//! Go's `%v` does (`1e+06`, `0.5`, `NaN`, `+Inf`), `humanize` uses `%.4g`, and the
//! alerts API writes values with `strconv.FormatFloat(v, 'e', -1, 64)` (`1e+00`).
//! Rust's `{:e}` gives the shortest round-tripping digits, and `{:.*e}` the digits
//! rounded to a precision (both exact); the layout rules below are Go's
//! `strconv.formatDigits`, written by hand because no crate reproduces them.

/// Decimal digits of |v| (no trailing zeros) and the decimal point position: the
/// value is `0.d1d2d3… × 10^dp`.
fn digits(v: f64, prec: Option<usize>) -> (String, i32) {
    let s = match prec {
        None => format!("{:e}", v.abs()),
        Some(p) => format!("{:.*e}", p.saturating_sub(1), v.abs()),
    };
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut d: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    while d.len() > 1 && d.ends_with('0') {
        d.pop();
    }
    if d == "0" {
        return ("0".into(), 1);
    }
    (d, exp + 1)
}

fn special(v: f64) -> Option<String> {
    if v.is_nan() {
        Some("NaN".into())
    } else if v.is_infinite() {
        Some(if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        })
    } else {
        None
    }
}

fn fmt_e(neg: bool, d: &str, dp: i32, decimals: usize) -> String {
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    let mut chars = d.chars();
    out.push(chars.next().unwrap_or('0'));
    if decimals > 0 {
        out.push('.');
        let rest: String = chars.collect();
        for i in 0..decimals {
            out.push(rest.as_bytes().get(i).map(|&b| b as char).unwrap_or('0'));
        }
    }
    let exp = if d == "0" { 0 } else { dp - 1 };
    out.push('e');
    out.push(if exp < 0 { '-' } else { '+' });
    let a = exp.unsigned_abs();
    if a < 10 {
        out.push('0');
    }
    out.push_str(&a.to_string());
    out
}

fn fmt_f(neg: bool, d: &str, dp: i32, decimals: usize) -> String {
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    let db = d.as_bytes();
    if dp > 0 {
        for i in 0..dp as usize {
            out.push(db.get(i).map(|&b| b as char).unwrap_or('0'));
        }
    } else {
        out.push('0');
    }
    if decimals > 0 {
        out.push('.');
        for i in 0..decimals {
            let j = dp as i64 + i as i64;
            let c = if j < 0 {
                '0'
            } else {
                db.get(j as usize).map(|&b| b as char).unwrap_or('0')
            };
            out.push(c);
        }
    }
    out
}

/// Go's `strconv.FormatFloat(v, 'g', prec, 64)` (`prec` None = shortest, i.e. `%v`).
pub fn format_g(v: f64, prec: Option<usize>) -> String {
    if let Some(s) = special(v) {
        return s;
    }
    let neg = v.is_sign_negative() && v != 0.0;
    let prec = prec.map(|p| p.max(1));
    let (d, dp) = digits(v, prec);
    let nd = d.len() as i32;
    let shortest = prec.is_none();
    let mut p = prec.map(|p| p as i32).unwrap_or(nd);
    let mut eprec = p;
    if eprec > nd && nd >= dp {
        eprec = nd;
    }
    if shortest {
        eprec = 6;
    }
    let exp = dp - 1;
    if exp < -4 || exp >= eprec {
        if p > nd {
            p = nd;
        }
        return fmt_e(neg, &d, dp, (p - 1).max(0) as usize);
    }
    if p > dp {
        p = nd;
    }
    fmt_f(neg, &d, dp, (p - dp).max(0) as usize)
}

/// Go's `%v` of a float64.
pub fn format_v(v: f64) -> String {
    format_g(v, None)
}

/// Go's `strconv.FormatFloat(v, 'e', -1, 64)`: the alerts API's `value`.
pub fn format_e_shortest(v: f64) -> String {
    if let Some(s) = special(v) {
        return s;
    }
    let (d, dp) = digits(v, None);
    fmt_e(v.is_sign_negative() && v != 0.0, &d, dp, d.len() - 1)
}

/// Go's `strconv.FormatFloat(v, 'e', prec, 64)` (`%.Ne`).
pub fn format_e(v: f64, prec: usize) -> String {
    if let Some(s) = special(v) {
        return s;
    }
    let (d, dp) = digits(v, Some(prec + 1));
    fmt_e(v.is_sign_negative() && v != 0.0, &d, dp, prec)
}

/// Go's `strconv.FormatFloat(v, 'f', prec, 64)` (`%.Nf`).
pub fn format_f(v: f64, prec: usize) -> String {
    if let Some(s) = special(v) {
        return s;
    }
    let s = format!("{:.*}", prec, v);
    if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') {
        return s[1..].to_string();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_go() {
        // Expected strings are Go 1.21's fmt output.
        assert_eq!(format_v(0.5), "0.5");
        assert_eq!(format_v(100000.0), "100000");
        assert_eq!(format_v(1e6), "1e+06");
        assert_eq!(format_v(1234567.0), "1.234567e+06");
        assert_eq!(format_v(0.0001), "0.0001");
        assert_eq!(format_v(0.00001), "1e-05");
        assert_eq!(format_v(-2.0), "-2");
        assert_eq!(format_v(0.0), "0");
        assert_eq!(format_v(f64::NAN), "NaN");
        assert_eq!(format_v(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_g(1234.5678, Some(4)), "1235");
        assert_eq!(format_g(12345.0, Some(4)), "1.234e+04");
        assert_eq!(format_g(1.5, Some(4)), "1.5");
        assert_eq!(format_g(100.0, Some(4)), "100");
        assert_eq!(format_g(1e6, Some(4)), "1e+06");
        assert_eq!(format_g(0.000123, Some(4)), "0.000123");
        assert_eq!(format_e_shortest(1.0), "1e+00");
        assert_eq!(format_e_shortest(0.25), "2.5e-01");
        assert_eq!(format_e_shortest(1234.0), "1.234e+03");
        assert_eq!(format_e_shortest(0.0), "0e+00");
        assert_eq!(format_f(2.3456, 2), "2.35");
        assert_eq!(format_e(1234.0, 2), "1.23e+03");
    }
}
