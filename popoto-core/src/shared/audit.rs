//! The isolation audit of the shared keyspace: shared instances, their subscribers, the
//! tenants' grants and the shared change feeds.

use std::collections::{BTreeMap, BTreeSet};

use super::{Access, Merge, Tag};
use crate::admin::Admin;
use crate::backend::{Backend, KeyScan};
use crate::error::Result;
use crate::keys::{self, FeedOf, SharedKey};
use crate::lifecycle::ModelSet;
use crate::maintenance::{Finding, FindingKind, IndexReport};
use crate::tenant::TenantId;

const OP: &str = "audit_shared";

/// The access a subscriber entry and a tenant's grant record.
type Sides = (Option<String>, Option<String>);

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
        let backend = self.backend().await?;
        let decoders: BTreeMap<&str, _> = models.shared_models().into_iter().collect();
        let mut report = IndexReport {
            model: "$Shared".to_owned(),
            ..Default::default()
        };
        let mut instances: BTreeMap<(String, String), Found> = BTreeMap::new();
        let mut id_sets: Vec<String> = Vec::new();
        let mut grants: Vec<(String, String)> = Vec::new();
        for key in scan(&backend, &keys::shared_pattern()).await? {
            report.index_keys += 1;
            match keys::parse_shared_key(&key) {
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
            let meta_key = keys::shared_meta_key(m, id);
            if !found.kinds.contains("meta") {
                for kind in &found.kinds {
                    let key = match *kind {
                        "value" => keys::shared_value_key(m, id),
                        "tags" => keys::shared_tags_key(m, id),
                        _ => keys::shared_subs_key(m, id),
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
            let member: bool = backend
                .query(
                    OP,
                    "-",
                    redis::cmd("SISMEMBER").arg(keys::shared_ids_key(m)).arg(id),
                )
                .await?;
            if !member {
                report.findings.push(finding(
                    FindingKind::Missing,
                    &keys::shared_ids_key(m),
                    id,
                    None,
                    "the instance is not in its model's id set".into(),
                ));
            }
            let tags_key = keys::shared_tags_key(m, id);
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
                let value_key = keys::shared_value_key(m, id);
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
            let ids: Vec<String> = backend
                .query(OP, "-", redis::cmd("SMEMBERS").arg(keys::shared_ids_key(m)))
                .await?;
            for id in ids {
                if !live.contains(&(m.clone(), id.clone())) {
                    report.findings.push(finding(
                        FindingKind::Orphan,
                        &keys::shared_ids_key(m),
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
            let subs_key = keys::shared_subs_key(m, id);
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
                let access = v.split_once(':').map(|(a, _)| a.to_owned()).unwrap_or(v);
                sides.entry((tenant.clone(), m, id)).or_default().1 = Some(access);
            }
        }
        for ((tenant, m, id), (sub, grant)) in sides {
            let subs_key = keys::shared_subs_key(&m, &id);
            if !live.contains(&(m.clone(), id.clone())) {
                report.findings.push(finding(
                    FindingKind::Orphan,
                    &keys::shared_grants_key(&tenant),
                    &id,
                    Some(&tenant),
                    format!("a grant of shared {m} {id:?}, which does not exist"),
                ));
            } else if sub != grant {
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
        for key in scan(&backend, &keys::feed_pattern()).await? {
            let of_shared =
                key.starts_with("$Feed:shared:") || key.starts_with("$Feed:meta:shared:");
            if of_shared && !live_feed(&live, &key) {
                report.findings.push(finding(
                    FindingKind::Orphan,
                    &key,
                    &key,
                    None,
                    "a change feed of a shared instance that does not exist".into(),
                ));
            }
        }
        Ok(report)
    }
}

/// Whether `key` is the stream or meta hash of a live instance.
fn live_feed(live: &BTreeSet<(String, String)>, key: &str) -> bool {
    live.iter().any(|(m, id)| {
        let of = FeedOf::Shared(m, id);
        key == keys::feed_stream_key(of) || key == keys::feed_meta_key(of)
    })
}
