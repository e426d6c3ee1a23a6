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

use std::collections::{HashMap, VecDeque};
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

/// Most messages kept for an actor while it is being restarted.
const PARKED_CAP: usize = 1 << 16;

/// The current address of one actor, and the messages that arrived while it was down.
pub(crate) struct Slot<M> {
    actor: Option<ActorRef<M>>,
    parked: VecDeque<M>,
    /// Shut down: messages are dropped (requests in them end with `Shutdown`).
    closed: bool,
}

impl<M: ractor::Message> Slot<M> {
    fn empty() -> Mutex<Slot<M>> {
        Mutex::new(Slot { actor: None, parked: VecDeque::new(), closed: false })
    }
}

/// Send `msg` to the actor in `slot`; while it is down (being restarted), keep the message
/// for its successor. The lock is never held across the send itself.
fn send<M: ractor::Message>(slot: &Mutex<Slot<M>>, msg: M) {
    let mut msg = msg;
    loop {
        let actor = slot.lock().actor.clone();
        if let Some(a) = actor {
            match a.cast(msg) {
                Ok(()) => return,
                Err(ractor::MessagingErr::SendErr(m)) => msg = m,
                Err(e) => {
                    log::warn!("message to {:?} lost: {e}", a.get_name());
                    return;
                }
            }
            // The actor died and the supervisor has not cleared it yet: park the message.
            let mut s = slot.lock();
            if s.actor.as_ref().is_some_and(|b| b.get_id() != a.get_id()) {
                continue; // a successor is already there
            }
            return park(&mut s, msg);
        }
        let mut s = slot.lock();
        if s.actor.is_some() {
            continue; // restarted meanwhile
        }
        return park(&mut s, msg);
    }
}

fn park<M>(s: &mut Slot<M>, msg: M) {
    if s.closed {
        return;
    }
    if s.parked.len() < PARKED_CAP {
        s.parked.push_back(msg);
    } else {
        log::error!("an actor stayed down while {PARKED_CAP} messages waited for it; dropping one");
    }
}

/// Put `actor` in `slot` and hand it what waited.
fn set<M: ractor::Message>(slot: &Mutex<Slot<M>>, actor: ActorRef<M>) {
    let parked = {
        let mut s = slot.lock();
        s.actor = Some(actor.clone());
        std::mem::take(&mut s.parked)
    };
    for m in parked {
        send(slot, m);
    }
}

/// The current address of each actor of a device group. A restarted actor gets a new
/// reference; senders look it up per message (a short lock, never held across a send).
/// Messages for an actor that is down wait for its successor, so a restart costs only the
/// requests the failed actor itself held.
pub(crate) struct Links {
    pub fetcher: Mutex<Slot<FetcherMsg>>,
    pub merger: Mutex<Slot<MergerMsg>>,
    pub decoder: Mutex<Slot<DecoderMsg>>,
    pub evictor: Mutex<Slot<EvictorMsg>>,
}

impl Default for Links {
    fn default() -> Self {
        Links {
            fetcher: Slot::empty(),
            merger: Slot::empty(),
            decoder: Slot::empty(),
            evictor: Slot::empty(),
        }
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
    pub(crate) fn set_fetcher(&self, a: ActorRef<FetcherMsg>) {
        set(&self.fetcher, a)
    }
    pub(crate) fn set_merger(&self, a: ActorRef<MergerMsg>) {
        set(&self.merger, a)
    }
    pub(crate) fn set_decoder(&self, a: ActorRef<DecoderMsg>) {
        set(&self.decoder, a)
    }
    pub(crate) fn set_evictor(&self, a: ActorRef<EvictorMsg>) {
        set(&self.evictor, a)
    }

    /// Mark the actor of `slot` down (its successor will get what arrives meanwhile).
    pub(crate) fn clear<M>(slot: &Mutex<Slot<M>>) -> Option<ActorRef<M>> {
        slot.lock().actor.take()
    }

    /// At shutdown: take every actor and drop what waited.
    pub(crate) fn take_all(&self) -> Vec<ractor::ActorCell> {
        fn take<M>(slot: &Mutex<Slot<M>>) -> Option<ractor::ActorCell> {
            let mut s = slot.lock();
            s.closed = true;
            let parked = std::mem::take(&mut s.parked);
            let a = s.actor.take().map(|a| a.get_cell());
            drop(s);
            drop(parked);
            a
        }
        [take(&self.fetcher), take(&self.merger), take(&self.decoder), take(&self.evictor)]
            .into_iter()
            .flatten()
            .collect()
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
    /// Shared prompt prefixes on this device (`None`: prefix reuse is off).
    pub prefixes: Option<Mutex<crate::kv::prefix::PrefixIndex>>,
    /// What a shared prefix's key says about the base model.
    pub base_fingerprint: [u8; 32],
    pub max_seqs: usize,
    pub threads: usize,
    pub pending_cap: usize,
    pub slow_consumer_timeout: std::time::Duration,
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
