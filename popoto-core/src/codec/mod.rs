//! Values as Popoto 1.10.1 stores them: msgpack bytes, key segments and sorted-set scores.
//!
//! Three traits, each implemented for the Rust types that have a Popoto counterpart:
//! [`Value`] (hash field bytes, including Popoto's tagged datetime/date/time/Decimal/set/tuple
//! maps), [`KeySegment`] (the `str()` rendering of a key value, before escaping) and [`Score`]
//! (the sorted-set score). Any other serde type is stored through `rmp-serde` (see
//! [`crate::__private`]).
//!
//! Fidelity notes:
//!
//! * Integers use the smallest msgpack encoding, the unsigned family for values >= 0; `f32` and
//!   `f64` are always written as float64. Decoding a float accepts int, float32 and float64
//!   (Redis' Lua `cmsgpack` writes all three); decoding an int accepts any int width that fits
//!   and refuses floats and out-of-range values.
//! * Tagged values are `{"__<tag>__": true, "as_encodable": payload}`; decoding accepts any key
//!   order and extra entries, as popoto's decoder does, and requires the expected tag.
//! * chrono values are **truncated** to microseconds (Python's resolution) wherever they are
//!   written, rendered or scored, and a leap second is clamped to `:59.999999`. Years outside
//!   1..=9999 cannot be encoded.
//! * A `Decimal` also decodes from a msgpack int (the same number: a field that was an int);
//!   see `docs/models.md` for every type change old data survives.
//! * `rust_decimal` has no positive exponents: a stored `1E+2` decodes to `100` (and re-encodes
//!   as `100`); more than 28 fractional digits are rounded half-even.
//! * Set payloads are written in ascending order (Python's own order is arbitrary).

use crate::error::{DecodeError, EncodeError};

mod datetime;
mod dynamic;
mod msgpack;
mod pydecimal;
mod pyfmt;
mod score;
mod segment;
mod value;

#[cfg(test)]
mod tests;

pub use dynamic::Dynamic;
pub use pydecimal::PyDecimal;
pub use pyfmt::{decimal_str, float_repr, parse_decimal};

/// A field type with a Popoto byte encoding of its own (tagged types, tolerant number decoding).
pub trait Value: Sized {
    /// Appends the msgpack bytes popoto would write for this value.
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError>;
    /// Decodes bytes popoto (or its Lua scripts) may have written.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError>;
}

/// A value that can be part of a Redis key: rendered as Python's `str()` would, before escaping.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a key or partition value",
    label = "key and partition fields need a type Popoto can put in a key",
    note = "key values are strings, integers, floats, bools, Decimal, dates, times, datetimes, or Option of those"
)]
pub trait KeySegment {
    /// Appends the unescaped rendering (`str`, decimal int, Python float repr, `True`/`False`,
    /// `None`, ISO date, `str(time)`, canonical UTC datetime `...T...Z`).
    fn render(&self, out: &mut String);
}

/// A value with a sorted-set score, computed as popoto's `convert_to_numeric`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no sorted-set score",
    label = "`sorted` needs a numeric, date, time or datetime type",
    note = "scores exist for integers, floats, Decimal, NaiveDate, NaiveTime, NaiveDateTime and DateTime"
)]
pub trait Score {
    /// The score popoto would ZADD for this value.
    fn score(&self) -> f64;
}

/// A field type that can hold a tenant id (`#[popoto(tenant)]`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot hold a tenant id",
    label = "the tenant field must be a `String`"
)]
pub trait TenantValue {
    /// The tenant id held by the field.
    fn tenant_id(&self) -> &str;
    /// Sets the field to the given tenant id.
    fn set_tenant_id(&mut self, id: &str);
}

impl TenantValue for String {
    fn tenant_id(&self) -> &str {
        self
    }
    fn set_tenant_id(&mut self, id: &str) {
        self.clear();
        self.push_str(id);
    }
}

/// A field type that can hold a model's version (`#[popoto(version)]`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a version field",
    label = "the version field must be a `u64`"
)]
pub trait VersionValue {
    /// The version held by the field.
    fn get(&self) -> u64;
    /// Sets the field to the given version.
    fn set(&mut self, version: u64);
}

impl VersionValue for u64 {
    fn get(&self) -> u64 {
        *self
    }
    fn set(&mut self, version: u64) {
        *self = version;
    }
}

/// A field type that can hold an instance's expiry time (`#[popoto(expire_at)]`): not stored in
/// the hash (popoto keeps it as the hash's TTL only), so a value read back has none.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an expiry time",
    label = "the `expire_at` field must be an `Option<chrono::DateTime<chrono::Utc>>`"
)]
pub trait ExpiryValue {
    /// The expiry time in milliseconds since the Unix epoch, if one is set.
    fn expire_at_millis(&self) -> Result<Option<i64>, EncodeError>;
    /// The value of a field read from Redis: none.
    fn unread() -> Self;
}

impl ExpiryValue for Option<chrono::DateTime<chrono::Utc>> {
    /// A time before the Unix epoch is refused: Redis has no such expiry.
    fn expire_at_millis(&self) -> Result<Option<i64>, EncodeError> {
        match self.map(|t| t.timestamp_millis()) {
            Some(ms) if ms < 0 => Err(EncodeError::new(format_args!(
                "expiry time {ms} ms is before the Unix epoch"
            ))),
            ms => Ok(ms),
        }
    }
    fn unread() -> Self {
        None
    }
}

/// Encodes any serde value with `rmp-serde` as msgpack-python would (structs as maps, bytes as bin).
pub fn encode_serde<T: serde::Serialize + ?Sized>(
    v: &T,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let mut ser = rmp_serde::Serializer::new(out).with_struct_map();
    v.serialize(&mut ser).map_err(EncodeError::new)
}

/// Deepest msgpack nesting the serde decoders accept. rmp-serde's own limit (1024) lets a
/// stored value like `{"x": {"x": ...}}` recurse deep enough to overflow a 2 MiB thread stack
/// in a debug build (a skipped unknown field recurses too), which aborts the process.
pub const MAX_SERDE_DEPTH: usize = 128;

/// Decodes any serde value from msgpack bytes (nesting limited to [`MAX_SERDE_DEPTH`]).
pub fn decode_serde<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
    de.set_max_depth(MAX_SERDE_DEPTH);
    T::deserialize(&mut de).map_err(DecodeError::new)
}
