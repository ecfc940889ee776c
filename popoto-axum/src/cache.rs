//! A small TTL cache with a separate TTL for negative answers and a size bound.

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

pub(crate) struct TtlCache<K, V> {
    map: Mutex<HashMap<K, (V, Instant)>>,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    pub(crate) fn new() -> Self {
        TtlCache {
            map: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (V, Instant)>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached value, if not expired.
    pub(crate) fn get(&self, key: &K) -> Option<V> {
        self.get_at(key, Instant::now())
    }

    /// The value cached for `key` if it is still valid at `now`.
    fn get_at(&self, key: &K, now: Instant) -> Option<V> {
        let map = self.lock();
        match map.get(key) {
            Some((v, until)) if *until > now => Some(v.clone()),
            _ => None,
        }
    }

    /// Caches `value` for `ttl` (nothing when `ttl` is zero).
    pub(crate) fn insert(&self, key: K, value: V, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut map = self.lock();
        if map.len() >= MAX_ENTRIES {
            map.retain(|_, (_, until)| *until > now);
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(key, (value, now + ttl));
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

    #[test]
    fn entries_expire_and_can_be_invalidated() {
        let c = TtlCache::new();
        c.insert("a", 1, Duration::from_secs(60));
        c.insert("b", 2, Duration::ZERO);
        c.insert("c", 3, Duration::from_secs(1));
        assert_eq!(c.get(&"a"), Some(1));
        assert_eq!(c.get(&"c"), Some(3));
        assert_eq!(c.get(&"b"), None, "a zero TTL caches nothing");
        let later = Instant::now() + Duration::from_secs(2);
        assert_eq!(c.get_at(&"c", later), None, "expired");
        assert_eq!(c.get_at(&"a", later), Some(1));
        c.remove(&"a");
        assert_eq!(c.get(&"a"), None);
    }

    #[test]
    fn the_size_is_bounded() {
        let c = TtlCache::new();
        for i in 0..MAX_ENTRIES + 10 {
            c.insert(i, i, Duration::from_secs(60));
        }
        assert!(c.lock().len() <= MAX_ENTRIES);
        assert_eq!(c.get(&(MAX_ENTRIES + 9)), Some(MAX_ENTRIES + 9));
    }
}
