package loradock

import (
	"errors"
	"sync"
	"testing"
)

// The log function receives records at the chosen level and more severe; replacing or
// removing it releases its cgo handle; nothing arrives once removed.
func TestLogFunc(t *testing.T) {
	var mu sync.Mutex
	records, worst := 0, LogTrace
	first := func(level LogLevel, target, message string) {
		mu.Lock()
		defer mu.Unlock()
		if level > LogInfo || target == "" {
			t.Errorf("record level %d target %q passed an info filter: %s", level, target, message)
		}
		records++
		worst = min(worst, level)
	}
	if err := SetLogFunc(9, first); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("level 9: %v", err)
	}
	if n := liveLogHandles.Load(); n != 0 {
		t.Fatalf("%d handles after a refused SetLogFunc", n)
	}
	if err := SetLogFunc(LogInfo, first); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = SetLogFunc(0, nil) })
	rt, err := Open(tinyOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	rt.Close()
	mu.Lock()
	got := records
	mu.Unlock()
	if got == 0 {
		t.Fatal("no log records")
	}

	// Replacing it releases the first function's handle.
	second := func(LogLevel, string, string) { panic("a panicking log function is contained") }
	if err := SetLogFunc(LogDebug, second); err != nil {
		t.Fatal(err)
	}
	if n := liveLogHandles.Load(); n != 1 {
		t.Fatalf("%d live handles after replacing, want 1", n)
	}
	rt, err = Open(tinyOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	rt.Close()
	if err := SetLogFunc(0, nil); err != nil {
		t.Fatal(err)
	}
	if n := liveLogHandles.Load(); n != 0 {
		t.Fatalf("%d live handles after removing, want 0", n)
	}
	mu.Lock()
	if records != got {
		t.Fatalf("the first function got %d records after it was replaced", records-got)
	}
	mu.Unlock()
}
