//! The backends a registry keeps open, and the cap on them: pools opened for placements (one
//! per URL, shared by every tenant placed there) and lazily built ones.
//!
//! The registry holds the only strong reference to a placement's backend; the slots of the
//! tenants placed there hold it weakly. Past the cap the least recently used are closed: a
//! placement's backend is dropped from the registry (its pool closes once the calls in flight
//! on it are done; its tenants open a new one on their next request), a lazily built one is
//! dropped from its slot (back to `Pending`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use super::{lock, Health, Placement, Slot, Source, TenantRegistry};
use crate::backend::Backend;
use crate::error::Result;
use crate::redis_url;
use crate::tenant::TenantId;

/// The cap [`TenantRegistry::with_catalog`] sets: backends kept open at most.
pub const DEFAULT_MAX_OPEN: usize = 128;

/// A backend opened for a placement, and when it was last used.
pub(super) struct Placed {
    backend: Backend,
    used: AtomicU64,
}

/// What a slot holds once built.
pub(super) enum Held {
    /// Nothing (pending, disabled, or closed by the cap).
    None,
    /// Its own backend (lazily built, the shared one, or one the application built).
    Own(Backend),
    /// A placement's backend, which the registry may close.
    Placed(Weak<Placed>),
}

impl Held {
    /// The backend, if open.
    pub(super) fn backend(&self) -> Option<Backend> {
        match self {
            Held::None => None,
            Held::Own(b) => Some(b.clone()),
            Held::Placed(w) => w.upgrade().map(|p| p.backend.clone()),
        }
    }

    /// The backend, if open, marked used at tick `now`.
    pub(super) fn use_at(&self, now: u64) -> Option<Backend> {
        match self {
            Held::Placed(w) => w.upgrade().map(|p| {
                p.used.store(now, Ordering::Relaxed);
                p.backend.clone()
            }),
            other => other.backend(),
        }
    }

    /// Whether it held a placement's backend that the cap has closed since.
    pub(super) fn is_closed(&self) -> bool {
        matches!(self, Held::Placed(w) if w.strong_count() == 0)
    }
}

/// What must stay open: what was just opened.
#[derive(Clone, Copy, Default)]
pub(super) struct Keep<'a> {
    /// A placement's backend, by URL.
    pub(super) url: Option<&'a str>,
    /// A lazily built slot.
    pub(super) slot: Option<&'a Arc<Slot>>,
}

/// One open backend the cap may close.
enum Victim {
    Url(String),
    Slot(TenantId, Arc<Slot>),
}

impl TenantRegistry {
    /// A backend for a placement, shared by every tenant placed there (opened on first use;
    /// opening one may close the least recently used, see [`TenantRegistry::set_max_open`]).
    pub fn backend_of(&self, placement: Placement) -> Result<Backend> {
        self.placed(placement)
    }

    /// Number of backends open for placements and lazily built tenants (what
    /// [`TenantRegistry::set_max_open`] caps).
    pub async fn open_backends(&self) -> usize {
        let placed = lock(&self.inner.placed).len();
        let lazy: Vec<Arc<Slot>> = lock(&self.inner.tenants)
            .slots
            .values()
            .filter(|s| matches!(s.source, Source::Lazy(_)))
            .cloned()
            .collect();
        let mut n = placed;
        for s in lazy {
            n += usize::from(s.state.lock().await.backend().is_some());
        }
        n
    }

    /// A backend for a placement (see [`TenantRegistry::placed_held`]).
    pub(super) fn placed(&self, placement: Placement) -> Result<Backend> {
        self.placed_held(placement).map(|(_, b)| b)
    }

    /// What a slot placed on `placement` holds (the shared or application backend, or a weak
    /// reference to the placement's backend, opened now if needed, which may close others),
    /// and the backend itself: in use, so the cap does not close it while it is held.
    pub(super) fn placed_held(&self, placement: Placement) -> Result<(Held, Backend)> {
        let config = match placement {
            Placement::Shared => {
                let b = self.inner.shared.clone();
                return Ok((Held::Own(b.clone()), b));
            }
            Placement::Backend(b) => return Ok((Held::Own(b.clone()), b)),
            Placement::Database(db) => {
                let mut config = self.inner.shared_config.clone();
                config.url = redis_url::with_database(&config.url, db)?;
                config
            }
            Placement::Server(config) => config,
        };
        let now = self.inner.tick.fetch_add(1, Ordering::Relaxed);
        let (placed, opened) = {
            let mut map = lock(&self.inner.placed);
            match map.get(&config.url) {
                Some(p) => {
                    p.used.store(now, Ordering::Relaxed);
                    (p.clone(), false)
                }
                None => {
                    let p = Arc::new(Placed {
                        // Every tenant's keys are laid out as the shared keyspace's.
                        backend: Backend::new(
                            config.clone().with_layout(self.inner.shared.layout()),
                        )?,
                        used: AtomicU64::new(now),
                    });
                    map.insert(config.url.clone(), p.clone());
                    self.inner.placed_len.store(map.len(), Ordering::Relaxed);
                    (p, true)
                }
            }
        };
        let in_use = placed.backend.clone();
        if opened {
            self.enforce_cap(Keep {
                url: Some(&config.url),
                slot: None,
            });
        }
        Ok((Held::Placed(Arc::downgrade(&placed)), in_use))
    }

    /// Enforces the cap when it is exceeded (backends in use could not be closed when others
    /// opened): two atomic loads when it is not.
    pub(super) fn recheck_cap(&self) {
        if self.inner.placed_len.load(Ordering::Relaxed)
            > self.inner.max_open.load(Ordering::Relaxed)
        {
            self.enforce_cap(Keep::default());
        }
    }

    /// Closes the least recently used open backends until at most the cap are open, `keep`
    /// excepted. A backend in use (by a call in flight, a build, a fleet operation) and a
    /// lazily built one whose slot is busy at that instant are left open: the cap is enforced
    /// again when the next backend opens or the next request finds it exceeded.
    pub(super) fn enforce_cap(&self, keep: Keep<'_>) {
        let max = self.inner.max_open.load(Ordering::Relaxed);
        if max == usize::MAX {
            return;
        }
        let mut open: Vec<(u64, Victim)> = lock(&self.inner.placed)
            .iter()
            .filter(|(url, _)| keep.url != Some(url.as_str()))
            .map(|(url, p)| (p.used.load(Ordering::Relaxed), Victim::Url(url.clone())))
            .collect();
        let kept = usize::from(keep.url.is_some()) + usize::from(keep.slot.is_some());
        let lazy: Vec<(TenantId, Arc<Slot>)> = lock(&self.inner.tenants)
            .slots
            .iter()
            .filter(|(_, s)| matches!(s.source, Source::Lazy(_)))
            .filter(|(_, s)| !keep.slot.is_some_and(|k| Arc::ptr_eq(k, s)))
            .map(|(t, s)| (t.clone(), s.clone()))
            .collect();
        for (t, s) in lazy {
            // A slot being built or used is open (or about to be).
            let is_open = s.state.try_lock().map(|st| st.backend().is_some());
            if is_open.unwrap_or(true) {
                open.push((s.last_used.load(Ordering::Relaxed), Victim::Slot(t, s)));
            }
        }
        let mut excess = (open.len() + kept).saturating_sub(max);
        open.sort_by_key(|(used, _)| *used);
        for (_, victim) in open {
            if excess == 0 {
                return;
            }
            let closed = match victim {
                Victim::Url(url) => {
                    let mut map = lock(&self.inner.placed);
                    // The registry's handle is the only one: nothing uses it.
                    let idle = map.get(&url).is_some_and(|p| p.backend.handles() == 1);
                    let gone = idle && map.remove(&url).is_some();
                    self.inner.placed_len.store(map.len(), Ordering::Relaxed);
                    drop(map);
                    if gone {
                        tracing::debug!(
                            target: "popoto::health",
                            backend = %crate::redis_url::redacted(&url),
                            "backend closed by the open-backend cap"
                        );
                    }
                    gone
                }
                Victim::Slot(t, s) => match s.state.try_lock() {
                    Ok(mut st) if st.backend().is_some() => {
                        st.held = Held::None;
                        self.transition(
                            &t,
                            &mut st,
                            Health::Pending,
                            "closed by the open-backend cap",
                        );
                        true
                    }
                    _ => false,
                },
            };
            excess -= usize::from(closed);
        }
    }
}
