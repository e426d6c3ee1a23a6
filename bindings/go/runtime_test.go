package loradock

import (
	"testing"
)

func TestVersion(t *testing.T) {
	if v := Version(); v != HeaderVersion || v == "" {
		t.Fatalf("library version %q, header version %q", v, HeaderVersion)
	}
}

// A request on the base model and one with an adapter: both run to max_tokens (ignore_eos)
// and the adapter changes the text; the iterator ends with exactly one terminal event; the
// ledger returns to the base weights.
func TestGenerateWithAndWithoutAdapter(t *testing.T) {
	rt := openTiny(t, 0)
	if gen := register(t, rt, "qv", "r8_qv"); gen < 1 {
		t.Fatalf("generation %d, want >= 1", gen)
	}
	req := Request{Prompt: "hello world", MaxTokens: 8, IgnoreEOS: true}
	base := generate(t, rt, req)
	req.Adapters = []AdapterUse{Adapter("qv")}

	gen, err := rt.Generate(testCtx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	var text string
	var tokens, terminals int
	var last Event
	for ev, err := range gen.Events() {
		if err != nil {
			t.Fatalf("event error: %v", err)
		}
		if terminals > 0 {
			t.Fatalf("event %+v after the terminal event", ev)
		}
		if ev.Terminal() {
			terminals++
		} else {
			tokens++
			text += ev.Text
		}
		last = ev
	}
	if terminals != 1 || last.Kind != EventDone || last.Finish != FinishLength {
		t.Fatalf("terminals %d, last %+v", terminals, last)
	}
	if last.Usage.CompletionTokens != 8 || last.Usage.PromptTokens == 0 {
		t.Fatalf("usage %+v, want 8 completion tokens", last.Usage)
	}
	if tokens == 0 || text == "" {
		t.Fatalf("no text (%d token events)", tokens)
	}
	if base.Finish != FinishLength || base.Usage.CompletionTokens != 8 || base.Text == "" {
		t.Fatalf("base result %+v", base)
	}
	if base.Text == text {
		t.Fatalf("the adapter did not change the output: %q", text)
	}
	// The stream is released: reading on gives io.EOF, closing is harmless.
	if _, err := gen.Next(); err == nil || err.Error() != "EOF" {
		t.Fatalf("Next after the end: %v", err)
	}
	if err := gen.Close(); err != nil {
		t.Fatal(err)
	}

	var s Stats
	eventually(t, "the adapter to be undocked", func() bool {
		s = stats(t, rt)
		return s.AdaptersDocked == 0 && s.UsedBytes == s.BaseWeightBytes
	})
	if s.RequestsCompleted != 2 || s.Docks != 1 || s.Undocks != 1 || s.AdaptersRegistered != 1 {
		t.Fatalf("stats %+v", s)
	}
	if s.HighWaterBytes > s.BudgetBytes || s.BudgetBytes != 64<<20 {
		t.Fatalf("high water %d, budget %d", s.HighWaterBytes, s.BudgetBytes)
	}
	if err := rt.UnregisterAdapter("qv"); err != nil {
		t.Fatal(err)
	}
	if s := stats(t, rt); s.AdaptersRegistered != 0 {
		t.Fatalf("%d adapters registered after unregistering", s.AdaptersRegistered)
	}
}

// Greedy decoding is deterministic; an inline adapter equals the registered one; two
// adapters combine; re-registration is a new generation.
func TestInputsAndAdapters(t *testing.T) {
	rt := openTiny(t, 0)
	a := register(t, rt, "a", "t_a")
	register(t, rt, "b", "t_b")
	req := Request{Prompt: "the cat", MaxTokens: 10, IgnoreEOS: true, Adapters: []AdapterUse{Adapter("a")}}
	onlyA := generate(t, rt, req)
	if again := generate(t, rt, req); again.Text != onlyA.Text {
		t.Fatalf("greedy output changed: %q then %q", onlyA.Text, again.Text)
	}
	req.Adapters = []AdapterUse{{Source: adapterDir(t) + "/t_a"}}
	if inline := generate(t, rt, req); inline.Text != onlyA.Text {
		t.Fatalf("inline adapter %q, registered %q", inline.Text, onlyA.Text)
	}
	req.Adapters = []AdapterUse{{Name: "a", Weight: 0.7}, {Name: "b", Weight: 0.3}}
	mix := generate(t, rt, req)
	req.Combination = "cat"
	if cat := generate(t, rt, req); cat.Text != mix.Text {
		t.Fatalf(`"cat" %q differs from the default sum %q`, cat.Text, mix.Text)
	}

	a2, err := rt.RegisterAdapter("a", adapterDir(t)+"/t_b", "", PolicyKeepWarm)
	if err != nil || a2 <= a {
		t.Fatalf("re-registration: generation %d after %d, err %v", a2, a, err)
	}
	onlyB := generate(t, rt, Request{Prompt: "the cat", MaxTokens: 10, IgnoreEOS: true, Adapters: []AdapterUse{Adapter("b")}})
	nowA := generate(t, rt, Request{Prompt: "the cat", MaxTokens: 10, IgnoreEOS: true, Adapters: []AdapterUse{Adapter("a")}})
	if nowA.Text != onlyB.Text {
		t.Fatalf("re-registered a %q, b %q", nowA.Text, onlyB.Text)
	}

	ids := generate(t, rt, Request{TokenIDs: []uint32{1, 2, 3}, MaxTokens: 4, IgnoreEOS: true})
	if ids.Usage.PromptTokens != 3 || ids.Usage.CompletionTokens != 4 {
		t.Fatalf("token ids usage %+v", ids.Usage)
	}
	chat := generate(t, rt, Request{Messages: []Message{{Role: "user", Content: "hi"}}, MaxTokens: 4, IgnoreEOS: true})
	if chat.Usage.PromptTokens <= 1 || chat.Usage.CompletionTokens != 4 {
		t.Fatalf("chat usage %+v", chat.Usage)
	}
	sampled := generate(t, rt, Request{Prompt: "the cat", MaxTokens: 6, IgnoreEOS: true, Temperature: 0.8, TopK: 20, TopP: 0.9, Seed: 7, Stop: []string{"zzzz"}})
	if sampled.Usage.CompletionTokens != 6 {
		t.Fatalf("sampled usage %+v", sampled.Usage)
	}
}
