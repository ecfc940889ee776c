//! One instance rendered for storage: its index entries and the writes that add or remove them.

use crate::error::Result;
use crate::keys::Layout;
use crate::model::{FieldKind, ModelMeta, Record};

use super::{Check, Plan, Write};

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

/// When an instance expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// At this time, in milliseconds since the Unix epoch (the value's `expire_at`).
    At(i64),
    /// This many milliseconds after the write, on the server's clock (the model's `ttl`).
    After(u64),
}

impl Expiry {
    /// The scripts' argument: `A<ms>` (absolute) or `R<ms>` (relative to the server's `TIME`).
    pub fn arg(self) -> String {
        match self {
            Expiry::At(ms) => format!("A{ms}"),
            Expiry::After(ms) => format!("R{ms}"),
        }
    }
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
    /// Membership of the expiry set of an instance that can expire, with the expiry the write
    /// sets (`None`: the write keeps the stored one).
    Expiry(String, Option<Expiry>),
}

impl IndexEntry {
    /// The index key.
    pub fn key(&self) -> &str {
        match self {
            IndexEntry::Set(k, _)
            | IndexEntry::ZSet(k, _)
            | IndexEntry::Companion(k, _)
            | IndexEntry::Expiry(k, _) => k,
        }
    }
}

/// The rendered state of one instance: its key and the record, with partitions resolved.
pub(crate) struct Instance<'r> {
    /// How the keys are laid out.
    pub layout: Layout,
    pub meta: &'static ModelMeta,
    pub key: String,
    pub record: &'r Record,
    /// Segment of the hidden `_auto_key`, for models that have one.
    pub hidden_key: Option<&'r str>,
}

impl<'r> Instance<'r> {
    /// The tenant segment, for a tenant model: the keyspace of the instance's index keys.
    pub fn tenant(&self) -> Option<&'r str> {
        self.meta.tenant.map(|t| self.segment(t))
    }

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
        self.layout
            .sorted_key(self.meta, self.tenant(), i, &self.partition(i))
    }

    /// The companion hash of confidence field `i` for this instance.
    pub fn confidence_key(&self, i: usize) -> Result<String> {
        self.layout
            .confidence_key(self.meta, self.tenant(), i, &self.partition(i))
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

    /// Appends every hash value, in [`Instance::push_hash_fields`]'s order, without the names
    /// (a shape's script holds them).
    pub fn push_hash_values(&self, cmd: &mut redis::Cmd) {
        for (_, v) in self.meta.fields.iter().zip(&self.record.values) {
            cmd.arg(&v[..]);
        }
        if let Some(h) = self.hidden_key {
            cmd.arg(hidden_value(h));
        }
    }

    /// Every index entry of this instance: `$Class`, key value sets, sorted sets (with the
    /// score) and confidence companion hashes (with the initial confidence).
    pub fn index_entries(&self) -> Result<Vec<IndexEntry>> {
        let mut out = Vec::with_capacity(self.meta.fields.len() + 1);
        out.push(IndexEntry::Set(
            self.layout.class_key(self.meta, self.tenant()),
            None,
        ));
        for (i, f) in self.meta.fields.iter().enumerate() {
            match f.kind {
                FieldKind::Key | FieldKind::UniqueKey => {
                    out.push(IndexEntry::Set(
                        self.layout
                            .value_set_key(self.meta, self.tenant(), i, self.segment(i)),
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
        if self.meta.expires() {
            out.push(IndexEntry::Expiry(self.expiry_key(), self.expiry()));
        }
        Ok(out)
    }

    /// The expiry set of this instance (its tenant's, for a tenant model).
    pub fn expiry_key(&self) -> String {
        self.layout.expiry_key(self.meta, self.tenant())
    }

    /// The expiry this write sets: the value's `expire_at`, else the model's `ttl`.
    pub fn expiry(&self) -> Option<Expiry> {
        match (self.record.expire_at, self.meta.ttl) {
            (Some(at), _) => Some(Expiry::At(at)),
            (None, Some(ttl)) => Some(Expiry::After(ttl.saturating_mul(1000))),
            (None, None) => None,
        }
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
                IndexEntry::Expiry(k, Some(expiry)) => Write::Expire {
                    key: plan.key(member),
                    zset: plan.key(k),
                    expiry,
                },
                // No expiry given: the instance keeps the one it has (HSET keeps a TTL).
                IndexEntry::Expiry(_, None) => continue,
            };
            plan.writes.push(write);
        }
        Ok(())
    }

    /// Removes the index entries of this instance (popoto's `on_delete`); with
    /// `with_confidence` false (a key move) the companion and expiry entries are left to the
    /// caller (moved).
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
                IndexEntry::Expiry(k, _) if with_confidence => Write::ZRem {
                    key: plan.key(k),
                    member,
                },
                IndexEntry::Companion(..) | IndexEntry::Expiry(..) => continue,
            };
            plan.writes.push(write);
        }
        Ok(())
    }

    /// Uniqueness checks of every unique key field; `also` is another key allowed to hold them.
    pub fn unique_checks(&self, plan: &mut Plan, also: Option<&str>) {
        for (i, f) in self.meta.fields.iter().enumerate() {
            if f.kind == FieldKind::UniqueKey {
                let set = plan.key(self.layout.value_set_key(
                    self.meta,
                    self.tenant(),
                    i,
                    self.segment(i),
                ));
                plan.checks.push(Check::Unique {
                    set,
                    field: i,
                    allowed: [self.key.clone(), also.unwrap_or(&self.key).to_owned()],
                    within: self.meta.unique_scope(i),
                });
            }
        }
    }
}
