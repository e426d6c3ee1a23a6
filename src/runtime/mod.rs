//! The public Rust API of the runtime: one base model resident, adapters fetched just in
//! time, docked, used by continuous batches and undocked, under one byte budget.
//!
//! ```no_run
//! use std::time::Duration;
//! use loradock::runtime::{Runtime, RuntimeConfig, Request, Policy, Event, Next};
//!
//! let mut cfg = RuntimeConfig::new("model.gguf", "/var/cache/loradock");
//! cfg.store.roots = vec!["/srv/adapters".into()];
//! cfg.store.allow_unverified = true;
//! let rt = Runtime::new(cfg)?;
//! rt.register_adapter("french", "/srv/adapters/french", None, Policy::KeepWarm)?;
//! let mut s = rt.submit(Request::prompt("Bonjour").with_adapter("french", 1.0).max_tokens(32))?;
//! while let Next::Event(ev) = s.next(Duration::from_secs(30)) {
//!     match ev {
//!         Event::Token { text } => print!("{text}"),
//!         Event::Done { usage, .. } => println!("\n{} tokens", usage.completion_tokens),
//!         Event::Error { message, .. } => eprintln!("{message}"),
//!     }
//! }
//! rt.shutdown();
//! # Ok::<(), loradock::Error>(())
//! ```
//!
//! Thread safety: [`Runtime`] is `Send + Sync` (share it with `Arc`); a [`Stream`] is `Send`
//! and read by one consumer.

pub mod config;
pub mod faults;
pub mod request;
pub mod stats;
pub mod stream;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::channel::{bounded, Receiver, Sender, TrySendError};
use parking_lot::{Mutex, RwLock};
use ractor::{Actor, ActorRef};

pub use config::{RestartPolicy, RuntimeConfig};
pub use faults::{Component, Faults};
pub use request::{AdapterRef, Input, Policy, Request};
pub use stats::{PrefixStats, Stats};
pub use stream::{ErrorKind, Event, Next, Stream, Usage};

use crate::actors::job::{AdapterSpec, Job};
use crate::actors::supervisor::{Supervisor, SupervisorArgs, SupervisorMsg};
use crate::actors::{DeviceCtx, Links};
use crate::chat::ChatTemplate;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::memory::{Category, Ledger, Reservation};
use crate::store::{Digest, Source, Store};
use stats::{add, get, Metrics};
use stream::Reply;

/// A registered adapter: one generation of a name.
#[derive(Debug, Clone)]
struct Registered {
    generation: u64,
    source: Source,
    digest: Option<Digest>,
    policy: Policy,
}

static NEXT_RUNTIME: AtomicU64 = AtomicU64::new(1);

/// What identifies the base model in shared-prefix keys: its configuration, weight bytes and
/// the bytes of its first embedding rows (one runtime serves one base; this keeps keys from two
/// bases apart should an index ever be shared).
fn base_fingerprint(m: &crate::model::LlamaModel) -> [u8; 32] {
    use sha2::{Digest as _, Sha256};
    let mut h = Sha256::new();
    h.update(format!("{:?}", m.config).as_bytes());
    h.update((m.weight_bytes() as u64).to_le_bytes());
    let b = m.embed.bytes();
    h.update(&b[..b.len().min(1 << 16)]);
    h.finalize().into()
}

/// A running loradock node (see the module docs).
pub struct Runtime {
    id: u64,
    cfg: RuntimeConfig,
    engine: Arc<Engine>,
    template: Option<ChatTemplate>,
    store: Arc<Store>,
    device: Arc<DeviceCtx>,
    metrics: Arc<Metrics>,
    registry: RwLock<HashMap<String, Registered>>,
    generation: AtomicU64,
    next_request: AtomicU64,
    submit_tx: Sender<Job>,
    submit_rx: Receiver<Job>,
    poked: Arc<AtomicBool>,
    accepting: Arc<AtomicBool>,
    supervisor: Mutex<Option<ActorRef<SupervisorMsg>>>,
    tokio: Mutex<Option<tokio::runtime::Runtime>>,
    _base: Reservation,
}

fn check_limit(name: &str, v: usize, lo: usize, hi: usize) -> Result<()> {
    if !(lo..=hi).contains(&v) {
        return Err(Error::invalid(name, format!("{v} is not between {lo} and {hi}")));
    }
    Ok(())
}

/// Bytes of the model's weights (tied matrices counted once).
fn model_bytes(m: &crate::model::LlamaModel) -> u64 {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    let mut add = |q: &crate::tensor::QMatrix| {
        if seen.insert(q.bytes().as_ptr() as usize) {
            total += q.bytes_len() as u64;
        }
    };
    add(&m.embed);
    add(&m.lm_head);
    for l in &m.layers {
        for q in [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down] {
            add(q);
        }
    }
    let small: usize = m.layers.iter().map(|l| (l.attn_norm.len() + l.ffn_norm.len()) * 4).sum();
    total + small as u64 + m.norm.len() as u64 * 4
}

impl Runtime {
    /// Load the model, charge its weights to the device ledger, open the store, start the
    /// actors and wait until they are ready. Errors: an invalid limit, a model that does not
    /// load or does not fit the budget, a store that cannot open its cache.
    pub fn new(cfg: RuntimeConfig) -> Result<Runtime> {
        check_limit("max_seqs", cfg.max_seqs, 1, 4096)?;
        check_limit("submit_queue", cfg.submit_queue, 1, 1 << 20)?;
        check_limit("pending_queue", cfg.pending_queue, 1, 1 << 20)?;
        check_limit("stream_buffer", cfg.stream_buffer, 1, 1 << 20)?;
        check_limit("max_context", cfg.max_context, 1, 1 << 24)?;
        let engine = Arc::new(Engine::load(&cfg.model, &cfg.load)?);
        let id = NEXT_RUNTIME.fetch_add(1, Ordering::Relaxed);
        let ledger = Ledger::new("cpu", cfg.budget_bytes);
        let base = ledger.try_reserve(Category::BaseWeights, model_bytes(&engine.loaded.model))?;
        let store = Arc::new(Store::new(cfg.store.clone())?);
        let template = match &engine.tokenizer {
            Some(t) => ChatTemplate::from_tokenizer(t)?,
            None => None,
        };
        let metrics = Arc::new(Metrics::new());
        let prefix = format!("loradock-rt{id}-cpu0");
        let device = Arc::new(DeviceCtx {
            prefix: prefix.clone(),
            ledger,
            engine: Arc::clone(&engine),
            store: Arc::clone(&store),
            kv_type: cfg.kv_type,
            prefixes: cfg.prefix_reuse.then(|| Mutex::new(crate::kv::prefix::PrefixIndex::new())),
            base_fingerprint: base_fingerprint(&engine.loaded.model),
            max_seqs: cfg.max_seqs,
            threads: cfg.threads,
            pending_cap: cfg.pending_queue,
            slow_consumer_timeout: cfg.slow_consumer_timeout,
            zero_on_undock: cfg.zero_on_undock,
            links: Links::default(),
            metrics: Arc::clone(&metrics),
            faults: cfg.faults.clone(),
            docked: RwLock::new(HashMap::new()),
            wake: bounded(1),
            threads_started: Mutex::new(Vec::new()),
        });
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(64)
            .thread_name(format!("loradock-rt{id}"))
            .enable_time()
            .build()
            .map_err(|e| Error::invalid("runtime", format!("cannot start the actor threads: {e}")))?;
        let (submit_tx, submit_rx) = bounded(cfg.submit_queue);
        let poked = Arc::new(AtomicBool::new(false));
        let accepting = Arc::new(AtomicBool::new(true));
        let args = SupervisorArgs {
            ctx: Arc::clone(&device),
            submit: submit_rx.clone(),
            poked: Arc::clone(&poked),
            accepting: Arc::clone(&accepting),
            restart: cfg.restart.clone(),
        };
        // Readiness handshake: spawn from a plain thread (the host may itself be inside an
        // async runtime) and wait for every actor's pre_start.
        let handle = tokio.handle().clone();
        let name = format!("{prefix}-supervisor");
        let sup = std::thread::scope(|s| {
            s.spawn(|| handle.block_on(Actor::spawn(Some(name), Supervisor, args)))
                .join()
                .map_err(|_| Error::invalid("runtime", "the actor start-up panicked"))
        })?
        .map_err(|e| Error::invalid("runtime", format!("the actors did not start: {e}")))?
        .0;
        log::info!(
            "runtime {id}: {} loaded ({} bytes of weights), budget {} bytes, {} sequences, KV {:?}",
            cfg.model.display(),
            base.bytes(),
            cfg.budget_bytes,
            cfg.max_seqs,
            cfg.kv_type
        );
        Ok(Runtime {
            id,
            cfg,
            engine,
            template,
            store,
            device,
            metrics,
            registry: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
            next_request: AtomicU64::new(1),
            submit_tx,
            submit_rx,
            poked,
            accepting,
            supervisor: Mutex::new(Some(sup)),
            tokio: Mutex::new(Some(tokio)),
            _base: base,
        })
    }

    /// This runtime's number (unique in the process; part of its actor and thread names).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The loaded model and tokenizer.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Register (or re-register) `name` → `source` (a path or `file://` URL under the
    /// store's roots, an `http(s)://` URL, or `ipfs://CID`), with the digest its content must
    /// have (see [`crate::store::digest`]) and its residency policy. Nothing is fetched
    /// until a request uses it. Re-registering makes a new generation: requests already
    /// submitted keep the one they named. Returns the generation.
    ///
    /// Errors: an empty name or one with `+`, `:`, whitespace or control characters (they
    /// are composite syntax in hosts), an unparsable source.
    pub fn register_adapter(
        &self,
        name: &str,
        source: &str,
        digest: Option<Digest>,
        policy: Policy,
    ) -> Result<u64> {
        if name.is_empty() || name.len() > 256 {
            return Err(Error::invalid("name", "must be 1 to 256 bytes"));
        }
        if name.chars().any(|c| c == '+' || c == ':' || c.is_whitespace() || c.is_control()) {
            return Err(Error::invalid(
                "name",
                format!("'{name}' may not contain '+', ':', whitespace or control characters"),
            ));
        }
        let source = Source::parse(source)?;
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        log::debug!("runtime {}: adapter '{name}' generation {generation} -> {}", self.id, source.display());
        self.registry.write().insert(name.to_string(), Registered { generation, source, digest, policy });
        Ok(generation)
    }

    /// Remove `name`. Requests already submitted keep their adapter; docked copies go by
    /// their policy once unused. Errors: [`Error::UnknownAdapter`].
    pub fn unregister_adapter(&self, name: &str) -> Result<()> {
        match self.registry.write().remove(name) {
            Some(_) => Ok(()),
            None => Err(Error::UnknownAdapter { name: name.to_string() }),
        }
    }

    /// Names registered now, with their generation and policy, sorted by name.
    pub fn adapters(&self) -> Vec<(String, u64, Policy)> {
        let mut v: Vec<_> =
            self.registry.read().iter().map(|(n, r)| (n.clone(), r.generation, r.policy)).collect();
        v.sort();
        v
    }

    fn tokens(&self, input: &crate::runtime::Input) -> Result<Vec<u32>> {
        match input {
            Input::Tokens(t) => {
                let vocab = self.engine.loaded.model.config.vocab_size;
                if let Some(bad) = t.iter().find(|&&id| id as usize >= vocab) {
                    return Err(Error::invalid(
                        "tokens",
                        format!("token id {bad} is outside the vocabulary ({vocab})"),
                    ));
                }
                Ok(t.clone())
            }
            Input::Prompt(s) => self.engine.require_tokenizer()?.encode(s, true),
            Input::Chat(msgs) => {
                let tpl = self.template.as_ref().ok_or_else(|| {
                    Error::tokenizer(format!("{} has no chat template", self.engine.loaded.path.display()))
                })?;
                self.engine.require_tokenizer()?.encode(&tpl.render(msgs, true)?, false)
            }
        }
    }

    /// Start a request. Returns its stream at once; the work goes on in the actors.
    ///
    /// Errors (nothing is started): [`Error::UnknownAdapter`]; [`Error::InvalidArgument`]
    /// for an empty prompt, token ids outside the vocabulary, invalid sampling, a weight that
    /// is not finite, or prompt + `max_tokens` beyond `max_context`; [`Error::Tokenizer`];
    /// [`Error::Busy`] when the submit queue is full; [`Error::ShutDown`].
    pub fn submit(&self, req: Request) -> Result<Stream> {
        if !self.accepting.load(Ordering::Acquire) {
            return Err(Error::ShutDown {
                reason: "the runtime is shut down or stopped after repeated failures".into(),
            });
        }
        let prompt = self.tokens(&req.input)?;
        if prompt.is_empty() {
            return Err(Error::invalid("prompt", "the prompt has no tokens"));
        }
        req.params.sampling.validate()?;
        if req.params.max_tokens == 0 {
            return Err(Error::invalid("max_tokens", "must be at least 1"));
        }
        let total = prompt.len().saturating_add(req.params.max_tokens);
        if total > self.cfg.max_context {
            return Err(Error::invalid(
                "max_tokens",
                format!(
                    "prompt ({} tokens) + max_tokens ({}) exceeds max_context ({})",
                    prompt.len(),
                    req.params.max_tokens,
                    self.cfg.max_context
                ),
            ));
        }
        let mut adapters = Vec::with_capacity(req.adapters.len());
        {
            let reg = self.registry.read();
            for (a, w) in &req.adapters {
                if !w.is_finite() {
                    return Err(Error::invalid("weight", format!("{w} is not a finite adapter weight")));
                }
                let spec = match a {
                    AdapterRef::Named(n) => {
                        let r = reg.get(n).ok_or_else(|| Error::UnknownAdapter { name: n.clone() })?;
                        AdapterSpec {
                            label: format!("{n}#{}", r.generation),
                            source: r.source.clone(),
                            digest: r.digest,
                            policy: r.policy,
                        }
                    }
                    AdapterRef::Inline { source, digest } => AdapterSpec {
                        label: source.display(),
                        source: source.clone(),
                        digest: *digest,
                        policy: Policy::Disposable,
                    },
                };
                adapters.push((spec, *w));
            }
        }
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let cancel = Arc::new(AtomicBool::new(false));
        let dev = Arc::clone(&self.device);
        let wake: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
            let _ = dev.wake.0.try_send(());
            dev.links.merger(crate::actors::merger::MergerMsg::Sweep);
        });
        let (reply, stream) =
            Reply::pair(id, self.cfg.stream_buffer, Arc::clone(&cancel), wake, Arc::clone(&self.metrics));
        let job = Job {
            prompt,
            params: req.params,
            adapters,
            combination: req.combination,
            reply,
            cancel,
            submitted: Instant::now(),
        };
        match self.submit_tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(job)) => {
                job.reply.discard();
                return Err(Error::Busy { what: "submit queue".into(), limit: self.cfg.submit_queue });
            }
            Err(TrySendError::Disconnected(job)) => {
                job.reply.discard();
                return Err(Error::ShutDown { reason: "the runtime is shut down".into() });
            }
        }
        add(&self.metrics.submitted, 1);
        add(&self.metrics.submit_depth, 1);
        if !self.poked.swap(true, Ordering::AcqRel) {
            if let Some(s) = self.supervisor.lock().as_ref() {
                let _ = s.cast(SupervisorMsg::Poke);
            }
        }
        Ok(stream)
    }

    /// A snapshot of counters, gauges and ledgers.
    pub fn stats(&self) -> Stats {
        let m = &self.metrics;
        let docks = get(&m.docks);
        let secs = m.started.elapsed().as_secs_f64().max(1e-9);
        let cfg = &self.engine.loaded.model.config;
        Stats {
            adapters_registered: self.registry.read().len() as u64,
            adapters_docked: get(&m.docked),
            docks,
            undocks: get(&m.undocks),
            evictions: get(&m.evictions),
            dock_failures: get(&m.dock_failures),
            mean_dock_ms: if docks == 0 { 0.0 } else { get(&m.dock_us_sum) as f64 / docks as f64 / 1e3 },
            requests_submitted: get(&m.submitted),
            requests_completed: get(&m.completed),
            requests_cancelled: get(&m.cancelled),
            requests_failed: get(&m.failed),
            tokens_generated: get(&m.tokens_generated),
            tokens_per_s: get(&m.tokens_generated) as f64 / secs,
            submit_queue_depth: get(&m.submit_depth),
            pending_queue_depth: get(&m.pending_depth),
            running: get(&m.running),
            restarts: get(&m.restarts),
            device: self.device.ledger.stats(),
            kv_bytes_per_token: crate::kv::KvCache::bytes_for(cfg, 1, self.cfg.kv_type),
            prefix: self.device.prefixes.as_ref().map_or_else(PrefixStats::default, |p| {
                let p = p.lock();
                let (live, bytes) = p.live();
                PrefixStats {
                    hit_tokens: p.hit_tokens(),
                    miss_tokens: p.miss_tokens(),
                    shared_now: live as u64,
                    shared_bytes: bytes,
                }
            }),
            store: self.store.stats(),
            host_budget_bytes: self.cfg.store.ram_budget_bytes,
        }
    }

    /// Stop: no new work; requests still running end with an `Error { kind: Shutdown }`;
    /// actors and threads are stopped and joined. Idempotent; also done on drop.
    pub fn shutdown(&self) {
        let Some(rt) = self.tokio.lock().take() else { return };
        log::info!("runtime {}: shutting down", self.id);
        self.accepting.store(false, Ordering::Release);
        self.metrics.shutting_down.store(true, Ordering::Release);
        let sup = self.supervisor.lock().take();
        let links = &self.device.links;
        let mut actors = links.take_all();
        actors.extend(sup.map(|a| a.get_cell()));
        let handle = rt.handle().clone();
        std::thread::scope(|s| {
            s.spawn(|| {
                handle.block_on(async {
                    for a in actors {
                        let _ = a.stop_and_wait(None, Some(Duration::from_secs(5))).await;
                    }
                })
            });
        });
        for h in self.device.threads_started.lock().drain(..) {
            let _ = h.join();
        }
        while let Ok(job) = self.submit_rx.try_recv() {
            job.fail(ErrorKind::Shutdown, "the runtime shut down");
        }
        rt.shutdown_timeout(Duration::from_secs(5));
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.shutdown();
    }
}
