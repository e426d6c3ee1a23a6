//! The KV cache of one sequence: keys and values per layer, position and KV head, stored as
//! f32 (exact), f16, int8 (symmetric, one scale per position and head) or 4-bit (asymmetric,
//! scale and min per position and head). Attention reads every type in place through a
//! [`LayerView`]; nothing is expanded. (Paged caches build on the same interface.)

mod quant;

use half::f16;

/// In-place `q · k` and `out += p · v` on cached heads of any type (used by attention).
pub mod quant_view {
    pub use super::quant::{axpy_view, dot_q4, dot_q8, dot_view, fwht};
}

pub mod prefix;

/// Positions per KV page: the unit requests reserve in and shared prefixes are made of (the
/// GPU's paged pools use it too).
pub const PAGE: usize = 16;

use crate::error::{Error, Result};
use crate::model::LlamaConfig;

/// Element type of cached keys and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvType {
    /// 32-bit floats: exact.
    F32,
    /// IEEE half.
    F16,
    /// int8 with an f32 scale per position and KV head.
    Int8,
    /// 4-bit with an f32 scale and min per 32 values of each position and KV head.
    Q4,
}

impl KvType {
    /// Parse `f32`, `f16`, `int8` (or `q8`) and `q4`.
    pub fn parse(s: &str) -> Result<KvType> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "f32" => KvType::F32,
            "f16" => KvType::F16,
            "int8" | "q8" | "i8" => KvType::Int8,
            "q4" | "int4" => KvType::Q4,
            other => return Err(Error::invalid("kv", format!("'{other}' (expected f32, f16, int8 or q4)"))),
        })
    }

    /// Bytes of one head's keys (or values) at one position, scales included.
    pub fn head_bytes(self, head_dim: usize) -> usize {
        match self {
            KvType::F32 => head_dim * 4,
            KvType::F16 => head_dim * 2,
            KvType::Int8 => head_dim + 4,
            KvType::Q4 => head_dim.div_ceil(2) + 8 * q4_blocks(head_dim),
        }
    }
}

/// Values per q4 block (scale and min per block).
pub const Q4_BLOCK: usize = 32;

/// q4 blocks per head.
pub fn q4_blocks(head_dim: usize) -> usize {
    head_dim.div_ceil(Q4_BLOCK)
}

/// One tensor (keys or values) of the cache, `[layer][position][kv head][head_dim]`.
enum Store {
    F32(Vec<f32>),
    F16(Vec<f16>),
    Int8 { q: Vec<i8>, scale: Vec<f32> },
    Q4 { q: Vec<u8>, scale: Vec<f32>, min: Vec<f32> },
}

impl Store {
    fn new(kind: KvType, heads_total: usize, head_dim: usize) -> Store {
        let n = heads_total * head_dim;
        match kind {
            KvType::F32 => Store::F32(vec![0.0; n]),
            KvType::F16 => Store::F16(vec![f16::ZERO; n]),
            KvType::Int8 => Store::Int8 { q: vec![0; n], scale: vec![0.0; heads_total] },
            KvType::Q4 => Store::Q4 {
                q: vec![0; heads_total * head_dim.div_ceil(2)],
                scale: vec![0.0; heads_total * q4_blocks(head_dim)],
                min: vec![0.0; heads_total * q4_blocks(head_dim)],
            },
        }
    }

    /// Write one head vector at head slot `h` (global index over layer/position/head).
    fn put(&mut self, h: usize, x: &[f32]) {
        let d = x.len();
        match self {
            Store::F32(v) => v[h * d..(h + 1) * d].copy_from_slice(x),
            Store::F16(v) => {
                for (o, xv) in v[h * d..(h + 1) * d].iter_mut().zip(x) {
                    *o = f16::from_f32(*xv);
                }
            }
            Store::Int8 { q, scale } => scale[h] = quant::quantize_q8(x, &mut q[h * d..(h + 1) * d]),
            Store::Q4 { q, scale, min } => {
                let (hb, nb) = (d.div_ceil(2), q4_blocks(d));
                for (b, xb) in x.chunks(Q4_BLOCK).enumerate() {
                    let at = h * hb + b * Q4_BLOCK / 2;
                    let codes = &mut q[at..at + xb.len().div_ceil(2)];
                    (scale[h * nb + b], min[h * nb + b]) = quant::quantize_q4(xb, codes);
                }
            }
        }
    }
}

/// One layer's keys or values for positions `0..n`, read in place.
pub enum LayerView<'a> {
    /// f32 values, `[pos][head][d]`.
    F32(&'a [f32]),
    /// f16 values.
    F16(&'a [f16]),
    /// int8 values and a scale per (pos, head).
    Int8(&'a [i8], &'a [f32]),
    /// Packed nibbles (`d/2` bytes per head) with scale and min per (pos, head, 32-block).
    Q4(&'a [u8], &'a [f32], &'a [f32]),
}

/// Keys and values of one sequence.
pub struct KvCache {
    kind: KvType,
    n_layers: usize,
    n_heads: usize,
    head_dim: usize,
    capacity: usize,
    len: usize,
    k: Store,
    v: Store,
    /// The ledger bytes this cache holds, when it was made under a budget.
    reservation: Option<crate::memory::Reservation>,
    /// Positions `0..base` live in `prefix` (shared); this cache holds `base..capacity`.
    base: usize,
    prefix: Option<std::sync::Arc<prefix::SharedPrefix>>,
}

impl KvCache {
    /// A cache whose bytes are first reserved on `ledger` (as KV pages) and given back when
    /// the cache is dropped; fails without allocating when they do not fit.
    pub fn reserved(
        cfg: &LlamaConfig,
        capacity: usize,
        kind: KvType,
        ledger: &crate::memory::Ledger,
    ) -> Result<KvCache> {
        let bytes = KvCache::bytes_for(cfg, capacity, kind);
        let r = ledger.try_reserve(crate::memory::Category::KvPages, bytes)?;
        let mut kv = KvCache::with_type(cfg, capacity, kind);
        debug_assert_eq!(kv.bytes() as u64, bytes);
        kv.reservation = Some(r);
        Ok(kv)
    }

    /// Bytes of a `kind` cache of `capacity` positions for a model with `cfg` (keys and
    /// values of every layer): what [`KvCache::reserved`] reserves.
    pub fn bytes_for(cfg: &LlamaConfig, capacity: usize, kind: KvType) -> u64 {
        (cfg.num_layers * cfg.num_kv_heads * kind.head_bytes(cfg.head_dim) * 2 * capacity) as u64
    }

    /// An f32 cache for up to `capacity` positions of a model with `cfg`.
    pub fn new(cfg: &LlamaConfig, capacity: usize) -> KvCache {
        KvCache::with_type(cfg, capacity, KvType::F32)
    }

    /// A cache of element type `kind`.
    pub fn with_type(cfg: &LlamaConfig, capacity: usize, kind: KvType) -> KvCache {
        let heads_total = cfg.num_layers * capacity * cfg.num_kv_heads;
        KvCache {
            kind,
            n_layers: cfg.num_layers,
            n_heads: cfg.num_kv_heads,
            head_dim: cfg.head_dim,
            capacity,
            len: 0,
            k: Store::new(kind, heads_total, cfg.head_dim),
            v: Store::new(kind, heads_total, cfg.head_dim),
            reservation: None,
            base: 0,
            prefix: None,
        }
    }

    /// A cache for `capacity` positions whose first `base` are read from `prefix` (shared,
    /// charged to the prefix) while `base..capacity` are held here, reserved on `ledger`.
    /// With a ready prefix the cache starts with `base` positions filled (the caller computes
    /// only the rest of the prompt); a prefix that is not ready is written by this cache during
    /// its prefill, so `base` must then be its whole length.
    pub fn over_prefix(
        cfg: &LlamaConfig,
        capacity: usize,
        kind: KvType,
        prefix: std::sync::Arc<prefix::SharedPrefix>,
        base: usize,
        ledger: &crate::memory::Ledger,
    ) -> Result<KvCache> {
        let ready = prefix.is_ready();
        let pkind = prefix.cache().read().kind;
        if base > prefix.len() || base > capacity || (!ready && base != prefix.len()) || pkind != kind {
            return Err(Error::invalid(
                "kv prefix",
                format!(
                    "{base} shared positions of a {} prefix ({pkind:?}, ready: {ready}) for a {kind:?} cache of {capacity}",
                    prefix.len()
                ),
            ));
        }
        let mut kv = KvCache::reserved(cfg, capacity - base, kind, ledger)?;
        kv.capacity = capacity;
        kv.base = base;
        kv.len = if ready { base } else { 0 };
        kv.prefix = Some(prefix);
        Ok(kv)
    }

    /// Positions read from a shared prefix (0 without one).
    pub fn base(&self) -> usize {
        self.base
    }

    /// The shared prefix's cache, locked for reading, when this cache has one.
    pub fn prefix_read(&self) -> Option<parking_lot::RwLockReadGuard<'_, KvCache>> {
        self.prefix.as_ref().map(|p| p.cache().read())
    }

    /// Element type.
    pub fn kind(&self) -> KvType {
        self.kind
    }

    /// Bytes one cached position costs (keys and values of every layer, scales included).
    pub fn bytes_per_position(&self) -> usize {
        self.n_layers * self.n_heads * self.kind.head_bytes(self.head_dim) * 2
    }

    /// Bytes held by this cache (a shared prefix's bytes are the prefix's own).
    pub fn bytes(&self) -> usize {
        self.bytes_per_position() * (self.capacity - self.base)
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

    /// Forget everything (the memory is kept; a shared prefix is let go, and the capacity
    /// becomes what this cache holds itself).
    pub fn clear(&mut self) {
        if self.prefix.take().is_some() {
            self.capacity -= self.base;
            self.base = 0;
        }
        self.len = 0;
    }

    /// Drop positions from `len` on (cutting into a shared prefix clears the cache).
    pub fn truncate(&mut self, len: usize) {
        if len < self.base {
            self.clear();
        }
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
        if let Some(p) = &self.prefix {
            if self.len >= self.base && !p.is_ready() {
                p.finish();
            }
        }
    }

    /// Width of one position's keys (kv heads × head dim).
    pub fn kv_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    /// Head slot of (layer, position, head 0) in this cache's own store (`pos ≥ base`).
    #[inline]
    fn slot(&self, layer: usize, pos: usize) -> usize {
        (layer * (self.capacity - self.base) + pos - self.base) * self.n_heads
    }

    /// True when heads are stored rotated by the normalized Hadamard transform (int8 and q4
    /// caches whose head width is a power of two, at most 256): readers rotate queries the same way and
    /// rotate the attention output back (`q·k = Hq·Hk`, `Σ p·v = H Σ p·Hv`).
    pub fn rotated(&self) -> bool {
        matches!(self.kind, KvType::Int8 | KvType::Q4)
            && self.head_dim.is_power_of_two()
            && self.head_dim <= 256
    }

    /// Write key and value rows (`[rows][kv_dim]`) for `layer` at positions `pos..`. Rows
    /// below `base` go to the shared prefix this cache is writing (a ready prefix is read-only:
    /// such rows are dropped with an error logged, which the runtime never causes).
    pub fn write(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let w = self.kv_dim();
        let shared = self.base.saturating_sub(pos).min(k.len() / w.max(1));
        if shared > 0 {
            match &self.prefix {
                Some(p) if !p.is_ready() => {
                    p.cache().write().write(layer, pos, &k[..shared * w], &v[..shared * w])
                }
                _ => log::error!("KV write at {pos} into a shared prefix that is read-only; dropped"),
            }
        }
        self.write_own(layer, pos + shared, &k[shared * w..], &v[shared * w..]);
    }

    fn write_own(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        if k.is_empty() {
            return;
        }
        let d = self.head_dim;
        let base = self.slot(layer, pos);
        let rotate = self.rotated();
        // Rotation applies to heads of at most 256 values (see `rotated`): no allocation here.
        let mut buf = [0.0f32; 512];
        for (i, (kh, vh)) in k.chunks_exact(d).zip(v.chunks_exact(d)).enumerate() {
            if rotate {
                let (rk, rv) = buf[..2 * d].split_at_mut(d);
                rk.copy_from_slice(kh);
                rv.copy_from_slice(vh);
                quant::fwht(rk);
                quant::fwht(rv);
                self.k.put(base + i, rk);
                self.v.put(base + i, rv);
            } else {
                self.k.put(base + i, kh);
                self.v.put(base + i, vh);
            }
        }
    }

    fn view<'a>(&self, s: &'a Store, layer: usize, n: usize) -> LayerView<'a> {
        let (h0, h1) = (self.slot(layer, self.base), self.slot(layer, n.max(self.base)));
        let d = self.head_dim;
        match s {
            Store::F32(v) => LayerView::F32(&v[h0 * d..h1 * d]),
            Store::F16(v) => LayerView::F16(&v[h0 * d..h1 * d]),
            Store::Int8 { q, scale } => LayerView::Int8(&q[h0 * d..h1 * d], &scale[h0..h1]),
            Store::Q4 { q, scale, min } => {
                let (hb, nb) = (d.div_ceil(2), q4_blocks(d));
                LayerView::Q4(&q[h0 * hb..h1 * hb], &scale[h0 * nb..h1 * nb], &min[h0 * nb..h1 * nb])
            }
        }
    }

    /// Keys of `layer` for positions `base()..n` (those this cache holds; `0..n` without a
    /// shared prefix — see [`KvCache::prefix_read`] for the rest).
    pub fn keys(&self, layer: usize, n: usize) -> LayerView<'_> {
        self.view(&self.k, layer, n)
    }

    /// Values of `layer` for positions `base()..n`, as [`KvCache::keys`].
    pub fn values(&self, layer: usize, n: usize) -> LayerView<'_> {
        self.view(&self.v, layer, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::Arch;

    fn cfg() -> LlamaConfig {
        LlamaConfig {
            arch: Arch::Llama,
            hidden_size: 128,
            intermediate_size: 64,
            num_layers: 2,
            num_heads: 4,
            num_kv_heads: 2,
            head_dim: 32,
            vocab_size: 8,
            max_position_embeddings: 16,
            rope_theta: 1e4,
            rope_scaling: None,
            rms_norm_eps: 1e-5,
            tie_word_embeddings: true,
            attention_bias: false,
        }
    }

    #[test]
    fn a_reserved_cache_holds_its_bytes_until_dropped() {
        let c = cfg();
        let ledger = crate::memory::Ledger::new("cpu", 10_000);
        let kv = KvCache::reserved(&c, 4, KvType::Int8, &ledger).unwrap();
        assert_eq!(ledger.stats().used_bytes, kv.bytes() as u64);
        let e = KvCache::reserved(&c, 64, KvType::F32, &ledger).err().unwrap().to_string();
        assert!(e.contains("kv_pages"), "{e}");
        drop(kv);
        assert_eq!(ledger.stats().used_bytes, 0);
    }

    #[test]
    fn bytes_per_position_by_type() {
        let c = cfg();
        assert_eq!(KvCache::with_type(&c, 4, KvType::F32).bytes_per_position(), 2 * 2 * 32 * 4 * 2);
        assert_eq!(KvCache::with_type(&c, 4, KvType::F16).bytes_per_position(), 2 * 2 * 32 * 2 * 2);
        assert_eq!(KvCache::with_type(&c, 4, KvType::Int8).bytes_per_position(), 2 * 2 * 36 * 2);
        assert_eq!(KvCache::with_type(&c, 4, KvType::Q4).bytes_per_position(), 2 * 2 * 24 * 2);
        assert_eq!(KvType::Q4.head_bytes(64), 32 + 16);
        assert!(KvType::parse("q3").is_err());
    }

    #[test]
    fn every_type_reads_back_what_was_written() {
        let c = cfg();
        let x: Vec<f32> = crate::test_util::pseudo_random(2 * 64, 5);
        for (kind, tol) in [(KvType::F32, 0.0), (KvType::F16, 1e-3), (KvType::Int8, 1e-2), (KvType::Q4, 0.07)]
        {
            let mut kv = KvCache::with_type(&c, 4, kind);
            kv.write(1, 2, &x[..64], &x[64..]);
            kv.advance(3);
            let mut q: Vec<f32> = (0..32).map(|i| if i == 5 { 1.0 } else { 0.0 }).collect();
            if kv.rotated() {
                quant::fwht(&mut q);
            }
            // Dotting with a one-hot vector reads element 5 of head 1 at position 2.
            let got = crate::kv::quant::dot_view(&kv.keys(1, 3), 2 * 2 + 1, &q, 32);
            assert!((got - x[32 + 5]).abs() <= tol, "{kind:?}: {got} vs {}", x[32 + 5]);
            let mut out = vec![0.0; 32];
            crate::kv::quant::axpy_view(&kv.values(1, 3), 2 * 2, 1.0, &mut out, 32);
            if kv.rotated() {
                quant::fwht(&mut out);
            }
            for (a, b) in out.iter().zip(&x[64..96]) {
                assert!((a - b).abs() <= tol, "{kind:?}: {a} vs {b}");
            }
        }
    }

    /// Heads wider than one q4 block read back every value (both blocks), alone and rotated.
    #[test]
    fn q4_reads_back_all_blocks_of_a_64_wide_head() {
        let c = LlamaConfig { head_dim: 64, hidden_size: 256, num_layers: 1, ..cfg() };
        let x: Vec<f32> = crate::test_util::pseudo_random(2 * 128, 9);
        let mut kv = KvCache::with_type(&c, 2, KvType::Q4);
        kv.write(0, 0, &x[..128], &x[128..]);
        kv.advance(1);
        assert!(kv.rotated());
        for head in 0..2 {
            // The stored codes are the rotated head: read them with one-hot queries in the
            // rotated domain, each within half a step of its own 32-value block.
            let mut xr = x[head * 64..(head + 1) * 64].to_vec();
            quant::fwht(&mut xr);
            for i in 0..64 {
                let block = &xr[i / Q4_BLOCK * Q4_BLOCK..(i / Q4_BLOCK + 1) * Q4_BLOCK];
                let (lo, hi) = block.iter().fold((f32::MAX, f32::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
                let mut q = vec![0.0f32; 64];
                q[i] = 1.0;
                let got = quant::dot_view(&kv.keys(0, 1), head, &q, 64);
                assert!(
                    (got - xr[i]).abs() <= (hi - lo) / 30.0 + 1e-5,
                    "head {head} value {i}: {got} vs {}",
                    xr[i]
                );
            }
        }
    }
}
