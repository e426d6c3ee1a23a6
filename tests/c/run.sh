#!/usr/bin/env bash
# Build the C tests (tests/c/*.c) against loradock's shared and static libraries and run
# them. The header must compile as C11 and C++17 with -Wall -Wextra -Werror. Options (env):
#   LORADOCK_C_VALGRIND=1  also run the shared-library builds under valgrind (no definite or
#                          indirect leaks, no memory errors);
#   LORADOCK_C_SANITIZE=1  also build and run with ASan+UBSan on the C side.
# Needs: cargo, cc (gcc or clang), c++ for the header check; valgrind when asked.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
OUT="${CARGO_TARGET_DIR:-$ROOT/target}/ctests"
LIBDIR="${CARGO_TARGET_DIR:-$ROOT/target}/debug"
CC="${CC:-cc}"
CXX="${CXX:-c++}"
mkdir -p "$OUT"

(cd "$ROOT" && cargo build --lib --quiet)

# The header alone, as C11 and C++17, warnings as errors.
printf '#include "loradock.h"\nint main(void){return loradock_version()==0;}\n' > "$OUT/header.c"
$CC -std=c11 -Wall -Wextra -Werror -pedantic -I"$ROOT/include" -c "$OUT/header.c" -o "$OUT/header_c.o"
cp "$OUT/header.c" "$OUT/header.cpp"
$CXX -std=c++17 -Wall -Wextra -Werror -pedantic -I"$ROOT/include" -c "$OUT/header.cpp" -o "$OUT/header_cpp.o"

TESTS=(lifecycle errors streams adapters concurrency log)
STATIC_LIBS="-lpthread -ldl -lm -lrt -lgcc_s -lutil"
CFLAGS="-std=c11 -D_DEFAULT_SOURCE -g -O1 -Wall -Wextra -Werror -I$ROOT/include"
failed=0
npass=0
nfail=0
run() {
    local name="$1"; shift
    if "$@" "$ROOT" > "$OUT/log" 2>&1; then
        echo "c-test $name: ok"; npass=$((npass + 1))
    else
        echo "c-test $name: FAILED"; sed 's/^/    /' "$OUT/log" | tail -20; failed=1; nfail=$((nfail + 1))
    fi
}
for t in "${TESTS[@]}"; do
    $CC $CFLAGS "$ROOT/tests/c/$t.c" -o "$OUT/$t-shared" -L"$LIBDIR" -Wl,-rpath,"$LIBDIR" -lloradock -lpthread
    $CC $CFLAGS "$ROOT/tests/c/$t.c" -o "$OUT/$t-static" "$LIBDIR/libloradock.a" $STATIC_LIBS
    run "$t (shared)" "$OUT/$t-shared"
    run "$t (static)" "$OUT/$t-static"
    if [ "${LORADOCK_C_VALGRIND:-0}" = 1 ]; then
        run "$t (valgrind)" valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect \
            --show-leak-kinds=definite,indirect --error-exitcode=99 "$OUT/$t-shared"
    fi
    if [ "${LORADOCK_C_SANITIZE:-0}" = 1 ]; then
        $CC $CFLAGS -fsanitize=address,undefined -fno-omit-frame-pointer "$ROOT/tests/c/$t.c" \
            -o "$OUT/$t-asan" -L"$LIBDIR" -Wl,-rpath,"$LIBDIR" -lloradock -lpthread
        ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1 run "$t (asan+ubsan)" "$OUT/$t-asan"
    fi
done

# The examples: built always; run on the default model when it is known (CI sets
# LORADOCK_SMOLLM2) with the trained adapters.
$CC -std=c11 -Wall -Wextra -Werror -I"$ROOT/include" "$ROOT/examples/c/serve_adapters.c" \
    -o "$OUT/serve_adapters_c" -L"$LIBDIR" -Wl,-rpath,"$LIBDIR" -lloradock
$CXX -std=c++17 -Wall -Wextra -Werror -I"$ROOT/include" -I"$ROOT/bindings/cpp" \
    "$ROOT/examples/cpp/serve_adapters.cpp" -o "$OUT/serve_adapters_cpp" -L"$LIBDIR" -Wl,-rpath,"$LIBDIR" -lloradock
ADAPTERS="$ROOT/tests/fixtures/smollm2/adapters"
if [ -n "${LORADOCK_SMOLLM2:-}" ] && [ -d "$ADAPTERS" ]; then
    dirs=$(find "$ADAPTERS" -mindepth 1 -maxdepth 1 -type d | sort)
    example() { "$@" > "$OUT/example.log" 2>&1 && grep -q "high water" "$OUT/example.log"; }
    for ex in serve_adapters_c serve_adapters_cpp; do
        # shellcheck disable=SC2086
        if example "$OUT/$ex" "$LORADOCK_SMOLLM2" $dirs; then
            echo "c-test example $ex (default model): ok"; npass=$((npass + 1))
            sed -n '1,12p' "$OUT/example.log" | sed 's/^/    /'
        else
            echo "c-test example $ex (default model): FAILED"; tail -20 "$OUT/example.log"; failed=1; nfail=$((nfail + 1))
        fi
    done
fi
echo "c-tests: $npass passed, $nfail failed"
exit $failed
