//! The isolation audit of the shared keyspace: shared instances, their subscribers, the
//! tenants' grants and the shared change feeds.

use std::collections::{BTreeMap, BTreeSet};

use super::{Access, Merge, Tag};
use crate::admin::Admin;
use crate::backend::{Backend, KeyScan};
use crate::error::Result;
use crate::keys::{self, SharedKey};
use crate::lifecycle::ModelSet;
use crate::maintenance::{Finding, FindingKind, IndexReport};
use crate::tenant::TenantId;

const OP: &str = "audit_shared";

/// The access a subscriber entry and a tenant's grant record.
type Sides = (Option<String>, Option<String>);

/// A grant whose two sides disagree (or which names no instance), as the audit read it.
#[derive(Debug, Clone)]
pub(super) struct Cut {
    pub(super) tenant: String,
    pub(super) model: String,
    pub(super) id: String,
    /// The subscriber entry's access, if any.
    pub(super) sub: Option<String>,
    /// The tenant's grants entry as stored (`<access>:<start>`), if any.
    pub(super) grant: Option<String>,
    /// Its finding in the report.
    pub(super) finding: usize,
}

/// Keys of one shared instance found by the scan.
#[derive(Default)]
struct Found {
    kinds: BTreeSet<&'static str>,
}

fn finding(
    kind: FindingKind,
    index: &str,
    member: &str,
    tenant: Option<&str>,
    detail: String,
) -> Finding {
    Finding {
        kind,
        index: index.to_owned(),
        member: member.to_owned(),
        field: None,
        tenant: tenant.map(str::to_owned),
        detail,
        repaired: false,
    }
}

/// Every key matching `pattern` (SCAN of every node, 1,000 a call).
async fn scan(backend: &Backend, pattern: &str) -> Result<Vec<String>> {
    KeyScan::new(pattern, 1000).collect(backend, OP, "-").await
}

impl Admin {
    /// The audit of the shared keyspace on this handle's backend, as one report (model
    /// `$Shared`): grants the instance's subscribers and the tenant's grants disagree on
    /// ([`FindingKind::GrantMismatch`], an isolation finding), grants, subscribers, tags and
    /// change feeds of instances that do not exist ([`FindingKind::Orphan`]), instances missing
    /// from their model's id set ([`FindingKind::Missing`]), and meta hashes, tags, subscriber
    /// entries or values (of the shared models in `models`) that do not verify
    /// ([`FindingKind::Unreadable`]). Nothing is repaired.
    pub async fn audit_shared(&self, models: &ModelSet) -> Result<IndexReport> {
        Ok(self.audit_shared_cuts(models).await?.0)
    }

    /// [`Admin::audit_shared`], with the grants whose two sides disagree (to repair).
    pub(super) async fn audit_shared_cuts(
        &self,
        models: &ModelSet,
    ) -> Result<(IndexReport, Vec<Cut>)> {
        let backend = self.backend().await?;
        let mut cuts = Vec::new();
        let decoders: BTreeMap<&str, _> = models.shared_models().into_iter().collect();
        let mut report = IndexReport {
            model: "$Shared".to_owned(),
            ..Default::default()
        };
        let layout = backend.layout();
        let mut instances: BTreeMap<(String, String), Found> = BTreeMap::new();
        let mut id_sets: Vec<String> = Vec::new();
        let mut grants: Vec<(String, String)> = Vec::new();
        let mut found_keys = BTreeSet::new();
        for pattern in layout.shared_patterns() {
            found_keys.extend(scan(&backend, &pattern).await?);
        }
        for key in found_keys {
            // A key the pattern matched that is not under `$Shared` is another keyspace's.
            if !layout.is_shared_key(&key) {
                continue;
            }
            report.index_keys += 1;
            match layout.parse_shared_key(&key) {
                Some(SharedKey::Instance(kind, m, id)) => {
                    instances.entry((m, id)).or_default().kinds.insert(kind);
                }
                Some(SharedKey::Ids(m)) => id_sets.push(m),
                Some(SharedKey::Grants(t)) => grants.push((key, t)),
                None => report.findings.push(finding(
                    FindingKind::Unreadable,
                    &key,
                    &key,
                    None,
                    "a key under $Shared that popoto does not write".into(),
                )),
            }
        }
        // Instances: meta, id set, tags, value.
        let mut live: BTreeSet<(String, String)> = BTreeSet::new();
        for ((m, id), found) in &instances {
            let meta_key = layout.shared_meta_key(m, id);
            if !found.kinds.contains("meta") {
                for kind in &found.kinds {
                    let key = match *kind {
                        "value" => layout.shared_value_key(m, id),
                        "tags" => layout.shared_tags_key(m, id),
                        _ => layout.shared_subs_key(m, id),
                    };
                    report.findings.push(finding(
                        FindingKind::Orphan,
                        &key,
                        id,
                        None,
                        "a key of a shared instance without its meta hash".into(),
                    ));
                }
                continue;
            }
            report.instances += 1;
            live.insert((m.clone(), id.clone()));
            let meta: BTreeMap<String, String> = backend
                .query(OP, "-", redis::cmd("HGETALL").arg(&meta_key))
                .await?;
            let ok = meta.get("model") == Some(m)
                && meta.get("id") == Some(id)
                && meta.get("merge").and_then(|c| Merge::parse(c)).is_some()
                && meta
                    .get("version")
                    .and_then(|v| v.parse::<u64>().ok())
                    .is_some();
            if !ok {
                report.findings.push(finding(
                    FindingKind::Unreadable,
                    &meta_key,
                    id,
                    None,
                    "the meta hash does not name this instance with a strategy and a version"
                        .into(),
                ));
            }
            // The model's id set, where the layout keeps one.
            if let Some(ids_key) = layout.shared_ids_key(m) {
                let member: bool = backend
                    .query(OP, "-", redis::cmd("SISMEMBER").arg(&ids_key).arg(id))
                    .await?;
                if !member {
                    report.findings.push(finding(
                        FindingKind::Missing,
                        &ids_key,
                        id,
                        None,
                        "the instance is not in its model's id set".into(),
                    ));
                }
            }
            let tags_key = layout.shared_tags_key(m, id);
            let tags: Vec<(String, String)> = backend
                .query(OP, "-", redis::cmd("HGETALL").arg(&tags_key))
                .await?;
            for (f, t) in tags {
                report.index_entries += 1;
                if let Err(e) = Tag::parse(&t) {
                    report.findings.push(finding(
                        FindingKind::Unreadable,
                        &tags_key,
                        &f,
                        None,
                        e.to_string(),
                    ));
                }
            }
            if let Some(decode) = decoders.get(m.as_str()) {
                let value_key = layout.shared_value_key(m, id);
                let fields: Vec<(Vec<u8>, Vec<u8>)> = backend
                    .query(OP, "-", redis::cmd("HGETALL").arg(&value_key))
                    .await?;
                if let Err(e) = decode(&value_key, fields) {
                    report.findings.push(finding(
                        FindingKind::Unreadable,
                        &value_key,
                        id,
                        None,
                        e.to_string(),
                    ));
                }
            }
        }
        for m in &id_sets {
            let Some(ids_key) = layout.shared_ids_key(m) else {
                continue;
            };
            let ids: Vec<String> = backend
                .query(OP, "-", redis::cmd("SMEMBERS").arg(&ids_key))
                .await?;
            for id in ids {
                if !live.contains(&(m.clone(), id.clone())) {
                    report.findings.push(finding(
                        FindingKind::Orphan,
                        &ids_key,
                        &id,
                        None,
                        "an id whose instance does not exist".into(),
                    ));
                }
            }
        }
        // Subscribers and grants, each side against the other.
        // (tenant, model, id) -> (subscriber entry's access, tenant grant's access).
        let mut sides: BTreeMap<(String, String, String), Sides> = BTreeMap::new();
        for ((m, id), found) in &instances {
            if !found.kinds.contains("subs") {
                continue;
            }
            let subs_key = layout.shared_subs_key(m, id);
            let subs: Vec<(String, String)> = backend
                .query(OP, "-", redis::cmd("HGETALL").arg(&subs_key))
                .await?;
            for (t, a) in subs {
                report.index_entries += 1;
                if TenantId::new(&t).is_err() || Access::parse(&a).is_none() {
                    report.findings.push(finding(
                        FindingKind::Unreadable,
                        &subs_key,
                        &t,
                        None,
                        "a subscriber entry that is not a tenant id and an access".into(),
                    ));
                    continue;
                }
                sides.entry((t, m.clone(), id.clone())).or_default().0 = Some(a);
            }
        }
        for (gkey, tenant) in &grants {
            let entries: Vec<(String, String)> = backend
                .query(OP, "-", redis::cmd("HGETALL").arg(gkey))
                .await?;
            for (field, v) in entries {
                report.index_entries += 1;
                let Some((m, id)) = keys::parse_shared_grant_field(&field) else {
                    report.findings.push(finding(
                        FindingKind::Unreadable,
                        gkey,
                        &field,
                        Some(tenant),
                        "a grant field that names no instance".into(),
                    ));
                    continue;
                };
                sides.entry((tenant.clone(), m, id)).or_default().1 = Some(v);
            }
        }
        for ((tenant, m, id), (sub, grant)) in sides {
            let subs_key = layout.shared_subs_key(&m, &id);
            let granted = grant
                .as_deref()
                .map(|v| v.split_once(':').map_or(v, |(a, _)| a));
            let cut = Cut {
                tenant: tenant.clone(),
                model: m.clone(),
                id: id.clone(),
                sub: sub.clone(),
                grant: grant.clone(),
                finding: report.findings.len(),
            };
            if !live.contains(&(m.clone(), id.clone())) {
                if grant.is_some() {
                    cuts.push(cut);
                }
                report.findings.push(finding(
                    FindingKind::Orphan,
                    &layout.shared_grants_key(&tenant),
                    &id,
                    Some(&tenant),
                    format!("a grant of shared {m} {id:?}, which does not exist"),
                ));
            } else if sub.as_deref() != granted {
                cuts.push(cut);
                report.findings.push(finding(
                    FindingKind::GrantMismatch,
                    &subs_key,
                    &id,
                    Some(&tenant),
                    format!("subscriber entry {sub:?}, tenant's grant {grant:?}"),
                ));
            }
        }
        // Shared change feeds of instances that do not exist.
        for key in scan(&backend, &layout.shared_feed_pattern()).await? {
            let orphan = match layout.shared_feed_instance(&key) {
                None => false,
                Some(owner) => owner.is_none_or(|inst| !live.contains(&inst)),
            };
            if orphan {
                report.findings.push(finding(
                    FindingKind::Orphan,
                    &key,
                    &key,
                    None,
                    "a change feed of a shared instance that does not exist".into(),
                ));
            }
        }
        Ok((report, cuts))
    }
}
