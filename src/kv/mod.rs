//! The KV cache of one sequence: keys and values per layer and position, f32, contiguous.
//! (Paged and quantized caches build on the same interface.)

use crate::error::{Error, Result};
use crate::model::LlamaConfig;

/// Keys and values of one sequence, `[layer][position][kv_head · head_dim]`.
pub struct KvCache {
    n_layers: usize,
    kv_dim: usize,
    capacity: usize,
    len: usize,
    k: Vec<f32>,
    v: Vec<f32>,
}

impl KvCache {
    /// A cache for up to `capacity` positions of a model with `cfg`.
    pub fn new(cfg: &LlamaConfig, capacity: usize) -> KvCache {
        let kv_dim = cfg.kv_dim();
        let n = cfg.num_layers * capacity * kv_dim;
        KvCache { n_layers: cfg.num_layers, kv_dim, capacity, len: 0, k: vec![0.0; n], v: vec![0.0; n] }
    }

    /// Bytes held by this cache.
    pub fn bytes(&self) -> usize {
        (self.k.len() + self.v.len()) * 4
    }

    /// Bytes one cached position costs.
    pub fn bytes_per_position(&self) -> usize {
        self.n_layers * self.kv_dim * 2 * 4
    }

    /// Positions filled.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Positions available in all.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forget everything (the memory is kept).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Drop positions from `len` on.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Check that `n` more positions fit.
    pub fn check_room(&self, n: usize) -> Result<()> {
        if self.len + n > self.capacity {
            return Err(Error::invalid(
                "tokens",
                format!("{} cached + {n} new positions exceed the context of {}", self.len, self.capacity),
            ));
        }
        Ok(())
    }

    /// Mark `n` more positions as filled (after a forward pass wrote them).
    pub fn advance(&mut self, n: usize) {
        assert!(self.len + n <= self.capacity, "KV cache overflow (check_room was not called)");
        self.len += n;
    }

    #[inline]
    fn at(&self, layer: usize, pos: usize) -> usize {
        (layer * self.capacity + pos) * self.kv_dim
    }

    /// Keys of `layer` for positions `0..n`.
    pub fn keys(&self, layer: usize, n: usize) -> &[f32] {
        &self.k[self.at(layer, 0)..self.at(layer, n)]
    }

    /// Values of `layer` for positions `0..n`.
    pub fn values(&self, layer: usize, n: usize) -> &[f32] {
        &self.v[self.at(layer, 0)..self.at(layer, n)]
    }

    /// Write key and value rows for `layer` at positions `pos..pos + rows`.
    pub fn write(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let (s, e) = (self.at(layer, pos), self.at(layer, pos) + k.len());
        self.k[s..e].copy_from_slice(k);
        self.v[s..e].copy_from_slice(v);
    }

    /// Width of one position's keys (kv heads × head dim).
    pub fn kv_dim(&self) -> usize {
        self.kv_dim
    }
}
