//! `generate` and `logits`.

use std::io::Write;
use std::path::PathBuf;

use super::batch::Batch;
use super::{parse_adapter_spec, parse_ids, GenerateArgs, LogitsArgs, ModelArgs};
use crate::chat::{ChatMessage, ChatTemplate};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::generate::{generate as run_generate, generate_batch, BatchRow, GenerateParams, PREFILL_CHUNK};
use crate::kv::{KvCache, KvType};
use crate::lora::{load_adapter, LoraAdapter};
use crate::memory::{Category, Ledger, Reservation};
use crate::model::{Compute, LoadOptions, LogitsMode, SeqBatch};
use crate::sampling::SamplingParams;
use crate::tensor::DType;

/// A model, its adapters and compute state, set up from [`ModelArgs`].
pub(crate) struct Session {
    pub engine: Engine,
    pub adapters: Vec<(LoraAdapter, f32)>,
    pub compute: Compute,
    pub ctx: usize,
    pub kv_type: KvType,
    /// The red line, when `--budget` is given: weights and adapters are reserved on it at
    /// open, each KV cache when made.
    pub ledger: Option<Ledger>,
    _held: Vec<Reservation>,
}

/// Parse `123`, `64K`, `512M`, `2G` (powers of 1024).
pub(crate) fn parse_bytes(s: &str) -> Result<u64> {
    let t = s.trim();
    let (num, mult) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M') => (&t[..t.len() - 1], 1 << 20),
        Some('G') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| Error::invalid("budget", format!("'{s}' is not a byte count (e.g. 512M, 2G)")))
}

impl Session {
    pub fn open(a: &ModelArgs) -> Result<Session> {
        let quant = a.quant.as_deref().map(DType::parse).transpose()?;
        let engine = Engine::load(&a.model, &LoadOptions { quant })?;
        let cfg = &engine.loaded.model.config;
        let mut adapters = Vec::new();
        let mut seen: Vec<PathBuf> = Vec::new();
        for spec in &a.adapters {
            let (path, weight) = parse_adapter_spec(spec)?;
            let canon = std::fs::canonicalize(&path).map_err(|e| Error::io(&path, e))?;
            if seen.contains(&canon) {
                return Err(Error::invalid("adapter", format!("{} is named twice", path.display())));
            }
            seen.push(canon);
            adapters.push((load_adapter(&path, cfg)?, weight));
        }
        let ctx = a.ctx.unwrap_or(cfg.max_position_embeddings.min(4096));
        if ctx == 0 {
            return Err(Error::invalid("ctx", "must be > 0"));
        }
        let kv_type = KvType::parse(&a.kv)?;
        let mut held = Vec::new();
        let ledger = match &a.budget {
            None => None,
            Some(b) => {
                let ledger = Ledger::new("cpu", parse_bytes(b)?);
                let weights = engine.loaded.model.weight_bytes() as u64;
                held.push(ledger.try_reserve(Category::BaseWeights, weights)?);
                let adapter_bytes: u64 = adapters.iter().map(|(x, _)| x.bytes() as u64).sum();
                held.push(ledger.try_reserve(Category::Adapters, adapter_bytes)?);
                Some(ledger)
            }
        };
        Ok(Session { engine, adapters, compute: Compute::new(a.threads), ctx, kv_type, ledger, _held: held })
    }

    pub fn kv(&self) -> Result<KvCache> {
        let cfg = &self.engine.loaded.model.config;
        match &self.ledger {
            Some(l) => KvCache::reserved(cfg, self.ctx, self.kv_type, l),
            None => Ok(KvCache::with_type(cfg, self.ctx, self.kv_type)),
        }
    }
}

/// The prompt token ids from `--prompt-ids`, `--prompt` or `--chat`.
fn prompt_ids(s: &Session, a: &GenerateArgs) -> Result<Vec<u32>> {
    if let Some(ids) = &a.prompt_ids {
        if a.chat {
            return Err(Error::invalid("chat", "--chat needs --prompt text, not --prompt-ids"));
        }
        return parse_ids(ids);
    }
    let text = a
        .prompt
        .as_deref()
        .ok_or_else(|| Error::invalid("prompt", "give --prompt TEXT or --prompt-ids IDS"))?;
    let tok = s.engine.require_tokenizer()?;
    if a.chat {
        let src = tok.chat_template().ok_or_else(|| {
            Error::tokenizer(format!("{} has no chat template; drop --chat", s.engine.loaded.path.display()))
        })?;
        let tpl = ChatTemplate::new(src, tok.bos_token(), tok.eos_token())?;
        let mut msgs = Vec::new();
        if let Some(sys) = &a.system {
            msgs.push(ChatMessage { role: "system".into(), content: sys.clone() });
        }
        msgs.push(ChatMessage { role: "user".into(), content: text.to_string() });
        let rendered = tpl.render(&msgs, true)?;
        // The template writes any BOS itself.
        tok.encode(&rendered, false)
    } else {
        tok.encode(text, true)
    }
}

pub(crate) fn generate(a: &GenerateArgs) -> Result<()> {
    let mut s = Session::open(&a.model)?;
    let params = GenerateParams {
        max_tokens: a.max_tokens,
        sampling: SamplingParams {
            temperature: a.temperature,
            top_k: a.top_k,
            top_p: a.top_p,
            repetition_penalty: a.repeat_penalty,
            seed: a.seed,
            ..SamplingParams::default()
        },
        stop: a.stop.clone(),
        ignore_eos: a.ignore_eos,
    };
    if let Some(path) = &a.batch {
        if !a.model.adapters.is_empty() {
            return Err(Error::invalid(
                "adapter",
                "with --batch, adapters are given per row in the batch file",
            ));
        }
        return generate_batch_file(&mut s, path, &params);
    }
    let prompt = prompt_ids(&s, a)?;
    let mut kv = s.kv()?;
    let adapters: Vec<(LoraAdapter, f32)> = std::mem::take(&mut s.adapters);
    let refs: Vec<(&LoraAdapter, f32)> = adapters.iter().map(|(x, w)| (x, *w)).collect();
    let stream = !a.json;
    let mut stdout = std::io::stdout();
    let mut on_text = |piece: &str| {
        if stream {
            let _ = stdout.write_all(piece.as_bytes());
            let _ = stdout.flush();
        }
    };
    let model = &s.engine.loaded.model;
    let tok = s.engine.tokenizer.as_ref();
    let out = run_generate(model, &mut s.compute, tok, &mut kv, &prompt, &refs, &params, &mut on_text)?;
    if a.json {
        let j = serde_json::json!({
            "token_ids": out.token_ids,
            "text": out.text,
            "prompt_tokens": out.prompt_tokens,
            "generated_tokens": out.token_ids.len(),
            "finish_reason": out.finish.as_str(),
            "prefill_ms": out.prefill_ms,
            "decode_ms": out.decode_ms,
            "decode_tokens_per_s": out.decode_tokens_per_s(),
            "kv_bytes_per_token": kv.bytes_per_position(),
        });
        let mut j = j;
        if let Some(l) = &s.ledger {
            let st = l.stats();
            j["budget_bytes"] = st.budget_bytes.into();
            j["high_water_bytes"] = st.high_water_bytes.into();
        }
        println!("{j}");
    } else {
        println!();
        eprintln!(
            "[{} prompt tokens, prefill {:.1} ms; {} tokens at {:.1} tok/s; {}]",
            out.prompt_tokens,
            out.prefill_ms,
            out.token_ids.len(),
            out.decode_tokens_per_s(),
            out.finish.as_str()
        );
    }
    Ok(())
}

/// `generate --batch`: all rows decoded together, one JSON object per row on stdout.
fn generate_batch_file(s: &mut Session, path: &std::path::Path, params: &GenerateParams) -> Result<()> {
    let batch = Batch::read(path, &s.engine.loaded.model.config)?;
    let tok = s.engine.tokenizer.as_ref();
    let mut rows = Vec::new();
    for i in 0..batch.specs.len() {
        let max_tokens = batch.specs[i].max_tokens.unwrap_or(params.max_tokens);
        rows.push(BatchRow { prompt: batch.prompt(i, tok)?, adapters: batch.adapter_set(i), max_tokens });
    }
    let kvs = rows.iter().map(|_| s.kv()).collect::<Result<Vec<KvCache>>>()?;
    let model = &s.engine.loaded.model;
    let outs = generate_batch(model, &mut s.compute, tok, kvs, &rows, params, &mut |_, _| {})?;
    for (i, o) in outs.iter().enumerate() {
        let j = serde_json::json!({
            "row": i,
            "token_ids": o.token_ids,
            "text": o.text,
            "prompt_tokens": o.prompt_tokens,
            "finish_reason": o.finish.as_str(),
        });
        println!("{j}");
    }
    Ok(())
}

/// `logits --batch`: every row's logits from one batched forward pass per chunk.
fn logits_batch_file(s: &mut Session, path: &std::path::Path, out: &std::path::Path) -> Result<()> {
    let batch = Batch::read(path, &s.engine.loaded.model.config)?;
    let tok = s.engine.tokenizer.as_ref();
    let prompts = (0..batch.specs.len()).map(|i| batch.prompt(i, tok)).collect::<Result<Vec<_>>>()?;
    let sets: Vec<Vec<(&LoraAdapter, f32)>> = (0..batch.specs.len()).map(|i| batch.adapter_set(i)).collect();
    let mut kvs = prompts.iter().map(|_| s.kv()).collect::<Result<Vec<KvCache>>>()?;
    for (i, (p, kv)) in prompts.iter().zip(&kvs).enumerate() {
        if p.is_empty() {
            return Err(Error::invalid("batch", format!("row {i} has no prompt tokens")));
        }
        kv.check_room(p.len())?;
    }
    let model = &s.engine.loaded.model;
    let vocab = model.config.vocab_size;
    let mut all: Vec<Vec<f32>> = prompts.iter().map(|p| Vec::with_capacity(p.len() * vocab)).collect();
    let longest = prompts.iter().map(|p| p.len()).max().unwrap_or(0);
    for start in (0..longest).step_by(PREFILL_CHUNK) {
        let mut seqs = Vec::new();
        let mut which = Vec::new();
        for (i, (p, kv)) in prompts.iter().zip(kvs.iter_mut()).enumerate() {
            if start < p.len() {
                let end = (start + PREFILL_CHUNK).min(p.len());
                seqs.push(SeqBatch {
                    tokens: &p[start..end],
                    kv,
                    adapters: &sets[i],
                    logits: LogitsMode::All,
                });
                which.push(i);
            }
        }
        for (i, l) in which.into_iter().zip(model.forward(&mut s.compute, &mut seqs)?) {
            all[i].extend(l);
        }
    }
    let names: Vec<String> = (0..prompts.len()).map(|i| format!("logits.{i}")).collect();
    let tensors: Vec<(&str, Vec<usize>, &[f32])> = names
        .iter()
        .zip(&prompts)
        .zip(&all)
        .map(|((n, p), l)| (n.as_str(), vec![p.len(), vocab], l.as_slice()))
        .collect();
    write_f32_safetensors(out, &tensors)
}

pub(crate) fn logits(a: &LogitsArgs) -> Result<()> {
    let mut s = Session::open(&a.model)?;
    if let Some(path) = &a.batch {
        if !a.model.adapters.is_empty() {
            return Err(Error::invalid(
                "adapter",
                "with --batch, adapters are given per row in the batch file",
            ));
        }
        return logits_batch_file(&mut s, path, &a.out);
    }
    let ids = parse_ids(a.prompt_ids.as_deref().unwrap_or_default())?;
    if ids.is_empty() {
        return Err(Error::invalid("prompt-ids", "no token ids given"));
    }
    let mut kv = s.kv()?;
    kv.check_room(ids.len())?;
    let adapters = std::mem::take(&mut s.adapters);
    let refs: Vec<(&LoraAdapter, f32)> = adapters.iter().map(|(x, w)| (x, *w)).collect();
    let model = &s.engine.loaded.model;
    let vocab = model.config.vocab_size;
    let mut all = Vec::with_capacity(ids.len() * vocab);
    for chunk in ids.chunks(PREFILL_CHUNK) {
        let mut seqs = [SeqBatch { tokens: chunk, kv: &mut kv, adapters: &refs, logits: LogitsMode::All }];
        all.extend(model.forward(&mut s.compute, &mut seqs)?.pop().unwrap_or_default());
    }
    write_f32_safetensors(&a.out, &[("logits", vec![ids.len(), vocab], &all)])
}

/// Write f32 tensors to a safetensors file.
pub(crate) fn write_f32_safetensors(
    path: &std::path::Path,
    tensors: &[(&str, Vec<usize>, &[f32])],
) -> Result<()> {
    let bytes: Vec<Vec<u8>> =
        tensors.iter().map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect()).collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), b)
                .map(|v| (name.to_string(), v))
                .map_err(|e| Error::invalid("logits", e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize_to_file(views, None, path)
        .map_err(|e| Error::io(path, std::io::Error::other(e.to_string())))
}
