#!/usr/bin/env bash
# Valid-program rates without guidance, with ours (draw, check, redraw: --guided --no-grammar-mask)
# and with llguidance's token mask (--guided, the default), for the built-in `tiny`
# generator and a local model (default: the SmolLM2 fetched by fetch-assets.sh).
#
#   scripts/valid-rates.sh [N] [MODEL]        (N programs per row, default 64)
#
# Environment: SMOL_TEMPS (temperatures for the local model, default "0.6 1.0"), SEEDS (the local
# model's sampling seeds, one set of rows each, default "0"), TINY_TEMP (1.0).
# One JSON line per row: parse_valid (parses), check_valid (parses and checks), runnable (also
# instantiates for a 3-model merge), seconds, tokens and tokens/s; guided rows of the local model
# are preceded by the guide's counts (refused draws, lines cut and redone, programs closed early).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
N="${1:-64}"
MODEL="${2:-assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}"
[ -e "$MODEL" ] || bash scripts/fetch-assets.sh
cargo build --release --quiet
for g in "" "--guided --no-grammar-mask" --guided; do
  target/release/mergec generate tiny -n "$N" --temperature "${TINY_TEMP:-1.0}" $g --summary 2>/dev/null
done
for s in ${SEEDS:-0}; do
  for t in ${SMOL_TEMPS:-0.6 1.0}; do
    for g in "" "--guided --no-grammar-mask" --guided; do
      target/release/mergec generate "$MODEL" -n "$N" --batch 16 --temperature "$t" --seed "$s" $g \
        --summary 2> >(grep '^guided:' >&2)
    done
  done
done
