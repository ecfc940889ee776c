//! `popoto stats`: keys and memory of every backend holding catalog tenants, and (with the
//! application's models) instances per tenant.

use std::collections::BTreeMap;

use popoto::{Backend, Db, TenantStatus};
use serde::Serialize;

use crate::{Ctx, Failure, Io, EXIT_OK, EXIT_PARTIAL};

/// One backend: what Redis measures for the whole keyspace (per tenant is not measurable on a
/// shared keyspace without scanning it).
#[derive(Debug, Serialize)]
struct BackendStats {
    /// URL, credentials hidden.
    backend: String,
    /// Catalog tenants (active or suspended) living there.
    tenants: usize,
    /// `DBSIZE`.
    keys: Option<u64>,
    /// `used_memory` of `INFO memory` (the whole server, every database).
    used_memory_bytes: Option<u64>,
    /// Why it could not be measured.
    error: Option<String>,
}

/// One tenant's instances per model (the application's binary only).
#[derive(Debug, Serialize)]
struct TenantStats {
    tenant: String,
    placement: String,
    instances: BTreeMap<&'static str, u64>,
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct Stats {
    backends: Vec<BackendStats>,
    tenants: Vec<TenantStats>,
}

async fn measure(backend: &Backend) -> popoto::Result<(u64, u64)> {
    let keys: u64 = backend.query("stats", "-", &redis::cmd("DBSIZE")).await?;
    let info: String = backend
        .query("stats", "-", redis::cmd("INFO").arg("memory"))
        .await?;
    let used = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| popoto::Error::Protocol {
            op: "stats",
            model: "-",
            detail: "INFO memory has no used_memory".into(),
        })?;
    Ok((keys, used))
}

pub(crate) async fn stats(ctx: &Ctx<'_>, io: &mut Io<'_>) -> Result<u8, Failure> {
    let page = ctx.catalog.list_all(None).await?;
    let mut groups: BTreeMap<String, (Backend, usize)> = BTreeMap::new();
    let mut out = Stats {
        backends: Vec::new(),
        tenants: Vec::new(),
    };
    let mut failed = !page.invalid.is_empty();
    for e in page
        .entries
        .iter()
        .filter(|e| e.status != TenantStatus::Destroyed)
    {
        let backend = ctx
            .registry
            .placement_of(e)
            .and_then(|p| ctx.registry.backend_of(p));
        let backend = match backend {
            Ok(b) => b,
            Err(err) => {
                failed = true;
                out.tenants.push(TenantStats {
                    tenant: e.id.to_string(),
                    placement: e.placement.to_string(),
                    instances: BTreeMap::new(),
                    error: Some(err.to_string()),
                });
                continue;
            }
        };
        groups
            .entry(backend.url())
            .or_insert((backend.clone(), 0))
            .1 += 1;
        if ctx.has_models() {
            let counts = Db::from_backend(backend)
                .admin()
                .tenant_counts(&e.id, ctx.models)
                .await;
            failed |= counts.is_err();
            let (instances, error) = match counts {
                Ok(c) => (c, None),
                Err(err) => (BTreeMap::new(), Some(err.to_string())),
            };
            out.tenants.push(TenantStats {
                tenant: e.id.to_string(),
                placement: e.placement.to_string(),
                instances,
                error,
            });
        }
    }
    for (url, (backend, tenants)) in groups {
        let (keys, used, error) = match measure(&backend).await {
            Ok((k, u)) => (Some(k), Some(u), None),
            Err(e) => {
                failed = true;
                (None, None, Some(e.to_string()))
            }
        };
        out.backends.push(BackendStats {
            backend: url,
            tenants,
            keys,
            used_memory_bytes: used,
            error,
        });
    }
    if io.json {
        io.json(&out)?;
    } else {
        for b in &out.backends {
            let line = match &b.error {
                Some(e) => format!("{}\t{} tenants\tunreachable: {e}", b.backend, b.tenants),
                None => format!(
                    "{}\t{} tenants\t{} keys\t{} bytes used",
                    b.backend,
                    b.tenants,
                    b.keys.unwrap_or(0),
                    b.used_memory_bytes.unwrap_or(0)
                ),
            };
            io.line(&line)?;
        }
        for t in &out.tenants {
            let counts: Vec<String> = t
                .instances
                .iter()
                .map(|(m, n)| format!("{m}={n}"))
                .collect();
            let line = match &t.error {
                Some(e) => format!("{}\t{}\tfailed: {e}", t.tenant, t.placement),
                None => format!("{}\t{}\t{}", t.tenant, t.placement, counts.join(",")),
            };
            io.line(&line)?;
        }
    }
    for e in &page.invalid {
        io.note(&format!("unreadable: {e}"));
    }
    Ok(if failed { EXIT_PARTIAL } else { EXIT_OK })
}
