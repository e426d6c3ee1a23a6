#!/usr/bin/env bash
# The demo (README's first command): fetch SmolLM2-135M-Instruct if missing, build loradock,
# and chat with the model on a few prompts, streaming tokens as they come.
#
#   scripts/demo.sh [extra generate flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL="$(scripts/fetch_model.sh | tail -n 1)"
cargo build --release --quiet --bin loradock
BIN=target/release/loradock
echo "model: $MODEL"
$BIN inspect "$MODEL" | sed -n '1,12p'
for q in "What is 2 plus 2?" \
         "Write a haiku about the sea." \
         "Say hello."; do
    echo
    echo ">>> $q"
    $BIN generate --model "$MODEL" --chat --prompt "$q" --max-tokens 96 "$@"
done
