#!/usr/bin/env python3
"""transformers + PEFT on a CUDA GPU, for the side-by-side GPU results (scripts/gpu_check.sh).

    python3 bench/gpu_peft.py HF_DIR [--batch 64] [--steps 32]

HF_DIR is make_bench_model.py's output folder (llama-bench-f16/ and lora-r16-qkvo/ in it).
Measures greedy decode tokens/s at batch 1, and at --batch rows with no adapter against the same
batch where every row has its own adapter name (PEFT's mixed batch, `adapter_names=`); the
adapter file is loaded under --batch names. Prints one `key: value` line per figure.
"""
import argparse
import time

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM


def decode(model, batch, steps, **kw):
    ids = torch.randint(259, 32000, (batch, 32), generator=torch.Generator().manual_seed(0)).cuda()
    args = dict(max_new_tokens=steps, min_new_tokens=steps, do_sample=False, **kw)
    model.generate(ids, **dict(args, max_new_tokens=2, min_new_tokens=2))  # warm-up
    torch.cuda.synchronize()
    t = time.perf_counter()
    model.generate(ids, **args)
    torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("hf_dir")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=32)
    a = ap.parse_args()
    base = AutoModelForCausalLM.from_pretrained(f"{a.hf_dir}/llama-bench-f16", torch_dtype=torch.float16).cuda()
    print(f"peft device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    print(f"peft batch-1 decode, base: {decode(base, 1, a.steps):.1f} tok/s")
    adapter = f"{a.hf_dir}/lora-r16-qkvo"
    model = PeftModel.from_pretrained(base, adapter, adapter_name="a0")
    for i in range(1, a.batch):
        model.load_adapter(adapter, adapter_name=f"a{i}")
    names = [f"a{i}" for i in range(a.batch)]
    none = decode(model, a.batch, a.steps, adapter_names=["__base__"] * a.batch)
    mixed = decode(model, a.batch, a.steps, adapter_names=names)
    print(f"peft batch-{a.batch} decode, no adapters: {none:.1f} tok/s")
    print(f"peft batch-{a.batch} decode, a distinct adapter per row: {mixed:.1f} tok/s ({mixed / none:.3f}x)")


if __name__ == "__main__":
    main()
