#!/usr/bin/env bash
# Conformance against mergekit: the same merges through mergekit 0.1.5 and through mergec, compared
# tensor by tensor (not run in CI: it installs about 6 GB of Python packages).
#
#   scripts/conformance-mergekit.sh [--work DIR] [--arch tiny-2] [--seed 0] [--only CASES] [--no-check]
#
# 1. A virtualenv at .venv-mergekit (git-ignored; MERGEKIT_VENV overrides) with mergekit 0.1.5 and
#    its dependencies from PyPI, made if missing by scripts/conformance/ensure_venv.py. torch comes
#    from PyPI as mergekit's dependency: PyPI's Linux torch wheel is the CUDA build and libtorch.so
#    links the CUDA libraries, so the nvidia-*/cuda-toolkit wheels come too (about 3 GB of downloads,
#    6 GB on disk, 2-3 minutes here) although everything runs on the CPU; `pip install torch
#    --no-deps` does not import ("libcublasLt.so.*[0-9] not found"), and the CPU-only wheels are on
#    PyTorch's own index, which is not reachable here. See ensure_venv.py for the pinned versions.
# 2. cargo build --release, then `mergec synth` writes a base and 3 fine-tuned variants (bf16) with
#    the shapes of --arch (default tiny-2: Mistral's layout with hidden 24, intermediate 40, vocab 67,
#    2 layers, tied embeddings; 20 tensors) under WORK/ckpt-ARCH, reused when present.
# 3. scripts/conformance/compare.py runs every case through mergekit (its Python API, exactly as
#    mergekit-yaml does it; the YAML files are kept in WORK/configs) and through mergec (stdlib method
#    + --set), and prints the tables: see that file's docstring for the tolerances. The frankenmerge
#    cases (`--only "slices passthrough,slices slerp,slices linear"`) run mergec on the YAML file
#    itself and compare config.json's num_hidden_layers too.
# 4. mergec runs the same YAML files (`mergec merge CONFIG.yml`): each must give the same tensors and
#    config.json as the equivalent command line.
# 5. scripts/check-output.py on one mergec output (safetensors + transformers AutoConfig + loading
#    the model with AutoModelForCausalLM), unless --no-check.
# Exit status: 0 when every verdict passes.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK=/tmp/mergec-conformance
ARCH=tiny-2
SEED=0
ONLY=""
CHECK=1
while [ $# -gt 0 ]; do
    case "$1" in
        --work) WORK="$2"; shift 2 ;;
        --arch) ARCH="$2"; shift 2 ;;
        --seed) SEED="$2"; shift 2 ;;
        --only) ONLY="$2"; shift 2 ;;
        --no-check) CHECK=0; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY="$(python3 "$ROOT/scripts/conformance/ensure_venv.py")"
"$PY" -c 'import importlib.metadata as m, torch; print("== mergekit", m.version("mergekit"), "| torch", torch.__version__, "(cuda available:", str(torch.cuda.is_available()) + ") | transformers", m.version("transformers"), "| safetensors", m.version("safetensors"))'

echo "== cargo build --release"
(cd "$ROOT" && cargo build --release --quiet)
MERGEC="${CARGO_TARGET_DIR:-$ROOT/target}/release/mergec"

CKPT="$WORK/ckpt-$ARCH"
if [ ! -f "$CKPT/model-3/config.json" ]; then
    echo "== mergec synth --arch $ARCH --models 3 --dtype bf16 --out $CKPT"
    rm -rf "$CKPT"
    "$MERGEC" synth --arch "$ARCH" --models 3 --dtype bf16 --out "$CKPT"
fi

echo "== comparing (mergekit on CPU; seed $SEED)"
status=0
"$PY" "$ROOT/scripts/conformance/compare.py" --mergec "$MERGEC" --ckpt "$CKPT" \
    --work "$WORK" --seed "$SEED" ${ONLY:+--only "$ONLY"} 2> >(grep -v '^\[transformers\]' >&2) || status=$?

# mergec reading the very YAML files mergekit ran (the bf16 ones and the random-mask ones, same seed):
# each must give the bytes of the equivalent mergec command line above.
echo
echo "== mergec merge CONFIG.yml (the YAML files mergekit ran) against mergec's command line, byte for byte"
same=0; differ=0
for cfg in "$WORK"/configs/*.bf16.yml "$WORK"/configs/*d0.5.yml; do
    [ -f "$cfg" ] || continue
    slug="$(basename "$cfg" .yml)"; slug="${slug%.bf16}"
    ref="$WORK/out/$slug.mergec"
    [ -d "$ref" ] || continue
    y="$WORK/out/$slug.mergec-yaml"
    if ! msg="$("$MERGEC" merge "$cfg" --out "$y" --force --quiet 2>&1)"; then
        echo "   $slug: mergec could not run the config: $(echo "$msg" | head -2)"; differ=$((differ + 1)); continue
    fi
    if diff -rq -x mergec.json "$ref" "$y" >/dev/null; then same=$((same + 1)); else
        echo "   $slug: the output differs from the command line's"; differ=$((differ + 1)); fi
done
echo "   $same configs gave the same tensors and config.json as the command line, $differ did not"
[ "$differ" = 0 ] || status=1

if [ "$CHECK" = 1 ]; then
    out="$WORK/out/check-output.mergec"
    echo
    echo "== scripts/check-output.py on a mergec output (ties, density 0.5, 3 shards)"
    "$MERGEC" merge ties --base "$CKPT/base" --model "$CKPT/model-1" --model "$CKPT/model-2" \
        --model "$CKPT/model-3" --set density=0.5 --set 'weight=[0.5,0.3,0.2]' --dtype bf16 \
        --shard-size 10KB --out "$out" --force --quiet
    "$PY" "$ROOT/scripts/check-output.py" "$out" --load-model --expect-dtype bf16 --quiet \
        2> >(grep -v '^\[transformers\]\|Loading weights' >&2) || status=1
fi
exit $status
