//! The merger: the only actor that docks and undocks. It parses and validates fetched bytes
//! (on a blocking task), reserves ledger bytes for adapters and KV pages before anything is
//! allocated, owns the adapter lifecycle per device, hands admitted requests with their
//! leases to the decoder, and parks requests that do not fit yet (asking the evictor for
//! relief) in a bounded queue. It undocks only what the evictor names and nobody holds.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::error::{Error, Result};
use crate::kv::prefix::{block_keys, context_key, SharedPrefix, BLOCK};
use crate::kv::{KvCache, PAGE};
use crate::lora::compose::{materialize, Combination};
use crate::lora::LoraAdapter;
use crate::memory::{Category, Reservation};
use crate::model::gguf::GgufFile;
use crate::runtime::faults::{maybe_panic, Component};
use crate::runtime::stats::{add, sub};
use crate::runtime::stream::ErrorKind;
use crate::runtime::Policy;
use crate::store::{Digest, FetchedAdapter, Layout};

use super::decoder::DecoderMsg;
use super::evictor::EvictorMsg;
use super::job::{Job, Part, Ready, Staged};
use super::lease::{Docked, Lease};
use super::lifecycle::{Lifecycle, Phase};
use super::DeviceCtx;

/// Messages of the merger.
pub(crate) enum MergerMsg {
    /// The fetcher started fetching this digest.
    FetchStarted(Digest),
    /// A fetch of this digest failed.
    FetchFailed(Digest),
    /// A request whose adapters are on the host (or docked).
    Staged(Staged),
    /// Parsing finished for a request's fetched parts: per part index, the adapter (or why
    /// not) and the bytes reserved for it.
    Parsed { staged: Staged, results: Vec<(usize, Result<LoraAdapter>, Reservation)>, started: Instant },
    /// A composite finished building.
    Composed {
        staged: Staged,
        key: Digest,
        result: Result<LoraAdapter>,
        reservation: Reservation,
        started: Instant,
    },
    /// The evictor: undock these if nobody holds them (disposable adapters released).
    Undock(Vec<Digest>),
    /// The evictor: under pressure, undock unheld adapters from `candidates` (in order)
    /// until `need` bytes are free.
    Relieve { candidates: Vec<Digest>, need: u64 },
    /// Memory was given back elsewhere (a row ended): retry parked requests.
    MemoryFreed,
    /// A request was cancelled: end parked requests that were.
    Sweep,
    /// The evictor was restarted: tell it again what is docked.
    Resync,
}

#[derive(PartialEq, Eq)]
enum Pressure {
    /// No relief asked for.
    Idle,
    /// Relief asked, no answer yet.
    Asked,
    /// The last relief freed nothing: wait for memory to come back before asking again.
    Exhausted,
}

pub(crate) struct MergerState {
    ctx: Arc<DeviceCtx>,
    table: HashMap<Digest, Arc<Docked>>,
    life: Lifecycle,
    /// Requests waiting for memory. They hold nothing (no adapter pins, no bytes): on retry
    /// they are staged again by the fetcher, which finds what is still docked.
    pending: VecDeque<Job>,
    /// Requests waiting for an adapter another request is docking now, by its digest.
    waiting: HashMap<Digest, Vec<Staged>>,
    pressure: Pressure,
}

pub(crate) struct Merger;

impl Actor for Merger {
    type Msg = MergerMsg;
    type State = MergerState;
    type Arguments = Arc<DeviceCtx>;

    async fn pre_start(
        &self,
        _me: ActorRef<MergerMsg>,
        ctx: Arc<DeviceCtx>,
    ) -> Result<MergerState, ActorProcessingErr> {
        Ok(MergerState {
            ctx,
            table: HashMap::new(),
            life: Lifecycle::default(),
            pending: VecDeque::new(),
            waiting: HashMap::new(),
            pressure: Pressure::Idle,
        })
    }

    async fn handle(
        &self,
        me: ActorRef<MergerMsg>,
        msg: MergerMsg,
        st: &mut MergerState,
    ) -> Result<(), ActorProcessingErr> {
        maybe_panic(&st.ctx.faults, Component::Merger);
        match msg {
            MergerMsg::FetchStarted(d) => {
                if matches!(st.life.phase(&d), Phase::Absent | Phase::Failed) {
                    st.life.go(d, Phase::Fetching);
                }
            }
            MergerMsg::FetchFailed(d) => {
                if st.life.phase(&d) == Phase::Fetching {
                    st.life.go(d, Phase::Failed);
                }
            }
            MergerMsg::Staged(s) => st.advance(&me, s),
            MergerMsg::Parsed { staged, results, started } => st.parsed(&me, staged, results, started),
            MergerMsg::Composed { staged, key, result, reservation, started } => {
                st.composed(&me, staged, key, result, reservation, started)
            }
            MergerMsg::Undock(ds) => {
                let freed: u64 = ds.iter().map(|d| st.undock(d, false)).sum();
                if freed > 0 {
                    st.memory_back(&me);
                }
            }
            MergerMsg::Relieve { candidates, need } => {
                let mut freed = 0;
                for d in &candidates {
                    if freed >= need {
                        break;
                    }
                    freed += st.undock(d, true);
                }
                st.pressure = if freed > 0 { Pressure::Idle } else { Pressure::Exhausted };
                if freed > 0 {
                    st.retry(&me);
                }
            }
            MergerMsg::MemoryFreed => st.memory_back(&me),
            MergerMsg::Sweep => {
                let before = st.pending.len();
                let (gone, keep): (Vec<_>, Vec<_>) = st.pending.drain(..).partition(|j| j.cancelled());
                st.pending = keep.into();
                sub(&st.ctx.metrics.pending_depth, (before - st.pending.len()) as u64);
                for j in gone {
                    j.end_cancelled();
                }
            }
            MergerMsg::Resync => {
                // A relief asked of the old evictor will not come.
                st.pressure = Pressure::Idle;
                st.retry(&me);
                for e in st.table.values() {
                    st.ctx.links.evictor(EvictorMsg::Docked { digest: e.digest, policy: e.policy });
                    if Arc::strong_count(e) == 1 {
                        st.ctx.links.evictor(EvictorMsg::Released(e.digest));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Bytes an adapter will take in compute form (f32 A and B), from its headers.
fn f32_bytes(f: &FetchedAdapter, label: &str) -> Result<u64> {
    match f.layout() {
        Layout::PeftDir => {
            let bytes = f.file("adapter_model.safetensors").expect("a PEFT adapter has its weights");
            let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| {
                Error::adapter(label, format!("adapter_model.safetensors: invalid safetensors: {e}"))
            })?;
            Ok(meta.tensors().values().map(|t| t.shape.iter().product::<usize>() as u64 * 4).sum())
        }
        Layout::GgufFile => {
            let bytes = f.files()[0].bytes.clone();
            let g = GgufFile::from_bytes(std::path::Path::new(label), bytes)?;
            Ok(g.tensors.iter().map(|t| t.dims.iter().product::<u64>() * 4).sum())
        }
    }
}

/// Parse and validate fetched bytes against the base.
fn parse(f: &FetchedAdapter, label: &str, cfg: &crate::model::LlamaConfig) -> Result<LoraAdapter> {
    match f.layout() {
        Layout::PeftDir => crate::lora::peft::parse_peft(
            label,
            f.file("adapter_config.json").expect("a PEFT adapter has its config"),
            f.file("adapter_model.safetensors").expect("a PEFT adapter has its weights").clone(),
            cfg,
        ),
        Layout::GgufFile => crate::lora::gguf_lora::parse_gguf_lora(label, f.files()[0].bytes.clone(), cfg),
    }
}

/// Positions of KV a request reserves: prompt + `max_tokens`, in whole pages.
fn kv_positions(job: &Job) -> usize {
    (job.prompt.len() + job.params.max_tokens).div_ceil(PAGE) * PAGE
}

/// The key a composite is docked under: its method and the ordered (digest, weight) list.
fn composite_key(method: &Combination, parts: &[(Digest, f32)]) -> Digest {
    let mut s = method.key();
    for (d, w) in parts {
        s.push_str(&format!("|{d}:{:08x}", w.to_bits()));
    }
    Digest::of_bytes(s.as_bytes())
}

impl MergerState {
    /// Move a request on: adopt docked parts, parse fetched ones, build a composite, or admit.
    fn advance(&mut self, me: &ActorRef<MergerMsg>, s: Staged) {
        let Staged { job, mut parts } = s;
        let job = job.at("merger");
        if job.cancelled() {
            return self.drop_staged(Staged { job, parts }, |j| j.end_cancelled());
        }
        for p in parts.iter_mut() {
            match p {
                Part::Fetched(f) => {
                    self.life.reach(f.digest(), Phase::OnHost);
                    if let Some(e) = self.table.get(&f.digest()) {
                        *p = Part::Docked(Arc::clone(e));
                    }
                }
                Part::Docked(e) => {
                    if !self.table.contains_key(&e.digest) {
                        // Docked by a merger that was restarted: adopt it.
                        self.adopt(Arc::clone(e));
                    }
                }
            }
        }
        // An adapter being docked for another request: wait for it rather than parse twice.
        if let Some(d) = parts.iter().map(Part::digest).find(|d| self.life.phase(d) == Phase::Docking) {
            self.waiting.entry(d).or_default().push(Staged { job, parts });
            return;
        }
        let staged = Staged { job, parts };
        if staged.job.combination != Combination::Cat && !staged.parts.is_empty() {
            return self.compose(me, staged);
        }
        let need: Vec<usize> =
            (0..staged.parts.len()).filter(|i| matches!(staged.parts[*i], Part::Fetched(_))).collect();
        if need.is_empty() {
            let entries = staged
                .parts
                .iter()
                .map(|p| match p {
                    Part::Docked(e) => Arc::clone(e),
                    Part::Fetched(_) => unreachable!("every part is docked"),
                })
                .collect();
            return self.admit(staged.job, entries, staged.parts);
        }
        // Only one parse per digest (a request may name an adapter twice).
        let mut need = need;
        let mut seen = std::collections::HashSet::new();
        need.retain(|&i| seen.insert(staged.parts[i].digest()));
        // Dock nothing for a request whose KV pages will not fit with it.
        let mut sizes = Vec::with_capacity(need.len());
        for &i in &need {
            let Part::Fetched(f) = &staged.parts[i] else { unreachable!() };
            match f32_bytes(f, &staged.job.adapters[i].0.label) {
                Ok(b) => sizes.push(b),
                Err(e) => return self.fail_parts(staged, &need, ErrorKind::Adapter, e.to_string()),
            }
        }
        let total = sizes.iter().sum::<u64>() + self.kv_bytes(&staged.job);
        let free = self.ctx.ledger.free();
        if total > free {
            let e = Error::OverBudget {
                ledger: self.ctx.ledger.name().to_string(),
                category: Category::Adapters.name(),
                requested: total,
                free,
                budget: self.ctx.ledger.budget(),
            };
            return self.park(staged, total, e);
        }
        // Reserve every adapter's bytes before parsing allocates them.
        let mut results = Vec::with_capacity(need.len());
        for (&i, &bytes) in need.iter().zip(&sizes) {
            match self.ctx.ledger.try_reserve(Category::Adapters, bytes) {
                Ok(r) => results.push((i, r)),
                Err(e) => {
                    drop(results);
                    return self.park(staged, total, e);
                }
            }
        }
        for &i in &need {
            self.life.go(staged.parts[i].digest(), Phase::Docking);
        }
        let cfg = self.ctx.engine.loaded.model.config.clone();
        let me = me.clone();
        let started = Instant::now();
        tokio::task::spawn_blocking(move || {
            let results = results
                .into_iter()
                .map(|(i, r)| {
                    let Part::Fetched(f) = &staged.parts[i] else { unreachable!() };
                    (i, parse(f, &staged.job.adapters[i].0.label, &cfg), r)
                })
                .collect();
            let _ = me.cast(MergerMsg::Parsed { staged, results, started });
        });
    }

    fn parsed(
        &mut self,
        me: &ActorRef<MergerMsg>,
        mut staged: Staged,
        results: Vec<(usize, Result<LoraAdapter>, Reservation)>,
        started: Instant,
    ) {
        let mut failure = None;
        for (i, res, mut reservation) in results {
            let d = staged.parts[i].digest();
            let spec = &staged.job.adapters[i].0;
            match res {
                Ok(adapter) => {
                    if let Some(e) = self.table.get(&d) {
                        // Docked meanwhile by another request: use that one.
                        staged.parts[i] = Part::Docked(Arc::clone(e));
                        continue;
                    }
                    reservation.shrink_to(adapter.bytes() as u64);
                    let e = Arc::new(Docked {
                        digest: d,
                        label: spec.label.clone(),
                        adapter,
                        policy: spec.policy,
                        reservation,
                    });
                    add(&self.ctx.metrics.dock_us_sum, started.elapsed().as_micros() as u64);
                    self.dock(Arc::clone(&e));
                    staged.parts[i] = Part::Docked(e);
                }
                Err(e) => {
                    add(&self.ctx.metrics.dock_failures, 1);
                    if self.life.phase(&d) == Phase::Docking {
                        self.life.go(d, Phase::Failed);
                    }
                    let m = e.to_string();
                    failure.get_or_insert(if m.contains(&spec.label) {
                        m
                    } else {
                        format!("adapter {}: {m}", spec.label)
                    });
                }
            }
        }
        let woken: Vec<Staged> =
            staged.parts.iter().filter_map(|p| self.waiting.remove(&p.digest())).flatten().collect();
        match failure {
            Some(msg) => self.drop_staged(staged, |j| j.fail(ErrorKind::Adapter, msg)),
            None => self.advance(me, staged),
        }
        for s in woken {
            self.advance(me, s);
        }
    }

    /// Build (or find) the composite of a request's adapters by its approximate method.
    fn compose(&mut self, me: &ActorRef<MergerMsg>, staged: Staged) {
        let keyed: Vec<(Digest, f32)> =
            staged.parts.iter().zip(&staged.job.adapters).map(|(p, (_, w))| (p.digest(), *w)).collect();
        let key = composite_key(&staged.job.combination, &keyed);
        if self.life.phase(&key) == Phase::Docking {
            self.waiting.entry(key).or_default().push(staged);
            return;
        }
        if let Some(e) = self.table.get(&key).cloned() {
            let Staged { job, parts } = staged;
            return self.admit_composite(job, e, parts);
        }
        let mut bound = 0u64;
        for (p, (spec, _)) in staged.parts.iter().zip(&staged.job.adapters) {
            bound += match p {
                Part::Docked(e) => e.adapter.bytes() as u64,
                Part::Fetched(f) => match f32_bytes(f, &spec.label) {
                    Ok(b) => b,
                    Err(e) => {
                        let msg = e.to_string();
                        return self.drop_staged(staged, |j| j.fail(ErrorKind::Adapter, msg));
                    }
                },
            };
        }
        // The composite's rank never exceeds the sum of its parts' ranks.
        let reservation = match self.ctx.ledger.try_reserve(Category::Adapters, bound) {
            Ok(r) => r,
            Err(e) => {
                let need = bound + self.kv_bytes(&staged.job);
                return self.park(staged, need, e);
            }
        };
        self.life.reach(key, Phase::Docking);
        let cfg = self.ctx.engine.loaded.model.config.clone();
        let me = me.clone();
        let started = Instant::now();
        tokio::task::spawn_blocking(move || {
            let result = (|| {
                let mut owned = Vec::new();
                for (p, (spec, _)) in staged.parts.iter().zip(&staged.job.adapters) {
                    if let Part::Fetched(f) = p {
                        owned.push(parse(f, &spec.label, &cfg)?);
                    }
                }
                let mut it = owned.iter();
                let inputs: Vec<(&LoraAdapter, f32)> = staged
                    .parts
                    .iter()
                    .zip(&staged.job.adapters)
                    .map(|(p, (_, w))| match p {
                        Part::Docked(e) => (&e.adapter, *w),
                        Part::Fetched(_) => (it.next().expect("parsed in order"), *w),
                    })
                    .collect();
                materialize(&inputs, &staged.job.combination)
            })();
            let _ = me.cast(MergerMsg::Composed { staged, key, result, reservation, started });
        });
    }

    fn composed(
        &mut self,
        me: &ActorRef<MergerMsg>,
        staged: Staged,
        key: Digest,
        result: Result<LoraAdapter>,
        mut reservation: Reservation,
        started: Instant,
    ) {
        let woken = self.waiting.remove(&key).unwrap_or_default();
        match result {
            Ok(mut adapter) => {
                let e = match self.table.get(&key) {
                    Some(e) => Arc::clone(e),
                    None => {
                        let names: Vec<&str> =
                            staged.job.adapters.iter().map(|(s, _)| s.label.as_str()).collect();
                        adapter.name = format!("{}({})", staged.job.combination.key(), names.join("+"));
                        reservation.shrink_to(adapter.bytes() as u64);
                        let e = Arc::new(Docked {
                            digest: key,
                            label: adapter.name.clone(),
                            adapter,
                            policy: Policy::Disposable,
                            reservation,
                        });
                        add(&self.ctx.metrics.dock_us_sum, started.elapsed().as_micros() as u64);
                        self.dock(Arc::clone(&e));
                        e
                    }
                };
                let Staged { job, parts } = staged;
                self.admit_composite(job, e, parts);
            }
            Err(e) => {
                add(&self.ctx.metrics.dock_failures, 1);
                self.life.go(key, Phase::Failed);
                let msg = e.to_string();
                self.drop_staged(staged, |j| j.fail(ErrorKind::Adapter, msg));
            }
        }
        for s in woken {
            self.advance(me, s);
        }
    }

    fn admit_composite(&mut self, job: Job, e: Arc<Docked>, parts: Vec<Part>) {
        // The request uses the composite alone, at weight 1 (its weights are inside).
        let mut job = job;
        let spec = job.adapters[0].0.clone();
        job.adapters = vec![(spec, 1.0)];
        self.admit(job, vec![e], parts);
    }

    /// Reserve KV pages and hand the request to the decoder with its leases.
    fn admit(&mut self, job: Job, entries: Vec<Arc<Docked>>, parts: Vec<Part>) {
        // One lease per distinct adapter; an adapter named twice gets the sum of its weights
        // (the same exact composite).
        let mut merged: Vec<(Arc<Docked>, f32)> = Vec::with_capacity(entries.len());
        for (e, w) in entries.into_iter().zip(job.adapters.iter().map(|(_, w)| *w)) {
            match merged.iter_mut().find(|(m, _)| m.digest == e.digest) {
                Some((_, mw)) => *mw += w,
                None => merged.push((e, w)),
            }
        }
        match self.kv_for(&job, &merged) {
            Ok(kv) => {
                let leases = merged
                    .into_iter()
                    .map(|(e, w)| {
                        self.ctx.links.evictor(EvictorMsg::Used(e.digest));
                        (Lease::new(e, Arc::clone(&self.ctx)), w)
                    })
                    .collect();
                drop(parts);
                let job = job.at("decoder");
                self.ctx.links.decoder(DecoderMsg::Admit(Box::new(Ready { job, leases, kv })));
            }
            Err(e) => {
                drop(merged);
                let need = match &e {
                    Error::OverBudget { requested, .. } => *requested,
                    _ => 0,
                };
                self.park(Staged { job, parts }, need, e)
            }
        }
    }

    /// The request's KV cache, reserved on the ledger. With prefix reuse on, the whole pages
    /// of its prompt (before the last token) come from a running request's shared prefix when
    /// one has the same base, adapters by content hash, weights and tokens; otherwise this
    /// request computes them into a new shared prefix that later requests can read.
    fn kv_for(&self, job: &Job, adapters: &[(Arc<Docked>, f32)]) -> Result<KvCache> {
        let cfg = &self.ctx.engine.loaded.model.config;
        let (total, kind, ledger) = (kv_positions(job), self.ctx.kv_type, &self.ctx.ledger);
        let Some(index) = &self.ctx.prefixes else { return KvCache::reserved(cfg, total, kind, ledger) };
        let ids: Vec<([u8; 32], f32)> = adapters.iter().map(|(e, w)| (*e.digest.bytes(), *w)).collect();
        let keys = block_keys(&context_key(&self.ctx.base_fingerprint, kind, &ids), &job.prompt);
        if keys.is_empty() {
            return KvCache::reserved(cfg, total, kind, ledger);
        }
        let found = index.lock().lookup(&keys);
        if let Some((prefix, n)) = found {
            return KvCache::over_prefix(cfg, total, kind, prefix, n, ledger);
        }
        let prefix = SharedPrefix::reserved(cfg, keys.len() * BLOCK, kind, ledger)?;
        let kv = KvCache::over_prefix(cfg, total, kind, Arc::clone(&prefix), prefix.len(), ledger)?;
        index.lock().insert(&keys, &prefix);
        Ok(kv)
    }

    /// Bytes of KV pages a request reserves (see [`kv_positions`]).
    fn kv_bytes(&self, job: &Job) -> u64 {
        KvCache::bytes_for(&self.ctx.engine.loaded.model.config, kv_positions(job), self.ctx.kv_type)
    }

    /// Park a request that does not fit now (its holds released), or end it when it never
    /// will. `need`: the bytes it must reserve now (KV pages and adapters not docked).
    fn park(&mut self, staged: Staged, need: u64, e: Error) {
        let stats = self.ctx.ledger.stats();
        let fixed = stats.by_category[Category::BaseWeights as usize];
        let bytes = need.saturating_sub(self.ctx.ledger.free());
        if need.max(self.kv_bytes(&staged.job)) > stats.budget_bytes.saturating_sub(fixed) {
            let msg = format!("{e}; it cannot fit even with nothing else running");
            return self.drop_staged(staged, |j| j.fail(ErrorKind::OverBudget, msg));
        }
        if self.pending.len() >= self.ctx.pending_cap {
            let limit = self.ctx.pending_cap;
            return self.drop_staged(staged, |j| {
                j.fail(ErrorKind::Busy, format!("busy: the memory wait queue is full ({limit} at most); {e}"))
            });
        }
        let mut job = None;
        self.drop_staged(staged, |j| job = Some(j));
        self.pending.push_back(job.expect("set").at("merger"));
        add(&self.ctx.metrics.pending_depth, 1);
        if self.pressure == Pressure::Idle {
            self.pressure = Pressure::Asked;
            self.ctx.links.evictor(EvictorMsg::Pressure { need: bytes });
        }
    }

    fn memory_back(&mut self, me: &ActorRef<MergerMsg>) {
        if self.pressure == Pressure::Exhausted {
            self.pressure = Pressure::Idle;
        }
        self.retry(me);
    }

    /// Try parked requests again, oldest first.
    fn retry(&mut self, me: &ActorRef<MergerMsg>) {
        let _ = me;
        let waiting: Vec<Job> = self.pending.drain(..).collect();
        sub(&self.ctx.metrics.pending_depth, waiting.len() as u64);
        for j in waiting {
            self.ctx.links.fetcher(super::fetcher::FetcherMsg::Fetch(j.at("fetcher")));
        }
    }

    /// End a request that will not be admitted; its parts' holds are released (and the
    /// evictor hears of them, so disposable adapters docked for it go).
    fn drop_staged(&mut self, s: Staged, end: impl FnOnce(Job)) {
        let Staged { job, parts } = s;
        end(job);
        for p in parts {
            if let Part::Docked(e) = p {
                let d = e.digest;
                drop(e);
                self.ctx.links.evictor(EvictorMsg::Released(d));
            }
        }
    }

    fn fail_parts(&mut self, s: Staged, need: &[usize], kind: ErrorKind, msg: String) {
        for &i in need {
            let d = s.parts[i].digest();
            self.life.go(d, Phase::Failed);
        }
        add(&self.ctx.metrics.dock_failures, 1);
        self.drop_staged(s, |j| j.fail(kind, msg));
    }

    fn dock(&mut self, e: Arc<Docked>) {
        self.life.go(e.digest, Phase::Docked);
        self.ctx.docked.write().insert(e.digest, Arc::downgrade(&e));
        add(&self.ctx.metrics.docks, 1);
        add(&self.ctx.metrics.docked, 1);
        self.ctx.links.evictor(EvictorMsg::Docked { digest: e.digest, policy: e.policy });
        self.table.insert(e.digest, e);
    }

    fn adopt(&mut self, e: Arc<Docked>) {
        self.life.reach(e.digest, Phase::Docking);
        self.life.go(e.digest, Phase::Docked);
        add(&self.ctx.metrics.docks, 1);
        add(&self.ctx.metrics.docked, 1);
        self.ctx.links.evictor(EvictorMsg::Docked { digest: e.digest, policy: e.policy });
        self.table.insert(e.digest, e);
    }

    /// Undock `d` if nobody holds it; the bytes freed (0 when it stays).
    fn undock(&mut self, d: &Digest, pressure: bool) -> u64 {
        let Some(e) = self.table.get(d) else { return 0 };
        if Arc::strong_count(e) > 1 {
            return 0;
        }
        let mut e = self.table.remove(d).expect("present");
        self.ctx.docked.write().remove(d);
        self.life.go(*d, Phase::Undocking);
        let bytes = e.reservation.bytes();
        if self.ctx.zero_on_undock && e.policy == Policy::Disposable {
            if let Some(m) = Arc::get_mut(&mut e) {
                for p in m.adapter.layers.iter_mut().flatten().flatten() {
                    p.a.fill(0.0);
                    p.b.fill(0.0);
                }
            }
        }
        log::debug!("{}: undocked {} ({bytes} bytes)", self.ctx.prefix, e.label);
        drop(e);
        self.life.go(*d, Phase::Absent);
        add(&self.ctx.metrics.undocks, 1);
        sub(&self.ctx.metrics.docked, 1);
        if pressure {
            add(&self.ctx.metrics.evictions, 1);
        }
        self.ctx.links.evictor(EvictorMsg::Undocked(*d));
        bytes
    }
}

impl Drop for MergerState {
    /// The merger stopped or failed: its table goes (entries still leased live on in the
    /// leases, and are adopted again if a request brings one back); parked requests end
    /// with an error through their replies.
    fn drop(&mut self) {
        // Out of the table is undocked: the bytes go when the last lease does.
        sub(&self.ctx.metrics.docked, self.table.len() as u64);
        add(&self.ctx.metrics.undocks, self.table.len() as u64);
        sub(&self.ctx.metrics.pending_depth, self.pending.len() as u64);
        self.table.clear();
        self.pending.clear();
        self.waiting.clear();
    }
}
