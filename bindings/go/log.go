package loradock

// Only declarations in this preamble: the file has //export functions.

// #include <stdint.h>
import "C"

import (
	"runtime/cgo"
	"sync/atomic"
)

// LogLevel is the severity of a log record, from LogError (most severe) to LogTrace.
type LogLevel int32

const (
	LogError LogLevel = 1 // errors
	LogWarn  LogLevel = 2 // warnings
	LogInfo  LogLevel = 3 // information
	LogDebug LogLevel = 4 // debugging
	LogTrace LogLevel = 5 // tracing
)

// LogFunc receives one log record of loradock: its level, target (the Rust module) and
// message. It is called from loradock's threads, possibly several at once, so it must be
// safe for concurrent use; it must not call SetLogFunc. A panic in it is recovered and the
// record dropped.
type LogFunc func(level LogLevel, target, message string)

// liveLogHandles counts the cgo handles held by loradock (tests check they are released).
var liveLogHandles atomic.Int64

// SetLogFunc sends loradock's log records at maxLevel and more severe (LogError …
// LogTrace) to fn, process-wide, replacing any previous function; fn nil removes it
// (loradock is quiet by default). The function is kept through a runtime/cgo.Handle that
// is released when loradock lets go of it.
func SetLogFunc(maxLevel LogLevel, fn LogFunc) error {
	if fn == nil {
		// The C call checks the level even when removing; any valid one will do.
		return capiSetLog(0, LogError)
	}
	h := cgo.NewHandle(fn)
	liveLogHandles.Add(1)
	if err := capiSetLog(uintptr(h), maxLevel); err != nil {
		h.Delete()
		liveLogHandles.Add(-1)
		return err
	}
	return nil
}

//export goLoradockLog
func goLoradockLog(level C.int32_t, target *C.char, message *C.char, handle C.uintptr_t) {
	defer func() { _ = recover() }()
	fn := cgo.Handle(handle).Value().(LogFunc)
	fn(LogLevel(level), C.GoString(target), C.GoString(message))
}

//export goLoradockLogFree
func goLoradockLogFree(handle C.uintptr_t) {
	cgo.Handle(handle).Delete()
	liveLogHandles.Add(-1)
}
