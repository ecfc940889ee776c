//! Fleet operations: maintenance over every tenant of the catalog, on whatever backend each
//! lives (shared keyspace, own database, own server), with bounded concurrency.
//!
//! Every tenant gets a result (ok, failed with the error, skipped with the reason) in a
//! [`FleetReport`] that serializes to JSON; a failed tenant does not stop the others. With a run
//! id ([`FleetOptions::run`]) each tenant done is recorded in a journal on the catalog's server
//! (`keys::fleet_journal_key`, kept 30 days), and a rerun with the same id skips it.
//!
//! Per-tenant operations ([`Fleet::for_each_tenant`], [`Fleet::export`]) run once per tenant;
//! operations that scan a whole keyspace ([`Fleet::for_each_backend`], [`Fleet::audit`],
//! migrations) run once per backend and report to each tenant living there.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::path::Path;

use futures_util::stream::{self, StreamExt};

use crate::admin::Admin;
use crate::backend::Backend;
use crate::catalog::{Catalog, TenantEntry, TenantStatus};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::keys;
use crate::lifecycle::ModelSet;
use crate::record::CommandLog;
use crate::registry::TenantRegistry;
use crate::tenant::TenantId;

mod indexes;
mod report;

pub use indexes::{BackendIndexes, IndexRun};
pub use report::{BackendResult, FleetReport, Outcome, TenantResult};

/// How long a run's journal is kept after its last write.
const JOURNAL_TTL_SECS: u64 = 30 * 24 * 3600;

/// Label of fleet operations in errors.
const MODEL: &str = "fleet";

/// Options of a fleet operation.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FleetOptions {
    /// Tenants (or backends) worked on at once (at least 1).
    pub concurrency: usize,
    /// Also work on suspended tenants (skipped by default, like destroyed ones).
    pub include_suspended: bool,
    /// Journal id: tenants done under it are skipped by a rerun with the same id.
    pub run: Option<String>,
    /// Only these tenants (`None`: every tenant of the catalog).
    pub only: Option<Vec<TenantId>>,
    /// A dry run: operations get recording backends ([`Backend::recording`]) and journal
    /// writes are recorded too, so nothing is written and the log holds what a real run sends.
    pub record: Option<CommandLog>,
}

impl Default for FleetOptions {
    /// 4 at once, active tenants only, no journal, every tenant.
    fn default() -> Self {
        FleetOptions {
            concurrency: 4,
            include_suspended: false,
            run: None,
            only: None,
            record: None,
        }
    }
}

impl FleetOptions {
    /// Works on `n` tenants or backends at once.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Records progress under `run`, so that a rerun with the same id skips what is done.
    pub fn run(mut self, run: impl Into<String>) -> Self {
        self.run = Some(run.into());
        self
    }

    /// Also works on suspended tenants.
    pub fn include_suspended(mut self, yes: bool) -> Self {
        self.include_suspended = yes;
        self
    }

    /// Only these tenants.
    pub fn only(mut self, tenants: Vec<TenantId>) -> Self {
        self.only = Some(tenants);
        self
    }

    /// A dry run recording into `log` what a real run would send (see [`FleetOptions::record`]).
    pub fn record(mut self, log: &CommandLog) -> Self {
        self.record = Some(log.clone());
        self
    }
}

/// What a per-backend operation found, for each tenant living on that backend.
#[derive(Debug, Clone, Default)]
pub struct BackendRun {
    /// A summary for the backend (and for tenants with no problem of their own).
    pub detail: String,
    /// Tenants with a problem, and the problem (they are reported failed).
    pub tenant_problems: BTreeMap<String, String>,
    /// Problems that concern no tenant of the catalog (the backend is reported failed).
    pub other_problems: Vec<String>,
}

/// Maintenance over every tenant of a catalog. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Fleet {
    registry: TenantRegistry,
    catalog: Catalog,
    options: FleetOptions,
}

/// One tenant to work on, with its backend (or why it cannot be worked on).
struct Work {
    entry: TenantEntry,
    backend: std::result::Result<Backend, String>,
}

impl Fleet {
    /// The fleet of `registry`'s catalog ([`Error::Config`] if it has none); placements (tiers
    /// included) are resolved by the registry, whatever the tenants' status there.
    pub fn new(registry: &TenantRegistry, options: FleetOptions) -> Result<Fleet> {
        let catalog = registry.catalog().ok_or_else(|| {
            Error::Config("fleet operations need a registry with a tenant catalog".into())
        })?;
        Ok(Fleet {
            registry: registry.clone(),
            catalog,
            options,
        })
    }

    /// Runs `op` on each selected tenant (at most [`FleetOptions::concurrency`] at once) with
    /// the admin handle of its backend; its `Ok` text is the tenant's detail.
    pub async fn for_each_tenant<F, Fut>(&self, operation: &str, op: F) -> Result<FleetReport>
    where
        F: Fn(TenantEntry, Admin) -> Fut,
        Fut: Future<Output = Result<String>>,
    {
        let mut report = FleetReport::start(operation, self.options.run.clone());
        let (work, done) = self.select(&mut report).await?;
        let (op, done) = (&op, &done);
        let results: Vec<TenantResult> = stream::iter(work)
            .map(|w| async move {
                let placement = w.entry.placement.to_string();
                let tenant = w.entry.id.to_string();
                if done.contains(&tenant) {
                    return TenantResult::skipped(tenant, placement, self.done_reason());
                }
                let outcome = match w.backend {
                    Err(e) => Outcome::failed(e),
                    Ok(b) => {
                        let admin = Db::from_backend(b).admin();
                        match op(w.entry.clone(), admin).await {
                            Ok(detail) => match self.mark_done(&w.entry.id).await {
                                Ok(()) => Outcome::Ok { detail },
                                Err(e) => Outcome::failed(format!("done, but not journaled: {e}")),
                            },
                            Err(e) => Outcome::failed(e.to_string()),
                        }
                    }
                };
                TenantResult {
                    tenant,
                    placement,
                    outcome,
                }
            })
            .buffer_unordered(self.options.concurrency.max(1))
            .collect()
            .await;
        report.tenants.extend(results);
        Ok(report.finish())
    }

    /// Runs `op` once per backend holding a selected tenant (at most
    /// [`FleetOptions::concurrency`] at once) with that backend's admin handle, and reports to
    /// each of its tenants: failed if `op` failed or names a problem of theirs, else ok.
    pub async fn for_each_backend<F, Fut>(&self, operation: &str, op: F) -> Result<FleetReport>
    where
        F: Fn(Admin) -> Fut,
        Fut: Future<Output = Result<BackendRun>>,
    {
        self.each_backend(operation, |admin, _| op(admin)).await
    }

    /// [`Fleet::for_each_backend`], `op` also given the catalog tenants living there.
    pub(crate) async fn each_backend<F, Fut>(&self, operation: &str, op: F) -> Result<FleetReport>
    where
        F: Fn(Admin, &[TenantEntry]) -> Fut,
        Fut: Future<Output = Result<BackendRun>>,
    {
        let mut report = FleetReport::start(operation, self.options.run.clone());
        let (work, done) = self.select(&mut report).await?;
        // Tenants grouped by backend (by URL, credentials hidden); unreachable ones fail alone.
        let mut groups: BTreeMap<String, (Backend, Vec<TenantEntry>)> = BTreeMap::new();
        for w in work {
            let tenant = w.entry.id.to_string();
            let placement = w.entry.placement.to_string();
            if done.contains(&tenant) {
                report
                    .tenants
                    .push(TenantResult::skipped(tenant, placement, self.done_reason()));
                continue;
            }
            match w.backend {
                Ok(b) => groups
                    .entry(b.url())
                    .or_insert((b, Vec::new()))
                    .1
                    .push(w.entry),
                Err(e) => report.tenants.push(TenantResult {
                    tenant,
                    placement,
                    outcome: Outcome::failed(e),
                }),
            }
        }
        let op = &op;
        let results: Vec<(BackendResult, Vec<TenantResult>)> = stream::iter(groups)
            .map(|(url, (backend, entries))| async move {
                let ran = op(Db::from_backend(backend).admin(), &entries).await;
                let mut tenants = Vec::with_capacity(entries.len());
                for e in &entries {
                    let tenant = e.id.to_string();
                    let outcome = match &ran {
                        Err(err) => Outcome::failed(err.to_string()),
                        Ok(run) => match run.tenant_problems.get(&tenant) {
                            Some(p) => Outcome::failed(p.clone()),
                            None => match self.mark_done(&e.id).await {
                                Ok(()) => Outcome::Ok {
                                    detail: run.detail.clone(),
                                },
                                Err(err) => {
                                    Outcome::failed(format!("done, but not journaled: {err}"))
                                }
                            },
                        },
                    };
                    tenants.push(TenantResult {
                        tenant,
                        placement: e.placement.to_string(),
                        outcome,
                    });
                }
                let outcome = match &ran {
                    Err(err) => Outcome::failed(err.to_string()),
                    Ok(run) if !run.other_problems.is_empty() => {
                        Outcome::failed(run.other_problems.join("; "))
                    }
                    Ok(run) => Outcome::Ok {
                        detail: run.detail.clone(),
                    },
                };
                let backend = BackendResult {
                    backend: url,
                    tenants: entries.len(),
                    outcome,
                };
                (backend, tenants)
            })
            .buffer_unordered(self.options.concurrency.max(1))
            .collect()
            .await;
        for (backend, tenants) in results {
            report.backends.push(backend);
            report.tenants.extend(tenants);
        }
        Ok(report.finish())
    }

    /// Exports each tenant of `models` into `dir` (one file per tenant, see [`export_file_name`]),
    /// written to a `.partial` file renamed when complete.
    pub async fn export(&self, models: &ModelSet, dir: &Path) -> Result<FleetReport> {
        self.for_each_tenant("export", |entry, admin| async move {
            let name = export_file_name(&entry.id);
            let partial = dir.join(format!("{name}.partial"));
            let io = |e: std::io::Error| Error::Stream(format!("{}: {e}", partial.display()));
            let file = std::fs::File::create(&partial).map_err(io)?;
            let mut out = std::io::BufWriter::new(file);
            let n = admin.export_tenant(&entry.id, models, &mut out).await?;
            let file = out
                .into_inner()
                .map_err(|e| Error::Stream(format!("{}: {e}", partial.display())))?;
            file.sync_all().map_err(io)?;
            std::fs::rename(&partial, dir.join(&name)).map_err(io)?;
            Ok(format!("{n} records to {name}"))
        })
        .await
    }

    /// The catalog's tenants to work on (or report as skipped), and those done in the run.
    async fn select(&self, report: &mut FleetReport) -> Result<(Vec<Work>, HashSet<String>)> {
        let page = self.catalog.list_all(None).await?;
        report.invalid = page.invalid.iter().map(|e| e.to_string()).collect();
        let only: Option<HashSet<&TenantId>> =
            self.options.only.as_ref().map(|o| o.iter().collect());
        let mut work = Vec::new();
        for entry in page.entries {
            if only.as_ref().is_some_and(|o| !o.contains(&entry.id)) {
                continue;
            }
            let skip = match entry.status {
                TenantStatus::Active => None,
                TenantStatus::Suspended if self.options.include_suspended => None,
                status => Some(format!("{status}")),
            };
            if let Some(reason) = skip {
                report.tenants.push(TenantResult::skipped(
                    entry.id.to_string(),
                    entry.placement.to_string(),
                    reason,
                ));
                continue;
            }
            let backend = self
                .registry
                .placement_of(&entry)
                .and_then(|p| self.registry.backend_of(p))
                .map(|b| match &self.options.record {
                    Some(log) => b.recording(log),
                    None => b,
                })
                .map_err(|e| e.to_string());
            work.push(Work { entry, backend });
        }
        if let Some(only) = &only {
            let known: HashSet<&str> = work
                .iter()
                .map(|w| w.entry.id.as_str())
                .chain(report.tenants.iter().map(|t| t.tenant.as_str()))
                .collect();
            let mut missing: Vec<&&TenantId> = only
                .iter()
                .filter(|t| !known.contains(t.as_str()))
                .collect();
            missing.sort();
            for t in missing {
                report.tenants.push(TenantResult {
                    tenant: t.to_string(),
                    placement: "-".into(),
                    outcome: Outcome::failed("not in the tenant catalog".into()),
                });
            }
        }
        let done = match &self.options.run {
            None => HashSet::new(),
            Some(run) => {
                let key = keys::fleet_journal_key(run);
                let fields: Vec<String> = self
                    .catalog
                    .backend()
                    .query("fleet journal", MODEL, redis::cmd("HKEYS").arg(&key))
                    .await?;
                fields.into_iter().collect()
            }
        };
        Ok((work, done))
    }

    fn done_reason(&self) -> String {
        format!(
            "done in run {:?}",
            self.options.run.as_deref().unwrap_or_default()
        )
    }

    /// Records `tenant` as done in the run's journal, if there is a run.
    async fn mark_done(&self, tenant: &TenantId) -> Result<()> {
        let Some(run) = &self.options.run else {
            return Ok(());
        };
        let key = keys::fleet_journal_key(run);
        let mut hset = redis::cmd("HSET");
        hset.arg(&key)
            .arg(tenant.as_str())
            .arg(chrono::Utc::now().timestamp_millis());
        let mut expire = redis::cmd("EXPIRE");
        expire.arg(&key).arg(JOURNAL_TTL_SECS);
        if let Some(log) = &self.options.record {
            let journal = self.catalog.backend().recording(log);
            journal.record(&hset);
            journal.record(&expire);
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.add_command(hset).ignore().add_command(expire).ignore();
        self.catalog
            .backend()
            .pipeline::<()>("fleet journal", MODEL, &pipe)
            .await
    }
}

/// The file name of a tenant's export: the id with every byte other than ASCII letters,
/// digits, `_` and `-` written `%XX`, then `.popoto` (so no id can name a path or hide a file).
///
/// ```
/// use popoto_core::{fleet::export_file_name, TenantId};
/// let t = TenantId::new("../acme:eu").unwrap();
/// assert_eq!(export_file_name(&t), "%2E%2E%2Facme%3Aeu.popoto");
/// ```
pub fn export_file_name(tenant: &TenantId) -> String {
    let mut out = String::with_capacity(tenant.as_str().len() + 7);
    for b in tenant.as_str().bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out.push_str(".popoto");
    out
}
