//! Runtime handles: parameters, create and free, adapters, stats.

use std::ffi::c_char;
use std::path::PathBuf;
use std::time::Duration;

use super::guard::{check_size, guard, opt_str, str_arg, str_array, Fail};
use super::status::loradock_status;
use crate::kv::KvType;
use crate::runtime::{Policy, Runtime, RuntimeConfig};
use crate::store::Digest;

/// A running runtime (opaque). Thread safety: every call taking a `loradock_runtime*` may
/// be made from any thread, concurrently. Handles carry a tag: a pointer to another handle
/// type, or to a freed handle whose memory was not reused, is refused with
/// `LORADOCK_STATUS_INVALID_ARGUMENT` (using a freed handle is still undefined behaviour).
///
/// `repr(C)` so the tag is the first field of every handle type; opaque to C (the header
/// declares it with a forward typedef, see the header test).
/// cbindgen:ignore
#[repr(C)]
pub struct loradock_runtime {
    /// [`RUNTIME_MAGIC`] while alive: a cheap check against foreign or freed pointers.
    magic: u64,
    pub(crate) rt: Runtime,
}

/// Tag of a live `loradock_runtime` ("LDRTRUN\0").
const RUNTIME_MAGIC: u64 = 0x004e_5552_5452_444c;
/// Written over the tag when the handle is freed.
pub(crate) const DEAD_MAGIC: u64 = 0xdead_dead_dead_dead;

/// How long a docked adapter stays once unused.
#[repr(i32)]
#[derive(Debug, Clone, Copy)]
pub enum loradock_policy {
    /// Undocked right after its last request (the default).
    LORADOCK_POLICY_DISPOSABLE = 0,
    /// Kept while memory allows; least recently used evicted first.
    LORADOCK_POLICY_KEEP_WARM = 1,
    /// Never undocked while registered.
    LORADOCK_POLICY_PINNED = 2,
}

/// Parameters of `loradock_runtime_new`. Fill with `loradock_runtime_params_default`, then
/// change fields. Append-only: later versions add fields at the end; `struct_size` tells
/// which version the caller was built with. Strings are borrowed for the call only.
#[repr(C)]
pub struct loradock_runtime_params {
    /// `sizeof(loradock_runtime_params)` as the caller knows it.
    pub struct_size: u32,
    /// The base model: an HF directory or a GGUF file (required).
    pub model_path: *const c_char,
    /// `"cpu"` (the default when NULL); other devices are not available in this build.
    pub device: *const c_char,
    /// Directory of the store's disk cache (NULL: `<temp dir>/loradock-cache-<pid>`).
    pub cache_dir: *const c_char,
    /// The device's byte budget (the red line).
    pub budget_bytes: u64,
    /// Host-RAM cache of fetched adapter bytes.
    pub host_cache_bytes: u64,
    /// Disk cache size cap.
    pub disk_cache_bytes: u64,
    /// Compute threads (0 = all cores).
    pub threads: u32,
    /// Sequences decoding at once.
    pub max_seqs: u32,
    /// Most positions (prompt + generated) of one request.
    pub max_context: u32,
    /// Submit queue length (full = `LORADOCK_STATUS_BUSY`).
    pub submit_queue: u32,
    /// Requests waiting for memory, at most.
    pub pending_queue: u32,
    /// Text events buffered per stream before its request is paused.
    pub stream_buffer: u32,
    /// A request paused this long for its reader ends with `LORADOCK_STATUS_SLOW_CONSUMER`.
    pub slow_consumer_timeout_ms: u32,
    /// KV cache element type: `"f32"`, `"f16"` (default when NULL), `"int8"` or `"q4"`.
    pub kv_type: *const c_char,
    /// Directories local adapter sources must be under (`n_store_roots` entries).
    pub store_roots: *const *const c_char,
    /// Entries of `store_roots`.
    pub n_store_roots: usize,
    /// IPFS HTTP gateways for `ipfs://` sources (`n_gateways` entries).
    pub gateways: *const *const c_char,
    /// Entries of `gateways`.
    pub n_gateways: usize,
    /// Accept adapters registered without a digest (their content cannot be verified).
    pub allow_unverified: bool,
    /// Overwrite disposable adapters' memory with zeros when undocked.
    pub zero_on_undock: bool,
}

impl loradock_runtime_params {
    fn defaults() -> loradock_runtime_params {
        let d = RuntimeConfig::new("", "");
        loradock_runtime_params {
            struct_size: std::mem::size_of::<loradock_runtime_params>() as u32,
            model_path: std::ptr::null(),
            device: std::ptr::null(),
            cache_dir: std::ptr::null(),
            budget_bytes: d.budget_bytes,
            host_cache_bytes: d.store.ram_budget_bytes,
            disk_cache_bytes: d.store.disk_cap_bytes,
            threads: 0,
            max_seqs: d.max_seqs as u32,
            max_context: d.max_context as u32,
            submit_queue: d.submit_queue as u32,
            pending_queue: d.pending_queue as u32,
            stream_buffer: d.stream_buffer as u32,
            slow_consumer_timeout_ms: d.slow_consumer_timeout.as_millis() as u32,
            kv_type: std::ptr::null(),
            store_roots: std::ptr::null(),
            n_store_roots: 0,
            gateways: std::ptr::null(),
            n_gateways: 0,
            allow_unverified: false,
            zero_on_undock: false,
        }
    }
}

/// The first version's size of a struct ending with field `last` (for `struct_size` checks).
macro_rules! first_size {
    ($t:ty, $last:ident) => {
        std::mem::offset_of!($t, $last) + std::mem::size_of_val(&<$t>::defaults().$last)
    };
}
pub(crate) use first_size;

/// A caller's params struct read into a full current one: the fields it knows come from
/// it, the rest from `defaults`.
///
/// # Safety
/// `p` points to a readable struct of at least `(*p).struct_size` bytes (checked ≥ `min`).
pub(crate) unsafe fn read_params<T>(p: *const T, defaults: T, min: usize, what: &str) -> Result<T, Fail> {
    if p.is_null() {
        return Err(Fail::null(what));
    }
    // SAFETY: every params struct starts with `uint32_t struct_size`.
    let declared = unsafe { *(p as *const u32) };
    check_size(declared, min, what)?;
    let mut out = defaults;
    let n = (declared as usize).min(std::mem::size_of::<T>());
    // SAFETY: `n` bytes are readable at `p` (the caller declared at least that many) and
    // writable at `out`; the structs are plain `repr(C)` data of the same layout prefix.
    unsafe { std::ptr::copy_nonoverlapping(p as *const u8, &mut out as *mut T as *mut u8, n) };
    Ok(out)
}

/// Fill `out` with the defaults (every field, `struct_size` set).
///
/// Returns `LORADOCK_STATUS_NULL_ARGUMENT` when `out` is NULL.
///
/// # Safety
/// `out` is NULL or points to a writable `loradock_runtime_params`.
#[no_mangle]
pub unsafe extern "C" fn loradock_runtime_params_default(
    out: *mut loradock_runtime_params,
) -> loradock_status {
    guard("loradock_runtime_params_default", || {
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        // SAFETY: non-NULL and writable per the contract.
        unsafe { out.write(loradock_runtime_params::defaults()) };
        Ok(())
    })
}

/// Load the model and start a runtime; on success `*out` owns it (free with
/// `loradock_runtime_free`). On failure `*out` is untouched and the last error says why.
///
/// Statuses: `OK`, `NULL_ARGUMENT`, `STRUCT_SIZE`, `INVALID_UTF8`, `INVALID_ARGUMENT`,
/// `IO`, `FORMAT`, `UNSUPPORTED`, `CONFIG`, `SHAPE_MISMATCH`, `MISSING_TENSOR`,
/// `TOKENIZER`, `OVER_BUDGET` (the model alone exceeds the budget), `PANIC`.
///
/// # Safety
/// `params` points to a params struct as documented; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn loradock_runtime_new(
    params: *const loradock_runtime_params,
    out: *mut *mut loradock_runtime,
) -> loradock_status {
    guard("loradock_runtime_new", || {
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        let min = first_size!(loradock_runtime_params, zero_on_undock);
        // SAFETY: forwarded contract.
        let p = unsafe { read_params(params, loradock_runtime_params::defaults(), min, "params")? };
        // SAFETY: the string fields follow `str_arg`'s contract.
        let model = unsafe { str_arg(p.model_path, "params.model_path")? };
        if let Some(d) = unsafe { opt_str(p.device, "params.device")? } {
            if d != "cpu" {
                return Err(Fail::invalid(format!(
                    "params.device '{d}': only \"cpu\" is available in this build"
                )));
            }
        }
        let cache = match unsafe { opt_str(p.cache_dir, "params.cache_dir")? } {
            Some(c) => PathBuf::from(c),
            None => std::env::temp_dir().join(format!("loradock-cache-{}", std::process::id())),
        };
        let mut cfg = RuntimeConfig::new(model, cache);
        cfg.budget_bytes = p.budget_bytes;
        cfg.store.ram_budget_bytes = p.host_cache_bytes;
        cfg.store.disk_cap_bytes = p.disk_cache_bytes;
        cfg.threads = p.threads as usize;
        cfg.max_seqs = p.max_seqs as usize;
        cfg.max_context = p.max_context as usize;
        cfg.submit_queue = p.submit_queue as usize;
        cfg.pending_queue = p.pending_queue as usize;
        cfg.stream_buffer = p.stream_buffer as usize;
        cfg.slow_consumer_timeout = Duration::from_millis(p.slow_consumer_timeout_ms.into());
        if let Some(k) = unsafe { opt_str(p.kv_type, "params.kv_type")? } {
            cfg.kv_type = KvType::parse(k)?;
        }
        // SAFETY: array fields follow `str_array`'s contract.
        cfg.store.roots = unsafe { str_array(p.store_roots, p.n_store_roots, "params.store_roots")? }
            .into_iter()
            .map(PathBuf::from)
            .collect();
        cfg.store.gateways = unsafe { str_array(p.gateways, p.n_gateways, "params.gateways")? }
            .into_iter()
            .map(String::from)
            .collect();
        cfg.store.allow_unverified = p.allow_unverified;
        cfg.zero_on_undock = p.zero_on_undock;
        let rt = Runtime::new(cfg)?;
        // SAFETY: `out` is writable (checked non-NULL).
        unsafe { out.write(Box::into_raw(Box::new(loradock_runtime { magic: RUNTIME_MAGIC, rt }))) };
        Ok(())
    })
}

/// Shut the runtime down (running requests end with `LORADOCK_STATUS_SHUT_DOWN` error
/// events; their streams stay valid until freed) and free it. NULL is a no-op. Must not be
/// called while another thread uses `rt`.
///
/// # Safety
/// `rt` is NULL or was returned by `loradock_runtime_new` and not freed.
#[no_mangle]
pub unsafe extern "C" fn loradock_runtime_free(rt: *mut loradock_runtime) {
    let _ = guard("loradock_runtime_free", || {
        if !rt.is_null() {
            // SAFETY: a live handle per the contract; its tag is checked before the box is
            // rebuilt, so a foreign pointer is refused rather than freed.
            if unsafe { (*rt).magic } != RUNTIME_MAGIC {
                return Err(Fail::invalid("rt is not a live loradock_runtime handle (freed or foreign)"));
            }
            // SAFETY: owned pointer from `Box::into_raw`, freed once per the contract.
            let mut b = unsafe { Box::from_raw(rt) };
            b.magic = DEAD_MAGIC;
            drop(b);
        }
        Ok(())
    });
}

/// Borrow the runtime behind a handle.
///
/// # Safety
/// `rt` is NULL or a live handle.
pub(crate) unsafe fn runtime<'a>(rt: *const loradock_runtime) -> Result<&'a Runtime, Fail> {
    if rt.is_null() {
        return Err(Fail::null("rt"));
    }
    // SAFETY: live handle per the contract (the tag check catches some violations cheaply:
    // a freed handle whose memory was not reused, or a pointer to another handle type).
    let h = unsafe { &*rt };
    if h.magic != RUNTIME_MAGIC {
        return Err(Fail::invalid("rt is not a live loradock_runtime handle (freed or foreign)"));
    }
    Ok(&h.rt)
}

/// Register (or re-register: a new generation) `name` → `source` (a path or `file://` URL
/// under the store roots, `http(s)://…`, or `ipfs://CID`), with the digest its content must
/// have (`"sha256:<hex>"`; NULL only when the runtime allows unverified content or the
/// source is `ipfs://`). Nothing is fetched until a request uses it. `out_generation` may be
/// NULL.
///
/// Statuses: `OK`, `NULL_ARGUMENT`, `INVALID_UTF8`, `INVALID_ARGUMENT` (bad name, source,
/// digest or policy), `PANIC`.
///
/// # Safety
/// `rt` is a live handle; strings are NUL-terminated; `out_generation` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn loradock_adapter_register(
    rt: *const loradock_runtime,
    name: *const c_char,
    source: *const c_char,
    digest: *const c_char,
    policy: i32,
    out_generation: *mut u64,
) -> loradock_status {
    guard("loradock_adapter_register", || {
        // SAFETY: forwarded contracts.
        let rt = unsafe { runtime(rt)? };
        let name = unsafe { str_arg(name, "name")? };
        let source = unsafe { str_arg(source, "source")? };
        let digest = unsafe { opt_str(digest, "digest")? }.map(Digest::parse).transpose()?;
        let policy = match policy {
            0 => Policy::Disposable,
            1 => Policy::KeepWarm,
            2 => Policy::Pinned,
            other => return Err(Fail::invalid(format!("policy {other} is not a loradock_policy"))),
        };
        let g = rt.register_adapter(name, source, digest, policy)?;
        if !out_generation.is_null() {
            // SAFETY: non-NULL and writable per the contract.
            unsafe { out_generation.write(g) };
        }
        Ok(())
    })
}

/// Remove `name`; requests already submitted keep their adapter.
///
/// Statuses: `OK`, `NULL_ARGUMENT`, `INVALID_UTF8`, `UNKNOWN_ADAPTER`, `PANIC`.
///
/// # Safety
/// `rt` is a live handle; `name` is NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn loradock_adapter_unregister(
    rt: *const loradock_runtime,
    name: *const c_char,
) -> loradock_status {
    guard("loradock_adapter_unregister", || {
        // SAFETY: forwarded contracts.
        let rt = unsafe { runtime(rt)? };
        let name = unsafe { str_arg(name, "name")? };
        rt.unregister_adapter(name)?;
        Ok(())
    })
}

/// A snapshot of a runtime's counters, gauges and ledger (bytes).
#[repr(C)]
pub struct loradock_stats {
    /// `sizeof(loradock_stats)` as the caller knows it (set before the call).
    pub struct_size: u32,
    /// Adapter names registered now.
    pub adapters_registered: u64,
    /// Adapters docked now.
    pub adapters_docked: u64,
    /// Docks since start.
    pub docks: u64,
    /// Undocks since start.
    pub undocks: u64,
    /// Undocks forced by memory pressure.
    pub evictions: u64,
    /// Adapters that failed to fetch, parse or dock.
    pub dock_failures: u64,
    /// Requests submitted.
    pub requests_submitted: u64,
    /// Requests that completed.
    pub requests_completed: u64,
    /// Requests cancelled.
    pub requests_cancelled: u64,
    /// Requests that failed.
    pub requests_failed: u64,
    /// Tokens generated by completed requests.
    pub tokens_generated: u64,
    /// Tokens per second over the runtime's life.
    pub tokens_per_s: f64,
    /// Requests in the submit queue now.
    pub submit_queue_depth: u64,
    /// Requests waiting for memory now.
    pub pending_queue_depth: u64,
    /// Rows decoding now.
    pub running: u64,
    /// Actor restarts since start.
    pub restarts: u64,
    /// The device budget (red line).
    pub budget_bytes: u64,
    /// Bytes reserved now.
    pub used_bytes: u64,
    /// Most bytes ever reserved at once.
    pub high_water_bytes: u64,
    /// Base weights.
    pub base_weight_bytes: u64,
    /// KV pages.
    pub kv_bytes: u64,
    /// Docked adapters.
    pub adapter_bytes: u64,
    /// KV bytes per cached position.
    pub kv_bytes_per_token: u64,
    /// Store fetches.
    pub store_fetches: u64,
    /// Store fetches answered from the host-RAM cache.
    pub store_ram_hits: u64,
    /// Store fetches answered from the disk cache.
    pub store_disk_hits: u64,
    /// Bytes downloaded.
    pub store_bytes_downloaded: u64,
    /// Bytes in the host-RAM cache now.
    pub host_cache_bytes: u64,
    /// Bytes in the disk cache now.
    pub disk_cache_bytes: u64,
    /// Prompt positions read from shared prefix pages instead of computed (since version 2).
    pub prefix_hit_tokens: u64,
    /// Prompt positions that could have been shared but were computed (since version 2).
    pub prefix_miss_tokens: u64,
    /// Shared prefixes alive now (since version 2).
    pub prefix_shared_now: u64,
    /// Their bytes, each counted once (since version 2).
    pub prefix_shared_bytes: u64,
}

impl loradock_stats {
    fn defaults() -> loradock_stats {
        // SAFETY: all-zero is a valid value of this plain-data struct.
        unsafe { std::mem::zeroed() }
    }
}

/// Write the runtime's stats into `*out`: `out->struct_size` must be set by the caller;
/// only that many bytes are written.
///
/// Statuses: `OK`, `NULL_ARGUMENT`, `STRUCT_SIZE`, `PANIC`.
///
/// # Safety
/// `rt` is a live handle; `out` points to `out->struct_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn loradock_runtime_stats(
    rt: *const loradock_runtime,
    out: *mut loradock_stats,
) -> loradock_status {
    guard("loradock_runtime_stats", || {
        // SAFETY: forwarded contract.
        let rt = unsafe { runtime(rt)? };
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        // SAFETY: `out` starts with a readable `uint32_t struct_size`.
        let declared = unsafe { *(out as *const u32) };
        check_size(declared, first_size!(loradock_stats, disk_cache_bytes), "loradock_stats")?;
        let s = rt.stats();
        let d = &s.device;
        let full = loradock_stats {
            struct_size: declared,
            adapters_registered: s.adapters_registered,
            adapters_docked: s.adapters_docked,
            docks: s.docks,
            undocks: s.undocks,
            evictions: s.evictions,
            dock_failures: s.dock_failures,
            requests_submitted: s.requests_submitted,
            requests_completed: s.requests_completed,
            requests_cancelled: s.requests_cancelled,
            requests_failed: s.requests_failed,
            tokens_generated: s.tokens_generated,
            tokens_per_s: s.tokens_per_s,
            submit_queue_depth: s.submit_queue_depth,
            pending_queue_depth: s.pending_queue_depth,
            running: s.running,
            restarts: s.restarts,
            budget_bytes: d.budget_bytes,
            used_bytes: d.used_bytes,
            high_water_bytes: d.high_water_bytes,
            base_weight_bytes: d.by_category[0],
            kv_bytes: d.by_category[1],
            adapter_bytes: d.by_category[2],
            kv_bytes_per_token: s.kv_bytes_per_token,
            store_fetches: s.store.fetches,
            store_ram_hits: s.store.ram_hits,
            store_disk_hits: s.store.disk_hits,
            store_bytes_downloaded: s.store.bytes_downloaded,
            host_cache_bytes: s.store.ram_bytes,
            disk_cache_bytes: s.store.disk_bytes,
            prefix_hit_tokens: s.prefix.hit_tokens,
            prefix_miss_tokens: s.prefix.miss_tokens,
            prefix_shared_now: s.prefix.shared_now,
            prefix_shared_bytes: s.prefix.shared_bytes,
        };
        let n = (declared as usize).min(std::mem::size_of::<loradock_stats>());
        // SAFETY: `n` bytes are writable at `out` (the caller declared them) and readable
        // from `full`.
        unsafe {
            std::ptr::copy_nonoverlapping(&full as *const loradock_stats as *const u8, out as *mut u8, n)
        };
        Ok(())
    })
}
