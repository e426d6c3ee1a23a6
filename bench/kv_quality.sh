#!/usr/bin/env bash
# Perplexity and logit drift of each KV cache type on SmolLM2-135M-Instruct (Q4_1), over a
# fixed text on every Debian machine: /usr/share/common-licenses/GPL-3 (package base-files).
#
#   bench/kv_quality.sh [TOKENS=2048] [WINDOW=512]
#
# Writes bench/results/<date>-kv-quality.md.
set -euo pipefail
cd "$(dirname "$0")/.."
TOKENS="${1:-2048}"
WINDOW="${2:-512}"
TEXT=/usr/share/common-licenses/GPL-3
MODEL="$(scripts/fetch_model.sh | tail -n 1)"
cargo build --release --quiet --bin loradock
OUT="bench/results/$(date +%F)-kv-quality.md"
{
    echo "# KV cache quality: perplexity and logit drift vs an f32 cache"
    echo
    echo "- date: $(date -u +%FT%TZ); machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), nproc $(nproc)"
    echo "- loradock commit $(git rev-parse --short HEAD); model $(basename "$MODEL")"
    echo "- text: $TEXT (Debian base-files), first $TOKENS tokens, windows of $WINDOW tokens"
    echo "- command: \`loradock perplexity --model MODEL --file $TEXT --ctx $WINDOW --max-tokens $TOKENS --kv TYPE --compare-f32 --json\`"
    echo "- int8 and q4 heads are stored Hadamard-rotated; q4 has a scale and min per 32 values"
    echo
    echo "| KV type | bytes / token | perplexity | max logit drift | mean logit drift | top-1 agreement |"
    echo "|---|---|---|---|---|---|"
    for kv in f32 f16 int8 q4; do
        j=$(target/release/loradock perplexity --model "$MODEL" --file "$TEXT" --ctx "$WINDOW" \
            --max-tokens "$TOKENS" --kv "$kv" --compare-f32 --json)
        python3 - "$kv" "$j" <<'PY'
import json, sys
kv, j = sys.argv[1], json.loads(sys.argv[2])
f = lambda k, fmt: (fmt % j[k]) if j.get(k) is not None else "(reference)"
print(f"| {kv} | {j['kv_bytes_per_token']} | {j['perplexity']:.3f} | {f('max_logit_drift_vs_f32', '%.3f')} | "
      f"{f('mean_abs_logit_drift_vs_f32', '%.4f')} | {f('top1_agreement_vs_f32', '%.4f')} |")
PY
    done
} | tee "$OUT"
