//! Continuous batching: sequences join a running batch at step boundaries, long prompts are
//! prefilled in chunks beside rows that are decoding, every row has its own adapters,
//! sampling and limits, and a row leaves as soon as it ends (or is cancelled), giving its KV
//! cache back. One [`Batcher::step`] is one forward pass over every active row.
//!
//! This is the loop the runtime's decoder thread drives; [`crate::generate`]'s one-shot
//! functions run it to completion.

use std::borrow::Borrow;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::generate::{FinishReason, GenerateOutput, GenerateParams, PREFILL_CHUNK};
use crate::kv::KvCache;
use crate::lora::LoraAdapter;
use crate::model::{Compute, LlamaModel, LogitsMode, SeqBatch};
use crate::sampling::{Sampler, StopStrings};
use crate::tokenizer::{StreamDecoder, Tokenizer};

/// Identifies an admitted row.
pub type RowId = u64;

/// A sequence to generate for. `A` holds an adapter: a plain borrow, or an owning guard
/// (the runtime's leases), anything that [`Borrow`]s a [`LoraAdapter`].
pub struct Request<A> {
    /// Prompt token ids (at least one).
    pub prompt: Vec<u32>,
    /// Adapters with their weights (exact sum, applied unmerged).
    pub adapters: Vec<(A, f32)>,
    /// Limits, sampling and stops.
    pub params: GenerateParams,
    /// The row's KV cache (its capacity bounds prompt + generated tokens).
    pub kv: KvCache,
    /// Leading prompt tokens whose KV `kv` already holds (read from a shared prefix): the
    /// prefill starts after them. 0 for a plain request.
    pub cached: usize,
}

/// What a step reports.
pub enum Event<A> {
    /// Complete UTF-8 text of a row, as it appears.
    Text {
        /// The row.
        id: RowId,
        /// The text.
        text: String,
    },
    /// A row ended: exactly once per admitted row.
    Done {
        /// The row.
        id: RowId,
        /// Its tokens, text, timings and finish reason.
        output: GenerateOutput,
        /// Its KV cache, handed back (dropping it releases its ledger reservation).
        kv: Box<KvCache>,
        /// Its adapters, handed back (dropping a lease releases it).
        adapters: Vec<(A, f32)>,
    },
}

/// Sampling and text state of one row.
struct RowState<'t> {
    sampler: Sampler,
    stops: StopStrings,
    decoder: Option<StreamDecoder<'t>>,
    recent: Vec<u32>,
    out: Vec<u32>,
    text: String,
    finish: Option<FinishReason>,
    logits: Vec<f32>,
}

impl RowState<'_> {
    /// Pass a text piece through the stop strings; true when a stop string ended the row.
    fn emit<A>(&mut self, id: RowId, piece: &str, on_event: &mut dyn FnMut(Event<A>)) -> bool {
        let o = self.stops.push(piece);
        if !o.emit.is_empty() {
            self.text.push_str(&o.emit);
            on_event(Event::Text { id, text: o.emit });
        }
        o.stopped
    }

    /// Sample the next token from `self.logits`; returns it when the row goes on.
    fn sample<A>(
        &mut self,
        id: RowId,
        p: &GenerateParams,
        tok: Option<&Tokenizer>,
        on_event: &mut dyn FnMut(Event<A>),
    ) -> Result<Option<u32>> {
        if self.out.len() >= p.max_tokens {
            self.finish = Some(FinishReason::Length);
            return Ok(None);
        }
        let t = self.sampler.sample(&self.logits, &self.recent);
        if !p.ignore_eos && tok.is_some_and(|k| k.is_eos(t)) {
            self.finish = Some(FinishReason::Eos);
            return Ok(None);
        }
        self.out.push(t);
        self.recent.push(t);
        if let Some(piece) = self.decoder.as_mut().map(|d| d.push(t)).transpose()?.flatten() {
            if self.emit(id, &piece, on_event) {
                self.finish = Some(FinishReason::Stop);
                return Ok(None);
            }
        }
        if self.out.len() >= p.max_tokens {
            self.finish = Some(FinishReason::Length);
            return Ok(None);
        }
        Ok(Some(t))
    }

    /// Flush held-back text at the end of a row that did not stop on a stop string.
    fn flush<A>(&mut self, id: RowId, on_event: &mut dyn FnMut(Event<A>)) -> Result<()> {
        if self.finish == Some(FinishReason::Stop) {
            return Ok(());
        }
        if let Some(piece) = self.decoder.as_mut().map(|d| d.finish()).transpose()?.flatten() {
            if self.emit(id, &piece, on_event) {
                self.finish = Some(FinishReason::Stop);
                return Ok(());
            }
        }
        let rest = self.stops.finish();
        if !rest.is_empty() {
            self.text.push_str(&rest);
            on_event(Event::Text { id, text: rest });
        }
        Ok(())
    }
}

struct Row<'t, A> {
    id: RowId,
    req: Request<A>,
    /// Prompt tokens already in the cache.
    prefilled: usize,
    /// The token to feed at the next step (decode phase).
    next: Option<u32>,
    state: RowState<'t>,
    prefill_ms: f64,
    decode_ms: f64,
    decode_steps: usize,
}

/// The running batch.
pub struct Batcher<'a, 't, A> {
    model: &'a LlamaModel,
    tokenizer: Option<&'t Tokenizer>,
    rows: Vec<Row<'t, A>>,
    max_rows: usize,
    next_id: RowId,
}

/// What a row contributes to one forward pass.
#[derive(Clone, Copy)]
enum Part {
    Prefill { len: usize, last: bool },
    Decode,
}

impl<'a, 't, A: Borrow<LoraAdapter>> Batcher<'a, 't, A> {
    /// An empty batch of at most `max_rows` rows.
    pub fn new(model: &'a LlamaModel, tokenizer: Option<&'t Tokenizer>, max_rows: usize) -> Self {
        Batcher { model, tokenizer, rows: Vec::new(), max_rows: max_rows.max(1), next_id: 0 }
    }

    /// Rows in the batch.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when no row is running.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Add a row; it joins at the next step. Refused (nothing changes) when the batch is full,
    /// the prompt is empty or does not fit its cache, or the sampling parameters are invalid.
    pub fn admit(&mut self, req: Request<A>) -> Result<RowId> {
        if self.rows.len() >= self.max_rows {
            return Err(Error::Busy { what: "batch".into(), limit: self.max_rows });
        }
        if req.prompt.is_empty() {
            return Err(Error::invalid("prompt", "the prompt has no tokens"));
        }
        req.params.sampling.validate()?;
        if req.cached > 0 && (req.cached >= req.prompt.len() || req.kv.len() != req.cached) {
            return Err(Error::invalid(
                "cached",
                format!(
                    "{} cached prompt tokens for a prompt of {} and a cache holding {}",
                    req.cached,
                    req.prompt.len(),
                    req.kv.len()
                ),
            ));
        }
        req.kv.check_room(req.prompt.len() - req.cached)?;
        let id = self.next_id;
        self.next_id += 1;
        let state = RowState {
            sampler: Sampler::new(req.params.sampling.clone()),
            stops: StopStrings::new(req.params.stop.clone()),
            decoder: self.tokenizer.map(|t| t.stream_decoder()),
            recent: req.prompt.clone(),
            out: Vec::new(),
            text: String::new(),
            finish: None,
            logits: Vec::new(),
        };
        let mut req = req;
        // Generated tokens must fit the cache too.
        let room = req.kv.capacity().saturating_sub(req.kv.len() + req.prompt.len() - req.cached);
        req.params.max_tokens = req.params.max_tokens.min(room);
        let prefilled = req.cached;
        self.rows.push(Row {
            id,
            req,
            prefilled,
            next: None,
            state,
            prefill_ms: 0.0,
            decode_ms: 0.0,
            decode_steps: 0,
        });
        Ok(id)
    }

    /// End row `id` now (its `Done` event, with reason `Cancelled`, is emitted at once).
    /// Returns false when no such row is running.
    pub fn cancel(&mut self, id: RowId, on_event: &mut dyn FnMut(Event<A>)) -> bool {
        let Some(i) = self.rows.iter().position(|r| r.id == id) else { return false };
        let mut row = self.rows.swap_remove(i);
        row.state.finish = Some(FinishReason::Cancelled);
        finish(row, on_event);
        true
    }

    /// One forward pass over every row: prefill chunks for rows still reading their prompt,
    /// one token for rows decoding; then sample, stream text, and retire rows that ended.
    pub fn step(&mut self, c: &mut Compute, on_event: &mut dyn FnMut(Event<A>)) -> Result<()> {
        self.step_except(c, &|_| false, on_event)
    }

    /// [`Batcher::step`] over every row except those `paused` names (a paused row keeps
    /// its state and joins a later step; its consumer is behind).
    pub fn step_except(
        &mut self,
        c: &mut Compute,
        paused: &dyn Fn(RowId) -> bool,
        on_event: &mut dyn FnMut(Event<A>),
    ) -> Result<()> {
        let active: Vec<usize> = (0..self.rows.len()).filter(|&i| !paused(self.rows[i].id)).collect();
        if active.is_empty() {
            return Ok(());
        }
        let t0 = Instant::now();
        let mut parts = Vec::with_capacity(active.len());
        let outs = {
            // Per row: its tokens for this pass, its cache, its adapters as plain borrows.
            let mut views = Vec::with_capacity(active.len());
            let mut next_active = active.iter().peekable();
            for (i, r) in self.rows.iter_mut().enumerate() {
                if next_active.next_if_eq(&&i).is_none() {
                    continue;
                }
                let Request { prompt, adapters, kv, .. } = &mut r.req;
                let refs: Vec<(&LoraAdapter, f32)> = adapters.iter().map(|(a, w)| (a.borrow(), *w)).collect();
                if r.prefilled < prompt.len() {
                    let end = (r.prefilled + PREFILL_CHUNK).min(prompt.len());
                    let last = end == prompt.len();
                    let mode = if last { LogitsMode::Last } else { LogitsMode::None };
                    views.push((&prompt[r.prefilled..end], kv, refs, mode));
                    parts.push(Part::Prefill { len: end - r.prefilled, last });
                } else {
                    let t = r.next.as_ref().expect("a decoding row always has its next token");
                    views.push((std::slice::from_ref(t), kv, refs, LogitsMode::Last));
                    parts.push(Part::Decode);
                }
            }
            let mut seqs: Vec<SeqBatch<'_>> = views
                .iter_mut()
                .map(|(tokens, kv, refs, mode)| SeqBatch { tokens, kv, adapters: refs, logits: *mode })
                .collect();
            self.model.forward(c, &mut seqs)?
        };
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        let tok = self.tokenizer;
        let mut ended = Vec::new();
        for (&i, (part, logits)) in active.iter().zip(parts.into_iter().zip(outs)) {
            let r = &mut self.rows[i];
            let sample_now = match part {
                Part::Prefill { len, last } => {
                    r.prefilled += len;
                    r.prefill_ms += ms;
                    last
                }
                Part::Decode => {
                    r.decode_ms += ms;
                    r.decode_steps += 1;
                    true
                }
            };
            if sample_now {
                r.state.logits = logits;
                r.next = r.state.sample(r.id, &r.req.params, tok, on_event)?;
                if r.next.is_none() {
                    ended.push(i);
                }
            }
        }
        for i in ended.into_iter().rev() {
            let row = self.rows.swap_remove(i);
            finish(row, on_event);
        }
        Ok(())
    }
}

/// Flush a row's text and emit its one `Done` event.
fn finish<A>(mut row: Row<'_, A>, on_event: &mut dyn FnMut(Event<A>)) {
    if let Err(e) = row.state.flush(row.id, on_event) {
        log::warn!("row {}: flushing its text failed: {e}", row.id);
    }
    let output = GenerateOutput {
        token_ids: row.state.out,
        text: row.state.text,
        prompt_tokens: row.req.prompt.len(),
        prefill_ms: row.prefill_ms,
        decode_ms: row.decode_ms,
        decode_steps: row.decode_steps,
        finish: row.state.finish.unwrap_or(FinishReason::Length),
    };
    on_event(Event::Done { id: row.id, output, kv: Box::new(row.req.kv), adapters: row.req.adapters });
}
