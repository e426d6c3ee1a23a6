#!/usr/bin/env bash
# The one test command (README and .ci/run both call it): fetches the default model, checks
# formatting and lints, and runs every test. Prints the time of each phase.
#
#   scripts/test.sh
#
# Environment: LORADOCK_CACHE (model cache, default ~/.cache/loradock).
set -euo pipefail
cd "$(dirname "$0")/.."

T0=$(date +%s)
PHASES=()
phase() {
    local name="$1"
    shift
    local t=$(date +%s)
    echo "=== phase: $name"
    "$@"
    local dt=$(($(date +%s) - t))
    PHASES+=("$(printf '%-28s %5ss' "$name" "$dt")")
    echo "=== phase: $name done in ${dt}s"
}

fetch_model() {
    LORADOCK_SMOLLM2="$(scripts/fetch_model.sh | tail -n 1)"
    export LORADOCK_SMOLLM2
    echo "model: $LORADOCK_SMOLLM2"
}

phase "fetch model" fetch_model
# The IPFS tests build their CARs with the npm packages pinned in tests/ipfs (see
# tests/it/store/ipfs.rs); in CI they must run, not skip.
export LORADOCK_REQUIRE_IPFS_FIXTURES=1
phase "npm ci (tests/ipfs)" npm ci --prefix tests/ipfs --no-audit --no-fund
# Real-model tests must run in CI, not skip.
export LORADOCK_REQUIRE_MODEL=1
phase "cargo fmt --check" cargo fmt --all -- --check
phase "ptx (NVRTC, CUDA 13.0)" python3 scripts/build_ptx.py --check
phase "cargo clippy" cargo clippy --all-targets --quiet -- -D warnings
run_tests() {
    # No doctests: the crate has none, and their empty run would close the log on "0 passed".
    cargo test --quiet --lib --bins --tests 2>&1 | tee .cache/test-output.txt
}
fallback_kernels() {
    # The parity tests again on the kernels this CPU would not pick by itself.
    for isa in avx2 portable; do
        echo "--- kernels: $isa"
        LORADOCK_ISA=$isa cargo test --quiet --test it -- parity:: gguf:: 2>&1 | tee -a .cache/test-output.txt
    done
}
c_abi() {
    # The C programs against the shared and static libraries, under valgrind (no definite
    # or indirect leaks) and with ASan+UBSan on the C side.
    LORADOCK_C_VALGRIND=1 LORADOCK_C_SANITIZE=1 tests/c/run.sh 2>&1 | tee -a .cache/test-output.txt
}
cpp_binding() {
    # The header-only C++ binding's GoogleTest suite (cmake), against the shared library.
    cmake -S tests/cpp -B target/cpptests -DLORADOCK_LIB_DIR="$PWD/target/debug" > target/cpptests.log 2>&1 \
        || { cat target/cpptests.log; return 1; }
    cmake --build target/cpptests -j2 > target/cpptests-build.log 2>&1 || { cat target/cpptests-build.log; return 1; }
    local out
    out=$(./target/cpptests/loradock_cpp_tests 2>&1) || { echo "$out"; return 1; }
    echo "$out" | tail -n 3
    local n
    n=$(echo "$out" | grep -Eo 'PASSED  \] [0-9]+' | grep -Eo '[0-9]+$')
    echo "cpp-tests: ${n:-0} passed, 0 failed" | tee -a .cache/test-output.txt
}
go_binding() {
    # The Go binding (cgo): go vet and go test -race against the shared library.
    bash bindings/go/test.sh 2>&1 | tee -a .cache/test-output.txt | tail -n 3
}
node_binding() {
    # The Node binding (N-API addon in C): node --test, including event-loop responsiveness.
    bash bindings/node/test.sh 2>&1 | tee -a .cache/test-output.txt | tail -n 3
}
example_server() {
    # The OpenAI-compatible example server, end to end with the official openai npm client.
    bash examples/server/test.sh 2>&1 | tee -a .cache/test-output.txt | tail -n 3
}
mkdir -p .cache
phase "cargo test" run_tests
phase "parity on fallback kernels" fallback_kernels
phase "C ABI tests (C, valgrind, ASan)" c_abi
phase "C++ binding (GoogleTest)" cpp_binding
phase "Go binding (vet, test -race)" go_binding
phase "Node binding (node --test)" node_binding
phase "example server (openai client)" example_server

echo
echo "phase times:"
for p in "${PHASES[@]}"; do echo "  $p"; done
echo "  total                        $(($(date +%s) - T0))s"
passed=$(grep -Eo '[0-9]+ passed' .cache/test-output.txt | awk '{s += $1} END {print s + 0}')
failed=$(grep -Eo '[0-9]+ failed' .cache/test-output.txt | awk '{s += $1} END {print s + 0}')
echo "$passed passed, $failed failed"
