//! Plans of the writes of one instance: create or save, delete, key move, and the guards of
//! read-modify-write. Pure: built from the model's meta, the rendered record and what was read
//! before (the stored partition values, the version), unit-tested without a server.

use std::collections::HashMap;

use crate::error::Result;
use crate::keys::Layout;
use crate::model::{FieldKind, Model, ModelMeta, Record};

use super::{movable_partition_fields, Check, Instance, Plan, Write};

/// The instance a plan writes: its model, its Redis key, and how a stored partition value
/// decodes into its key segment.
pub(crate) struct Target<'a> {
    /// How the keys are laid out.
    pub layout: Layout,
    /// The model.
    pub meta: &'static ModelMeta,
    /// The instance key.
    pub key: &'a str,
    /// The key segment of stored bytes of a field (`Model::segment_from_stored`).
    pub segment: fn(&str, usize, &[u8]) -> Result<String>,
}

impl<'a> Target<'a> {
    /// The instance of model `M` at `key`, laid out as `layout`.
    pub fn of<M: Model>(layout: Layout, key: &'a str) -> Target<'a> {
        Target {
            layout,
            meta: M::META,
            key,
            segment: M::segment_from_stored,
        }
    }
}

/// The stored values of an instance's movable partition fields, read before a write.
pub(crate) struct Stored {
    /// Raw bytes of each movable partition field (`None`: absent).
    pub raw: Vec<(usize, Option<Vec<u8>>)>,
    /// Not read but assumed equal to the value being written (the common update that moves
    /// nothing): the plan then checks the assumption instead of moving entries.
    pub assumed: bool,
}

impl Stored {
    /// Nothing stored to move (no movable field, or a create).
    pub fn none(meta: &ModelMeta) -> Stored {
        Stored {
            raw: movable_partition_fields(meta)
                .into_iter()
                .map(|f| (f, None))
                .collect(),
            assumed: false,
        }
    }

    /// The stored partition values assumed equal to `record`'s (checked by the plan).
    pub fn assumed(meta: &ModelMeta, record: &Record) -> Stored {
        Stored {
            raw: movable_partition_fields(meta)
                .into_iter()
                .map(|f| (f, record.values.get(f).cloned()))
                .collect(),
            assumed: true,
        }
    }

    /// The partition checks of a write of plan key `k`: the stored values are these (or, when
    /// assumed, the instance is new or holds them); returns the key segment of each value.
    fn checks(
        &self,
        target: &Target<'_>,
        plan: &mut Plan,
        k: usize,
    ) -> Result<Vec<(usize, String)>> {
        let mut segments = Vec::new();
        for (f, raw) in &self.raw {
            let field = target.meta.fields[*f].name.to_owned();
            plan.checks.push(match self.assumed {
                true => Check::FieldOrNew {
                    key: k,
                    field,
                    value: raw.clone().unwrap_or_default(),
                },
                false => Check::Field {
                    key: k,
                    field,
                    value: raw.clone(),
                },
            });
            if let Some(raw) = raw {
                segments.push((*f, (target.segment)(target.key, *f, raw)?));
            }
        }
        Ok(segments)
    }
}

/// Adds the check that the stored version of the instance at plan key `k` is `version`.
pub(crate) fn version_check(plan: &mut Plan, meta: &ModelMeta, k: usize, version: Option<u64>) {
    if let (Some(expected), Some(f)) = (version, meta.version) {
        plan.checks.push(Check::Version {
            key: k,
            field: meta.fields[f].name.to_owned(),
            expected,
        });
    }
}

/// The plan of a create (`create`: the key must be absent) or save of `record`, given the
/// stored partition values; with `version`, the stored version must be that one.
pub(crate) fn save(
    target: &Target<'_>,
    create: bool,
    record: &Record,
    hidden: Option<&str>,
    stored: &Stored,
    version: Option<u64>,
) -> Result<Plan> {
    let (meta, redis_key) = (target.meta, target.key);
    let inst = Instance {
        layout: target.layout,
        meta,
        key: redis_key.to_owned(),
        record,
        hidden_key: hidden,
    };
    let mut plan = Plan::default();
    let k = plan.key(redis_key.to_owned());
    if create {
        plan.checks.push(Check::Absent(k));
    }
    version_check(&mut plan, meta, k, version);
    inst.unique_checks(&mut plan, None);
    // Moves out of partitions whose (non-key) partition value changed.
    let read = stored.checks(target, &mut plan, k)?;
    // Assumed values are the record's own: nothing moves.
    let old_segments: HashMap<usize, String> = match stored.assumed {
        true => HashMap::new(),
        false => read.into_iter().collect(),
    };
    let mut moves = Vec::new();
    if !old_segments.is_empty() {
        let mut old = record.clone();
        for (f, s) in &old_segments {
            old.segments[*f] = Some(s.clone());
        }
        let old_inst = Instance {
            layout: target.layout,
            meta,
            key: redis_key.to_owned(),
            record: &old,
            hidden_key: hidden,
        };
        for (i, f) in meta.fields.iter().enumerate() {
            if !f.partition_by.iter().any(|p| old_segments.contains_key(p)) {
                continue;
            }
            match f.kind {
                FieldKind::Sorted => {
                    let (from, to) = (old_inst.sorted_key(i), inst.sorted_key(i));
                    if from != to {
                        let z = plan.key(from);
                        moves.push(Write::ZRem {
                            key: z,
                            member: redis_key.to_owned(),
                        });
                    }
                }
                FieldKind::Confidence { .. } => {
                    let (from, to) = (old_inst.confidence_key(i)?, inst.confidence_key(i)?);
                    if from != to {
                        let (from, to) = (plan.key(from), plan.key(to));
                        moves.push(Write::HMove {
                            from,
                            from_field: redis_key.to_owned(),
                            to,
                            to_field: redis_key.to_owned(),
                        });
                    }
                }
                _ => {}
            }
        }
    }
    plan.writes.push(Write::HSet {
        key: k,
        pairs: inst.hash_pairs(),
    });
    plan.writes.extend(moves);
    inst.add_indexes(&mut plan)?;
    plan.add_type_checks();
    Ok(plan)
}

/// The plan deleting the instance whose key has `segments` (key-field order), given its
/// stored partition values (and, with `version`, only if the stored version is that one);
/// also the record of what it removes (key and partition segments).
pub(crate) fn delete(
    target: &Target<'_>,
    segments: &[String],
    stored: &Stored,
    version: Option<u64>,
) -> Result<(Plan, Record)> {
    let (meta, redis_key) = (target.meta, target.key);
    let mut record = Record::of_key(meta, segments);
    let hidden = meta
        .has_hidden_key()
        .then(|| segments.first().map(String::as_str))
        .flatten();
    let mut plan = Plan::default();
    let k = plan.key(redis_key.to_owned());
    version_check(&mut plan, meta, k, version);
    plan.writes.push(Write::Del { key: k });
    let read = stored.checks(target, &mut plan, k)?;
    for (f, _) in &stored.raw {
        record.segments[*f] = Some("None".to_owned());
    }
    for (f, segment) in read {
        record.segments[f] = Some(segment);
    }
    let inst = Instance {
        layout: target.layout,
        meta,
        key: redis_key.to_owned(),
        record: &record,
        hidden_key: hidden,
    };
    inst.remove_indexes(&mut plan, true)?;
    plan.add_type_checks();
    Ok((plan, record))
}

/// The plan moving the instance at `old` (rendered as `old_record`) to the key of `new` with
/// the values of `new_record`: the hash, every index entry, its confidence and expiry entries,
/// given the old instance's stored partition values; with `version`, only at that version.
pub(crate) fn relocate(
    old: &Target<'_>,
    old_record: &Record,
    new_key: &str,
    new_record: &Record,
    stored: &Stored,
    version: Option<u64>,
) -> Result<Plan> {
    let meta = old.meta;
    let (old_redis, new_redis) = (old.key.to_owned(), new_key.to_owned());
    let mut plan = Plan::default();
    let ko = plan.key(old_redis.clone());
    let kn = plan.key(new_redis.clone());
    plan.checks.push(Check::Present(ko));
    plan.checks.push(Check::Absent(kn));
    version_check(&mut plan, meta, ko, version);
    let mut previous = old_record.clone();
    for (f, segment) in stored.checks(old, &mut plan, ko)? {
        previous.segments[f] = Some(segment);
    }
    let old_inst = Instance {
        layout: old.layout,
        meta,
        key: old_redis.clone(),
        record: &previous,
        hidden_key: None,
    };
    let new_inst = Instance {
        layout: old.layout,
        meta,
        key: new_redis.clone(),
        record: new_record,
        hidden_key: None,
    };
    new_inst.unique_checks(&mut plan, Some(&old_redis));
    plan.writes.push(Write::Rename { from: ko, to: kn });
    plan.writes.push(Write::HSet {
        key: kn,
        pairs: new_inst.hash_pairs(),
    });
    old_inst.remove_indexes(&mut plan, false)?;
    for (i, f) in meta.fields.iter().enumerate() {
        if let FieldKind::Confidence { .. } = f.kind {
            let from = plan.key(old_inst.confidence_key(i)?);
            let to = plan.key(new_inst.confidence_key(i)?);
            plan.writes.push(Write::HMove {
                from,
                from_field: old_redis.clone(),
                to,
                to_field: new_redis.clone(),
            });
        }
    }
    // The hash keeps its expiry through RENAME: so does its expiry entry (a new expiry given
    // by the new record then replaces it).
    if meta.expires() {
        let from = plan.key(old_inst.expiry_key());
        let to = plan.key(new_inst.expiry_key());
        plan.writes.push(Write::ZRename {
            from,
            to,
            from_member: old_redis.clone(),
            to_member: new_redis.clone(),
        });
    }
    new_inst.add_indexes(&mut plan)?;
    plan.add_type_checks();
    Ok(plan)
}

/// Guards a read-modify-write plan of the instance at `key`: it must still exist and, when
/// the model has no version, still hold exactly `read` (every field and bytes read).
pub(crate) fn guard_update(plan: &mut Plan, key: &str, read: Option<Vec<(String, Vec<u8>)>>) {
    let k = plan.key(key.to_owned());
    let mut checks = vec![Check::Present(k)];
    if let Some(pairs) = read {
        checks.push(Check::Same { key: k, pairs });
    }
    plan.checks.splice(0..0, checks);
}
