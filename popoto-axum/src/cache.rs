//! A small TTL cache with a separate TTL for negative answers and a size bound, whose entries
//! are tagged with the catalog generation they were computed at: an answer computed before a
//! catalog change is never served after it (see [`catalog_generation`]).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries kept at most; past it expired entries are dropped, then everything.
const MAX_ENTRIES: usize = 10_000;

/// How long answers are cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheTtl {
    /// TTL of positive answers (a known key, an active tenant).
    pub positive: Duration,
    /// TTL of negative answers (an unknown key or tenant), so a flood of made-up ids does not
    /// reach the store each time.
    pub negative: Duration,
}

impl CacheTtl {
    /// No caching.
    pub const OFF: CacheTtl = CacheTtl {
        positive: Duration::ZERO,
        negative: Duration::ZERO,
    };
}

impl Default for CacheTtl {
    /// 30 s positive, 5 s negative.
    fn default() -> Self {
        CacheTtl {
            positive: Duration::from_secs(30),
            negative: Duration::from_secs(5),
        }
    }
}

/// Value, expiry, and the catalog generation it was computed at.
type Entry<V> = (V, Instant, u64);

pub(crate) struct TtlCache<K, V> {
    map: Mutex<HashMap<K, Entry<V>>>,
}

/// The generation of `db`'s catalog to compute and cache answers at: `Some(0)` without a
/// catalog; `None` when the catalog's change counter cannot be read (bypass the caches: the
/// tenant lookup that follows fails closed).
pub(crate) async fn catalog_generation(db: &popoto_core::Db) -> Option<u64> {
    match db.registry() {
        Some(registry) => match registry.sync_catalog().await {
            Ok(g) => Some(g),
            Err(e) => {
                tracing::warn!(error = %e, "tenant catalog unreadable: caches bypassed");
                None
            }
        },
        None => Some(0),
    }
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    pub(crate) fn new() -> Self {
        TtlCache {
            map: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Entry<V>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached value, if not expired and computed at catalog generation `generation`
    /// (`None`: caches bypassed).
    pub(crate) fn get(&self, key: &K, generation: Option<u64>) -> Option<V> {
        self.get_at(key, Instant::now(), generation?)
    }

    /// The value cached for `key` if it is still valid at `now` and `generation`.
    fn get_at(&self, key: &K, now: Instant, generation: u64) -> Option<V> {
        let map = self.lock();
        match map.get(key) {
            Some((v, until, g)) if *until > now && *g == generation => Some(v.clone()),
            _ => None,
        }
    }

    /// Caches `value`, computed at catalog generation `generation`, for `ttl` (nothing when
    /// `ttl` is zero or the caches are bypassed).
    pub(crate) fn insert(&self, key: K, value: V, ttl: Duration, generation: Option<u64>) {
        let Some(generation) = generation else {
            return;
        };
        if ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut map = self.lock();
        if map.len() >= MAX_ENTRIES {
            map.retain(|_, (_, until, g)| *until > now && *g == generation);
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(key, (value, now + ttl, generation));
    }

    /// Forgets one key.
    pub(crate) fn remove(&self, key: &K) {
        self.lock().remove(key);
    }

    /// Forgets everything.
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: Option<u64> = Some(7);

    #[test]
    fn entries_expire_and_can_be_invalidated() {
        let c = TtlCache::new();
        c.insert("a", 1, Duration::from_secs(60), G);
        c.insert("b", 2, Duration::ZERO, G);
        c.insert("c", 3, Duration::from_secs(1), G);
        assert_eq!(c.get(&"a", G), Some(1));
        assert_eq!(c.get(&"c", G), Some(3));
        assert_eq!(c.get(&"b", G), None, "a zero TTL caches nothing");
        let later = Instant::now() + Duration::from_secs(2);
        assert_eq!(c.get_at(&"c", later, 7), None, "expired");
        assert_eq!(c.get_at(&"a", later, 7), Some(1));
        c.remove(&"a");
        assert_eq!(c.get(&"a", G), None);
    }

    #[test]
    fn answers_of_another_catalog_generation_are_not_served() {
        let c = TtlCache::new();
        c.insert("a", 1, Duration::from_secs(60), G);
        assert_eq!(c.get(&"a", Some(8)), None, "the catalog changed since");
        assert_eq!(c.get(&"a", None), None, "the catalog cannot be read");
        c.insert("b", 2, Duration::from_secs(60), None);
        assert_eq!(c.get(&"b", G), None, "nothing cached while bypassed");
    }

    #[test]
    fn the_size_is_bounded() {
        let c = TtlCache::new();
        for i in 0..MAX_ENTRIES + 10 {
            c.insert(i, i, Duration::from_secs(60), G);
        }
        assert!(c.lock().len() <= MAX_ENTRIES);
        assert_eq!(c.get(&(MAX_ENTRIES + 9), G), Some(MAX_ENTRIES + 9));
    }
}
