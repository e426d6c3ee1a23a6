//! A request as it travels through the actors.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::generate::{FinishReason, GenerateParams};
use crate::kv::KvCache;
use crate::lora::compose::Combination;
use crate::runtime::stream::{ErrorKind, Event, Reply, Usage};
use crate::runtime::Policy;
use crate::store::{Digest, FetchedAdapter, Source};

use super::lease::{Docked, Lease};

/// One adapter of a request, resolved at submit time (name and generation fixed).
#[derive(Clone)]
pub(crate) struct AdapterSpec {
    /// `name#generation`, or the source of an inline adapter: for messages.
    pub label: String,
    pub source: Source,
    pub digest: Option<Digest>,
    pub policy: Policy,
}

/// An accepted request.
pub(crate) struct Job {
    pub prompt: Vec<u32>,
    pub params: GenerateParams,
    pub adapters: Vec<(AdapterSpec, f32)>,
    pub combination: Combination,
    pub reply: Reply,
    pub cancel: Arc<AtomicBool>,
    pub submitted: Instant,
}

impl Job {
    pub(crate) fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Acquire)
    }

    /// End a request that was cancelled before it reached the decode loop.
    pub(crate) fn end_cancelled(self) {
        let usage = Usage {
            prompt_tokens: self.prompt.len(),
            queue_ms: self.submitted.elapsed().as_secs_f64() * 1e3,
            ..Usage::default()
        };
        self.reply.finish(Event::Done { reason: FinishReason::Cancelled, usage });
    }

    pub(crate) fn fail(self, kind: ErrorKind, message: impl Into<String>) {
        self.reply.fail(kind, message)
    }

    pub(crate) fn at(mut self, stage: &'static str) -> Job {
        self.reply.stage = stage;
        self
    }
}

/// One adapter of a job as the fetcher hands it over.
pub(crate) enum Part {
    /// Already docked (pinned by this `Arc` until the merger leases it).
    Docked(Arc<Docked>),
    /// Bytes on the host, verified, not yet parsed.
    Fetched(Arc<FetchedAdapter>),
}

impl Part {
    pub(crate) fn digest(&self) -> Digest {
        match self {
            Part::Docked(d) => d.digest,
            Part::Fetched(f) => f.digest(),
        }
    }
}

/// A job with its adapters on the host.
pub(crate) struct Staged {
    pub job: Job,
    pub parts: Vec<Part>,
}

/// A job ready to decode: its leases (one per adapter, weights attached) and its KV pages.
pub(crate) struct Ready {
    pub job: Job,
    pub leases: Vec<(Lease, f32)>,
    pub kv: KvCache,
}
