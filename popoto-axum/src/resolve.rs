//! The resolution of one request: authenticate, select, authorize, check the tenant's status.
//!
//! Order matters for the "no enumeration oracle" rule: authorization comes before any lookup of
//! the tenant, so a caller that is not allowed a tenant gets the same answer, after the same
//! work, whether the tenant exists, is suspended, destroyed or unknown.

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use popoto_core::{Db, Error, TenantId};

use crate::auth::{AuthSource, Presented, Principal};
use crate::cache::{catalog_generation, CacheTtl, TtlCache};
use crate::error::ApiError;
use crate::extract::Tenant;
use crate::select::{is_trusted, Selection};
use crate::tenancy::{StatusHook, Tenancy, TenantStatus};

impl Tenancy {
    /// Resolves a request to its tenant, or the error response to send.
    pub async fn resolve(&self, parts: &Parts) -> Result<Tenant, ApiError> {
        // Cached answers computed before a catalog change are not served after it.
        let generation = if self.inner.keys_or_statuses_cached() {
            catalog_generation(&self.inner.db).await
        } else {
            Some(0)
        };
        let principal = self.authenticate(parts, generation).await?;
        let tenant = self.select(parts, principal.as_ref())?;
        if !self.authorized(principal.as_ref(), &tenant).await {
            return Err(deny(principal.as_ref(), &tenant, "not authorized"));
        }
        // From here the caller is a member: distinct statuses are allowed.
        let i = &self.inner;
        check_tenant(
            &i.db,
            i.status.as_ref(),
            &i.statuses,
            i.ttl,
            &tenant,
            generation,
        )
        .await?;
        let session = self.inner.db.tenant_id(&tenant);
        Ok(Tenant::new(tenant, session, principal))
    }

    /// The principal proven by the first credential present (`None`: anonymous).
    async fn authenticate(
        &self,
        parts: &Parts,
        generation: Option<u64>,
    ) -> Result<Option<Principal>, ApiError> {
        for source in &self.inner.auth {
            match (source, source.presented(&parts.headers)) {
                (_, Presented::Absent) => continue,
                (_, Presented::Malformed(why)) => return Err(ApiError::invalid_credentials(why)),
                (AuthSource::Jwt(config), Presented::Bearer(token)) => {
                    return config
                        .verify(token)
                        .map(Some)
                        .map_err(ApiError::invalid_credentials);
                }
                (AuthSource::ApiKey { resolver, .. }, Presented::Key(key)) => {
                    let cached = self.inner.keys.get(&key.to_owned(), generation);
                    let principal = match cached {
                        Some(p) => p,
                        None => {
                            let p = resolver(key.to_owned()).await.map_err(|e| {
                                ApiError::unavailable(format!("API key resolver failed: {e}"))
                            })?;
                            let ttl = if p.is_some() {
                                self.inner.ttl.positive
                            } else {
                                self.inner.ttl.negative
                            };
                            self.inner
                                .keys
                                .insert(key.to_owned(), p.clone(), ttl, generation);
                            p
                        }
                    };
                    return principal
                        .map(Some)
                        .ok_or_else(|| ApiError::invalid_credentials("unknown API key"));
                }
                // A source only ever presents its own kind of credential.
                _ => continue,
            }
        }
        Ok(None)
    }

    /// The tenant the request selects: the first selection source that finds one, else the
    /// principal's only tenant, else the default tenant.
    fn select(&self, parts: &Parts, principal: Option<&Principal>) -> Result<TenantId, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let trusted = is_trusted(peer, &self.inner.trusted_proxies);
        for selector in &self.inner.select {
            match selector.select(parts, trusted) {
                Selection::None => continue,
                Selection::Tenant(t) => return Ok(t),
                // Invalid ids get the answer unknown ones get.
                Selection::Invalid(why) => {
                    return Err(match principal {
                        None => ApiError::unauthenticated(format!("invalid selection: {why}")),
                        Some(p) => ApiError::tenant_not_found(format!(
                            "invalid selection by {:?}: {why}",
                            p.subject()
                        )),
                    })
                }
            }
        }
        if let Some(p) = principal {
            if let [only] = p.tenants() {
                return Ok(only.clone());
            }
        }
        if let Some(t) = &self.inner.default_tenant {
            return Ok(t.clone());
        }
        Err(match principal {
            None => ApiError::unauthenticated("no credential and no tenant selected"),
            Some(p) => ApiError::tenant_required(format!(
                "{:?} is a member of {} tenants and the request selects none",
                p.subject(),
                p.tenants().len()
            )),
        })
    }

    async fn authorized(&self, principal: Option<&Principal>, tenant: &TenantId) -> bool {
        match &self.inner.authorizer {
            Some(f) => f(principal.cloned(), tenant.clone()).await,
            None => principal.is_some_and(|p| p.is_member(tenant)),
        }
    }
}

/// Whether `tenant` may be served: the status hook (cached in `cache` at catalog generation
/// `generation`) and the `Db`'s registry (live, its catalog included); unknown 404, suspended
/// 403, destroyed 410, disabled or unreachable 503.
pub(crate) async fn check_tenant(
    db: &Db,
    hook: Option<&StatusHook>,
    cache: &TtlCache<TenantId, TenantStatus>,
    ttl: CacheTtl,
    tenant: &TenantId,
    generation: Option<u64>,
) -> Result<(), ApiError> {
    if let Some(hook) = hook {
        let status = match cache.get(tenant, generation) {
            Some(s) => s,
            None => {
                let s = hook(tenant.clone()).await.map_err(|e| {
                    ApiError::tenant_unavailable(format!("status of tenant {tenant:?} failed: {e}"))
                })?;
                let keep = match s {
                    TenantStatus::Unknown => ttl.negative,
                    _ => ttl.positive,
                };
                cache.insert(tenant.clone(), s, keep, generation);
                s
            }
        };
        match status {
            TenantStatus::Active => {}
            TenantStatus::Suspended => {
                return Err(ApiError::tenant_suspended(format!(
                    "tenant {tenant:?} is suspended"
                )))
            }
            _ => {
                return Err(ApiError::tenant_not_found(format!(
                    "tenant {tenant:?} is unknown to the status hook"
                )))
            }
        }
    }
    let Some(registry) = db.registry() else {
        return Ok(());
    };
    match registry.backend_for(tenant).await {
        Ok(_) => Ok(()),
        Err(e @ Error::UnknownTenant { .. }) => Err(ApiError::tenant_not_found(e.to_string())),
        Err(e @ Error::TenantDestroyed { .. }) => Err(ApiError::tenant_destroyed(e.to_string())),
        Err(e @ Error::TenantSuspended { .. }) => Err(ApiError::tenant_suspended(e.to_string())),
        Err(e) => Err(ApiError::tenant_unavailable(e.to_string())),
    }
}

/// The refusal of a tenant the caller may not use: 401 to an anonymous caller, the uniform 404
/// to an authenticated one; the same whatever the tenant's state.
fn deny(principal: Option<&Principal>, tenant: &TenantId, why: &str) -> ApiError {
    match principal {
        None => ApiError::unauthenticated(format!("anonymous caller, tenant {tenant:?}: {why}")),
        Some(p) => ApiError::tenant_not_found(format!(
            "{:?} asked for tenant {tenant:?}: {why}",
            p.subject()
        )),
    }
}
