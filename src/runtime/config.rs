//! [`RuntimeConfig`]: everything a [`super::Runtime`] is built from; every size is a limit.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::kv::KvType;
use crate::model::LoadOptions;
use crate::store::StoreConfig;

use super::faults::Faults;

/// How the supervisor restarts a failed actor.
#[derive(Debug, Clone)]
pub struct RestartPolicy {
    /// Most restarts of one device group's actors within `window`; one more and the runtime
    /// stops accepting work (every request still gets its terminal event).
    pub max_restarts: u32,
    /// The window the restarts are counted in.
    pub window: Duration,
    /// Delay before the first restart; doubled for each further restart in the window.
    pub backoff: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            max_restarts: 10,
            window: Duration::from_secs(60),
            backoff: Duration::from_millis(10),
        }
    }
}

/// What a runtime is built from. [`RuntimeConfig::new`] gives defaults around a model path.
#[derive(Clone)]
pub struct RuntimeConfig {
    /// The base model: an HF directory or a GGUF file.
    pub model: PathBuf,
    /// Load options (re-quantization).
    pub load: LoadOptions,
    /// Compute threads of the device's decode loop (0 = all cores).
    pub threads: usize,
    /// The device's byte budget (the red line): base weights, KV pages, docked adapters.
    pub budget_bytes: u64,
    /// Element type of KV pages.
    pub kv_type: KvType,
    /// Share the KV pages of prompt prefixes between running requests with the same base,
    /// the same adapters (by content) and weights, and the same tokens (see `kv::prefix`).
    pub prefix_reuse: bool,
    /// Most sequences decoding at once (rows of the running batch).
    pub max_seqs: usize,
    /// Most positions (prompt + generated) of one request.
    pub max_context: usize,
    /// Requests accepted but not yet routed (the submit queue); a full queue is `Busy`.
    pub submit_queue: usize,
    /// Requests waiting for memory (KV pages or adapter bytes) per device; a full queue is
    /// `Busy`.
    pub pending_queue: usize,
    /// Text events a stream buffers for its consumer. A row whose buffer is full is paused
    /// (left out of decode steps, the others go on); its terminal event always fits.
    pub stream_buffer: usize,
    /// A row paused this long for its consumer is ended with a slow-consumer error.
    pub slow_consumer_timeout: Duration,
    /// Overwrite a disposable adapter's memory with zeros when it is undocked.
    pub zero_on_undock: bool,
    /// The adapter store (roots, caches, HTTP, gateways).
    pub store: StoreConfig,
    /// Actor restarts.
    pub restart: RestartPolicy,
    /// Test-only fault injection (actor panics, stalled or failing fetches). `None` in
    /// production.
    pub faults: Option<Arc<Faults>>,
}

impl RuntimeConfig {
    /// Defaults around `model`, with the store's caches under `cache_dir`: all cores,
    /// 4 GiB budget, f16 KV, 16 sequences, 4096 positions, queues of 256, streams of 1024
    /// events, slow consumers ended after 5 s, no zeroing, default restart policy, no faults.
    pub fn new(model: impl Into<PathBuf>, cache_dir: impl Into<PathBuf>) -> RuntimeConfig {
        RuntimeConfig {
            model: model.into(),
            load: LoadOptions::default(),
            threads: 0,
            budget_bytes: 4 << 30,
            kv_type: KvType::F16,
            prefix_reuse: true,
            max_seqs: 16,
            max_context: 4096,
            submit_queue: 256,
            pending_queue: 256,
            stream_buffer: 1024,
            slow_consumer_timeout: Duration::from_secs(5),
            zero_on_undock: false,
            store: StoreConfig::new(cache_dir),
            restart: RestartPolicy::default(),
            faults: None,
        }
    }
}
