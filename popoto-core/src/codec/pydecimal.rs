//! `PyDecimal`: a decimal exactly as Python's `decimal.Decimal` holds it (sign, coefficient,
//! exponent), for byte-identical interop where `rust_decimal` cannot represent the value
//! (positive exponents such as `1E+2`, more than 28 digits, infinities).

use std::fmt;
use std::str::FromStr;

use super::msgpack::{read_tagged_str, write_str, write_tag_head, Tag};
use super::{KeySegment, Score, Value};
use crate::error::{DecodeError, EncodeError};

/// A decimal number with Python `Decimal` semantics for text: `str()` keeps trailing zeros and
/// the exponent (`12.3400`, `1E+2`, `0E-7`), so values round-trip byte for byte.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PyDecimal {
    negative: bool,
    kind: Kind,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Finite { digits: String, exponent: i64 },
    Infinity,
    NaN,
}

impl PyDecimal {
    /// The coefficient digits and exponent of a finite value (`12.34` is `("1234", -2)`).
    pub fn parts(&self) -> Option<(bool, &str, i64)> {
        match &self.kind {
            Kind::Finite { digits, exponent } => Some((self.negative, digits, *exponent)),
            _ => None,
        }
    }

    /// `float(Decimal)`: the correctly rounded double (NaN for NaN).
    pub fn to_f64(&self) -> f64 {
        self.to_string().parse().unwrap_or(f64::NAN)
    }
}

impl FromStr for PyDecimal {
    type Err = DecodeError;

    /// Python's `Decimal(str)` syntax: `[+-]digits[.digits][e[+-]digits]`, `Infinity`, `NaN`.
    fn from_str(s: &str) -> Result<Self, DecodeError> {
        let bad = || DecodeError::new(format!("invalid decimal {s:?}"));
        let t = s.trim();
        let (negative, body) = match t.as_bytes().first() {
            Some(b'-') => (true, &t[1..]),
            Some(b'+') => (false, &t[1..]),
            _ => (false, t),
        };
        let lower = body.to_ascii_lowercase();
        if lower == "inf" || lower == "infinity" {
            return Ok(PyDecimal {
                negative,
                kind: Kind::Infinity,
            });
        }
        if lower == "nan" {
            return Ok(PyDecimal {
                negative,
                kind: Kind::NaN,
            });
        }
        let (mantissa, exp) = match body.find(['e', 'E']) {
            Some(i) => (&body[..i], body[i + 1..].parse::<i64>().map_err(|_| bad())?),
            None => (body, 0),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        if (int.is_empty() && frac.is_empty())
            || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let all: String = int.chars().chain(frac.chars()).collect();
        let trimmed = all.trim_start_matches('0');
        let digits = if trimmed.is_empty() {
            "0".to_owned()
        } else {
            trimmed.to_owned()
        };
        let exponent = exp
            .checked_sub(i64::try_from(frac.len()).map_err(|_| bad())?)
            .ok_or_else(bad)?;
        Ok(PyDecimal {
            negative,
            kind: Kind::Finite { digits, exponent },
        })
    }
}

impl fmt::Display for PyDecimal {
    /// Python's `str(Decimal)` (the General Decimal Arithmetic to-scientific-string).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.negative {
            f.write_str("-")?;
        }
        let (digits, exponent) = match &self.kind {
            Kind::Infinity => return f.write_str("Infinity"),
            Kind::NaN => return f.write_str("NaN"),
            Kind::Finite { digits, exponent } => (digits.as_str(), *exponent),
        };
        let len = digits.len() as i64;
        let adjusted = exponent + len - 1;
        if exponent <= 0 && adjusted >= -6 {
            if exponent == 0 {
                return f.write_str(digits);
            }
            let point = len + exponent;
            if point > 0 {
                let (a, b) = digits.split_at(point as usize);
                write!(f, "{a}.{b}")
            } else {
                write!(f, "0.{}{digits}", "0".repeat((-point) as usize))
            }
        } else {
            let (first, rest) = digits.split_at(1);
            f.write_str(first)?;
            if !rest.is_empty() {
                write!(f, ".{rest}")?;
            }
            write!(
                f,
                "E{}{}",
                if adjusted >= 0 { "+" } else { "-" },
                adjusted.abs()
            )
        }
    }
}

impl From<rust_decimal::Decimal> for PyDecimal {
    fn from(d: rust_decimal::Decimal) -> Self {
        let mut s = String::new();
        super::decimal_str(&d, &mut s);
        s.parse().unwrap_or(PyDecimal {
            negative: false,
            kind: Kind::NaN,
        })
    }
}

impl TryFrom<&PyDecimal> for rust_decimal::Decimal {
    type Error = DecodeError;

    /// Exact when the value fits `rust_decimal` (positive exponents are expanded).
    fn try_from(d: &PyDecimal) -> Result<Self, DecodeError> {
        super::parse_decimal(&d.to_string())
    }
}

impl Value for PyDecimal {
    /// `{"__Decimal__": true, "as_encodable": str(value)}`.
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        write_tag_head(out, Tag::Decimal);
        write_str(out, &self.to_string())
    }

    /// Any `Decimal` text popoto wrote.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        read_tagged_str(bytes, Tag::Decimal)?.parse()
    }
}

impl KeySegment for PyDecimal {
    /// `str(Decimal)`.
    fn render(&self, out: &mut String) {
        use fmt::Write;
        let _ = write!(out, "{self}");
    }
}

impl Score for PyDecimal {
    /// `float(Decimal)`.
    fn score(&self) -> f64 {
        self.to_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn str_matches_python() {
        // (input, Python str(Decimal(input)))
        let cases = [
            ("12.3400", "12.3400"),
            ("1E+2", "1E+2"),
            ("100", "100"),
            ("0.0000001", "1E-7"),
            ("0.000001", "0.000001"),
            ("0E-7", "0E-7"),
            ("-0", "-0"),
            ("-0.00", "-0.00"),
            ("1.5e3", "1.5E+3"),
            (
                "123456789012345678901234567890.5",
                "123456789012345678901234567890.5",
            ),
            ("0.10", "0.10"),
            ("-12e-3", "-0.012"),
            ("Infinity", "Infinity"),
            ("-inf", "-Infinity"),
            ("NaN", "NaN"),
            ("007", "7"),
            (".5", "0.5"),
            ("5.", "5"),
        ];
        for (input, want) in cases {
            let d: PyDecimal = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(d.to_string(), want, "{input}");
        }
        for bad in ["", ".", "1e", "x", "1.2.3", "--1", "1e+"] {
            assert!(bad.parse::<PyDecimal>().is_err(), "{bad}");
        }
    }

    #[test]
    fn encodes_like_popoto_and_scores_like_float() {
        let d: PyDecimal = "1E+2".parse().unwrap_or_else(|e| panic!("{e}"));
        let mut out = Vec::new();
        d.encode(&mut out).unwrap_or_else(|e| panic!("{e}"));
        let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "82ab5f5f446563696d616c5f5fc3ac61735f656e636f6461626c65a431452b32"
        );
        assert_eq!(PyDecimal::decode(&out).ok(), Some(d.clone()));
        assert_eq!(d.score(), 100.0);
        let r: rust_decimal::Decimal = (&d).try_into().unwrap_or_default();
        assert_eq!(r.to_string(), "100");
        assert_eq!(
            PyDecimal::from(rust_decimal::Decimal::new(123400, 4)).to_string(),
            "12.3400"
        );
    }
}
