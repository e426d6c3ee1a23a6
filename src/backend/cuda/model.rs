//! The Llama forward pass on one GPU, op for op the CPU engine's (`model/llama.rs`): the same
//! weights (quantized blocks kept), RMSNorm, rotary embedding, grouped-query attention over the
//! paged KV cache, SwiGLU, and unmerged LoRA for a mixed batch where every sequence carries its
//! own weighted set of adapters. Activations stay f32 (no activation quantization), so a
//! quantized model on the GPU matches the CPU engine run on the same weights dequantized.

use super::device::{CudaDevice, DeviceBuffer, GpuMatrix, PAGE};
use super::kv_gpu::GpuKv;
use super::lora_gpu::{GpuLoraPlan, GpuPool};
use super::lora_plan::{AdapterPool, LoraPlan};
use super::pack::{Packed, PackedMatrix};
use super::pages::{BlockTable, PageAllocator};
use crate::error::{Error, Result};
use crate::lora::{LoraAdapter, Module};
use crate::memory::Category;
use crate::model::{LlamaConfig, LlamaModel};

struct GpuLayer {
    attn_norm: DeviceBuffer<f32>,
    wq: GpuMatrix,
    wk: GpuMatrix,
    wv: GpuMatrix,
    wo: GpuMatrix,
    bias: Option<[DeviceBuffer<f32>; 3]>,
    ffn_norm: DeviceBuffer<f32>,
    w_gate: GpuMatrix,
    w_up: GpuMatrix,
    w_down: GpuMatrix,
}

/// A model's weights on one GPU, charged to its ledger as base weights.
pub struct CudaModel {
    cfg: LlamaConfig,
    embed: GpuMatrix,
    layers: Vec<GpuLayer>,
    norm: DeviceBuffer<f32>,
    lm_head: GpuMatrix,
    inv_freq: DeviceBuffer<f32>,
}

/// One module's pool and, per adapter of the set, its slot there (`None`: does not target it).
type ModulePool = Option<(GpuPool, Vec<Option<usize>>)>;

/// A set of adapters docked on one GPU: per layer and module, one pool of every adapter that
/// targets it, and which slot each adapter has there.
pub struct GpuLoras {
    modules: Vec<[ModulePool; 7]>,
    count: usize,
}

impl GpuLoras {
    /// Dock `adapters` (index in this list = the adapter's id in [`GpuSeq::adapters`]).
    pub fn upload(dev: &CudaDevice, cfg: &LlamaConfig, adapters: &[&LoraAdapter]) -> Result<GpuLoras> {
        let mut modules = Vec::with_capacity(cfg.num_layers);
        for li in 0..cfg.num_layers {
            let mut per: [ModulePool; 7] = Default::default();
            for m in Module::ALL {
                let mut pool: Option<AdapterPool> = None;
                let mut slot_of = vec![None; adapters.len()];
                for (ai, a) in adapters.iter().enumerate() {
                    if a.layers.len() != cfg.num_layers {
                        return Err(Error::adapter(
                            &a.name,
                            "was made for a model with another number of layers",
                        ));
                    }
                    if let Some(pair) = &a.layers[li][m as usize] {
                        let p = pool.get_or_insert_with(|| AdapterPool::new(pair.d_in, pair.d_out));
                        slot_of[ai] = Some(p.push(pair).map_err(|e| Error::adapter(&a.name, e.to_string()))?);
                    }
                }
                if let Some(p) = pool {
                    per[m as usize] = Some((GpuPool::upload(dev, &p)?, slot_of));
                }
            }
            modules.push(per);
        }
        Ok(GpuLoras { modules, count: adapters.len() })
    }
}

/// One sequence of a forward batch: its new tokens, its block table (grown here), and its
/// adapters as `(id in GpuLoras, weight)`.
pub struct GpuSeq<'a> {
    /// New tokens (a prompt chunk, or one decode token).
    pub tokens: &'a [u32],
    /// The sequence's pages.
    pub table: &'a mut BlockTable,
    /// Adapters and weights.
    pub adapters: Vec<(usize, f32)>,
}

fn upload_f32(dev: &CudaDevice, v: &[f32]) -> Result<DeviceBuffer<f32>> {
    dev.upload(Category::BaseWeights, v)
}

fn upload_w(dev: &CudaDevice, m: &crate::tensor::QMatrix) -> Result<GpuMatrix> {
    dev.upload_matrix(Category::BaseWeights, &PackedMatrix::pack(m)?)
}

impl CudaModel {
    /// Upload `model`'s weights (quantized blocks as they are; see [`PackedMatrix::pack`]).
    pub fn upload(dev: &CudaDevice, model: &LlamaModel) -> Result<CudaModel> {
        let cfg = model.config.clone();
        // The embedding kernel reads f16 or Q8_0 rows; other types become f16.
        let mut embed = PackedMatrix::pack(&model.embed)?;
        if !matches!(embed.data, Packed::F16(_) | Packed::Q8_0 { .. }) {
            let v = (0..embed.rows * embed.cols)
                .map(|i| half::f16::from_f32(embed.value(i / embed.cols, i % embed.cols)))
                .collect();
            embed = PackedMatrix { rows: embed.rows, cols: embed.cols, data: Packed::F16(v) };
        }
        let embed = dev.upload_matrix(Category::BaseWeights, &embed)?;
        let mut layers = Vec::with_capacity(model.layers.len());
        for l in &model.layers {
            let bias = match &l.bias {
                Some([q, k, v]) => Some([upload_f32(dev, q)?, upload_f32(dev, k)?, upload_f32(dev, v)?]),
                None => None,
            };
            layers.push(GpuLayer {
                attn_norm: upload_f32(dev, &l.attn_norm)?,
                wq: upload_w(dev, &l.wq)?,
                wk: upload_w(dev, &l.wk)?,
                wv: upload_w(dev, &l.wv)?,
                wo: upload_w(dev, &l.wo)?,
                bias,
                ffn_norm: upload_f32(dev, &l.ffn_norm)?,
                w_gate: upload_w(dev, &l.w_gate)?,
                w_up: upload_w(dev, &l.w_up)?,
                w_down: upload_w(dev, &l.w_down)?,
            });
        }
        Ok(CudaModel {
            inv_freq: upload_f32(dev, &crate::model::rope::inv_freq(&cfg))?,
            norm: upload_f32(dev, &model.norm)?,
            lm_head: upload_w(dev, &model.lm_head)?,
            embed,
            layers,
            cfg,
        })
    }

    /// Bytes a decode step reads for one token: every projection, the output head and the
    /// norms (the embedding row is negligible).
    pub fn bytes_per_token(&self) -> u64 {
        let norms = (self.norm.len() + self.layers.len() * 2 * self.cfg.hidden_size) as u64 * 4;
        let layers: u64 = self
            .layers
            .iter()
            .flat_map(|l| [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down])
            .map(|m| m.bytes)
            .sum();
        layers + self.lm_head.bytes + norms
    }

    /// The configuration.
    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// Run `seqs`' new tokens through the model, writing their KV into `kv` (pages from
    /// `pages`), and return each sequence's last-token logits.
    pub fn forward(
        &self,
        dev: &CudaDevice,
        kv: &mut GpuKv,
        pages: &mut PageAllocator,
        seqs: &mut [GpuSeq<'_>],
        loras: Option<&GpuLoras>,
    ) -> Result<Vec<Vec<f32>>> {
        let cfg = &self.cfg;
        let (hd, nh, nkv) = (cfg.head_dim, cfg.num_heads, cfg.num_kv_heads);
        let (hidden, qd, kvd, ffn, vocab) =
            (cfg.hidden_size, cfg.q_dim(), cfg.kv_dim(), cfg.intermediate_size, cfg.vocab_size);
        for s in seqs.iter() {
            if s.tokens.is_empty() {
                return Err(Error::invalid("tokens", "a sequence in the batch has no tokens"));
            }
            if let Some(&bad) = s.tokens.iter().find(|&&t| t as usize >= vocab) {
                return Err(Error::invalid(
                    "tokens",
                    format!("token id {bad} is outside the vocabulary of {vocab}"),
                ));
            }
            for &(a, w) in &s.adapters {
                if loras.is_none_or(|l| a >= l.count) {
                    return Err(Error::invalid(
                        "adapters",
                        format!("adapter id {a} is not docked on {}", dev.label()),
                    ));
                }
                if !w.is_finite() {
                    return Err(Error::invalid(
                        "adapters",
                        format!("adapter {a} has a non-finite weight {w}"),
                    ));
                }
            }
        }
        // Rows, positions, slots; each sequence's table grows by its new tokens.
        let (mut ids, mut positions, mut slots, mut starts) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut row_sets: Vec<Vec<(usize, f32)>> = Vec::new();
        for s in seqs.iter_mut() {
            let p0 = s.table.len();
            starts.push((ids.len(), p0, s.tokens.len()));
            ids.extend(s.tokens.iter().map(|&t| t as i32));
            positions.extend((p0..p0 + s.tokens.len()).map(|p| p as i32));
            slots.extend(s.table.append(pages, s.tokens.len())?);
            row_sets.extend(std::iter::repeat_n(s.adapters.clone(), s.tokens.len()));
        }
        if let Some(bad) = slots.iter().find(|&&s| s as usize >= kv.n_pages() * PAGE) {
            return Err(Error::invalid(
                "kv pages",
                format!("slot {bad} is outside a cache of {} pages", kv.n_pages()),
            ));
        }
        let n = ids.len();
        let c = Category::Scratch;
        let ids = dev.upload(c, &ids)?;
        let positions = dev.upload(c, &positions)?;
        let slots = dev.upload(c, &slots)?;
        let tables: Vec<DeviceBuffer<i32>> = seqs
            .iter()
            .map(|s| dev.upload(c, &s.table.pages().iter().map(|&p| p as i32).collect::<Vec<_>>()))
            .collect::<Result<_>>()?;
        // Per (layer, module): the plan of this batch's rows on that module's pool.
        let mut plans: Vec<[Option<GpuLoraPlan>; 7]> = Vec::new();
        if let Some(l) = loras {
            for per in &l.modules {
                let mut row: [Option<GpuLoraPlan>; 7] = Default::default();
                for (mi, entry) in per.iter().enumerate() {
                    if let Some((pool, slot_of)) = entry {
                        let sets: Vec<Vec<(usize, f32)>> = row_sets
                            .iter()
                            .map(|set| set.iter().filter_map(|&(a, w)| slot_of[a].map(|s| (s, w))).collect())
                            .collect();
                        let plan = LoraPlan::build(&sets, &pool.slots)?;
                        if plan.n_groups() > 0 {
                            row[mi] = Some(GpuLoraPlan::upload(dev, &plan)?);
                        }
                    }
                }
                plans.push(row);
            }
        }
        let mut h = dev.zeros::<f32>(c, n * hidden)?;
        let mut x = dev.zeros::<f32>(c, n * hidden)?;
        let mut q = dev.zeros::<f32>(c, n * qd)?;
        let mut k = dev.zeros::<f32>(c, n * kvd)?;
        let mut v = dev.zeros::<f32>(c, n * kvd)?;
        let mut att = dev.zeros::<f32>(c, n * qd)?;
        let mut o = dev.zeros::<f32>(c, n * hidden)?;
        let mut g = dev.zeros::<f32>(c, n * ffn)?;
        let mut u = dev.zeros::<f32>(c, n * ffn)?;
        let mut act = dev.zeros::<f32>(c, n * ffn)?;
        dev.embed(&self.embed, &ids, &mut h)?;
        let scale = 1.0 / (hd as f32).sqrt();
        let eps = cfg.rms_norm_eps;
        for (li, layer) in self.layers.iter().enumerate() {
            let mut lora = |m: Module, xin: &DeviceBuffer<f32>, y: &mut DeviceBuffer<f32>| -> Result<()> {
                if let (Some(l), Some(row)) = (loras, plans.get_mut(li)) {
                    if let (Some((pool, _)), Some(plan)) = (&l.modules[li][m as usize], &mut row[m as usize])
                    {
                        dev.lora(pool, plan, xin, y)?;
                    }
                }
                Ok(())
            };
            dev.rmsnorm(&h, &layer.attn_norm, &mut x, n, eps)?;
            dev.matvec(&layer.wq, &x, &mut q, n)?;
            dev.matvec(&layer.wk, &x, &mut k, n)?;
            dev.matvec(&layer.wv, &x, &mut v, n)?;
            if let Some([bq, bk, bv]) = &layer.bias {
                dev.add_rows(&mut q, bq, n)?;
                dev.add_rows(&mut k, bk, n)?;
                dev.add_rows(&mut v, bv, n)?;
            }
            lora(Module::Q, &x, &mut q)?;
            lora(Module::K, &x, &mut k)?;
            lora(Module::V, &x, &mut v)?;
            dev.rope(&mut q, &positions, &self.inv_freq, nh, hd)?;
            dev.rope(&mut k, &positions, &self.inv_freq, nkv, hd)?;
            kv.append(dev, li, &k, &v, &slots)?;
            for (si, &(row0, p0, m)) in starts.iter().enumerate() {
                kv.attend_prefill(dev, li, &q, row0, &tables[si], p0, m, &mut att, nh, scale)?;
            }
            dev.matvec(&layer.wo, &att, &mut o, n)?;
            lora(Module::O, &att, &mut o)?;
            dev.add(&mut h, &o, n * hidden)?;
            dev.rmsnorm(&h, &layer.ffn_norm, &mut x, n, eps)?;
            dev.matvec(&layer.w_gate, &x, &mut g, n)?;
            dev.matvec(&layer.w_up, &x, &mut u, n)?;
            lora(Module::Gate, &x, &mut g)?;
            lora(Module::Up, &x, &mut u)?;
            dev.silu_mul(&g, &u, &mut act, n * ffn)?;
            dev.matvec(&layer.w_down, &act, &mut o, n)?;
            lora(Module::Down, &act, &mut o)?;
            dev.add(&mut h, &o, n * hidden)?;
        }
        dev.rmsnorm(&h, &self.norm, &mut x, n, eps)?;
        // Logits of every row (prefill chunks are short next to the vocabulary), then each
        // sequence's last row is taken on the host.
        let mut logits = dev.zeros::<f32>(c, n * vocab)?;
        dev.matvec(&self.lm_head, &x, &mut logits, n)?;
        let all = dev.download(&logits)?;
        Ok(starts
            .iter()
            .map(|&(row0, _, m)| all[(row0 + m - 1) * vocab..(row0 + m) * vocab].to_vec())
            .collect())
    }
}
