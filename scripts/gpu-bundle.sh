#!/usr/bin/env bash
# Builds what scripts/gpu-check.sh runs on a GPU machine that has no Rust and no network:
# the mergec binary and the GPU test binary (tests/gpu.rs), both with --features cuda,
# stripped of debug info, plus gpu-check.sh itself and scripts/bench-merge.sh, in one folder.
#
#   scripts/gpu-bundle.sh [OUT]      (default OUT: target/gpu-bundle, ignored by git)
#
# Then carry OUT to the GPU machine and run OUT/gpu-check.sh there (it finds its binaries
# next to itself). The binaries link glibc dynamically: build on a distribution no newer
# than the GPU machine's.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/target/gpu-bundle}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
cd "$ROOT"

echo "== cargo build --release --features cuda (mergec)" >&2
cargo build --release --features cuda --bin mergec --quiet
echo "== cargo test --release --features cuda --test gpu --no-run" >&2
TESTS="$(cargo test --release --features cuda --test gpu --no-run --message-format=json 2>/dev/null |
    grep '"test":true' | grep '"name":"gpu"' | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)"
[ -x "$TESTS" ] || { echo "gpu-bundle: could not find the gpu test binary" >&2; exit 1; }

mkdir -p "$OUT"
cp "$TARGET/release/mergec" "$OUT/mergec"
cp "$TESTS" "$OUT/gpu-tests"
cp "$ROOT/scripts/gpu-check.sh" "$OUT/gpu-check.sh"
# The merge benchmark, laid out as in the repository (it finds memwatch.py from its own path).
mkdir -p "$OUT/scripts/conformance"
cp "$ROOT/scripts/bench-merge.sh" "$OUT/scripts/bench-merge.sh"
cp "$ROOT/scripts/conformance/memwatch.py" "$OUT/scripts/conformance/memwatch.py"
if command -v strip >/dev/null; then
    strip --strip-debug "$OUT/mergec" "$OUT/gpu-tests"
fi
chmod +x "$OUT/mergec" "$OUT/gpu-tests" "$OUT/gpu-check.sh"
git -C "$ROOT" rev-parse --short HEAD >"$OUT/COMMIT" 2>/dev/null || true
du -sh "$OUT"/* >&2
echo "$OUT"
