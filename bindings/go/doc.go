// Package loradock is the Go binding of loradock, an embeddable runtime that keeps one
// base LLM resident and serves many LoRA adapters on top of it.
//
// It wraps the C ABI (include/loradock.h, libloradock) with cgo:
//
//	rt, err := loradock.Open(loradock.Options{ModelPath: "/models/smollm2", StoreRoots: []string{"/srv/adapters"}})
//	if err != nil { ... }
//	defer rt.Close()
//	gen, err := rt.Generate(ctx, loradock.Request{Prompt: "Hello", MaxTokens: 32})
//	if err != nil { ... }
//	for ev, err := range gen.Events() {
//		if err != nil { ... }           // the request failed (an error event) or the binding did
//		fmt.Print(ev.Text)               // token text; empty for the terminal Done event
//	}
//
// Events come as a Go 1.23 range-over-func iterator ([Generation.Events]) running on the
// consumer's goroutine: no goroutine is started per request, so a consumer that stops
// early (break) or never reads leaks nothing. [Generation.Next] pulls one event at a time
// and [Generation.Collect] reads a request to its end.
//
// Errors are *[Error] values carrying the C status and message; compare them with
// errors.Is against the Err* sentinels (errors.Is(err, loradock.ErrUnknownAdapter)).
// Every native call reads loradock's thread-local last error inside the same C call, so a
// goroutine moving between OS threads never sees another call's message.
//
// Thread safety: a [Runtime] may be used from many goroutines at once. A [Generation] is
// read by one goroutine at a time; Cancel and Close may be called from any goroutine.
//
// Linking: the package links against ../../target/debug/libloradock.so (with an rpath).
// To use another build, set CGO_LDFLAGS, e.g.
//
//	CGO_LDFLAGS="-L/opt/loradock/lib -Wl,-rpath,/opt/loradock/lib" go build
//
// (flags from CGO_LDFLAGS come after the package's own, so the directory must hold a
// libloradock; remove target/debug's or build the Rust library there).
package loradock
