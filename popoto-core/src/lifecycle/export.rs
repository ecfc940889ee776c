//! Export of one tenant's instances and index entries, model by model.

use std::collections::HashSet;
use std::io::Write;

use serde_bytes::ByteBuf;

use super::footprint::{self, ModelFootprint};
use super::layout;
use super::{Entry, ExportRecord};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::keys::{IndexKind, Layout};
use crate::model::ModelMeta;
use crate::plan::movable_partition_fields;
use crate::tenant::TenantId;
use crate::verify::{self, Skip};

/// Instances read (`HGETALL`) and probed per pipeline.
const CHUNK: usize = 500;

/// The msgpack stream being written, with its record count.
pub(super) struct Writer<W> {
    out: W,
    records: u64,
}

impl<W: Write> Writer<W> {
    pub(super) fn new(out: W) -> Self {
        Writer { out, records: 0 }
    }

    /// Writes one record.
    pub(super) fn emit(&mut self, record: &ExportRecord) -> Result<()> {
        rmp_serde::encode::write_named(&mut self.out, record)
            .map_err(|e| Error::Stream(e.to_string()))?;
        self.records += 1;
        Ok(())
    }

    /// Writes the end record and flushes; returns the number of records written.
    pub(super) fn finish(mut self) -> Result<u64> {
        let records = self.records;
        self.emit(&ExportRecord::End { records })?;
        self.out
            .flush()
            .map_err(|e| Error::Stream(format!("writing: {e}")))?;
        Ok(self.records)
    }
}

/// Index entries of `member` outside the keys read whole (`read_whole`) that its key (and
/// `stored` partition values) derive, plus the existing legacy keys: what to probe.
pub(super) fn shared_entries(
    layout: Layout,
    meta: &'static ModelMeta,
    read_whole: &HashSet<String>,
    member: &str,
    stored: Option<&[(usize, String)]>,
    legacy: &[(String, IndexKind)],
) -> Vec<(String, String, IndexKind)> {
    let mut out: Vec<(String, String, IndexKind)> =
        layout::derived_entries(layout, meta, member, stored)
            .into_iter()
            .filter_map(|e| {
                let key = e.key().to_owned();
                let kind = layout.parse_index_key(meta, &key)?;
                (!read_whole.contains(&key)).then(|| (key, member.to_owned(), kind))
            })
            .collect();
    out.extend(
        legacy
            .iter()
            .map(|(k, kind)| (k.clone(), member.to_owned(), *kind)),
    );
    out
}

/// The legacy (unpartitioned) keys of `meta` in `tenant`'s keyspace that exist.
pub(super) async fn existing_legacy(
    backend: &Backend,
    meta: &'static ModelMeta,
    tenant: &TenantId,
) -> Result<Vec<(String, IndexKind)>> {
    let legacy = layout::legacy_keys(backend.layout(), meta, Some(tenant.as_str()));
    if legacy.is_empty() {
        return Ok(legacy);
    }
    let mut pipe = redis::pipe();
    for (k, _) in &legacy {
        pipe.cmd("EXISTS").arg(k);
    }
    let exists: Vec<i64> = backend.pipeline("export", meta.name, &pipe).await?;
    Ok(legacy
        .into_iter()
        .zip(exists)
        .filter(|(_, e)| *e == 1)
        .map(|(k, _)| k)
        .collect())
}

/// What one candidate turned out to be.
enum Found {
    /// An instance of the tenant: its fields and the stored segments of its movable partition
    /// fields (`None` if one cannot be decoded).
    Instance(Vec<(Vec<u8>, Vec<u8>)>, Option<Vec<(usize, String)>>),
    /// No key: index entries without an instance.
    Loose,
    /// Not an instance of the tenant.
    Skipped(Skip),
}

/// Classifies one `HGETALL` reply of candidate `key`.
fn classify(e: &Entry, key: &str, want: &[u8], reply: redis::RedisResult<redis::Value>) -> Found {
    let meta = e.meta;
    let fields = reply
        .ok()
        .and_then(|v| redis::from_redis_value::<Vec<(Vec<u8>, Vec<u8>)>>(v).ok());
    let Some(fields) = fields else {
        return Found::Skipped(Skip::ForeignStored);
    };
    if fields.is_empty() {
        return Found::Loose;
    }
    let field_bytes = |i: usize| {
        let name = meta.fields[i].name.as_bytes();
        fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    };
    if meta.tenant.and_then(field_bytes).map(Vec::as_slice) != Some(want) {
        return Found::Skipped(Skip::ForeignStored);
    }
    let stored = movable_partition_fields(meta)
        .into_iter()
        .map(|f| match field_bytes(f) {
            Some(raw) => (e.segment)(key, f, raw).ok().map(|s| (f, s)),
            None => Some((f, "None".to_owned())),
        })
        .collect::<Option<Vec<_>>>();
    Found::Instance(fields, stored)
}

/// Exports model `e` of `tenant`: each instance followed by its index entries, then the
/// entries of instance keys without an instance.
pub(super) async fn model<W: Write>(
    backend: &Backend,
    e: &Entry,
    tenant: &TenantId,
    mut fp: ModelFootprint,
    w: &mut Writer<W>,
) -> Result<()> {
    let meta = e.meta;
    let Some(tf) = meta.tenant else { return Ok(()) };
    let want = (e.tenant_bytes)(tf, tenant.as_str())?;
    let legacy = existing_legacy(backend, meta, tenant).await?;
    let candidates: Vec<String> = std::mem::take(&mut fp.candidates).into_iter().collect();
    let mut loose: Vec<ExportRecord> = Vec::new();
    let mut skipped: Vec<(String, Skip)> = Vec::new();
    for chunk in candidates.chunks(CHUNK) {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for k in chunk {
            pipe.cmd("HGETALL").arg(k);
        }
        let replies: Vec<redis::RedisResult<redis::Value>> =
            backend.pipeline("export", meta.name, &pipe).await?;
        let found: Vec<Found> = chunk
            .iter()
            .zip(replies)
            .map(|(k, r)| classify(e, k, &want, r))
            .collect();
        // Entries outside the tenant's own keys, probed for the whole chunk at once.
        let mut probes = Vec::new();
        let mut spans = Vec::with_capacity(chunk.len());
        for (k, f) in chunk.iter().zip(&found) {
            let start = probes.len();
            match f {
                Found::Instance(_, stored) => probes.extend(shared_entries(
                    backend.layout(),
                    meta,
                    &fp.read_whole,
                    k,
                    stored.as_deref(),
                    &legacy,
                )),
                Found::Loose => probes.extend(shared_entries(
                    backend.layout(),
                    meta,
                    &fp.read_whole,
                    k,
                    None,
                    &legacy,
                )),
                Found::Skipped(_) => {}
            }
            spans.push(start..probes.len());
        }
        let held = footprint::probe(backend, meta, &probes).await?;
        for ((k, f), span) in chunk.iter().zip(found).zip(spans) {
            let own = fp.own_entries.remove(k).unwrap_or_default();
            let entries = probes[span.clone()]
                .iter()
                .zip(&held[span])
                .filter_map(|((key, member, _), h)| {
                    h.clone().map(|h| h.record(key.clone(), member.clone()))
                })
                .chain(own.into_iter().map(|o| o.held.record(o.key, k.clone())));
            match f {
                Found::Instance(fields, _) => {
                    let fields = fields
                        .into_iter()
                        .map(|(f, v)| (ByteBuf::from(f), ByteBuf::from(v)))
                        .collect();
                    w.emit(&ExportRecord::Hash {
                        key: k.clone(),
                        fields,
                    })?;
                    for r in entries {
                        w.emit(&r)?;
                    }
                }
                Found::Loose => loose.extend(entries),
                Found::Skipped(why) => skipped.push((k.clone(), why)),
            }
        }
    }
    // Index entries without an instance, kept so the round trip is exact.
    for r in &loose {
        w.emit(r)?;
    }
    let indexes: Vec<String> = fp.own_keys.iter().map(|(k, _)| k.clone()).collect();
    verify::report(meta.name, &indexes, &skipped);
    Ok(())
}
