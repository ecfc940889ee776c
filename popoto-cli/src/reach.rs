//! Where a command's tenant lives: its id parsed from the command line, and the admin handle of
//! the backend that holds its data.

use popoto::{Admin, Db, TenantEntry, TenantId};

use crate::dry::Dry;
use crate::{Ctx, Failure};

/// Parses a tenant id given on the command line (a usage error if it is not valid).
pub(crate) fn tenant_id(raw: &str) -> Result<TenantId, Failure> {
    TenantId::new(raw).map_err(|e| Failure::Usage(e.to_string()))
}

/// The admin handle where a catalog tenant lives, whatever its status (recording in a dry run).
pub(crate) async fn admin_for(
    ctx: &Ctx<'_>,
    entry: &TenantEntry,
    dry: &Dry,
) -> Result<Admin, Failure> {
    let placement = ctx.registry.placement_of(entry)?;
    let backend = dry.backend(ctx.registry.backend_of(placement)?);
    Ok(Db::from_backend(backend).admin())
}

/// The admin handle for `tenant`: where the catalog places it, else the shared server.
pub(crate) async fn admin_of(
    ctx: &Ctx<'_>,
    tenant: &TenantId,
    dry: &Dry,
) -> Result<Admin, Failure> {
    match ctx.catalog.get(tenant).await? {
        Some(entry) => admin_for(ctx, &entry, dry).await,
        None => Ok(Db::from_backend(dry.backend(ctx.registry.shared().clone())).admin()),
    }
}
