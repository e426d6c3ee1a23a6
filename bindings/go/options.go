package loradock

// #include "loradock.h"
import "C"

import (
	"math"
	"time"
)

// Options configure a Runtime (loradock_runtime_params). Zero values mean loradock's
// defaults, except where a field says otherwise; only ModelPath is required.
type Options struct {
	ModelPath           string        // the base model: an HF directory or a GGUF file (required)
	Device              string        // "cpu" ("" = cpu; no other device in this build)
	CacheDir            string        // the adapter store's disk cache ("" = <tmp>/loradock-cache-<pid>)
	BudgetBytes         uint64        // the device's memory budget, the red line (0 = default)
	HostCacheBytes      uint64        // host-RAM cache of fetched adapter bytes (0 = default)
	DiskCacheBytes      uint64        // disk cache size cap (0 = default)
	Threads             int           // compute threads (0 = all cores)
	MaxSeqs             int           // sequences decoding at once (0 = default)
	MaxContext          int           // most positions (prompt + generated) of one request (0 = default)
	SubmitQueue         int           // submit queue length; a full queue answers ErrBusy (0 = default)
	PendingQueue        int           // requests waiting for memory, at most (0 = default)
	StreamBuffer        int           // events buffered per stream before its request pauses (0 = default)
	SlowConsumerTimeout time.Duration // a request paused this long for its reader fails with ErrSlowConsumer (0 = default)
	KVType              string        // KV cache element type: "f32", "f16", "int8" or "q4" ("" = f16)
	StoreRoots          []string      // directories local adapter sources must be under
	Gateways            []string      // IPFS HTTP gateways for ipfs:// sources
	AllowUnverified     bool          // accept adapters registered without a digest
	ZeroOnUndock        bool          // overwrite disposable adapters' memory with zeros when undocked
}

// toC fills p (from loradock_runtime_params_default) with o; strings live in a.
func (o *Options) toC(p *C.loradock_runtime_params, a *cArena) error {
	if err := noNUL("Options string", o.ModelPath, o.Device, o.CacheDir, o.KVType); err != nil {
		return err
	}
	if err := noNUL("Options.StoreRoots", o.StoreRoots...); err != nil {
		return err
	}
	if err := noNUL("Options.Gateways", o.Gateways...); err != nil {
		return err
	}
	for _, n := range []int{o.Threads, o.MaxSeqs, o.MaxContext, o.SubmitQueue, o.PendingQueue, o.StreamBuffer} {
		if n < 0 || uint64(n) > math.MaxUint32 {
			return &Error{Status: StatusInvalidArgument, Message: "Options: a count is negative or too large"}
		}
	}
	ms := o.SlowConsumerTimeout.Milliseconds()
	if ms < 0 || ms > math.MaxUint32 {
		return &Error{Status: StatusInvalidArgument, Message: "Options.SlowConsumerTimeout is out of range"}
	}
	p.model_path = a.str(o.ModelPath)
	p.device = a.str(o.Device)
	p.cache_dir = a.str(o.CacheDir)
	setU64(&p.budget_bytes, o.BudgetBytes)
	setU64(&p.host_cache_bytes, o.HostCacheBytes)
	setU64(&p.disk_cache_bytes, o.DiskCacheBytes)
	p.threads = C.uint32_t(o.Threads)
	setU32(&p.max_seqs, o.MaxSeqs)
	setU32(&p.max_context, o.MaxContext)
	setU32(&p.submit_queue, o.SubmitQueue)
	setU32(&p.pending_queue, o.PendingQueue)
	setU32(&p.stream_buffer, o.StreamBuffer)
	if ms > 0 {
		p.slow_consumer_timeout_ms = C.uint32_t(ms)
	}
	p.kv_type = a.str(o.KVType)
	p.store_roots, p.n_store_roots = a.strs(o.StoreRoots)
	p.gateways, p.n_gateways = a.strs(o.Gateways)
	p.allow_unverified = C.bool(o.AllowUnverified)
	p.zero_on_undock = C.bool(o.ZeroOnUndock)
	return nil
}

// setU32 sets *dst to v unless v is 0 (keep the default).
func setU32(dst *C.uint32_t, v int) {
	if v != 0 {
		*dst = C.uint32_t(v)
	}
}

// setU64 sets *dst to v unless v is 0 (keep the default).
func setU64(dst *C.uint64_t, v uint64) {
	if v != 0 {
		*dst = C.uint64_t(v)
	}
}

// Policy says how long a docked adapter stays once unused.
type Policy int32

const (
	// PolicyDisposable undocks an adapter right after its last request (the default).
	PolicyDisposable Policy = C.LORADOCK_POLICY_DISPOSABLE
	// PolicyKeepWarm keeps it while memory allows; the least recently used is evicted first.
	PolicyKeepWarm Policy = C.LORADOCK_POLICY_KEEP_WARM
	// PolicyPinned never undocks it while it is registered.
	PolicyPinned Policy = C.LORADOCK_POLICY_PINNED
)
