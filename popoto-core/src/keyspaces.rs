//! The tenants' keyspaces of a model on a backend whose layout gives each tenant one of its own
//! (the cluster layout, where a keyspace is a hash tag, so one slot): reads and maintenance
//! that span tenants find them here and run once per keyspace, each in one slot.
//!
//! Found by a scan of every node (`SCAN MATCH {*}…` of the model's instance and index keys):
//! explicit, not atomic, and as complete as `SCAN` is (a tenant whose first key is written
//! during the scan may be missed). Each key found is checked to be one of the model's and its
//! tag to be a tenant's tag written exactly as the layout writes it.

use std::collections::BTreeSet;

use crate::backend::{Backend, KeyScan};
use crate::error::Result;
use crate::keys::Layout;
use crate::model::ModelMeta;
use crate::tenant::TenantId;

/// Keys per `SCAN` call.
const SCAN_COUNT: usize = 1000;

/// Whether a read or check of tenant model `meta` that names no tenant must run once per
/// tenant keyspace on `layout` (it has no single slot there).
pub(crate) fn per_keyspace(layout: Layout, meta: &ModelMeta) -> bool {
    layout == Layout::Cluster && meta.tenant.is_some()
}

/// The tenants holding data of tenant model `meta` on `backend`, in id order: in the cluster
/// layout every tenant with a key of the model (an instance or an index key, by its tag); in
/// popoto's layout, where a key's tenant is a segment of it, every tenant with an instance
/// key. A value that is no valid tenant id is skipped with a warning.
pub(crate) async fn tenants(
    backend: &Backend,
    meta: &'static ModelMeta,
    op: &'static str,
) -> Result<Vec<TenantId>> {
    let layout = backend.layout();
    let patterns = match layout {
        Layout::Cluster => vec![
            layout.class_pattern(meta, None),
            layout.index_pattern(meta, None),
            layout.instance_pattern(meta, None),
        ],
        Layout::Popoto => vec![layout.instance_pattern(meta, None)],
    };
    let tenant_pos = meta
        .tenant
        .and_then(|tf| meta.key_fields.iter().position(|&k| k == tf));
    let mut found = BTreeSet::new();
    for pattern in patterns {
        let mut scan = KeyScan::new(pattern, SCAN_COUNT);
        while let Some(page) = scan.next(backend, op, meta.name).await? {
            for key in page {
                let segments = layout.parse_instance_key(meta, &key).ok();
                let tenant = match layout {
                    Layout::Cluster => layout
                        .keyspace_of(meta, &key)
                        .filter(|_| segments.is_some() || layout.is_index_key(meta, &key)),
                    Layout::Popoto => segments
                        .zip(tenant_pos)
                        .and_then(|(mut s, pos)| (pos < s.len()).then(|| s.swap_remove(pos))),
                };
                found.extend(tenant);
            }
        }
    }
    let mut out = Vec::with_capacity(found.len());
    for tenant in found {
        match TenantId::new(&tenant) {
            Ok(t) => out.push(t),
            Err(e) => tracing::warn!(model = meta.name, %e, "keyspace of no valid tenant skipped"),
        }
    }
    Ok(out)
}
