package loradock

// #include "loradock.h"
import "C"

import "fmt"

// Status is a loradock status code (loradock_status in C). Values are banded by class:
// 1xx the caller's arguments, 2xx lookups, streams and lifecycle, 3xx capacity, 4xx files
// and formats, 5xx fetching adapters, 6xx consumers, 9xx internal failures.
type Status int32

// The statuses of the C ABI.
const (
	StatusOK              Status = C.LORADOCK_STATUS_OK               // Success.
	StatusNullArgument    Status = C.LORADOCK_STATUS_NULL_ARGUMENT    // A required argument was missing.
	StatusInvalidArgument Status = C.LORADOCK_STATUS_INVALID_ARGUMENT // An argument's value is invalid.
	StatusInvalidUTF8     Status = C.LORADOCK_STATUS_INVALID_UTF8     // A string is not valid UTF-8.
	StatusStructSize      Status = C.LORADOCK_STATUS_STRUCT_SIZE      // A params struct is too small.
	StatusBufferTooSmall  Status = C.LORADOCK_STATUS_BUFFER_TOO_SMALL // An output buffer was too small.
	StatusUnknownAdapter  Status = C.LORADOCK_STATUS_UNKNOWN_ADAPTER  // No adapter has that name.
	StatusShutDown        Status = C.LORADOCK_STATUS_SHUT_DOWN        // The runtime is shut down (or closed).
	StatusTimeout         Status = C.LORADOCK_STATUS_TIMEOUT          // No event within a time-out.
	StatusStreamEnded     Status = C.LORADOCK_STATUS_STREAM_ENDED     // The stream already ended.
	StatusBusy            Status = C.LORADOCK_STATUS_BUSY             // A bounded queue is full; retry later.
	StatusOverBudget      Status = C.LORADOCK_STATUS_OVER_BUDGET      // The work does not fit the memory budget.
	StatusIO              Status = C.LORADOCK_STATUS_IO               // A file could not be read or written.
	StatusFormat          Status = C.LORADOCK_STATUS_FORMAT           // A file is malformed.
	StatusUnsupported     Status = C.LORADOCK_STATUS_UNSUPPORTED      // A format feature is not supported.
	StatusShapeMismatch   Status = C.LORADOCK_STATUS_SHAPE_MISMATCH   // A tensor's shape does not fit the model.
	StatusMissingTensor   Status = C.LORADOCK_STATUS_MISSING_TENSOR   // A required tensor is missing.
	StatusConfig          Status = C.LORADOCK_STATUS_CONFIG           // A configuration is invalid.
	StatusAdapter         Status = C.LORADOCK_STATUS_ADAPTER          // An adapter cannot be used.
	StatusTokenizer       Status = C.LORADOCK_STATUS_TOKENIZER        // Text could not be tokenized or templated.
	StatusFetch           Status = C.LORADOCK_STATUS_FETCH            // An adapter could not be fetched.
	StatusDigestMismatch  Status = C.LORADOCK_STATUS_DIGEST_MISMATCH  // Fetched content has another digest.
	StatusFetchTimeout    Status = C.LORADOCK_STATUS_FETCH_TIMEOUT    // A fetch ran past its time limit.
	StatusSlowConsumer    Status = C.LORADOCK_STATUS_SLOW_CONSUMER    // The stream was not read in time.
	StatusInternal        Status = C.LORADOCK_STATUS_INTERNAL         // A runtime component failed.
	StatusPanic           Status = C.LORADOCK_STATUS_PANIC            // A panic was caught inside loradock.
	StatusDevice          Status = C.LORADOCK_STATUS_DEVICE           // A compute device (GPU) failed or cannot be used.
)

// String is the status's C name, e.g. "LORADOCK_STATUS_BUSY" ("LORADOCK_STATUS_UNKNOWN"
// for a value that is not a status).
func (s Status) String() string { return C.GoString(C.loradock_status_str(C.int32_t(s))) }

// Error is a failure reported by loradock: its status and message. Errors returned by this
// package, and the errors of failed requests, are *Error values.
type Error struct {
	Status  Status // what kind of failure
	Message string // loradock's explanation
}

// Error formats the error as "loradock: <STATUS>: <message>".
func (e *Error) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("loradock: %v", e.Status)
	}
	return fmt.Sprintf("loradock: %v: %s", e.Status, e.Message)
}

// Is reports whether target is an *Error with the same status, so that
// errors.Is(err, ErrUnknownAdapter) matches any unknown-adapter error.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Status == e.Status
}

// Sentinels for errors.Is; each matches every *Error of its status.
var (
	ErrNullArgument    = &Error{Status: StatusNullArgument}    // matches StatusNullArgument
	ErrInvalidArgument = &Error{Status: StatusInvalidArgument} // matches StatusInvalidArgument
	ErrInvalidUTF8     = &Error{Status: StatusInvalidUTF8}     // matches StatusInvalidUTF8
	ErrUnknownAdapter  = &Error{Status: StatusUnknownAdapter}  // matches StatusUnknownAdapter
	ErrShutDown        = &Error{Status: StatusShutDown}        // matches StatusShutDown, also calls on a closed Runtime
	ErrBusy            = &Error{Status: StatusBusy}            // matches StatusBusy
	ErrOverBudget      = &Error{Status: StatusOverBudget}      // matches StatusOverBudget
	ErrIO              = &Error{Status: StatusIO}              // matches StatusIO
	ErrFormat          = &Error{Status: StatusFormat}          // matches StatusFormat
	ErrUnsupported     = &Error{Status: StatusUnsupported}     // matches StatusUnsupported
	ErrShapeMismatch   = &Error{Status: StatusShapeMismatch}   // matches StatusShapeMismatch
	ErrMissingTensor   = &Error{Status: StatusMissingTensor}   // matches StatusMissingTensor
	ErrConfig          = &Error{Status: StatusConfig}          // matches StatusConfig
	ErrAdapter         = &Error{Status: StatusAdapter}         // matches StatusAdapter
	ErrTokenizer       = &Error{Status: StatusTokenizer}       // matches StatusTokenizer
	ErrFetch           = &Error{Status: StatusFetch}           // matches StatusFetch
	ErrDigestMismatch  = &Error{Status: StatusDigestMismatch}  // matches StatusDigestMismatch
	ErrFetchTimeout    = &Error{Status: StatusFetchTimeout}    // matches StatusFetchTimeout
	ErrSlowConsumer    = &Error{Status: StatusSlowConsumer}    // matches StatusSlowConsumer
	ErrInternal        = &Error{Status: StatusInternal}        // matches StatusInternal
	ErrPanic           = &Error{Status: StatusPanic}           // matches StatusPanic
)

// errClosed is returned by calls on a closed Runtime.
func errClosed() error {
	return &Error{Status: StatusShutDown, Message: "the runtime is closed"}
}
