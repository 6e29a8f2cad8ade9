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
#   3. HOOK: a merge benchmark through `mergec merge ... --backend cuda`, once the CLI has
#      that flag (skipped with a message until then).
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

step "3. HOOK: merge benchmark with --backend cuda"
# ---- HOOK (merge benchmark) ------------------------------------------------------------
# Runs once `mergec merge` takes `--backend cuda` (added by the CLI work). Until then it
# says so and passes. It writes small Mistral-shaped checkpoints with `mergec synth`, then
# times the same merge on the CPU and on the GPU and checks the outputs are identical.
if "$BUNDLE/mergec" merge --help 2>&1 | grep -q -- '--backend'; then
    WORK="$(mktemp -d)"
    ARCH="${MERGEC_BENCH_ARCH:-mistral-1}"
    if timeout 90 "$BUNDLE/mergec" synth --arch "$ARCH" --models 3 --dtype bf16 --out "$WORK/ckpt" >/dev/null; then
        for backend in cuda default; do
            flag=()
            [ "$backend" = cuda ] && flag=(--backend cuda)
            s=$(date +%s.%N)
            timeout 60 "$BUNDLE/mergec" merge task_arithmetic --base "$WORK/ckpt/base" \
                --model "$WORK/ckpt/model-1" --model "$WORK/ckpt/model-2" --model "$WORK/ckpt/model-3" \
                --dtype bf16 --out "$WORK/out-$backend" --quiet "${flag[@]}" || { STATUS=1; echo "merge ($backend) failed"; }
            echo "task_arithmetic ($ARCH, base + 3, bf16) backend $backend: $(echo "$(date +%s.%N) - $s" | bc) s"
        done
        if diff -r "$WORK/out-cuda" "$WORK/out-default" >/dev/null; then
            echo "outputs identical"
        else
            echo "outputs DIFFER"; STATUS=1
        fi
    else
        echo "mergec synth failed"; STATUS=1
    fi
    rm -rf "$WORK"
else
    echo "SKIPPED: this mergec has no 'merge --backend' flag yet (the hook runs once it does)"
fi
# ---- end of HOOK ------------------------------------------------------------------------

echo
echo "gpu-check: $([ "$STATUS" = 0 ] && echo PASSED || echo FAILED)"
exit "$STATUS"
