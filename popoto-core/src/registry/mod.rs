//! Per-tenant backends: a registry that places tenants on the shared keyspace, an own logical
//! database or an own server, builds lazily registered backends on first use (exactly once under
//! concurrent first hits), tracks their health and caps the number of open backends.
//!
//! It fails closed: a tenant that is neither registered nor placed by the policy is refused
//! ([`Error::UnknownTenant`]) unless the application opted in to a default placement, and a
//! destroyed tenant is refused ([`Error::TenantDestroyed`]) until it is registered again.
//!
//! With a tenant catalog ([`TenantRegistry::use_catalog`], `placing.rs`) the catalog's status
//! comes first (suspended and destroyed tenants are refused) and its placement places the
//! tenants it knows; health reacts to real failures of a tenant's backend and is rechecked
//! periodically (`health.rs`).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::backend::{Backend, BackendConfig};
use crate::catalog::view::CatalogView;
use crate::error::{Error, Result};
use crate::tenant::TenantId;

mod health;
mod open;
mod placing;
mod watch;

pub use health::{HealthChecker, HealthEvent, HealthPolicy};
pub use open::DEFAULT_MAX_OPEN;
pub use watch::CatalogWatcher;

/// A boxed future, as factories and validators return.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Builds a tenant's backend on first use.
pub type Factory = Arc<dyn Fn(TenantId) -> BoxFuture<Result<Backend>> + Send + Sync>;

/// Checks that a backend answers (default: PING).
pub type Validator = Arc<dyn Fn(Backend) -> BoxFuture<Result<()>> + Send + Sync>;

/// Maps a tenant that was not registered to a placement (tiers); `None` leaves it to the default
/// placement, if any, or refuses it.
pub type Policy = Arc<dyn Fn(&TenantId) -> Option<Placement> + Send + Sync>;

/// Where a tenant's data lives.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Placement {
    /// The shared keyspace (keys partitioned by tenant).
    Shared,
    /// Its own logical database on the shared server.
    Database(u8),
    /// Its own Redis server.
    Server(BackendConfig),
    /// A backend built by the application.
    Backend(Backend),
}

/// Health of a registered (or catalog) tenant's backend.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Health {
    /// Registered lazily, not built yet (or reaped by the open-backend cap).
    Pending,
    /// Built and validated.
    Healthy,
    /// Was healthy; the last recheck failed, or calls on it failed at the connection level
    /// ([`HealthPolicy::unverified_after`]). Still used.
    Unverified,
    /// The factory or first validation failed, or [`HealthPolicy::disable_after`] calls in a row
    /// failed at the connection level: refused with [`Error::TenantDisabled`] until a recheck
    /// (`recheck`, the periodic checker) or a re-registration succeeds.
    Disabled(String),
}

enum Source {
    Placement(Placement),
    Lazy(Factory),
    /// Placed by the catalog entry of this version.
    Catalog(Placement, u64),
}

struct SlotState {
    health: Health,
    /// Its backend once built.
    held: open::Held,
    /// Whether `health` was set by observing failed calls (a call that succeeds undoes it).
    observed: bool,
}

impl SlotState {
    /// The backend, if built and still open.
    fn backend(&self) -> Option<Backend> {
        self.held.backend()
    }
}

struct Slot {
    source: Source,
    state: tokio::sync::Mutex<SlotState>,
    last_used: AtomicU64,
}

/// Registered tenants and tombstones, under one lock so that `register` and `tombstone` are
/// atomic with respect to lookups.
#[derive(Default)]
struct Tenants {
    slots: HashMap<TenantId, Arc<Slot>>,
    /// Destroyed tenants, refused until registered again (in-process only).
    destroyed: HashSet<TenantId>,
}

struct Inner {
    shared: Backend,
    /// The shared backend's settings: logical databases on it use them too.
    shared_config: BackendConfig,
    tenants: Mutex<Tenants>,
    /// Backends opened for placements (own databases, own servers), by URL: the only strong
    /// references to them (slots hold them weakly), so dropping one here closes it.
    placed: Mutex<HashMap<String, Arc<open::Placed>>>,
    policy: Mutex<Option<Policy>>,
    default: Mutex<Option<Placement>>,
    validator: Mutex<Validator>,
    /// The open-backend cap (`usize::MAX`: none).
    max_open: AtomicUsize,
    /// Entries of `placed` (read without its lock on every request).
    placed_len: AtomicUsize,
    tick: AtomicU64,
    catalog: Mutex<Option<Arc<CatalogView>>>,
    tiers: Mutex<HashMap<String, Placement>>,
    health_policy: Mutex<HealthPolicy>,
    events: tokio::sync::broadcast::Sender<HealthEvent>,
}

/// Times a lookup builds a backend the open-backend cap keeps closing (see `backend_for`).
const BUILD_TRIES: usize = 4;

/// Maps tenants to backends. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct TenantRegistry {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TenantRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantRegistry")
            .field("shared", &self.inner.shared)
            .finish_non_exhaustive()
    }
}

fn ping_validator() -> Validator {
    Arc::new(|backend: Backend| {
        Box::pin(async move {
            let pong: String = backend.query("validate", "-", &redis::cmd("PING")).await?;
            if pong == "PONG" {
                Ok(())
            } else {
                Err(Error::Protocol {
                    op: "validate",
                    model: "-",
                    detail: pong,
                })
            }
        })
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl TenantRegistry {
    /// A registry on the shared server `shared_config`; only registered tenants (or those the
    /// policy or an opted-in default placement places) are served.
    pub fn new(shared_config: BackendConfig) -> Result<Self> {
        Ok(TenantRegistry {
            inner: Arc::new(Inner {
                shared: Backend::new(shared_config.clone())?,
                shared_config,
                tenants: Mutex::new(Tenants::default()),
                placed: Mutex::new(HashMap::new()),
                policy: Mutex::new(None),
                default: Mutex::new(None),
                validator: Mutex::new(ping_validator()),
                max_open: AtomicUsize::new(usize::MAX),
                placed_len: AtomicUsize::new(0),
                tick: AtomicU64::new(0),
                catalog: Mutex::new(None),
                tiers: Mutex::new(HashMap::new()),
                health_policy: Mutex::new(HealthPolicy::default()),
                events: tokio::sync::broadcast::channel(256).0,
            }),
        })
    }

    /// The shared backend.
    pub fn shared(&self) -> &Backend {
        &self.inner.shared
    }

    /// Replaces the validator run on first build and on `recheck` (default: PING).
    pub fn set_validator<F, Fut>(&self, f: F)
    where
        F: Fn(Backend) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        *lock(&self.inner.validator) = Arc::new(move |b| Box::pin(f(b)));
    }

    /// Places unregistered tenants (e.g. by tier); tenants it maps to `None` get the default
    /// placement, or are refused with [`Error::UnknownTenant`] when there is none.
    pub fn set_policy(&self, f: impl Fn(&TenantId) -> Option<Placement> + Send + Sync + 'static) {
        *lock(&self.inner.policy) = Some(Arc::new(f));
    }

    /// Opts in to serving tenants that are neither registered nor placed by the policy on
    /// `placement` (typically `Placement::Shared`); `None`, the default, refuses them with
    /// [`Error::UnknownTenant`]. Destroyed tenants stay refused either way.
    pub fn set_default_placement(&self, placement: Option<Placement>) {
        *lock(&self.inner.default) = placement;
    }

    /// Caps the number of backends (connection pools) the registry keeps open: lazily built
    /// ones and those opened for placements (own databases and own servers of registered,
    /// policy and catalog tenants; the shared backend and [`Placement::Backend`] ones are not
    /// counted). Past the cap the least recently used are closed (their tenants back to
    /// `Pending`, reopened on next use); `None`: no cap (the default, but
    /// [`TenantRegistry::with_catalog`] sets [`DEFAULT_MAX_OPEN`]).
    pub fn set_max_open(&self, max: Option<usize>) {
        self.inner
            .max_open
            .store(max.unwrap_or(usize::MAX), Ordering::Relaxed);
    }

    /// Registers a tenant on a placement now and validates it; clears its tombstone.
    pub async fn register(&self, tenant: &TenantId, placement: Placement) -> Health {
        let slot = self.insert(tenant, Source::Placement(placement));
        self.build(tenant, &slot).await;
        let health = slot.state.lock().await.health.clone();
        health
    }

    /// Registers a tenant whose backend `factory` builds on first use; clears its tombstone.
    pub fn register_lazy<F, Fut>(&self, tenant: &TenantId, factory: F)
    where
        F: Fn(TenantId) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Backend>> + Send + 'static,
    {
        let factory: Factory = Arc::new(move |t| Box::pin(factory(t)));
        self.insert(tenant, Source::Lazy(factory));
    }

    fn insert(&self, tenant: &TenantId, source: Source) -> Arc<Slot> {
        let slot = Arc::new(Slot {
            source,
            state: tokio::sync::Mutex::new(SlotState {
                health: Health::Pending,
                held: open::Held::None,
                observed: false,
            }),
            last_used: AtomicU64::new(self.inner.tick.fetch_add(1, Ordering::Relaxed)),
        });
        let mut tenants = lock(&self.inner.tenants);
        tenants.destroyed.remove(tenant);
        tenants.slots.insert(tenant.clone(), slot.clone());
        slot
    }

    /// Removes a tenant (it is unknown from now on, refused unless the policy or the default
    /// placement places it); a build in flight for it is discarded when it completes.
    pub fn unregister(&self, tenant: &TenantId) -> bool {
        lock(&self.inner.tenants).slots.remove(tenant).is_some()
    }

    /// Marks a tenant destroyed (`Db::destroy_tenant` does it): removes its registration and
    /// refuses it with [`Error::TenantDestroyed`], even where the policy or the default
    /// placement would place it, until it is registered again. Kept in this process only.
    pub fn tombstone(&self, tenant: &TenantId) {
        let mut tenants = lock(&self.inner.tenants);
        tenants.slots.remove(tenant);
        tenants.destroyed.insert(tenant.clone());
    }

    /// Whether a tenant is tombstoned (destroyed and not registered again).
    pub fn is_destroyed(&self, tenant: &TenantId) -> bool {
        lock(&self.inner.tenants).destroyed.contains(tenant)
    }

    /// Tombstoned tenants, sorted (e.g. to persist them and `tombstone` them after a restart).
    pub fn tombstones(&self) -> Vec<TenantId> {
        let mut out: Vec<TenantId> = lock(&self.inner.tenants)
            .destroyed
            .iter()
            .cloned()
            .collect();
        out.sort();
        out
    }

    /// Tenants and their health, sorted by id.
    pub async fn list(&self) -> Vec<(TenantId, Health)> {
        let slots: Vec<(TenantId, Arc<Slot>)> = lock(&self.inner.tenants)
            .slots
            .iter()
            .map(|(t, s)| (t.clone(), s.clone()))
            .collect();
        let mut out = Vec::with_capacity(slots.len());
        for (t, s) in slots {
            let state = s.state.lock().await;
            let health = if state.held.is_closed() {
                Health::Pending
            } else {
                state.health.clone()
            };
            out.push((t, health));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Health of one tenant (`None` if not registered and not yet placed by the catalog),
    /// after observing the failures of the calls made on its backend since.
    pub async fn health(&self, tenant: &TenantId) -> Option<Health> {
        let slot = lock(&self.inner.tenants).slots.get(tenant).cloned()?;
        let mut state = slot.state.lock().await;
        self.observe(tenant, &mut state);
        Some(state.health.clone())
    }

    /// Re-validates a tenant's backend: healthy or unverified → healthy on success, unverified
    /// on failure; disabled or pending → built again.
    pub async fn recheck(&self, tenant: &TenantId) -> Option<Health> {
        let slot = lock(&self.inner.tenants).slots.get(tenant).cloned()?;
        let mut state = slot.state.lock().await;
        match (&state.health, state.backend()) {
            (Health::Healthy | Health::Unverified, Some(b)) => {
                let validator = lock(&self.inner.validator).clone();
                let health = if validator(b).await.is_ok() {
                    Health::Healthy
                } else {
                    Health::Unverified
                };
                self.transition(tenant, &mut state, health, "recheck");
                Some(state.health.clone())
            }
            _ => {
                self.transition(tenant, &mut state, Health::Pending, "recheck");
                drop(state);
                self.build(tenant, &slot).await;
                let h = slot.state.lock().await.health.clone();
                Some(h)
            }
        }
    }

    /// Number of registered tenants whose backend is currently open.
    pub async fn open_count(&self) -> usize {
        let slots: Vec<Arc<Slot>> = lock(&self.inner.tenants).slots.values().cloned().collect();
        let mut n = 0;
        for s in slots {
            if s.state.lock().await.backend().is_some() {
                n += 1;
            }
        }
        n
    }

    /// The backend of `tenant`: its registered one (built on first use), the policy's
    /// placement or the default placement; otherwise [`Error::UnknownTenant`], and
    /// [`Error::TenantDestroyed`] for a tombstoned tenant.
    ///
    /// With a catalog, a tenant it marks suspended or destroyed is refused
    /// ([`Error::TenantSuspended`], [`Error::TenantDestroyed`]) whatever else places it, and a
    /// tenant whose backend is disabled is refused with [`Error::TenantDisabled`].
    pub async fn backend_for(&self, tenant: &TenantId) -> Result<Backend> {
        let (slot, catalog) = {
            let tenants = lock(&self.inner.tenants);
            if tenants.destroyed.contains(tenant) {
                return Err(Error::TenantDestroyed {
                    tenant: tenant.to_string(),
                });
            }
            let catalog = lock(&self.inner.catalog).clone();
            (tenants.slots.get(tenant).cloned(), catalog)
        };
        let slot = match catalog {
            // Boxed: keeps the futures of every data operation (which await this) shallow.
            Some(view) => Box::pin(self.catalog_slot(&view, tenant, slot)).await?,
            None => slot,
        };
        let Some(slot) = slot else {
            let policy = lock(&self.inner.policy).clone();
            let placement = policy
                .and_then(|p| p(tenant))
                .or_else(|| lock(&self.inner.default).clone());
            return match placement {
                Some(placement) => self.placed(placement),
                None => Err(Error::UnknownTenant {
                    tenant: tenant.to_string(),
                }),
            };
        };
        slot.last_used.store(
            self.inner.tick.fetch_add(1, Ordering::Relaxed),
            Ordering::Relaxed,
        );
        // A backend the cap closes between a build and its use is built again (a few times at
        // most: it is in use, so closed only by a race with a burst of other tenants).
        for _ in 0..BUILD_TRIES {
            {
                let mut state = slot.state.lock().await;
                self.observe(tenant, &mut state);
                if state.held.is_closed() {
                    state.held = open::Held::None;
                    self.transition(
                        tenant,
                        &mut state,
                        Health::Pending,
                        "closed by the open-backend cap",
                    );
                }
                let now = self.inner.tick.fetch_add(1, Ordering::Relaxed);
                match (&state.health, state.held.use_at(now)) {
                    (Health::Healthy | Health::Unverified, Some(b)) => {
                        drop(state);
                        self.recheck_cap();
                        return Ok(b);
                    }
                    (Health::Disabled(reason), _) => {
                        return Err(Error::TenantDisabled {
                            tenant: tenant.to_string(),
                            reason: reason.clone(),
                        })
                    }
                    _ => {}
                }
            }
            if let Some(b) = self.build(tenant, &slot).await {
                return Ok(b);
            }
            let current = lock(&self.inner.tenants)
                .slots
                .get(tenant)
                .is_some_and(|s| Arc::ptr_eq(s, &slot));
            if !current {
                break;
            }
        }
        if self.is_destroyed(tenant) {
            return Err(Error::TenantDestroyed {
                tenant: tenant.to_string(),
            });
        }
        Err(Error::TenantUnregistered {
            tenant: tenant.to_string(),
        })
    }

    /// Builds a pending slot once: concurrent callers wait on the slot's lock and find it
    /// built. Returns the backend when this call built it.
    async fn build(&self, tenant: &TenantId, slot: &Arc<Slot>) -> Option<Backend> {
        let mut state = slot.state.lock().await;
        if state.health != Health::Pending {
            return None;
        }
        // `in_use` keeps the backend open (the cap does not close one in use) until stored.
        let built = match &slot.source {
            Source::Placement(p) | Source::Catalog(p, _) => self.placed_held(p.clone()),
            Source::Lazy(factory) => factory(tenant.clone())
                .await
                .map(|b| (open::Held::Own(b.clone()), b)),
        };
        let validated = match built {
            Ok((held, in_use)) => {
                let validator = lock(&self.inner.validator).clone();
                validator(in_use.clone()).await.map(|()| (held, in_use))
            }
            Err(e) => Err(e),
        };
        // Unregistered (or re-registered) meanwhile: keep nothing.
        let current = lock(&self.inner.tenants)
            .slots
            .get(tenant)
            .is_some_and(|s| Arc::ptr_eq(s, slot));
        if !current {
            return None;
        }
        match validated {
            Ok((held, in_use)) => {
                let lazy = matches!(slot.source, Source::Lazy(_));
                self.transition(tenant, &mut state, Health::Healthy, "build");
                state.held = held;
                drop(state);
                if lazy {
                    self.enforce_cap(open::Keep {
                        url: None,
                        slot: Some(slot),
                    });
                }
                Some(in_use)
            }
            Err(e) => {
                self.transition(tenant, &mut state, Health::Disabled(e.to_string()), "build");
                state.held = open::Held::None;
                None
            }
        }
    }
}
