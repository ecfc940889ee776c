//! Moving a tenant between key layouts (popoto's and the cluster layout, one server or a
//! cluster): the tenant's export from the source keyspace is rewritten record by record into
//! the target's layout and imported there. Both steps stream through temporary files, so a
//! tenant of any size moves in constant memory; the import is idempotent, so a run cut at any
//! point is completed by running it again.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ExportRecord, ModelSet, Sweep};
use crate::admin::Admin;
use crate::error::{Error, Result};
use crate::keys::Layout;
use crate::maintenance::DryRun;
use crate::model::ModelMeta;
use crate::tenant::TenantId;

/// What a layout migration of one tenant did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayoutReport {
    /// The tenant moved.
    pub tenant: String,
    /// The source keyspace's layout.
    pub from: Layout,
    /// The target keyspace's layout.
    pub to: Layout,
    /// Instances (hashes) moved.
    pub instances: u64,
    /// Index entries moved (set and sorted-set members, companion-hash entries).
    pub entries: u64,
    /// Whether nothing was written (a dry run).
    pub dry_run: bool,
}

/// How an all-tenants layout migration runs ([`Admin::migrate_layout_all`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayoutRun {
    /// How each tenant's data is found in the source (as an export finds it).
    pub sweep: Sweep,
    /// `DryRun::Yes`: read, rewrite and count; write nothing.
    pub dry_run: DryRun,
    /// Resume after this tenant: tenants are moved in id order, so a run cut short resumes
    /// after the last tenant its progress reported (running from the start again is also
    /// safe: imports are idempotent).
    pub after: Option<TenantId>,
}

/// Where an all-tenants layout migration is, after each tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayoutProgress {
    /// Tenants moved so far in this run.
    pub done: usize,
    /// Tenants this run moves.
    pub total: usize,
    /// The report of the tenant just moved.
    pub report: LayoutReport,
}

/// A temporary file removed on drop.
struct Spool(PathBuf);

impl Spool {
    fn new(what: &str) -> Spool {
        let name = format!("popoto-{what}-{}.msgpack", uuid::Uuid::new_v4().simple());
        Spool(std::env::temp_dir().join(name))
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        // Best effort: a file left behind in the temp dir is harmless.
        let _ = std::fs::remove_file(&self.0);
    }
}

fn io(e: std::io::Error) -> Error {
    Error::Stream(format!("layout migration spool: {e}"))
}

/// `key` of `tenant`'s data rewritten from layout `from` to `to`, for the model whose key it is.
fn convert(
    metas: &[&'static ModelMeta],
    (from, to): (Layout, Layout),
    tenant: &str,
    key: &str,
) -> Result<String> {
    metas
        .iter()
        .find_map(|&m| from.convert(to, m, tenant, key))
        .ok_or_else(|| Error::Stream(format!("{key} is not a key of the models' layout")))
}

impl Admin {
    /// [`Admin::migrate_tenant_layout`] of every tenant holding data of a tenant model of
    /// `models` on this handle's backend ([`Admin::tenants_of`]), one after the other in id
    /// order, calling `progress` after each; returns each tenant's report. Stops at the first
    /// tenant that fails (its error names it): fix the cause and resume with
    /// [`LayoutRun::after`] set to the last tenant reported.
    pub async fn migrate_layout_all(
        &self,
        models: &ModelSet,
        target: &Admin,
        run: &LayoutRun,
        mut progress: impl FnMut(&LayoutProgress),
    ) -> Result<Vec<LayoutReport>> {
        let backend = self.backend().await?;
        let mut tenants = std::collections::BTreeSet::new();
        for e in models.tenant_models() {
            tenants.extend(crate::keyspaces::tenants(&backend, e.meta, "migrate layout").await?);
        }
        let todo: Vec<TenantId> = tenants
            .into_iter()
            .filter(|t| run.after.as_ref().is_none_or(|a| t > a))
            .collect();
        let mut reports = Vec::with_capacity(todo.len());
        for (i, tenant) in todo.iter().enumerate() {
            let report = self
                .migrate_tenant_layout(tenant, models, target, run.sweep, run.dry_run)
                .await?;
            progress(&LayoutProgress {
                done: i + 1,
                total: todo.len(),
                report: report.clone(),
            });
            reports.push(report);
        }
        Ok(reports)
    }

    /// Copies `tenant`'s data of `models` from this handle's keyspace into `target`'s (another
    /// `Db`, usually of the other layout: from one server to a cluster, or back), rewriting
    /// every key, member and companion field into the target's layout; the source is left as
    /// it was (destroy it with [`Admin::destroy_tenant`] once the target is checked). Each
    /// instance lands with its index entries atomically, refused as an import refuses (a
    /// unique value held by another instance, an existing instance with other fields).
    ///
    /// `sweep` finds the tenant's data in the source as an export does (on a cluster, a
    /// keyspace sweep scans every master). With `DryRun::Yes` the source is read and rewritten
    /// and the report counts what would move; nothing is written.
    pub async fn migrate_tenant_layout(
        &self,
        tenant: &TenantId,
        models: &ModelSet,
        target: &Admin,
        sweep: Sweep,
        dry_run: DryRun,
    ) -> Result<LayoutReport> {
        let from = self.on(tenant).backend().await?.layout();
        let to = target.on(tenant).backend().await?.layout();
        let metas: Vec<&'static ModelMeta> = models.tenant_models().map(|e| e.meta).collect();
        let exported = Spool::new("export");
        {
            let mut out = BufWriter::new(File::create(&exported.0).map_err(io)?);
            self.export_tenant_with(tenant, models, &mut out, sweep)
                .await?;
            out.flush().map_err(io)?;
        }
        let rewritten = Spool::new("rewritten");
        let mut report = LayoutReport {
            tenant: tenant.to_string(),
            from,
            to,
            instances: 0,
            entries: 0,
            dry_run: dry_run == DryRun::Yes,
        };
        {
            let mut input = BufReader::new(File::open(&exported.0).map_err(io)?);
            let mut out = BufWriter::new(File::create(&rewritten.0).map_err(io)?);
            let t = tenant.as_str();
            let conv = |k: &str| convert(&metas, (from, to), t, k);
            while let Some(record) = super::import::next_record(&mut input)? {
                let record = match record {
                    ExportRecord::Hash { key, fields } => {
                        report.instances += 1;
                        ExportRecord::Hash {
                            key: conv(&key)?,
                            fields,
                        }
                    }
                    ExportRecord::SetMember { key, member } => {
                        report.entries += 1;
                        ExportRecord::SetMember {
                            key: conv(&key)?,
                            member: conv(&member)?,
                        }
                    }
                    ExportRecord::ZSetMember { key, member, score } => {
                        report.entries += 1;
                        ExportRecord::ZSetMember {
                            key: conv(&key)?,
                            member: conv(&member)?,
                            score,
                        }
                    }
                    ExportRecord::HashEntry { key, field, value } => {
                        report.entries += 1;
                        ExportRecord::HashEntry {
                            key: conv(&key)?,
                            field: conv(&field)?,
                            value,
                        }
                    }
                    other => other,
                };
                rmp_serde::encode::write_named(&mut out, &record)
                    .map_err(|e| Error::Stream(format!("layout migration spool: {e}")))?;
            }
            out.flush().map_err(io)?;
        }
        if dry_run == DryRun::No {
            let input: Box<dyn Read + Send> =
                Box::new(BufReader::new(File::open(&rewritten.0).map_err(io)?));
            target.import_tenant(tenant, models, input).await?;
        }
        Ok(report)
    }
}
