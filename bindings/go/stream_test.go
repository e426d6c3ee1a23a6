package loradock

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
)

// Cancelling the context mid-stream ends the request with one Done event, FinishCancelled.
// With a stream buffer of 2 the request pauses for its reader, so it cannot finish first.
func TestCancelViaContext(t *testing.T) {
	noGoroutineLeak(t)
	rt := openTiny(t, 2)
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	gen, err := rt.Generate(ctx, Request{Prompt: "hello world", MaxTokens: 200, IgnoreEOS: true})
	if err != nil {
		t.Fatal(err)
	}
	first, err := gen.Next()
	if err != nil || first.Kind != EventToken {
		t.Fatalf("first event %+v, %v", first, err)
	}
	cancel()
	var terminal []Event
	tokens := 1
	for ev, err := range gen.Events() {
		if err != nil {
			t.Fatalf("error after cancel: %v", err)
		}
		if ev.Terminal() {
			terminal = append(terminal, ev)
		} else {
			tokens++
		}
	}
	if len(terminal) != 1 || terminal[0].Kind != EventDone || terminal[0].Finish != FinishCancelled {
		t.Fatalf("terminal events %+v", terminal)
	}
	if n := terminal[0].Usage.CompletionTokens; n >= 200 || n < 1 || tokens > 200 {
		t.Fatalf("%d completion tokens, %d token events", n, tokens)
	}
	if _, err := gen.Next(); err != io.EOF {
		t.Fatalf("Next after the end: %v", err)
	}

	// Collect reports the context's error with what came before it.
	ctx2, cancel2 := context.WithCancel(testCtx(t))
	gen, err = rt.Generate(ctx2, Request{Prompt: "hello world", MaxTokens: 200, IgnoreEOS: true})
	if err != nil {
		t.Fatal(err)
	}
	cancel2()
	res, err := gen.Collect()
	if !errors.Is(err, context.Canceled) || res.Finish != FinishCancelled {
		t.Fatalf("Collect after cancel: %+v, %v", res, err)
	}

	// A context already done: nothing is submitted.
	if _, err := rt.Generate(ctx2, Request{Prompt: "hi"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Generate with a done context: %v", err)
	}
	var s Stats
	eventually(t, "two cancelled requests", func() bool {
		s = stats(t, rt)
		return s.RequestsCancelled == 2 && s.Running == 0
	})
	if s.RequestsSubmitted != 2 {
		t.Fatalf("stats %+v", s)
	}
}

// Breaking out of Events, Cancel, and Close (also while another goroutine reads) end the
// request and release its stream.
func TestBreakCancelAndClose(t *testing.T) {
	noGoroutineLeak(t)
	rt := openTiny(t, 2)
	req := Request{Prompt: "the cat", MaxTokens: 200, IgnoreEOS: true}

	gen, err := rt.Generate(testCtx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for ev, err := range gen.Events() {
		if err != nil || ev.Kind != EventToken {
			t.Fatalf("%+v, %v", ev, err)
		}
		if n++; n == 2 {
			break
		}
	}
	if _, err := gen.Next(); !errors.Is(err, &Error{Status: StatusStreamEnded}) {
		t.Fatalf("Next after break: %v", err)
	}

	gen, err = rt.Generate(testCtx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	gen.Cancel()
	gen.Cancel() // idempotent
	res, err := gen.Collect()
	if err != nil || res.Finish != FinishCancelled {
		t.Fatalf("after Cancel: %+v, %v", res, err)
	}

	gen, err = rt.Generate(testCtx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gen.Next(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var readerErr error
	var terminals int
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			ev, err := gen.Next()
			if err != nil {
				if err != io.EOF {
					readerErr = err
				}
				return
			}
			if ev.Terminal() {
				terminals++
				if ev.Finish != FinishCancelled {
					readerErr = errors.New("terminal event is not a cancellation: " + ev.Kind.String())
				}
			}
		}
	}()
	if err := gen.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	// The reader saw either the cancellation or that the generation was closed.
	if terminals > 1 || (readerErr != nil && !errors.Is(readerErr, &Error{Status: StatusStreamEnded})) {
		t.Fatalf("reader: %d terminal events, error %v", terminals, readerErr)
	}
	if err := gen.Close(); err != nil {
		t.Fatal(err)
	}

	// An unread Generation closed at once.
	gen, err = rt.Generate(testCtx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	gen.Close()
	eventually(t, "four cancelled requests", func() bool {
		s := stats(t, rt)
		return s.RequestsCancelled == 4 && s.Running == 0
	})
}
