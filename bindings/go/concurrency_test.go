package loradock

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// 8 goroutines × 5 requests with different adapters at once: every request completes
// with its token count, and the same adapter gives the same greedy text as it did alone.
func TestManyGoroutines(t *testing.T) {
	noGoroutineLeak(t)
	rt := openTiny(t, 0)
	names := []string{"", "qv", "mlp", "a", "b"}
	register(t, rt, "qv", "r8_qv")
	register(t, rt, "mlp", "r16_mlp")
	register(t, rt, "a", "t_a")
	register(t, rt, "b", "t_b")
	request := func(name string) Request {
		r := Request{Prompt: "hello world", MaxTokens: 6, IgnoreEOS: true}
		if name != "" {
			r.Adapters = []AdapterUse{Adapter(name)}
		}
		return r
	}
	alone := map[string]string{}
	for _, n := range names {
		alone[n] = generate(t, rt, request(n)).Text
	}
	if alone[""] == alone["qv"] || alone[""] == alone["mlp"] {
		t.Fatalf("adapters do not change the output: %q", alone)
	}

	const workers, perWorker = 8, 5
	errs := make(chan error, workers*perWorker)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				name := names[(w+i)%len(names)]
				gen, err := rt.Generate(testCtx(t), request(name))
				if err != nil {
					errs <- fmt.Errorf("worker %d: Generate(%q): %w", w, name, err)
					continue
				}
				res, err := gen.Collect()
				switch {
				case err != nil:
					errs <- fmt.Errorf("worker %d (%q): %w", w, name, err)
				case res.Finish != FinishLength || res.Usage.CompletionTokens != 6:
					errs <- fmt.Errorf("worker %d (%q): %+v", w, name, res)
				case res.Text != alone[name]:
					errs <- fmt.Errorf("worker %d (%q): %q, alone %q", w, name, res.Text, alone[name])
				}
			}
			// A failing call on this goroutine gets its own message.
			ghost := fmt.Sprintf("ghost-%d", w)
			if err := rt.UnregisterAdapter(ghost); !errors.Is(err, ErrUnknownAdapter) || !strings.Contains(err.Error(), ghost) {
				errs <- fmt.Errorf("worker %d: unregister %s: %v", w, ghost, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	eventually(t, "all requests to be counted", func() bool {
		s := stats(t, rt)
		return s.RequestsCompleted == workers*perWorker+uint64(len(names)) && s.Running == 0 && s.AdaptersDocked == 0
	})
}

// Closing a runtime while requests run. Requests nobody reads during Close are paused
// (stream buffer 2) and cannot finish: each ends with exactly one terminal event, an Error
// with StatusShutDown, read after Close. Requests read during Close end with exactly one
// terminal event (the shutdown error, or Done if they won the race). Calls racing with
// Close either work or fail with ErrShutDown (or ErrBusy); later calls fail with ErrShutDown.
func TestCloseWhileRunning(t *testing.T) {
	noGoroutineLeak(t)
	rt := openTiny(t, 2)
	register(t, rt, "qv", "r8_qv")
	const paused, read = 3, 2
	gens := make([]*Generation, paused+read)
	for i := range gens {
		req := Request{Prompt: "hello world", MaxTokens: 200, IgnoreEOS: true}
		if i%2 == 1 {
			req.Adapters = []AdapterUse{Adapter("qv")}
		}
		gen, err := rt.Generate(testCtx(t), req)
		if err != nil {
			t.Fatal(err)
		}
		if ev, err := gen.Next(); err != nil || ev.Kind != EventToken {
			t.Fatalf("first event %+v, %v", ev, err)
		}
		gens[i] = gen
	}

	type outcome struct {
		terminals int
		last      Event
		err       error
	}
	outcomes := make([]outcome, len(gens))
	drain := func(i int) {
		for ev, err := range gens[i].Events() {
			if ev.Terminal() {
				outcomes[i].terminals++
				outcomes[i].last = ev
			}
			if err != nil {
				outcomes[i].err = err
			}
		}
	}
	var wg sync.WaitGroup
	for i := paused; i < len(gens); i++ {
		wg.Add(1)
		go func() { defer wg.Done(); drain(i) }()
	}
	// Other goroutines keep calling the runtime while it closes.
	stop := make(chan struct{})
	callerErrs := make(chan error, 2)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := rt.Stats(); err != nil && !errors.Is(err, ErrShutDown) {
					callerErrs <- err
					return
				}
				gen, err := rt.Generate(testCtx(t), Request{Prompt: "hi", MaxTokens: 2})
				if err == nil {
					gen.Close()
				} else if !errors.Is(err, ErrShutDown) && !errors.Is(err, ErrBusy) {
					callerErrs <- err
					return
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}
	time.Sleep(20 * time.Millisecond) // let the callers run (not synchronization)
	if err := rt.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	close(stop)
	wg.Wait()
	close(callerErrs)
	for err := range callerErrs {
		t.Errorf("a call racing with Close: %v", err)
	}
	for i := range paused {
		drain(i)
	}
	for i, o := range outcomes {
		shutDown := o.last.Kind == EventError && errors.Is(o.err, ErrShutDown)
		finished := i >= paused && o.last.Kind == EventDone && o.err == nil
		if o.terminals != 1 || !(shutDown || finished) {
			t.Errorf("request %d: %d terminal events, last %+v, error %v", i, o.terminals, o.last, o.err)
		}
	}
	if _, err := rt.Stats(); !errors.Is(err, ErrShutDown) {
		t.Errorf("Stats after Close: %v", err)
	}
	if _, err := rt.Generate(testCtx(t), Request{Prompt: "hi"}); !errors.Is(err, ErrShutDown) {
		t.Errorf("Generate after Close: %v", err)
	}
	if _, err := rt.RegisterAdapter("x", "/x", "", PolicyDisposable); !errors.Is(err, ErrShutDown) {
		t.Errorf("RegisterAdapter after Close: %v", err)
	}
	if err := rt.UnregisterAdapter("qv"); !errors.Is(err, ErrShutDown) {
		t.Errorf("UnregisterAdapter after Close: %v", err)
	}
	if err := rt.Close(); !errors.Is(err, ErrShutDown) {
		t.Errorf("second Close: %v", err)
	}
}
