#!/usr/bin/env bash
# Every GPU check and benchmark in one command, run on the GPU machine from the tree's root with
# carry/ built by scripts/gpu_carry.sh. Writes everything under ${OUT:-gpu-results}.
#   1. the probe;  2. GPU parity (every kernel, whole-model logits incl. mixed adapters, int8
#   KV, quantized weights) against the CPU engine on the same machine, a skip is a failure;
#   3. synthetic models (SmolLM2 shape at Q4_1/Q8_0/F16, an 8B-like shape at Q4_1) and the
#   CUDA benchmarks on them;  4. transformers+PEFT on the same GPU (bench/gpu_peft.py).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-results}
mkdir -p "$OUT"
W=$(mktemp -d)  # synthetic models and the HF copy (several GB for the 8B-like shape)
log="$OUT/gpu-check.log"
say() { echo "=== $*" | tee -a "$log"; }
T0=$(date +%s)
say "date $(date -u +%FT%TZ); $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1)"
carry/loradock gpu 2>&1 | tee -a "$log"
say "parity (LORADOCK_REQUIRE_CUDA=1)"
LORADOCK_REQUIRE_CUDA=1 timeout 240 carry/loradock-lib-tests backend::cuda --test-threads=1 --nocapture 2>&1 | tee -a "$log"
say "synthetic models"
for t in q4_1 q8_0 f16; do
    timeout 60 carry/loradock synth --shape smollm2 --type "$t" --out "$W"/smollm2-$t.gguf 2>&1 | tee -a "$log"
done
timeout 60 carry/loradock synth --shape smollm2 --type q4_1 --out "$W"/smollm2-ad.gguf --adapters 64 --rank 16 2>&1 | tee -a "$log"
timeout 120 carry/loradock synth --shape llama8b --type q4_1 --out "$W"/llama8b-q4_1.gguf 2>&1 | tee -a "$log"
say "benchmarks"
for t in q4_1 q8_0 f16; do
    timeout 60 carry/loradock gpu-bench --model "$W"/smollm2-$t.gguf --steps 64 2>&1 | tee -a "$log"
done
timeout 90 carry/loradock gpu-bench --model "$W"/smollm2-ad.gguf --adapters "$W"/smollm2-ad.gguf.adapters --batch 64 --steps 32 2>&1 | tee -a "$log"
timeout 120 carry/loradock gpu-bench --model "$W"/llama8b-q4_1.gguf --steps 32 2>&1 | tee -a "$log"
if [ -f carry/peers/make_bench_model.py ] && python3 -c "import torch, transformers, peft" 2>/dev/null; then
    say "transformers+PEFT on the same GPU"
    timeout 60 python3 carry/peers/make_bench_model.py "$W"/hf --no-f32 > /dev/null 2>&1
    timeout 120 python3 bench/gpu_peft.py "$W"/hf 2>&1 | tee -a "$log"
fi
say "done in $(( $(date +%s) - T0 )) s"
