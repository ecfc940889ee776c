//! Plans of single index entries, for maintenance and lifecycle: the removal of an entry
//! whose instance is gone, the move of an entry between partitions, and the write of an
//! imported hash. Pure, like every plan.

use crate::keys::IndexKind;
use crate::model::ModelMeta;

use super::{Check, Instance, Plan, Write};

/// The write removing `member` from the index key at plan key `key`, of kind `kind`.
pub(crate) fn removal(kind: IndexKind, key: usize, member: &str) -> Write {
    let member = member.to_owned();
    match kind {
        IndexKind::Class | IndexKind::ValueSet(_) => Write::SRem { key, member },
        IndexKind::Sorted(_) | IndexKind::Expiry => Write::ZRem { key, member },
        IndexKind::Confidence(_) => Write::HDel { key, field: member },
    }
}

/// The plan removing `member` from index key `index` (of kind `kind`) unless an instance
/// exists at `member`.
pub(crate) fn remove_orphan(index: &str, member: &str, kind: IndexKind) -> Plan {
    let mut plan = Plan::default();
    let m = plan.key(member.to_owned());
    let k = plan.key(index.to_owned());
    plan.checks.push(Check::Absent(m));
    plan.writes.push(removal(kind, k, member));
    plan.add_type_checks();
    plan
}

/// The plan removing `member` from index key `index` (of kind `kind`) whatever it names: a
/// member naming a key of another keyspace never belongs in this one's index (cluster layout),
/// and its key is in another slot, so it is not read.
pub(crate) fn remove_member(index: &str, member: &str, kind: IndexKind) -> Plan {
    let mut plan = Plan::default();
    let k = plan.key(index.to_owned());
    plan.writes.push(removal(kind, k, member));
    plan.add_type_checks();
    plan
}

/// Checks that the stored values of fields `fields` of the instance at plan key `member` are
/// still `raw` (as read earlier; `None`: absent).
pub(crate) fn field_checks(
    plan: &mut Plan,
    meta: &ModelMeta,
    member: usize,
    fields: &[usize],
    raw: &[Option<Vec<u8>>],
) {
    for (j, &p) in fields.iter().enumerate() {
        plan.checks.push(Check::Field {
            key: member,
            field: meta.fields[p].name.to_owned(),
            value: raw.get(j).cloned().flatten(),
        });
    }
}

/// Where a partition migration moves an entry to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Moved {
    /// A confidence companion entry (kept if the destination holds one).
    Confidence,
    /// A sorted-set member with its score (kept if the destination holds it).
    Sorted,
}

/// The plan moving `member`'s entry from `from` to `to`, checked: the instance exists and the
/// values of `fields` it was partitioned by are still `raw`.
pub(crate) fn move_entry(
    meta: &ModelMeta,
    what: Moved,
    (member, from, to): (&str, &str, &str),
    fields: &[usize],
    raw: &[Option<Vec<u8>>],
) -> Plan {
    let mut plan = Plan::default();
    let m = plan.key(member.to_owned());
    let (from, to) = (plan.key(from.to_owned()), plan.key(to.to_owned()));
    plan.checks.push(Check::Present(m));
    field_checks(&mut plan, meta, m, fields, raw);
    plan.writes.push(match what {
        Moved::Confidence => Write::HMoveNx {
            from,
            from_field: member.to_owned(),
            to,
            to_field: member.to_owned(),
        },
        Moved::Sorted => Write::ZMoveNx {
            from,
            to,
            member: member.to_owned(),
        },
    });
    plan.add_type_checks();
    plan
}

/// The plan writing an imported hash `pairs` of `inst`: absent or already exactly these
/// fields (an import run again), and no other instance holding its unique values.
pub(crate) fn import(inst: &Instance<'_>, pairs: Vec<(String, Vec<u8>)>) -> Plan {
    let mut plan = Plan::default();
    let k = plan.key(inst.key.clone());
    plan.checks.push(Check::Same {
        key: k,
        pairs: pairs.clone(),
    });
    inst.unique_checks(&mut plan, None);
    plan.writes.push(Write::HSet { key: k, pairs });
    plan
}

/// The plan moving the misplaced entry `member` of `index` (of kind `kind`) to `expected`,
/// checked as [`move_entry`]: confidence and expiry entries move (an expiry time cannot be
/// derived again; confidence data is kept unless its partition has an entry); other entries
/// are dropped here and re-added where they belong by the instance phase of the check.
pub(crate) fn misplaced(
    meta: &ModelMeta,
    kind: IndexKind,
    (member, index, expected): (&str, &str, &str),
    fields: &[usize],
    raw: &[Option<Vec<u8>>],
) -> Plan {
    let mut plan = Plan::default();
    let m = plan.key(member.to_owned());
    let k = plan.key(index.to_owned());
    let to = match kind {
        IndexKind::Confidence(_) | IndexKind::Expiry => plan.key(expected.to_owned()),
        _ => k,
    };
    plan.checks.push(Check::Present(m));
    field_checks(&mut plan, meta, m, fields, raw);
    plan.writes.push(match kind {
        IndexKind::Expiry => Write::ZRename {
            from: k,
            to,
            from_member: member.to_owned(),
            to_member: member.to_owned(),
        },
        IndexKind::Confidence(_) => Write::HMoveNx {
            from: k,
            from_field: member.to_owned(),
            to,
            to_field: member.to_owned(),
        },
        _ => removal(kind, k, member),
    });
    plan.add_type_checks();
    plan
}

/// The plan restoring the index entries `missing` (writes of `expected`, the plan of every
/// entry of the instance at `member`), checked: the instance exists and the values of
/// `fields` it is partitioned by are still `raw`.
pub(crate) fn restore(
    meta: &ModelMeta,
    member: &str,
    (fields, raw): (&[usize], &[Option<Vec<u8>>]),
    expected: &Plan,
    missing: &[&Write],
) -> Plan {
    let mut plan = Plan::default();
    let k = plan.key(member.to_owned());
    plan.checks.push(Check::Present(k));
    field_checks(&mut plan, meta, k, fields, raw);
    for w in missing {
        let w = match (*w).clone() {
            Write::SAdd { key, member } => Write::SAdd {
                key: plan.key(expected.keys[key].clone()),
                member,
            },
            Write::ZAdd { key, score, member } => Write::ZAdd {
                key: plan.key(expected.keys[key].clone()),
                score,
                member,
            },
            Write::HSetNx { key, field, value } => Write::HSetNx {
                key: plan.key(expected.keys[key].clone()),
                field,
                value,
            },
            other => other,
        };
        plan.writes.push(w);
    }
    plan.add_type_checks();
    plan
}
