//! `bench --mixed N`: decode throughput of one batch of N rows, each row with its own
//! adapter, against the same batch with no adapters. The runs alternate (base, mixed, base,
//! mixed, …) after a warm-up pair, so drift in the machine's speed hits both sides alike.
//!
//! The adapters are built in memory, deterministically: rank `--rank`, every layer, the
//! modules of `--targets`, A and B filled with approximately N(0, 0.02) values from a seed per
//! adapter and scale 1 (alpha = rank). A row's LoRA term is then a few percent of its
//! projection's output, enough to change greedy tokens (`rows_changed` counts the rows
//! whose decoded tokens differ from the base run).

use super::bench::{bench_prompt, cpu_name, greedy_decode, stats, DecodeRow};
use super::commands::Session;
use super::{BenchArgs, MixedTargets};
use crate::error::{Error, Result};
use crate::generate::PREFILL_CHUNK;
use crate::kv::KvCache;
use crate::lora::peft::module_shape;
use crate::lora::{LoraAdapter, LoraPair, Module};
use crate::model::{Compute, LlamaConfig, LlamaModel, LogitsMode, SeqBatch};

/// Standard deviation of the synthetic A and B values (a typical LoRA init scale).
const INIT_STD: f32 = 0.02;

/// The modules `targets` names.
pub(crate) fn target_modules(targets: MixedTargets) -> &'static [Module] {
    match targets {
        MixedTargets::Qkvo => &Module::ALL[..4],
        MixedTargets::All => &Module::ALL,
    }
}

/// splitmix64: a tiny deterministic generator (one state word, full period).
pub(crate) struct SplitMix(pub(crate) u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Approximately N(0, std²): the sum of four 16-bit uniforms (Irwin–Hall), centred and
    /// scaled to unit variance.
    pub(crate) fn normal(&mut self, std: f32) -> f32 {
        let x = self.next();
        let sum: u32 = (0..4).map(|k| ((x >> (16 * k)) & 0xFFFF) as u32).sum();
        let u = sum as f32 / 65536.0 - 2.0; // variance 4/12
        u * 3f32.sqrt() * std
    }

    fn fill(&mut self, n: usize, std: f32) -> Vec<f32> {
        (0..n).map(|_| self.normal(std)).collect()
    }
}

/// `n` distinct adapters for a model with `cfg`: rank `rank` on `modules` of every layer,
/// adapter `i` generated from its own seed (the same values on every run and machine).
pub(crate) fn synthetic_adapters(
    cfg: &LlamaConfig,
    n: usize,
    rank: usize,
    modules: &[Module],
) -> Vec<LoraAdapter> {
    (0..n)
        .map(|i| {
            let mut rng = SplitMix(0x1D0C_0000_0000 ^ (i as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
            let layers = (0..cfg.num_layers)
                .map(|_| {
                    let mut l: [Option<LoraPair>; 7] = Default::default();
                    for &m in modules {
                        let (d_out, d_in) = module_shape(cfg, m);
                        l[m as usize] = Some(LoraPair {
                            rank,
                            d_in,
                            d_out,
                            a: rng.fill(rank * d_in, INIT_STD),
                            b: rng.fill(d_out * rank, INIT_STD),
                            scale: 1.0,
                        });
                    }
                    l
                })
                .collect();
            LoraAdapter { name: format!("synthetic-{i}"), layers }
        })
        .collect()
}

/// One timed run: clear the caches, prefill every row's prompt together (not timed), then
/// decode `steps` greedy tokens for all rows. Returns the decode seconds and each row's tokens.
fn run_batch(
    model: &LlamaModel,
    c: &mut Compute,
    kvs: &mut [KvCache],
    prompts: &[Vec<u32>],
    sets: &[Vec<(&LoraAdapter, f32)>],
    steps: usize,
) -> Result<(f64, Vec<Vec<u32>>)> {
    let len = prompts[0].len();
    let mut logits = Vec::new();
    kvs.iter_mut().for_each(KvCache::clear);
    for start in (0..len).step_by(PREFILL_CHUNK) {
        let end = (start + PREFILL_CHUNK).min(len);
        let mode = if end == len { LogitsMode::Last } else { LogitsMode::None };
        let mut seqs: Vec<SeqBatch<'_>> = kvs
            .iter_mut()
            .zip(prompts)
            .zip(sets)
            .map(|((kv, p), set)| SeqBatch { tokens: &p[start..end], kv, adapters: set, logits: mode })
            .collect();
        logits = model.forward(c, &mut seqs)?;
    }
    let rows = kvs
        .iter_mut()
        .zip(sets)
        .zip(logits)
        .map(|((kv, set), logits)| DecodeRow { kv, adapters: set, logits })
        .collect();
    greedy_decode(model, c, rows, steps)
}

/// `bench --mixed n`.
pub(crate) fn bench_mixed(a: &BenchArgs, n: usize) -> Result<()> {
    if n == 0 {
        return Err(Error::invalid("mixed", "must be > 0 (the number of rows, one adapter each)"));
    }
    if a.rank == 0 || a.runs == 0 || a.batch_prompt_tokens == 0 || a.batch_gen_tokens == 0 {
        return Err(Error::invalid("rank/runs/batch-prompt-tokens/batch-gen-tokens", "must be > 0"));
    }
    if !a.model.adapters.is_empty() {
        return Err(Error::invalid("adapter", "--mixed builds its own adapters; drop --adapter"));
    }
    let (p, g) = (a.batch_prompt_tokens, a.batch_gen_tokens);
    let mut s = Session::open(&a.model)?;
    // N caches: only as long as a run needs unless --ctx asks for more.
    let need = p + g + 1;
    s.ctx = a.model.ctx.unwrap_or(need).max(need);
    let model = &s.engine.loaded.model;
    let cfg = &model.config;
    let modules = target_modules(a.targets);
    let adapters = synthetic_adapters(cfg, n, a.rank, modules);
    let with: Vec<Vec<(&LoraAdapter, f32)>> = adapters.iter().map(|x| vec![(x, 1.0)]).collect();
    let without: Vec<Vec<(&LoraAdapter, f32)>> = vec![Vec::new(); n];
    let prompts: Vec<Vec<u32>> =
        (0..n).map(|i| bench_prompt(p, cfg.vocab_size, 0x9E37_79B9 + 7919 * i as u64)).collect();
    let mut kvs = (0..n).map(|_| s.kv()).collect::<crate::error::Result<Vec<KvCache>>>()?;
    let tokens = (n * g) as f64;
    let (mut base, mut mixed, mut paired) = (Vec::new(), Vec::new(), Vec::new());
    let mut rows_changed = 0;
    for run in 0..=a.runs {
        let (tb, base_toks) = run_batch(model, &mut s.compute, &mut kvs, &prompts, &without, g)?;
        let (tm, mixed_toks) = run_batch(model, &mut s.compute, &mut kvs, &prompts, &with, g)?;
        if run > 0 {
            base.push(tokens / tb);
            mixed.push(tokens / tm);
            paired.push(tb / tm);
        }
        rows_changed = base_toks.iter().zip(&mixed_toks).filter(|(x, y)| x != y).count();
    }
    let (bm, bmin, bmax) = stats(&base);
    let (mm, mmin, mmax) = stats(&mixed);
    let (pm, pmin, pmax) = stats(&paired);
    let ratio = mm / bm;
    let each = adapters[0].bytes();
    let per_step: usize = adapters.iter().map(LoraAdapter::bytes).sum();
    let targets: Vec<&str> = modules.iter().map(|m| m.hf_name()).collect();
    let threads = s.compute.pool.n_threads();
    let isa = s.compute.kernels.isa;
    if a.json {
        let j = serde_json::json!({
            "mode": "mixed",
            "model": a.model.model.display().to_string(),
            "cpu": cpu_name(), "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "threads": threads, "isa": isa,
            "rows": n, "rank": a.rank, "targets": targets,
            "prompt_tokens": p, "gen_tokens": g, "runs": a.runs,
            "base_tok_s": {"median": bm, "min": bmin, "max": bmax},
            "mixed_tok_s": {"median": mm, "min": mmin, "max": mmax},
            "ratio": ratio,
            "ratio_paired": {"median": pm, "min": pmin, "max": pmax},
            "weight_bytes": model.weight_bytes(),
            "adapter_bytes_each": each,
            "adapter_bytes_per_step": per_step,
            "rows_changed": rows_changed,
        });
        println!("{j}");
    } else {
        println!("model    {}", a.model.model.display());
        println!("machine  {} · {} threads · {isa}", cpu_name(), threads);
        println!(
            "batch    {n} rows × ({p} prompt + {g} decode) tokens; {n} adapters, rank {}, {} ({:.1} MB each, \
             {:.1} MB read per step; base weights {:.1} MB)",
            a.rank,
            targets.join(","),
            each as f64 / 1e6,
            per_step as f64 / 1e6,
            model.weight_bytes() as f64 / 1e6
        );
        println!("base     {bm:>8.1} tok/s  (min {bmin:.1}, max {bmax:.1}; {} runs)", a.runs);
        println!("mixed    {mm:>8.1} tok/s  (min {mmin:.1}, max {mmax:.1}; {} runs)", a.runs);
        println!("ratio    {ratio:>8.3}        (mixed / base; per pair median {pm:.3}, min {pmin:.3}, max {pmax:.3})");
        println!("rows whose greedy tokens the adapters changed: {rows_changed} of {n}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_values_are_deterministic_distinct_and_scaled() {
        let mut r = SplitMix(7);
        let v = r.fill(100_000, INIT_STD);
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        let std = (v.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / v.len() as f32).sqrt();
        assert!(mean.abs() < 1e-3 && (std - INIT_STD).abs() < 1e-3, "mean {mean}, std {std}");
        assert_eq!(SplitMix(7).fill(8, INIT_STD), v[..8]);
        assert_ne!(SplitMix(8).fill(8, INIT_STD), v[..8]);
    }
}
