//! [`Value`] implementations: msgpack bytes as msgpack-python writes them for popoto, and
//! tolerant decoding of what popoto (or its Lua scripts) may have stored.

use std::collections::{BTreeSet, HashSet};
use std::hash::{BuildHasher, Hash};

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::datetime::{self as dt, check_year};
use super::msgpack::{
    read_tagged, read_tagged_str, write_array_len, write_str, write_str_bytes, write_tag_head,
    Number, Reader, Tag,
};
use super::pyfmt::{decimal_str_buf, parse_decimal, StackBuf};
use super::{decode_serde, encode_serde, Value};
use crate::error::{DecodeError, EncodeError};

/// Reads exactly one number from `bytes`.
#[inline]
fn read_only_number(bytes: &[u8]) -> Result<Number, DecodeError> {
    let mut r = Reader::new(bytes);
    let n = r.read_number()?;
    r.finish()?;
    Ok(n)
}

macro_rules! int_value {
    ($($t:ty => $write:ident as $wide:ty),* $(,)?) => {$(
        impl Value for $t {
            /// Smallest msgpack int: the unsigned family for values >= 0, as msgpack-python.
            #[inline]
            fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
                rmp::encode::$write(out, *self as $wide).map_err(EncodeError::new)?;
                Ok(())
            }

            /// Any msgpack int that fits the type; floats and out-of-range ints are errors.
            #[inline]
            fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
                let n = read_only_number(bytes)?;
                let converted = match n {
                    Number::Uint(v) => <$t>::try_from(v).ok(),
                    Number::Int(v) => <$t>::try_from(v).ok(),
                    Number::F32(_) | Number::F64(_) => {
                        return Err(DecodeError::new(concat!(
                            "expected an int for ", stringify!($t), ", found msgpack float"
                        )))
                    }
                };
                converted.ok_or_else(|| {
                    DecodeError::new(format_args!(
                        "stored int {n} out of range for {}",
                        stringify!($t)
                    ))
                })
            }
        }
    )*};
}

int_value!(
    i8 => write_sint as i64,
    i16 => write_sint as i64,
    i32 => write_sint as i64,
    i64 => write_sint as i64,
    isize => write_sint as i64,
    u8 => write_uint as u64,
    u16 => write_uint as u64,
    u32 => write_uint as u64,
    u64 => write_uint as u64,
    usize => write_uint as u64,
);

/// Reads any msgpack number as a double (ints converted, float32 widened).
#[inline]
fn read_f64(bytes: &[u8]) -> Result<f64, DecodeError> {
    Ok(match read_only_number(bytes)? {
        Number::Uint(v) => v as f64,
        Number::Int(v) => v as f64,
        Number::F32(v) => f64::from(v),
        Number::F64(v) => v,
    })
}

impl Value for f64 {
    /// Always float64 (`0xcb`), as Python.
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        rmp::encode::write_f64(out, *self).map_err(EncodeError::new)
    }

    /// float64, float32 (Lua `cmsgpack`) or any int.
    #[inline]
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        read_f64(bytes)
    }
}

impl Value for f32 {
    /// Widened to float64 (`0xcb`): Python floats are doubles and popoto never writes float32.
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        rmp::encode::write_f64(out, f64::from(*self)).map_err(EncodeError::new)
    }

    /// float64 (rounded to nearest), float32 or any int; a finite double beyond `f32` range is
    /// an error.
    #[inline]
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let v = read_f64(bytes)?;
        let narrowed = v as f32;
        if narrowed.is_infinite() && v.is_finite() {
            return Err(DecodeError::new(format_args!(
                "stored float {v} overflows f32"
            )));
        }
        Ok(narrowed)
    }
}

impl Value for bool {
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.push(if *self { 0xc3 } else { 0xc2 });
        Ok(())
    }

    #[inline]
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let v = r.read_bool()?;
        r.finish()?;
        Ok(v)
    }
}

impl Value for String {
    /// msgpack str family (never bin).
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        write_str(out, self)
    }

    /// A msgpack str with valid UTF-8.
    #[inline]
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let s = r.read_str()?;
        r.finish()?;
        Ok(s.to_owned())
    }
}

impl<T: Value> Value for Option<T> {
    /// `None` is nil (`0xc0`).
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match self {
            None => {
                out.push(0xc0);
                Ok(())
            }
            Some(v) => v.encode(out),
        }
    }

    #[inline]
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes == [0xc0] {
            Ok(None)
        } else {
            T::decode(bytes).map(Some)
        }
    }
}

// ------------------------------------------------------------------------------------------
// Tagged string payloads

/// Writes a tagged value whose payload is the given ASCII text.
#[inline]
fn write_tagged_text(out: &mut Vec<u8>, tag: Tag, text: &[u8]) -> Result<(), EncodeError> {
    write_tag_head(out, tag);
    write_str_bytes(out, text)
}

impl Value for Decimal {
    /// `{"__Decimal__": true, "as_encodable": str(value)}`; the scale is kept (`12.3400`).
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        write_tagged_text(out, Tag::Decimal, decimal_str_buf(self).as_bytes())
    }

    /// Any finite `Decimal` text, exponent forms included (see [`parse_decimal`]); also a
    /// msgpack int, the same number (an `IntField` that became a `DecimalField`).
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        match read_only_number(bytes) {
            Ok(Number::Uint(v)) => return Ok(Decimal::from(v)),
            Ok(Number::Int(v)) => return Ok(Decimal::from(v)),
            _ => {}
        }
        parse_decimal(read_tagged_str(bytes, Tag::Decimal)?)
    }
}

impl Value for NaiveDateTime {
    /// `{"__datetime__": true, "as_encodable": isoformat()}` of a naive datetime
    /// (`2024-01-15T10:30:00[.ffffff]`). Nanoseconds are truncated to microseconds; years
    /// outside 1..=9999 are an error.
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        check_year(self.year())?;
        write_tagged_text(out, Tag::Datetime, dt::isoformat(self, None).as_bytes())
    }

    /// A naive payload as is; an aware one (or the legacy form, which is UTC) as its UTC wall
    /// time.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (naive, off) = dt::parse_datetime(read_tagged_str(bytes, Tag::Datetime)?)?;
        match off {
            None => Ok(naive),
            Some(o) => dt::to_utc(naive, o),
        }
    }
}

impl Value for DateTime<Utc> {
    /// `isoformat()` of an aware UTC datetime: offset `+00:00` (never `Z`). Nanoseconds are
    /// truncated to microseconds; years outside 1..=9999 are an error.
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let naive = self.naive_utc();
        check_year(naive.year())?;
        write_tagged_text(
            out,
            Tag::Datetime,
            dt::isoformat(&naive, Some(0)).as_bytes(),
        )
    }

    /// Any stored datetime; a naive payload is taken as UTC.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        NaiveDateTime::decode(bytes).map(|n| n.and_utc())
    }
}

impl Value for DateTime<FixedOffset> {
    /// `isoformat()` with the value's own offset (`2024-01-15T17:30:00+07:00`). Nanoseconds are
    /// truncated to microseconds; years outside 1..=9999 (local time) are an error.
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let local = self.naive_local();
        check_year(local.year())?;
        let off = self.offset().local_minus_utc();
        write_tagged_text(
            out,
            Tag::Datetime,
            dt::isoformat(&local, Some(off)).as_bytes(),
        )
    }

    /// Any stored datetime, keeping its offset; a naive payload gets `+00:00`.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (naive, off) = dt::parse_datetime(read_tagged_str(bytes, Tag::Datetime)?)?;
        let off = off.unwrap_or(0);
        let tz = FixedOffset::east_opt(off)
            .ok_or_else(|| DecodeError::new(format_args!("invalid UTC offset {off}s")))?;
        naive
            .and_local_timezone(tz)
            .single()
            .ok_or_else(|| DecodeError::new("datetime out of range for its offset"))
    }
}

impl Value for NaiveDate {
    /// `{"__date__": true, "as_encodable": "%Y%m%d"}` (`20240229`); years outside 1..=9999
    /// are an error.
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        check_year(self.year())?;
        let mut buf = StackBuf::<{ dt::DT_CAP }>::new();
        dt::push_compact_date(&mut buf, self);
        write_tagged_text(out, Tag::Date, buf.as_bytes())
    }

    /// `%Y%m%d` or `YYYY-MM-DD`.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        dt::parse_date(read_tagged_str(bytes, Tag::Date)?)
    }
}

impl Value for NaiveTime {
    /// `{"__time__": true, "as_encodable": isoformat()}` (`08:05:03[.250000]`). Nanoseconds
    /// are truncated to microseconds; a leap second becomes `:59.999999`.
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let mut buf = StackBuf::<{ dt::DT_CAP }>::new();
        dt::push_iso_time(&mut buf, self);
        write_tagged_text(out, Tag::Time, buf.as_bytes())
    }

    /// `isoformat()` or legacy `%H:%M:%S.%f`; a UTC offset suffix is ignored.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        dt::parse_time(read_tagged_str(bytes, Tag::Time)?)
    }
}

// ------------------------------------------------------------------------------------------
// Sets and tuples (payload encoded with rmp-serde)

impl<T: Serialize + DeserializeOwned + Ord> Value for BTreeSet<T> {
    /// `{"__set__": true, "as_encodable": [...]}`, elements in the set's order.
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        write_tag_head(out, Tag::Set);
        write_array_len(out, self.len())?;
        for v in self {
            encode_serde(v, out)?;
        }
        Ok(())
    }

    /// The payload list; duplicates collapse.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let items: Vec<T> = decode_list(bytes, Tag::Set)?;
        Ok(items.into_iter().collect())
    }
}

impl<T, S> Value for HashSet<T, S>
where
    T: Serialize + DeserializeOwned + Eq + Hash + Ord,
    S: BuildHasher + Default,
{
    /// `{"__set__": true, "as_encodable": [...]}`. Python's set order is arbitrary; to keep the
    /// bytes deterministic the elements are written in ascending order, so a `HashSet` and a
    /// `BTreeSet` with the same elements encode identically.
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let mut items: Vec<&T> = self.iter().collect();
        items.sort_unstable();
        write_tag_head(out, Tag::Set);
        write_array_len(out, items.len())?;
        for v in items {
            encode_serde(v, out)?;
        }
        Ok(())
    }

    /// The payload list; duplicates collapse.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let items: Vec<T> = decode_list(bytes, Tag::Set)?;
        Ok(items.into_iter().collect())
    }
}

/// Decodes the list payload of a tagged set/tuple.
fn decode_list<T: DeserializeOwned>(bytes: &[u8], tag: Tag) -> Result<Vec<T>, DecodeError> {
    let payload = read_tagged(bytes, tag)?;
    Reader::new(payload)
        .read_array_len()
        .map_err(|e| DecodeError::new(format_args!("payload of {}: {e}", tag.key())))?;
    decode_serde(payload)
}

macro_rules! tuple_value {
    ($($n:literal => ($($name:ident . $idx:tt),+)),* $(,)?) => {$(
        impl<$($name: Serialize + DeserializeOwned),+> Value for ($($name,)+) {
            /// `{"__tuple__": true, "as_encodable": [...]}`; elements through rmp-serde.
            fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
                write_tag_head(out, Tag::Tuple);
                write_array_len(out, $n)?;
                $( encode_serde(&self.$idx, out)?; )+
                Ok(())
            }

            /// A payload list of exactly the tuple's length.
            fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
                let payload = read_tagged(bytes, Tag::Tuple)?;
                let len = Reader::new(payload).read_array_len().map_err(|e| {
                    DecodeError::new(format_args!("payload of __tuple__: {e}"))
                })?;
                if len != $n {
                    return Err(DecodeError::new(format_args!(
                        "stored tuple has {len} elements, expected {}", $n
                    )));
                }
                decode_serde(payload)
            }
        }
    )*};
}

tuple_value!(
    1 => (A.0),
    2 => (A.0, B.1),
    3 => (A.0, B.1, C.2),
    4 => (A.0, B.1, C.2, D.3),
    5 => (A.0, B.1, C.2, D.3, E.4),
    6 => (A.0, B.1, C.2, D.3, E.4, F.5),
);
