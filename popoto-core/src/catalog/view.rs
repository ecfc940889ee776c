//! What a registry knows of the catalog: entries read on first use and cached, dropped when the
//! catalog's change counter moves. The counter is read at most once per refresh interval, lazily
//! on a lookup (no background task; zero: on every lookup), so a change made by another process
//! is seen within that interval. A lookup that cannot read the catalog fails (closed).

use std::collections::HashMap;
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
    entries: HashMap<TenantId, Option<TenantEntry>>,
}

/// A registry's cached view of the catalog.
pub(crate) struct CatalogView {
    catalog: Catalog,
    refresh: Duration,
    state: Mutex<State>,
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
        }
    }

    /// The catalog.
    pub(crate) fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Forgets every cached entry: the next lookups read the catalog.
    pub(crate) fn invalidate(&self) {
        let mut s = lock(&self.state);
        s.entries.clear();
        s.checked = None;
    }

    /// The catalog entry of `tenant` (`None`: not in the catalog), at most `refresh` old.
    pub(crate) async fn entry(&self, tenant: &TenantId) -> Result<Option<TenantEntry>> {
        let due = lock(&self.state)
            .checked
            .is_none_or(|at| at.elapsed() >= self.refresh);
        if due {
            let version = self.catalog.version().await?;
            self.observe(version);
        }
        if let Some(cached) = lock(&self.state).entries.get(tenant) {
            return Ok(cached.clone());
        }
        let (version, entry) = self.catalog.versioned_get(tenant).await?;
        self.observe(version);
        let mut s = lock(&self.state);
        if s.version == version {
            if s.entries.len() >= MAX_CACHED {
                s.entries.clear();
            }
            s.entries.insert(tenant.clone(), entry.clone());
        }
        Ok(entry)
    }

    /// Records the change counter just read: a newer one drops the cache.
    fn observe(&self, version: u64) {
        let mut s = lock(&self.state);
        if version != s.version {
            s.entries.clear();
            s.version = version;
        }
        s.checked = Some(Instant::now());
    }
}
