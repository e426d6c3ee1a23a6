package loradock

// #include "loradock.h"
import "C"

import (
	"context"
	"io"
	"iter"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// EventKind says what an Event holds.
type EventKind int32

const (
	EventToken EventKind = C.LORADOCK_EVENT_TOKEN // generated text
	EventDone  EventKind = C.LORADOCK_EVENT_DONE  // the request ended normally (terminal)
	EventError EventKind = C.LORADOCK_EVENT_ERROR // the request failed (terminal)
)

// String is "token", "done" or "error".
func (k EventKind) String() string {
	switch k {
	case EventToken:
		return "token"
	case EventDone:
		return "done"
	case EventError:
		return "error"
	}
	return "unknown"
}

// FinishReason says why a request ended (Done events).
type FinishReason int32

const (
	FinishNone      FinishReason = C.LORADOCK_FINISH_NONE      // not a Done event
	FinishLength    FinishReason = C.LORADOCK_FINISH_LENGTH    // MaxTokens reached
	FinishEOS       FinishReason = C.LORADOCK_FINISH_EOS       // end-of-generation token
	FinishStop      FinishReason = C.LORADOCK_FINISH_STOP      // a stop string
	FinishCancelled FinishReason = C.LORADOCK_FINISH_CANCELLED // cancelled (Cancel, Close or the context)
)

// String is "none", "length", "eos", "stop" or "cancelled".
func (f FinishReason) String() string {
	switch f {
	case FinishNone:
		return "none"
	case FinishLength:
		return "length"
	case FinishEOS:
		return "eos"
	case FinishStop:
		return "stop"
	case FinishCancelled:
		return "cancelled"
	}
	return "unknown"
}

// Usage holds the counts and timings of a finished request.
type Usage struct {
	PromptTokens     int           // prompt tokens
	CompletionTokens int           // generated tokens
	Queue            time.Duration // submit → admitted
	Prefill          time.Duration // prompt processing
	Decode           time.Duration // decoding
}

// Event is one event of a request. Every request ends with exactly one terminal event:
// EventDone or EventError.
type Event struct {
	Kind   EventKind    // which event
	Text   string       // EventToken: the text (UTF-8)
	Finish FinishReason // EventDone: why the request ended
	Usage  Usage        // EventDone: counts and timings
	Err    *Error       // EventError: the failure
}

// Terminal reports whether e is the request's last event (Done or Error).
func (e Event) Terminal() bool { return e.Kind != EventToken }

// Result is a whole request read by Collect.
type Result struct {
	Text   string       // the generated text
	Finish FinishReason // why the request ended
	Usage  Usage        // counts and timings
}

// pollMs bounds each native wait so that Close and the cancel grace period are noticed.
const pollMs = 500

// cancelGrace is how long a request may take to end after its context was cancelled
// before the consumer gets the context's error instead of a terminal event.
const cancelGrace = 60 * time.Second

// Generation is a submitted request: its events, read by one goroutine at a time with
// Events, Next or Collect. Cancel and Close may be called from any goroutine. Reading it
// to its terminal event (or breaking out of Events) releases it; otherwise call Close.
type Generation struct {
	rt      *Runtime // keeps the runtime alive while the request is read
	ctx     context.Context
	h       *streamHandle
	readMu  sync.Mutex // one reader; Close waits for it
	done    bool       // the terminal event (or the end) was delivered
	cleanup runtime.Cleanup
}

// streamHandle owns the C stream; separate from Generation so a cleanup can free it.
type streamHandle struct {
	mu          sync.Mutex // guards p between cancel and free
	p           *C.loradock_stream
	stopCtx     func() bool
	closing     atomic.Bool
	ctxCancelAt atomic.Int64 // unix nanos when the context cancelled the request; 0 if not
}

func newGeneration(ctx context.Context, rt *Runtime, s *C.loradock_stream) *Generation {
	h := &streamHandle{p: s}
	g := &Generation{rt: rt, ctx: ctx, h: h}
	h.stopCtx = context.AfterFunc(ctx, func() {
		h.ctxCancelAt.Store(time.Now().UnixNano())
		h.cancel()
	})
	g.cleanup = runtime.AddCleanup(g, func(h *streamHandle) { h.free() }, h)
	return g
}

// cancel asks the request to end (a no-op once freed).
func (h *streamHandle) cancel() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.p != nil {
		_ = capiCancel(h.p) // fails only for NULL
	}
}

// free releases the stream (cancelling its request if it runs). The caller holds the
// Generation's read lock, or no reader exists.
func (h *streamHandle) free() {
	h.stopCtx()
	h.mu.Lock()
	p := h.p
	h.p = nil
	h.mu.Unlock()
	C.loradock_stream_free(p) // NULL is a no-op
}

// Next waits for the request's next event. After the terminal event it returns io.EOF.
// A request whose context is cancelled ends with a Done event with FinishCancelled;
// should it not end within a minute, Next returns the context's error. On a Generation
// closed before its end it returns an error with StatusStreamEnded.
func (g *Generation) Next() (Event, error) {
	g.readMu.Lock()
	defer g.readMu.Unlock()
	if g.done {
		return Event{}, io.EOF
	}
	for {
		if g.h.p == nil || g.h.closing.Load() {
			return Event{}, &Error{Status: StatusStreamEnded, Message: "the generation was closed before its end"}
		}
		st, ev, text, err := capiNext(g.h.p, pollMs)
		if err != nil {
			return Event{}, err
		}
		switch st {
		case StatusOK:
			e := eventOf(&ev, text)
			if e.Terminal() {
				g.end()
			}
			return e, nil
		case StatusTimeout:
			if at := g.h.ctxCancelAt.Load(); at != 0 && time.Since(time.Unix(0, at)) > cancelGrace {
				g.end()
				return Event{}, g.ctx.Err()
			}
		case StatusStreamEnded:
			g.end()
			return Event{}, io.EOF
		}
	}
}

// end marks the request delivered and frees its stream (read lock held).
func (g *Generation) end() {
	g.done = true
	g.h.free()
}

func eventOf(ev *C.loradock_event, text string) Event {
	e := Event{Kind: EventKind(ev.kind)}
	switch e.Kind {
	case EventToken:
		e.Text = text
	case EventDone:
		e.Finish = FinishReason(ev.finish_reason)
		u := &ev.usage
		e.Usage = Usage{
			PromptTokens:     int(u.prompt_tokens),
			CompletionTokens: int(u.completion_tokens),
			Queue:            msDuration(float64(u.queue_ms)),
			Prefill:          msDuration(float64(u.prefill_ms)),
			Decode:           msDuration(float64(u.decode_ms)),
		}
	default:
		e.Err = &Error{Status: Status(ev.error_status), Message: text}
	}
	return e
}

func msDuration(ms float64) time.Duration { return time.Duration(ms * float64(time.Millisecond)) }

// Events iterates over the request's events up to and including the terminal one:
//
//	for ev, err := range gen.Events() { ... }
//
// err is non-nil at most once, on the last iteration: for the request's Error event
// (ev.Kind == EventError and err == ev.Err), or when reading failed (ev is zero; e.g. the
// context's error when a cancelled request did not end in time). Breaking out of the loop
// cancels the request and releases the Generation. The iterator runs on the caller's
// goroutine; a second range continues where the first stopped.
func (g *Generation) Events() iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		for {
			ev, err := g.Next()
			switch {
			case err == io.EOF:
				return
			case err != nil:
				yield(Event{}, err)
				g.Close()
				return
			case ev.Kind == EventError:
				yield(ev, ev.Err)
				return
			}
			if !yield(ev, nil) {
				g.Close()
				return
			}
			if ev.Terminal() {
				return
			}
		}
	}
}

// Collect reads the request to its end and returns its text, finish reason and usage.
// A failed request returns its *Error (with what text came before it); a request ended by
// the cancellation of its context returns the context's error with the partial result.
func (g *Generation) Collect() (Result, error) {
	var b strings.Builder
	var res Result
	for ev, err := range g.Events() {
		if err != nil {
			res.Text = b.String()
			return res, err
		}
		switch ev.Kind {
		case EventToken:
			b.WriteString(ev.Text)
		case EventDone:
			res.Finish, res.Usage = ev.Finish, ev.Usage
		}
	}
	res.Text = b.String()
	if res.Finish == FinishCancelled && g.ctx.Err() != nil {
		return res, g.ctx.Err()
	}
	return res, nil
}

// Cancel asks the request to end: it ends with a Done event with FinishCancelled unless it
// ended first. Idempotent; callable from any goroutine, also while another one reads.
func (g *Generation) Cancel() { g.h.cancel() }

// Close cancels the request if it still runs and releases it; a reader blocked in Next on
// another goroutine returns soon. Idempotent; always returns nil.
func (g *Generation) Close() error {
	g.h.closing.Store(true)
	g.h.cancel()
	g.readMu.Lock()
	defer g.readMu.Unlock()
	g.h.free()
	g.cleanup.Stop()
	return nil
}
