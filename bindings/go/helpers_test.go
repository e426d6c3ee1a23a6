package loradock

import (
	"context"
	"errors"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// Generous limits: the tests must pass on a slow, busy 2-core machine.
const (
	testTimeout = 3 * time.Minute
	pollLimit   = 60 * time.Second
)

// repoRoot is the repository root, two levels above this file.
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("runtime.Caller failed")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func modelDir(t *testing.T) string {
	return filepath.Join(repoRoot(t), "tests", "fixtures", "tiny", "model")
}
func adapterDir(t *testing.T) string {
	return filepath.Join(repoRoot(t), "tests", "fixtures", "tiny", "adapters")
}

// tinyOptions are the options of a runtime on the tiny fixture model.
func tinyOptions(t *testing.T) Options {
	return Options{
		ModelPath:       modelDir(t),
		CacheDir:        t.TempDir(),
		BudgetBytes:     64 << 20,
		Threads:         1,
		MaxContext:      256,
		StoreRoots:      []string{adapterDir(t)},
		AllowUnverified: true,
		// Tests pause requests on purpose (small stream buffers); never fail them for it.
		SlowConsumerTimeout: 10 * time.Minute,
	}
}

// openTiny opens a runtime on the tiny model (streamBuffer 0: the default), closed when
// the test ends.
func openTiny(t *testing.T, streamBuffer int) *Runtime {
	t.Helper()
	o := tinyOptions(t)
	o.StreamBuffer = streamBuffer
	rt, err := Open(o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := rt.Close(); err != nil && !errors.Is(err, ErrShutDown) {
			t.Errorf("Close: %v", err)
		}
	})
	return rt
}

// register registers fixture adapter dir under name.
func register(t *testing.T, rt *Runtime, name, dir string) uint64 {
	t.Helper()
	gen, err := rt.RegisterAdapter(name, filepath.Join(adapterDir(t), dir), "", PolicyDisposable)
	if err != nil {
		t.Fatalf("RegisterAdapter(%s): %v", name, err)
	}
	return gen
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// generate runs a request to its end.
func generate(t *testing.T, rt *Runtime, req Request) Result {
	t.Helper()
	gen, err := rt.Generate(testCtx(t), req)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	res, err := gen.Collect()
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}
	return res
}

// eventually polls cond until it holds or pollLimit passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(pollLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stats reads a runtime's stats or fails the test.
func stats(t *testing.T, rt *Runtime) Stats {
	t.Helper()
	s, err := rt.Stats()
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	return s
}

// noGoroutineLeak checks, when the test ends, that the goroutine count fell back to
// what it was when called (polling: finished goroutines take a moment to exit).
func noGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(pollLimit)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<16)
				t.Errorf("goroutines: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}
