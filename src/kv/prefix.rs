//! Prefix reuse keyed by content: the KV of a prompt's leading pages is computed once and read
//! by every request running at the same time that has the same base model, the same composite
//! (the ordered list of adapter *content* hashes and their weights — never names or ids), the
//! same KV element type and the same tokens.
//!
//! A [`SharedPrefix`] is a KV cache of whole [`BLOCK`]-position pages with its own ledger
//! reservation: charged once however many requests read it, and freed when the last of them
//! ends (requests hold it by `Arc`; the [`PrefixIndex`] only by `Weak`). Pages are found by
//! chain keys, as in vLLM's prefix caching: the key of page `i` hashes the context and the
//! tokens of pages `0..=i`, so a match of page `i` implies a match of everything before it.
//! The request that computes a prefix writes it during its prefill; others may read it only
//! once it is [ready](SharedPrefix::is_ready).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::RwLock;
use sha2::{Digest as _, Sha256};

use super::{KvCache, KvType};
use crate::error::Result;
use crate::memory::Ledger;
use crate::model::LlamaConfig;

/// Positions per shared page: the runtime's KV page.
pub const BLOCK: usize = super::PAGE;

/// A chain key: what page `i` of a prompt is, under one context.
pub type BlockKey = [u8; 32];

/// The identity of what a prefix's KV depends on besides its tokens: the base model's
/// fingerprint, the KV element type, and the ordered `(content hash, weight)` list of the
/// adapters applied (empty for the base model).
pub fn context_key(base: &[u8; 32], kind: KvType, adapters: &[([u8; 32], f32)]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"loradock-prefix-v1");
    h.update(base);
    h.update([kind as u8]);
    h.update((adapters.len() as u64).to_le_bytes());
    for (hash, w) in adapters {
        h.update(hash);
        h.update(w.to_bits().to_le_bytes());
    }
    h.finalize().into()
}

/// Chain keys of the pages of `prompt` that may be shared: whole pages, leaving at least the
/// last prompt token to be computed (its logits start the generation).
pub fn block_keys(context: &[u8; 32], prompt: &[u32]) -> Vec<BlockKey> {
    let n = prompt.len().saturating_sub(1) / BLOCK;
    let mut keys = Vec::with_capacity(n);
    let mut prev = *context;
    for block in prompt.chunks_exact(BLOCK).take(n) {
        let mut h = Sha256::new();
        h.update(prev);
        block.iter().for_each(|t| h.update(t.to_le_bytes()));
        prev = h.finalize().into();
        keys.push(prev);
    }
    keys
}

/// The KV of a prompt prefix, shared by the requests that have it.
pub struct SharedPrefix {
    kv: RwLock<KvCache>,
    ready: AtomicBool,
    len: usize,
}

impl std::fmt::Debug for SharedPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedPrefix({} positions, ready: {})", self.len, self.is_ready())
    }
}

impl SharedPrefix {
    /// A prefix of `len` positions, its bytes reserved on `ledger` as KV pages (given back when
    /// the last holder drops it).
    pub fn reserved(
        cfg: &LlamaConfig,
        len: usize,
        kind: KvType,
        ledger: &Ledger,
    ) -> Result<Arc<SharedPrefix>> {
        let kv = KvCache::reserved(cfg, len, kind, ledger)?;
        Ok(Arc::new(SharedPrefix { kv: RwLock::new(kv), ready: AtomicBool::new(false), len }))
    }

    /// Positions it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty prefix (never made by the runtime).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes it holds.
    pub fn bytes(&self) -> usize {
        self.kv.read().bytes()
    }

    /// True once every position is written: from then on it is read-only and others may read it.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub(super) fn cache(&self) -> &RwLock<KvCache> {
        &self.kv
    }

    /// Called by the writing cache once all `len` positions are written.
    pub(super) fn finish(&self) {
        let mut kv = self.kv.write();
        let n = self.len - kv.len();
        kv.advance(n);
        self.ready.store(true, Ordering::Release);
    }
}

struct Entry {
    prefix: Weak<SharedPrefix>,
    /// Positions through this page.
    len: usize,
}

/// Where shared prefixes are found, by chain key. Holds no memory of its own beyond the keys:
/// entries die with their prefix.
#[derive(Default)]
pub struct PrefixIndex {
    entries: HashMap<BlockKey, Entry>,
    hit_tokens: u64,
    miss_tokens: u64,
}

impl PrefixIndex {
    /// An empty index.
    pub fn new() -> PrefixIndex {
        PrefixIndex::default()
    }

    /// The longest ready shared prefix matching `keys` from the start, and how many of its
    /// positions match. Counts the matched pages' positions as hits and the rest of `keys` as
    /// misses.
    pub fn lookup(&mut self, keys: &[BlockKey]) -> Option<(Arc<SharedPrefix>, usize)> {
        let mut best = None;
        for key in keys {
            let Some(e) = self.entries.get(key) else { break };
            match e.prefix.upgrade() {
                Some(p) if p.is_ready() => best = Some((p, e.len)),
                _ => break,
            }
        }
        let hit = best.as_ref().map_or(0, |(_, n)| *n);
        self.hit_tokens += hit as u64;
        self.miss_tokens += (keys.len() * BLOCK - hit) as u64;
        best
    }

    /// Register `prefix` (which holds the pages `keys` name, from the first) so later requests
    /// find it once it is ready. A key another live prefix already answers is left to it.
    pub fn insert(&mut self, keys: &[BlockKey], prefix: &Arc<SharedPrefix>) {
        if self.entries.len() > 4096 {
            self.entries.retain(|_, e| e.prefix.strong_count() > 0);
        }
        for (i, key) in keys.iter().enumerate().take(prefix.len() / BLOCK) {
            let live = self.entries.get(key).is_some_and(|e| e.prefix.strong_count() > 0);
            if !live {
                self.entries.insert(*key, Entry { prefix: Arc::downgrade(prefix), len: (i + 1) * BLOCK });
            }
        }
    }

    /// Prompt positions served from shared prefixes so far.
    pub fn hit_tokens(&self) -> u64 {
        self.hit_tokens
    }

    /// Prompt positions that could have been shared but were computed.
    pub fn miss_tokens(&self) -> u64 {
        self.miss_tokens
    }

    /// Live shared prefixes and their bytes now (each counted once).
    pub fn live(&self) -> (usize, u64) {
        let mut seen = std::collections::HashSet::new();
        let mut bytes = 0u64;
        for e in self.entries.values() {
            if let Some(p) = e.prefix.upgrade() {
                if seen.insert(Arc::as_ptr(&p)) {
                    bytes += p.bytes() as u64;
                }
            }
        }
        (seen.len(), bytes)
    }
}
