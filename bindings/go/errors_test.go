package loradock

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestErrorValues(t *testing.T) {
	err := error(&Error{Status: StatusUnknownAdapter, Message: `no adapter "x"`})
	if !errors.Is(err, ErrUnknownAdapter) || errors.Is(err, ErrBusy) {
		t.Fatal("errors.Is does not compare statuses")
	}
	if got := err.Error(); got != `loradock: LORADOCK_STATUS_UNKNOWN_ADAPTER: no adapter "x"` {
		t.Fatalf("Error() = %q", got)
	}
	if StatusBusy.String() != "LORADOCK_STATUS_BUSY" || Status(12345).String() != "LORADOCK_STATUS_UNKNOWN" {
		t.Fatalf("status names %v %v", StatusBusy, Status(12345))
	}
	if int(StatusBusy) != 300 || int(StatusUnknownAdapter) != 200 {
		t.Fatal("status values differ from the C ABI")
	}
}

// A bad model path fails Open with an error naming the path.
func TestOpenBadModelPath(t *testing.T) {
	o := tinyOptions(t)
	o.ModelPath = filepath.Join(t.TempDir(), "no-such-model")
	rt, err := Open(o)
	if err == nil || rt != nil {
		t.Fatal("Open succeeded on a missing model")
	}
	var e *Error
	if !errors.As(err, &e) || e.Status == StatusOK || !strings.Contains(e.Message, o.ModelPath) {
		t.Fatalf("error %v does not name %s", err, o.ModelPath)
	}
	o = tinyOptions(t)
	o.BudgetBytes = 1024
	if _, err := Open(o); !errors.Is(err, ErrOverBudget) {
		t.Fatalf("a 1 KiB budget: %v", err)
	}
	if _, err := Open(Options{}); !errors.Is(err, ErrNullArgument) {
		t.Fatalf("no model path: %v", err)
	}
	o = tinyOptions(t)
	o.Device = "cuda:7"
	if _, err := Open(o); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("device cuda:7: %v", err)
	}
}

// Unknown adapters fail at once with StatusUnknownAdapter and name the adapter; bad
// arguments are ErrInvalidArgument; the runtime keeps serving.
func TestErrorsAtSubmission(t *testing.T) {
	rt := openTiny(t, 0)
	ctx := testCtx(t)
	_, err := rt.Generate(ctx, Request{Prompt: "hi", MaxTokens: 4, Adapters: []AdapterUse{Adapter("nope")}})
	var e *Error
	if !errors.As(err, &e) || e.Status != StatusUnknownAdapter || !errors.Is(err, ErrUnknownAdapter) || !strings.Contains(e.Message, "nope") {
		t.Fatalf("unknown adapter: %v", err)
	}
	if err := rt.UnregisterAdapter("never"); !errors.Is(err, ErrUnknownAdapter) || !strings.Contains(err.Error(), "never") {
		t.Fatalf("unregister unknown: %v", err)
	}
	bad := []struct {
		what string
		req  Request
	}{
		{"no input", Request{MaxTokens: 4}},
		{"two inputs", Request{Prompt: "hi", TokenIDs: []uint32{1}}},
		{"NUL in prompt", Request{Prompt: "a\x00b"}},
		{"max tokens", Request{Prompt: "hi", MaxTokens: 100000}},
		{"temperature", Request{Prompt: "hi", Temperature: -1}},
		{"combination", Request{Prompt: "hi", Combination: "nonsense"}},
		{"negative", Request{Prompt: "hi", TopK: -1}},
	}
	for _, b := range bad {
		if _, err := rt.Generate(ctx, b.req); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: %v", b.what, err)
		}
	}
	if _, err := rt.RegisterAdapter("a", "/x", "sha256:zz", PolicyDisposable); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("bad digest: %v", err)
	}
	if _, err := rt.RegisterAdapter("a", "/x", "", Policy(7)); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("bad policy: %v", err)
	}
	if _, err := rt.RegisterAdapter("a+b", "/x", "", PolicyDisposable); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("bad name: %v", err)
	}
	if res := generate(t, rt, Request{Prompt: "hi", MaxTokens: 3, IgnoreEOS: true}); res.Usage.CompletionTokens != 3 {
		t.Fatalf("after errors: %+v", res)
	}
}

// A refused adapter (DoRA) is accepted at submission and fails its request with an Error
// event (StatusAdapter, naming DoRA), delivered as the iterator's error.
func TestRefusedAdapterErrorEvent(t *testing.T) {
	rt := openTiny(t, 0)
	register(t, rt, "dora", "refuse_dora")
	gen, err := rt.Generate(testCtx(t), Request{Prompt: "hi", MaxTokens: 4, Adapters: []AdapterUse{Adapter("dora")}})
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	var got []Event
	var last error
	for ev, err := range gen.Events() {
		got = append(got, ev)
		last = err
	}
	if len(got) != 1 || got[0].Kind != EventError || got[0].Err == nil {
		t.Fatalf("events %+v, want one error event", got)
	}
	if last != error(got[0].Err) || !errors.Is(last, ErrAdapter) || !strings.Contains(got[0].Err.Message, "DoRA") {
		t.Fatalf("error %v (event %+v)", last, got[0].Err)
	}
	// An inline adapter outside the store roots: a fetch error, through Collect.
	gen, err = rt.Generate(testCtx(t), Request{Prompt: "hi", MaxTokens: 4, Adapters: []AdapterUse{{Source: "/etc"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gen.Collect(); !errors.Is(err, ErrFetch) {
		t.Fatalf("source outside the roots: %v", err)
	}
	if s := stats(t, rt); s.RequestsFailed != 2 || s.DockFailures < 1 {
		t.Fatalf("stats %+v", s)
	}
}
