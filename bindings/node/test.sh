#!/usr/bin/env bash
# The Node binding's tests: install the pinned dependencies (npm ci), build the N-API addon
# (warnings are errors) against target/debug/libloradock.so, run node --test and print one
# summary line "node-tests: N passed, M failed". Needs: node >= 18, npm, cc, and the shared
# library built beforehand (cargo build --lib; or LORADOCK_LIB_DIR pointing at it).
set -euo pipefail
cd "$(dirname "$0")"

npm ci --ignore-scripts --no-audit --no-fund
LORADOCK_NODE_WERROR=1 npm run --silent build

out="$(mktemp)"
trap 'rm -f "$out"' EXIT
status=0
node --test --test-reporter=tap test/*.test.js > "$out" 2>&1 || status=$?
# Failures in full; passes as one line each.
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
echo "node-tests: $pass passed, $fail failed"
[ "$status" -eq 0 ] && [ "$fail" -eq 0 ]
