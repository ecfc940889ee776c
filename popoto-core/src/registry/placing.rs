//! Tenants placed by the catalog: a lookup reads the tenant's catalog entry (cached by the
//! registry's [`CatalogView`], refreshed when the catalog's change counter moves), refuses
//! suspended and destroyed tenants, and keeps a slot per catalog tenant (so that they are
//! listed, have health and are rechecked like registered ones) until their entry changes.
//! Nothing is read or opened before the first lookup.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{lock, Health, Placement, Slot, SlotState, Source, TenantRegistry};
use crate::backend::{Backend, BackendConfig};
use crate::catalog::view::CatalogView;
use crate::catalog::{Catalog, CatalogPlacement, ServerUrl, TenantEntry, TenantStatus};
use crate::error::{Error, Result};
use crate::tenant::TenantId;

impl TenantRegistry {
    /// A registry on the shared server `shared_config` whose tenants are placed by the catalog
    /// stored on that server (polled for changes at most every `refresh`; see
    /// [`TenantRegistry::use_catalog`]), keeping at most [`super::DEFAULT_MAX_OPEN`] backends
    /// open ([`TenantRegistry::set_max_open`]). Nothing is dialed until the first lookup.
    pub fn with_catalog(shared_config: BackendConfig, refresh: Duration) -> Result<Self> {
        let registry = TenantRegistry::new(shared_config)?;
        registry.use_catalog(Catalog::new(registry.shared().clone()), refresh);
        registry.set_max_open(Some(super::DEFAULT_MAX_OPEN));
        Ok(registry)
    }

    /// Places tenants by `catalog`: its suspended and destroyed tenants are refused
    /// ([`Error::TenantSuspended`], [`Error::TenantDestroyed`]) even when registered here or
    /// placed by the policy; its active tenants go where their entry says, unless registered
    /// in this process. Changes made by any process are seen within `refresh` (the catalog's
    /// change counter is read at most that often, on a lookup; `Duration::ZERO`: every lookup).
    pub fn use_catalog(&self, catalog: Catalog, refresh: Duration) {
        *lock(&self.inner.catalog) = Some(Arc::new(CatalogView::new(catalog, refresh)));
    }

    /// The catalog this registry places tenants by, if any.
    pub fn catalog(&self) -> Option<Catalog> {
        lock(&self.inner.catalog)
            .as_ref()
            .map(|v| v.catalog().clone())
    }

    /// Forgets the cached catalog entries now (e.g. right after changing the catalog here).
    pub fn refresh_catalog(&self) {
        if let Some(view) = lock(&self.inner.catalog).as_ref() {
            view.invalidate();
        }
    }

    /// Defines what catalog placement `tier:<name>` means.
    pub fn set_tier(&self, name: impl Into<String>, placement: Placement) {
        lock(&self.inner.tiers).insert(name.into(), placement);
    }

    /// The registry placement of a catalog entry: a server placement keeps the shared
    /// backend's pool settings; a tier must have been defined with [`TenantRegistry::set_tier`].
    pub fn placement_of(&self, entry: &TenantEntry) -> Result<Placement> {
        Ok(match &entry.placement {
            CatalogPlacement::Shared => Placement::Shared,
            CatalogPlacement::Database(n) => Placement::Database(*n),
            CatalogPlacement::Server(url) => {
                let mut config = self.inner.shared_config.clone();
                config.url = url.expose().to_owned();
                Placement::Server(config)
            }
            CatalogPlacement::Tier(name) => lock(&self.inner.tiers)
                .get(name)
                .cloned()
                .ok_or_else(|| {
                    Error::Config(format!(
                        "tenant {:?} is placed on tier {name:?}, which this registry does not define (TenantRegistry::set_tier)",
                        entry.id.as_str()
                    ))
                })?,
        })
    }

    /// Where `tenant`'s data lives, whatever its status (lifecycle operations work on suspended
    /// and destroyed tenants too): its registration in this process, else its catalog entry,
    /// else the policy's or the default placement; [`Error::UnknownTenant`] if none places it.
    /// Returns the backend and the placement as the catalog writes it.
    pub async fn locate(&self, tenant: &TenantId) -> Result<(Backend, CatalogPlacement)> {
        let slot = lock(&self.inner.tenants).slots.get(tenant).cloned();
        if let Some(slot) = slot.filter(|s| !matches!(s.source, Source::Catalog(..))) {
            let placement = match &slot.source {
                Source::Placement(p) => Some(self.catalog_placement(p)?),
                _ => None,
            };
            let built = slot.state.lock().await.backend();
            let backend = match built {
                Some(b) => b,
                None => {
                    if let Some(b) = self.build(tenant, &slot).await {
                        return Ok((b.clone(), placement_or(placement, &b)?));
                    }
                    let state = slot.state.lock().await;
                    match (state.backend(), &state.health) {
                        (Some(b), _) => b,
                        (None, Health::Disabled(reason)) => {
                            return Err(Error::TenantDisabled {
                                tenant: tenant.to_string(),
                                reason: reason.clone(),
                            })
                        }
                        _ => {
                            return Err(Error::TenantUnregistered {
                                tenant: tenant.to_string(),
                            })
                        }
                    }
                }
            };
            let placement = placement_or(placement, &backend)?;
            return Ok((backend, placement));
        }
        if let Some(catalog) = self.catalog() {
            if let Some(entry) = catalog.get(tenant).await? {
                let backend = self.placed(self.placement_of(&entry)?)?;
                return Ok((backend, entry.placement));
            }
        }
        let policy = lock(&self.inner.policy).clone();
        let placement = policy
            .and_then(|p| p(tenant))
            .or_else(|| lock(&self.inner.default).clone());
        match placement {
            Some(p) => Ok((self.placed(p.clone())?, self.catalog_placement(&p)?)),
            None => Err(Error::UnknownTenant {
                tenant: tenant.to_string(),
            }),
        }
    }

    /// A registry placement as the catalog writes it.
    fn catalog_placement(&self, placement: &Placement) -> Result<CatalogPlacement> {
        Ok(match placement {
            Placement::Shared => CatalogPlacement::Shared,
            Placement::Database(n) => CatalogPlacement::Database(*n),
            Placement::Server(config) => {
                CatalogPlacement::Server(ServerUrl::new(config.url.clone())?)
            }
            Placement::Backend(b) => CatalogPlacement::Server(ServerUrl::new(b.connection_url())?),
        })
    }

    /// The slot serving `tenant` once the catalog was consulted: `slot` (registered here) or
    /// one for its catalog entry; `None` when neither places it.
    pub(super) async fn catalog_slot(
        &self,
        view: &CatalogView,
        tenant: &TenantId,
        slot: Option<Arc<Slot>>,
    ) -> Result<Option<Arc<Slot>>> {
        let is_catalog = |s: &Arc<Slot>| matches!(s.source, Source::Catalog(..));
        let Some(entry) = view.entry(tenant).await? else {
            // The catalog no longer knows it: its catalog slot goes.
            if slot.as_ref().is_some_and(is_catalog) {
                let mut tenants = lock(&self.inner.tenants);
                if tenants.slots.get(tenant).is_some_and(is_catalog) {
                    tenants.slots.remove(tenant);
                }
                return Ok(None);
            }
            return Ok(slot);
        };
        match entry.status {
            TenantStatus::Suspended => {
                return Err(Error::TenantSuspended {
                    tenant: tenant.to_string(),
                })
            }
            TenantStatus::Destroyed => {
                return Err(Error::TenantDestroyed {
                    tenant: tenant.to_string(),
                })
            }
            TenantStatus::Active => {}
        }
        let current = |s: &Arc<Slot>| match s.source {
            Source::Catalog(_, v) => v == entry.version,
            _ => true,
        };
        if let Some(s) = slot.as_ref().filter(|s| current(s)) {
            return Ok(Some(s.clone()));
        }
        let placement = self.placement_of(&entry)?;
        let new = Arc::new(Slot {
            source: Source::Catalog(placement, entry.version),
            state: tokio::sync::Mutex::new(SlotState {
                health: Health::Pending,
                held: super::open::Held::None,
                observed: false,
            }),
            last_used: AtomicU64::new(self.inner.tick.fetch_add(1, Ordering::Relaxed)),
        });
        let mut tenants = lock(&self.inner.tenants);
        if tenants.destroyed.contains(tenant) {
            return Err(Error::TenantDestroyed {
                tenant: tenant.to_string(),
            });
        }
        // Registered or placed by a concurrent lookup meanwhile: that slot serves.
        if let Some(s) = tenants.slots.get(tenant).filter(|s| current(s)) {
            return Ok(Some(s.clone()));
        }
        tenants.slots.insert(tenant.clone(), new.clone());
        Ok(Some(new))
    }
}

/// `placement`, or the server placement of `backend` (a lazily built tenant's).
fn placement_or(
    placement: Option<CatalogPlacement>,
    backend: &Backend,
) -> Result<CatalogPlacement> {
    match placement {
        Some(p) => Ok(p),
        None => Ok(CatalogPlacement::Server(ServerUrl::new(
            backend.connection_url(),
        )?)),
    }
}
