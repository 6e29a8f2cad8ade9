#!/usr/bin/env bash
# GPU check of mergec's CUDA backend, for a machine with an NVIDIA GPU, its driver and
# NVRTC, but maybe no Rust and no network. Runs prebuilt binaries (scripts/gpu-bundle.sh):
#
#   gpu-check.sh [BUNDLE]   (default: the folder holding this script, if it holds
#                            gpu-tests, else target/gpu-bundle)
#
# Steps, each under a timeout, about 2 minutes in all (5 at most):
#   1. the driver and device (nvidia-smi), and where libnvrtc is;
#   2. the GPU tests (tests/gpu.rs, the ignored ones too): random kernels against the
#      reference, transcendental tolerances, top-k/quantile selection, a merge-shaped
#      kernel's throughput, and the device-to-device copy bandwidth;
#   3. the merge benchmark (scripts/bench-merge.sh): plain read of the inputs, the JIT at 1, 2
#      and all threads, `--backend cuda` (with the bytes it copied each way and their GB/s)
#      and `--device auto`, on Mistral-shaped checkpoints, output sha256s compared; then
#      every stdlib method cuda vs jit vs emulated on a tiny family.
# Exit status: 0 if every step that ran passed.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ $# -gt 0 ]; then
    BUNDLE="$1"
elif [ -x "$HERE/gpu-tests" ]; then
    BUNDLE="$HERE"
else
    BUNDLE="$HERE/../target/gpu-bundle"
fi
BUNDLE="$(cd "$BUNDLE" && pwd)" || { echo "gpu-check: no bundle folder" >&2; exit 2; }
for f in gpu-tests mergec; do
    [ -x "$BUNDLE/$f" ] || { echo "gpu-check: $BUNDLE/$f missing (run scripts/gpu-bundle.sh)" >&2; exit 2; }
done
STATUS=0
step() { echo; echo "== $*"; }
# Seconds since a `date +%s%N` stamp, with millisecond precision (no bc needed).
secs() { local ms=$(( ($(date +%s%N) - $1) / 1000000 )); printf '%d.%03d' $((ms / 1000)) $((ms % 1000)); }

step "1. device and libraries (bundle $BUNDLE, commit $(cat "$BUNDLE/COMMIT" 2>/dev/null || echo '?'))"
timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader ||
    echo "nvidia-smi not available"
# cudarc dlopens libnvrtc.so / libnvrtc.so.12 by name: put the toolkit's library folders
# on the search path, and give a lone versioned libnvrtc (e.g. .so.13) an unversioned name.
LIBS="$(mktemp -d)"
trap 'rm -rf "$LIBS"' EXIT
NVRTC="$( (ls /usr/local/cuda/lib64/libnvrtc.so* /usr/local/cuda/targets/*/lib/libnvrtc.so* \
    /usr/local/cuda-*/lib64/libnvrtc.so* /usr/lib/x86_64-linux-gnu/libnvrtc.so* 2>/dev/null;
    timeout 20 find / -xdev \( -path /proc -o -path /sys \) -prune -o \
        -name 'libnvrtc.so*' -print 2>/dev/null) | grep -v builtins | head -1)"
if [ -n "$NVRTC" ]; then
    DIR="$(dirname "$NVRTC")"
    ln -sf "$NVRTC" "$LIBS/libnvrtc.so"
    export LD_LIBRARY_PATH="$LIBS:$DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "libnvrtc: $NVRTC"
else
    echo "libnvrtc: not found (the engine will report it)"
fi
[ -d /usr/local/cuda/lib64 ] && export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:/usr/local/cuda/lib64"

step "2. GPU tests (tests/gpu.rs, ignored ones included)"
t0=$(date +%s)
timeout 180 "$BUNDLE/gpu-tests" --include-ignored --test-threads 1 --nocapture 2>&1 |
    grep -v '^\s*$' | tail -60
rc=${PIPESTATUS[0]}
echo "gpu tests: exit $rc in $(( $(date +%s) - t0 )) s"
[ "$rc" = 0 ] || STATUS=1

step "3. merge benchmark: --backend jit vs --backend cuda"
# ---- merge benchmark ------------------------------------------------------------------
# Writes Mistral-shaped checkpoints (MERGEC_BENCH_ARCH, default mistral-2: base + 3 models,
# 5.6 GB of bf16) with `mergec synth`, then times the same merges with --backend jit (the
# CPU) and --backend cuda, inputs in the page cache, and compares the outputs byte for byte;
# then every stdlib method on a tiny family, cuda against jit.
WORK="$(mktemp -d)"
ARCH="${MERGEC_BENCH_ARCH:-mistral-2}"
M="$BUNDLE/mergec"
if timeout 120 "$M" synth --arch "$ARCH" --models 3 --dtype bf16 --out "$WORK/ckpt" >/dev/null &&
    timeout 60 "$M" synth --arch tiny-2 --models 3 --dtype bf16 --out "$WORK/tiny" >/dev/null; then
    # scripts/bench-merge.sh: the plain read of the inputs (the floor), a copy of the base (read
    # + write of the output's size), the JIT at 1, 2 and all threads, the cuda backend and
    # --device auto (the JIT and cuda raced on one tensor: its note says which won), each
    # output's sha256; the same method must give the same bytes on every engine and thread count.
    mkdir -p "$WORK/bench"
    ln -s "$WORK/ckpt" "$WORK/bench/ckpt-$ARCH"
    timeout 480 bash "$BUNDLE/scripts/bench-merge.sh" "$WORK/bench" --arch "$ARCH" --only-mergec \
        --mergec "$M" --backends "jit cuda auto" --methods "task_arithmetic ties" --threads "1 2 all" \
        >"$WORK/bench.md" 2>"$WORK/bench.err" || { STATUS=1; echo "bench-merge failed"; tail -20 "$WORK/bench.err"; }
    cat "$WORK/bench.md"
    for method in task_arithmetic ties; do
        shas="$(grep "| $method " "$WORK/bench.md" | grep -o 'sha256 [0-9a-f]*' | sort -u)"
        if [ "$(echo "$shas" | grep -c sha256)" = 1 ]; then
            echo "  $method: outputs identical on every engine and thread count ($shas)"
        else
            echo "  $method: outputs DIFFER: $(echo "$shas" | tr '\n' ' ')"; STATUS=1
        fi
    done
    same=0; differ=""; emu_differ=""
    for method in $("$M" methods 2>/dev/null | awk '/^[a-z_]+ / {print $1}'); do
        for backend in jit cuda emulated; do
            timeout 60 "$M" merge "$method" --base "$WORK/tiny/base" --model "$WORK/tiny/model-1" \
                --model "$WORK/tiny/model-2" --out "$WORK/t-$backend" --quiet --backend "$backend" \
                --allow-nonfinite >/dev/null 2>&1 || echo "  $method ($backend) failed"
        done
        if [ ! -d "$WORK/t-jit" ]; then
            # Not a merge of base + 2 (slerp and nearswap take one model): every engine refuses it.
            skipped="${skipped:-} $method"
            rm -rf "$WORK/t-cuda" "$WORK/t-emulated"
            continue
        fi
        if diff -r -q -x mergec.json -x README.md "$WORK/t-cuda" "$WORK/t-jit" >/dev/null 2>&1; then
            same=$((same + 1))
        else
            differ="$differ $method"
        fi
        diff -r -q -x mergec.json -x README.md "$WORK/t-emulated" "$WORK/t-jit" >/dev/null 2>&1 ||
            emu_differ="$emu_differ $method"
        rm -rf "$WORK/t-cuda" "$WORK/t-jit" "$WORK/t-emulated"
    done
    echo "stdlib methods on tiny-2 (base + 2): $same byte-identical cuda vs jit; differing:${differ:- none}"
    echo "  emulated (the GPU path's executor on the CPU) vs jit, differing:${emu_differ:- none}"
    echo "  refused by the JIT for base + 2 (skipped):${skipped:- none}"
    [ -z "$emu_differ" ] || STATUS=1
    echo "  (differences are expected only where transcendentals (exp, sin, acos, ...) are used: <= 8 ulps)"
else
    echo "mergec synth failed"; STATUS=1
fi
rm -rf "$WORK"
# ---- end of HOOK ------------------------------------------------------------------------

echo
echo "gpu-check: $([ "$STATUS" = 0 ] && echo PASSED || echo FAILED)"
exit "$STATUS"
