#!/usr/bin/env python3
"""llama.cpp references on the real model, SmolLM2-135M-Instruct Q4_1, into tests/fixtures/smollm2/.

    python3 scripts/llamacpp_reference.py [--gguf PATH]

Runs inside .venv-llamacpp (llama-cpp-python built from source, pins in scripts/pyvenv.py),
which it creates and re-enters. The GGUF comes from scripts/fetch_model.sh unless --gguf is given.
Writes:
  tokenize.json  llama_tokenize on ~200 strings (add_special=False; parse_special=False, plus
                 chat-marker strings with parse_special=True) — the "smollm" pre-tokenizer
                 (every digit its own piece, then the GPT-2 split) is what these pin down
  greedy.json    4 prompts (2 rendered with the model's chat template, 2 raw text): the prompt
                 ids exactly as fed, llama.cpp's 16 greedy ids, and per step the top-1/top-2
                 logit gap and the top-5 (id, logit)
Deterministic: greedy argmax, n_threads=2, F32 KV cache, flash attention off.
"""
import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pyvenv  # noqa: E402

REPO = pyvenv.REPO
OUT = os.path.join(REPO, "tests", "fixtures", "smollm2")
N_GREEDY = 16

PROSE = [
    "Hello world", "Hello, world!", "The quick brown fox jumps over the lazy dog.",
    "It was the best of times, it was the worst of times.",
    "Machine learning models are trained on large datasets.",
    "She sells seashells by the seashore.",
    "In 1492, Columbus sailed the ocean blue.",
    "Paris is the capital and most populous city of France.",
    "A journey of a thousand miles begins with a single step.",
    "The mitochondria is the powerhouse of the cell.",
    "To be, or not to be, that is the question:",
    "Once upon a time, in a land far, far away, there lived a king.",
    "Please reply by Friday; otherwise, we'll assume you agree.",
    "hello", "HELLO", "Hello", "hELLO", "The", " the", "the the the the",
    "Supercalifragilisticexpialidocious", "antidisestablishmentarianism",
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.",
]
NUMBERS = [
    "0", "1", "12", "123", "1234", "12345", "123456", "1234567", "12345678901234567890",
    "3.14159", "-42", "+7", "1,000,000", "1.000.000,50", "$19.99", "€5", "50%", "1e-5", "0x1F",
    "2024-01-15", "15/01/2024", "12:34:56", "555-123-4567", "+1 (555) 123-4567",
    "(020) 7946 0018", "v1.2.3", "Python 3.11", "iPhone 15 Pro", "COVID-19", "4th",
    "the 21st century", "the 1990s", "100km", "3x4", "2^10=1024", "ISBN 978-3-16-148410-0",
    "It costs 1234 dollars.", "Call 911 now", "pi is 3.14", "year 2025",
]
WHITESPACE = [
    " ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\n\n\n", " \n", "\r\n", "a  b", "a   b",
    "a\tb", "a \t b", "a\n\nb", " leading", "  two leading", "trailing ", "trailing  ",
    "   both   ", "line1\nline2\n", "\n\tindented\n", "    four spaces code", "          ",
    "\n\n\n\n\n\n", "x \n y", " \t\n ",
]
PUNCT = [
    "Wait... what?!", "(parens) [brackets] {braces}", "\"quoted\" and 'single'", "a--b",
    "a\u2014b (em dash)", "semi;colon:colon", "#hashtag @mention", "50/50", "email@example.com",
    "C++ and C#", "<html><body>hi</body></html>", "***bold*** _it_", "!!!", "???", "...", "--",
    "~~~", "!?", "\u201csmart quotes\u201d \u2018too\u2019",
]
CONTRACTIONS = [
    "don't", "Don't", "DON'T", "I'LL", "I'll", "we've", "they're", "she'd", "it's", "It's",
    "you'RE", "o'clock", "rock 'n' roll", "'quoted'", "can't won't shouldn't", "I'm", "I'M",
    "he's", "y'all",
]
CODE = [
    "def foo(x):\n    return x + 1\n", "for (int i = 0; i < n; i++) {",
    "fn main() { println!(\"{}\", 42); }", "x = [1, 2, 3]", "if a==b and c!=d:",
    "SELECT * FROM users WHERE id = 42;", "import numpy as np", "const x = () => {};",
    "#include <stdio.h>", "a_b_c snake_case CamelCase", "__init__", "$HOME/.cache",
    "git commit -m \"msg\"", "arr[i][j] += 1;", "\tif (x) {\n\t\treturn 0;\n\t}\n",
    "print(f\"{x:08.3f}\")", "{\"key\": [1, 2.5, null, true]}",
]
URLS = [
    "https://www.example.com", "http://localhost:8080/path?query=1&b=2#frag",
    "www.huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct",
    "ftp://files.example.org/pub/file.tar.gz", "user@host:~$ ls -la",
    "see https://en.wikipedia.org/wiki/Tokenization_(lexical_analysis) for more",
]
UNICODE = [
    "caf\u00e9", "na\u00efve", "r\u00e9sum\u00e9", "\u00c5ngstr\u00f6m", "Stra\u00dfe", "ni\u00f1o",
    "\u041f\u0440\u0438\u0432\u0435\u0442 \u043c\u0438\u0440", "\u0393\u03b5\u03b9\u03ac \u03c3\u03bf\u03c5 \u039a\u03cc\u03c3\u03bc\u03b5",
    "\u65e5\u672c\u8a9e", "\u4e2d\u6587\u5b57\u7b26\u6d4b\u8bd5", "\ud55c\uad6d\uc5b4",
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645", "\u05e9\u05dc\u05d5\u05dd",
    "\u0939\u093f\u0928\u094d\u0926\u0940", "\u0e44\u0e17\u0e22", "emoji \U0001F600",
    "\U0001F44D\U0001F3FD", "\U0001F468\u200d\U0001F469\u200d\U0001F467\u200d\U0001F466",
    "\U0001F1EB\U0001F1F7", "\u2665 \u2605 \u263a", "\u2211 \u222b \u221a \u221e \u2260 \u2264",
    "\u00bd \u00bc \u00be", "\u2460\u2461\u2462", "\uff46\uff55\uff4c\uff4c\uff57\uff49\uff44\uff54\uff48",
    "e\u0301 (combining)", "\u00a0nbsp", "zero\u200bwidth", "\u216b", "\u0663\u0664\u0665 arabic digits",
    "\u0967\u0968\u0969 devanagari digits", "\u00b2\u00b3 superscripts", "\U0001F680 to the moon 2025",
]
MIXED = [
    "abc123def", "a1b2c3", "123abc", "abc123", "x86_64", "H2O", "CO2", "3D", "MP3", "B2B",
    "mp4v2", "1st2nd3rd", "version2.0beta3", "0.5B", "135M", "SmolLM2-135M", "A1 B22 C333",
    "route66", "R2-D2 and C-3PO",
]
REPEATS = [
    "aaaaaaaaaaaaaaaa", "................", "1111111111111111", "ababababab", "=== === ===",
    "The cat sat on the mat. The cat sat on the mat.",
]
SPECIAL_TEXTS = [
    "<|im_start|>user\nHello<|im_end|>\n", "<|im_start|>assistant\n", "<|endoftext|>",
    "text<|im_end|>more",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|> user", "<|im_end|><|im_end|>",
]

CHAT_PROMPTS = ["What is the capital of France?", "Write a haiku about the sea."]
RAW_PROMPTS = ["The capital of France is", "def fibonacci(n):\n    "]


def log(*a):
    print(*a, flush=True)


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False)
        f.write("\n")


def render_chat(template, messages, bos, eos):
    """The chat template rendered the way transformers' apply_chat_template does (jinja2
    sandbox, trim_blocks, lstrip_blocks)."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(msg):
        raise ValueError(msg)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(messages=messages, add_generation_prompt=True,
                                            bos_token=bos, eos_token=eos)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", help="SmolLM2-135M-Instruct.Q4_1.gguf (default: scripts/fetch_model.sh)")
    a = ap.parse_args()
    pyvenv.reexec_in(".venv-llamacpp", pyvenv.LLAMACPP_PINS)
    import llamacpp_util as LU

    path = a.gguf
    if not path:
        path = subprocess.check_output(["bash", os.path.join(REPO, "scripts", "fetch_model.sh")],
                                       text=True).strip().splitlines()[-1]
    os.makedirs(OUT, exist_ok=True)
    LU.init()
    ver = LU.versions()
    log("llama.cpp:", json.dumps(ver))
    keys = ["general.name", "tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.add_bos_token",
            "tokenizer.ggml.add_eos_token", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
            "tokenizer.ggml.padding_token_id", "tokenizer.ggml.unknown_token_id", "tokenizer.chat_template"]
    meta = LU.gguf_fields(path, keys)
    import gguf
    rd = gguf.GGUFReader(path)
    vocab = rd.get_field("tokenizer.ggml.tokens").contents()
    log("metadata:", json.dumps({k: v for k, v in meta.items() if k != "tokenizer.chat_template"}))
    m = LU.Model(path, n_ctx=512)
    model_info = {"file": os.path.basename(path), "bytes": os.path.getsize(path),
                  "sha256": _sha256(path), "n_vocab": m.n_vocab, "metadata": meta,
                  "llama_vocab_get_add_bos": m.add_bos()}

    # ---- tokenize.json
    groups = [("prose", PROSE), ("numbers", NUMBERS), ("whitespace", WHITESPACE), ("punct", PUNCT),
              ("contractions", CONTRACTIONS), ("code", CODE), ("urls", URLS), ("unicode", UNICODE),
              ("mixed", MIXED), ("repeats", REPEATS)]
    cases = []
    for g, strings in groups:
        for s in strings:
            ids = m.tokenize(s, add_special=False, parse_special=False)
            cases.append({"group": g, "text": s, "add_special": False, "parse_special": False,
                          "ids": ids, "pieces": [vocab[i] for i in ids]})
    for s in SPECIAL_TEXTS:
        for ps in (True, False):
            ids = m.tokenize(s, add_special=False, parse_special=ps)
            cases.append({"group": "special", "text": s, "add_special": False, "parse_special": ps,
                          "ids": ids, "pieces": [vocab[i] for i in ids]})
    for s in ["Hello world", "12345"]:
        ids = m.tokenize(s, add_special=True, parse_special=False)
        cases.append({"group": "add_special", "text": s, "add_special": True, "parse_special": False,
                      "ids": ids, "pieces": [vocab[i] for i in ids]})
    # round trip through llama_token_to_piece (special=True) must give the text back
    for c in cases:
        back = b"".join(m.piece(t) for t in c["ids"]).decode("utf-8", errors="replace")
        c["roundtrip_ok"] = back == c["text"]
    n_digits = sum(1 for c in cases if c["group"] == "numbers")
    log(f"tokenize: {len(cases)} cases ({n_digits} numbers); "
        f"roundtrip failures: {[c['text'] for c in cases if not c['roundtrip_ok']]}")
    write_json(os.path.join(OUT, "tokenize.json"), {
        "generator": "scripts/llamacpp_reference.py", "llama_cpp": ver, "model": model_info,
        "how": "llama_tokenize(vocab, text, add_special, parse_special) from llama-cpp-python; "
               "pieces are the GGUF token strings (byte-level, Ġ = space); roundtrip_ok: "
               "concatenated llama_token_to_piece(special=True) bytes == text",
        "cases": cases})

    # ---- greedy.json
    tmpl = meta["tokenizer.chat_template"]
    bos_t = vocab[meta["tokenizer.ggml.bos_token_id"]] if meta["tokenizer.ggml.bos_token_id"] is not None else ""
    eos_t = vocab[meta["tokenizer.ggml.eos_token_id"]] if meta["tokenizer.ggml.eos_token_id"] is not None else ""
    add_bos = bool(meta["tokenizer.ggml.add_bos_token"]) if meta["tokenizer.ggml.add_bos_token"] is not None else m.add_bos()
    prompts = []
    for q in CHAT_PROMPTS:
        msgs = [{"role": "user", "content": q}]
        text = render_chat(tmpl, msgs, bos_t, eos_t)
        prompts.append({"kind": "chat", "messages": msgs, "text": text})
    for t in RAW_PROMPTS:
        prompts.append({"kind": "raw", "text": t})
    results = []
    for p in prompts:
        ids = m.tokenize(p["text"], add_special=add_bos, parse_special=(p["kind"] == "chat"))
        out, gaps, tops = m.greedy(ids, N_GREEDY, top=5)
        text = b"".join(m.piece(t) for t in out).decode("utf-8", errors="replace")
        results.append(dict(p, prompt_ids=ids, greedy_ids=out,
                            top1_top2_gap=[round(g, 5) for g in gaps], top5=tops,
                            greedy_text=text))
        log(f"greedy {p['kind']} {p['text']!r}: {len(ids)} prompt ids -> {out} {text!r} "
            f"min gap {min(gaps):.4f}")
    m.close()
    write_json(os.path.join(OUT, "greedy.json"), {
        "generator": "scripts/llamacpp_reference.py", "llama_cpp": ver, "model": model_info,
        "context": LU.CONTEXT_NOTE,
        "how": ("chat prompts: the GGUF's tokenizer.chat_template rendered with jinja2 like "
                "transformers' apply_chat_template (trim_blocks, lstrip_blocks, "
                "add_generation_prompt=True; the template adds its default system message), then "
                "llama_tokenize(parse_special=True); raw prompts: llama_tokenize(parse_special="
                f"False). add_special (BOS) = {add_bos}, from tokenizer.ggml.add_bos_token. The prompt "
                "is decoded in one llama_decode, then 16 single-token steps; each step takes the "
                "argmax of the last logits (no sampler, no EOS stop). top1_top2_gap[i] is the "
                "logit margin at step i: a test may accept a divergence at a step where it is "
                "below its tolerance (Q4_1 kernels differ in rounding; llama.cpp quantizes "
                "activations to Q8_1 for Q4_1 dot products)."),
        "add_bos": add_bos,
        "prompts": results})
    log("sizes:", {n: os.path.getsize(os.path.join(OUT, n)) for n in sorted(os.listdir(OUT))})


def _sha256(p):
    import hashlib
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


if __name__ == "__main__":
    main()
