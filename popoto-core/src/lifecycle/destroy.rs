//! Destruction of one tenant's data in one model.

use super::export::{existing_legacy, shared_entries};
use super::footprint::{self, ModelFootprint};
use super::{DestroyReport, Entry};
use crate::admin::Admin;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::plan::entries::remove_orphan;
use crate::plan::{Outcome, Plan};
use crate::script::apply::{self, APPLY};
use crate::tenant::TenantId;
use crate::verify::{self, Skip};

/// Instances deleted per batch.
const CHUNK: usize = 1000;

/// Destroys model `e`'s data of `tenant`: its instances (each atomically, with the index
/// entries its values derive), then every entry of the tenant's instance keys left in the
/// tenant's own index keys, the shared entries an orphan's key derives, and the legacy
/// unpartitioned entries, each removed only while no instance exists at its key.
///
/// On a recording backend (a dry run) the same calls are recorded instead of sent; what the
/// second read would find is what it finds now minus what the recorded deletions remove.
pub(super) async fn model(
    admin: &Admin,
    backend: &Backend,
    e: &Entry,
    tenant: &TenantId,
    fp: ModelFootprint,
    report: &mut DestroyReport,
) -> Result<()> {
    let meta = e.meta;
    let candidates: Vec<String> = fp.candidates.into_iter().collect();
    let flags = (e.verify)(backend.clone(), tenant.clone(), candidates.clone()).await?;
    let (mut instances, mut loose, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
    for (k, flag) in candidates.into_iter().zip(flags) {
        match flag {
            None => instances.push(k),
            Some(Skip::Stale) => loose.push(k),
            Some(why) => skipped.push((k, why)),
        }
    }
    // Read before anything is deleted, so that a dry run plans from what a real run reads.
    let legacy = existing_legacy(backend, meta, tenant).await?;
    let mut deleted = 0;
    for chunk in instances.chunks(CHUNK) {
        deleted += (e.delete)(admin.clone(), chunk.to_vec()).await?;
    }
    report.instances.insert(meta.name.to_owned(), deleted);
    let indexes: Vec<String> = fp.own_keys.iter().map(|(k, _)| k.clone()).collect();
    verify::report(meta.name, &indexes, &skipped);
    report.kept.extend(skipped.into_iter().map(|(k, _)| k));

    // What is left: the tenant's own index keys, read again.
    let mut removals: Vec<Plan> = Vec::new();
    let mut left = ModelFootprint::default();
    footprint::read_own_keys(backend, meta, tenant, fp.own_keys, &mut left).await?;
    if let Some(log) = backend.recorder() {
        // Nothing was deleted: leave out what the recorded deletions remove.
        let url = backend.url();
        for (member, entries) in left.own_entries.iter_mut() {
            entries.retain(|o| !log.removes(&url, &o.key, member));
        }
    }
    for (member, entries) in &left.own_entries {
        for o in entries {
            if let Some(kind) = backend.layout().parse_index_key(meta, &o.key) {
                removals.push(remove_orphan(&o.key, member, kind));
            }
        }
    }
    // Entries an orphan's key derives in shared index keys, and legacy entries of everything.
    for member in &loose {
        for (key, member, kind) in shared_entries(
            backend.layout(),
            meta,
            &fp.read_whole,
            member,
            None,
            &legacy,
        ) {
            removals.push(remove_orphan(&key, &member, kind));
        }
    }
    if !legacy.is_empty() {
        for member in &instances {
            for (key, kind) in &legacy {
                removals.push(remove_orphan(key, member, *kind));
            }
        }
    }
    if removals.is_empty() {
        return Ok(());
    }
    let calls: Vec<(Vec<String>, Vec<Vec<u8>>)> = removals.iter().map(apply::call).collect();
    if backend.record_many(&APPLY, &calls) {
        // A dry run: each removal counted as if none were refused.
        report.orphan_entries += calls.len() as u64;
        return Ok(());
    }
    let replies = backend
        .eval_many("destroy", meta.name, &APPLY, &calls)
        .await?;
    for reply in replies {
        let reply = reply.map_err(|source| Error::Redis {
            op: "destroy",
            model: meta.name,
            source,
        })?;
        // Refused: an instance exists at the member's key (a kept key), or the index key is
        // of another type (not ours): left as it is.
        if let Outcome::Applied(n) = apply::outcome(meta, "destroy", reply)? {
            report.orphan_entries += u64::from(n > 0);
        }
    }
    Ok(())
}
