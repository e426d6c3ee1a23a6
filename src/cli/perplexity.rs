//! `perplexity`: mean negative log-likelihood of a text under the model, in non-overlapping
//! windows of `--ctx` tokens (each window starts with an empty cache; every position after the
//! first is scored). With `--compare-f32`, the same windows run again with an f32 KV cache
//! and the largest logit difference is reported: the drift a quantized cache causes.

use std::time::Instant;

use super::commands::Session;
use super::PerplexityArgs;
use crate::error::{Error, Result};
use crate::kv::{KvCache, KvType};
use crate::lora::LoraAdapter;
use crate::model::{LogitsMode, SeqBatch};

fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold(0, |b, (i, x)| if *x > v[b] { i } else { b })
}

/// Negative log-likelihood of `next` under `logits` (log-softmax in f64).
fn nll(logits: &[f32], next: u32) -> f64 {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v)) as f64;
    let lse = logits.iter().map(|v| (*v as f64 - max).exp()).sum::<f64>().ln() + max;
    lse - logits[next as usize] as f64
}

pub(crate) fn perplexity(a: &PerplexityArgs) -> Result<()> {
    let mut s = Session::open(&a.model)?;
    let text = std::fs::read_to_string(&a.file).map_err(|e| Error::io(&a.file, e))?;
    let tok = s.engine.require_tokenizer()?;
    let mut ids = tok.encode(&text, false)?;
    if a.max_tokens > 0 {
        ids.truncate(a.max_tokens);
    }
    let window = s.ctx;
    if ids.len() < 2 || window < 2 {
        return Err(Error::invalid("file", "need at least 2 tokens and a window (--ctx) of at least 2"));
    }
    let adapters = std::mem::take(&mut s.adapters);
    let refs: Vec<(&LoraAdapter, f32)> = adapters.iter().map(|(x, w)| (x, *w)).collect();
    let model = &s.engine.loaded.model;
    let vocab = model.config.vocab_size;
    let kinds = if a.compare_f32 && s.kv_type != KvType::F32 {
        vec![s.kv_type, KvType::F32]
    } else {
        vec![s.kv_type]
    };
    let mut total_nll = 0.0f64;
    let mut scored = 0usize;
    let mut drift = 0.0f32;
    let (mut drift_sum, mut drift_n, mut top1_same, mut top1_n) = (0.0f64, 0usize, 0usize, 0usize);
    let t0 = Instant::now();
    for chunk in ids.chunks(window) {
        if chunk.len() < 2 {
            continue;
        }
        let mut runs = Vec::new();
        for &kind in &kinds {
            let mut kv = KvCache::with_type(&model.config, chunk.len(), kind);
            let mut seqs =
                [SeqBatch { tokens: chunk, kv: &mut kv, adapters: &refs, logits: LogitsMode::All }];
            runs.push(model.forward(&mut s.compute, &mut seqs)?.pop().unwrap_or_default());
        }
        for (i, next) in chunk.iter().enumerate().skip(1) {
            total_nll += nll(&runs[0][(i - 1) * vocab..i * vocab], *next);
            scored += 1;
        }
        if let Some(reference) = runs.get(1) {
            for (x, y) in runs[0].iter().zip(reference) {
                let d = (x - y).abs();
                drift = drift.max(d);
                drift_sum += d as f64;
            }
            drift_n += reference.len();
            for (row, ref_row) in runs[0].chunks_exact(vocab).zip(reference.chunks_exact(vocab)) {
                top1_same += (argmax(row) == argmax(ref_row)) as usize;
                top1_n += 1;
            }
        }
    }
    let ppl = (total_nll / scored as f64).exp();
    let secs = t0.elapsed().as_secs_f64();
    let kv = KvCache::with_type(&model.config, 1, s.kv_type);
    if a.json {
        let j = serde_json::json!({
            "file": a.file.display().to_string(), "kv": format!("{:?}", s.kv_type).to_lowercase(),
            "window": window, "tokens_scored": scored, "perplexity": ppl,
            "max_logit_drift_vs_f32": if kinds.len() > 1 { Some(drift) } else { None },
            "mean_abs_logit_drift_vs_f32": if kinds.len() > 1 { Some(drift_sum / drift_n as f64) } else { None },
            "top1_agreement_vs_f32": if kinds.len() > 1 { Some(top1_same as f64 / top1_n as f64) } else { None },
            "kv_bytes_per_token": kv.bytes_per_position(), "seconds": secs,
        });
        println!("{j}");
    } else {
        println!(
            "perplexity {ppl:.4} over {scored} tokens (window {window}, kv {:?}, {} bytes/token)",
            s.kv_type,
            kv.bytes_per_position()
        );
        if kinds.len() > 1 {
            println!(
                "logit drift vs f32 KV: max {drift:.4}, mean {:.5}; top-1 agreement {:.2}%",
                drift_sum / drift_n as f64,
                100.0 * top1_same as f64 / top1_n as f64
            );
        }
    }
    Ok(())
}
