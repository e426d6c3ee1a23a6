//! The generation loop of one sequence: chunked prefill, then decode token by token with
//! sampling, stopping on end-of-generation tokens, stop strings or the token limit, and
//! streaming text as it becomes complete UTF-8.

use std::time::Instant;

use crate::error::{Error, Result};
use crate::kv::KvCache;
use crate::lora::LoraAdapter;
use crate::model::{Compute, LlamaModel, LogitsMode, SeqBatch};
use crate::sampling::{Sampler, SamplingParams, StopStrings};
use crate::tokenizer::Tokenizer;

/// Tokens per prefill chunk: bounds scratch memory for long prompts.
pub const PREFILL_CHUNK: usize = 256;

/// What a generation asks for.
#[derive(Debug, Clone)]
pub struct GenerateParams {
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Token selection.
    pub sampling: SamplingParams,
    /// Strings that end generation (not included in the text).
    pub stop: Vec<String>,
    /// Keep going past end-of-generation tokens.
    pub ignore_eos: bool,
}

impl Default for GenerateParams {
    fn default() -> Self {
        GenerateParams {
            max_tokens: 128,
            sampling: SamplingParams::default(),
            stop: Vec::new(),
            ignore_eos: false,
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// `max_tokens` reached.
    Length,
    /// An end-of-generation token was sampled.
    Eos,
    /// A stop string appeared.
    Stop,
}

impl FinishReason {
    /// Lower-case name (`length`, `eos`, `stop`).
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Length => "length",
            FinishReason::Eos => "eos",
            FinishReason::Stop => "stop",
        }
    }
}

/// The result of a generation.
#[derive(Debug, Clone)]
pub struct GenerateOutput {
    /// Generated token ids (the end-of-generation token, if any, excluded).
    pub token_ids: Vec<u32>,
    /// Generated text (empty without a tokenizer).
    pub text: String,
    /// Prompt length in tokens.
    pub prompt_tokens: usize,
    /// Wall time of the prefill.
    pub prefill_ms: f64,
    /// Wall time of the decode steps.
    pub decode_ms: f64,
    /// Decode steps run (tokens sampled after the first).
    pub decode_steps: usize,
    /// Why it ended.
    pub finish: FinishReason,
}

impl GenerateOutput {
    /// Decode speed in tokens per second.
    pub fn decode_tokens_per_s(&self) -> f64 {
        if self.decode_ms > 0.0 {
            self.decode_steps as f64 * 1000.0 / self.decode_ms
        } else {
            0.0
        }
    }
}

/// Prefill `prompt` into `kv` in chunks and return the last position's logits.
pub fn prefill(
    model: &LlamaModel,
    c: &mut Compute,
    kv: &mut KvCache,
    prompt: &[u32],
    adapters: &[(&LoraAdapter, f32)],
) -> Result<Vec<f32>> {
    if prompt.is_empty() {
        return Err(Error::invalid("prompt", "the prompt has no tokens"));
    }
    kv.check_room(prompt.len())?;
    let mut last = Vec::new();
    let n_chunks = prompt.len().div_ceil(PREFILL_CHUNK);
    for (i, chunk) in prompt.chunks(PREFILL_CHUNK).enumerate() {
        let mode = if i + 1 == n_chunks { LogitsMode::Last } else { LogitsMode::None };
        let mut seqs = [SeqBatch { tokens: chunk, kv: &mut *kv, adapters, logits: mode }];
        last = model.forward(c, &mut seqs)?.pop().unwrap_or_default();
    }
    Ok(last)
}

/// Generate from `prompt`, calling `on_text` with each complete piece of text as it appears.
#[allow(clippy::too_many_arguments)]
pub fn generate(
    model: &LlamaModel,
    c: &mut Compute,
    tokenizer: Option<&Tokenizer>,
    kv: &mut KvCache,
    prompt: &[u32],
    adapters: &[(&LoraAdapter, f32)],
    params: &GenerateParams,
    on_text: &mut dyn FnMut(&str),
) -> Result<GenerateOutput> {
    params.sampling.validate()?;
    let room = kv.capacity().saturating_sub(kv.len() + prompt.len());
    let max_tokens = params.max_tokens.min(room);
    let t0 = Instant::now();
    let mut logits = prefill(model, c, kv, prompt, adapters)?;
    let prefill_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let mut sampler = Sampler::new(params.sampling.clone());
    let mut stops = StopStrings::new(params.stop.clone());
    let mut decoder = tokenizer.map(|t| t.stream_decoder());
    let mut recent: Vec<u32> = prompt.to_vec();
    let mut out = Vec::new();
    let mut text = String::new();
    let mut finish = FinishReason::Length;
    let mut emit = |piece: &str, text: &mut String, stops: &mut StopStrings| -> bool {
        let o = stops.push(piece);
        if !o.emit.is_empty() {
            on_text(&o.emit);
            text.push_str(&o.emit);
        }
        o.stopped
    };
    let t1 = Instant::now();
    let mut steps = 0;
    while out.len() < max_tokens {
        let tok = sampler.sample(&logits, &recent);
        if !params.ignore_eos && tokenizer.is_some_and(|t| t.is_eos(tok)) {
            finish = FinishReason::Eos;
            break;
        }
        out.push(tok);
        recent.push(tok);
        if let Some(d) = decoder.as_mut() {
            if let Some(piece) = d.push(tok)? {
                if emit(&piece, &mut text, &mut stops) {
                    finish = FinishReason::Stop;
                    break;
                }
            }
        }
        if out.len() == max_tokens {
            break;
        }
        let mut seqs = [SeqBatch {
            tokens: std::slice::from_ref(&tok),
            kv: &mut *kv,
            adapters,
            logits: LogitsMode::Last,
        }];
        logits = model.forward(c, &mut seqs)?.pop().unwrap_or_default();
        steps += 1;
    }
    let decode_ms = t1.elapsed().as_secs_f64() * 1000.0;
    if finish != FinishReason::Stop {
        if let Some(d) = decoder.as_mut() {
            if let Some(piece) = d.finish()? {
                if emit(&piece, &mut text, &mut stops) {
                    finish = FinishReason::Stop;
                }
            }
        }
        if finish != FinishReason::Stop {
            let rest = stops.finish();
            if !rest.is_empty() {
                on_text(&rest);
                text.push_str(&rest);
            }
        }
    }
    Ok(GenerateOutput {
        token_ids: out,
        text,
        prompt_tokens: prompt.len(),
        prefill_ms,
        decode_ms,
        decode_steps: steps,
        finish,
    })
}
