#!/usr/bin/env python3
"""loradock beside llama.cpp on the same GGUF files, batch-1 decode and 512-token prefill, with
the machine's DRAM read bound measured in the same run.

    python3 bench/vs_llamacpp.py [--rounds 3] [--threads 2] [--out bench/results/NAME.md]

What it does, in one invocation:
  1. fetches SmolLM2-135M-Instruct Q4_1 (scripts/fetch_model.sh) and makes a Q8_0 copy with
     llama.cpp's quantizer (--allow-requantize: same shapes, so speed is representative);
  2. builds `loradock` (release) and `membw` (../shared/peers/membw.c) and measures the DRAM
     read bandwidth at 1 and N threads;
  3. for each file, for each round: `loradock bench` then llama.cpp's
     ../shared/peers/bench_llamacpp.py bench (interleaved, so drift hits both sides alike);
  4. writes a markdown table (median over rounds of each side's median) and the raw JSON.
llama.cpp comes from llama-cpp-python in .venv-llamacpp (scripts/pyvenv.py builds it once).
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




def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out")
    a = ap.parse_args()
    os.makedirs(CACHE, exist_ok=True)
    py = pyvenv.ensure_venv(".venv-llamacpp", pyvenv.LLAMACPP_PINS)
    q41 = run(["bash", os.path.join(REPO, "scripts/fetch_model.sh")]).strip().splitlines()[-1]
    q80 = os.path.join(CACHE, "SmolLM2-135M-Instruct.Q8_0.gguf")
    if not os.path.exists(q80):
        run([py, os.path.join(PEERS, "bench_llamacpp.py"), "quantize", q41, q80, "q8_0", "--allow-requantize"])
    run(["cargo", "build", "--release", "--quiet", "--bin", "loradock"], cwd=REPO)
    ld = os.path.join(REPO, "target", "release", "loradock")
    membw = os.path.join(CACHE, "membw")
    run(["gcc", "-O3", "-march=native", "-pthread", os.path.join(PEERS, "membw.c"), "-o", membw])
    bw = [json.loads(l) for l in run([membw, "2", "9", "1", str(a.threads)]).strip().splitlines()]
    commit = run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO).strip()
    files = [q41, q80]
    info = {f: last_json(run([py, os.path.join(PEERS, "gguf_info.py"), f])) for f in files}
    rows, raw = [], {"files": {}, "membw": bw}
    for f in files:
        lds, lls, ldp, llp = [], [], [], []
        for r in range(a.rounds):
            out = last_json(run([ld, "bench", "--model", f, "--threads", str(a.threads), "--prompt-tokens", "16",
                                 "--gen-tokens", "128", "--runs", str(a.runs), "--json"]))
            lds.append(out["decode_tok_s"]["median"])
            out_pp = last_json(run([ld, "bench", "--model", f, "--threads", str(a.threads), "--prompt-tokens", "512",
                                    "--gen-tokens", "0", "--runs", str(a.runs), "--json"]))
            ldp.append(out_pp["prefill_tok_s"]["median"])
            ll = last_json(run([py, os.path.join(PEERS, "bench_llamacpp.py"), "bench", f, "--threads", str(a.threads),
                                "--prompt", "16", "--gen", "128", "--pp", "512", "--runs", str(a.runs)]))
            lls.append(ll["decode_tok_s"]["median"])
            llp.append(ll["pp512_tok_s"]["median"])
            raw["files"].setdefault(os.path.basename(f), []).append({"loradock": out, "loradock_pp512": out_pp, "llama.cpp": ll})
        gbps = next((x["median_GBps"] for x in bw if x.get("threads") == a.threads), None)
        wb = info[f]["weight_bytes_per_token"]
        bound = gbps * 1e9 / wb if gbps else None
        med = statistics.median
        rows.append((os.path.basename(f), med(lds), med(lls), med(ldp), med(llp), bound, wb))
    date = datetime.date.today().isoformat()
    out_md = a.out or os.path.join(REPO, "bench", "results", f"{date}-vs-llamacpp.md")
    with open(out_md, "w") as fh:
        fh.write(f"# loradock vs llama.cpp, batch-1 decode and prefill\n\n")
        fh.write(f"- date: {date}\n- machine: {cpu_name()}, nproc {os.cpu_count()}, threads {a.threads}\n")
        fh.write(f"- loradock commit {commit}; llama.cpp from {pyvenv.LLAMACPP_PINS[0]} ({ll.get('system_info', '')})\n")
        fh.write(f"- command: `python3 bench/vs_llamacpp.py --rounds {a.rounds} --threads {a.threads} --runs {a.runs}`\n")
        fh.write(f"- DRAM read bandwidth (membw.c): {json.dumps(bw)}\n")
        fh.write(f"- decode: 16-token prompt, 128 greedy tokens, median of {a.runs} runs after a warm-up, median over {a.rounds} interleaved rounds\n\n")
        fh.write("| file | loradock decode tok/s | llama.cpp decode tok/s | ratio | loradock pp512 tok/s | llama.cpp pp512 tok/s | ratio | bound tok/s (bytes/token) | loradock % of bound |\n")
        fh.write("|---|---|---|---|---|---|---|---|---|\n")
        for name, d1, d2, p1, p2, bound, wb in rows:
            pct = f"{100 * d1 / bound:.0f}%" if bound else "-"
            bound_s = f"{bound:.0f} ({wb / 1e6:.1f} MB)" if bound else "-"
            fh.write(f"| {name} | {d1:.1f} | {d2:.1f} | {d1 / d2:.2f}x | {p1:.1f} | {p2:.1f} | {p1 / p2:.2f}x | "
                     f"{bound_s} | {pct} |\n")
    with open(out_md.replace(".md", ".json"), "w") as fh:
        json.dump(raw, fh, indent=1)
    scrub_files([out_md, out_md.replace(".md", ".json")], REPO, PEERS)
    print(open(out_md).read())


if __name__ == "__main__":
    main()
