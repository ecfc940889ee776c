//! `lua/apply.lua`: applies a [`Plan`] atomically. Owns the script's source, the encoding of a
//! plan into its ARGV and the decoding of its reply into an [`Outcome`].

use std::sync::LazyLock;

use super::score_arg;
use crate::backend::Script;
use crate::error::{Error, Result};
use crate::model::ModelMeta;
use crate::plan::{Check, Outcome, Plan, Write};

/// The script (after the change-feed prelude: a `FEED` write appends the change event in the
/// same call).
pub(crate) static APPLY: LazyLock<Script> =
    LazyLock::new(|| Script::new(super::lua!("feed_common.lua", "apply.lua")));

/// One call of the script for `plan`: its KEYS and ARGV.
pub(crate) fn call(plan: &Plan) -> (Vec<String>, Vec<Vec<u8>>) {
    (plan.keys().to_vec(), args(plan))
}

/// The script's ARGV.
pub(crate) fn args(plan: &Plan) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> =
        Vec::with_capacity(1 + plan.checks().len() * 3 + plan.writes().len() * 4);
    let idx = |i: usize| (i + 1).to_string().into_bytes();
    out.push(plan.checks().len().to_string().into_bytes());
    for c in plan.checks() {
        match c {
            Check::Absent(k) => out.extend([b"A".to_vec(), idx(*k)]),
            Check::Present(k) => out.extend([b"P".to_vec(), idx(*k)]),
            Check::Unique {
                set,
                field,
                allowed,
                within: 0,
            } => out.extend([
                b"U".to_vec(),
                idx(*set),
                field.to_string().into_bytes(),
                allowed[0].clone().into_bytes(),
                allowed[1].clone().into_bytes(),
            ]),
            Check::Unique {
                set,
                field,
                allowed,
                within,
            } => out.extend([
                b"W".to_vec(),
                idx(*set),
                field.to_string().into_bytes(),
                allowed[0].clone().into_bytes(),
                allowed[1].clone().into_bytes(),
                within.to_string().into_bytes(),
            ]),
            Check::Field {
                key,
                field,
                value: Some(v),
            } => out.extend([
                b"G".to_vec(),
                idx(*key),
                field.clone().into_bytes(),
                v.clone(),
            ]),
            Check::Field {
                key,
                field,
                value: None,
            } => out.extend([b"N".to_vec(), idx(*key), field.clone().into_bytes()]),
            Check::FieldOrNew { key, field, value } => out.extend([
                b"E".to_vec(),
                idx(*key),
                field.clone().into_bytes(),
                value.clone(),
            ]),
            Check::Type { key, ty } => {
                out.extend([b"T".to_vec(), idx(*key), ty.as_bytes().to_vec()])
            }
            Check::Version {
                key,
                field,
                expected,
            } => out.extend([
                b"R".to_vec(),
                idx(*key),
                field.clone().into_bytes(),
                expected.to_string().into_bytes(),
            ]),
            Check::Same { key, pairs } => {
                out.extend([
                    b"S".to_vec(),
                    idx(*key),
                    pairs.len().to_string().into_bytes(),
                ]);
                for (f, v) in pairs {
                    out.push(f.clone().into_bytes());
                    out.push(v.clone());
                }
            }
        }
    }
    for w in plan.writes() {
        match w {
            Write::HSet { key, pairs } => {
                out.extend([
                    b"HSET".to_vec(),
                    idx(*key),
                    pairs.len().to_string().into_bytes(),
                ]);
                for (f, v) in pairs {
                    out.push(f.clone().into_bytes());
                    out.push(v.clone());
                }
            }
            Write::SAdd { key, member } => {
                out.extend([b"SADD".to_vec(), idx(*key), member.clone().into_bytes()])
            }
            Write::SRem { key, member } => {
                out.extend([b"SREM".to_vec(), idx(*key), member.clone().into_bytes()])
            }
            Write::ZAdd { key, score, member } => out.extend([
                b"ZADD".to_vec(),
                idx(*key),
                score_arg(*score).into_bytes(),
                member.clone().into_bytes(),
            ]),
            Write::ZRem { key, member } => {
                out.extend([b"ZREM".to_vec(), idx(*key), member.clone().into_bytes()])
            }
            Write::Del { key } => out.extend([b"DEL".to_vec(), idx(*key)]),
            Write::HSetNx { key, field, value } => out.extend([
                b"HSETNX".to_vec(),
                idx(*key),
                field.clone().into_bytes(),
                value.clone(),
            ]),
            Write::HDel { key, field } => {
                out.extend([b"HDEL".to_vec(), idx(*key), field.clone().into_bytes()])
            }
            Write::HMove {
                from,
                from_field,
                to,
                to_field,
            } => out.extend([
                b"HMOVE".to_vec(),
                idx(*from),
                from_field.clone().into_bytes(),
                idx(*to),
                to_field.clone().into_bytes(),
            ]),
            Write::Rename { from, to } => out.extend([b"RENAME".to_vec(), idx(*from), idx(*to)]),
            Write::HMoveNx {
                from,
                from_field,
                to,
                to_field,
            } => out.extend([
                b"HMOVENX".to_vec(),
                idx(*from),
                from_field.clone().into_bytes(),
                idx(*to),
                to_field.clone().into_bytes(),
            ]),
            Write::ZMoveNx { from, to, member } => out.extend([
                b"ZMOVENX".to_vec(),
                idx(*from),
                idx(*to),
                member.clone().into_bytes(),
            ]),
            Write::Expire { key, zset, expiry } => out.extend([
                b"EXPIRE".to_vec(),
                idx(*key),
                idx(*zset),
                expiry.arg().into_bytes(),
            ]),
            Write::ZRename {
                from,
                to,
                from_member,
                to_member,
            } => out.extend([
                b"ZRENAME".to_vec(),
                idx(*from),
                idx(*to),
                from_member.clone().into_bytes(),
                to_member.clone().into_bytes(),
            ]),
            Write::Feed {
                stream,
                meta,
                fields,
            } => {
                out.extend([
                    b"FEED".to_vec(),
                    idx(*stream),
                    idx(*meta),
                    (2 * fields.len()).to_string().into_bytes(),
                ]);
                for (k, v) in fields {
                    out.push(k.clone());
                    out.push(v.clone());
                }
            }
        }
    }
    out
}

/// Parses the script's reply.
pub(crate) fn outcome(
    meta: &'static ModelMeta,
    op: &'static str,
    reply: redis::Value,
) -> Result<Outcome> {
    let protocol = |detail: String| Error::Protocol {
        op,
        model: meta.name,
        detail,
    };
    let items = match reply {
        // The bulk script's reply for an instance written: its HSET's reply.
        redis::Value::Int(n) => return Ok(Outcome::Applied(n)),
        redis::Value::Array(items) => items,
        other => return Err(protocol(format!("{other:?}"))),
    };
    let ok = match items.first() {
        Some(redis::Value::BulkString(b)) => b == b"ok",
        Some(redis::Value::SimpleString(s)) => s == "ok",
        _ => false,
    };
    if ok {
        return Ok(Outcome::Applied(match items.get(1) {
            Some(redis::Value::Int(n)) => *n,
            _ => 0,
        }));
    }
    let text = |i: usize| -> Result<String> {
        match items.get(i) {
            Some(redis::Value::BulkString(b)) => {
                String::from_utf8(b.clone()).map_err(|_| protocol("non-UTF-8 reply".into()))
            }
            Some(redis::Value::SimpleString(s)) => Ok(s.clone()),
            Some(redis::Value::Int(n)) => Ok(n.to_string()),
            other => Err(protocol(format!("{other:?}"))),
        }
    };
    match text(0)?.as_str() {
        "exists" => Ok(Outcome::Exists(text(1)?)),
        "missing" => Ok(Outcome::Missing(text(1)?)),
        "unique" => Ok(Outcome::Unique {
            field: text(1)?
                .parse()
                .map_err(|_| protocol("bad unique tag".into()))?,
            existing: text(2)?,
        }),
        "changed" => Ok(Outcome::Changed),
        "wrongtype" => Ok(Outcome::WrongType {
            key: text(1)?,
            found: text(2)?,
        }),
        "conflict" => Ok(Outcome::Conflict {
            key: text(1)?,
            found: text(2)?.parse().ok(),
        }),
        other => Err(protocol(format!("unknown reply {other:?}"))),
    }
}
