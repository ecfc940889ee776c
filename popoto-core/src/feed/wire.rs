//! Stream replies as data: an entry's raw fields, `XREAD`/`XREADGROUP` replies, entry ids, and
//! the reply helpers of the feed scripts.

use redis::Value;

use super::OP;
use crate::error::{Error, Result};

/// The fields of a stream entry, raw.
pub(crate) type Fields = Vec<(Vec<u8>, Vec<u8>)>;

/// Entries of each stream read (stream key -> (entry id, fields)).
pub(crate) type Entries = Vec<(String, Vec<(String, Fields)>)>;

/// (milliseconds, sequence) of an entry id.
pub(crate) fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (a, b) = id.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Parses an `XREAD`/`XREADGROUP` reply (nil: nothing).
pub(crate) fn parse_xread(reply: Value) -> Result<Entries> {
    let bad = |v: &dyn std::fmt::Debug| {
        let mut detail = format!("stream read replied {v:?}");
        detail.truncate(200);
        Error::Protocol {
            op: OP,
            model: "-",
            detail,
        }
    };
    let streams = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(s) => s,
        other => return Err(bad(&other)),
    };
    let mut out = Vec::with_capacity(streams.len());
    for s in streams {
        let Value::Array(pair) = s else {
            return Err(bad(&s));
        };
        let mut it = pair.into_iter();
        let (Some(Value::BulkString(name)), Some(items)) = (it.next(), it.next()) else {
            return Err(bad(&"stream"));
        };
        let name = String::from_utf8(name).map_err(|_| bad(&"stream name"))?;
        out.push((name, parse_entries(items)?));
    }
    Ok(out)
}

/// Entries of one stream: (id, fields); an entry whose data is gone (a pending entry trimmed
/// away) has no fields.
pub(crate) fn parse_entries(items: Value) -> Result<Vec<(String, Fields)>> {
    let bad = |what: &str| Error::Protocol {
        op: OP,
        model: "-",
        detail: format!("malformed stream entry: {what}"),
    };
    let Value::Array(items) = items else {
        return Err(bad("not an array"));
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Value::Array(pair) = item else {
            return Err(bad("entry"));
        };
        let mut it = pair.into_iter();
        let id = match it.next() {
            Some(Value::BulkString(b)) => String::from_utf8(b).map_err(|_| bad("id"))?,
            _ => return Err(bad("id")),
        };
        let fields = match it.next() {
            Some(Value::Array(kv)) => {
                let mut f = Vec::with_capacity(kv.len() / 2);
                let mut kv = kv.into_iter();
                while let (Some(Value::BulkString(k)), Some(Value::BulkString(v))) =
                    (kv.next(), kv.next())
                {
                    f.push((k, v));
                }
                f
            }
            _ => Vec::new(),
        };
        out.push((id, fields));
    }
    Ok(out)
}

/// The value of `key` in a flat RESP2 map.
pub(crate) fn flat_get<'v>(map: &'v Value, key: &str) -> Option<&'v Value> {
    let Value::Array(items) = map else {
        return None;
    };
    items
        .chunks(2)
        .find(|c| matches!(&c[0], Value::BulkString(k) if k == key.as_bytes()))
        .and_then(|c| c.get(1))
}

pub(crate) fn num(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Int(n) => u64::try_from(*n).ok(),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

pub(crate) fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

pub(crate) fn protocol(reply: &dyn std::fmt::Debug) -> Error {
    let mut detail = format!("{reply:?}");
    detail.truncate(200);
    Error::Protocol {
        op: OP,
        model: "-",
        detail,
    }
}

/// The items of an `{'ok', ...}` reply, or the refusal as an error.
pub(crate) fn ok_items(reply: Value) -> Result<Vec<Value>> {
    match reply {
        Value::Array(items) if text(items.first()).as_deref() == Some("ok") => Ok(items),
        Value::Array(items) if text(items.first()).as_deref() == Some("wrongtype") => {
            Err(Error::WrongType {
                model: "feed",
                key: text(items.get(1)).unwrap_or_default(),
                found: text(items.get(2)).unwrap_or_default(),
            })
        }
        other => Err(protocol(&other)),
    }
}
