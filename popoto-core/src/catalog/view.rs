//! What a registry knows of the catalog: entries read on first use and cached, dropped when the
//! catalog's change counter moves. The counter is read at most once per refresh interval, lazily
//! on a lookup (zero: on every lookup), and at once after a change notification (the catalog
//! publishes every change; see [`crate::TenantRegistry::watch_catalog`]), so a change made by
//! another process is seen within that interval, or as soon as it is announced. A lookup that
//! cannot read the catalog fails (closed).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Catalog, TenantEntry};
use crate::error::Result;
use crate::tenant::TenantId;

/// Cached entries beyond which the cache is emptied (ids nobody registered are cached too).
const MAX_CACHED: usize = 100_000;

#[derive(Default)]
struct State {
    /// The change counter the cached entries were read at.
    version: u64,
    checked: Option<Instant>,
    /// The notifications counted when the counter was last read.
    synced: u64,
    entries: HashMap<TenantId, Option<TenantEntry>>,
}

/// A registry's cached view of the catalog.
pub(crate) struct CatalogView {
    catalog: Catalog,
    refresh: Duration,
    state: Mutex<State>,
    /// Change notifications received: the counter must be read again when it moved.
    notified: AtomicU64,
    /// Changes this view has seen (counter moves, notifications, invalidations): caches built
    /// on the catalog's answers compare it to know they are stale.
    generation: AtomicU64,
    /// A watcher lost its subscription: every lookup reads the counter until it is back.
    unwatched: AtomicBool,
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl CatalogView {
    /// A view of `catalog` polling its change counter at most every `refresh`.
    pub(crate) fn new(catalog: Catalog, refresh: Duration) -> CatalogView {
        CatalogView {
            catalog,
            refresh,
            state: Mutex::new(State::default()),
            notified: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            unwatched: AtomicBool::new(false),
        }
    }

    /// The catalog.
    pub(crate) fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Changes seen so far (it only grows).
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Forgets every cached entry: the next lookups read the catalog.
    pub(crate) fn invalidate(&self) {
        let mut s = lock(&self.state);
        s.entries.clear();
        s.checked = None;
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// A change was announced (or may have been missed): the next lookup reads the counter.
    pub(crate) fn notify(&self) {
        self.notified.fetch_add(1, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Whether a watcher of this view has lost its subscription (`true`) or has it, or stopped
    /// (`false`).
    pub(crate) fn set_unwatched(&self, lost: bool) {
        self.unwatched.store(lost, Ordering::SeqCst);
    }

    /// Reads the change counter if the refresh interval passed, a change was announced since it
    /// was last read, or a watcher lost its subscription; a moved counter drops the cache.
    pub(crate) async fn sync(&self) -> Result<()> {
        let notified = self.notified.load(Ordering::SeqCst);
        let due = self.unwatched.load(Ordering::SeqCst) || {
            let s = lock(&self.state);
            s.synced != notified || s.checked.is_none_or(|at| at.elapsed() >= self.refresh)
        };
        if due {
            let version = self.catalog.version().await?;
            self.observe(version, notified);
        }
        Ok(())
    }

    /// The catalog entry of `tenant` (`None`: not in the catalog), at most `refresh` old.
    pub(crate) async fn entry(&self, tenant: &TenantId) -> Result<Option<TenantEntry>> {
        self.sync().await?;
        if let Some(cached) = lock(&self.state).entries.get(tenant) {
            return Ok(cached.clone());
        }
        let notified = self.notified.load(Ordering::SeqCst);
        let (version, entry) = self.catalog.versioned_get(tenant).await?;
        self.observe(version, notified);
        let mut s = lock(&self.state);
        // Not cached if a change was announced while it was read.
        if s.version == version && self.notified.load(Ordering::SeqCst) == notified {
            if s.entries.len() >= MAX_CACHED {
                s.entries.clear();
            }
            s.entries.insert(tenant.clone(), entry.clone());
        }
        Ok(entry)
    }

    /// Records the change counter read after `notified` notifications: a newer one drops the
    /// cache.
    fn observe(&self, version: u64, notified: u64) {
        let mut s = lock(&self.state);
        if version != s.version {
            s.entries.clear();
            s.version = version;
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
        s.checked = Some(Instant::now());
        s.synced = s.synced.max(notified);
    }
}
