#!/usr/bin/env bash
# End-to-end tests of the example server: build the Node binding (bindings/node, against
# target/debug/libloradock.so), install this example's pinned dependencies (npm ci), start
# servers on localhost with the tiny fixture model and talk to them with the official openai
# client; print one summary line "server-tests: N passed, M failed".
# Needs: node >= 18 (the openai 7.x package declares node >= 22 but runs on 20), npm, cc,
# and the shared library built beforehand (cargo build --lib; or LORADOCK_LIB_DIR).
set -euo pipefail
cd "$(dirname "$0")"
BINDING=../../bindings/node

npm ci --prefix "$BINDING" --ignore-scripts --no-audit --no-fund
npm run --prefix "$BINDING" --silent build
# The binding is a file: link, built above; its install script need not run again.
npm ci --ignore-scripts --no-audit --no-fund

out="$(mktemp)"
trap 'rm -f "$out"' EXIT
status=0
node --test --test-reporter=tap test/*.test.js > "$out" 2>&1 || status=$?
grep -E '^\s*(not )?ok |^# ' "$out" | grep -v '^# Subtest' || true
if [ "$status" -ne 0 ]; then
    echo "--- node --test output (exit $status) ---"
    cat "$out"
fi
pass=$(grep -E '^# pass [0-9]+' "$out" | tail -n 1 | awk '{print $3}')
fail=$(grep -E '^# fail [0-9]+' "$out" | tail -n 1 | awk '{print $3}')
pass=${pass:-0}
fail=${fail:-0}
if [ "$status" -ne 0 ] && [ "$fail" -eq 0 ]; then fail=1; fi
echo "server-tests: $pass passed, $fail failed"
[ "$status" -eq 0 ] && [ "$fail" -eq 0 ]
