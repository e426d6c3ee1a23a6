//! `bench`: prefill and decode tokens/s, median/min/max over several runs after a warm-up.

use std::time::Instant;

use super::commands::Session;
use super::BenchArgs;
use crate::error::{Error, Result};
use crate::lora::LoraAdapter;
use crate::model::{LogitsMode, SeqBatch};

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

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best as u32
}

pub(crate) fn bench(a: &BenchArgs) -> Result<()> {
    if a.runs == 0 || a.prompt_tokens == 0 {
        return Err(Error::invalid("runs/prompt-tokens", "must be > 0"));
    }
    let mut s = Session::open(&a.model)?;
    let need = a.prompt_tokens + a.gen_tokens + 1;
    s.ctx = s.ctx.max(need);
    let model = &s.engine.loaded.model;
    let vocab = model.config.vocab_size as u64;
    // A fixed pseudo-random prompt (the same for every run and engine build).
    let mut x = 0x9E37_79B9u64;
    let prompt: Vec<u32> = (0..a.prompt_tokens)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % vocab.min(32000)) as u32
        })
        .collect();
    let adapters = std::mem::take(&mut s.adapters);
    let refs: Vec<(&LoraAdapter, f32)> = adapters.iter().map(|(x, w)| (x, *w)).collect();
    let mut kv = s.kv();
    let (mut pp, mut tg) = (Vec::new(), Vec::new());
    for run in 0..=a.runs {
        kv.clear();
        let t0 = Instant::now();
        let mut logits = crate::generate::prefill(model, &mut s.compute, &mut kv, &prompt, &refs)?;
        let prefill_s = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        for _ in 0..a.gen_tokens {
            let tok = argmax(&logits);
            let mut seqs = [SeqBatch {
                tokens: std::slice::from_ref(&tok),
                kv: &mut kv,
                adapters: &refs,
                logits: LogitsMode::Last,
            }];
            logits = model.forward(&mut s.compute, &mut seqs)?.pop().unwrap_or_default();
        }
        let decode_s = t1.elapsed().as_secs_f64();
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
