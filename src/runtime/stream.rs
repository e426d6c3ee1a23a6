//! The per-request event stream: a bounded channel from the pipeline to the host, with room
//! always kept for the one terminal event.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam::channel::{bounded, Receiver, RecvTimeoutError, Sender};

use super::stats::Metrics;
use crate::generate::FinishReason;

/// Token counts and timings of a finished request.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Generated tokens.
    pub completion_tokens: usize,
    /// Milliseconds from submit to admission into the running batch (fetch, dock, waiting).
    pub queue_ms: f64,
    /// Milliseconds of forward passes that read the prompt.
    pub prefill_ms: f64,
    /// Milliseconds of decode steps.
    pub decode_ms: f64,
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// An adapter could not be fetched (source refused, HTTP error, time-out, digest
    /// mismatch, unverifiable content).
    Fetch,
    /// An adapter's files are invalid or do not fit the base model.
    Adapter,
    /// The request cannot fit under the budget even with nothing else running.
    OverBudget,
    /// A bounded queue was full.
    Busy,
    /// The consumer did not read events fast enough; the request was ended so it would not
    /// hold the others back.
    SlowConsumer,
    /// A runtime component failed while holding the request (it was restarted).
    Internal,
    /// The runtime shut down before the request ended.
    Shutdown,
}

impl ErrorKind {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Fetch => "fetch",
            ErrorKind::Adapter => "adapter",
            ErrorKind::OverBudget => "over_budget",
            ErrorKind::Busy => "busy",
            ErrorKind::SlowConsumer => "slow_consumer",
            ErrorKind::Internal => "internal",
            ErrorKind::Shutdown => "shutdown",
        }
    }

    /// The kind an engine or store error maps to.
    pub(crate) fn of(e: &crate::Error) -> ErrorKind {
        use crate::Error as E;
        match e {
            E::Store { .. } | E::DigestMismatch { .. } | E::Timeout { .. } | E::Io { .. } => ErrorKind::Fetch,
            E::OverBudget { .. } => ErrorKind::OverBudget,
            E::Busy { .. } => ErrorKind::Busy,
            E::ShutDown { .. } => ErrorKind::Shutdown,
            E::UnknownAdapter { .. } => ErrorKind::Adapter,
            E::Format { .. }
            | E::Unsupported { .. }
            | E::ShapeMismatch { .. }
            | E::MissingTensor { .. }
            | E::Config { .. }
            | E::Adapter { .. }
            | E::InvalidArgument { .. } => ErrorKind::Adapter,
            E::Tokenizer { .. } | E::Device { .. } => ErrorKind::Internal,
        }
    }
}

/// What a stream delivers. Every request ends with exactly one `Done` or `Error`.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Generated text, as it becomes complete UTF-8 (stop strings held back until decided).
    Token {
        /// The text.
        text: String,
    },
    /// The request ended normally (length, end of generation, stop string or cancel).
    Done {
        /// Why it ended.
        reason: FinishReason,
        /// Counts and timings.
        usage: Usage,
    },
    /// The request failed.
    Error {
        /// The class of failure.
        kind: ErrorKind,
        /// What went wrong, naming the adapter, file or limit at fault.
        message: String,
    },
}

impl Event {
    /// True for `Done` and `Error`.
    pub fn is_terminal(&self) -> bool {
        !matches!(self, Event::Token { .. })
    }
}

/// What [`Stream::next`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// An event.
    Event(Event),
    /// No event within the time-out; the request goes on.
    Timeout,
    /// The terminal event was already delivered.
    Ended,
}

/// The receiving end of one request. `Send`; one consumer.
pub struct Stream {
    id: u64,
    rx: Receiver<Event>,
    cancel: Arc<AtomicBool>,
    wake: Arc<dyn Fn() + Send + Sync>,
    ended: bool,
}

impl Stream {
    /// The request's id (unique within its runtime).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The next event, waiting at most `timeout`.
    pub fn next(&mut self, timeout: Duration) -> Next {
        if self.ended {
            return Next::Ended;
        }
        match self.rx.recv_timeout(timeout) {
            Ok(ev) => {
                self.ended = ev.is_terminal();
                Next::Event(ev)
            }
            Err(RecvTimeoutError::Timeout) => Next::Timeout,
            // Unreachable in practice: the sender always sends a terminal event first.
            Err(RecvTimeoutError::Disconnected) => {
                self.ended = true;
                Next::Ended
            }
        }
    }

    /// Every remaining event until the terminal one, waiting at most `timeout` per event;
    /// `None` when an event did not come in time.
    pub fn collect(&mut self, timeout: Duration) -> Option<Vec<Event>> {
        let mut out = Vec::new();
        loop {
            match self.next(timeout) {
                Next::Event(e) => out.push(e),
                Next::Timeout => return None,
                Next::Ended => return Some(out),
            }
        }
    }

    /// Ask the runtime to end the request: it ends with `Done { reason: Cancelled }` at the
    /// next step (or before it starts), unless it ended first. Idempotent.
    pub fn cancel(&self) {
        if !self.cancel.swap(true, Ordering::AcqRel) {
            (self.wake)();
        }
    }

    /// A handle that cancels this request from any thread (as [`Stream::cancel`]), for hosts
    /// that read the stream on one thread and cancel from another.
    pub fn canceller(&self) -> impl Fn() + Send + Sync + 'static {
        let cancel = Arc::clone(&self.cancel);
        let wake = Arc::clone(&self.wake);
        move || {
            if !cancel.swap(true, Ordering::AcqRel) {
                wake();
            }
        }
    }

    /// True once the terminal event was read.
    pub fn is_ended(&self) -> bool {
        self.ended
    }
}

impl Drop for Stream {
    /// A dropped stream cancels its request: nobody is left to read it.
    fn drop(&mut self) {
        if !self.ended {
            self.cancel();
        }
    }
}

/// The sending end, owned by whichever stage holds the request. Guarantees exactly one
/// terminal event: if it is dropped without one (a stage failed and dropped its work), it
/// sends an `Internal` error naming the stage.
pub(crate) struct Reply {
    tx: Sender<Event>,
    buffer: usize,
    done: bool,
    pub(crate) stage: &'static str,
    metrics: Arc<Metrics>,
}

impl Reply {
    /// A stream for request `id` whose consumer may lag by `buffer` text events, and its
    /// reply end. `wake` is called on cancel.
    pub(crate) fn pair(
        id: u64,
        buffer: usize,
        cancel: Arc<AtomicBool>,
        wake: Arc<dyn Fn() + Send + Sync>,
        metrics: Arc<Metrics>,
    ) -> (Reply, Stream) {
        let buffer = buffer.max(1);
        let (tx, rx) = bounded(buffer + 1);
        (
            Reply { tx, buffer, done: false, stage: "submit queue", metrics },
            Stream { id, rx, cancel, wake, ended: false },
        )
    }

    /// True when a text event fits the consumer's buffer now.
    pub(crate) fn has_room(&self) -> bool {
        self.tx.len() < self.buffer
    }

    /// Send a text event; false (nothing sent) when the consumer's buffer is full.
    pub(crate) fn text(&mut self, text: String) -> bool {
        if self.tx.len() >= self.buffer {
            return false;
        }
        // The only sender never exceeds `buffer` non-terminal events, so this fits.
        let _ = self.tx.try_send(Event::Token { text });
        true
    }

    /// Send the terminal event.
    pub(crate) fn finish(mut self, ev: Event) {
        debug_assert!(ev.is_terminal());
        self.metrics.terminal(&ev);
        self.done = true;
        // Room for one event is always kept, so this cannot fail for a full buffer; a
        // dropped stream (disconnected) needs no event.
        let _ = self.tx.try_send(ev);
    }

    /// Drop a reply whose request was never accepted (the submit call itself failed): no
    /// event, not counted.
    pub(crate) fn discard(mut self) {
        self.done = true;
    }

    /// End with an error.
    pub(crate) fn fail(self, kind: ErrorKind, message: impl Into<String>) {
        self.finish(Event::Error { kind, message: message.into() });
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if !self.done {
            let ev = if self.metrics.shutting_down.load(Ordering::Acquire) {
                Event::Error { kind: ErrorKind::Shutdown, message: "the runtime shut down".into() }
            } else {
                Event::Error {
                    kind: ErrorKind::Internal,
                    message: format!(
                        "the {} failed while holding this request (it was restarted)",
                        self.stage
                    ),
                }
            };
            self.metrics.terminal(&ev);
            let _ = self.tx.try_send(ev);
        }
    }
}
