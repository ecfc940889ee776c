//! Writes as data: every instance write is a [`Plan`] of checks and commands that one Lua script
//! (`lua/apply.lua`) applies atomically. Plans are built without a server and unit-tested. An
//! instance's index entries and the writes that add or remove them are in `instance`.

pub(crate) mod entries;
mod instance;
pub(crate) mod write;

pub(crate) use instance::{initial_confidence, Expiry, IndexEntry, Instance};

use std::collections::HashMap;

use crate::model::ModelMeta;

/// A check run before any write; the first failing one aborts the plan.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Check {
    /// The key must not exist.
    Absent(usize),
    /// The key must exist.
    Present(usize),
    /// The set may hold no member besides `allowed` (a unique key's value set); `field` names it.
    /// `within` is [`ModelMeta::unique_scope`]: with a position, only members whose key has the
    /// same segment there as `allowed[0]` (an instance of the same tenant) conflict.
    Unique {
        set: usize,
        field: usize,
        allowed: [String; 2],
        within: usize,
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
    /// The hash field (a model's version) must hold `expected` as a msgpack int; an absent
    /// field or hash counts as 0. A failure replies `conflict` with the stored version.
    Version {
        key: usize,
        field: String,
        expected: u64,
    },
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
    /// Expires the hash at `key` at the time `expiry` gives (`PEXPIREAT`) and records it in the
    /// expiry set `zset` (member: the hash's key, score: the time in ms).
    Expire {
        key: usize,
        zset: usize,
        expiry: Expiry,
    },
    /// Moves the score of `from_member` in zset `from` to `to_member` in zset `to` (a key
    /// move's expiry entry); nothing if there is none.
    ZRename {
        from: usize,
        to: usize,
        from_member: String,
        to_member: String,
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
    keys: Vec<String>,
    index: HashMap<String, usize>,
    checks: Vec<Check>,
    writes: Vec<Write>,
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
    /// `Check::Version` failed: the stored version (`None`: not a msgpack unsigned int).
    Conflict { key: String, found: Option<u64> },
}

impl Plan {
    /// Every key the plan touches, in the order of their indices.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// The checks, in order.
    pub fn checks(&self) -> &[Check] {
        &self.checks
    }

    /// The writes, in order.
    pub fn writes(&self) -> &[Write] {
        &self.writes
    }

    /// Adds a write.
    pub fn write(&mut self, write: Write) {
        self.writes.push(write);
    }

    /// Appends a change event (`fields`) to `stream` (its feed meta hash `meta`) in the
    /// write's own call, both keys type-checked first.
    pub fn feed(&mut self, stream: String, meta: String, fields: Vec<(Vec<u8>, Vec<u8>)>) {
        let (stream, meta) = (self.key(stream), self.key(meta));
        self.checks.push(Check::Type {
            key: stream,
            ty: "stream",
        });
        self.checks.push(Check::Type {
            key: meta,
            ty: "hash",
        });
        self.writes.push(Write::Feed {
            stream,
            meta,
            fields,
        });
    }

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
                Write::Expire { key, zset, .. } => [Some((*key, "hash")), Some((*zset, "zset"))],
                Write::ZRename { from, to, .. } => [Some((*from, "zset")), Some((*to, "zset"))],
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
mod tests;

#[cfg(test)]
mod shapes;
