//! Reading one tenant's footprint in a model set, at a cost that follows the tenant's data.
//!
//! The tenant's own index keys (its value set, partitions carrying its segment) hold only its
//! entries: they are read whole and name the candidates for its instances. With
//! [`Sweep::Keyspace`] (the default), one `SCAN MATCH` pass over the keyspace adds keys of the
//! tenant no index names (hashes missing from its value set, partitions with further segments):
//! every key with a segment starting with the tenant's, checked exactly on the client. Index
//! keys of the whole model (`$Class`, unpartitioned sorted sets and companion hashes, value sets
//! of other fields) are never scanned: an instance's entries there are derived from its own
//! values ([`super::layout::derived_entries`]) and probed one by one.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde_bytes::ByteBuf;

use super::layout;
use super::{ExportRecord, Sweep};
use crate::backend::{Backend, KeyScan};
use crate::error::{Error, Result};
use crate::keys::{IndexKind, Layout};
use crate::model::ModelMeta;
use crate::tenant::TenantId;

/// Keys asked per `SCAN` call: one call walks about this many keys on the server (under a
/// millisecond, so other clients barely wait), and the keyspace costs one round trip per this
/// many keys.
pub(super) const SCAN_COUNT: usize = 1000;

/// Members asked per `SSCAN`/`ZSCAN`/`HSCAN` call of a tenant index key.
const MEMBER_COUNT: usize = 1000;

/// What one member holds in an index key: a set membership, a score, a companion entry.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Held {
    /// A set member.
    Set,
    /// A sorted-set member with its score.
    Score(f64),
    /// A companion-hash entry with its raw value.
    Value(Vec<u8>),
}

impl Held {
    /// The export record of `member` holding this in `key`.
    pub(super) fn record(self, key: String, member: String) -> ExportRecord {
        match self {
            Held::Set => ExportRecord::SetMember { key, member },
            Held::Score(score) => ExportRecord::ZSetMember { key, member, score },
            Held::Value(v) => ExportRecord::HashEntry {
                key,
                field: member,
                value: ByteBuf::from(v),
            },
        }
    }
}

/// One entry of a tenant's own index key.
#[derive(Debug, Clone)]
pub(super) struct OwnEntry {
    /// The index key.
    pub key: String,
    /// What the member holds there.
    pub held: Held,
}

/// What was read of one tenant in one model.
#[derive(Debug, Default)]
pub(super) struct ModelFootprint {
    /// Canonical instance keys of the tenant found in its index keys or by `SCAN`, sorted.
    pub candidates: BTreeSet<String>,
    /// The tenant's own index keys that exist, with what they index.
    pub own_keys: Vec<(String, IndexKind)>,
    /// Entries of the tenant's members in its own index keys, by member (sorted, so that what
    /// is derived from them comes in the same order in every process).
    pub own_entries: BTreeMap<String, Vec<OwnEntry>>,
    /// The index keys read whole (existing or not): an instance's entries there are in
    /// `own_entries`, its other entries are probed.
    pub read_whole: HashSet<String>,
}

/// Reads the footprint of `tenant` in each of `metas` (models with a tenant field).
pub(super) async fn read(
    backend: &Backend,
    metas: &[&'static ModelMeta],
    tenant: &TenantId,
    sweep: Sweep,
) -> Result<Vec<ModelFootprint>> {
    let found = match sweep {
        Sweep::Keyspace if !metas.is_empty() => {
            scan_all(
                backend,
                &layout::sweep_patterns(backend.layout(), metas, tenant),
            )
            .await?
        }
        _ => BTreeSet::new(),
    };
    let mut out = Vec::with_capacity(metas.len());
    for &meta in metas {
        let mut fp = ModelFootprint::default();
        let mut index_keys = layout::exact_tenant_keys(backend.layout(), meta, tenant);
        for key in &found {
            if layout::owned(backend.layout(), meta, tenant, key) {
                fp.candidates.insert(key.clone());
            } else if let Some(kind) = layout::tenant_key_kind(backend.layout(), meta, tenant, key)
            {
                if !index_keys.iter().any(|(k, _)| k == key) {
                    index_keys.push((key.clone(), kind));
                }
            }
        }
        fp.read_whole = index_keys.iter().map(|(k, _)| k.clone()).collect();
        read_own_keys(backend, meta, tenant, index_keys, &mut fp).await?;
        out.push(fp);
    }
    Ok(out)
}

/// Runs every pattern's `SCAN` as a parallel cursor, one pipeline per page (on a cluster, one
/// pattern after the other over every master); returns the distinct matches.
async fn scan_all(backend: &Backend, patterns: &[String]) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    if backend.is_cluster() {
        // A keyless pipeline reaches one node: each pattern scans every master instead.
        for p in patterns {
            out.extend(
                KeyScan::new(p, SCAN_COUNT)
                    .collect(backend, "scan", "-")
                    .await?,
            );
        }
        return Ok(out);
    }
    let mut cursors: Vec<Option<u64>> = vec![Some(0); patterns.len()];
    loop {
        let active: Vec<(usize, u64)> = cursors
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.map(|c| (i, c)))
            .collect();
        if active.is_empty() {
            return Ok(out);
        }
        let mut pipe = redis::pipe();
        for &(i, cursor) in &active {
            pipe.cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&patterns[i])
                .arg("COUNT")
                .arg(SCAN_COUNT);
        }
        let pages: Vec<(u64, Vec<Vec<u8>>)> = backend.pipeline("scan", "-", &pipe).await?;
        for ((i, _), (next, keys)) in active.into_iter().zip(pages) {
            out.extend(keys.into_iter().filter_map(|k| String::from_utf8(k).ok()));
            cursors[i] = (next != 0).then_some(next);
        }
    }
}

fn scan_command(kind: IndexKind) -> &'static str {
    match kind {
        IndexKind::Class | IndexKind::ValueSet(_) => "SSCAN",
        IndexKind::Sorted(_) | IndexKind::Expiry => "ZSCAN",
        IndexKind::Confidence(_) => "HSCAN",
    }
}

/// Reads every member of the tenant's own index keys (the first page of each in one pipeline,
/// further pages key by key), keeping the tenant's canonical instance keys; a key of another
/// Redis type than its index kind is not one of ours and is skipped.
pub(super) async fn read_own_keys(
    backend: &Backend,
    meta: &'static ModelMeta,
    tenant: &TenantId,
    index_keys: Vec<(String, IndexKind)>,
    fp: &mut ModelFootprint,
) -> Result<()> {
    if index_keys.is_empty() {
        return Ok(());
    }
    let tf = meta.tenant;
    let member_pattern = backend
        .layout()
        .instance_match(meta, Some(tenant.as_str()), &|i| {
            (Some(i) == tf).then_some(tenant.as_str())
        });
    let page = |key: &str, kind: IndexKind, cursor: u64| {
        redis::cmd(scan_command(kind))
            .arg(key)
            .arg(cursor)
            .arg("MATCH")
            .arg(&member_pattern)
            .arg("COUNT")
            .arg(MEMBER_COUNT)
            .clone()
    };
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for (key, kind) in &index_keys {
        pipe.add_command(page(key, *kind, 0));
        pipe.cmd("EXISTS").arg(key);
    }
    let replies: Vec<redis::RedisResult<redis::Value>> =
        backend.pipeline("scan", meta.name, &pipe).await?;
    let mut replies = replies.into_iter();
    for (key, kind) in index_keys {
        let first = replies.next();
        let exists = replies.next();
        let Some(Ok(first)) = first else { continue };
        let Ok((mut next, mut flat)) = redis::from_redis_value::<(u64, Vec<Vec<u8>>)>(first) else {
            continue;
        };
        if matches!(exists, Some(Ok(redis::Value::Int(1)))) {
            fp.own_keys.push((key.clone(), kind));
        }
        loop {
            take_members(backend.layout(), meta, tenant, &key, kind, flat, fp)?;
            if next == 0 {
                break;
            }
            (next, flat) = backend
                .query("scan", meta.name, &page(&key, kind, next))
                .await?;
        }
    }
    Ok(())
}

/// Adds one page of a tenant index key's members (flat `SCAN`-family reply) to `fp`.
fn take_members(
    layout: Layout,
    meta: &'static ModelMeta,
    tenant: &TenantId,
    key: &str,
    kind: IndexKind,
    flat: Vec<Vec<u8>>,
    fp: &mut ModelFootprint,
) -> Result<()> {
    let pairs = !matches!(kind, IndexKind::Class | IndexKind::ValueSet(_));
    let mut it = flat.into_iter();
    while let Some(member) = it.next() {
        let payload = if pairs { it.next() } else { None };
        let Ok(member) = String::from_utf8(member) else {
            continue;
        };
        if !layout::owned(layout, meta, tenant, &member) {
            continue;
        }
        let held = match (kind, payload) {
            (IndexKind::Sorted(_) | IndexKind::Expiry, Some(score)) => {
                let score = String::from_utf8_lossy(&score)
                    .parse::<f64>()
                    .map_err(|e| Error::Decode {
                        model: meta.name,
                        key: key.to_owned(),
                        field: member.clone(),
                        reason: e.to_string(),
                    })?;
                Held::Score(score)
            }
            (IndexKind::Confidence(_), Some(value)) => Held::Value(value),
            _ => Held::Set,
        };
        fp.candidates.insert(member.clone());
        let entries = fp.own_entries.entry(member).or_default();
        if !entries.iter().any(|e| e.key == key) {
            entries.push(OwnEntry {
                key: key.to_owned(),
                held,
            });
        }
    }
    Ok(())
}

/// Which of `entries` (index entries of instance `member` outside the tenant's own keys) are
/// present, with what they hold: one pipeline of `SISMEMBER`/`ZSCORE`/`HGET` for all the
/// members of a chunk. Wrong-type keys answer nothing.
pub(super) async fn probe(
    backend: &Backend,
    meta: &'static ModelMeta,
    entries: &[(String, String, IndexKind)],
) -> Result<Vec<Option<Held>>> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for (key, member, kind) in entries {
        match kind {
            IndexKind::Class | IndexKind::ValueSet(_) => pipe.cmd("SISMEMBER").arg(key).arg(member),
            IndexKind::Sorted(_) | IndexKind::Expiry => pipe.cmd("ZSCORE").arg(key).arg(member),
            IndexKind::Confidence(_) => pipe.cmd("HGET").arg(key).arg(member),
        };
    }
    let replies: Vec<redis::RedisResult<redis::Value>> =
        backend.pipeline("probe", meta.name, &pipe).await?;
    let mut out = Vec::with_capacity(entries.len());
    for ((key, member, kind), reply) in entries.iter().zip(replies) {
        let Ok(v) = reply else {
            out.push(None);
            continue;
        };
        out.push(match kind {
            IndexKind::Class | IndexKind::ValueSet(_) => {
                (redis::from_redis_value::<i64>(v).ok() == Some(1)).then_some(Held::Set)
            }
            IndexKind::Sorted(_) | IndexKind::Expiry => {
                match redis::from_redis_value::<Option<String>>(v) {
                    Ok(Some(s)) => Some(Held::Score(s.parse::<f64>().map_err(|e| {
                        Error::Decode {
                            model: meta.name,
                            key: key.clone(),
                            field: member.clone(),
                            reason: e.to_string(),
                        }
                    })?)),
                    _ => None,
                }
            }
            IndexKind::Confidence(_) => redis::from_redis_value::<Option<Vec<u8>>>(v)
                .ok()
                .flatten()
                .map(Held::Value),
        });
    }
    Ok(out)
}
