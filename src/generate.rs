//! The generation loop of one sequence: chunked prefill, then decode token by token with
//! sampling, stopping on end-of-generation tokens, stop strings or the token limit, and
//! streaming text as it becomes complete UTF-8.

use crate::batcher::{Batcher, Event, Request};
use crate::error::{Error, Result};
use crate::kv::KvCache;
use crate::lora::LoraAdapter;
use crate::model::{Compute, LlamaModel, LogitsMode, SeqBatch};
use crate::sampling::SamplingParams;
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
    /// The request was cancelled.
    Cancelled,
}

impl FinishReason {
    /// Lower-case name (`length`, `eos`, `stop`).
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Length => "length",
            FinishReason::Eos => "eos",
            FinishReason::Stop => "stop",
            FinishReason::Cancelled => "cancelled",
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

/// One row of a batched generation.
pub struct BatchRow<'a> {
    /// Prompt token ids.
    pub prompt: Vec<u32>,
    /// Adapters of this row, with weights.
    pub adapters: Vec<(&'a LoraAdapter, f32)>,
    /// Most tokens to generate for this row.
    pub max_tokens: usize,
}

/// Generate for several rows at once with the [`Batcher`]: every step is one forward pass
/// over every unfinished row, each with its own prompt, KV cache (`kvs[i]`) and adapters.
/// `on_text(row, piece)` receives complete text as it appears. Outputs are in row order.
pub fn generate_batch(
    model: &LlamaModel,
    c: &mut Compute,
    tokenizer: Option<&Tokenizer>,
    kvs: Vec<KvCache>,
    rows: &[BatchRow<'_>],
    params: &GenerateParams,
    on_text: &mut dyn FnMut(usize, &str),
) -> Result<Vec<GenerateOutput>> {
    assert_eq!(kvs.len(), rows.len(), "one KV cache per row");
    let mut b = Batcher::new(model, tokenizer, rows.len());
    let mut index = std::collections::HashMap::new();
    for (i, (r, kv)) in rows.iter().zip(kvs).enumerate() {
        let p = GenerateParams { max_tokens: r.max_tokens, ..params.clone() };
        let id = b
            .admit(Request {
                prompt: r.prompt.clone(),
                adapters: r.adapters.clone(),
                params: p,
                kv,
                cached: 0,
            })
            .map_err(|e| match e {
                Error::InvalidArgument { name, reason } => Error::invalid(name, format!("row {i}: {reason}")),
                other => other,
            })?;
        index.insert(id, i);
    }
    let mut outs: Vec<Option<GenerateOutput>> = vec![None; rows.len()];
    while !b.is_empty() {
        b.step(c, &mut |ev| match ev {
            Event::Text { id, text } => on_text(index[&id], &text),
            Event::Done { id, output, .. } => outs[index[&id]] = Some(output),
        })?;
    }
    Ok(outs.into_iter().map(|o| o.expect("every admitted row ends exactly once")).collect())
}

/// Generate from `prompt`, calling `on_text` with each complete piece of text as it appears.
/// `kv` receives the prompt and the generated tokens.
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
    let mut b = Batcher::new(model, tokenizer, 1);
    let placeholder = KvCache::with_type(&model.config, 0, kv.kind());
    let own = std::mem::replace(kv, placeholder);
    let req = Request {
        prompt: prompt.to_vec(),
        adapters: adapters.to_vec(),
        params: params.clone(),
        kv: own,
        cached: 0,
    };
    let id = b.admit(req)?;
    let mut done = None;
    while !b.is_empty() {
        b.step(c, &mut |ev| match ev {
            Event::Text { text, .. } => on_text(&text),
            Event::Done { id: d, output, kv: back, .. } => {
                debug_assert_eq!(d, id);
                *kv = *back;
                done = Some(output);
            }
        })?;
    }
    Ok(done.expect("the row ends exactly once"))
}
