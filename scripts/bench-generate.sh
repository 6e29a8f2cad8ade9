#!/usr/bin/env bash
# Generation throughput of the `local:` generator against Python transformers, same model, same
# prompt text, same sampling settings, same machine, in one run (BENCHMARKS.md records the output).
#
#   scripts/bench-generate.sh [MODEL.gguf]     (default: the SmolLM2 fetched by fetch-assets.sh)
#
# Environment: NEW_TOKENS (64), BATCHES (1,16), THREADS (2), REPEATS (3: the runs alternate).
# Each side generates B samples of one prompt, exactly NEW_TOKENS tokens each (no early end), at
# temperature 1, top-p 0.95. mergec runs the prompt once and shares its keys and values across the
# B sequences; transformers (num_return_sequences=B) prefills every row. Both compute in f32 (the
# GGUF's Q4_1 weights are dequantized at load by both).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
MODEL="${1:-assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}"
NEW="${NEW_TOKENS:-64}"
BATCHES="${BATCHES:-1,16}"
THREADS="${THREADS:-2}"
REPEATS="${REPEATS:-3}"
[ -f "$MODEL" ] || bash scripts/fetch-assets.sh
bash scripts/py-bench-env.sh >/dev/null
cargo build --release --quiet
PROMPT="$(mktemp)"
trap 'rm -f "$PROMPT"' EXIT
target/release/mergec generate "$MODEL" --print-prompt > "$PROMPT"
echo "# $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), threads $THREADS, $NEW new tokens, prompt: the develop loop's compact prompt"
for r in $(seq "$REPEATS"); do
  RAYON_NUM_THREADS="$THREADS" target/release/mergec generate "$MODEL" --bench --batches "$BATCHES" \
    --new-tokens "$NEW" --temperature 1.0 --top-p 0.95 --seed "$r"
  target/py-bench-venv/bin/python scripts/py_bench_generate.py --model "$MODEL" --prompt-file "$PROMPT" \
    --batch "$BATCHES" --new-tokens "$NEW" --temperature 1.0 --top-p 0.95 --threads "$THREADS" --seed "$r" 2>/dev/null
done
