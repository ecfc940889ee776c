//! Index checks, rebuilds and isolation audits over every backend holding catalog tenants: a
//! finding about a catalog tenant fails that tenant, any other finding fails the backend.

use std::collections::HashSet;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::{BackendRun, Fleet, FleetReport};
use crate::admin::Admin;
use crate::catalog::TenantEntry;
use crate::error::Result;
use crate::lifecycle::ModelSet;
use crate::maintenance::IndexReport;

/// The index reports of one backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendIndexes {
    /// The backend's URL, credentials hidden.
    pub backend: String,
    /// One report per model, in the model set's order.
    pub reports: Vec<IndexReport>,
}

/// What an index check or rebuild over the fleet found: the per-tenant report and every
/// model's index report on every backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexRun {
    /// Per tenant (and backend): ok, failed with its findings, skipped.
    pub report: FleetReport,
    /// The index reports, per backend, sorted by backend.
    pub backends: Vec<BackendIndexes>,
}

impl IndexRun {
    /// Whether nothing failed and nothing was left to repair.
    pub fn is_success(&self) -> bool {
        self.report.is_success()
    }
}

/// What one backend's run did.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Audit,
    Check,
    Rebuild,
    Keys,
}

impl Fleet {
    /// The isolation audit of `models` on every backend holding a catalog tenant: a tenant with
    /// a finding (an index member outside its partition, a key that disagrees with its tenant
    /// field, an orphan or missing entry) is failed with its findings.
    pub async fn audit(&self, models: &ModelSet) -> Result<FleetReport> {
        Ok(self.index_run(models, Mode::Audit).await?.report)
    }

    /// [`Admin::check_indexes`] of every model of `models` on every backend holding a catalog
    /// tenant, writing nothing: a tenant with a finding is failed with its findings; the
    /// reports themselves come back per backend.
    pub async fn check_indexes(&self, models: &ModelSet) -> Result<IndexRun> {
        self.index_run(models, Mode::Check).await
    }

    /// [`Admin::rebuild_indexes`] of every model of `models` on every backend holding a catalog
    /// tenant: a tenant is failed by what could not be repaired (key mismatches, unreadable
    /// instances, unique values with several owners); repairs are counted in the detail.
    pub async fn rebuild_indexes(&self, models: &ModelSet) -> Result<IndexRun> {
        self.index_run(models, Mode::Rebuild).await
    }

    /// [`Admin::check_keys`] (the index check that needs no model) on every backend holding a
    /// catalog tenant. Its findings name no tenant: on a backend holding a single catalog
    /// tenant in a keyspace of its own (own database or server) they fail that tenant; else
    /// they fail the backend.
    pub async fn check_keys(&self) -> Result<IndexRun> {
        self.index_run(&ModelSet::new(), Mode::Keys).await
    }

    async fn index_run(&self, models: &ModelSet, mode: Mode) -> Result<IndexRun> {
        let catalog_ids: HashSet<String> = self
            .catalog
            .list_all(None)
            .await?
            .entries
            .into_iter()
            .map(|e| e.id.to_string())
            .collect();
        let operation = match mode {
            Mode::Audit => "audit",
            Mode::Check => "check indexes",
            Mode::Rebuild => "rebuild indexes",
            Mode::Keys => "check keys",
        };
        let collected: Mutex<Vec<BackendIndexes>> = Mutex::new(Vec::new());
        let shared = self.registry.shared().clone();
        let report = self
            .each_backend(operation, |admin: Admin, entries: &[TenantEntry]| {
                let (catalog_ids, collected, shared) = (&catalog_ids, &collected, &shared);
                // The only tenant of a keyspace of its own owns whatever is found there.
                let owner = match entries {
                    [only] => Some(only.id.to_string()),
                    _ => None,
                };
                async move {
                    let backend = admin.backend().await?;
                    let owner = owner.filter(|_| !backend.same_pool(shared));
                    let reports = match mode {
                        Mode::Rebuild => admin.rebuild_indexes_all(models).await?,
                        Mode::Audit | Mode::Check => admin.audit_all(models).await?,
                        Mode::Keys => vec![admin.check_keys().await?],
                    };
                    let run = backend_run(&reports, catalog_ids, mode, owner.as_deref());
                    let backend = backend.url();
                    collected
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(BackendIndexes { backend, reports });
                    Ok(run)
                }
            })
            .await?;
        let mut backends = collected.into_inner().unwrap_or_else(|e| e.into_inner());
        backends.sort_by(|a, b| a.backend.cmp(&b.backend));
        Ok(IndexRun { report, backends })
    }
}

/// The per-tenant result of one backend's reports: unrepaired findings fail their tenant, or
/// `owner` (the only tenant of the backend's keyspace) when they name none, else the backend.
fn backend_run(
    reports: &[IndexReport],
    catalog_ids: &HashSet<String>,
    mode: Mode,
    owner: Option<&str>,
) -> BackendRun {
    let repaired: usize = reports.iter().map(IndexReport::repaired).sum();
    let detail = match mode {
        Mode::Rebuild => format!(
            "{} models rebuilt, {repaired} entries repaired",
            reports.len()
        ),
        Mode::Audit => format!("{} models audited, clean", reports.len()),
        Mode::Check => format!("{} models checked, clean", reports.len()),
        Mode::Keys => {
            let entries: u64 = reports.iter().map(|r| r.index_entries).sum();
            format!("{entries} index entries checked from popoto's keys, clean")
        }
    };
    let mut run = BackendRun {
        detail,
        ..Default::default()
    };
    for r in reports {
        for f in r.unrepaired() {
            let text = format!("{}: {f}", r.model);
            match f.tenant.as_deref().or(owner).map(str::to_owned).as_ref() {
                Some(t) if catalog_ids.contains(t) => {
                    let p = run.tenant_problems.entry(t.clone()).or_default();
                    if !p.is_empty() {
                        p.push_str("; ");
                    }
                    p.push_str(&text);
                }
                _ => run.other_problems.push(text),
            }
        }
    }
    run
}
