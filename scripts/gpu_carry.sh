#!/usr/bin/env bash
# Build, here, what the GPU machine runs (it has no Rust toolchain and no network), into the
# ignored folder carry/ that the device tool's `carry` takes along:
#   carry/loradock             the CLI, release, stripped
#   carry/loradock-lib-tests   the library's unit tests (GPU parity tests in backend::cuda)
#   carry/peers/               make_bench_model.py from ../shared/peers, for the PEFT side
# Then, on the GPU machine: `bash scripts/gpu_check.sh` (one command, under 10 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p carry/peers
cargo build --release --quiet --bin loradock
cp target/release/loradock carry/loradock
lib_tests=$(cargo test --release --lib --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if (m.get("reason") == "compiler-artifact" and m["profile"]["test"] and m.get("executable")
            and "rlib" in m["target"]["kind"]):
        print(m["executable"])' | tail -n 1)
[ -n "$lib_tests" ] || { echo "gpu_carry: no library test binary was built" >&2; exit 1; }
cp "$lib_tests" carry/loradock-lib-tests
strip carry/loradock carry/loradock-lib-tests
if [ -f ../shared/peers/make_bench_model.py ]; then cp ../shared/peers/make_bench_model.py carry/peers/; fi
du -sh carry/*
