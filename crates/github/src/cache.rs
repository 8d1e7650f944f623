//! Conditional GETs: a bounded ETag cache keyed by credential identity and request.
//!
//! GitHub answers `If-None-Match` with `304 Not Modified` when nothing changed, and a 304 costs
//! no primary rate limit. Re-reading unchanged repositories (a sweep) therefore costs zero
//! quota, as long as the previous body is still here to answer from.

use bytes::Bytes;
use quick_cache::sync::{Cache, DefaultLifecycle};
use quick_cache::{DefaultHashBuilder, OptionsBuilder, Weighter};
use std::sync::atomic::{AtomicU64, Ordering};

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

/// An entry as held: the body deflated when that makes it smaller. GitHub's JSON (a
/// repository is about 6 KB, most of it URLs under the same prefix) deflates several times, and
/// the budget in bytes is what decides how many repositories a sweep finds unchanged for free:
/// measured with `sweep_scale`, 64 MiB of plain bodies kept about 4,000 repositories' reads,
/// so a second sweep of 10,000 was charged 2.67 requests per repository.
#[derive(Clone)]
struct Stored {
    etag: String,
    status: u16,
    body: Bytes,
    deflated: bool,
}

/// Bodies smaller than this are kept as they are (deflating them gains little).
const DEFLATE_FROM: usize = 256;

impl Stored {
    fn pack(e: CachedResponse) -> Stored {
        if e.body.len() >= DEFLATE_FROM {
            if let Some(packed) = deflate(&e.body) {
                return Stored {
                    etag: e.etag,
                    status: e.status,
                    body: Bytes::from(packed),
                    deflated: true,
                };
            }
        }
        Stored {
            etag: e.etag,
            status: e.status,
            body: e.body,
            deflated: false,
        }
    }

    /// The entry as it was put; `None` if a deflated body does not inflate (never expected:
    /// the entry is then treated as absent and read again).
    fn unpack(self) -> Option<CachedResponse> {
        use std::io::Read as _;
        let body = if self.deflated {
            let mut out = Vec::with_capacity(self.body.len() * 4);
            flate2::read::DeflateDecoder::new(&self.body[..])
                .read_to_end(&mut out)
                .ok()?;
            Bytes::from(out)
        } else {
            self.body
        };
        Some(CachedResponse {
            etag: self.etag,
            status: self.status,
            body,
        })
    }
}

/// Compressors kept for reuse, reset for each body: a new one allocates and clears ~300 KB of
/// tables, which measured with `evaluator_overhead` cost more than compressing a repository's
/// JSON. A few are kept for all threads (not one per thread: the evaluator's blocking pool
/// may run hundreds, and each kept compressor is memory for good).
static COMPRESSORS: std::sync::Mutex<Vec<flate2::Compress>> = std::sync::Mutex::new(Vec::new());

/// Compressors kept at most (about as many as bodies are put at once on a small node).
const KEPT_COMPRESSORS: usize = 4;

/// `body` deflated, if that makes it smaller.
fn deflate(body: &[u8]) -> Option<Vec<u8>> {
    // A poisoned pool is still a pool of compressors, each reset before use.
    let pool = || {
        COMPRESSORS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    let kept = pool().pop();
    let mut z = kept.unwrap_or_else(|| flate2::Compress::new(flate2::Compression::fast(), false));
    z.reset();
    // Room for less than the body: a result that does not fit is not worth keeping.
    let mut out = Vec::with_capacity(body.len().saturating_sub(1));
    let status = z.compress_vec(body, &mut out, flate2::FlushCompress::Finish);
    {
        let mut kept = pool();
        if kept.len() < KEPT_COMPRESSORS {
            kept.push(z);
        }
    }
    if status.ok()? != flate2::Status::StreamEnd || out.len() >= body.len() {
        return None;
    }
    // Held for as long as the entry: what the cache weighs (the length) must be all it holds,
    // not the room made for the worst case (measured with `sweep_scale`: without this, a
    // 64 MiB cache held ~40 MiB more than its budget at 10,000 repositories).
    out.shrink_to_fit();
    Some(out)
}

/// What an entry costs: its key, ETag, body as held, and a fixed overhead for the cache's slot.
fn cost(key: &str, e: &Stored) -> u64 {
    (key.len() + e.etag.len() + e.body.len() + 128) as u64
}

#[derive(Clone)]
struct Cost;

impl Weighter<String, Stored> for Cost {
    fn weight(&self, key: &String, e: &Stored) -> u64 {
        cost(key, e)
    }
}

/// Entries are kept while their bytes (see `cost`) stay within `max_bytes`, by quick_cache's
/// scan-resistant policy (a sweep that reads every repository once does not push out what is
/// read often).
pub struct EtagCache {
    /// Bodies larger than this are not kept (a tarball is not worth caching in memory).
    max_body_bytes: usize,
    entries: Cache<String, Stored, Cost>,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// A typical entry (a repository's JSON, its key and ETag), to size the cache's table.
const TYPICAL_ENTRY_BYTES: usize = 4 << 10;

impl EtagCache {
    pub fn new(max_bytes: usize, max_body_bytes: usize) -> Self {
        let max_bytes = max_bytes.max(1);
        // Shards share the budget equally; keep each large enough for the largest body kept.
        let shards = (max_bytes / max_body_bytes.max(1) / 4).clamp(1, 16);
        let options = OptionsBuilder::new()
            .estimated_items_capacity((max_bytes / TYPICAL_ENTRY_BYTES).max(1))
            .weight_capacity(max_bytes as u64)
            .shards(shards)
            .build();
        let entries = match options {
            Ok(o) => Cache::with_options(
                o,
                Cost,
                DefaultHashBuilder::default(),
                DefaultLifecycle::default(),
            ),
            // Only an invalid allocation makes the builder fail, and none is set here.
            Err(_) => Cache::with_weighter(1, max_bytes as u64, Cost),
        };
        EtagCache {
            max_body_bytes,
            entries,
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
        self.entries.get(key)?.unpack()
    }

    pub fn put(&self, key: String, entry: CachedResponse) {
        if entry.body.len() > self.max_body_bytes {
            return;
        }
        self.entries.insert(key, Stored::pack(entry));
    }

    pub fn remove(&self, key: &str) {
        self.entries.remove(key);
    }

    /// Bytes held now (see `cost`).
    pub fn bytes(&self) -> usize {
        usize::try_from(self.entries.weight()).unwrap_or(usize::MAX)
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
            entries: self.entries.len() as u64,
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
    fn bounded_in_bytes_and_keyed_by_credential_and_headers() {
        let k = |p: &str| EtagCache::key("cred", p, &[]);
        let one = cost(&k("/a"), &Stored::pack(entry("\"1\"", "a"))) as usize;
        let c = EtagCache::new(100 * one, 1024);
        c.put(k("/a"), entry("\"1\"", "a"));
        c.put(k("/b"), entry("\"2\"", "b"));
        assert_eq!(c.bytes(), 2 * one);
        assert_eq!(c.get(&k("/a")).map(|e| e.etag), Some("\"1\"".into()));
        // Replacing an entry accounts for the old one; removing gives its bytes back.
        c.put(k("/b"), entry("\"3\"", "b"));
        assert_eq!(c.bytes(), 2 * one);
        assert_eq!(c.get(&k("/b")).map(|e| e.etag), Some("\"3\"".into()));
        c.remove(&k("/b"));
        assert_eq!(c.bytes(), one);
        assert_eq!(c.stats().entries, 1);
        // Many entries never hold more than the bound, and the cache keeps working at it.
        let bound = 200 * one;
        let small = EtagCache::new(bound, 1024);
        for i in 0..5_000 {
            small.put(k(&format!("/r/{i:05}")), entry("\"e\"", "body"));
            assert!(
                small.bytes() <= bound,
                "{} bytes held, bound {bound}",
                small.bytes()
            );
        }
        assert!(
            small.stats().entries > 100,
            "the budget is used: {:?}",
            small.stats()
        );
        assert!(
            small.get(&k("/r/04999")).is_some(),
            "the newest entry is kept"
        );
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
        let big = EtagCache::new(1 << 20, 1);
        big.put(k("/big"), entry("\"x\"", "too big"));
        assert!(
            big.get(&k("/big")).is_none(),
            "oversized bodies are not kept"
        );
    }

    /// Large bodies are held deflated and come back exactly as they were put; the budget
    /// counts what is held.
    #[test]
    fn bodies_are_held_deflated_and_returned_as_put() {
        let k = |p: &str| EtagCache::key("cred", p, &[]);
        let json: String = (0..100)
            .map(|i| format!("\"url_{i}\": \"https://api.github.com/repos/acme/svc/{i}\","))
            .collect();
        let c = EtagCache::new(1 << 20, 1 << 20);
        c.put(
            k("/repos/acme/svc"),
            CachedResponse {
                etag: "\"e\"".into(),
                status: 200,
                body: Bytes::from(json.clone()),
            },
        );
        let back = c.get(&k("/repos/acme/svc")).expect("kept");
        assert_eq!(back.body, Bytes::from(json.clone()));
        assert_eq!((back.etag.as_str(), back.status), ("\"e\"", 200));
        assert!(
            c.bytes() < json.len() / 3,
            "{} bytes held for a {}-byte body",
            c.bytes(),
            json.len()
        );
        // The compressor is reused: a second body, and one that does not deflate smaller
        // (held as it is), come back as they were too.
        let other: String = json.chars().rev().collect();
        let noise: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for (path, body) in [
            ("/other", Bytes::from(other)),
            ("/noise", Bytes::from(noise)),
        ] {
            c.put(
                k(path),
                CachedResponse {
                    etag: "\"o\"".into(),
                    status: 200,
                    body: body.clone(),
                },
            );
            assert_eq!(c.get(&k(path)).map(|e| e.body), Some(body), "{path}");
        }
        assert_eq!(
            c.get(&k("/repos/acme/svc")).map(|e| e.body),
            Some(Bytes::from(json.clone()))
        );
        // A small body is held as it is.
        c.put(k("/small"), entry("\"s\"", "{}"));
        assert_eq!(
            c.get(&k("/small")).map(|e| e.body),
            Some(Bytes::from_static(b"{}"))
        );
    }

    /// A deflated body holds no more memory than its length, which is what the budget counts.
    #[test]
    fn a_deflated_body_holds_only_its_length() {
        let json: String = (0..1000)
            .map(|i| format!("\"url_{i}\": \"https://api.github.com/repos/acme/svc/{i}\","))
            .collect();
        for _ in 0..3 {
            let out = deflate(json.as_bytes()).expect("deflates");
            assert!(out.len() < json.len() / 4);
            assert_eq!(out.capacity(), out.len());
        }
    }

    /// A sweep reading thousands of repositories once does not push out an entry read often
    /// (the FIFO this replaced dropped it after one sweep's worth of inserts).
    #[test]
    fn a_sweep_does_not_evict_what_is_read_often() {
        let k = |p: &str| EtagCache::key("cred", p, &[]);
        let c = EtagCache::new(
            100 * cost(&k("/r/00000"), &Stored::pack(entry("\"e\"", "body"))) as usize,
            1024,
        );
        c.put(k("/hot"), entry("\"h\"", "body"));
        for i in 0..10_000 {
            assert!(
                c.get(&k("/hot")).is_some(),
                "the often-read entry survived {i} inserts"
            );
            c.put(k(&format!("/r/{i:05}")), entry("\"e\"", "body"));
        }
    }
}
