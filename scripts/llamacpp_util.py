"""llama.cpp through llama-cpp-python's low-level ctypes API, for the fixture scripts
(make_fixtures.py stage llamacpp, llamacpp_reference.py). Runs inside .venv-llamacpp."""
import ctypes
import os
import sys

import numpy as np
import llama_cpp as L

THREADS = 2
# All fixture runs use these context settings: KV cache in F32 and flash attention off, so the
# only lossy steps left are llama.cpp's own (weight types, activation quantization to Q8 in its
# quantized dot products, F16 activations in its F16 matmul).
CONTEXT_NOTE = {"n_threads": THREADS, "n_threads_batch": THREADS, "type_k": "F32", "type_v": "F32",
                "flash_attn": "disabled", "n_gpu_layers": 0, "sampler": "none (argmax of logits)",
                "seed": "not used (greedy)"}

FTYPES = {
    "f16": "LLAMA_FTYPE_MOSTLY_F16", "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0", "q4_1": "LLAMA_FTYPE_MOSTLY_Q4_1",
    "q4_k": "LLAMA_FTYPE_MOSTLY_Q4_K_M", "q5_k": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K",
}


@ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
def _log(level, text, user_data):
    if os.environ.get("LLAMACPP_VERBOSE"):
        sys.stderr.write(text.decode(errors="replace"))


_inited = False


def init():
    global _inited
    if not _inited:
        L.llama_log_set(_log, ctypes.c_void_p())
        L.llama_backend_init()
        _inited = True


def versions():
    from importlib.metadata import version
    info = {"llama_cpp_python": L.__version__, "gguf": version("gguf"), "numpy": np.__version__,
            "system_info": L.llama_print_system_info().decode().strip()}
    info.update(ggml_build())
    return info


def ggml_build():
    """ggml's version and git commit of the vendored llama.cpp, from libggml-base."""
    libdir = os.path.join(os.path.dirname(L.__file__), "lib")
    try:
        lib = ctypes.CDLL(os.path.join(libdir, "libggml-base.so"))
        out = {}
        for fn in ("ggml_version", "ggml_commit"):
            f = getattr(lib, fn)
            f.restype = ctypes.c_char_p
            out[fn] = f().decode()
        return out
    except (OSError, AttributeError):
        return {}


def quantize(inp, out, qtype, pure=True, threads=THREADS):
    init()
    qp = L.llama_model_quantize_default_params()
    qp.nthread = threads
    qp.ftype = getattr(L, FTYPES[qtype])
    qp.pure = pure
    rc = L.llama_model_quantize(inp.encode(), out.encode(), ctypes.byref(qp))
    if rc != 0:
        raise SystemExit(f"llama_model_quantize({qtype}) returned {rc}")


def tensor_types(path):
    """{'2d': {type: count}, '1d': {type: count}} from gguf's reader."""
    import gguf
    hist = {"2d": {}, "1d": {}}
    for t in gguf.GGUFReader(path).tensors:
        k = "2d" if len([d for d in t.shape if d > 1]) >= 2 else "1d"
        hist[k][t.tensor_type.name] = hist[k].get(t.tensor_type.name, 0) + 1
    return hist


def gguf_fields(path, keys):
    import gguf
    r = gguf.GGUFReader(path)
    out = {}
    for k in keys:
        f = r.get_field(k)
        if f is None:
            out[k] = None
            continue
        v = f.contents()
        out[k] = v
    return out


class Model:
    def __init__(self, path, n_ctx=256, threads=THREADS):
        init()
        mp = L.llama_model_default_params()
        mp.n_gpu_layers = 0
        self.model = L.llama_model_load_from_file(path.encode(), mp)
        if not self.model:
            raise SystemExit(f"cannot load {path}")
        cp = L.llama_context_default_params()
        cp.n_ctx = n_ctx
        cp.n_batch = n_ctx
        cp.n_ubatch = n_ctx
        cp.n_seq_max = 1
        cp.n_threads = threads
        cp.n_threads_batch = threads
        cp.type_k = L.GGML_TYPE_F32
        cp.type_v = L.GGML_TYPE_F32
        cp.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_DISABLED
        self.ctx = L.llama_init_from_model(self.model, cp)
        if not self.ctx:
            raise SystemExit(f"cannot create a context for {path}")
        self.vocab = L.llama_model_get_vocab(self.model)
        self.n_vocab = L.llama_vocab_n_tokens(self.vocab)
        self.mem = L.llama_get_memory(self.ctx)
        self.n_ctx = n_ctx
        self.batch = L.llama_batch_init(n_ctx, 0, 1)

    def close(self):
        L.llama_batch_free(self.batch)
        L.llama_free(self.ctx)
        L.llama_model_free(self.model)

    def _decode(self, tokens, pos0, all_logits):
        b = self.batch
        b.n_tokens = len(tokens)
        for i, t in enumerate(tokens):
            b.token[i] = int(t)
            b.pos[i] = pos0 + i
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = 0
            b.logits[i] = all_logits or i == len(tokens) - 1
        rc = L.llama_decode(self.ctx, b)
        if rc != 0:
            raise SystemExit(f"llama_decode returned {rc}")

    def _row(self, i):
        p = L.llama_get_logits_ith(self.ctx, i)
        return np.ctypeslib.as_array(p, shape=(self.n_vocab,)).astype(np.float32).copy()

    def logits_all(self, ids):
        """[len(ids), vocab] logits, one llama_decode of the whole prompt from position 0."""
        L.llama_memory_clear(self.mem, True)
        self._decode(ids, 0, True)
        return np.stack([self._row(i) for i in range(len(ids))])

    def greedy(self, ids, n, top=0):
        """Prompt in one llama_decode, then n single-token steps with the KV cache; argmax each
        step, no EOS stop. Returns (ids, top1-top2 gaps[, top-k lists])."""
        L.llama_memory_clear(self.mem, True)
        self._decode(ids, 0, False)
        out, gaps, tops = [], [], []
        pos = len(ids)
        for step in range(n):
            row = self._row(-1)
            order = np.argsort(-row, kind="stable")
            out.append(int(order[0]))
            gaps.append(float(row[order[0]] - row[order[1]]))
            if top:
                tops.append([[int(t), round(float(row[t]), 5)] for t in order[:top]])
            if step + 1 < n:
                self._decode([out[-1]], pos, False)
                pos += 1
        return (out, gaps, tops) if top else (out, gaps)

    def tokenize(self, text, add_special, parse_special):
        b = text.encode("utf-8")
        n_max = len(b) + 8
        buf = (L.llama_token * n_max)()
        n = L.llama_tokenize(self.vocab, b, len(b), buf, n_max, add_special, parse_special)
        if n < 0:
            raise SystemExit(f"llama_tokenize needs {-n} tokens for {text!r}")
        return [int(buf[i]) for i in range(n)]

    def piece(self, tok, special=True):
        buf = ctypes.create_string_buffer(256)
        n = L.llama_token_to_piece(self.vocab, tok, buf, 256, 0, special)
        return buf.raw[:n]

    def add_bos(self):
        return bool(L.llama_vocab_get_add_bos(self.vocab))

    def bos(self):
        return int(L.llama_vocab_bos(self.vocab))
