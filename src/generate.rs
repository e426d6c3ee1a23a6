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

/// One row of a batched generation.
pub struct BatchRow<'a> {
    /// Prompt token ids.
    pub prompt: Vec<u32>,
    /// Adapters of this row, with weights.
    pub adapters: Vec<(&'a LoraAdapter, f32)>,
    /// Most tokens to generate for this row.
    pub max_tokens: usize,
}

/// Per-row decoding state.
struct RowState<'t> {
    sampler: Sampler,
    stops: StopStrings,
    decoder: Option<crate::tokenizer::StreamDecoder<'t>>,
    recent: Vec<u32>,
    out: Vec<u32>,
    text: String,
    finish: Option<FinishReason>,
    max_tokens: usize,
    logits: Vec<f32>,
}

impl RowState<'_> {
    /// Pass a text piece through the stop strings; true when a stop string ended the row.
    fn emit(&mut self, row: usize, piece: &str, on_text: &mut dyn FnMut(usize, &str)) -> bool {
        let o = self.stops.push(piece);
        if !o.emit.is_empty() {
            on_text(row, &o.emit);
            self.text.push_str(&o.emit);
        }
        o.stopped
    }

    /// Sample the next token; returns it when the row goes on.
    fn step(
        &mut self,
        row: usize,
        tok: Option<&Tokenizer>,
        ignore_eos: bool,
        on_text: &mut dyn FnMut(usize, &str),
    ) -> Result<Option<u32>> {
        if self.out.len() >= self.max_tokens {
            self.finish = Some(FinishReason::Length);
            return Ok(None);
        }
        let t = self.sampler.sample(&self.logits, &self.recent);
        if !ignore_eos && tok.is_some_and(|k| k.is_eos(t)) {
            self.finish = Some(FinishReason::Eos);
            return Ok(None);
        }
        self.out.push(t);
        self.recent.push(t);
        if let Some(d) = self.decoder.as_mut() {
            if let Some(piece) = d.push(t)? {
                if self.emit(row, &piece, on_text) {
                    self.finish = Some(FinishReason::Stop);
                    return Ok(None);
                }
            }
        }
        if self.out.len() >= self.max_tokens {
            self.finish = Some(FinishReason::Length);
            return Ok(None);
        }
        Ok(Some(t))
    }

    /// Flush held-back text at the end of a row that did not stop on a stop string.
    fn flush(&mut self, row: usize, on_text: &mut dyn FnMut(usize, &str)) -> Result<()> {
        if self.finish == Some(FinishReason::Stop) {
            return Ok(());
        }
        if let Some(piece) = self.decoder.as_mut().map(|d| d.finish()).transpose()?.flatten() {
            if self.emit(row, &piece, on_text) {
                self.finish = Some(FinishReason::Stop);
                return Ok(());
            }
        }
        let rest = self.stops.finish();
        if !rest.is_empty() {
            on_text(row, &rest);
            self.text.push_str(&rest);
        }
        Ok(())
    }
}

/// Generate for several rows at once: one forward pass per step runs every unfinished row,
/// each with its own prompt, KV cache (`kvs[i]`) and adapters. `on_text(row, piece)` receives
/// complete text as it appears. Timings are those of the whole batch.
#[allow(clippy::too_many_arguments)]
pub fn generate_batch(
    model: &LlamaModel,
    c: &mut Compute,
    tokenizer: Option<&Tokenizer>,
    kvs: &mut [KvCache],
    rows: &[BatchRow<'_>],
    params: &GenerateParams,
    on_text: &mut dyn FnMut(usize, &str),
) -> Result<Vec<GenerateOutput>> {
    params.sampling.validate()?;
    assert_eq!(kvs.len(), rows.len(), "one KV cache per row");
    for (i, (r, kv)) in rows.iter().zip(kvs.iter()).enumerate() {
        if r.prompt.is_empty() {
            return Err(Error::invalid("prompt", format!("row {i} has no prompt tokens")));
        }
        kv.check_room(r.prompt.len())?;
    }
    let mut st: Vec<RowState<'_>> = rows
        .iter()
        .zip(kvs.iter())
        .map(|(r, kv)| RowState {
            sampler: Sampler::new(params.sampling.clone()),
            stops: StopStrings::new(params.stop.clone()),
            decoder: tokenizer.map(|t| t.stream_decoder()),
            recent: r.prompt.clone(),
            out: Vec::new(),
            text: String::new(),
            finish: None,
            max_tokens: r.max_tokens.min(kv.capacity().saturating_sub(kv.len() + r.prompt.len())),
            logits: Vec::new(),
        })
        .collect();
    // Prefill, chunk by chunk, all rows together.
    let t0 = Instant::now();
    let longest = rows.iter().map(|r| r.prompt.len()).max().unwrap_or(0);
    for start in (0..longest).step_by(PREFILL_CHUNK) {
        let mut batch = Vec::new();
        let mut which = Vec::new();
        for (i, (r, kv)) in rows.iter().zip(kvs.iter_mut()).enumerate() {
            if start >= r.prompt.len() {
                continue;
            }
            let end = (start + PREFILL_CHUNK).min(r.prompt.len());
            let mode = if end == r.prompt.len() { LogitsMode::Last } else { LogitsMode::None };
            batch.push(SeqBatch { tokens: &r.prompt[start..end], kv, adapters: &r.adapters, logits: mode });
            which.push((i, mode));
        }
        for ((i, mode), logits) in which.into_iter().zip(model.forward(c, &mut batch)?) {
            if mode == LogitsMode::Last {
                st[i].logits = logits;
            }
        }
    }
    let prefill_ms = t0.elapsed().as_secs_f64() * 1000.0;
    // Decode: sample every live row, then one forward pass for those that go on.
    let t1 = Instant::now();
    let mut steps = 0;
    let mut next: Vec<Option<u32>> = vec![None; rows.len()];
    loop {
        for (i, s) in st.iter_mut().enumerate() {
            next[i] =
                if s.finish.is_none() { s.step(i, tokenizer, params.ignore_eos, on_text)? } else { None };
        }
        let mut batch = Vec::new();
        let mut which = Vec::new();
        for (i, (kv, r)) in kvs.iter_mut().zip(rows).enumerate() {
            if let Some(t) = &next[i] {
                batch.push(SeqBatch {
                    tokens: std::slice::from_ref(t),
                    kv,
                    adapters: &r.adapters,
                    logits: LogitsMode::Last,
                });
                which.push(i);
            }
        }
        if batch.is_empty() {
            break;
        }
        for (i, logits) in which.into_iter().zip(model.forward(c, &mut batch)?) {
            st[i].logits = logits;
        }
        steps += 1;
    }
    let decode_ms = t1.elapsed().as_secs_f64() * 1000.0;
    let mut outs = Vec::with_capacity(rows.len());
    for (i, (mut s, r)) in st.into_iter().zip(rows).enumerate() {
        s.flush(i, on_text)?;
        outs.push(GenerateOutput {
            token_ids: s.out,
            text: s.text,
            prompt_tokens: r.prompt.len(),
            prefill_ms,
            decode_ms,
            decode_steps: steps,
            finish: s.finish.unwrap_or(FinishReason::Length),
        });
    }
    Ok(outs)
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
    let row =
        BatchRow { prompt: prompt.to_vec(), adapters: adapters.to_vec(), max_tokens: params.max_tokens };
    let mut out = generate_batch(
        model,
        c,
        tokenizer,
        std::slice::from_mut(kv),
        std::slice::from_ref(&row),
        params,
        &mut |_, t| on_text(t),
    )?;
    Ok(out.pop().expect("one row in, one row out"))
}
