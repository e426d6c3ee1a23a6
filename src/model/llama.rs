//! The Llama-family decoder (Llama 1–3, SmolLM, Mistral-style, Qwen2 with q/k/v biases).
//! Reference implementation: Hugging Face `transformers/models/llama/modeling_llama.py`
//! (`LlamaForCausalLM` with eager attention); every step below mirrors it in f32.
//!
//! One forward call runs a batch of sequences, each with its own tokens (a prefill chunk or
//! one decode token), KV cache and set of weighted adapters. All token rows go through each
//! matrix product together; attention and LoRA are applied per sequence.

use crate::backend::cpu::pool::{chunking, SharedOut};
use crate::backend::cpu::{matmul, matmul_many, Kernels, MatJob, ThreadPool, Workspace};
use crate::error::{Error, Result};
use crate::kv::quant_view::{axpy_view, dot_view, fwht};
use crate::kv::{KvCache, LayerView};
use crate::lora::{apply_lora, LoraAdapter, Module};
use crate::tensor::QMatrix;

use super::config::LlamaConfig;
use super::rope;

/// Weights of one decoder layer.
pub struct Layer {
    /// RMSNorm weight before attention.
    pub attn_norm: Vec<f32>,
    /// Query projection `[q_dim, hidden]`.
    pub wq: QMatrix,
    /// Key projection `[kv_dim, hidden]`.
    pub wk: QMatrix,
    /// Value projection `[kv_dim, hidden]`.
    pub wv: QMatrix,
    /// Output projection `[hidden, q_dim]`.
    pub wo: QMatrix,
    /// Optional q/k/v biases (Qwen2).
    pub bias: Option<[Vec<f32>; 3]>,
    /// RMSNorm weight before the MLP.
    pub ffn_norm: Vec<f32>,
    /// Gate projection `[ffn, hidden]`.
    pub w_gate: QMatrix,
    /// Up projection `[ffn, hidden]`.
    pub w_up: QMatrix,
    /// Down projection `[hidden, ffn]`.
    pub w_down: QMatrix,
}

/// A loaded model: configuration and weights. Immutable and shareable across threads.
pub struct LlamaModel {
    /// Hyper-parameters.
    pub config: LlamaConfig,
    /// Token embedding `[vocab, hidden]`.
    pub embed: QMatrix,
    /// Decoder layers.
    pub layers: Vec<Layer>,
    /// Final RMSNorm weight.
    pub norm: Vec<f32>,
    /// Output projection `[vocab, hidden]` (a clone of `embed` when tied; storage is shared).
    pub lm_head: QMatrix,
    inv_freq: Vec<f32>,
}

/// Which logits a sequence wants from a forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogitsMode {
    /// None (a prefill chunk that is not the last).
    None,
    /// The last token's row only.
    Last,
    /// Every token's row.
    All,
}

/// One sequence's part of a forward batch.
pub struct SeqBatch<'a> {
    /// New tokens, appended at the cache's current length.
    pub tokens: &'a [u32],
    /// The sequence's KV cache.
    pub kv: &'a mut KvCache,
    /// Adapters applied to this sequence with their weights (exact sum, unmerged).
    pub adapters: &'a [(&'a LoraAdapter, f32)],
    /// Logits wanted.
    pub logits: LogitsMode,
}

/// Per-engine compute state: the thread pool, chosen kernels and reusable buffers. One
/// forward pass at a time uses it (`&mut`).
pub struct Compute {
    /// Worker threads.
    pub pool: ThreadPool,
    /// Kernels chosen for this CPU.
    pub kernels: Kernels,
    ws: Workspace,
    buf: Buffers,
}

#[derive(Default)]
struct Buffers {
    h: Vec<f32>,
    x: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    att: Vec<f32>,
    o: Vec<f32>,
    g: Vec<f32>,
    u: Vec<f32>,
    cos: Vec<f32>,
    sin: Vec<f32>,
    lora_tmp: Vec<f32>,
    scores: Vec<parking_lot::Mutex<Vec<f32>>>,
    /// Per batch row: (sequence index, absolute position), computed once per forward.
    rows: Vec<(usize, usize)>,
    row_embed: Vec<f32>,
}

impl Compute {
    /// Compute state with `threads` threads (0 = all available cores).
    pub fn new(threads: usize) -> Compute {
        let pool =
            if threads == 0 { ThreadPool::with_available_parallelism() } else { ThreadPool::new(threads) };
        let scores = (0..pool.n_threads()).map(|_| parking_lot::Mutex::new(Vec::new())).collect();
        Compute {
            pool,
            kernels: Kernels::detect(),
            ws: Workspace::default(),
            buf: Buffers { scores, ..Default::default() },
        }
    }
}

fn grow(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if v.len() < n {
        v.resize(n, 0.0);
    }
    &mut v[..n]
}

fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let d = w.len();
    for (xr, or) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let ms: f32 = xr.iter().map(|v| v * v).sum::<f32>() / d as f32;
        let inv = 1.0 / (ms + eps).sqrt();
        for ((o, xv), wv) in or.iter_mut().zip(xr).zip(w) {
            *o = wv * (xv * inv);
        }
    }
}

impl LlamaModel {
    /// Assemble a model from its parts (loaders validate shapes first).
    pub fn new(
        config: LlamaConfig,
        embed: QMatrix,
        layers: Vec<Layer>,
        norm: Vec<f32>,
        lm_head: QMatrix,
    ) -> Self {
        let inv_freq = rope::inv_freq(&config);
        LlamaModel { config, embed, layers, norm, lm_head, inv_freq }
    }

    /// Bytes of weights held (mapped or owned).
    pub fn weight_bytes(&self) -> usize {
        let mut n = self.embed.bytes_len() + self.norm.len() * 4;
        if !self.config.tie_word_embeddings {
            n += self.lm_head.bytes_len();
        }
        for l in &self.layers {
            n += [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down]
                .iter()
                .map(|m| m.bytes_len())
                .sum::<usize>();
            n += (l.attn_norm.len() + l.ffn_norm.len()) * 4;
        }
        n
    }

    /// Run one forward pass over `seqs`, appending their tokens to their caches. Returns, per
    /// sequence, the logits its [`LogitsMode`] asked for (`rows × vocab`, row-major).
    pub fn forward(&self, c: &mut Compute, seqs: &mut [SeqBatch<'_>]) -> Result<Vec<Vec<f32>>> {
        let cfg = &self.config;
        let (hd, nh, nkv) = (cfg.head_dim, cfg.num_heads, cfg.num_kv_heads);
        let (hidden, qd, kvd, ffn) = (cfg.hidden_size, cfg.q_dim(), cfg.kv_dim(), cfg.intermediate_size);
        for s in seqs.iter() {
            if s.tokens.is_empty() {
                return Err(Error::invalid("tokens", "a sequence in the batch has no tokens"));
            }
            if let Some(&bad) = s.tokens.iter().find(|&&t| t as usize >= cfg.vocab_size) {
                return Err(Error::invalid(
                    "tokens",
                    format!("token id {bad} is outside the vocabulary of {}", cfg.vocab_size),
                ));
            }
            if s.kv.kv_dim() != kvd {
                return Err(Error::invalid("kv", "KV cache was made for another model"));
            }
            s.kv.check_room(s.tokens.len())?;
            for (i, (a, w)) in s.adapters.iter().enumerate() {
                if !w.is_finite() {
                    return Err(Error::invalid(
                        "adapters",
                        format!("adapter {} has a non-finite weight {w}", a.name),
                    ));
                }
                if s.adapters[..i].iter().any(|(b, _)| std::ptr::eq(*a, *b)) {
                    return Err(Error::invalid(
                        "adapters",
                        format!("adapter {} appears twice in one sequence", a.name),
                    ));
                }
            }
        }
        let groups = group_rows(seqs);
        let n: usize = seqs.iter().map(|s| s.tokens.len()).sum();
        let Compute { pool, kernels: k, ws, buf } = c;
        let k = *k;
        // Positions and rotary angles of every row.
        buf.rows.clear();
        for (si, s) in seqs.iter().enumerate() {
            buf.rows.extend((0..s.tokens.len()).map(|j| (si, s.kv.len() + j)));
        }
        let half = hd / 2;
        grow(&mut buf.cos, n * half);
        grow(&mut buf.sin, n * half);
        for (t, &(_, p)) in buf.rows.iter().enumerate() {
            rope::angles(
                &self.inv_freq,
                p,
                &mut buf.cos[t * half..(t + 1) * half],
                &mut buf.sin[t * half..(t + 1) * half],
            );
        }
        // Embeddings.
        let h = grow(&mut buf.h, n * hidden);
        for (t, &tok) in seqs.iter().flat_map(|s| s.tokens.iter()).enumerate() {
            self.embed.dequantize_row_into(tok as usize, &mut h[t * hidden..(t + 1) * hidden]);
        }
        grow(&mut buf.x, n * hidden);
        grow(&mut buf.q, n * qd);
        grow(&mut buf.k, n * kvd);
        grow(&mut buf.v, n * kvd);
        grow(&mut buf.att, n * qd);
        grow(&mut buf.o, n * hidden.max(ffn));
        grow(&mut buf.g, n * ffn);
        grow(&mut buf.u, n * ffn);

        for (li, layer) in self.layers.iter().enumerate() {
            // Attention block.
            rms_norm(&buf.h[..n * hidden], &layer.attn_norm, cfg.rms_norm_eps, &mut buf.x[..n * hidden]);
            {
                let (q, kk, v) = (&mut buf.q[..n * qd], &mut buf.k[..n * kvd], &mut buf.v[..n * kvd]);
                let mut jobs = [
                    MatJob { w: &layer.wq, y: q },
                    MatJob { w: &layer.wk, y: kk },
                    MatJob { w: &layer.wv, y: v },
                ];
                matmul_many(pool, &k, &buf.x[..n * hidden], n, &mut jobs, ws);
            }
            if let Some([bq, bk, bv]) = &layer.bias {
                add_bias(&mut buf.q[..n * qd], bq);
                add_bias(&mut buf.k[..n * kvd], bk);
                add_bias(&mut buf.v[..n * kvd], bv);
            }
            self.lora(pool, &k, &groups, li, buf, Target::Qkv);
            for t in 0..n {
                let (cs, sn) = (&buf.cos[t * half..(t + 1) * half], &buf.sin[t * half..(t + 1) * half]);
                for hq in 0..nh {
                    rope::apply(&mut buf.q[t * qd + hq * hd..t * qd + (hq + 1) * hd], cs, sn);
                }
                for hk in 0..nkv {
                    rope::apply(&mut buf.k[t * kvd + hk * hd..t * kvd + (hk + 1) * hd], cs, sn);
                }
            }
            let mut row = 0;
            for s in seqs.iter_mut() {
                let m = s.tokens.len();
                let p0 = s.kv.len();
                s.kv.write(li, p0, &buf.k[row * kvd..(row + m) * kvd], &buf.v[row * kvd..(row + m) * kvd]);
                row += m;
            }
            self.attention(
                pool,
                &k,
                seqs,
                &buf.rows,
                li,
                &buf.q[..n * qd],
                &mut buf.att[..n * qd],
                &buf.scores,
            );
            matmul(pool, &k, &buf.att[..n * qd], n, &layer.wo, &mut buf.o[..n * hidden], ws);
            self.lora(pool, &k, &groups, li, buf, Target::O);
            for (hv, ov) in buf.h[..n * hidden].iter_mut().zip(&buf.o[..n * hidden]) {
                *hv += ov;
            }
            // MLP block.
            rms_norm(&buf.h[..n * hidden], &layer.ffn_norm, cfg.rms_norm_eps, &mut buf.x[..n * hidden]);
            {
                let (g, u) = (&mut buf.g[..n * ffn], &mut buf.u[..n * ffn]);
                let mut jobs = [MatJob { w: &layer.w_gate, y: g }, MatJob { w: &layer.w_up, y: u }];
                matmul_many(pool, &k, &buf.x[..n * hidden], n, &mut jobs, ws);
            }
            self.lora(pool, &k, &groups, li, buf, Target::GateUp);
            for (gv, uv) in buf.g[..n * ffn].iter_mut().zip(&buf.u[..n * ffn]) {
                *gv = *gv / (1.0 + (-*gv).exp()) * uv;
            }
            matmul(pool, &k, &buf.g[..n * ffn], n, &layer.w_down, &mut buf.o[..n * hidden], ws);
            self.lora(pool, &k, &groups, li, buf, Target::Down);
            for (hv, ov) in buf.h[..n * hidden].iter_mut().zip(&buf.o[..n * hidden]) {
                *hv += ov;
            }
        }
        // Logits for the rows that want them.
        let mut out = Vec::with_capacity(seqs.len());
        let mut row = 0;
        let vocab = cfg.vocab_size;
        for s in seqs.iter_mut() {
            let m = s.tokens.len();
            let rows = match s.logits {
                LogitsMode::None => 0..0,
                LogitsMode::Last => row + m - 1..row + m,
                LogitsMode::All => row..row + m,
            };
            let r = rows.len();
            let mut logits = vec![0.0f32; r * vocab];
            if r > 0 {
                let xn = grow(&mut buf.row_embed, r * hidden);
                rms_norm(&buf.h[rows.start * hidden..rows.end * hidden], &self.norm, cfg.rms_norm_eps, xn);
                matmul(pool, &k, &buf.row_embed[..r * hidden], r, &self.lm_head, &mut logits, ws);
            }
            out.push(logits);
            s.kv.advance(m);
            row += m;
        }
        Ok(out)
    }

    /// Apply every adapter group for the modules of `target` in layer `li`, adding into the
    /// projection outputs held in `buf`. Each group lists the rows that use one adapter.
    fn lora(
        &self,
        pool: &ThreadPool,
        k: &Kernels,
        groups: &[AdapterRows<'_>],
        li: usize,
        buf: &mut Buffers,
        target: Target,
    ) {
        if groups.is_empty() {
            return;
        }
        let cfg = &self.config;
        let (hidden, qd, kvd, ffn) = (cfg.hidden_size, cfg.q_dim(), cfg.kv_dim(), cfg.intermediate_size);
        let Buffers { x, q, k: kb, v, att, o, g, u, lora_tmp, .. } = buf;
        let (input, in_width, mut outs): LoraIo<'_> = match target {
            Target::Qkv => (
                x,
                hidden,
                vec![
                    (Module::Q, &mut q[..], qd),
                    (Module::K, &mut kb[..], kvd),
                    (Module::V, &mut v[..], kvd),
                ],
            ),
            Target::O => (att, qd, vec![(Module::O, &mut o[..], hidden)]),
            Target::GateUp => {
                (x, hidden, vec![(Module::Gate, &mut g[..], ffn), (Module::Up, &mut u[..], ffn)])
            }
            Target::Down => (g, ffn, vec![(Module::Down, &mut o[..], hidden)]),
        };
        for (adapter, rows) in groups {
            for (module, y, out_width) in outs.iter_mut() {
                let Some(pair) = adapter.pair(li, *module) else { continue };
                apply_lora(pool, k, pair, rows, input, in_width, y, *out_width, lora_tmp);
            }
        }
    }

    /// Causal attention of every row's query heads over its sequence's cache.
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        pool: &ThreadPool,
        kern: &Kernels,
        seqs: &[SeqBatch<'_>],
        rows: &[(usize, usize)],
        li: usize,
        q: &[f32],
        att: &mut [f32],
        scores: &[parking_lot::Mutex<Vec<f32>>],
    ) {
        let cfg = &self.config;
        let (hd, nh, nkvh) = (cfg.head_dim, cfg.num_heads, cfg.num_kv_heads);
        let group = nh / nkvh;
        let qd = nh * hd;
        let scale = 1.0 / (hd as f32).sqrt();
        let items = rows.len() * nh;
        let out = SharedOut::new(att);
        let (n_chunks, per) = chunking(items, pool.n_threads(), 1, 1);
        pool.run(n_chunks, &|chunk, thread| {
            let mut sc = scores[thread].lock();
            for item in chunk * per..((chunk + 1) * per).min(items) {
                let (t, head) = (item / nh, item % nh);
                let (si, pos) = rows[t];
                let kv = &*seqs[si].kv;
                let n_ctx = pos + 1;
                // Positions below `base` live in a shared prefix (read under its lock), the
                // rest in the sequence's own cache.
                let shared = kv.prefix_read();
                let base = kv.base().min(n_ctx);
                let keys = kv.keys(li, n_ctx);
                let vals = kv.values(li, n_ctx);
                let pre = shared.as_ref().map(|p| (p.keys(li, base), p.values(li, base)));
                let at = |j: usize| -> (&LayerView<'_>, &LayerView<'_>, usize) {
                    match &pre {
                        Some((pk, pv)) if j < base => (pk, pv, j),
                        _ => (&keys, &vals, j - base),
                    }
                };
                let kh = head / group;
                let rotated = kv.rotated();
                let mut qrot = [0.0f32; 256];
                let qv = if rotated {
                    qrot[..hd].copy_from_slice(&q[t * qd + head * hd..t * qd + (head + 1) * hd]);
                    fwht(&mut qrot[..hd]);
                    &qrot[..hd]
                } else {
                    &q[t * qd + head * hd..t * qd + (head + 1) * hd]
                };
                if sc.len() < n_ctx {
                    sc.resize(n_ctx, 0.0);
                }
                let mut max = f32::NEG_INFINITY;
                for (j, s) in sc[..n_ctx].iter_mut().enumerate() {
                    let (kview, _, local) = at(j);
                    let slot = local * nkvh + kh;
                    *s = match kview {
                        LayerView::F32(k) => (kern.dot_f32)(qv, &k[slot * hd..(slot + 1) * hd]),
                        _ => dot_view(kview, slot, qv, hd),
                    } * scale;
                    max = max.max(*s);
                }
                let mut sum = 0.0;
                for s in sc[..n_ctx].iter_mut() {
                    *s = (*s - max).exp();
                    sum += *s;
                }
                let inv = 1.0 / sum;
                // SAFETY: each (t, head) item is in exactly one chunk and owns its `head_dim` slice of
                // `att`, which outlives the job.
                let o = unsafe { std::slice::from_raw_parts_mut(out.get().add(t * qd + head * hd), hd) };
                o.fill(0.0);
                for (j, s) in sc[..n_ctx].iter().enumerate() {
                    let p = s * inv;
                    let (_, vview, local) = at(j);
                    axpy_view(vview, local * nkvh + kh, p, o, hd);
                }
                if rotated {
                    fwht(o);
                }
            }
        });
    }
}

/// One adapter and the `(row, weight)` pairs of the batch rows that use it.
type AdapterRows<'a> = (&'a LoraAdapter, Vec<(usize, f32)>);

/// Group the batch's rows by adapter (identity), so each adapter is applied once per step.
fn group_rows<'a>(seqs: &[SeqBatch<'a>]) -> Vec<AdapterRows<'a>> {
    let mut groups: Vec<AdapterRows<'a>> = Vec::new();
    let mut row = 0;
    for s in seqs {
        let m = s.tokens.len();
        for &(adapter, weight) in s.adapters {
            let rows = (row..row + m).map(|r| (r, weight));
            match groups.iter_mut().find(|(a, _)| std::ptr::eq(*a, adapter)) {
                Some((_, list)) => list.extend(rows),
                None => groups.push((adapter, rows.collect())),
            }
        }
        row += m;
    }
    groups
}

/// Inputs and outputs of one LoRA step: (input rows, input width, [(module, output rows,
/// output width)]).
type LoraIo<'a> = (&'a [f32], usize, Vec<(Module, &'a mut [f32], usize)>);

#[derive(Clone, Copy)]
enum Target {
    Qkv,
    O,
    GateUp,
    Down,
}

fn add_bias(y: &mut [f32], b: &[f32]) {
    for row in y.chunks_exact_mut(b.len()) {
        for (v, bv) in row.iter_mut().zip(b) {
            *v += bv;
        }
    }
}
