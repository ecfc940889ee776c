//! Where one tenant's data of a model can be, from the model's layout alone: which keys are the
//! tenant's own (its value set, partitions carrying its segment), which index entries an
//! instance has by its own values (the entries its writes make), and whether an index key may
//! hold a member at all. Pure functions, no server.

use crate::keys::{IndexKind, Layout};
use crate::model::{FieldKind, ModelMeta, Record};
use crate::plan::{movable_partition_fields, IndexEntry, Instance};
use crate::tenant::TenantId;

/// Whether `member` is a canonical instance key of `meta` whose tenant segment is `tenant`.
pub(super) fn owned(
    layout: Layout,
    meta: &'static ModelMeta,
    tenant: &TenantId,
    member: &str,
) -> bool {
    let Some(tf) = meta.tenant else { return false };
    let Ok(segments) = layout.parse_instance_key(meta, member) else {
        return false;
    };
    let own = meta
        .key_fields
        .iter()
        .position(|&k| k == tf)
        .and_then(|p| segments.get(p))
        .is_some_and(|s| s == tenant.as_str());
    own && layout.instance_key(meta, &segments) == member
}

/// The key of field `field`'s partition `parts` (sorted or confidence field) in `tenant`'s
/// keyspace.
fn partition_key(
    layout: Layout,
    meta: &'static ModelMeta,
    tenant: Option<&str>,
    field: usize,
    parts: &[String],
) -> Option<String> {
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    match meta.fields[field].kind {
        FieldKind::Sorted => Some(layout.sorted_key(meta, tenant, field, &refs)),
        FieldKind::Confidence { .. } => layout.confidence_key(meta, tenant, field, &refs).ok(),
        _ => None,
    }
}

/// Whether index key `key` of `meta` may hold `member`, one of the model's instance keys: a
/// value set must be the one of the member's own value, and each partition segment given by a
/// key field (the tenant's above all) must be the member's own. Partition segments of non-key
/// fields, and the unpartitioned (legacy) key of a partitioned field, are free.
pub(super) fn index_fits(
    layout: Layout,
    meta: &'static ModelMeta,
    key: &str,
    member: &str,
) -> bool {
    let Ok(segments) = layout.parse_instance_key(meta, member) else {
        return false;
    };
    let own = |field: usize| {
        meta.key_fields
            .iter()
            .position(|&k| k == field)
            .and_then(|p| segments.get(p))
            .map(String::as_str)
    };
    let tenant = meta.tenant.and_then(own);
    match layout.parse_index_key(meta, key) {
        None => false,
        // The class set of the member's own keyspace.
        Some(IndexKind::Class) => layout.class_key(meta, tenant) == key,
        // The expiry set of the member's own tenant.
        Some(IndexKind::Expiry) => layout.expiry_key(meta, tenant) == key,
        Some(IndexKind::ValueSet(f)) => {
            own(f).is_some_and(|v| layout.value_set_key(meta, tenant, f, v) == key)
        }
        Some(IndexKind::Sorted(f)) | Some(IndexKind::Confidence(f)) => {
            let Some(parts) = layout.partition_of(meta, f, key) else {
                return false;
            };
            let by = meta.fields[f].partition_by;
            parts.is_empty()
                || (parts.len() == by.len()
                    && by
                        .iter()
                        .zip(&parts)
                        .all(|(&p, v)| !meta.fields[p].kind.is_key() || own(p) == Some(v))
                    && partition_key(layout, meta, tenant, f, &parts).is_some_and(|k| k == key))
        }
    }
}

/// The tenant's own index keys of `meta` known exactly: its value set, and the partitions of
/// fields partitioned by the tenant field alone (none for a model without tenant field).
/// Partitions with further segments are found by the keyspace sweep ([`sweep_patterns`]).
pub(super) fn exact_tenant_keys(
    layout: Layout,
    meta: &'static ModelMeta,
    tenant: &TenantId,
) -> Vec<(String, IndexKind)> {
    let Some(tf) = meta.tenant else {
        return Vec::new();
    };
    let t = tenant.as_str();
    let mut out = vec![(
        layout.value_set_key(meta, Some(t), tf, t),
        IndexKind::ValueSet(tf),
    )];
    for (i, f) in meta.fields.iter().enumerate() {
        let kind = match f.kind {
            FieldKind::Sorted => IndexKind::Sorted(i),
            FieldKind::Confidence { .. } => IndexKind::Confidence(i),
            _ => continue,
        };
        if f.partition_by == [tf] {
            if let Some(key) = partition_key(layout, meta, Some(t), i, &[t.to_owned()]) {
                out.push((key, kind));
            }
        }
    }
    if meta.expires() {
        out.push((layout.expiry_key(meta, Some(t)), IndexKind::Expiry));
    }
    out
}

/// The `SCAN MATCH` patterns of the keyspace sweep of `tenant` (see
/// [`Layout::tenant_patterns`]): with the raw tenant too when a companion partition with
/// several segments writes it unescaped.
pub(super) fn sweep_patterns(
    layout: Layout,
    metas: &[&'static ModelMeta],
    tenant: &TenantId,
) -> Vec<String> {
    let raw = metas.iter().any(|m| {
        m.fields.iter().any(|f| {
            matches!(f.kind, FieldKind::Confidence { .. })
                && f.partition_by.len() > 1
                && m.tenant.is_some_and(|tf| f.partition_by.contains(&tf))
        })
    });
    layout.tenant_patterns(tenant.as_str(), raw)
}

/// Whether `key` is one of `tenant`'s own index keys of `meta` (its value set, or a partition
/// whose tenant segment is the tenant's), and what it indexes.
pub(super) fn tenant_key_kind(
    layout: Layout,
    meta: &'static ModelMeta,
    tenant: &TenantId,
    key: &str,
) -> Option<IndexKind> {
    let tf = meta.tenant?;
    let t = tenant.as_str();
    let kind = layout.parse_index_key(meta, key)?;
    if layout == Layout::Cluster {
        // Every index key in the tenant's keyspace is the tenant's, whatever value it indexes.
        return (kind != IndexKind::Class && layout.in_keyspace(meta, Some(t), key))
            .then_some(kind);
    }
    let ok = match kind {
        IndexKind::Class => false,
        IndexKind::Expiry => layout.expiry_key(meta, Some(t)) == key,
        IndexKind::ValueSet(f) => f == tf && layout.value_set_key(meta, Some(t), tf, t) == key,
        IndexKind::Sorted(f) | IndexKind::Confidence(f) => {
            let by = meta.fields[f].partition_by;
            let pos = by.iter().position(|&p| p == tf);
            let parts = layout.partition_of(meta, f, key);
            match (pos, parts) {
                (Some(pos), Some(parts)) => {
                    parts.len() == by.len()
                        && parts[pos] == t
                        && partition_key(layout, meta, Some(t), f, &parts).is_some_and(|k| k == key)
                }
                _ => false,
            }
        }
    };
    ok.then_some(kind)
}

/// A record holding the key fields' `segments` (in instance-key order) and the `stored`
/// segments of movable partition fields: what an instance's index keys are built from.
pub(super) fn key_record(
    meta: &'static ModelMeta,
    segments: &[String],
    stored: &[(usize, String)],
) -> Record {
    let mut record = Record::of_key(meta, segments);
    for (f, seg) in stored {
        record.segments[*f] = Some(seg.clone());
    }
    record
}

/// The instance at `member` (key `segments`) rendered from `record`.
pub(super) fn instance<'r>(
    layout: Layout,
    meta: &'static ModelMeta,
    member: &str,
    segments: &'r [String],
    record: &'r Record,
) -> Instance<'r> {
    Instance {
        layout,
        meta,
        key: member.to_owned(),
        record,
        hidden_key: meta
            .has_hidden_key()
            .then(|| segments.first().map(String::as_str))
            .flatten(),
    }
}

/// The index entries the instance at `member` has by its own values: what its writes put in
/// `$Class`, its value sets, sorted sets and companion hashes (the plan of a save). `stored`
/// gives the segments of its movable partition fields (non-key fields that partition an
/// index), read from its hash; without them (no hash) the entries they decide are left out.
pub(super) fn derived_entries(
    layout: Layout,
    meta: &'static ModelMeta,
    member: &str,
    stored: Option<&[(usize, String)]>,
) -> Vec<IndexEntry> {
    let Ok(segments) = layout.parse_instance_key(meta, member) else {
        return Vec::new();
    };
    let record = key_record(meta, &segments, stored.unwrap_or_default());
    let movable = movable_partition_fields(meta);
    let inst = instance(layout, meta, member, &segments, &record);
    let Ok(entries) = inst.index_entries() else {
        return Vec::new();
    };
    entries
        .into_iter()
        .filter(|e| {
            stored.is_some()
                || match layout.parse_index_key(meta, e.key()) {
                    Some(IndexKind::Sorted(f)) | Some(IndexKind::Confidence(f)) => !meta.fields[f]
                        .partition_by
                        .iter()
                        .any(|p| movable.contains(p)),
                    _ => true,
                }
        })
        .collect()
}

/// The unpartitioned (legacy, pre-migration) keys of partitioned sorted and confidence fields:
/// an instance's entry may still be there.
pub(super) fn legacy_keys(
    layout: Layout,
    meta: &'static ModelMeta,
    tenant: Option<&str>,
) -> Vec<(String, IndexKind)> {
    let mut out = Vec::new();
    for (i, f) in meta.fields.iter().enumerate() {
        if f.partition_by.is_empty() {
            continue;
        }
        match f.kind {
            FieldKind::Sorted => out.push((
                layout.sorted_key(meta, tenant, i, &[]),
                IndexKind::Sorted(i),
            )),
            FieldKind::Confidence { .. } => {
                if let Ok(k) = layout.confidence_key(meta, tenant, i, &[]) {
                    out.push((k, IndexKind::Confidence(i)));
                }
            }
            _ => {}
        }
    }
    out
}
