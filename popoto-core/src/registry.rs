//! Per-tenant backends: a registry that places tenants on the shared keyspace, an own logical
//! database or an own server, builds lazily registered backends on first use (exactly once under
//! concurrent first hits), tracks their health and caps the number of open backends.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::backend::{Backend, BackendConfig};
use crate::error::{Error, Result};
use crate::tenant::TenantId;

/// A boxed future, as factories and validators return.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Builds a tenant's backend on first use.
pub type Factory = Arc<dyn Fn(TenantId) -> BoxFuture<Result<Backend>> + Send + Sync>;

/// Checks that a backend answers (default: PING).
pub type Validator = Arc<dyn Fn(Backend) -> BoxFuture<Result<()>> + Send + Sync>;

/// Maps a tenant that was not registered to a placement (tiers); `None` means shared.
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

/// Health of a registered tenant's backend.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Health {
    /// Registered lazily, not built yet (or reaped by the open-backend cap).
    Pending,
    /// Built and validated.
    Healthy,
    /// Was healthy; the last recheck failed. Still used.
    Unverified,
    /// The factory or first validation failed; not retried until `recheck` or re-registration.
    Disabled(String),
}

enum Source {
    Placement(Placement),
    Lazy(Factory),
}

struct SlotState {
    health: Health,
    backend: Option<Backend>,
}

struct Slot {
    source: Source,
    state: tokio::sync::Mutex<SlotState>,
    last_used: AtomicU64,
}

struct Inner {
    shared: Backend,
    shared_url: String,
    slots: Mutex<HashMap<TenantId, Arc<Slot>>>,
    placed: Mutex<HashMap<String, Backend>>,
    policy: Mutex<Option<Policy>>,
    validator: Mutex<Validator>,
    max_open: Mutex<Option<usize>>,
    tick: AtomicU64,
}

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
    /// A registry whose unregistered tenants use `shared` (built from `shared_config`).
    pub fn new(shared_config: BackendConfig) -> Result<Self> {
        let shared_url = shared_config.url.clone();
        Ok(TenantRegistry {
            inner: Arc::new(Inner {
                shared: Backend::new(shared_config)?,
                shared_url,
                slots: Mutex::new(HashMap::new()),
                placed: Mutex::new(HashMap::new()),
                policy: Mutex::new(None),
                validator: Mutex::new(ping_validator()),
                max_open: Mutex::new(None),
                tick: AtomicU64::new(0),
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

    /// Places unregistered tenants (e.g. by tier); tenants it maps to `None` share the keyspace.
    pub fn set_policy(&self, f: impl Fn(&TenantId) -> Option<Placement> + Send + Sync + 'static) {
        *lock(&self.inner.policy) = Some(Arc::new(f));
    }

    /// Caps the number of open lazily built backends; the least recently used are reaped
    /// (back to `Pending`, rebuilt on next use).
    pub fn set_max_open(&self, max: Option<usize>) {
        *lock(&self.inner.max_open) = max;
    }

    /// Registers a tenant on a placement now and validates it.
    pub async fn register(&self, tenant: &TenantId, placement: Placement) -> Health {
        let slot = self.insert(tenant, Source::Placement(placement));
        self.build(tenant, &slot).await;
        let health = slot.state.lock().await.health.clone();
        health
    }

    /// Registers a tenant whose backend `factory` builds on first use.
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
                backend: None,
            }),
            last_used: AtomicU64::new(self.inner.tick.fetch_add(1, Ordering::Relaxed)),
        });
        lock(&self.inner.slots).insert(tenant.clone(), slot.clone());
        slot
    }

    /// Removes a tenant; a build in flight for it is discarded when it completes.
    pub fn unregister(&self, tenant: &TenantId) -> bool {
        lock(&self.inner.slots).remove(tenant).is_some()
    }

    /// Tenants and their health, sorted by id.
    pub async fn list(&self) -> Vec<(TenantId, Health)> {
        let slots: Vec<(TenantId, Arc<Slot>)> = lock(&self.inner.slots)
            .iter()
            .map(|(t, s)| (t.clone(), s.clone()))
            .collect();
        let mut out = Vec::with_capacity(slots.len());
        for (t, s) in slots {
            out.push((t, s.state.lock().await.health.clone()));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Health of one tenant (`None` if not registered).
    pub async fn health(&self, tenant: &TenantId) -> Option<Health> {
        let slot = lock(&self.inner.slots).get(tenant).cloned()?;
        let h = slot.state.lock().await.health.clone();
        Some(h)
    }

    /// Re-validates a tenant's backend: healthy or unverified → healthy on success, unverified
    /// on failure; disabled or pending → built again.
    pub async fn recheck(&self, tenant: &TenantId) -> Option<Health> {
        let slot = lock(&self.inner.slots).get(tenant).cloned()?;
        let mut state = slot.state.lock().await;
        match (&state.health, state.backend.clone()) {
            (Health::Healthy | Health::Unverified, Some(b)) => {
                let validator = lock(&self.inner.validator).clone();
                state.health = if validator(b).await.is_ok() {
                    Health::Healthy
                } else {
                    Health::Unverified
                };
                Some(state.health.clone())
            }
            _ => {
                state.health = Health::Pending;
                drop(state);
                self.build(tenant, &slot).await;
                let h = slot.state.lock().await.health.clone();
                Some(h)
            }
        }
    }

    /// Number of registered tenants whose backend is currently open.
    pub async fn open_count(&self) -> usize {
        let slots: Vec<Arc<Slot>> = lock(&self.inner.slots).values().cloned().collect();
        let mut n = 0;
        for s in slots {
            if s.state.lock().await.backend.is_some() {
                n += 1;
            }
        }
        n
    }

    /// The backend of `tenant`: its registered one (built on first use), the policy's
    /// placement, or the shared one.
    pub async fn backend_for(&self, tenant: &TenantId) -> Result<Backend> {
        let slot = lock(&self.inner.slots).get(tenant).cloned();
        let Some(slot) = slot else {
            let policy = lock(&self.inner.policy).clone();
            return match policy.and_then(|p| p(tenant)) {
                Some(placement) => self.placed(placement),
                None => Ok(self.inner.shared.clone()),
            };
        };
        slot.last_used.store(
            self.inner.tick.fetch_add(1, Ordering::Relaxed),
            Ordering::Relaxed,
        );
        {
            let state = slot.state.lock().await;
            match (&state.health, &state.backend) {
                (Health::Healthy | Health::Unverified, Some(b)) => return Ok(b.clone()),
                (Health::Disabled(reason), _) => {
                    return Err(Error::TenantDisabled {
                        tenant: tenant.to_string(),
                        reason: reason.clone(),
                    })
                }
                _ => {}
            }
        }
        self.build(tenant, &slot).await;
        let state = slot.state.lock().await;
        match (&state.health, &state.backend) {
            (Health::Healthy | Health::Unverified, Some(b)) => Ok(b.clone()),
            (Health::Disabled(reason), _) => Err(Error::TenantDisabled {
                tenant: tenant.to_string(),
                reason: reason.clone(),
            }),
            _ => Err(Error::TenantUnregistered {
                tenant: tenant.to_string(),
            }),
        }
    }

    /// A backend for a placement, shared by every tenant placed there.
    fn placed(&self, placement: Placement) -> Result<Backend> {
        let config = match placement {
            Placement::Shared => return Ok(self.inner.shared.clone()),
            Placement::Backend(b) => return Ok(b),
            Placement::Database(db) => {
                let base = self
                    .inner
                    .shared_url
                    .rsplit_once('/')
                    .map_or(self.inner.shared_url.as_str(), |(b, _)| b);
                BackendConfig::new(format!("{base}/{db}"))
            }
            Placement::Server(config) => config,
        };
        let mut placed = lock(&self.inner.placed);
        if let Some(b) = placed.get(&config.url) {
            return Ok(b.clone());
        }
        let b = Backend::new(config.clone())?;
        placed.insert(config.url, b.clone());
        Ok(b)
    }

    /// Builds a pending slot once: concurrent callers wait on the slot's lock and find it built.
    async fn build(&self, tenant: &TenantId, slot: &Arc<Slot>) {
        let mut state = slot.state.lock().await;
        if state.health != Health::Pending {
            return;
        }
        let built = match &slot.source {
            Source::Placement(p) => self.placed(p.clone()),
            Source::Lazy(factory) => factory(tenant.clone()).await,
        };
        let validated = match built {
            Ok(b) => {
                let validator = lock(&self.inner.validator).clone();
                validator(b.clone()).await.map(|()| b)
            }
            Err(e) => Err(e),
        };
        // Unregistered (or re-registered) meanwhile: keep nothing.
        let current = lock(&self.inner.slots)
            .get(tenant)
            .is_some_and(|s| Arc::ptr_eq(s, slot));
        if !current {
            return;
        }
        match validated {
            Ok(b) => {
                state.health = Health::Healthy;
                state.backend = Some(b);
                drop(state);
                self.reap(slot).await;
            }
            Err(e) => {
                state.health = Health::Disabled(e.to_string());
                state.backend = None;
            }
        }
    }

    /// Closes the least recently used lazily built backends above the cap.
    async fn reap(&self, keep: &Arc<Slot>) {
        let Some(max) = *lock(&self.inner.max_open) else {
            return;
        };
        let mut lazy: Vec<Arc<Slot>> = lock(&self.inner.slots)
            .values()
            .filter(|s| matches!(s.source, Source::Lazy(_)) && !Arc::ptr_eq(s, keep))
            .cloned()
            .collect();
        lazy.sort_by_key(|s| s.last_used.load(Ordering::Relaxed));
        let mut open = Vec::new();
        for s in lazy {
            let is_open = s
                .state
                .try_lock()
                .map(|st| st.backend.is_some())
                .unwrap_or(false);
            if is_open {
                open.push(s);
            }
        }
        // `keep` is open too.
        let excess = (open.len() + 1).saturating_sub(max);
        for s in open.into_iter().take(excess) {
            if let Ok(mut st) = s.state.try_lock() {
                st.backend = None;
                st.health = Health::Pending;
            }
        }
    }
}
