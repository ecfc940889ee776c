//! Index checks, phase 3: unique values held by more than one instance.
//!
//! A `$UniqueKeyF:<Model>:<field>:<value>` set may hold one instance. Phase 1 reports members
//! that are orphans or sit in another value's set; what it cannot see is a set holding two (or
//! more) *owners*: members that exist and carry the value both in their key and in their
//! stored field. Writes refuse to make one (the unique checks of create, save, move and import);
//! older writers, raw commands or a restore from elsewhere can. Such a value is reported once
//! per owner, never repaired: which owner keeps the value is a decision for a person.
//!
//! Owners of one tenant (or of a model without tenant) are [`FindingKind::DuplicateUnique`];
//! owners of different tenants are [`FindingKind::CrossTenantUnique`], an isolation defect:
//! one tenant's instance holds a value another tenant's instance claims, and the unique index
//! that should keep them apart names both. A `per_tenant` unique key is unique within each
//! tenant only: its value set is shared by the tenants that use the value, so owners are
//! grouped by tenant and only owners of one tenant are a finding.

use std::sync::Arc;

use super::index_check::IndexScan;
use super::*;

impl<M: Model> IndexScan<M> {
    /// Examines every unique value set phase 1 found with more than one member.
    pub(super) async fn unique_phase(&mut self) -> Result<()> {
        for (set, field) in std::mem::take(&mut self.shared_values) {
            let owners = self.owners(&set, field).await?;
            if M::META.unique_scope(field) > 0 {
                let mut by_tenant: std::collections::BTreeMap<Option<String>, Vec<String>> =
                    Default::default();
                for o in owners {
                    by_tenant.entry(tenant_of::<M>(&o)).or_default().push(o);
                }
                for owners in by_tenant.into_values() {
                    self.report_owners(&set, field, FindingKind::DuplicateUnique, &owners);
                }
                continue;
            }
            let tenants: std::collections::BTreeSet<Option<String>> =
                owners.iter().map(|o| tenant_of::<M>(o)).collect();
            let kind = if tenants.len() > 1 {
                FindingKind::CrossTenantUnique
            } else {
                FindingKind::DuplicateUnique
            };
            self.report_owners(&set, field, kind, &owners);
        }
        Ok(())
    }

    /// Records one finding per owner of a value held by several `owners` (none for one).
    fn report_owners(&mut self, set: &str, field: usize, kind: FindingKind, owners: &[String]) {
        if owners.len() < 2 {
            return;
        }
        for owner in owners {
            let others: Vec<&str> = owners
                .iter()
                .filter(|o| *o != owner)
                .map(String::as_str)
                .collect();
            let finding = Self::finding(
                kind,
                set,
                owner,
                Some(M::META.fields[field].name),
                format!("the value is also held by {}", others.join(", ")),
            );
            self.record(finding);
        }
    }

    /// The members of unique value set `set` (of field `field`) that own its value: their key
    /// names the value (so the set is theirs) and their stored field holds it. Read page by
    /// page; one pipelined `HGET` per page.
    async fn owners(&mut self, set: &Arc<str>, field: usize) -> Result<Vec<String>> {
        let meta = M::META;
        let layout = self.backend.layout();
        let name = meta.fields[field].name;
        let mut owners = Vec::new();
        let mut cursor = 0u64;
        loop {
            let cmd = redis::cmd("SSCAN")
                .arg(&**set)
                .arg(cursor)
                .arg("COUNT")
                .arg(self.batch)
                .clone();
            let (next, flat) = scan_page(&self.backend, Self::OP, meta, &cmd).await?;
            let members: Vec<String> = flat
                .into_iter()
                .filter_map(|m| String::from_utf8(m).ok())
                .filter(|m| {
                    let key = Key::<M>::parse_in(layout, m).ok();
                    let seg = key.as_ref().zip(key_position(meta, field));
                    seg.and_then(|(k, pos)| Some((k.tenant(), k.segments().get(pos)?)))
                        .is_some_and(|(t, s)| layout.value_set_key(meta, t, field, s) == **set)
                })
                .collect();
            if !members.is_empty() {
                let mut pipe = redis::pipe();
                for m in &members {
                    pipe.cmd("HGET").arg(m).arg(name);
                }
                let replies = pipeline_results(&self.backend, Self::OP, meta, &mut pipe).await?;
                for (m, reply) in members.into_iter().zip(replies) {
                    // Absent or not a hash: an orphan (phase 1) or a foreign key, not an owner.
                    let Some(raw) = reply
                        .ok()
                        .and_then(|v| redis::from_redis_value::<Option<Vec<u8>>>(v).ok())
                        .flatten()
                    else {
                        continue;
                    };
                    let stored = M::segment_from_stored(&m, field, &raw).ok();
                    let in_key = stored.as_deref().is_some_and(|s| {
                        let tenant = Key::<M>::parse_in(layout, &m).ok();
                        let tenant = tenant.as_ref().and_then(|k| k.tenant());
                        layout.value_set_key(meta, tenant, field, s) == **set
                    });
                    if in_key && !owners.contains(&m) {
                        owners.push(m);
                    }
                }
            }
            if next == 0 {
                return Ok(owners);
            }
            cursor = next;
        }
    }
}
