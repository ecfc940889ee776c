//! Moving the tenants' side of the grants: each tenant's grants hash, page by page (`HSCAN`),
//! into the target layout's grants hash of that tenant. Only grants of the set's models that
//! the source instance's subscribers hash confirms move (what every read of a grant trusts);
//! a target field holding another value is refused, never overwritten.

use redis::Value;

use super::land::RELAYOUT;
use super::pages::PAGE;
use super::snapshot::bad;
use super::OP;
use crate::backend::{Backend, KeyScan};
use crate::error::{Error, Result};
use crate::feed::wire::{num, text};
use crate::keys::{self, SharedKey};
use crate::maintenance::DryRun;
use crate::shared::grants::parse_grant;
use crate::tenant::TenantId;

/// What moving one tenant's grants did.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct GrantsMoved {
    /// Fields written (in a dry run: that would be).
    pub(super) written: u64,
    /// Fields not moved: malformed, or not confirmed by the instance's subscribers hash.
    pub(super) unconfirmed: u64,
}

/// The tenants holding a grants hash on `backend`, a page of the keyspace scan at a time.
pub(super) struct GrantHolders {
    scans: Vec<KeyScan>,
}

impl GrantHolders {
    /// Every grants hash of `backend`'s layout.
    pub(super) fn of(backend: &Backend) -> GrantHolders {
        let mut scans: Vec<KeyScan> = backend
            .layout()
            .shared_patterns()
            .into_iter()
            .map(|p| KeyScan::new(p, 1000))
            .collect();
        scans.reverse();
        GrantHolders { scans }
    }

    /// The tenants of the next page (grants keys written exactly as the layout writes them),
    /// `None` once every node was scanned.
    pub(super) async fn next(&mut self, backend: &Backend) -> Result<Option<Vec<TenantId>>> {
        let layout = backend.layout();
        loop {
            let Some(scan) = self.scans.last_mut() else {
                return Ok(None);
            };
            match scan.next(backend, OP, "-").await? {
                Some(page) => {
                    let tenants = page
                        .iter()
                        .filter_map(|k| match layout.parse_shared_key(k) {
                            Some(SharedKey::Grants(t)) => TenantId::new(t).ok(),
                            _ => None,
                        })
                        .collect();
                    return Ok(Some(tenants));
                }
                None => {
                    self.scans.pop();
                }
            }
        }
    }
}

/// Moves `tenant`'s grants of `models` from `src` to `dst`, page by page.
pub(super) async fn move_grants(
    src: &Backend,
    dst: &Backend,
    models: &[&'static str],
    tenant: &TenantId,
    dry_run: DryRun,
) -> Result<GrantsMoved> {
    let (from, to) = (src.layout(), dst.layout());
    let skey = from.shared_grants_key(tenant.as_str());
    let tkey = to.shared_grants_key(tenant.as_str());
    let mut out = GrantsMoved::default();
    let mut cursor = 0u64;
    loop {
        let mut cmd = redis::cmd("HSCAN");
        cmd.arg(&skey).arg(cursor).arg("COUNT").arg(PAGE);
        let (next, raw): (u64, Vec<(String, String)>) = src.query(OP, "-", &cmd).await?;
        // Well-formed grants of the set's models, each with its model's name.
        let mut candidates = Vec::with_capacity(raw.len());
        for (field, value) in raw {
            let grant = parse_grant(&field, &value)
                .and_then(|g| Some((models.iter().find(|m| **m == g.model).copied()?, g)));
            match grant {
                Some((model, g)) => candidates.push((field, value, model, g)),
                // Another model's grant (not moved with this set) is no finding.
                None if keys::parse_shared_grant_field(&field)
                    .is_some_and(|(m, _)| !models.contains(&m.as_str())) => {}
                None => {
                    tracing::warn!(key = %skey, field = %field, "malformed grant not moved");
                    out.unconfirmed += 1;
                }
            }
        }
        let cmds: Vec<(String, redis::Cmd)> = candidates
            .iter()
            .map(|(_, _, model, g)| {
                let key = from.shared_subs_key(model, g.id.as_str());
                let mut cmd = redis::cmd("HGET");
                cmd.arg(&key).arg(tenant.as_str());
                (key, cmd)
            })
            .collect();
        let confirmed: Vec<Option<String>> = match cmds.is_empty() {
            true => Vec::new(),
            false => src.pipeline_per_slot(OP, "-", &cmds).await?,
        };
        let mut fields = Vec::with_capacity(candidates.len());
        for ((field, value, model, g), c) in candidates.into_iter().zip(confirmed) {
            if c.as_deref() == Some(g.access.code()) {
                fields.push((field, value, model, g.id));
            } else {
                tracing::warn!(key = %skey, model, id = %g.id, "grant not confirmed by the subscribers hash not moved");
                out.unconfirmed += 1;
            }
        }
        if !fields.is_empty() {
            out.written += write(dst, &tkey, tenant, &fields, dry_run).await?;
        }
        if next == 0 {
            return Ok(out);
        }
        cursor = next;
    }
}

/// Writes the grants `fields` (field, value, model, id) into the target's hash `key` unless it
/// holds one with another value (refused: nothing of the page is written); the fields
/// written. A dry run reads the hash and writes nothing.
async fn write(
    dst: &Backend,
    key: &str,
    tenant: &TenantId,
    fields: &[(String, String, &'static str, crate::shared::SharedId)],
    dry_run: DryRun,
) -> Result<u64> {
    let conflict = |field: &str| {
        let (model, id) = fields
            .iter()
            .find(|f| f.0 == field)
            .map_or(("-", String::new()), |f| (f.2, f.3.to_string()));
        Error::SharedLayoutConflict {
            model,
            id,
            what: format!("grant of tenant {tenant}"),
        }
    };
    if dry_run == DryRun::Yes {
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(key);
        for f in fields {
            cmd.arg(&f.0);
        }
        let held: Vec<Option<String>> = dst.query(OP, "-", &cmd).await?;
        let mut n = 0;
        for (f, h) in fields.iter().zip(held) {
            match h {
                None => n += 1,
                Some(v) if v == f.1 => {}
                Some(_) => return Err(conflict(&f.0)),
            }
        }
        return Ok(n);
    }
    let mut a: Vec<Vec<u8>> = vec![b"grants".to_vec()];
    for f in fields {
        a.push(f.0.as_bytes().to_vec());
        a.push(f.1.as_bytes().to_vec());
    }
    let reply = dst.eval(OP, "-", &RELAYOUT, &[key.to_owned()], &a).await?;
    let Value::Array(items) = &reply else {
        return Err(bad(OP, &reply));
    };
    match text(items.first()).as_deref() {
        Some("ok") => num(items.get(1)).ok_or_else(|| bad(OP, &reply)),
        Some("exists") => Err(conflict(&text(items.get(1)).unwrap_or_default())),
        Some("wrongtype") => Err(Error::WrongType {
            model: "-",
            key: key.to_owned(),
            found: text(items.get(2)).unwrap_or_default(),
        }),
        _ => Err(bad(OP, &reply)),
    }
}
