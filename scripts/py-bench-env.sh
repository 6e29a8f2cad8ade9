#!/usr/bin/env bash
# Make (if missing) the virtualenv for scripts/py_bench_generate.py, the Python Hugging Face
# `transformers` baseline for generation on the CPU, and print what it holds. Re-runnable: when the
# virtualenv already imports everything at the pinned versions it only prints and exits.
#
#   scripts/py-bench-env.sh            (default venv: target/py-bench-venv; PY_BENCH_VENV overrides)
#
# Environment: PY_BENCH_VENV (the virtualenv's path), PY_BENCH_PINS (what pip installs),
# PYTHON (the interpreter that makes the venv; default python3, checked with 3.11).
#
# What it installs, from PyPI (the only index reachable here):
#   torch==2.15.0        PyPI's Linux x86_64 torch wheel is the CUDA build. There is no CPU-only
#                        variant on PyPI (torch==X+cpu lives only on PyTorch's own index, which
#                        cannot be reached here). Its libtorch_cuda.so / libtorch_python.so link
#                        libcudart, libcublas, libcudnn, libnccl, ... (DT_NEEDED), so
#                        `pip install --no-deps torch` + the pure-Python deps does NOT import
#                        ("ValueError: libcublasLt.so.*[0-9] not found in the system path").
#                        So the nvidia-* / cuda-toolkit / triton wheels come too (about 3 GB to
#                        download, about 6 GB on disk). With them `import torch` works on a machine
#                        without a GPU (torch.cuda.is_available() is False) and runs on the CPU.
#   transformers==5.24.0 the generator (its GGUF loader dequantizes the GGUF tensors to float).
#   gguf==0.19.0         transformers' GGUF reader (`from_pretrained(dir, gguf_file=...)`).
#   accelerate==1.15.0   also required by transformers for GGUF: without it from_pretrained stops
#                        at "accelerate is required when loading a GGUF file".
#   tokenizers, safetensors, huggingface-hub, numpy, ... as transformers' own dependencies.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PY_BENCH_VENV:-$ROOT/target/py-bench-venv}"
PYTHON="${PYTHON:-python3}"
PINS="${PY_BENCH_PINS:-torch==2.15.0 transformers==5.24.0 gguf==0.19.0 accelerate==1.15.0}"

# Imports everything the benchmark needs and checks the pinned versions (only for the default pins).
CHECK='
import importlib.metadata as m, sys
import torch, transformers, gguf, accelerate, tokenizers, numpy  # noqa: F401
pins = sys.argv[1].split()
for p in pins:
    if "==" in p:
        name, want = p.split("==", 1)
        have = m.version(name)
        assert have == want, f"{name} {have} != {want}"
x = torch.randn(64, 64)
assert torch.isfinite(x @ x).all()
'

ok() { [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "$CHECK" "$PINS" >/dev/null 2>&1; }

if ok; then
    echo "== $VENV already imports torch, transformers, gguf and accelerate at the pins ($PINS): nothing to install" >&2
else
    echo "== installing into $VENV: $PINS" >&2
    echo "   (torch from PyPI brings its CUDA wheels: about 3 GB to download, about 6 GB on disk)" >&2
    start=$(date +%s)
    mkdir -p "$(dirname "$VENV")"
    "$PYTHON" -m venv "$VENV"
    # shellcheck disable=SC2086
    "$VENV/bin/pip" install --quiet --disable-pip-version-check $PINS
    if ! ok; then
        echo "error: the virtualenv at $VENV does not import torch, transformers and gguf:" >&2
        "$VENV/bin/python" -c "$CHECK" "$PINS" >&2 || true
        exit 1
    fi
    echo "== installed in $(( $(date +%s) - start )) s" >&2
fi

"$VENV/bin/python" - <<'EOF'
import importlib.metadata as m
import torch
names = ["torch", "transformers", "gguf", "accelerate", "tokenizers", "safetensors", "huggingface-hub", "numpy"]
for n in names:
    try:
        print(f"{n}=={m.version(n)}")
    except m.PackageNotFoundError:
        print(f"{n}: not installed")
print(f"torch.cuda.is_available()={torch.cuda.is_available()} num_threads={torch.get_num_threads()}")
EOF
echo "venv: $VENV ($(du -sh "$VENV" 2>/dev/null | cut -f1) on disk; pip list: $VENV/bin/pip list)"
