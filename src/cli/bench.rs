//! `bench`: prefill and decode tokens/s, median/min/max over several runs after a warm-up.
//! With `--mixed N`, the decode throughput of a batch of N rows, each with its own adapter,
//! against the same batch without adapters ([`super::bench_mixed`]).

use std::time::Instant;

use super::commands::Session;
use super::BenchArgs;
use crate::error::{Error, Result};
use crate::kv::KvCache;
use crate::lora::LoraAdapter;
use crate::model::{Compute, LlamaModel, LogitsMode, SeqBatch};

/// Median, min and max of a sample.
pub(crate) fn stats(xs: &[f64]) -> (f64, f64, f64) {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let med = if v.len() % 2 == 1 { v[v.len() / 2] } else { (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0 };
    (med, v[0], v[v.len() - 1])
}

/// CPU model name from /proc/cpuinfo, if readable.
pub(crate) fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Index of the largest value (the first one on ties).
pub(crate) fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// `n` fixed pseudo-random token ids below `min(vocab, 32000)` from `seed` (xorshift): the
/// same for every run and engine build.
pub(crate) fn bench_prompt(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut x = seed.max(1);
    let limit = vocab.min(32000) as u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % limit) as u32
        })
        .collect()
}

/// One sequence of a timed greedy decode: its prefilled KV cache, its adapters and the
/// logits of its last position.
pub(crate) struct DecodeRow<'a> {
    /// The sequence's cache, holding its prompt.
    pub kv: &'a mut KvCache,
    /// The sequence's weighted adapters.
    pub adapters: &'a [(&'a LoraAdapter, f32)],
    /// Logits of the last position so far.
    pub logits: Vec<f32>,
}

/// Decode `steps` greedy tokens for all `rows` together: each step is one
/// [`LlamaModel::forward`] over every row with [`LogitsMode::Last`]. Returns the seconds the
/// steps took and, per row, the tokens fed in.
pub(crate) fn greedy_decode(
    model: &LlamaModel,
    c: &mut Compute,
    mut rows: Vec<DecodeRow<'_>>,
    steps: usize,
) -> Result<(f64, Vec<Vec<u32>>)> {
    let mut chosen: Vec<Vec<u32>> = rows.iter().map(|_| Vec::with_capacity(steps)).collect();
    let t0 = Instant::now();
    for _ in 0..steps {
        let toks: Vec<u32> = rows.iter().map(|r| argmax(&r.logits)).collect();
        let mut seqs: Vec<SeqBatch<'_>> = rows
            .iter_mut()
            .zip(&toks)
            .map(|(r, t)| SeqBatch {
                tokens: std::slice::from_ref(t),
                kv: &mut *r.kv,
                adapters: r.adapters,
                logits: LogitsMode::Last,
            })
            .collect();
        let out = model.forward(c, &mut seqs)?;
        for ((r, l), (ch, t)) in rows.iter_mut().zip(out).zip(chosen.iter_mut().zip(&toks)) {
            r.logits = l;
            ch.push(*t);
        }
    }
    Ok((t0.elapsed().as_secs_f64(), chosen))
}

/// `bench`: the single-sequence measurement, or the mixed-batch one with `--mixed`.
pub(crate) fn bench(a: &BenchArgs) -> Result<()> {
    if let Some(n) = a.mixed {
        return super::bench_mixed::bench_mixed(a, n);
    }
    if a.runs == 0 || a.prompt_tokens == 0 {
        return Err(Error::invalid("runs/prompt-tokens", "must be > 0"));
    }
    let mut s = Session::open(&a.model)?;
    let need = a.prompt_tokens + a.gen_tokens + 1;
    s.ctx = s.ctx.max(need);
    let model = &s.engine.loaded.model;
    let vocab = model.config.vocab_size;
    // A fixed pseudo-random prompt (the same for every run and engine build).
    let prompt = bench_prompt(a.prompt_tokens, vocab, 0x9E37_79B9);
    let adapters = std::mem::take(&mut s.adapters);
    let refs: Vec<(&LoraAdapter, f32)> = adapters.iter().map(|(x, w)| (x, *w)).collect();
    let mut kv = s.kv()?;
    let (mut pp, mut tg) = (Vec::new(), Vec::new());
    for run in 0..=a.runs {
        kv.clear();
        let t0 = Instant::now();
        let logits = crate::generate::prefill(model, &mut s.compute, &mut kv, &prompt, &refs)?;
        let prefill_s = t0.elapsed().as_secs_f64();
        let rows = vec![DecodeRow { kv: &mut kv, adapters: &refs, logits }];
        let (decode_s, _) = greedy_decode(model, &mut s.compute, rows, a.gen_tokens)?;
        if run > 0 {
            pp.push(a.prompt_tokens as f64 / prefill_s);
            if a.gen_tokens > 0 {
                tg.push(a.gen_tokens as f64 / decode_s);
            }
        }
    }
    let (pm, pmin, pmax) = stats(&pp);
    let (dm, dmin, dmax) = if tg.is_empty() { (0.0, 0.0, 0.0) } else { stats(&tg) };
    let threads = s.compute.pool.n_threads();
    let isa = s.compute.kernels.isa;
    if a.json {
        let j = serde_json::json!({
            "model": a.model.model.display().to_string(),
            "adapters": a.model.adapters,
            "cpu": cpu_name(), "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "threads": threads, "isa": isa,
            "prompt_tokens": a.prompt_tokens, "gen_tokens": a.gen_tokens, "runs": a.runs,
            "prefill_tok_s": {"median": pm, "min": pmin, "max": pmax},
            "decode_tok_s": {"median": dm, "min": dmin, "max": dmax},
            "weight_bytes": model.weight_bytes(),
        });
        println!("{j}");
    } else {
        println!("model    {}  ({} adapters)", a.model.model.display(), refs.len());
        println!("machine  {} · {} threads · {isa}", cpu_name(), threads);
        println!(
            "prefill  {:>8.1} tok/s  (min {pmin:.1}, max {pmax:.1}; {} tokens, {} runs)",
            pm, a.prompt_tokens, a.runs
        );
        println!(
            "decode   {:>8.1} tok/s  (min {dmin:.1}, max {dmax:.1}; {} tokens, {} runs)",
            dm, a.gen_tokens, a.runs
        );
    }
    Ok(())
}
