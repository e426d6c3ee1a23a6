package loradock

// The cgo boundary. Every fallible loradock call goes through an ld_* helper below that
// makes the call and, when it fails, copies loradock's thread-local last error into a
// malloc'd string in the same C call: between two cgo calls a goroutine may move to
// another OS thread, whose last error is not ours.

/*
#cgo CFLAGS: -std=gnu11 -I${SRCDIR}/../../include
#include <stdlib.h>
#include <string.h>
#include "loradock.h"

// This thread's last error as a malloc'd string (NULL if out of memory).
static char *ld_last_error(void) {
	size_t n = 0;
	loradock_last_error_message(NULL, 0, &n);
	char *buf = malloc(n + 1);
	if (buf == NULL) return NULL;
	loradock_last_error_message(buf, n + 1, NULL);
	return buf;
}

#define LD_CHECK(call)                                   \
	do {                                                 \
		loradock_status s_ = (call);                     \
		if (s_ != LORADOCK_STATUS_OK) *err = ld_last_error(); \
		return s_;                                       \
	} while (0)

static loradock_status ld_runtime_new(const loradock_runtime_params *p, loradock_runtime **out, char **err) {
	LD_CHECK(loradock_runtime_new(p, out));
}

static loradock_status ld_adapter_register(const loradock_runtime *rt, const char *name, const char *source,
                                           const char *digest, int32_t policy, uint64_t *gen, char **err) {
	LD_CHECK(loradock_adapter_register(rt, name, source, digest, policy, gen));
}

static loradock_status ld_adapter_unregister(const loradock_runtime *rt, const char *name, char **err) {
	LD_CHECK(loradock_adapter_unregister(rt, name));
}

static loradock_status ld_runtime_stats(const loradock_runtime *rt, loradock_stats *out, char **err) {
	out->struct_size = sizeof *out;
	LD_CHECK(loradock_runtime_stats(rt, out));
}

static loradock_status ld_submit(const loradock_runtime *rt, const loradock_request_params *p,
                                 loradock_stream **out, char **err) {
	LD_CHECK(loradock_submit(rt, p, out));
}

static loradock_status ld_stream_cancel(const loradock_stream *s, char **err) {
	LD_CHECK(loradock_stream_cancel(s));
}

// The next event of `s`. Its strings (token text or error message) are copied into a
// malloc'd `*text` here, while the stream's own copies are certainly valid.
static loradock_status ld_stream_next(const loradock_stream *s, uint32_t timeout_ms, loradock_event *ev,
                                      char **text, char **err) {
	ev->struct_size = sizeof *ev;
	loradock_status st = loradock_stream_next(s, timeout_ms, ev);
	if (st == LORADOCK_STATUS_OK) {
		const char *src = ev->kind == LORADOCK_EVENT_TOKEN ? ev->text : ev->error_message;
		size_t n = ev->kind == LORADOCK_EVENT_TOKEN ? ev->text_len : (src ? strlen(src) : 0);
		if (src != NULL) {
			*text = malloc(n + 1);
			if (*text != NULL) {
				memcpy(*text, src, n);
				(*text)[n] = 0;
			}
		}
		ev->text = NULL;
		ev->error_message = NULL;
		if (ev->kind == LORADOCK_EVENT_TOKEN) ev->text_len = n;
	} else if (st != LORADOCK_STATUS_TIMEOUT && st != LORADOCK_STATUS_STREAM_ENDED) {
		*err = ld_last_error();
	}
	return st;
}

// The log bridge: Go's exported functions (log.go), reached through C trampolines.
extern void goLoradockLog(int32_t level, char *target, char *message, uintptr_t handle);
extern void goLoradockLogFree(uintptr_t handle);

static void ld_log_trampoline(int32_t level, const char *target, const char *message, void *user) {
	goLoradockLog(level, (char *)target, (char *)message, (uintptr_t)user);
}

static void ld_log_free_trampoline(void *user) {
	goLoradockLogFree((uintptr_t)user);
}

// Install (handle != 0) or remove (handle == 0) the Go log function behind `handle`.
static loradock_status ld_set_log(uintptr_t handle, int32_t max_level, char **err) {
	if (handle == 0) LD_CHECK(loradock_set_log_callback(NULL, NULL, NULL, max_level));
	LD_CHECK(loradock_set_log_callback(ld_log_trampoline, (void *)handle, ld_log_free_trampoline, max_level));
}
*/
import "C"

import (
	"strings"
	"unsafe"
)

// The Go side of the helpers: the only callers of the ld_* functions.

func capiRuntimeNew(p *C.loradock_runtime_params) (*C.loradock_runtime, error) {
	var rt *C.loradock_runtime
	var cerr *C.char
	return rt, checkStatus(C.ld_runtime_new(p, &rt, &cerr), cerr)
}

func capiRegister(rt *C.loradock_runtime, name, source, digest *C.char, policy Policy) (uint64, error) {
	var gen C.uint64_t
	var cerr *C.char
	err := checkStatus(C.ld_adapter_register(rt, name, source, digest, C.int32_t(policy), &gen, &cerr), cerr)
	return uint64(gen), err
}

func capiUnregister(rt *C.loradock_runtime, name *C.char) error {
	var cerr *C.char
	return checkStatus(C.ld_adapter_unregister(rt, name, &cerr), cerr)
}

func capiStats(rt *C.loradock_runtime) (C.loradock_stats, error) {
	var st C.loradock_stats
	var cerr *C.char
	return st, checkStatus(C.ld_runtime_stats(rt, &st, &cerr), cerr)
}

func capiSubmit(rt *C.loradock_runtime, p *C.loradock_request_params) (*C.loradock_stream, error) {
	var s *C.loradock_stream
	var cerr *C.char
	return s, checkStatus(C.ld_submit(rt, p, &s, &cerr), cerr)
}

func capiCancel(s *C.loradock_stream) error {
	var cerr *C.char
	return checkStatus(C.ld_stream_cancel(s, &cerr), cerr)
}

// capiNext waits up to timeoutMs for an event. status is OK (ev and text set), TIMEOUT or
// STREAM_ENDED; any other status is returned as err.
func capiNext(s *C.loradock_stream, timeoutMs uint32) (status Status, ev C.loradock_event, text string, err error) {
	var ctext, cerr *C.char
	st := C.ld_stream_next(s, C.uint32_t(timeoutMs), &ev, &ctext, &cerr)
	text = takeString(ctext)
	switch st {
	case C.LORADOCK_STATUS_OK, C.LORADOCK_STATUS_TIMEOUT, C.LORADOCK_STATUS_STREAM_ENDED:
		return Status(st), ev, text, nil
	}
	return Status(st), ev, text, checkStatus(st, cerr)
}

func capiSetLog(handle uintptr, maxLevel LogLevel) error {
	var cerr *C.char
	return checkStatus(C.ld_set_log(C.uintptr_t(handle), C.int32_t(maxLevel), &cerr), cerr)
}

// checkStatus turns a status and the last error an ld_* helper copied into an error (nil
// for OK), freeing the C copy.
func checkStatus(st C.loradock_status, cerr *C.char) error {
	msg := ""
	if cerr != nil {
		msg = C.GoString(cerr)
		C.free(unsafe.Pointer(cerr))
	}
	if st == C.LORADOCK_STATUS_OK {
		return nil
	}
	return &Error{Status: Status(st), Message: msg}
}

// takeString copies and frees a malloc'd C string (nil: "").
func takeString(s *C.char) string {
	if s == nil {
		return ""
	}
	defer C.free(unsafe.Pointer(s))
	return C.GoString(s)
}

// cArena holds the C memory of one call's arguments; free releases all of it.
type cArena struct {
	ptrs []unsafe.Pointer
}

// str is s as a C string, or NULL when s is empty.
func (a *cArena) str(s string) *C.char {
	if s == "" {
		return nil
	}
	p := C.CString(s)
	a.ptrs = append(a.ptrs, unsafe.Pointer(p))
	return p
}

// strs is ss as a C array of C strings (NULL when empty).
func (a *cArena) strs(ss []string) (**C.char, C.size_t) {
	if len(ss) == 0 {
		return nil, 0
	}
	arr := (**C.char)(a.alloc(uintptr(len(ss)) * unsafe.Sizeof((*C.char)(nil))))
	view := unsafe.Slice(arr, len(ss))
	for i, s := range ss {
		p := C.CString(s)
		a.ptrs = append(a.ptrs, unsafe.Pointer(p))
		view[i] = p
	}
	return arr, C.size_t(len(ss))
}

// alloc is n zeroed bytes of C memory.
func (a *cArena) alloc(n uintptr) unsafe.Pointer {
	p := C.calloc(1, C.size_t(n))
	if p == nil {
		panic("loradock: out of C memory")
	}
	a.ptrs = append(a.ptrs, p)
	return p
}

func (a *cArena) free() {
	for _, p := range a.ptrs {
		C.free(p)
	}
	a.ptrs = nil
}

// noNUL refuses strings with NUL bytes, which C would silently truncate.
func noNUL(what string, ss ...string) error {
	for _, s := range ss {
		if strings.IndexByte(s, 0) >= 0 {
			return &Error{Status: StatusInvalidArgument, Message: what + " contains a NUL byte"}
		}
	}
	return nil
}

// Version is the version of the loradock library linked in ("MAJOR.MINOR.PATCH").
func Version() string { return C.GoString(C.loradock_version()) }

// HeaderVersion is the version of the header this binding was built with.
const HeaderVersion = C.LORADOCK_VERSION_STRING

// ptr is p as an unsafe.Pointer (for C.free).
func ptr(p *C.char) unsafe.Pointer { return unsafe.Pointer(p) }
