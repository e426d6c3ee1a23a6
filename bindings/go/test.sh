#!/usr/bin/env bash
# The Go binding's checks: go vet, then go test -race over bindings/go, against the
# already built library (cargo build --lib: target/debug/libloradock.so). Prints last one
# line "go-tests: N passed, M failed" (top-level test functions from go test -v; a go vet
# failure, or a go test failure outside any test such as a build error, counts as one
# failed) and exits non-zero when anything failed.
set -uo pipefail
DIR="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$DIR/../.." && pwd)"
LIB="${CARGO_TARGET_DIR:-$ROOT/target}/debug/libloradock.so"
cd "$DIR"
export CGO_ENABLED=1
if [ -n "${CARGO_TARGET_DIR:-}" ]; then
    # The package links ../../target/debug; point the linker and the loader elsewhere.
    export CGO_LDFLAGS="-L$CARGO_TARGET_DIR/debug -Wl,-rpath,$CARGO_TARGET_DIR/debug ${CGO_LDFLAGS:-}"
fi
if ! command -v go > /dev/null; then
    echo "go: not found"
    echo "go-tests: 0 passed, 1 failed"
    exit 1
fi
if [ ! -f "$LIB" ]; then
    echo "$LIB is missing: run cargo build --lib first"
    echo "go-tests: 0 passed, 1 failed"
    exit 1
fi

extra=0
if ! go vet ./...; then
    echo "go vet: FAILED"
    extra=1
fi
LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT
go test -race -count=1 -v ./... > "$LOG" 2>&1
rc=$?
grep -E '^(--- |FAIL|ok|panic:)|^\s+\S+_test\.go:[0-9]+:' "$LOG"
npass=$(grep -c '^--- PASS:' "$LOG")
nfail=$(grep -c '^--- FAIL:' "$LOG")
if [ "$rc" -ne 0 ] && [ "$nfail" -eq 0 ]; then
    tail -30 "$LOG"
    nfail=1
fi
nfail=$((nfail + extra))
echo "go-tests: $npass passed, $nfail failed"
[ "$nfail" -eq 0 ]
