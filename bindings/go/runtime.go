package loradock

// #include <stdlib.h>
// #include "loradock.h"
import "C"

import (
	"context"
	"runtime"
	"sync"
)

// Runtime is a running loradock runtime: one base model resident, adapters fetched and
// docked on demand. It is safe for concurrent use by many goroutines. Close it when done.
type Runtime struct {
	mu      sync.RWMutex // read: a call in progress; write: Close
	h       *rtHandle    // nil once closed
	cleanup runtime.Cleanup
}

// rtHandle owns the C runtime; it is separate from Runtime so a cleanup can free it.
type rtHandle struct {
	p *C.loradock_runtime
}

// Open loads the model and starts a runtime. A failure is an *Error; a bad model path
// gives an error naming the path.
func Open(opts Options) (*Runtime, error) {
	var a cArena
	defer a.free()
	var p C.loradock_runtime_params
	if st := C.loradock_runtime_params_default(&p); st != C.LORADOCK_STATUS_OK {
		return nil, &Error{Status: Status(st), Message: "loradock_runtime_params_default failed"}
	}
	if err := opts.toC(&p, &a); err != nil {
		return nil, err
	}
	rt, err := capiRuntimeNew(&p)
	if err != nil {
		return nil, err
	}
	h := &rtHandle{p: rt}
	r := &Runtime{h: h}
	// A Runtime dropped without Close is freed when collected (Generations keep theirs alive).
	r.cleanup = runtime.AddCleanup(r, func(h *rtHandle) { C.loradock_runtime_free(h.p) }, h)
	return r, nil
}

// use runs f with the live C handle, holding off Close until f returns; on a closed
// Runtime it returns an error with StatusShutDown instead.
func (r *Runtime) use(f func(p *C.loradock_runtime) error) error {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.h == nil {
		return errClosed()
	}
	return f(r.h.p)
}

// RegisterAdapter registers (or re-registers, as a new generation) name → source: a path
// or file:// URL under the store roots, http(s)://…, or ipfs://CID. digest is the content's
// "sha256:<hex>" ("" only when the runtime allows unverified content or for ipfs://).
// Nothing is fetched until a request uses the adapter. It returns the registration's
// generation, which grows with each re-registration.
func (r *Runtime) RegisterAdapter(name, source, digest string, policy Policy) (generation uint64, err error) {
	if err := noNUL("RegisterAdapter argument", name, source, digest); err != nil {
		return 0, err
	}
	var a cArena
	defer a.free()
	cname, csource, cdigest := C.CString(name), C.CString(source), a.str(digest)
	a.ptrs = append(a.ptrs, ptr(cname), ptr(csource))
	err = r.use(func(p *C.loradock_runtime) (err error) {
		generation, err = capiRegister(p, cname, csource, cdigest, policy)
		return err
	})
	return generation, err
}

// UnregisterAdapter removes a registered adapter (ErrUnknownAdapter if there is none by
// that name). Requests already submitted keep their adapter.
func (r *Runtime) UnregisterAdapter(name string) error {
	if err := noNUL("UnregisterAdapter name", name); err != nil {
		return err
	}
	cname := C.CString(name)
	defer C.free(ptr(cname))
	return r.use(func(p *C.loradock_runtime) error { return capiUnregister(p, cname) })
}

// Generate submits a request and returns its Generation, whose events are read with
// Events, Next or Collect. ctx governs the whole request: when it is cancelled the request
// is cancelled and ends with a Done event with FinishCancelled (unless it ended first).
// Failures found at submission (unknown adapter, bad argument, ErrBusy when the submit
// queue is full, a closed runtime) are returned here; failures while fetching, docking or
// decoding come as the request's Error event.
func (r *Runtime) Generate(ctx context.Context, req Request) (*Generation, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var a cArena
	defer a.free()
	var p C.loradock_request_params
	if st := C.loradock_request_params_default(&p); st != C.LORADOCK_STATUS_OK {
		return nil, &Error{Status: Status(st), Message: "loradock_request_params_default failed"}
	}
	if err := req.toC(&p, &a); err != nil {
		return nil, err
	}
	var s *C.loradock_stream
	err := r.use(func(rt *C.loradock_runtime) (err error) {
		s, err = capiSubmit(rt, &p)
		return err
	})
	if err != nil {
		return nil, err
	}
	return newGeneration(ctx, r, s), nil
}

// Stats is a snapshot of the runtime's counters, gauges and memory ledger.
func (r *Runtime) Stats() (Stats, error) {
	var st C.loradock_stats
	err := r.use(func(p *C.loradock_runtime) (err error) {
		st, err = capiStats(p)
		return err
	})
	if err != nil {
		return Stats{}, err
	}
	return statsOf(&st), nil
}

// Close shuts the runtime down and frees it. It waits for calls in progress on other
// goroutines (not for requests): running requests end with an Error event with
// StatusShutDown, and their Generations stay readable. Later calls on the Runtime,
// including Close, return an error with StatusShutDown (errors.Is(err, ErrShutDown)).
func (r *Runtime) Close() error {
	r.mu.Lock()
	h := r.h
	r.h = nil
	r.mu.Unlock()
	if h == nil {
		return errClosed()
	}
	r.cleanup.Stop()
	C.loradock_runtime_free(h.p)
	return nil
}
