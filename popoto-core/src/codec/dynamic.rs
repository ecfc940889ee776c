//! [`Dynamic`]: any msgpack value, for fields no Rust type describes.

use std::fmt;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{decode_serde, encode_serde, Value};
use crate::error::{DecodeError, EncodeError};

/// Any msgpack value: a hash field read without knowing its type (a field popoto wrote that the
/// Rust struct does not declare, a field whose type changed, a model read without its struct:
/// `Session::get_fields`).
///
/// Popoto's tagged values are what they are in msgpack: a datetime is a [`Dynamic::Map`] of
/// `"__datetime__": true` and `"as_encodable": "<isoformat>"`. Encoding writes the forms
/// msgpack-python writes (the smallest int, float64 unless the value was read as float32, str
/// for text, bin for bytes), so a value popoto wrote is written back byte for byte. Serde
/// (de)serializes it as the plain value (JSON: `null`, booleans, numbers, strings, arrays,
/// objects).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Dynamic {
    /// `nil` (Python `None`).
    #[default]
    Nil,
    /// A boolean.
    Bool(bool),
    /// A negative integer (or one read from a signed form).
    Int(i64),
    /// A non-negative integer.
    UInt(u64),
    /// A float32.
    F32(f32),
    /// A float64 (Python's floats).
    Float(f64),
    /// A UTF-8 string (msgpack str).
    Str(String),
    /// Bytes (msgpack bin).
    Bin(Vec<u8>),
    /// An array (Python list or tuple).
    Array(Vec<Dynamic>),
    /// A map, in stored order (Python dict).
    Map(Vec<(Dynamic, Dynamic)>),
}

impl Dynamic {
    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Dynamic::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is one that fits an `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Dynamic::Int(v) => Some(v),
            Dynamic::UInt(v) => i64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The number as a float, if this is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Dynamic::Int(v) => Some(v as f64),
            Dynamic::UInt(v) => Some(v as f64),
            Dynamic::F32(v) => Some(f64::from(v)),
            Dynamic::Float(v) => Some(v),
            _ => None,
        }
    }

    /// The value of `key` in a map whose keys are strings (popoto's dicts and tagged values).
    pub fn get(&self, key: &str) -> Option<&Dynamic> {
        match self {
            Dynamic::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

impl Value for Dynamic {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        encode_serde(self, out)
    }

    /// Any msgpack value (nesting limited as every serde decoding is); an extension type is
    /// refused.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode_serde(bytes)
    }
}

impl Serialize for Dynamic {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Dynamic::Nil => s.serialize_unit(),
            Dynamic::Bool(v) => s.serialize_bool(*v),
            Dynamic::Int(v) => s.serialize_i64(*v),
            Dynamic::UInt(v) => s.serialize_u64(*v),
            Dynamic::F32(v) => s.serialize_f32(*v),
            Dynamic::Float(v) => s.serialize_f64(*v),
            Dynamic::Str(v) => s.serialize_str(v),
            Dynamic::Bin(v) => s.serialize_bytes(v),
            Dynamic::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Dynamic::Map(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

struct DynamicVisitor;

impl<'de> Visitor<'de> for DynamicVisitor {
    type Value = Dynamic;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any msgpack value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Dynamic, E> {
        Ok(Dynamic::Nil)
    }

    fn visit_none<E: de::Error>(self) -> Result<Dynamic, E> {
        Ok(Dynamic::Nil)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Dynamic, D::Error> {
        Dynamic::deserialize(d)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Dynamic, E> {
        Ok(Dynamic::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dynamic, E> {
        Ok(match u64::try_from(v) {
            Ok(u) => Dynamic::UInt(u),
            Err(_) => Dynamic::Int(v),
        })
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dynamic, E> {
        Ok(Dynamic::UInt(v))
    }

    fn visit_f32<E: de::Error>(self, v: f32) -> Result<Dynamic, E> {
        Ok(Dynamic::F32(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Dynamic, E> {
        Ok(Dynamic::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Dynamic, E> {
        Ok(Dynamic::Str(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Dynamic, E> {
        Ok(Dynamic::Str(v))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Dynamic, E> {
        Ok(Dynamic::Bin(v.to_vec()))
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Dynamic, E> {
        Ok(Dynamic::Bin(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Dynamic, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Dynamic::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Dynamic, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(4096));
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Dynamic::Map(entries))
    }
}

impl<'de> Deserialize<'de> for Dynamic {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Dynamic, D::Error> {
        d.deserialize_any(DynamicVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes msgpack-python writes, each read and written back unchanged.
    #[test]
    fn msgpack_python_bytes_round_trip() {
        let cases: &[&[u8]] = &[
            &[0xc0],
            &[0xc3],
            &[0x05],
            &[0xcc, 0xc8],
            &[0xcd, 0x01, 0x00],
            &[0xff],
            &[0xd0, 0x80],
            &[0xd1, 0xfe, 0x00],
            &[0xcb, 0x3f, 0xe0, 0, 0, 0, 0, 0, 0],
            &[0xca, 0x3f, 0x00, 0, 0],
            &[0xa2, b'h', b'i'],
            &[0xc4, 0x02, 0x00, 0xff],
            &[0x92, 0x01, 0xa1, b'x'],
            // {"__datetime__": true, "as_encodable": "2024-01-15T10:30:00"}
            b"\x82\xac__datetime__\xc3\xacas_encodable\xb32024-01-15T10:30:00",
        ];
        for bytes in cases {
            let v = Dynamic::decode(bytes).unwrap_or_else(|e| panic!("{bytes:x?}: {e}"));
            let mut out = Vec::new();
            v.encode(&mut out).unwrap_or_else(|e| panic!("{v:?}: {e}"));
            assert_eq!(&out, bytes, "{v:?}");
        }
        let dt =
            Dynamic::decode(b"\x82\xac__datetime__\xc3\xacas_encodable\xb32024-01-15T10:30:00");
        assert_eq!(
            dt.ok()
                .as_ref()
                .and_then(|d| d.get("as_encodable"))
                .and_then(Dynamic::as_str),
            Some("2024-01-15T10:30:00")
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [&[][..], &[0xc1], &[0x92, 0x01], &[0xd9]] {
            assert!(Dynamic::decode(bytes).is_err(), "{bytes:x?}");
        }
    }
}
