//! The store's host-RAM cache: fetched adapters by digest under a byte budget, least recently
//! used dropped first.
//!
//! The cache holds one `Arc` per entry. Dropping an entry removes it from the index and from
//! [`RamCache::bytes`]; the memory itself is freed when the last `Arc` — possibly held by a
//! fetcher or merger — goes. So `bytes` counts what the cache keeps alive, not every fetched
//! adapter still referenced elsewhere.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;

use super::digest::Digest;
use super::fetched::FetchedAdapter;

#[derive(Default)]
struct Inner {
    entries: HashMap<Digest, (Arc<FetchedAdapter>, u64)>,
    by_use: BTreeMap<u64, Digest>,
    bytes: u64,
    tick: u64,
}

/// The RAM cache (see the module docs). `Send + Sync`.
pub(crate) struct RamCache {
    budget_bytes: u64,
    inner: Mutex<Inner>,
}

impl RamCache {
    /// An empty cache that keeps at most `budget_bytes` of adapters.
    pub fn new(budget_bytes: u64) -> RamCache {
        RamCache { budget_bytes, inner: Mutex::default() }
    }

    /// The adapter with `digest`, marked as just used.
    pub fn get(&self, digest: &Digest) -> Option<Arc<FetchedAdapter>> {
        let mut g = self.inner.lock();
        let inner = &mut *g;
        let (a, last) = inner.entries.get_mut(digest)?;
        inner.by_use.remove(last);
        inner.tick += 1;
        *last = inner.tick;
        inner.by_use.insert(inner.tick, *digest);
        Some(a.clone())
    }

    /// Keep `a`, dropping least recently used entries until it fits. An adapter larger than
    /// the whole budget is not kept.
    pub fn insert(&self, a: &Arc<FetchedAdapter>) {
        let size = a.total_bytes();
        if size > self.budget_bytes {
            return;
        }
        let mut g = self.inner.lock();
        let inner = &mut *g;
        if inner.entries.contains_key(&a.digest()) {
            return;
        }
        while inner.bytes + size > self.budget_bytes {
            let Some((_, victim)) = inner.by_use.pop_first() else { break };
            if let Some((old, _)) = inner.entries.remove(&victim) {
                inner.bytes -= old.total_bytes();
            }
        }
        inner.tick += 1;
        inner.entries.insert(a.digest(), (a.clone(), inner.tick));
        inner.by_use.insert(inner.tick, a.digest());
        inner.bytes += size;
        debug_assert!(inner.bytes <= self.budget_bytes, "RAM cache over its budget");
    }

    /// Bytes of adapters the cache keeps.
    pub fn bytes(&self) -> u64 {
        self.inner.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fetched::{AdapterFile, GGUF_FILE};
    use crate::store::source::Layout;

    fn adapter(i: u8, n: usize) -> Arc<FetchedAdapter> {
        let bytes: Arc<[u8]> = vec![i; n].into();
        let d = Digest::of_bytes(&bytes);
        Arc::new(FetchedAdapter::new(d, Layout::GgufFile, vec![AdapterFile { name: GGUF_FILE, bytes }]))
    }

    #[test]
    fn lru_under_budget_and_outside_refs_survive() {
        let c = RamCache::new(25);
        let (a, b, x) = (adapter(1, 10), adapter(2, 10), adapter(3, 10));
        c.insert(&a);
        c.insert(&b);
        assert!(c.get(&a.digest()).is_some(), "a is now most recent");
        c.insert(&x);
        assert_eq!(c.bytes(), 20);
        assert!(c.get(&b.digest()).is_none(), "b was least recent");
        assert_eq!(b.total_bytes(), 10, "an evicted adapter held outside is still whole");
        c.insert(&adapter(4, 26));
        assert_eq!(c.bytes(), 20, "larger than the budget: not kept");
    }
}
