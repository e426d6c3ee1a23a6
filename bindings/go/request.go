package loradock

// #include "loradock.h"
import "C"

import (
	"encoding/json"
	"math"
	"unsafe"
)

// Message is one chat message of Request.Messages.
type Message struct {
	Role    string `json:"role"`    // "system", "user", "assistant"...
	Content string `json:"content"` // the text
}

// AdapterUse is one adapter of a request: a registered Name, or (Name empty) an inline
// Source with its Digest; and its weight.
type AdapterUse struct {
	Name   string  // a registered adapter's name ("" for an inline adapter)
	Source string  // inline source: a path under the store roots, file://, http(s)://, ipfs://
	Digest string  // inline digest "sha256:<hex>" ("" = unverified, if the runtime allows it)
	Weight float32 // weight in the sum; 0 means 1 (leave an adapter out rather than weigh it 0)
}

// Adapter is the registered adapter name with weight 1.
func Adapter(name string) AdapterUse { return AdapterUse{Name: name, Weight: 1} }

// Request is one generation request (loradock_request_params). Give exactly one input:
// Prompt, Messages or TokenIDs. Zero values mean loradock's defaults where a field says so.
type Request struct {
	Prompt            string       // prompt text (a BOS token is added where the model wants one)
	Messages          []Message    // chat messages, rendered with the model's chat template
	TokenIDs          []uint32     // token ids, used as they are
	Adapters          []AdapterUse // adapters to apply; none = the base model
	Combination       string       // "" or "cat" = the exact weighted sum; "svd", "ties", "dare_linear", "dare_ties", "magnitude_prune"
	Density           float32      // density of ties/dare_*/magnitude_prune (0 = 0.5)
	SVDRank           int          // target rank of svd (0 = the largest input rank)
	CombinationSeed   uint64       // seed of dare_*
	MaxTokens         int          // most tokens to generate (0 = 128)
	Temperature       float32      // sampling temperature (0 = greedy)
	TopK              int          // top-k (0 = off)
	TopP              float32      // top-p (0 or 1 = off)
	MinP              float32      // min-p (0 = off)
	RepetitionPenalty float32      // repetition penalty (0 or 1 = off)
	Seed              uint64       // sampling seed
	Stop              []string     // stop strings (not included in the text)
	IgnoreEOS         bool         // keep going past end-of-generation tokens
}

// toC fills p (from loradock_request_params_default) with r; memory lives in a.
func (r *Request) toC(p *C.loradock_request_params, a *cArena) error {
	if err := noNUL("Request string", r.Prompt, r.Combination); err != nil {
		return err
	}
	if err := noNUL("Request.Stop", r.Stop...); err != nil {
		return err
	}
	for _, n := range []int{r.SVDRank, r.MaxTokens, r.TopK} {
		if n < 0 || uint64(n) > math.MaxUint32 {
			return &Error{Status: StatusInvalidArgument, Message: "Request: a count is negative or too large"}
		}
	}
	p.prompt = a.str(r.Prompt)
	if r.Messages != nil {
		j, err := json.Marshal(r.Messages)
		if err != nil {
			return &Error{Status: StatusInvalidArgument, Message: "Request.Messages: " + err.Error()}
		}
		p.messages_json = a.str(string(j))
	}
	if len(r.TokenIDs) > 0 {
		ids := (*C.uint32_t)(a.alloc(uintptr(len(r.TokenIDs)) * C.sizeof_uint32_t))
		view := unsafe.Slice(ids, len(r.TokenIDs))
		for i, id := range r.TokenIDs {
			view[i] = C.uint32_t(id)
		}
		p.token_ids, p.n_token_ids = ids, C.size_t(len(r.TokenIDs))
	}
	if len(r.Adapters) > 0 {
		n := len(r.Adapters)
		uses := (*C.loradock_adapter_use)(a.alloc(uintptr(n) * C.sizeof_loradock_adapter_use))
		view := unsafe.Slice(uses, n)
		for i, u := range r.Adapters {
			if err := noNUL("Request.Adapters", u.Name, u.Source, u.Digest); err != nil {
				return err
			}
			w := u.Weight
			if w == 0 {
				w = 1
			}
			view[i] = C.loradock_adapter_use{name: a.str(u.Name), source: a.str(u.Source), digest: a.str(u.Digest), weight: C.float(w)}
		}
		p.adapters, p.n_adapters = uses, C.size_t(n)
	}
	p.combination = a.str(r.Combination)
	p.density = C.float(r.Density)
	p.svd_rank = C.uint32_t(r.SVDRank)
	p.combination_seed = C.uint64_t(r.CombinationSeed)
	setU32(&p.max_tokens, r.MaxTokens)
	p.temperature = C.float(r.Temperature)
	p.top_k = C.uint32_t(r.TopK)
	if r.TopP != 0 {
		p.top_p = C.float(r.TopP)
	}
	p.min_p = C.float(r.MinP)
	if r.RepetitionPenalty != 0 {
		p.repetition_penalty = C.float(r.RepetitionPenalty)
	}
	p.seed = C.uint64_t(r.Seed)
	p.stop, p.n_stop = a.strs(r.Stop)
	p.ignore_eos = C.bool(r.IgnoreEOS)
	return nil
}
