#!/usr/bin/env bash
# Prefix reuse on the runtime: requests that share a 256-token prompt prefix (a system prompt)
# under one adapter, arriving one every 400 ms (open loop), with prefix reuse on and then off,
# on SmolLM2-135M-Instruct Q4_1 at 2 threads.
#
#   bench/prefix.sh [REQUESTS=40] [INTERVAL_MS=400]
#
# Writes bench/results/<date>-prefix.md.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-40}"
INTERVAL="${2:-400}"
MODEL="$(scripts/fetch_model.sh | tail -n 1)"
cargo build --release --quiet --bin loradock
OUT="bench/results/$(date +%F)-prefix.md"
CMD="loradock runtime-bench --model MODEL --mode prefix --cycles $N --interval-ms $INTERVAL --concurrency 16 --max-tokens 16 --prefix-tokens 256 --threads 2 --budget-mib 1024"
RESULT=$(target/release/loradock runtime-bench --model "$MODEL" --mode prefix --cycles "$N" --interval-ms "$INTERVAL" \
    --concurrency 16 --max-tokens 16 --prefix-tokens 256 --threads 2 --budget-mib 1024 2>&1)
{
    echo "# Prefix reuse keyed by content: requests sharing a prompt prefix"
    echo
    echo "- date: $(date -u +%FT%TZ); machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), nproc $(nproc), $(free -g | awk '/Mem:/{print $2}') GiB"
    echo "- loradock commit $(git rev-parse --short HEAD) (release build); model $(basename "$MODEL"); f16 KV pages"
    echo "- command: \`$CMD\` (\`bench/prefix.sh $N $INTERVAL\`)"
    echo "- each request: the same 256 prompt tokens, then 8 of its own, 16 generated, one rank-8 q/v adapter (keep-warm, docked by a warm-up request); shared pages are whole 16-position pages before the last prompt token"
    echo
    echo '```'
    echo "$RESULT"
    echo '```'
} > "$OUT"
cat "$OUT"
