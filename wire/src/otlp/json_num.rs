//! Number fields of OTLP/JSON, read as the protobuf JSON mapping allows: 64-bit
//! integers as JSON numbers or decimal strings, doubles also as `"NaN"`, `"Infinity"`,
//! `"-Infinity"` or numbers in strings, enums as numbers or names. Each error names what
//! was expected, and serde_json adds the line and column.

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;

/// A uint64/fixed64 field: a JSON number or a decimal string.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct U64(pub(crate) u64);

/// An int64/sfixed64 field: a JSON number or a decimal string.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct I64(pub(crate) i64);

/// A double field: a JSON number, a number in a string, or `"NaN"`, `"Infinity"`,
/// `"-Infinity"`.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct F64(pub(crate) f64);

/// An aggregation temporality: its number, or its enum name.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct Temporality(pub(crate) i32);

struct NumberVisitor<T>(&'static str, std::marker::PhantomData<T>);

/// The conversions a number field accepts, from each JSON shape.
trait FromJsonNumber: Sized {
    fn from_u64(v: u64) -> Option<Self>;
    fn from_i64(v: i64) -> Option<Self>;
    fn from_f64(v: f64) -> Option<Self>;
    fn from_str(v: &str) -> Option<Self>;
}

impl<'de, T: FromJsonNumber> Visitor<'de> for NumberVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.0)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        T::from_u64(v).ok_or_else(|| E::invalid_value(de::Unexpected::Unsigned(v), &self))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        T::from_i64(v).ok_or_else(|| E::invalid_value(de::Unexpected::Signed(v), &self))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        T::from_f64(v).ok_or_else(|| E::invalid_value(de::Unexpected::Float(v), &self))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        T::from_str(v).ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
    }
}

macro_rules! number_field {
    ($ty:ident, $expecting:literal) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(NumberVisitor($expecting, std::marker::PhantomData))
            }
        }
    };
}

number_field!(
    U64,
    "an unsigned 64-bit integer (a JSON number or a decimal string)"
);
number_field!(
    I64,
    "a signed 64-bit integer (a JSON number or a decimal string)"
);
number_field!(
    F64,
    "a double (a JSON number, a number in a string, \"NaN\", \"Infinity\" or \"-Infinity\")"
);
number_field!(
    Temporality,
    "an aggregation temporality (0, 1, 2 or its enum name)"
);

/// A float that holds an exact integer, as some encoders write `5.0` for an int field.
fn exact_int(v: f64) -> Option<i128> {
    (v.is_finite() && v.fract() == 0.0).then_some(v as i128)
}

impl FromJsonNumber for U64 {
    fn from_u64(v: u64) -> Option<Self> {
        Some(U64(v))
    }
    fn from_i64(v: i64) -> Option<Self> {
        u64::try_from(v).ok().map(U64)
    }
    fn from_f64(v: f64) -> Option<Self> {
        exact_int(v).and_then(|i| u64::try_from(i).ok()).map(U64)
    }
    fn from_str(v: &str) -> Option<Self> {
        v.trim().parse().ok().map(U64)
    }
}

impl FromJsonNumber for I64 {
    fn from_u64(v: u64) -> Option<Self> {
        i64::try_from(v).ok().map(I64)
    }
    fn from_i64(v: i64) -> Option<Self> {
        Some(I64(v))
    }
    fn from_f64(v: f64) -> Option<Self> {
        exact_int(v).and_then(|i| i64::try_from(i).ok()).map(I64)
    }
    fn from_str(v: &str) -> Option<Self> {
        v.trim().parse().ok().map(I64)
    }
}

impl FromJsonNumber for F64 {
    fn from_u64(v: u64) -> Option<Self> {
        Some(F64(v as f64))
    }
    fn from_i64(v: i64) -> Option<Self> {
        Some(F64(v as f64))
    }
    fn from_f64(v: f64) -> Option<Self> {
        Some(F64(v))
    }
    fn from_str(v: &str) -> Option<Self> {
        match v.trim() {
            "NaN" => Some(F64(f64::NAN)),
            "Infinity" => Some(F64(f64::INFINITY)),
            "-Infinity" => Some(F64(f64::NEG_INFINITY)),
            // Rust would also read "inf" and "nan"; the JSON mapping allows only the above.
            s if s
                .bytes()
                .any(|b| b.is_ascii_alphabetic() && !matches!(b, b'e' | b'E')) =>
            {
                None
            }
            s => s.parse().ok().map(F64),
        }
    }
}

impl FromJsonNumber for Temporality {
    fn from_u64(v: u64) -> Option<Self> {
        i32::try_from(v).ok().map(Temporality)
    }
    fn from_i64(v: i64) -> Option<Self> {
        i32::try_from(v).ok().map(Temporality)
    }
    fn from_f64(v: f64) -> Option<Self> {
        exact_int(v)
            .and_then(|i| i32::try_from(i).ok())
            .map(Temporality)
    }
    fn from_str(v: &str) -> Option<Self> {
        match v {
            "AGGREGATION_TEMPORALITY_UNSPECIFIED" => Some(Temporality(0)),
            "AGGREGATION_TEMPORALITY_DELTA" => Some(Temporality(1)),
            "AGGREGATION_TEMPORALITY_CUMULATIVE" => Some(Temporality(2)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read<T: for<'de> Deserialize<'de>>(json: &str) -> Result<T, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn integers() {
        assert_eq!(read::<U64>("5"), Ok(U64(5)));
        assert_eq!(read::<U64>("\"18446744073709551615\""), Ok(U64(u64::MAX)));
        assert_eq!(read::<U64>("2.0"), Ok(U64(2)));
        assert!(read::<U64>("-1")
            .unwrap_err()
            .contains("unsigned 64-bit integer"));
        assert!(read::<U64>("1.5").is_err());
        assert_eq!(read::<I64>("\"-7\""), Ok(I64(-7)));
        assert!(read::<I64>("\"seven\"").is_err());
        assert!(read::<I64>("true").is_err());
    }

    #[test]
    fn doubles() {
        assert_eq!(read::<F64>("1.5"), Ok(F64(1.5)));
        assert_eq!(read::<F64>("\"1e3\""), Ok(F64(1000.0)));
        assert_eq!(read::<F64>("\"Infinity\""), Ok(F64(f64::INFINITY)));
        assert!(read::<F64>("\"NaN\"").is_ok_and(|f| f.0.is_nan()));
        assert!(read::<F64>("\"inf\"").is_err());
        assert!(read::<F64>("\"nan\"").is_err());
        assert!(read::<F64>("[]").is_err());
    }

    #[test]
    fn temporality() {
        assert_eq!(read::<Temporality>("2"), Ok(Temporality(2)));
        assert_eq!(
            read::<Temporality>("\"AGGREGATION_TEMPORALITY_DELTA\""),
            Ok(Temporality(1))
        );
        assert!(read::<Temporality>("\"DELTA\"").is_err());
    }
}
