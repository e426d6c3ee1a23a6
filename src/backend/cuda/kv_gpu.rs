//! The paged KV cache on a GPU: per layer one pool of pages `[n_pages, n_kv_heads, PAGE,
//! head_dim]` in f16, or int8 with one scale per token and head (heads rotated by the
//! normalized Walsh–Hadamard transform first, exactly as the CPU's int8 cache). Pages are
//! handed out by [`super::pages`]; the kernels read them through block tables.

use half::f16;

use super::device::{blocks, int, need, CudaDevice, DeviceBuffer, PAGE};
use crate::error::{Error, Result};
use crate::memory::Category;

/// Element type of the cached keys and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvLayout {
    /// Halves.
    F16,
    /// Int8 with a per-token, per-head f32 scale (rotated heads).
    Int8,
}

#[derive(Debug)]
enum LayerKv {
    F16 { k: DeviceBuffer<f16>, v: DeviceBuffer<f16> },
    Int8 { kq: DeviceBuffer<i8>, ks: DeviceBuffer<f32>, vq: DeviceBuffer<i8>, vs: DeviceBuffer<f32> },
}

/// The KV pools of every layer of one model on one device.
#[derive(Debug)]
pub struct GpuKv {
    layout: KvLayout,
    n_pages: usize,
    n_kv_heads: usize,
    head_dim: usize,
    layers: Vec<LayerKv>,
}

impl GpuKv {
    /// Device bytes of one page of one layer.
    pub fn page_bytes(layout: KvLayout, n_kv_heads: usize, head_dim: usize) -> u64 {
        let per_pos = match layout {
            KvLayout::F16 => 2 * n_kv_heads * head_dim * 2,
            KvLayout::Int8 => 2 * (n_kv_heads * head_dim + n_kv_heads * 4),
        };
        (per_pos * PAGE) as u64
    }

    /// Pools of `n_pages` pages for `n_layers` layers, reserved as KV pages on the device's
    /// ledger before anything is allocated.
    pub fn new(
        dev: &CudaDevice,
        layout: KvLayout,
        n_layers: usize,
        n_pages: usize,
        n_kv_heads: usize,
        head_dim: usize,
    ) -> Result<GpuKv> {
        if layout == KvLayout::Int8 && !(head_dim.is_power_of_two() && head_dim <= 256) {
            return Err(Error::unsupported(
                dev.label(),
                format!("an int8 KV cache needs a power-of-two head_dim ≤ 256, not {head_dim}"),
            ));
        }
        // One reservation check for the whole cache first, so a cache that does not fit fails
        // before any allocation.
        let total = Self::page_bytes(layout, n_kv_heads, head_dim) * (n_pages * n_layers) as u64;
        drop(dev.ledger().try_reserve(Category::KvPages, total)?);
        let elems = n_pages * n_kv_heads * PAGE * head_dim;
        let scales = n_pages * n_kv_heads * PAGE;
        let mut layers = Vec::with_capacity(n_layers);
        for _ in 0..n_layers {
            layers.push(match layout {
                KvLayout::F16 => LayerKv::F16 {
                    k: dev.zeros(Category::KvPages, elems)?,
                    v: dev.zeros(Category::KvPages, elems)?,
                },
                KvLayout::Int8 => LayerKv::Int8 {
                    kq: dev.zeros(Category::KvPages, elems)?,
                    ks: dev.zeros(Category::KvPages, scales)?,
                    vq: dev.zeros(Category::KvPages, elems)?,
                    vs: dev.zeros(Category::KvPages, scales)?,
                },
            });
        }
        Ok(GpuKv { layout, n_pages, n_kv_heads, head_dim, layers })
    }

    /// The element type.
    pub fn layout(&self) -> KvLayout {
        self.layout
    }

    /// Pages per layer.
    pub fn n_pages(&self) -> usize {
        self.n_pages
    }

    fn layer(&self, layer: usize) -> Result<&LayerKv> {
        self.layers.get(layer).ok_or_else(|| {
            Error::invalid("layer", format!("{layer} is past the cache's {} layers", self.layers.len()))
        })
    }

    /// Write `k` and `v` (`[n_tokens, n_kv_heads, head_dim]`) of `layer` at `slots` (from a
    /// [`super::pages::BlockTable`], so every slot is a page of this pool).
    pub fn append(
        &mut self,
        dev: &CudaDevice,
        layer: usize,
        k: &DeviceBuffer<f32>,
        v: &DeviceBuffer<f32>,
        slots: &DeviceBuffer<i32>,
    ) -> Result<()> {
        let n = slots.len();
        let width = self.n_kv_heads * self.head_dim;
        need("kv_append k", k.len(), n * width)?;
        need("kv_append v", v.len(), n * width)?;
        let (nkv, hd) = (int("kv heads", self.n_kv_heads)?, int("head_dim", self.head_dim)?);
        let grid = (n as u32, self.n_kv_heads as u32, 1);
        let block = (self.head_dim as u32, 1, 1);
        self.layer(layer)?;
        match &mut self.layers[layer] {
            LayerKv::F16 { k: kp, v: vp } => launch!(
                dev,
                "kv_append_f16",
                grid,
                block,
                [&k.slice, &v.slice, &mut kp.slice, &mut vp.slice, &slots.slice, &nkv, &hd]
            ),
            LayerKv::Int8 { kq, ks, vq, vs } => launch!(
                dev,
                "kv_append_i8",
                grid,
                block,
                [
                    &k.slice,
                    &v.slice,
                    &mut kq.slice,
                    &mut vq.slice,
                    &mut ks.slice,
                    &mut vs.slice,
                    &slots.slice,
                    &nkv,
                    &hd
                ]
            ),
        }
    }

    /// Decode attention for a batch of sequences, one query row each (`q`: `[n_seqs, n_heads,
    /// head_dim]`); `tables`/`width`/`lens` from [`super::pages::batch_tables`].
    #[allow(clippy::too_many_arguments)]
    pub fn attend_decode(
        &self,
        dev: &CudaDevice,
        layer: usize,
        q: &DeviceBuffer<f32>,
        tables: &DeviceBuffer<i32>,
        width: usize,
        lens: &DeviceBuffer<i32>,
        out: &mut DeviceBuffer<f32>,
        n_heads: usize,
        scale: f32,
    ) -> Result<()> {
        let n_seqs = lens.len();
        need("attention q", q.len(), n_seqs * n_heads * self.head_dim)?;
        need("attention out", out.len(), n_seqs * n_heads * self.head_dim)?;
        need("block tables", tables.len(), n_seqs * width)?;
        let (w, nh, nkv, hd) = (
            int("width", width)?,
            int("heads", n_heads)?,
            int("kv heads", self.n_kv_heads)?,
            int("head_dim", self.head_dim)?,
        );
        let grid = (n_heads as u32, n_seqs as u32, 1);
        match self.layer(layer)? {
            LayerKv::F16 { k, v } => launch!(
                dev,
                "attn_decode_f16",
                grid,
                (128, 1, 1),
                [
                    &q.slice,
                    &k.slice,
                    &v.slice,
                    &tables.slice,
                    &w,
                    &lens.slice,
                    &mut out.slice,
                    &nh,
                    &nkv,
                    &hd,
                    &scale
                ]
            ),
            LayerKv::Int8 { kq, ks, vq, vs } => launch!(
                dev,
                "attn_decode_i8",
                grid,
                (128, 1, 1),
                [
                    &q.slice,
                    &kq.slice,
                    &ks.slice,
                    &vq.slice,
                    &vs.slice,
                    &tables.slice,
                    &w,
                    &lens.slice,
                    &mut out.slice,
                    &nh,
                    &nkv,
                    &hd,
                    &scale
                ]
            ),
        }
    }

    /// Causal attention for `n_tokens` new positions of one sequence starting at `start_pos`
    /// (their KV already appended); `table` is that sequence's block table.
    #[allow(clippy::too_many_arguments)]
    pub fn attend_prefill(
        &self,
        dev: &CudaDevice,
        layer: usize,
        q: &DeviceBuffer<f32>,
        q_row: usize,
        table: &DeviceBuffer<i32>,
        start_pos: usize,
        n_tokens: usize,
        out: &mut DeviceBuffer<f32>,
        n_heads: usize,
        scale: f32,
    ) -> Result<()> {
        let row = n_heads * self.head_dim;
        need("attention q", q.len(), (q_row + n_tokens) * row)?;
        need("attention out", out.len(), (q_row + n_tokens) * row)?;
        need("block table", table.len() * PAGE, start_pos + n_tokens)?;
        let (sp, nt) = (int("start", start_pos)?, int("tokens", n_tokens)?);
        let (nh, nkv, hd) =
            (int("heads", n_heads)?, int("kv heads", self.n_kv_heads)?, int("head_dim", self.head_dim)?);
        let qv = q.slice.slice(q_row * row..);
        let mut ov = out.slice.slice_mut(q_row * row..);
        let grid = (n_heads as u32, blocks(n_tokens, 1), 1);
        match self.layer(layer)? {
            LayerKv::F16 { k, v } => launch!(
                dev,
                "attn_prefill_f16",
                grid,
                (128, 1, 1),
                [&qv, &k.slice, &v.slice, &table.slice, &sp, &nt, &mut ov, &nh, &nkv, &hd, &scale]
            ),
            LayerKv::Int8 { kq, ks, vq, vs } => launch!(
                dev,
                "attn_prefill_i8",
                grid,
                (128, 1, 1),
                [
                    &qv,
                    &kq.slice,
                    &ks.slice,
                    &vq.slice,
                    &vs.slice,
                    &table.slice,
                    &sp,
                    &nt,
                    &mut ov,
                    &nh,
                    &nkv,
                    &hd,
                    &scale
                ]
            ),
        }
    }
}
