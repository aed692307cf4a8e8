//! Parsed resource maps, kept by the git blob SHA of their text.
//!
//! Gandalf reads the map at every candidate it verifies and Bobby at every deploy, but the map
//! itself changes rarely: most candidates carry the very same `.gandalf/resources.toml` blob. A
//! [`MapCache`] parses each blob once and hands out the same [`Arc<ResourceMap>`] afterwards. The
//! key is the blob SHA git (and GitHub's contents API, as `sha`) gives the file, so a caller that
//! knows it can skip even the download; [`git_blob_sha`] computes it from the text otherwise.
//!
//! It is bounded: past its capacity the least recently used map goes. Invalid maps are not kept
//! (they are parsed again, and reported again, each time: a rare path not worth memory).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use sha1::{Digest, Sha1};

use super::map::{MapError, ResourceMap};

/// A bounded cache of parsed maps by blob SHA; share it (`&MapCache` or `Arc<MapCache>`) between
/// the tasks that plan.
#[derive(Debug)]
pub struct MapCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Blob SHA → (the map, when it was last used on the `clock`).
    maps: HashMap<String, (Arc<ResourceMap>, u64)>,
    clock: u64,
    hits: u64,
    misses: u64,
}

impl MapCache {
    /// A cache holding at most `capacity` maps (at least one).
    pub fn new(capacity: usize) -> MapCache {
        MapCache {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The map whose text is `text` and whose git blob SHA is `blob`: parsed on the first call
    /// for that blob, shared afterwards. The caller vouches that `blob` is the SHA of `text`
    /// ([`git_blob_sha`] when it does not have it from git or GitHub).
    pub fn get_or_parse(&self, blob: &str, text: &str) -> Result<Arc<ResourceMap>, MapError> {
        if let Some(map) = self.lock().get(blob) {
            return Ok(map);
        }
        // Parsed outside the lock: a 5,000-resource map takes milliseconds, and other blobs
        // should not wait for it. Two tasks parsing the same new blob at once both parse it; the
        // second one's result replaces the first, which is equal.
        let map = Arc::new(ResourceMap::parse(text)?);
        self.lock().insert(blob, Arc::clone(&map), self.capacity);
        Ok(map)
    }

    /// The process's one cache: Gandalf's verifications and Bobby's deploys parse through it.
    pub fn global() -> &'static MapCache {
        static GLOBAL: std::sync::LazyLock<MapCache> = std::sync::LazyLock::new(|| MapCache::new(16));
        &GLOBAL
    }

    /// [`MapCache::get_or_parse`] keyed by the blob SHA computed from the text.
    pub fn parse(&self, text: &str) -> Result<Arc<ResourceMap>, MapError> {
        self.get_or_parse(&git_blob_sha(text.as_bytes()), text)
    }

    /// How many maps it holds.
    pub fn len(&self) -> usize {
        self.lock().maps.len()
    }

    /// Whether it holds no map.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// (look-ups answered from the cache, look-ups that parsed), since it was made.
    pub fn stats(&self) -> (u64, u64) {
        let inner = self.lock();
        (inner.hits, inner.misses)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The data stays consistent whatever panicked while holding the lock: every change is
        // one insert or remove.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    fn get(&mut self, blob: &str) -> Option<Arc<ResourceMap>> {
        self.clock += 1;
        let now = self.clock;
        match self.maps.get_mut(blob) {
            Some((map, used)) => {
                *used = now;
                self.hits += 1;
                Some(Arc::clone(map))
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    fn insert(&mut self, blob: &str, map: Arc<ResourceMap>, capacity: usize) {
        if !self.maps.contains_key(blob) && self.maps.len() >= capacity {
            // A linear scan: capacities are a handful of maps, one per repository or so.
            if let Some(oldest) = self
                .maps
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
            {
                self.maps.remove(&oldest);
            }
        }
        self.clock += 1;
        self.maps.insert(blob.to_string(), (map, self.clock));
    }
}

/// The SHA git gives a file with these contents (`git hash-object`): SHA-1 over
/// `blob <length>\0` and the bytes, in lowercase hex.
pub fn git_blob_sha(bytes: &[u8]) -> String {
    let mut hasher = Sha1::new();
    hasher.update(format!("blob {}\0", bytes.len()).as_bytes());
    hasher.update(bytes);
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "[[resource]]\nname = \"a\"\ntype = \"service\"\npaths = [\"a/**\"]\n";
    const B: &str = "[[resource]]\nname = \"b\"\ntype = \"service\"\npaths = [\"b/**\"]\n";
    const C: &str = "[[resource]]\nname = \"c\"\ntype = \"service\"\npaths = [\"c/**\"]\n";

    #[test]
    fn the_blob_sha_is_gits() {
        // `printf 'hello\n' | git hash-object --stdin` and `git hash-object /dev/null`.
        assert_eq!(git_blob_sha(b"hello\n"), "ce013625030ba8dba906f756967f9e9ca394464a");
        assert_eq!(git_blob_sha(b""), "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
    }

    #[test]
    fn a_blob_is_parsed_once_and_shared() {
        let cache = MapCache::new(4);
        let first = cache.parse(A).unwrap();
        let again = cache.parse(A).unwrap();
        assert!(Arc::ptr_eq(&first, &again), "the second look-up parses nothing");
        assert_eq!(cache.stats(), (1, 1));
        assert_eq!(again.plan(["a/x"]).affected, ["a"]);
        let other = cache.parse(B).unwrap();
        assert!(!Arc::ptr_eq(&first, &other));
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn the_key_is_the_blob_the_caller_names() {
        let cache = MapCache::new(4);
        let by_sha = cache.get_or_parse(&git_blob_sha(A.as_bytes()), A).unwrap();
        assert!(Arc::ptr_eq(&by_sha, &cache.parse(A).unwrap()));
    }

    #[test]
    fn the_least_recently_used_map_goes_first() {
        let cache = MapCache::new(2);
        let a = cache.parse(A).unwrap();
        let b = cache.parse(B).unwrap();
        cache.parse(A).unwrap(); // `a` is now more recent than `b`
        cache.parse(C).unwrap(); // evicts `b`
        assert_eq!(cache.len(), 2);
        assert!(Arc::ptr_eq(&a, &cache.parse(A).unwrap()), "a was kept");
        assert!(!Arc::ptr_eq(&b, &cache.parse(B).unwrap()), "b was parsed again");
        assert!(cache.len() <= 2);
    }

    #[test]
    fn invalid_maps_are_reported_every_time_and_not_kept() {
        let cache = MapCache::new(2);
        for _ in 0..2 {
            let e = cache.parse("[[resource]]\nname = \"x\"\n").unwrap_err();
            assert!(e.to_string().contains("type"), "{e}");
        }
        assert!(cache.is_empty());
    }
}
