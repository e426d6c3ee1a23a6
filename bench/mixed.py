#!/usr/bin/env python3
"""Mixed-adapter batches: loradock decoding N rows that each use a different LoRA adapter,
against the same batch without adapters, beside llama.cpp's batched decode (no adapters:
llama.cpp cannot give each sequence of a batch its own adapter) and transformers + PEFT's
mixed batches (`adapter_names=`).

    python3 bench/mixed.py [--rounds 3] [--threads 2] [--runs 5] [--prompt 16] [--gen 32] \\
        [--out bench/results/NAME.md] [--tiny]

What it does, in one invocation:
  1. makes the ~200M random-weight Llama with ../shared/peers/make_bench_model.py --no-f32
     into .cache/bench/synth (once), and 8 distinct PEFT adapters for it, rank 16 on all seven
     linear modules, values N(0, 0.02), alpha = rank (the same recipe as loradock's in-memory
     adapters), as synth/mixed-r16-all-<i>;
  2. converts the f16 model to GGUF (../shared/peers/hf_to_gguf.py model) and makes a Q8_0
     copy with llama.cpp's quantizer (../shared/peers/bench_llamacpp.py quantize ... q8_0);
  3. builds `loradock` (release);
  4. for each round, interleaved so drift hits every side alike:
       loradock bench --mixed 32 --rank 16 --targets all   (Q8_0 GGUF)
       loradock bench --mixed 8  --rank 16 --targets all   (Q8_0 GGUF)
       bench_llamacpp.py batch Q8_0.gguf --parallel 8      (no adapters)
       bench_hf.py mixed llama-bench-f16 <8 adapters> --batch 8   (PEFT, float32)
     every one with a --prompt-token prompt per row and --gen decode steps;
  5. writes bench/results/<date>-mixed.md (table: median over rounds) and .json (raw output).
numpy/safetensors/gguf/llama.cpp come from .venv-llamacpp, torch/transformers/peft from
.venv-fixtures (scripts/pyvenv.py builds both once). --tiny uses a 2-layer model of the same
vocabulary (.cache/bench/synth-tiny) to check the pipeline in a minute; its numbers mean nothing.
"""
import argparse
import datetime
import json
import os
import statistics
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "scripts"))
import pyvenv  # noqa: E402
from benchlib import cpu_name, last_json, run, scrub_files  # noqa: E402

PEERS = os.environ.get("LORADOCK_PEERS", os.path.join(os.path.dirname(REPO), "shared", "peers"))
CACHE = os.path.join(REPO, ".cache", "bench")
N_PEFT = 8
RANK = 16
ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# --tiny: same vocabulary (the peers draw prompt ids below 32000), 2 small layers.
TINY_SHAPE = ["--hidden", "256", "--layers", "2", "--heads", "4", "--kv-heads", "2", "--intermediate", "512"]




def rel(p):
    return os.path.relpath(p, REPO) if os.path.isabs(p) and p.startswith(REPO + os.sep) else p


def write_adapters(synth, n, rank):
    """(Runs inside .venv-llamacpp.) n distinct PEFT adapters for synth/llama-bench-f16 with
    make_bench_model.py's own generator: rank `rank`, all seven modules, alpha = rank."""
    import numpy as np
    from safetensors.numpy import save_file

    sys.path.insert(0, PEERS)
    import make_bench_model as mbm

    cfg = json.load(open(os.path.join(synth, "llama-bench-f16", "config.json")))
    for i in range(n):
        d = os.path.join(synth, f"mixed-r{rank}-all-{i}")
        os.makedirs(d, exist_ok=True)
        t = mbm.make_adapter(cfg, np.random.default_rng([1000 + i, rank]), rank, ALL, np.dtype("float32"))
        mbm.write_json(os.path.join(d, "adapter_config.json"), mbm.adapter_config(rank, rank, ALL, "llama-bench-f16"))
        save_file(t, os.path.join(d, "adapter_model.safetensors"), metadata={"format": "pt"})


def prepare(a, py_ll):
    """The synthetic model, its PEFT adapters and the Q8_0 GGUF (each made once)."""
    synth = os.path.join(CACHE, "synth-tiny" if a.tiny else "synth")
    if not os.path.exists(os.path.join(synth, "MANIFEST.json")):
        run([py_ll, os.path.join(PEERS, "make_bench_model.py"), synth, "--no-f32", *(TINY_SHAPE if a.tiny else [])])
    adapters = [os.path.join(synth, f"mixed-r{RANK}-all-{i}") for i in range(N_PEFT)]
    if not all(os.path.exists(os.path.join(d, "adapter_model.safetensors")) for d in adapters):
        run([py_ll, os.path.abspath(__file__), "--write-adapters", synth])
    hf = os.path.join(synth, "llama-bench-f16")
    f16 = os.path.join(synth, "llama-bench-f16.gguf")
    q80 = os.path.join(synth, "llama-bench-q8_0.gguf")
    if not os.path.exists(f16):
        run([py_ll, os.path.join(PEERS, "hf_to_gguf.py"), "model", hf, f16 + ".part", "--type", "f16"])
        os.replace(f16 + ".part", f16)
    if not os.path.exists(q80):
        run([py_ll, os.path.join(PEERS, "bench_llamacpp.py"), "quantize", f16, q80 + ".part", "q8_0",
             "--threads", str(a.threads)])
        os.replace(q80 + ".part", q80)
    return hf, adapters, q80


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5, help="measured runs per tool and round (after a warm-up)")
    ap.add_argument("--prompt", type=int, default=16, help="prompt tokens per row")
    ap.add_argument("--gen", type=int, default=32, help="decode steps per run")
    ap.add_argument("--out")
    ap.add_argument("--tiny", action="store_true", help="a 2-layer model: checks the pipeline, not the speed")
    ap.add_argument("--write-adapters", metavar="SYNTH_DIR", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.write_adapters:
        write_adapters(a.write_adapters, N_PEFT, RANK)
        return
    os.makedirs(CACHE, exist_ok=True)
    py_ll = pyvenv.ensure_venv(".venv-llamacpp", pyvenv.LLAMACPP_PINS)
    py_hf = pyvenv.ensure_venv(".venv-fixtures", pyvenv.FIXTURE_PINS)
    hf, adapters, q80 = prepare(a, py_ll)
    run(["cargo", "build", "--release", "--quiet", "--bin", "loradock"], cwd=REPO)
    ld = os.path.join(REPO, "target", "release", "loradock")
    commit = run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO).strip()
    dirty = run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO).strip() != ""
    common = ["--threads", str(a.threads), "--runs", str(a.runs)]
    cmds = {
        "loradock_n32": [ld, "bench", "--model", q80, "--mixed", "32", "--rank", str(RANK), "--targets", "all",
                         "--batch-prompt-tokens", str(a.prompt), "--batch-gen-tokens", str(a.gen), *common, "--json"],
        "loradock_n8": [ld, "bench", "--model", q80, "--mixed", "8", "--rank", str(RANK), "--targets", "all",
                        "--batch-prompt-tokens", str(a.prompt), "--batch-gen-tokens", str(a.gen), *common, "--json"],
        "llamacpp_b8": [py_ll, os.path.join(PEERS, "bench_llamacpp.py"), "batch", q80, "--parallel", "8",
                        "--prompt", str(a.prompt), "--gen", str(a.gen), *common],
        "peft_b8": [py_hf, os.path.join(PEERS, "bench_hf.py"), "mixed", hf, *adapters, "--batch", str(N_PEFT),
                    "--prompt", str(a.prompt), "--gen", str(a.gen), *common],
    }
    raw = {name: [] for name in cmds}
    for r in range(a.rounds):
        print(f"round {r + 1}/{a.rounds}", file=sys.stderr, flush=True)
        for name, cmd in cmds.items():
            raw[name].append(last_json(run(cmd, cwd=REPO)))
    med = statistics.median
    n32 = {k: med(x[k]["median"] for x in raw["loradock_n32"]) for k in ("base_tok_s", "mixed_tok_s")}
    n32_ratio = med(x["ratio"] for x in raw["loradock_n32"])
    n8 = {k: med(x[k]["median"] for x in raw["loradock_n8"]) for k in ("base_tok_s", "mixed_tok_s")}
    n8_ratio = med(x["ratio"] for x in raw["loradock_n8"])
    ll8 = med(x["parallel8"]["aggregate_tok_s"]["median"] for x in raw["llamacpp_b8"])
    pf = {k: med(x[k]["decode_tok_s"]["median"] for x in raw["peft_b8"]) for k in ("mixed", "base_only", "same_adapter")}
    pf_ratio = med(x["mixed"]["decode_tok_s"]["median"] / x["base_only"]["decode_tok_s"]["median"] for x in raw["peft_b8"])
    first = raw["loradock_n32"][0]
    summary = {
        "loradock_n32_ratio": n32_ratio, "loradock_n32_tok_s": n32,
        "loradock_n8_ratio": n8_ratio, "loradock_n8_tok_s": n8,
        "llamacpp_b8_tok_s": ll8, "loradock_n8_mixed_vs_llamacpp_b8": n8["mixed_tok_s"] / ll8,
        "peft_b8_ratio": pf_ratio, "peft_b8_tok_s": pf,
    }
    date = datetime.date.today().isoformat()
    out_md = a.out or os.path.join(REPO, "bench", "results", f"{date}-mixed{'-tiny' if a.tiny else ''}.md")
    os.makedirs(os.path.dirname(os.path.abspath(out_md)), exist_ok=True)
    yes = lambda ok: "yes" if ok else "**no**"
    with open(out_md, "w") as fh:
        fh.write("# Mixed-adapter batches: loradock vs llama.cpp and transformers + PEFT\n\n")
        if a.tiny:
            fh.write("**--tiny: a 2-layer model, a check of the pipeline; these numbers say nothing about speed.**\n\n")
        fh.write(f"- date: {date}\n- machine: {cpu_name()}, nproc {os.cpu_count()}, threads {a.threads}, "
                 f"loradock isa {first['isa']}\n")
        fh.write(f"- loradock commit {commit}{' (with uncommitted changes)' if dirty else ''}; "
                 f"llama.cpp from {pyvenv.LLAMACPP_PINS[0]}; PEFT side: "
                 f"{', '.join(p for p in pyvenv.FIXTURE_PINS if p.split('==')[0] in ('torch', 'transformers', 'peft'))}\n")
        fh.write(f"- model: {rel(hf)} (make_bench_model.py{' ' + ' '.join(TINY_SHAPE) if a.tiny else ''}), "
                 f"loradock and llama.cpp on its Q8_0 GGUF {rel(q80)} ({os.path.getsize(q80) / 1e6:.0f} MB), "
                 f"PEFT on the f16 weights loaded as float32\n")
        fh.write(f"- adapters: rank {RANK}, all 7 linear modules of every layer, N(0, 0.02) A and B, alpha = rank; "
                 f"loradock builds them in memory ({first['adapter_bytes_each'] / 1e6:.1f} MB f32 each; "
                 f"{first['adapter_bytes_per_step'] / 1e6:.0f} MB read per step at N=32), PEFT loads "
                 f"{N_PEFT} distinct ones from {rel(os.path.dirname(adapters[0]))}/mixed-r{RANK}-all-*\n")
        fh.write(f"- each run: a {a.prompt}-token prompt per row (prefill not timed), then {a.gen} decode steps "
                 f"of one forward over all rows; tok/s = rows × tokens / decode time; median of {a.runs} runs "
                 f"after a warm-up, then median over {a.rounds} interleaved rounds\n")
        fh.write(f"- command: `python3 bench/mixed.py --rounds {a.rounds} --threads {a.threads} --runs {a.runs} "
                 f"--prompt {a.prompt} --gen {a.gen}{' --tiny' if a.tiny else ''}`, which runs per round:\n")
        for name, cmd in cmds.items():
            fh.write(f"  - `{' '.join(rel(c) for c in cmd)}`\n")
        fh.write("\n| comparison | result | goal | met |\n|---|---|---|---|\n")
        fh.write(f"| loradock N=32 rows, 32 distinct adapters: mixed / base | {n32_ratio:.3f} "
                 f"({n32['mixed_tok_s']:.1f} vs {n32['base_tok_s']:.1f} tok/s) | ≥ 0.95 | {yes(n32_ratio >= 0.95)} |\n")
        fh.write(f"| loradock N=8, 8 distinct adapters, vs llama.cpp batch 8 without adapters | "
                 f"{n8['mixed_tok_s']:.1f} vs {ll8:.1f} tok/s ({n8['mixed_tok_s'] / ll8:.2f}x) | more | "
                 f"{yes(n8['mixed_tok_s'] > ll8)} |\n")
        fh.write(f"| loradock N=8: mixed / base | {n8_ratio:.3f} ({n8['mixed_tok_s']:.1f} vs "
                 f"{n8['base_tok_s']:.1f} tok/s) | - | - |\n")
        fh.write(f"| PEFT batch 8, 8 distinct adapters: mixed / base | {pf_ratio:.3f} ({pf['mixed']:.1f} vs "
                 f"{pf['base_only']:.1f} tok/s; one adapter for all rows {pf['same_adapter']:.1f}) | - | - |\n")
    with open(os.path.splitext(out_md)[0] + ".json", "w") as fh:
        json.dump({"date": date, "commit": commit, "dirty": dirty, "machine": cpu_name(), "nproc": os.cpu_count(),
                   "args": vars(a), "commands": {k: [rel(c) for c in v] for k, v in cmds.items()},
                   "summary": summary, "raw": raw}, fh, indent=1)
    scrub_files([out_md, out_md.replace(".md", ".json")], REPO, PEERS)
    print(open(out_md).read())


if __name__ == "__main__":
    main()
