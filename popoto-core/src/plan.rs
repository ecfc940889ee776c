//! Writes as data: every instance write is a [`Plan`] of checks and commands that one Lua script
//! (`lua/apply.lua`) applies atomically. Plans are built without a server and unit-tested.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::keys;
use crate::model::{FieldKind, ModelMeta, Record};

/// A check run before any write; the first failing one aborts the plan.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Check {
    /// The key must not exist.
    Absent(usize),
    /// The key must exist.
    Present(usize),
    /// The set may hold no member besides `allowed` (a unique key's value set); `field` names it.
    Unique {
        set: usize,
        field: usize,
        allowed: [String; 2],
    },
    /// The hash field must hold these bytes (`None`: must be absent).
    Field {
        key: usize,
        field: String,
        value: Option<Vec<u8>>,
    },
    /// The hash is absent, or its field holds these bytes: an update assumed not to move the
    /// instance between partitions (a failure means it does: read the stored value and retry).
    FieldOrNew {
        key: usize,
        field: String,
        value: Vec<u8>,
    },
    /// The key must be absent or of this Redis type.
    Type { key: usize, ty: &'static str },
    /// The key is absent, or a hash holding exactly these fields and bytes and no other field:
    /// a write that may already have been applied (an import run again). A failure replies
    /// `exists`.
    Same {
        key: usize,
        pairs: Vec<(String, Vec<u8>)>,
    },
}

/// A write command; key operands are indices into [`Plan::keys`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Write {
    HSet {
        key: usize,
        pairs: Vec<(String, Vec<u8>)>,
    },
    SAdd {
        key: usize,
        member: String,
    },
    SRem {
        key: usize,
        member: String,
    },
    ZAdd {
        key: usize,
        score: f64,
        member: String,
    },
    ZRem {
        key: usize,
        member: String,
    },
    Del {
        key: usize,
    },
    HSetNx {
        key: usize,
        field: String,
        value: Vec<u8>,
    },
    HDel {
        key: usize,
        field: String,
    },
    HMove {
        from: usize,
        from_field: String,
        to: usize,
        to_field: String,
    },
    Rename {
        from: usize,
        to: usize,
    },
    /// Moves one hash entry unless the destination already holds one; the source entry is
    /// removed either way. Reply: 1 moved, 2 destination kept (source dropped), 0 no source.
    HMoveNx {
        from: usize,
        from_field: String,
        to: usize,
        to_field: String,
    },
    /// Moves one zset member with its score unless the destination already holds it; the
    /// source member is removed either way. Reply as [`Write::HMoveNx`].
    ZMoveNx {
        from: usize,
        to: usize,
        member: String,
    },
    /// Appends a change event (flat field/value list; the script adds the stream's event
    /// counter as `version`) to a stream and trims it (`lua/feed_common.lua`).
    Feed {
        stream: usize,
        meta: usize,
        fields: Vec<(Vec<u8>, Vec<u8>)>,
    },
}

/// Checks and writes of one atomic instance write.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Plan {
    pub keys: Vec<String>,
    index: HashMap<String, usize>,
    pub checks: Vec<Check>,
    pub writes: Vec<Write>,
}

/// What a failed check reported.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// All writes applied; the reply of the first write (HSET: new fields, DEL: keys removed).
    Applied(i64),
    /// `Check::Absent` failed on this key.
    Exists(String),
    /// `Check::Present` failed on this key.
    Missing(String),
    /// `Check::Unique` failed: field index and the member holding the value.
    Unique { field: usize, existing: String },
    /// `Check::Field` failed: the instance changed since its partition values were read.
    Changed,
    /// `Check::Type` failed.
    WrongType { key: String, found: String },
}

impl Plan {
    /// Interns a key and returns its index.
    pub fn key(&mut self, key: String) -> usize {
        if let Some(&i) = self.index.get(&key) {
            return i;
        }
        let i = self.keys.len();
        self.index.insert(key.clone(), i);
        self.keys.push(key);
        i
    }

    /// Number of Redis commands the plan runs on the server (checks and writes).
    pub fn command_count(&self) -> usize {
        self.checks.len() + self.writes.len()
    }

    /// Adds a type check for every key written (but not for keys that must be absent), so a
    /// wrong type fails before any write.
    pub fn add_type_checks(&mut self) {
        // A key that must be absent needs no type check: that check already implies it.
        let mut seen: Vec<(usize, &'static str)> = self
            .checks
            .iter()
            .filter_map(|c| match c {
                // `Same` checks the type itself.
                Check::Absent(k) | Check::Same { key: k, .. } => Some((*k, "")),
                _ => None,
            })
            .collect();
        let absent = seen.len();
        for w in &self.writes {
            let typed = match w {
                Write::HSet { key, .. } | Write::HSetNx { key, .. } | Write::HDel { key, .. } => {
                    [Some((*key, "hash")), None]
                }
                Write::SAdd { key, .. } | Write::SRem { key, .. } => [Some((*key, "set")), None],
                Write::ZAdd { key, .. } | Write::ZRem { key, .. } => [Some((*key, "zset")), None],
                Write::HMove { from, to, .. } => [Some((*from, "hash")), Some((*to, "hash"))],
                Write::Del { .. } | Write::Rename { .. } => [None, None],
                Write::HMoveNx { from, to, .. } => [Some((*from, "hash")), Some((*to, "hash"))],
                Write::ZMoveNx { from, to, .. } => [Some((*from, "zset")), Some((*to, "zset"))],
                Write::Feed { stream, meta, .. } => {
                    [Some((*stream, "stream")), Some((*meta, "hash"))]
                }
            };
            for t in typed.into_iter().flatten() {
                if !seen.iter().any(|s| s.0 == t.0) {
                    seen.push(t);
                }
            }
        }
        self.checks.extend(
            seen.into_iter()
                .skip(absent)
                .map(|(key, ty)| Check::Type { key, ty }),
        );
    }

    /// The script's ARGV.
    pub fn args(&self) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> =
            Vec::with_capacity(1 + self.checks.len() * 3 + self.writes.len() * 4);
        let idx = |i: usize| (i + 1).to_string().into_bytes();
        out.push(self.checks.len().to_string().into_bytes());
        for c in &self.checks {
            match c {
                Check::Absent(k) => out.extend([b"A".to_vec(), idx(*k)]),
                Check::Present(k) => out.extend([b"P".to_vec(), idx(*k)]),
                Check::Unique {
                    set,
                    field,
                    allowed,
                } => out.extend([
                    b"U".to_vec(),
                    idx(*set),
                    field.to_string().into_bytes(),
                    allowed[0].clone().into_bytes(),
                    allowed[1].clone().into_bytes(),
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
        for w in &self.writes {
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
                Write::Rename { from, to } => {
                    out.extend([b"RENAME".to_vec(), idx(*from), idx(*to)])
                }
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
    pub fn outcome(
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
            other => Err(protocol(format!("unknown reply {other:?}"))),
        }
    }
}

/// A score as a Redis argument: shortest round-trip decimal, `inf`/`-inf` for infinities.
pub(crate) fn score_arg(score: f64) -> String {
    if score.is_infinite() {
        if score > 0.0 {
            "+inf".into()
        } else {
            "-inf".into()
        }
    } else {
        format!("{score}")
    }
}

/// Appends a score argument without formatting it into a `String` first: finite values as
/// redis-rs writes an `f64` (shortest round trip), infinities as [`score_arg`] does.
pub(crate) fn push_score(cmd: &mut redis::Cmd, score: f64) {
    if score.is_finite() {
        cmd.arg(score);
    } else {
        cmd.arg(score_arg(score));
    }
}

/// The stored bytes of Popoto's hidden `_auto_key` field: the key's uuid as a msgpack str.
fn hidden_value(h: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(h.len() + 2);
    crate::codec::encode_serde(h, &mut v).ok();
    v
}

/// Msgpack bytes of a fresh confidence entry, as popoto's `on_save` HSETNX writes them.
pub(crate) fn initial_confidence(initial: f64) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(0x84);
    for (name, last) in [
        ("confidence", false),
        ("evidence_count", true),
        ("corroborations", true),
        ("contradictions", true),
    ] {
        out.push(0xa0 | name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        if last {
            out.push(0x00);
        } else {
            out.push(0xcb);
            out.extend_from_slice(&initial.to_bits().to_be_bytes());
        }
    }
    out
}

/// One index entry of an instance.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum IndexEntry {
    /// Membership of a set (`$Class`, `$KeyF`, `$UniqueKeyF`); for a unique key's value set,
    /// the field index (the set may hold no other instance).
    Set(String, Option<usize>),
    /// Membership of a sorted set, with the score.
    ZSet(String, f64),
    /// An entry of a confidence companion hash, with the field's initial confidence.
    Companion(String, f64),
}

impl IndexEntry {
    /// The index key.
    pub fn key(&self) -> &str {
        match self {
            IndexEntry::Set(k, _) | IndexEntry::ZSet(k, _) | IndexEntry::Companion(k, _) => k,
        }
    }
}

/// The rendered state of one instance: its key and the record, with partitions resolved.
pub(crate) struct Instance<'r> {
    pub meta: &'static ModelMeta,
    pub key: String,
    pub record: &'r Record,
    /// Segment of the hidden `_auto_key`, for models that have one.
    pub hidden_key: Option<&'r str>,
}

impl<'r> Instance<'r> {
    /// The segment of field `i` (hidden key included).
    pub fn segment(&self, i: usize) -> &'r str {
        if self.meta.fields[i].hidden {
            return self.hidden_key.unwrap_or_default();
        }
        self.record
            .segments
            .get(i)
            .and_then(|s| s.as_deref())
            .unwrap_or_default()
    }

    /// Partition segments of field `i`.
    pub fn partition(&self, i: usize) -> Vec<&str> {
        self.meta.fields[i]
            .partition_by
            .iter()
            .map(|&p| self.segment(p))
            .collect()
    }

    /// The zset of sorted field `i` for this instance.
    pub fn sorted_key(&self, i: usize) -> String {
        keys::sorted_key(self.meta, i, &self.partition(i))
    }

    /// The companion hash of confidence field `i` for this instance.
    pub fn confidence_key(&self, i: usize) -> Result<String> {
        keys::confidence_key(self.meta, i, &self.partition(i))
    }

    /// Every hash field and value to HSET.
    pub fn hash_pairs(&self) -> Vec<(String, Vec<u8>)> {
        let mut pairs: Vec<(String, Vec<u8>)> = self
            .meta
            .fields
            .iter()
            .zip(&self.record.values)
            .map(|(f, v)| (f.name.to_owned(), v.clone()))
            .collect();
        if let Some(h) = self.hidden_key {
            pairs.push(("_auto_key".to_owned(), hidden_value(h)));
        }
        pairs
    }

    /// How many (field, value) pairs [`Instance::push_hash_fields`] writes.
    pub fn hash_field_count(&self) -> usize {
        self.meta.declared_len().min(self.record.values.len())
            + usize::from(self.hidden_key.is_some())
    }

    /// Appends every hash (field, value) pair to `cmd`, as [`Instance::hash_pairs`] lists them,
    /// without building the list.
    pub fn push_hash_fields(&self, cmd: &mut redis::Cmd) {
        for (f, v) in self.meta.fields.iter().zip(&self.record.values) {
            cmd.arg(f.name).arg(&v[..]);
        }
        if let Some(h) = self.hidden_key {
            cmd.arg("_auto_key").arg(hidden_value(h));
        }
    }

    /// Every index entry of this instance: `$Class`, key value sets, sorted sets (with the
    /// score) and confidence companion hashes (with the initial confidence).
    pub fn index_entries(&self) -> Result<Vec<IndexEntry>> {
        let mut out = Vec::with_capacity(self.meta.fields.len() + 1);
        out.push(IndexEntry::Set(keys::class_key(self.meta), None));
        for (i, f) in self.meta.fields.iter().enumerate() {
            match f.kind {
                FieldKind::Key | FieldKind::UniqueKey => {
                    out.push(IndexEntry::Set(
                        keys::value_set_key(self.meta, i, self.segment(i)),
                        (f.kind == FieldKind::UniqueKey).then_some(i),
                    ));
                }
                FieldKind::Sorted => {
                    let score = self
                        .record
                        .scores
                        .get(i)
                        .copied()
                        .flatten()
                        .unwrap_or_default();
                    out.push(IndexEntry::ZSet(self.sorted_key(i), score));
                }
                FieldKind::Confidence { initial, .. } => {
                    out.push(IndexEntry::Companion(self.confidence_key(i)?, initial));
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// Adds the index entries of this instance (popoto's `on_save` of every field); a
    /// confidence entry is only initialised when absent.
    pub fn add_indexes(&self, plan: &mut Plan) -> Result<()> {
        for entry in self.index_entries()? {
            let member = self.key.clone();
            let write = match entry {
                IndexEntry::Set(k, _) => Write::SAdd {
                    key: plan.key(k),
                    member,
                },
                IndexEntry::ZSet(k, score) => Write::ZAdd {
                    key: plan.key(k),
                    score,
                    member,
                },
                IndexEntry::Companion(k, initial) => Write::HSetNx {
                    key: plan.key(k),
                    field: member,
                    value: initial_confidence(initial),
                },
            };
            plan.writes.push(write);
        }
        Ok(())
    }

    /// Removes the index entries of this instance (popoto's `on_delete`); with
    /// `with_confidence` false the companion entries are left to the caller (moved).
    pub fn remove_indexes(&self, plan: &mut Plan, with_confidence: bool) -> Result<()> {
        for entry in self.index_entries()? {
            let member = self.key.clone();
            let write = match entry {
                IndexEntry::Set(k, _) => Write::SRem {
                    key: plan.key(k),
                    member,
                },
                IndexEntry::ZSet(k, _) => Write::ZRem {
                    key: plan.key(k),
                    member,
                },
                IndexEntry::Companion(k, _) if with_confidence => Write::HDel {
                    key: plan.key(k),
                    field: member,
                },
                IndexEntry::Companion(..) => continue,
            };
            plan.writes.push(write);
        }
        Ok(())
    }

    /// The `EVALSHA` of `lua/create.lua` for this instance: the create path's own script,
    /// which undoes its writes on a failed command instead of type-checking every key first.
    /// `fresh`: the key holds a uuid4 generated for this create, so the script skips `EXISTS`.
    /// Also returns the number of commands the script runs when nothing fails.
    pub fn create_cmd(&self, script: &redis::Script, fresh: bool) -> Result<(redis::Cmd, usize)> {
        let entries = self.index_entries()?;
        let nf = self.hash_field_count();
        let values: usize = self.record.values.iter().map(Vec::len).sum();
        let keys: usize = entries.iter().map(|e| e.key().len()).sum();
        let mut cmd = redis::Cmd::with_capacity(
            6 + 2 * nf + 3 * entries.len(),
            96 + values + keys + 2 * self.key.len() + 32 * nf + 24 * entries.len(),
        );
        cmd.arg("EVALSHA")
            .arg(script.get_hash())
            .arg(1 + entries.len())
            .arg(&self.key);
        for e in &entries {
            cmd.arg(e.key());
        }
        cmd.arg(if fresh { "F" } else { "C" }).arg(nf);
        self.push_hash_fields(&mut cmd);
        for e in &entries {
            match e {
                IndexEntry::Set(_, None) => cmd.arg("S").arg(""),
                IndexEntry::Set(_, Some(field)) => cmd.arg("U").arg(field),
                IndexEntry::ZSet(_, score) => {
                    push_score(cmd.arg("Z"), *score);
                    &mut cmd
                }
                IndexEntry::Companion(_, initial) => cmd.arg("H").arg(initial_confidence(*initial)),
            };
        }
        let uniques = entries
            .iter()
            .filter(|e| matches!(e, IndexEntry::Set(_, Some(_))))
            .count();
        let commands = usize::from(!fresh) + uniques + 1 + entries.len();
        Ok((cmd, commands))
    }

    /// Uniqueness checks of every unique key field; `also` is another key allowed to hold them.
    pub fn unique_checks(&self, plan: &mut Plan, also: Option<&str>) {
        for (i, f) in self.meta.fields.iter().enumerate() {
            if f.kind == FieldKind::UniqueKey {
                let set = plan.key(keys::value_set_key(self.meta, i, self.segment(i)));
                plan.checks.push(Check::Unique {
                    set,
                    field: i,
                    allowed: [self.key.clone(), also.unwrap_or(&self.key).to_owned()],
                });
            }
        }
    }
}

/// Indices of fields that partition some index but are not key fields: an update can move them.
pub(crate) fn movable_partition_fields(meta: &ModelMeta) -> Vec<usize> {
    let mut out: Vec<usize> = Vec::new();
    for f in meta.fields {
        for &p in f.partition_by {
            if !meta.fields[p].kind.is_key() && !out.contains(&p) {
                out.push(p);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_confidence_matches_popoto_bytes() {
        let hex: String = initial_confidence(0.5)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "84aa636f6e666964656e6365cb3fe0000000000000ae65766964656e63655f636f756e7400ae636f72726f626f726174696f6e7300ae636f6e74726164696374696f6e7300"
        );
    }

    #[test]
    fn keys_are_interned_and_args_reference_them() {
        let mut p = Plan::default();
        let a = p.key("A".into());
        let b = p.key("B".into());
        assert_eq!(p.key("A".into()), a);
        p.checks.push(Check::Absent(b));
        p.writes.push(Write::SAdd {
            key: a,
            member: "m".into(),
        });
        p.add_type_checks();
        let args: Vec<String> = p
            .args()
            .into_iter()
            .map(|a| String::from_utf8(a).unwrap_or_default())
            .collect();
        assert_eq!(args, ["2", "A", "2", "T", "1", "set", "SADD", "1", "m"]);
    }

    #[test]
    fn move_nx_writes_type_check_both_keys() {
        let mut p = Plan::default();
        let m = p.key("M:1".into());
        let from = p.key("H".into());
        let to = p.key("H:p".into());
        p.checks.push(Check::Present(m));
        p.writes.push(Write::HMoveNx {
            from,
            from_field: "M:1".into(),
            to,
            to_field: "M:1".into(),
        });
        p.add_type_checks();
        let args: Vec<String> = p
            .args()
            .into_iter()
            .map(|a| String::from_utf8(a).unwrap_or_default())
            .collect();
        assert_eq!(
            args,
            [
                "3", "P", "1", "T", "2", "hash", "T", "3", "hash", "HMOVENX", "2", "M:1", "3",
                "M:1"
            ]
        );
        let mut z = Plan::default();
        let (from, to) = (z.key("Z".into()), z.key("Z:p".into()));
        z.writes.push(Write::ZMoveNx {
            from,
            to,
            member: "M:1".into(),
        });
        z.add_type_checks();
        assert_eq!(
            z.checks,
            [
                Check::Type { key: 0, ty: "zset" },
                Check::Type { key: 1, ty: "zset" }
            ]
        );
    }

    #[test]
    fn same_check_carries_its_pairs_and_needs_no_type_check() {
        let mut p = Plan::default();
        let k = p.key("M:1".into());
        let pairs = vec![("a".to_owned(), b"1".to_vec())];
        p.checks.push(Check::Same {
            key: k,
            pairs: pairs.clone(),
        });
        p.writes.push(Write::HSet { key: k, pairs });
        p.add_type_checks();
        let args: Vec<String> = p
            .args()
            .into_iter()
            .map(|a| String::from_utf8(a).unwrap_or_default())
            .collect();
        assert_eq!(
            args,
            ["1", "S", "1", "1", "a", "1", "HSET", "1", "1", "a", "1"]
        );
    }

    #[test]
    fn score_args_round_trip() {
        for s in [0.1, 1.5, -0.0, 1e300, 5e-324, 1704067200.0] {
            assert_eq!(score_arg(s).parse::<f64>().ok(), Some(s));
        }
        assert_eq!(score_arg(f64::INFINITY), "+inf");
        assert_eq!(score_arg(f64::NEG_INFINITY), "-inf");
    }
}
