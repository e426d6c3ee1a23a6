//! The decoder: owns the device's decode loop, a dedicated OS thread that runs continuous
//! batching (new rows join at step boundaries, long prompts prefill in chunks, each row with
//! its own adapters). The actor only feeds the loop through a bounded control channel. The
//! loop never waits on another actor or on a consumer: a stream whose buffer is full ends its
//! request with a slow-consumer error; cancelled rows leave at the next step; a panic in a
//! step fails the rows it held (each gets its one terminal event) and the loop starts over.

use std::collections::{HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::channel::{bounded, select, Receiver, Sender, TryRecvError, TrySendError};
use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::batcher::{Batcher, Event as RowEvent, Request as RowRequest, RowId};
use crate::model::Compute;
use crate::runtime::faults::{maybe_panic, Component};
use crate::runtime::stats::{add, set_gauge};
use crate::runtime::stream::{ErrorKind, Event, Reply, Usage};

use super::evictor::EvictorMsg;
use super::job::Ready;
use super::lease::Lease;
use super::DeviceCtx;

/// Messages of the decoder actor.
pub(crate) enum DecoderMsg {
    /// A request with its leases and KV pages: run it.
    Admit(Box<Ready>),
    /// The loop took requests from its channel: feed it more.
    Room,
}

/// What the loop receives.
pub(crate) enum Ctl {
    Admit(Box<Ready>),
}

pub(crate) struct DecoderState {
    ctx: Arc<DeviceCtx>,
    ctl: Sender<Ctl>,
    overflow: VecDeque<Box<Ready>>,
}

pub(crate) struct Decoder;

impl Actor for Decoder {
    type Msg = DecoderMsg;
    type State = DecoderState;
    type Arguments = Arc<DeviceCtx>;

    async fn pre_start(
        &self,
        _me: ActorRef<DecoderMsg>,
        ctx: Arc<DeviceCtx>,
    ) -> Result<DecoderState, ActorProcessingErr> {
        let (tx, rx) = bounded(ctx.max_seqs.max(1));
        let c = Arc::clone(&ctx);
        let h = std::thread::Builder::new()
            .name(format!("{}-decode", ctx.prefix))
            .spawn(move || decode_thread(c, rx))
            .map_err(|e| format!("cannot start the decode thread: {e}"))?;
        ctx.threads_started.lock().push(h);
        Ok(DecoderState { ctx, ctl: tx, overflow: VecDeque::new() })
    }

    async fn handle(
        &self,
        _me: ActorRef<DecoderMsg>,
        msg: DecoderMsg,
        st: &mut DecoderState,
    ) -> Result<(), ActorProcessingErr> {
        maybe_panic(&st.ctx.faults, Component::Decoder);
        if let DecoderMsg::Admit(r) = msg {
            st.overflow.push_back(r);
        }
        while let Some(r) = st.overflow.pop_front() {
            match st.ctl.try_send(Ctl::Admit(r)) {
                Ok(()) => {}
                Err(TrySendError::Full(Ctl::Admit(r))) => {
                    st.overflow.push_front(r);
                    break;
                }
                Err(TrySendError::Disconnected(_)) => break,
            }
        }
        Ok(())
    }
}

/// A row's link to its host: running in the batch, or finished and still delivering text
/// its consumer had no room for.
struct RowCtx {
    reply: Option<Reply>,
    cancel: Arc<AtomicBool>,
    queue_ms: f64,
    /// Set when the row is being ended with an error rather than finished.
    end: Option<(ErrorKind, String)>,
    /// Text produced while the consumer's buffer was full, in order.
    held: VecDeque<String>,
    /// The terminal event, once the row left the batch.
    terminal: Option<Event>,
    /// Since when the consumer has been behind.
    paused_since: Option<Instant>,
}

impl RowCtx {
    /// Deliver held text while there is room, then the terminal event; true when the
    /// terminal event went out (the row is over).
    fn flush(&mut self) -> bool {
        let Some(reply) = self.reply.as_mut() else { return true };
        while let Some(t) = self.held.pop_front() {
            if !reply.has_room() {
                self.held.push_front(t);
                break;
            }
            reply.text(t);
        }
        if self.held.is_empty() {
            if let Some(ev) = self.terminal.take() {
                self.reply.take().expect("checked").finish(ev);
                return true;
            }
        }
        false
    }

    /// True when the consumer is behind (text waiting, or no room for more).
    fn behind(&self) -> bool {
        !self.held.is_empty() || self.reply.as_ref().is_some_and(|r| !r.has_room())
    }

    fn fail(&mut self, kind: ErrorKind, msg: impl Into<String>) {
        if let Some(r) = self.reply.take() {
            r.fail(kind, msg);
        }
    }
}

fn decode_thread(ctx: Arc<DeviceCtx>, ctl: Receiver<Ctl>) {
    let engine = Arc::clone(&ctx.engine);
    let model = &engine.loaded.model;
    let tok = engine.tokenizer.as_ref();
    let mut compute = Compute::new(ctx.threads);
    loop {
        // Declared first so it drops last: rows' leases and KV go before their replies.
        let mut rows: HashMap<RowId, RowCtx> = HashMap::new();
        let mut b: Batcher<'_, '_, Lease> = Batcher::new(model, tok, ctx.max_seqs);
        let r = catch_unwind(AssertUnwindSafe(|| run(&ctx, &ctl, &mut b, &mut rows, &mut compute)));
        drop(b);
        set_gauge(&ctx.metrics.running, 0);
        match r {
            Ok(()) => {
                let shutdown = ctx.metrics.shutting_down.load(Ordering::Acquire);
                for (_, mut row) in rows.drain() {
                    if shutdown {
                        row.fail(ErrorKind::Shutdown, "the runtime shut down");
                    } else {
                        row.fail(
                            ErrorKind::Internal,
                            "the decoder failed while running this request (it was restarted)",
                        );
                    }
                }
                ctx.links.evictor(EvictorMsg::RowEnded);
                return;
            }
            Err(p) => {
                let what = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                log::error!(
                    "{}: the decode loop panicked ({what}); failing its rows and starting over",
                    ctx.prefix
                );
                add(&ctx.metrics.restarts, 1);
                for (_, mut row) in rows.drain() {
                    // Its reply reports the failure when dropped.
                    if let Some(r) = row.reply.as_mut() {
                        r.stage = "decode loop";
                    }
                    drop(row);
                }
                ctx.links.evictor(EvictorMsg::RowEnded);
                compute = Compute::new(ctx.threads);
            }
        }
    }
}

/// Admit `r` into the batch.
fn admit(ctx: &DeviceCtx, b: &mut Batcher<'_, '_, Lease>, rows: &mut HashMap<RowId, RowCtx>, r: Box<Ready>) {
    let Ready { job, leases, kv } = *r;
    let queue_ms = job.submitted.elapsed().as_secs_f64() * 1e3;
    let crate::actors::job::Job { prompt, params, reply, cancel, .. } = job;
    // A cache over a ready shared prefix starts with the prefix's positions filled.
    let cached = kv.len();
    match b.admit(RowRequest { prompt, adapters: leases, params, kv, cached }) {
        Ok(id) => {
            rows.insert(
                id,
                RowCtx {
                    reply: Some(reply),
                    cancel,
                    queue_ms,
                    end: None,
                    held: VecDeque::new(),
                    terminal: None,
                    paused_since: None,
                },
            );
            add(&ctx.metrics.running, 1);
        }
        Err(e) => {
            reply.fail(ErrorKind::of(&e), e.to_string());
            ctx.links.evictor(EvictorMsg::RowEnded);
        }
    }
}

/// Route one batcher event to its stream.
fn on_event(ctx: &DeviceCtx, rows: &mut HashMap<RowId, RowCtx>, ev: RowEvent<Lease>) {
    match ev {
        RowEvent::Text { id, text } => {
            if let Some(r) = rows.get_mut(&id) {
                r.held.push_back(text);
                r.flush();
            }
        }
        RowEvent::Done { id, output, kv, adapters } => {
            // Give the row's memory and leases back before the host hears it ended.
            drop(kv);
            drop(adapters);
            crate::runtime::stats::sub(&ctx.metrics.running, 1);
            ctx.links.evictor(EvictorMsg::RowEnded);
            let Some(r) = rows.get_mut(&id) else { return };
            r.terminal = Some(match r.end.take() {
                Some((kind, message)) => {
                    r.held.clear();
                    Event::Error { kind, message }
                }
                None => Event::Done {
                    reason: output.finish,
                    usage: Usage {
                        prompt_tokens: output.prompt_tokens,
                        completion_tokens: output.token_ids.len(),
                        queue_ms: r.queue_ms,
                        prefill_ms: output.prefill_ms,
                        decode_ms: output.decode_ms,
                    },
                },
            });
            if r.flush() {
                rows.remove(&id);
            }
        }
    }
}

/// Deliver what consumers have room for; end rows whose consumer has been behind too long.
/// Returns the rows to leave out of the next step.
fn service(
    ctx: &DeviceCtx,
    b: &mut Batcher<'_, '_, Lease>,
    rows: &mut HashMap<RowId, RowCtx>,
) -> std::collections::HashSet<RowId> {
    let now = Instant::now();
    let mut paused = std::collections::HashSet::new();
    let mut over = Vec::new();
    let mut slow = Vec::new();
    for (id, r) in rows.iter_mut() {
        if r.flush() {
            over.push(*id);
            continue;
        }
        if r.behind() {
            let since = *r.paused_since.get_or_insert(now);
            if now.duration_since(since) >= ctx.slow_consumer_timeout {
                slow.push(*id);
            } else if r.terminal.is_none() {
                paused.insert(*id);
            }
        } else {
            r.paused_since = None;
        }
    }
    for id in over {
        rows.remove(&id);
    }
    const SLOW: &str =
        "the consumer did not read its stream for too long (slow_consumer_timeout); the request was ended";
    for id in slow {
        let r = rows.get_mut(&id).expect("listed");
        if r.terminal.is_some() {
            // Already out of the batch: drop the undelivered text, end it.
            r.held.clear();
            r.terminal = None;
            r.fail(ErrorKind::SlowConsumer, SLOW);
            rows.remove(&id);
        } else {
            r.end = Some((ErrorKind::SlowConsumer, SLOW.into()));
            r.held.clear();
            b.cancel(id, &mut |ev| on_event(ctx, rows, ev));
        }
    }
    paused
}

fn run(
    ctx: &Arc<DeviceCtx>,
    ctl: &Receiver<Ctl>,
    b: &mut Batcher<'_, '_, Lease>,
    rows: &mut HashMap<RowId, RowCtx>,
    compute: &mut Compute,
) {
    loop {
        let mut took = false;
        while b.len() < ctx.max_seqs {
            match ctl.try_recv() {
                Ok(Ctl::Admit(r)) => {
                    admit(ctx, b, rows, r);
                    took = true;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        if took {
            ctx.links.decoder(DecoderMsg::Room);
        }
        let cancelled: Vec<RowId> = rows
            .iter()
            .filter(|(_, r)| r.terminal.is_none() && r.cancel.load(Ordering::Acquire))
            .map(|(id, _)| *id)
            .collect();
        for id in cancelled {
            if let Some(r) = rows.get_mut(&id) {
                // Nobody wants the text any more.
                r.held.clear();
            }
            b.cancel(id, &mut |ev| on_event(ctx, rows, ev));
        }
        let paused = service(ctx, b, rows);
        if b.len() == paused.len() {
            // Nothing to compute: wait for work, a cancel, or a consumer to catch up.
            let wait = if rows.is_empty() { Duration::from_millis(100) } else { Duration::from_millis(1) };
            if b.len() >= ctx.max_seqs {
                // Full of paused rows: take nothing new, wait for a reader or a cancel.
                select! {
                    recv(ctx.wake.1) -> _ => {},
                    default(wait) => {},
                }
                continue;
            }
            select! {
                recv(ctl) -> m => match m {
                    Ok(Ctl::Admit(r)) => {
                        admit(ctx, b, rows, r);
                        ctx.links.decoder(DecoderMsg::Room);
                    }
                    Err(_) => return,
                },
                recv(ctx.wake.1) -> _ => {},
                default(wait) => {},
            }
            continue;
        }
        maybe_panic(&ctx.faults, Component::DecodeLoop);
        let step = b.step_except(compute, &|id| paused.contains(&id), &mut |ev| on_event(ctx, rows, ev));
        if let Err(e) = step {
            log::error!("{}: a decode step failed: {e}; failing its rows", ctx.prefix);
            let ids: Vec<RowId> =
                rows.iter().filter(|(_, r)| r.terminal.is_none()).map(|(id, _)| *id).collect();
            for id in &ids {
                if let Some(r) = rows.get_mut(id) {
                    r.end = Some((ErrorKind::Internal, format!("a decode step failed: {e}")));
                }
            }
            for id in ids {
                b.cancel(id, &mut |ev| on_event(ctx, rows, ev));
            }
        }
    }
}
