//! Requests and their streams: submit, pull events (or pump them into a callback on the
//! caller's thread), cancel, free.

use std::ffi::{c_char, c_void};
use std::time::Duration;

use parking_lot::Mutex;

use super::guard::{guard, opt_str, str_arg, str_array, Fail};
use super::runtime::{first_size, loradock_runtime, read_params, runtime};
use super::status::{loradock_status, of_kind};
use crate::chat::ChatMessage;
use crate::generate::FinishReason;
use crate::lora::compose::Combination;
use crate::runtime::{AdapterRef, Event, Input, Next, Request, Stream};
use crate::store::{Digest, Source};

/// One adapter of a request: a registered `name`, or (when `name` is NULL) an inline
/// `source` with its `digest`; and its weight.
#[repr(C)]
pub struct loradock_adapter_use {
    /// Registered name, or NULL for an inline adapter.
    pub name: *const c_char,
    /// Inline adapter source (used when `name` is NULL).
    pub source: *const c_char,
    /// Inline adapter digest `"sha256:<hex>"` (NULL: unverified, if the runtime allows).
    pub digest: *const c_char,
    /// Weight in the exact sum (or the combination method's input weight).
    pub weight: f32,
}

/// Parameters of `loradock_submit`. Fill with `loradock_request_params_default`. Exactly one
/// input: `prompt`, `messages_json` or `token_ids`. Append-only like every params struct.
#[repr(C)]
pub struct loradock_request_params {
    /// `sizeof(loradock_request_params)` as the caller knows it.
    pub struct_size: u32,
    /// Prompt text (a BOS token is added where the model wants one).
    pub prompt: *const c_char,
    /// Chat messages as JSON: `[{"role":"user","content":"…"}, …]`, rendered with the
    /// model's chat template.
    pub messages_json: *const c_char,
    /// Token ids, used as they are (`n_token_ids` of them).
    pub token_ids: *const u32,
    /// Entries of `token_ids`.
    pub n_token_ids: usize,
    /// Adapters (`n_adapters` of them); none = the base model.
    pub adapters: *const loradock_adapter_use,
    /// Entries of `adapters`.
    pub n_adapters: usize,
    /// How adapters combine: NULL or `"cat"` = the exact weighted sum; `"svd"`, `"ties"`,
    /// `"dare_linear"`, `"dare_ties"`, `"magnitude_prune"` materialize a composite.
    pub combination: *const c_char,
    /// Density of `ties`/`dare_*`/`magnitude_prune` (0 = default 0.5).
    pub density: f32,
    /// Target rank of `svd` (0 = the largest input rank).
    pub svd_rank: u32,
    /// Seed of `dare_*`.
    pub combination_seed: u64,
    /// Most tokens to generate (at least 1).
    pub max_tokens: u32,
    /// Temperature (0 = greedy).
    pub temperature: f32,
    /// Top-k (0 = off).
    pub top_k: u32,
    /// Top-p (1 = off).
    pub top_p: f32,
    /// Min-p (0 = off).
    pub min_p: f32,
    /// Repetition penalty (1 = off).
    pub repetition_penalty: f32,
    /// Sampling seed.
    pub seed: u64,
    /// Stop strings (`n_stop` of them), not included in the text.
    pub stop: *const *const c_char,
    /// Entries of `stop`.
    pub n_stop: usize,
    /// Keep going past end-of-generation tokens.
    pub ignore_eos: bool,
}

impl loradock_request_params {
    fn defaults() -> loradock_request_params {
        let p = crate::generate::GenerateParams::default();
        loradock_request_params {
            struct_size: std::mem::size_of::<loradock_request_params>() as u32,
            prompt: std::ptr::null(),
            messages_json: std::ptr::null(),
            token_ids: std::ptr::null(),
            n_token_ids: 0,
            adapters: std::ptr::null(),
            n_adapters: 0,
            combination: std::ptr::null(),
            density: 0.0,
            svd_rank: 0,
            combination_seed: 0,
            max_tokens: p.max_tokens as u32,
            temperature: p.sampling.temperature,
            top_k: p.sampling.top_k as u32,
            top_p: p.sampling.top_p,
            min_p: p.sampling.min_p,
            repetition_penalty: p.sampling.repetition_penalty,
            seed: p.sampling.seed,
            stop: std::ptr::null(),
            n_stop: 0,
            ignore_eos: false,
        }
    }
}

/// Fill `out` with the defaults (`max_tokens` 128, greedy, no adapters, no input).
///
/// # Safety
/// `out` is NULL or points to a writable `loradock_request_params`.
#[no_mangle]
pub unsafe extern "C" fn loradock_request_params_default(
    out: *mut loradock_request_params,
) -> loradock_status {
    guard("loradock_request_params_default", || {
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        // SAFETY: non-NULL and writable per the contract.
        unsafe { out.write(loradock_request_params::defaults()) };
        Ok(())
    })
}

/// What kind of event a `loradock_event` holds.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum loradock_event_kind {
    /// Generated text.
    LORADOCK_EVENT_TOKEN = 1,
    /// The request ended normally.
    LORADOCK_EVENT_DONE = 2,
    /// The request failed.
    LORADOCK_EVENT_ERROR = 3,
}

/// Why a request ended (`LORADOCK_EVENT_DONE`).
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum loradock_finish_reason {
    /// Not a done event.
    LORADOCK_FINISH_NONE = 0,
    /// `max_tokens` reached.
    LORADOCK_FINISH_LENGTH = 1,
    /// End-of-generation token.
    LORADOCK_FINISH_EOS = 2,
    /// A stop string.
    LORADOCK_FINISH_STOP = 3,
    /// Cancelled.
    LORADOCK_FINISH_CANCELLED = 4,
}

/// Counts and timings of a finished request.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct loradock_usage {
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Generated tokens.
    pub completion_tokens: u64,
    /// Submit → admitted, milliseconds.
    pub queue_ms: f64,
    /// Prompt processing, milliseconds.
    pub prefill_ms: f64,
    /// Decoding, milliseconds.
    pub decode_ms: f64,
}

/// One event. Output only: set `struct_size` before the call. `text` and `error_message`
/// are NUL-terminated and stay valid until the next `loradock_stream_next` or
/// `loradock_stream_pump` on the same stream, or its free (`loradock_stream_cancel` does not
/// touch them).
#[repr(C)]
pub struct loradock_event {
    /// `sizeof(loradock_event)` as the caller knows it.
    pub struct_size: u32,
    /// Which event.
    pub kind: loradock_event_kind,
    /// TOKEN: the text (UTF-8; `text_len` bytes plus a NUL). NULL otherwise.
    pub text: *const c_char,
    /// Bytes of `text`.
    pub text_len: usize,
    /// DONE: why it ended.
    pub finish_reason: loradock_finish_reason,
    /// DONE: counts and timings.
    pub usage: loradock_usage,
    /// ERROR: the status of the failure. `LORADOCK_STATUS_OK` otherwise.
    pub error_status: loradock_status,
    /// ERROR: what went wrong. NULL otherwise.
    pub error_message: *const c_char,
}

/// Tag of a live `loradock_stream` ("LDSTREA\0").
const STREAM_MAGIC: u64 = 0x0041_4552_5453_444c;

struct StreamState {
    stream: Stream,
    /// Storage behind the last event's pointers.
    text: Vec<u8>,
    message: Vec<u8>,
}

/// A request's event stream (opaque). One reader at a time; calls on one stream from
/// several threads are serialized. Free with `loradock_stream_free`. Tagged like
/// `loradock_runtime`: a foreign or freed-and-unreused pointer is refused, not used.
///
/// `repr(C)` so the tag comes first, as in `loradock_runtime`; opaque to C.
/// cbindgen:ignore
#[repr(C)]
pub struct loradock_stream {
    /// [`STREAM_MAGIC`] while alive.
    magic: u64,
    state: Mutex<StreamState>,
    /// For cancel without taking the reader's lock.
    cancel: Box<dyn Fn() + Send + Sync>,
}

fn finish_code(r: FinishReason) -> loradock_finish_reason {
    match r {
        FinishReason::Length => loradock_finish_reason::LORADOCK_FINISH_LENGTH,
        FinishReason::Eos => loradock_finish_reason::LORADOCK_FINISH_EOS,
        FinishReason::Stop => loradock_finish_reason::LORADOCK_FINISH_STOP,
        FinishReason::Cancelled => loradock_finish_reason::LORADOCK_FINISH_CANCELLED,
    }
}

fn nul_terminated(buf: &mut Vec<u8>, s: &str) -> *const c_char {
    buf.clear();
    buf.extend_from_slice(s.as_bytes());
    buf.push(0);
    buf.as_ptr() as *const c_char
}

/// Fill `out` from `ev`, keeping its strings in `st`.
fn fill(st: &mut StreamState, ev: Event) -> loradock_event {
    let mut e = loradock_event {
        struct_size: std::mem::size_of::<loradock_event>() as u32,
        kind: loradock_event_kind::LORADOCK_EVENT_TOKEN,
        text: std::ptr::null(),
        text_len: 0,
        finish_reason: loradock_finish_reason::LORADOCK_FINISH_NONE,
        usage: loradock_usage::default(),
        error_status: loradock_status::LORADOCK_STATUS_OK,
        error_message: std::ptr::null(),
    };
    match ev {
        Event::Token { text } => {
            e.text = nul_terminated(&mut st.text, &text);
            e.text_len = text.len();
        }
        Event::Done { reason, usage } => {
            e.kind = loradock_event_kind::LORADOCK_EVENT_DONE;
            e.finish_reason = finish_code(reason);
            e.usage = loradock_usage {
                prompt_tokens: usage.prompt_tokens as u64,
                completion_tokens: usage.completion_tokens as u64,
                queue_ms: usage.queue_ms,
                prefill_ms: usage.prefill_ms,
                decode_ms: usage.decode_ms,
            };
        }
        Event::Error { kind, message } => {
            e.kind = loradock_event_kind::LORADOCK_EVENT_ERROR;
            e.error_status = of_kind(kind);
            e.error_message = nul_terminated(&mut st.message, &message);
        }
    }
    e
}

/// Build the Rust request from a C params struct.
///
/// # Safety
/// The pointers in `p` follow the documented contract.
unsafe fn request(p: &loradock_request_params) -> Result<Request, Fail> {
    // SAFETY (all below): forwarded contracts of the params' pointer fields.
    let prompt = unsafe { opt_str(p.prompt, "params.prompt")? };
    let messages = unsafe { opt_str(p.messages_json, "params.messages_json")? };
    let inputs = [prompt.is_some(), messages.is_some(), p.n_token_ids > 0].iter().filter(|x| **x).count();
    if inputs != 1 {
        return Err(Fail::invalid(
            "give exactly one of params.prompt, params.messages_json, params.token_ids",
        ));
    }
    let input = if let Some(t) = prompt {
        Input::Prompt(t.to_string())
    } else if let Some(j) = messages {
        let msgs: Vec<ChatMessage> = serde_json::from_str(j).map_err(|e| {
            Fail::invalid(format!("params.messages_json is not a list of {{role, content}}: {e}"))
        })?;
        Input::Chat(msgs)
    } else {
        if p.token_ids.is_null() {
            return Err(Fail::null("params.token_ids"));
        }
        Input::Tokens(unsafe { std::slice::from_raw_parts(p.token_ids, p.n_token_ids) }.to_vec())
    };
    let mut adapters = Vec::with_capacity(p.n_adapters);
    if p.n_adapters > 0 {
        if p.adapters.is_null() {
            return Err(Fail::null("params.adapters"));
        }
        let uses = unsafe { std::slice::from_raw_parts(p.adapters, p.n_adapters) };
        for (i, u) in uses.iter().enumerate() {
            let r = match unsafe { opt_str(u.name, &format!("params.adapters[{i}].name"))? } {
                Some(n) => AdapterRef::Named(n.to_string()),
                None => {
                    let src = unsafe { str_arg(u.source, &format!("params.adapters[{i}].source"))? };
                    let digest = unsafe { opt_str(u.digest, &format!("params.adapters[{i}].digest"))? }
                        .map(Digest::parse)
                        .transpose()?;
                    AdapterRef::Inline { source: Source::parse(src)?, digest }
                }
            };
            adapters.push((r, u.weight));
        }
    }
    let combination = match unsafe { opt_str(p.combination, "params.combination")? } {
        None => Combination::Cat,
        Some(name) => Combination::parse(
            name,
            (p.density > 0.0).then_some(p.density),
            (p.svd_rank > 0).then_some(p.svd_rank as usize),
            Some(p.combination_seed),
        )?,
    };
    let mut r = Request { input, adapters, combination, params: Default::default() };
    r.params.max_tokens = p.max_tokens as usize;
    r.params.sampling.temperature = p.temperature;
    r.params.sampling.top_k = p.top_k as usize;
    r.params.sampling.top_p = p.top_p;
    r.params.sampling.min_p = p.min_p;
    r.params.sampling.repetition_penalty = p.repetition_penalty;
    r.params.sampling.seed = p.seed;
    r.params.stop =
        unsafe { str_array(p.stop, p.n_stop, "params.stop")? }.into_iter().map(String::from).collect();
    r.params.ignore_eos = p.ignore_eos;
    Ok(r)
}

/// Start a request; on success `*out` owns its stream (free with `loradock_stream_free`).
///
/// Statuses: `OK`, `NULL_ARGUMENT`, `STRUCT_SIZE`, `INVALID_UTF8`, `INVALID_ARGUMENT`
/// (input, sampling, limits, combination, digest or source syntax), `UNKNOWN_ADAPTER`,
/// `TOKENIZER`, `BUSY` (submit queue full), `SHUT_DOWN`, `PANIC`. Failures while fetching,
/// docking or decoding come later, as the stream's error event.
///
/// # Safety
/// `rt` is a live handle; `params` as documented; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn loradock_submit(
    rt: *const loradock_runtime,
    params: *const loradock_request_params,
    out: *mut *mut loradock_stream,
) -> loradock_status {
    guard("loradock_submit", || {
        // SAFETY: forwarded contracts.
        let rt = unsafe { runtime(rt)? };
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        let min = first_size!(loradock_request_params, ignore_eos);
        let p = unsafe { read_params(params, loradock_request_params::defaults(), min, "params")? };
        let req = unsafe { request(&p)? };
        let stream = rt.submit(req)?;
        let canceller = stream.canceller();
        let s = loradock_stream {
            magic: STREAM_MAGIC,
            state: Mutex::new(StreamState { stream, text: Vec::new(), message: Vec::new() }),
            cancel: Box::new(canceller),
        };
        // SAFETY: writable per the contract.
        unsafe { out.write(Box::into_raw(Box::new(s))) };
        Ok(())
    })
}

/// Borrow a stream handle.
///
/// # Safety
/// `s` is NULL or a live handle.
unsafe fn stream<'a>(s: *const loradock_stream) -> Result<&'a loradock_stream, Fail> {
    if s.is_null() {
        return Err(Fail::null("stream"));
    }
    // SAFETY: live per the contract (the tag catches foreign or freed-and-unreused handles).
    let h = unsafe { &*s };
    if h.magic != STREAM_MAGIC {
        return Err(Fail::invalid("stream is not a live loradock_stream handle (freed or foreign)"));
    }
    Ok(h)
}

/// Wait up to `timeout_ms` for the next event and write it into `*event` (set
/// `event->struct_size` first). Returns `OK` with an event; `TIMEOUT` when none came (the
/// request goes on); `STREAM_ENDED` once the terminal event (DONE or ERROR, exactly one per
/// request) was delivered. `*event` is written only with `OK`.
///
/// # Safety
/// `s` is a live stream; `event` points to a writable `loradock_event`.
#[no_mangle]
pub unsafe extern "C" fn loradock_stream_next(
    s: *const loradock_stream,
    timeout_ms: u32,
    event: *mut loradock_event,
) -> loradock_status {
    let mut status = loradock_status::LORADOCK_STATUS_OK;
    let g = guard("loradock_stream_next", || {
        // SAFETY: forwarded contracts.
        let s = unsafe { stream(s)? };
        if event.is_null() {
            return Err(Fail::null("event"));
        }
        // SAFETY: `event` starts with a readable `uint32_t struct_size`.
        let declared = unsafe { *(event as *const u32) } as usize;
        super::guard::check_size(declared as u32, std::mem::size_of::<loradock_event>(), "loradock_event")?;
        let mut st = s.state.lock();
        match st.stream.next(Duration::from_millis(timeout_ms.into())) {
            Next::Event(ev) => {
                let e = fill(&mut st, ev);
                // SAFETY: writable per the contract (size checked).
                unsafe { event.write(e) };
            }
            Next::Timeout => status = loradock_status::LORADOCK_STATUS_TIMEOUT,
            Next::Ended => status = loradock_status::LORADOCK_STATUS_STREAM_ENDED,
        }
        Ok(())
    });
    if g != loradock_status::LORADOCK_STATUS_OK {
        return g;
    }
    status
}

/// Called by `loradock_stream_pump` for each event; return 0 to go on, non-zero to stop.
/// The event and its strings are valid during the call only. Must not unwind (no C++
/// exceptions) out of the callback.
pub type loradock_event_callback =
    Option<unsafe extern "C" fn(event: *const loradock_event, user_data: *mut c_void) -> i32>;

/// Deliver events to `callback` on the calling thread until the terminal event (returns
/// `OK`), until `callback` returns non-zero (returns `OK`; the request goes on), or until
/// no event came for `timeout_ms` (returns `TIMEOUT`). `STREAM_ENDED` when it had already
/// ended.
///
/// # Safety
/// `s` is a live stream; `callback` is a valid function; `user_data` is passed through.
#[no_mangle]
pub unsafe extern "C" fn loradock_stream_pump(
    s: *const loradock_stream,
    timeout_ms: u32,
    callback: loradock_event_callback,
    user_data: *mut c_void,
) -> loradock_status {
    let mut status = loradock_status::LORADOCK_STATUS_OK;
    let g = guard("loradock_stream_pump", || {
        // SAFETY: forwarded contract.
        let s = unsafe { stream(s)? };
        let cb = callback.ok_or_else(|| Fail::null("callback"))?;
        let mut st = s.state.lock();
        loop {
            match st.stream.next(Duration::from_millis(timeout_ms.into())) {
                Next::Event(ev) => {
                    let terminal = ev.is_terminal();
                    let e = fill(&mut st, ev);
                    // SAFETY: `e` lives across the call; the callback's contract is the caller's.
                    let stop = unsafe { cb(&e, user_data) };
                    if terminal || stop != 0 {
                        return Ok(());
                    }
                }
                Next::Timeout => {
                    status = loradock_status::LORADOCK_STATUS_TIMEOUT;
                    return Ok(());
                }
                Next::Ended => {
                    status = loradock_status::LORADOCK_STATUS_STREAM_ENDED;
                    return Ok(());
                }
            }
        }
    });
    if g != loradock_status::LORADOCK_STATUS_OK {
        return g;
    }
    status
}

/// Ask for the request to end: it ends with a DONE event with
/// `LORADOCK_FINISH_CANCELLED` (unless it ended first). Idempotent; callable from any
/// thread, also while another thread waits in `loradock_stream_next`.
///
/// # Safety
/// `s` is a live stream.
#[no_mangle]
pub unsafe extern "C" fn loradock_stream_cancel(s: *const loradock_stream) -> loradock_status {
    guard("loradock_stream_cancel", || {
        // SAFETY: forwarded contract.
        let s = unsafe { stream(s)? };
        (s.cancel)();
        Ok(())
    })
}

/// Free a stream (cancelling its request if it has not ended). NULL is a no-op. No other
/// call may use `s` concurrently or afterwards.
///
/// # Safety
/// `s` is NULL or a live stream, freed once.
#[no_mangle]
pub unsafe extern "C" fn loradock_stream_free(s: *mut loradock_stream) {
    let _ = guard("loradock_stream_free", || {
        if !s.is_null() {
            // SAFETY: a live handle per the contract; its tag is checked before the box is
            // rebuilt, so a foreign pointer is refused rather than freed.
            if unsafe { (*s).magic } != STREAM_MAGIC {
                return Err(Fail::invalid("stream is not a live loradock_stream handle (freed or foreign)"));
            }
            // SAFETY: owned pointer from `Box::into_raw`, freed once per the contract.
            let mut b = unsafe { Box::from_raw(s) };
            b.magic = super::runtime::DEAD_MAGIC;
            drop(b);
        }
        Ok(())
    });
}
