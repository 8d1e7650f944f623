//! Conditional GETs: a bounded ETag cache keyed by credential identity and request.
//!
//! GitHub answers `If-None-Match` with `304 Not Modified` when nothing changed, and a 304 costs
//! no primary rate limit. Re-reading unchanged repositories (a sweep) therefore costs zero
//! quota, as long as the previous body is still here to answer from.

use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Debug, Clone)]
pub struct CachedResponse {
    /// Empty for a kept 404/409, which GitHub sends without an ETag and which is revalidated
    /// through another resource instead.
    pub etag: String,
    pub status: u16,
    pub body: Bytes,
}

/// Hit and miss counts, for the cache's hit-rate metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// GETs answered from the cache after a 304.
    pub hits: u64,
    /// GETs that fetched a body (no entry, or the entry was stale).
    pub misses: u64,
    pub entries: u64,
}

/// Entries are evicted oldest-first once their bytes (key, ETag, body and bookkeeping) pass
/// `max_bytes`; a hit re-inserts nothing, which keeps the bookkeeping O(1) while still bounding
/// memory.
pub struct EtagCache {
    max_bytes: usize,
    /// Bodies larger than this are not kept (a tarball is not worth caching in memory).
    max_body_bytes: usize,
    inner: Mutex<Inner>,
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(Default)]
struct Inner {
    map: HashMap<String, CachedResponse>,
    order: VecDeque<String>,
    bytes: usize,
}

/// What an entry costs: its key (twice: map and order), ETag, body, and the fixed overhead of
/// the two collections' slots.
fn cost(key: &str, e: &CachedResponse) -> usize {
    2 * key.len() + e.etag.len() + e.body.len() + 128
}

impl EtagCache {
    pub fn new(max_bytes: usize, max_body_bytes: usize) -> Self {
        EtagCache {
            max_bytes: max_bytes.max(1),
            max_body_bytes,
            inner: Mutex::new(Inner::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The cache key: who asks (credential identity) and exactly what (path and headers that
    /// change the representation, such as `Accept`).
    pub fn key(credential: &str, path: &str, headers: &[(String, String)]) -> String {
        let mut h: Vec<String> = headers
            .iter()
            .map(|(k, v)| format!("{}={v}", k.to_ascii_lowercase()))
            .collect();
        h.sort();
        format!("{credential}\u{0}{path}\u{0}{}", h.join("\u{0}"))
    }

    pub fn get(&self, key: &str) -> Option<CachedResponse> {
        self.inner.lock().ok()?.map.get(key).cloned()
    }

    pub fn put(&self, key: String, entry: CachedResponse) {
        if entry.body.len() > self.max_body_bytes {
            return;
        }
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let inner = &mut *inner;
        inner.bytes += cost(&key, &entry);
        match inner.map.insert(key.clone(), entry) {
            Some(old) => inner.bytes = inner.bytes.saturating_sub(cost(&key, &old)),
            None => inner.order.push_back(key),
        }
        while inner.bytes > self.max_bytes {
            let Some(old) = inner.order.pop_front() else {
                break;
            };
            if let Some(e) = inner.map.remove(&old) {
                inner.bytes = inner.bytes.saturating_sub(cost(&old, &e));
            }
        }
    }

    pub fn remove(&self, key: &str) {
        if let Ok(mut inner) = self.inner.lock() {
            // The key stays in `order` until it ages out; a later put re-adds it to the map.
            if let Some(e) = inner.map.remove(key) {
                inner.bytes = inner.bytes.saturating_sub(cost(key, &e));
            }
        }
    }

    /// Bytes held now (see `cost`).
    pub fn bytes(&self) -> usize {
        self.inner.lock().map(|i| i.bytes).unwrap_or(0)
    }

    pub fn record_hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: self.inner.lock().map(|i| i.map.len() as u64).unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(etag: &str, body: &'static str) -> CachedResponse {
        CachedResponse {
            etag: etag.into(),
            status: 200,
            body: Bytes::from_static(body.as_bytes()),
        }
    }

    #[test]
    fn bounded_in_bytes_oldest_first_and_keyed_by_credential_and_headers() {
        let k = |p: &str| EtagCache::key("cred", p, &[]);
        let one = cost(&k("/a"), &entry("\"1\"", "a"));
        let c = EtagCache::new(2 * one, 1024);
        c.put(k("/a"), entry("\"1\"", "a"));
        c.put(k("/b"), entry("\"2\"", "b"));
        assert_eq!(c.bytes(), 2 * one);
        c.put(k("/c"), entry("\"3\"", "c"));
        assert!(c.get(&k("/a")).is_none(), "oldest evicted");
        assert!(c.bytes() <= 2 * one);
        // Replacing an entry accounts for the old one; removing gives its bytes back.
        c.put(k("/c"), entry("\"4\"", "c"));
        assert_eq!(c.bytes(), 2 * one);
        c.remove(&k("/c"));
        assert_eq!(c.bytes(), one);
        // Many small entries never hold more than the bound.
        let small = EtagCache::new(10_000, 1024);
        for i in 0..1_000 {
            small.put(k(&format!("/r/{i}")), entry("\"e\"", "body of some length"));
            assert!(small.bytes() <= 10_000);
        }
        c.put(k("/c"), entry("\"3\"", "c"));
        assert_eq!(c.get(&k("/c")).map(|e| e.etag), Some("\"3\"".into()));
        assert_ne!(
            EtagCache::key("a", "/x", &[]),
            EtagCache::key("b", "/x", &[])
        );
        let accept = [(
            "Accept".to_string(),
            "application/vnd.github.raw".to_string(),
        )];
        assert_ne!(
            EtagCache::key("a", "/x", &accept),
            EtagCache::key("a", "/x", &[])
        );
        let big = EtagCache::new(2, 1);
        big.put(k("/big"), entry("\"x\"", "too big"));
        assert!(
            big.get(&k("/big")).is_none(),
            "oversized bodies are not kept"
        );
    }
}
