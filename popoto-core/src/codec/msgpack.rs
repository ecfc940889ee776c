//! Low-level msgpack helpers: a bounds-checked reader over a byte slice, the tolerant number
//! reader, and Popoto's tagged-map framing (`{"__<tag>__": true, "as_encodable": payload}`).
//!
//! Nothing here allocates on the decode path, and nothing panics on malformed input: every
//! read is bounds-checked and nesting is limited by [`MAX_DEPTH`].

use rmp::Marker;

use crate::error::{DecodeError, EncodeError};

/// Deepest nesting [`Reader::skip_value`] follows before giving up (guards the stack).
pub(crate) const MAX_DEPTH: usize = 256;

/// The key holding the payload of a tagged value.
pub(crate) const AS_ENCODABLE: &str = "as_encodable";

/// Popoto's tagged ("custom") types, in the order its decoder tests their sentinel keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tag {
    /// `decimal.Decimal`, payload `str(value)`.
    Decimal,
    /// `tuple`, payload a list.
    Tuple,
    /// `set`, payload a list.
    Set,
    /// `datetime.datetime`, payload `isoformat()`.
    Datetime,
    /// `datetime.date`, payload `%Y%m%d`.
    Date,
    /// `datetime.time`, payload `isoformat()`.
    Time,
    /// pandas `DataFrame` (never produced here; recognised so it is reported as such).
    DataFrame,
}

impl Tag {
    /// Every tag, in the order popoto's `decode_custom_types` tries them.
    const ALL: [Tag; 7] = [
        Tag::Decimal,
        Tag::Tuple,
        Tag::Set,
        Tag::Datetime,
        Tag::Date,
        Tag::Time,
        Tag::DataFrame,
    ];

    /// The sentinel key, e.g. `__datetime__`.
    pub(crate) const fn key(self) -> &'static str {
        match self {
            Tag::Decimal => "__Decimal__",
            Tag::Tuple => "__tuple__",
            Tag::Set => "__set__",
            Tag::Datetime => "__datetime__",
            Tag::Date => "__date__",
            Tag::Time => "__time__",
            Tag::DataFrame => "__dataframe__",
        }
    }

    /// Bit of this tag in a presence mask.
    const fn bit(self) -> u8 {
        1 << (self as u8)
    }

    /// The tag whose sentinel key is `key`, if any.
    fn from_key(key: &str) -> Option<Tag> {
        Tag::ALL.into_iter().find(|t| t.key() == key)
    }
}

/// Writes the head of a tagged value: map of 2, sentinel key, `true`, `"as_encodable"`.
/// The caller appends the payload.
#[inline]
pub(crate) fn write_tag_head(out: &mut Vec<u8>, tag: Tag) {
    let key = tag.key().as_bytes();
    out.reserve(2 + key.len() + 2 + AS_ENCODABLE.len());
    out.push(0x82);
    // Every sentinel key is shorter than 32 bytes: fixstr.
    out.push(0xa0 | key.len() as u8);
    out.extend_from_slice(key);
    out.push(0xc3);
    out.push(0xa0 | AS_ENCODABLE.len() as u8);
    out.extend_from_slice(AS_ENCODABLE.as_bytes());
}

/// Writes a msgpack str (fixstr, str8, str16 or str32, the smallest that fits).
#[inline]
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) -> Result<(), EncodeError> {
    write_str_bytes(out, s.as_bytes())
}

/// Writes bytes known to be UTF-8 as a msgpack str.
#[inline]
pub(crate) fn write_str_bytes(out: &mut Vec<u8>, s: &[u8]) -> Result<(), EncodeError> {
    let len = u32::try_from(s.len())
        .map_err(|_| EncodeError::new("string longer than msgpack's 4 GiB limit"))?;
    rmp::encode::write_str_len(out, len).map_err(EncodeError::new)?;
    out.extend_from_slice(s);
    Ok(())
}

/// Writes a msgpack array header.
#[inline]
pub(crate) fn write_array_len(out: &mut Vec<u8>, len: usize) -> Result<(), EncodeError> {
    let len = u32::try_from(len)
        .map_err(|_| EncodeError::new("collection longer than msgpack's 2^32-1 limit"))?;
    rmp::encode::write_array_len(out, len).map_err(EncodeError::new)?;
    Ok(())
}

/// A msgpack number as stored, before conversion to the field type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Number {
    /// From the unsigned family (positive fixint, uint8..uint64).
    Uint(u64),
    /// From the signed family (negative fixint, int8..int64).
    Int(i64),
    /// float32 (`0xca`), as Redis' Lua `cmsgpack` writes exactly representable values.
    F32(f32),
    /// float64 (`0xcb`).
    F64(f64),
}

impl std::fmt::Display for Number {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Number::Uint(v) => write!(f, "{v}"),
            Number::Int(v) => write!(f, "{v}"),
            Number::F32(v) => write!(f, "{v}"),
            Number::F64(v) => write!(f, "{v}"),
        }
    }
}

/// Human name of a marker's msgpack type, for error messages.
pub(crate) fn marker_name(m: Marker) -> &'static str {
    match m {
        Marker::Null => "nil",
        Marker::True | Marker::False => "bool",
        Marker::FixPos(_)
        | Marker::FixNeg(_)
        | Marker::U8
        | Marker::U16
        | Marker::U32
        | Marker::U64
        | Marker::I8
        | Marker::I16
        | Marker::I32
        | Marker::I64 => "int",
        Marker::F32 | Marker::F64 => "float",
        Marker::FixStr(_) | Marker::Str8 | Marker::Str16 | Marker::Str32 => "str",
        Marker::Bin8 | Marker::Bin16 | Marker::Bin32 => "bin",
        Marker::FixArray(_) | Marker::Array16 | Marker::Array32 => "array",
        Marker::FixMap(_) | Marker::Map16 | Marker::Map32 => "map",
        Marker::FixExt1
        | Marker::FixExt2
        | Marker::FixExt4
        | Marker::FixExt8
        | Marker::FixExt16
        | Marker::Ext8
        | Marker::Ext16
        | Marker::Ext32 => "ext",
        Marker::Reserved => "reserved byte 0xc1",
    }
}

/// A bounds-checked msgpack reader over a byte slice.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

fn eof() -> DecodeError {
    DecodeError::new("truncated msgpack value")
}

impl<'a> Reader<'a> {
    /// A reader positioned at the start of `buf`.
    #[inline]
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    /// Errors unless every byte was consumed (msgpack-python's `unpackb` refuses extra data).
    #[inline]
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::new(format_args!(
                "{} unexpected byte(s) after the msgpack value",
                self.buf.len()
            )))
        }
    }

    /// The next marker, without consuming it.
    #[inline]
    pub(crate) fn peek_marker(&self) -> Result<Marker, DecodeError> {
        self.buf
            .first()
            .map(|&b| Marker::from_u8(b))
            .ok_or_else(|| DecodeError::new("empty value"))
    }

    #[inline]
    fn marker(&mut self) -> Result<Marker, DecodeError> {
        let m = self.peek_marker()?;
        self.buf = &self.buf[1..];
        Ok(m)
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(eof());
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    #[inline]
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    #[inline]
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    #[inline]
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    #[inline]
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// Reads a bool.
    #[inline]
    pub(crate) fn read_bool(&mut self) -> Result<bool, DecodeError> {
        match self.marker()? {
            Marker::True => Ok(true),
            Marker::False => Ok(false),
            m => Err(type_error("bool", m)),
        }
    }

    /// Reads any msgpack int or float.
    #[inline]
    pub(crate) fn read_number(&mut self) -> Result<Number, DecodeError> {
        Ok(match self.marker()? {
            Marker::FixPos(v) => Number::Uint(u64::from(v)),
            Marker::FixNeg(v) => Number::Int(i64::from(v)),
            Marker::U8 => Number::Uint(u64::from(self.u8()?)),
            Marker::U16 => Number::Uint(u64::from(self.u16()?)),
            Marker::U32 => Number::Uint(u64::from(self.u32()?)),
            Marker::U64 => Number::Uint(self.u64()?),
            Marker::I8 => Number::Int(i64::from(self.u8()? as i8)),
            Marker::I16 => Number::Int(i64::from(self.u16()? as i16)),
            Marker::I32 => Number::Int(i64::from(self.u32()? as i32)),
            Marker::I64 => Number::Int(self.u64()? as i64),
            Marker::F32 => Number::F32(f32::from_bits(self.u32()?)),
            Marker::F64 => Number::F64(f64::from_bits(self.u64()?)),
            m => return Err(type_error("number", m)),
        })
    }

    /// Reads a str (UTF-8 checked), borrowing from the input.
    #[inline]
    pub(crate) fn read_str(&mut self) -> Result<&'a str, DecodeError> {
        let len = match self.marker()? {
            Marker::FixStr(n) => usize::from(n),
            Marker::Str8 => usize::from(self.u8()?),
            Marker::Str16 => usize::from(self.u16()?),
            Marker::Str32 => self.u32()? as usize,
            m => return Err(type_error("str", m)),
        };
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes).map_err(|e| DecodeError::new(format_args!("invalid UTF-8: {e}")))
    }

    /// Reads an array header.
    #[inline]
    pub(crate) fn read_array_len(&mut self) -> Result<usize, DecodeError> {
        match self.marker()? {
            Marker::FixArray(n) => Ok(usize::from(n)),
            Marker::Array16 => Ok(usize::from(self.u16()?)),
            Marker::Array32 => Ok(self.u32()? as usize),
            m => Err(type_error("array", m)),
        }
    }

    /// Reads a map header.
    #[inline]
    pub(crate) fn read_map_len(&mut self) -> Result<usize, DecodeError> {
        match self.marker()? {
            Marker::FixMap(n) => Ok(usize::from(n)),
            Marker::Map16 => Ok(usize::from(self.u16()?)),
            Marker::Map32 => Ok(self.u32()? as usize),
            m => Err(type_error("map", m)),
        }
    }

    /// Skips one complete value and returns its bytes.
    pub(crate) fn skip_value(&mut self) -> Result<&'a [u8], DecodeError> {
        let start = self.buf;
        self.skip_inner(0)?;
        let used = start.len() - self.buf.len();
        Ok(&start[..used])
    }

    fn skip_inner(&mut self, depth: usize) -> Result<(), DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::new("msgpack value nested too deeply"));
        }
        let m = self.marker()?;
        let skip = match m {
            Marker::Null | Marker::True | Marker::False | Marker::FixPos(_) | Marker::FixNeg(_) => {
                0
            }
            Marker::U8 | Marker::I8 => 1,
            Marker::U16 | Marker::I16 => 2,
            Marker::U32 | Marker::I32 | Marker::F32 => 4,
            Marker::U64 | Marker::I64 | Marker::F64 => 8,
            Marker::FixStr(n) => usize::from(n),
            Marker::Str8 | Marker::Bin8 => usize::from(self.u8()?),
            Marker::Str16 | Marker::Bin16 => usize::from(self.u16()?),
            Marker::Str32 | Marker::Bin32 => self.u32()? as usize,
            Marker::FixExt1 => 2,
            Marker::FixExt2 => 3,
            Marker::FixExt4 => 5,
            Marker::FixExt8 => 9,
            Marker::FixExt16 => 17,
            Marker::Ext8 => usize::from(self.u8()?) + 1,
            Marker::Ext16 => usize::from(self.u16()?) + 1,
            Marker::Ext32 => (self.u32()? as usize).saturating_add(1),
            Marker::FixArray(_) | Marker::Array16 | Marker::Array32 => {
                let n = match m {
                    Marker::FixArray(n) => usize::from(n),
                    Marker::Array16 => usize::from(self.u16()?),
                    _ => self.u32()? as usize,
                };
                for _ in 0..n {
                    self.skip_inner(depth + 1)?;
                }
                0
            }
            Marker::FixMap(_) | Marker::Map16 | Marker::Map32 => {
                let n = match m {
                    Marker::FixMap(n) => usize::from(n),
                    Marker::Map16 => usize::from(self.u16()?),
                    _ => self.u32()? as usize,
                };
                for _ in 0..n {
                    self.skip_inner(depth + 1)?;
                    self.skip_inner(depth + 1)?;
                }
                0
            }
            Marker::Reserved => return Err(type_error("msgpack value", m)),
        };
        self.take(skip)?;
        Ok(())
    }
}

/// "expected X, found Y" for a marker.
pub(crate) fn type_error(expected: &str, found: Marker) -> DecodeError {
    DecodeError::new(format_args!(
        "expected {expected}, found msgpack {}",
        marker_name(found)
    ))
}

/// Finds the payload of a tagged value as popoto's decoder does, checking that its tag is `want`.
///
/// Accepts the keys in any order and extra entries (popoto only tests that `as_encodable` and a
/// sentinel key are present; the sentinel's value is not looked at). When several sentinels are
/// present the first in popoto's order wins. For a repeated key the last entry wins, as in a
/// Python dict. The whole input must be exactly one value. Returns the payload's bytes.
pub(crate) fn read_tagged(bytes: &[u8], want: Tag) -> Result<&[u8], DecodeError> {
    let mut r = Reader::new(bytes);
    let m = r.peek_marker()?;
    let n = match m {
        Marker::FixMap(_) | Marker::Map16 | Marker::Map32 => r.read_map_len()?,
        _ => {
            return Err(DecodeError::new(format_args!(
                "expected a tagged {} map, found msgpack {}",
                want.key(),
                marker_name(m)
            )))
        }
    };
    let mut payload = None;
    let mut tags = 0u8;
    for _ in 0..n {
        let key = match r.peek_marker()? {
            Marker::FixStr(_) | Marker::Str8 | Marker::Str16 | Marker::Str32 => Some(r.read_str()?),
            _ => {
                r.skip_value()?;
                None
            }
        };
        let value = r.skip_value()?;
        match key {
            Some(AS_ENCODABLE) => payload = Some(value),
            Some(k) => {
                if let Some(t) = Tag::from_key(k) {
                    tags |= t.bit();
                }
            }
            None => {}
        }
    }
    r.finish()?;
    let found = Tag::ALL.into_iter().find(|t| tags & t.bit() != 0);
    match (found, payload) {
        (Some(t), Some(p)) if t == want => Ok(p),
        (Some(t), Some(_)) => Err(DecodeError::new(format_args!(
            "stored value is tagged {}, expected {}",
            t.key(),
            want.key()
        ))),
        _ => Err(DecodeError::new(format_args!(
            "map is not a tagged {} value (needs keys {} and {AS_ENCODABLE})",
            want.key(),
            want.key()
        ))),
    }
}

/// Decodes a tagged value whose payload is a str, returning the str.
pub(crate) fn read_tagged_str(bytes: &[u8], want: Tag) -> Result<&str, DecodeError> {
    let payload = read_tagged(bytes, want)?;
    let mut r = Reader::new(payload);
    let s = r
        .read_str()
        .map_err(|e| DecodeError::new(format_args!("payload of {}: {e}", want.key())))?;
    r.finish()?;
    Ok(s)
}
