//! Attribute values and float bounds as label values.
//!
//! Non-string attributes become strings the way the Collector's pdata `AsString` does:
//! booleans and integers in decimal, doubles like JavaScript numbers (`1`, `0.5`,
//! `1e+21`), bytes in base64, arrays and maps as JSON. Histogram bounds and quantiles are
//! written like Prometheus' `FormatFloat(f, 'f', -1)`: shortest exact form, no exponent,
//! `+Inf`, `-Inf`, `NaN`.

use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue};

/// A bucket bound or quantile as a label value: `0.5`, `1`, `0.00001`, `+Inf`.
pub(crate) fn format_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".to_string()
    } else if f == f64::INFINITY {
        "+Inf".to_string()
    } else if f == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        // Rust's Display is the shortest exact form and never uses an exponent.
        format!("{f}")
    }
}

/// A double attribute as JavaScript (ES6) would print it.
fn format_attr_double(d: f64) -> String {
    if !d.is_finite() {
        return format_float(d);
    }
    let abs = d.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let s = format!("{d:e}");
        match s.split_once('e') {
            Some((mantissa, exp)) if !exp.starts_with('-') => format!("{mantissa}e+{exp}"),
            _ => s,
        }
    } else {
        format!("{d}")
    }
}

/// An attribute value as a label value; an absent value is the empty string.
pub(crate) fn any_value_to_string(v: Option<&AnyValue>) -> String {
    match v.and_then(|a| a.value.as_ref()) {
        None => String::new(),
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => format_attr_double(*d),
        Some(Value::BytesValue(b)) => base64(b),
        // An index into a string table that only OTLP profiles carry.
        Some(Value::StringValueStrindex(_)) => String::new(),
        Some(v @ (Value::ArrayValue(_) | Value::KvlistValue(_))) => to_json(v).to_string(),
    }
}

/// The raw JSON form of a value, for arrays and maps.
fn to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    let any = |a: &AnyValue| a.value.as_ref().map_or(J::Null, to_json);
    match v {
        Value::StringValue(s) => J::String(s.clone()),
        Value::BoolValue(b) => J::Bool(*b),
        Value::IntValue(i) => J::from(*i),
        Value::DoubleValue(d) => serde_json::Number::from_f64(*d).map_or(J::Null, J::Number),
        Value::BytesValue(b) => J::String(base64(b)),
        Value::StringValueStrindex(_) => J::Null,
        Value::ArrayValue(a) => J::Array(a.values.iter().map(any).collect()),
        Value::KvlistValue(kv) => {
            // Sorted keys, as Go's encoding/json writes maps, whatever serde_json's features.
            let sorted: std::collections::BTreeMap<String, J> = kv
                .values
                .iter()
                .map(|e| (e.key.clone(), e.value.as_ref().map_or(J::Null, any)))
                .collect();
            J::Object(sorted.into_iter().collect())
        }
    }
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let byte = |i: usize| chunk.get(i).copied().unwrap_or(0);
        let b = [byte(0), byte(1), byte(2)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValue, KeyValueList};

    fn any(v: Value) -> AnyValue {
        AnyValue { value: Some(v) }
    }

    #[test]
    fn floats_for_le_and_quantile() {
        assert_eq!(format_float(0.5), "0.5");
        assert_eq!(format_float(1.0), "1");
        assert_eq!(format_float(1e-5), "0.00001");
        assert_eq!(format_float(2.5e10), "25000000000");
        assert_eq!(format_float(f64::INFINITY), "+Inf");
        assert_eq!(format_float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_float(f64::NAN), "NaN");
        assert_eq!(format_float(0.1 + 0.2), "0.30000000000000004");
    }

    #[test]
    fn scalar_attribute_values() {
        let s = |v: Value| any_value_to_string(Some(&any(v)));
        assert_eq!(s(Value::StringValue("x y".into())), "x y");
        assert_eq!(s(Value::BoolValue(true)), "true");
        assert_eq!(s(Value::IntValue(-42)), "-42");
        assert_eq!(s(Value::DoubleValue(1.0)), "1");
        assert_eq!(s(Value::DoubleValue(0.25)), "0.25");
        assert_eq!(s(Value::DoubleValue(1e21)), "1e+21");
        assert_eq!(s(Value::DoubleValue(1.5e-7)), "1.5e-7");
        assert_eq!(s(Value::DoubleValue(f64::INFINITY)), "+Inf");
        assert_eq!(s(Value::BytesValue(b"hello".to_vec())), "aGVsbG8=");
        assert_eq!(any_value_to_string(None), "");
        assert_eq!(any_value_to_string(Some(&AnyValue { value: None })), "");
    }

    #[test]
    fn composite_attribute_values_are_json() {
        let arr = Value::ArrayValue(ArrayValue {
            values: vec![any(Value::StringValue("a".into())), any(Value::IntValue(2))],
        });
        assert_eq!(any_value_to_string(Some(&any(arr))), r#"["a",2]"#);
        let map = Value::KvlistValue(KeyValueList {
            values: vec![
                KeyValue {
                    key: "z".into(),
                    value: Some(any(Value::BoolValue(false))),
                    key_strindex: 0,
                },
                KeyValue {
                    key: "a".into(),
                    value: None,
                    key_strindex: 0,
                },
            ],
        });
        assert_eq!(
            any_value_to_string(Some(&any(map))),
            r#"{"a":null,"z":false}"#
        );
    }

    #[test]
    fn base64_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(&[0xff, 0xfe, 0xfd, 0x00]), "//79AA==");
    }
}
