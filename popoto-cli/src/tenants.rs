//! `popoto tenants ...`: the tenant catalog.

use std::collections::BTreeMap;

use clap::Subcommand;
use popoto::catalog::ListQuery;
use popoto::{CatalogPlacement, DestroyReport, TenantEntry, TenantId, TenantStatus};
use serde::Serialize;

use crate::dry::Dry;
use crate::reach::{admin_for, tenant_id};
use crate::{Ctx, Failure, Io, EXIT_OK, EXIT_PARTIAL};

#[derive(Debug, Subcommand)]
pub(crate) enum TenantsCommand {
    /// Lists tenants by id, one page (or --all).
    List {
        /// Only tenants in this status (active, suspended, destroyed).
        #[arg(long)]
        status: Option<String>,
        /// Most tenants on the page.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Start after this id (the previous page's `next`).
        #[arg(long)]
        after: Option<String>,
        /// Every page.
        #[arg(long, conflicts_with_all = ["limit", "after"])]
        all: bool,
    },
    /// Shows one tenant's entry.
    Show {
        /// The tenant id.
        tenant: String,
    },
    /// Adds an active tenant (or starts a destroyed one afresh).
    Create {
        /// The tenant id.
        tenant: String,
        /// shared, db:<n>, server:<redis url> or tier:<name>.
        #[arg(long, default_value = "shared")]
        placement: String,
        /// Metadata entry name=value (repeatable).
        #[arg(long = "meta")]
        meta: Vec<String>,
        /// Print the Redis commands it would send; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Suspends a tenant: every process refuses it until resumed.
    Suspend {
        /// The tenant id.
        tenant: String,
        /// Print the Redis commands it would send; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Serves a suspended tenant again.
    Resume {
        /// The tenant id.
        tenant: String,
        /// Print the Redis commands it would send; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Marks a tenant destroyed (a durable tombstone), then removes its data.
    Destroy {
        /// The tenant id.
        tenant: String,
        /// Only mark it destroyed; leave its data (the only way without the application's models).
        #[arg(long)]
        keep_data: bool,
        /// Print the Redis commands it would send (the tombstone and every deletion); change
        /// nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Parses a placement; the message never repeats the value (it may hold a password).
fn placement(raw: &str) -> Result<CatalogPlacement, Failure> {
    raw.parse()
        .map_err(|e: popoto::Error| Failure::Usage(format!("--placement: {e}")))
}

fn metadata(raw: &[String]) -> Result<BTreeMap<String, String>, Failure> {
    raw.iter()
        .map(|m| match m.split_once('=') {
            Some((k, v)) => Ok((k.to_owned(), v.to_owned())),
            None => Err(Failure::Usage(format!("--meta {m:?}: expected name=value"))),
        })
        .collect()
}

/// One entry as a table row.
fn row(e: &TenantEntry) -> String {
    let meta: Vec<String> = e.metadata.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "{}\t{}\t{}\tv{}\t{}",
        e.id,
        e.status,
        e.placement,
        e.version,
        meta.join(",")
    )
}

/// The JSON of a changed entry; a destroy adds what was removed.
#[derive(Serialize)]
struct EntryJson<'a> {
    #[serde(flatten)]
    entry: &'a TenantEntry,
    #[serde(skip_serializing_if = "Option::is_none")]
    destroyed: Option<&'a DestroyReport>,
}

#[derive(Serialize)]
struct ListJson<'a> {
    entries: &'a [TenantEntry],
    invalid: Vec<String>,
    next: Option<&'a TenantId>,
}

pub(crate) async fn run(
    ctx: &Ctx<'_>,
    cmd: TenantsCommand,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    let catalog = &ctx.catalog;
    let entry = match cmd {
        TenantsCommand::List {
            status,
            limit,
            after,
            all,
        } => {
            let status: Option<TenantStatus> = status
                .map(|s| {
                    s.parse()
                        .map_err(|e: popoto::Error| Failure::Usage(e.to_string()))
                })
                .transpose()?;
            let page = if all {
                catalog.list_all(status).await?
            } else {
                let query = ListQuery {
                    status,
                    after: after.as_deref().map(tenant_id).transpose()?,
                    limit,
                };
                catalog.list(&query).await?
            };
            let invalid: Vec<String> = page.invalid.iter().map(|e| e.to_string()).collect();
            if io.json {
                io.json(&ListJson {
                    entries: &page.entries,
                    invalid: invalid.clone(),
                    next: page.next.as_ref(),
                })?;
            } else {
                for e in &page.entries {
                    io.line(&row(e))?;
                }
                if let Some(next) = &page.next {
                    io.note(&format!("more after {next} (--after {next})"));
                }
            }
            for i in &invalid {
                io.note(&format!("unreadable: {i}"));
            }
            io.note(&format!("{} tenants listed", page.entries.len()));
            return Ok(if invalid.is_empty() {
                EXIT_OK
            } else {
                EXIT_PARTIAL
            });
        }
        TenantsCommand::Show { tenant } => {
            let id = tenant_id(&tenant)?;
            match catalog.get(&id).await? {
                Some(e) => e,
                None => {
                    return Err(Failure::Op(popoto::Error::NotFound {
                        model: "tenant catalog",
                        key: popoto_core::keys::catalog_entry_key(id.as_str()),
                    }))
                }
            }
        }
        TenantsCommand::Create {
            tenant,
            placement: p,
            meta,
            dry_run,
        } => {
            let (id, p, meta) = (tenant_id(&tenant)?, placement(&p)?, metadata(&meta)?);
            let dry = Dry::new(dry_run);
            let entry = dry.catalog(catalog).create(&id, p, meta).await?;
            return changed(io, &dry, &entry, None);
        }
        TenantsCommand::Suspend { tenant, dry_run } => {
            let dry = Dry::new(dry_run);
            let entry = dry.catalog(catalog).suspend(&tenant_id(&tenant)?).await?;
            return changed(io, &dry, &entry, None);
        }
        TenantsCommand::Resume { tenant, dry_run } => {
            let dry = Dry::new(dry_run);
            let entry = dry.catalog(catalog).resume(&tenant_id(&tenant)?).await?;
            return changed(io, &dry, &entry, None);
        }
        TenantsCommand::Destroy {
            tenant,
            keep_data,
            dry_run,
        } => {
            let id = tenant_id(&tenant)?;
            if !keep_data {
                ctx.need_models("destroying a tenant's data (without --keep-data)")?;
            }
            let dry = Dry::new(dry_run);
            // Found before it is marked, wherever it lives; the tombstone first: no process
            // writes while the data goes.
            let before = catalog.get(&id).await?;
            let entry = dry.catalog(catalog).destroy(&id).await?;
            let mut report = None;
            if !keep_data {
                let located = before.as_ref().unwrap_or(&entry);
                let admin = admin_for(ctx, located, &dry).await?;
                let r = admin.destroy_tenant(&id, ctx.models).await?;
                let removed: u64 = r.instances.values().sum();
                io.note(&format!(
                    "{id}: {removed} instances, {} orphan index entries, {} shared-model grants and {} change-feed keys {}",
                    r.orphan_entries,
                    r.grants,
                    r.feed_keys,
                    if dry.is_on() {
                        "would be removed"
                    } else {
                        "removed"
                    }
                ));
                report = Some(r);
            }
            return changed(io, &dry, &entry, report.as_ref());
        }
    };
    if io.json {
        io.json(&entry)?;
    } else {
        io.line(&row(&entry))?;
    }
    Ok(EXIT_OK)
}

/// Prints a changed (or, in a dry run, to be changed) entry.
fn changed(
    io: &mut Io<'_>,
    dry: &Dry,
    entry: &TenantEntry,
    destroyed: Option<&DestroyReport>,
) -> Result<u8, Failure> {
    dry.output(io, &EntryJson { entry, destroyed }, &[row(entry)])?;
    Ok(EXIT_OK)
}
