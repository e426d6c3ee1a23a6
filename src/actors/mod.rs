//! The runtime's actors (ractor): a supervisor and, per device, a fetcher, merger, decoder
//! and evictor — one straight line fetch → merge (dock) → decode → evict, with backwards
//! information (lease released, memory pressure, row ended) sent as messages to the evictor.
//!
//! Work enters through bounded crossbeam channels (the submit queue, the decode loop's
//! control channel); actor mailboxes only carry work that was already admitted. Handlers
//! never block: store fetches and adapter parsing run on blocking tasks, the decode loop on a
//! thread the decoder owns. Every request is a [`job::Job`] whose reply end sends exactly
//! one terminal event, even when the actor holding it fails.

pub(crate) mod decoder;
pub(crate) mod evictor;
pub(crate) mod fetcher;
pub(crate) mod job;
pub(crate) mod lease;
pub(crate) mod lifecycle;
pub(crate) mod merger;
pub(crate) mod supervisor;

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use parking_lot::{Mutex, RwLock};
use ractor::ActorRef;

use crate::engine::Engine;
use crate::kv::KvType;
use crate::memory::Ledger;
use crate::runtime::faults::Faults;
use crate::runtime::stats::Metrics;
use crate::store::{Digest, Store};

use decoder::DecoderMsg;
use evictor::EvictorMsg;
use fetcher::FetcherMsg;
use lease::Docked;
use merger::MergerMsg;

/// The current address of each actor of a device group. A restarted actor gets a new
/// reference; senders look it up per message (a short read lock, never held across a send
/// to anything that could block). A message to an actor that is down is dropped, and with
/// it any request it carried — whose reply then reports the failure.
#[derive(Default)]
pub(crate) struct Links {
    pub fetcher: RwLock<Option<ActorRef<FetcherMsg>>>,
    pub merger: RwLock<Option<ActorRef<MergerMsg>>>,
    pub decoder: RwLock<Option<ActorRef<DecoderMsg>>>,
    pub evictor: RwLock<Option<ActorRef<EvictorMsg>>>,
}

fn send<M: ractor::Message>(slot: &RwLock<Option<ActorRef<M>>>, msg: M) {
    let r = slot.read().clone();
    match r {
        Some(a) => {
            if a.cast(msg).is_err() {
                log::debug!("actor {:?} is down; message dropped", a.get_name());
            }
        }
        None => log::debug!("actor is down; message dropped"),
    }
}

impl Links {
    pub(crate) fn fetcher(&self, m: FetcherMsg) {
        send(&self.fetcher, m)
    }
    pub(crate) fn merger(&self, m: MergerMsg) {
        send(&self.merger, m)
    }
    pub(crate) fn decoder(&self, m: DecoderMsg) {
        send(&self.decoder, m)
    }
    pub(crate) fn evictor(&self, m: EvictorMsg) {
        send(&self.evictor, m)
    }
}

/// Everything one device group shares: its ledger, the engine, the store, limits, links.
pub(crate) struct DeviceCtx {
    /// Prefix of the group's actor names, unique per runtime (`loradock-rt3-cpu0`).
    pub prefix: String,
    pub ledger: Ledger,
    pub engine: Arc<Engine>,
    pub store: Arc<Store>,
    pub kv_type: KvType,
    pub max_seqs: usize,
    pub threads: usize,
    pub pending_cap: usize,
    pub zero_on_undock: bool,
    pub links: Links,
    pub metrics: Arc<Metrics>,
    pub faults: Option<Arc<Faults>>,
    /// Adapters docked on this device by digest (weak: the merger's table and the leases
    /// own them). The fetcher looks here to skip fetching what is already docked.
    pub docked: RwLock<HashMap<Digest, Weak<Docked>>>,
    /// Wakes an idle decode loop (a request was cancelled).
    pub wake: (crossbeam::channel::Sender<()>, crossbeam::channel::Receiver<()>),
    /// Decode threads started (joined at shutdown).
    pub threads_started: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl DeviceCtx {
    /// The docked entry for `d`, pinned (the caller's `Arc` keeps it from being undocked).
    pub(crate) fn docked(&self, d: &Digest) -> Option<Arc<Docked>> {
        self.docked.read().get(d).and_then(Weak::upgrade)
    }
}
