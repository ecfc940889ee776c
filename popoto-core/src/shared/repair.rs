//! The repair of grants whose two sides disagree: what a cut between the two calls of a grant
//! change on a cluster leaves (the instance's side written, the tenant's not), or planted data.
//! Repairs never grant more than the instance's side already does: a subscriber entry without
//! the tenant's grant is removed (a subscribe that did not complete: its caller was told it
//! failed, and runs it again), a tenant's grant without a subscriber entry (a revoke that did
//! not complete, or an instance gone) is removed, and a tenant's grant with another access
//! than its subscriber entry takes the subscriber entry's (which every call has checked).

use super::audit::Cut;
use super::grants::GRANTS;
use super::wire::{int, text, OP};
use crate::admin::Admin;
use crate::backend::Backend;
use crate::error::Result;
use crate::keys;
use crate::lifecycle::ModelSet;
use crate::maintenance::IndexReport;

/// One side's field set to `new` (`""`: removed) if it still holds `expected`; whether it was.
async fn fix(
    backend: &Backend,
    key: String,
    field: &str,
    expected: &str,
    new: &str,
) -> Result<bool> {
    let args: Vec<Vec<u8>> = ["fix", "", "", field, expected, new]
        .iter()
        .map(|a| a.as_bytes().to_vec())
        .collect();
    let reply = backend.eval(OP, "-", &GRANTS, &[key], &args).await?;
    match &reply {
        redis::Value::Array(items) if text(items.first()).as_deref() == Some("ok") => {
            Ok(int(items.get(1)) == Some(1))
        }
        _ => Err(super::wire::protocol("-", &reply)),
    }
}

/// Repairs one cut; whether every write it needed was made.
async fn repair(backend: &Backend, cut: &Cut) -> Result<bool> {
    let layout = backend.layout();
    let subs = || layout.shared_subs_key(&cut.model, &cut.id);
    let grants = || layout.shared_grants_key(&cut.tenant);
    let field = keys::shared_grant_field(&cut.model, &cut.id);
    match (&cut.sub, &cut.grant) {
        // No subscriber entry (or no instance): the tenant's grant names nothing it may use.
        (None, Some(g)) => fix(backend, grants(), &field, g, "").await,
        (Some(s), None) => fix(backend, subs(), &cut.tenant, s, "").await,
        (Some(s), Some(g)) => {
            let start = g.split_once(':').map(|(_, start)| start).filter(|start| {
                super::grants::parse_grant(&field, &format!("r:{start}")).is_some()
            });
            match start {
                Some(start) => fix(backend, grants(), &field, g, &format!("{s}:{start}")).await,
                // A grant whose start does not parse is no grant: both sides go.
                None => Ok(fix(backend, subs(), &cut.tenant, s, "").await?
                    & fix(backend, grants(), &field, g, "").await?),
            }
        }
        (None, None) => Ok(true),
    }
}

impl Admin {
    /// [`Admin::audit_shared`], then repairs each grant whose two sides disagree and each
    /// tenant's grant of an instance that does not exist, never granting more than an
    /// instance's subscribers hash already does (see the module above: a half-made grant is
    /// undone, a half-made revoke completed, a differing access set to the subscriber
    /// entry's). Each repair is one conditional call on one side, written only if the entry
    /// still holds what the audit read; the findings repaired are marked so. Other findings
    /// are reported, not repaired.
    pub async fn repair_shared_grants(&self, models: &ModelSet) -> Result<IndexReport> {
        let (mut report, cuts) = self.audit_shared_cuts(models).await?;
        let backend = self.backend().await?;
        for cut in &cuts {
            if repair(&backend, cut).await? {
                if let Some(f) = report.findings.get_mut(cut.finding) {
                    f.repaired = true;
                }
            }
        }
        Ok(report)
    }
}
