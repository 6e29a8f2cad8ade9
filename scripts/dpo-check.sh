#!/usr/bin/env bash
# scripts/dpo_train.py (TRL's DPOTrainer + PEFT) against mergec, on SmolLM2-135M on the CPU:
# the held-out DPO loss falls, and `mergec generate --adapter ... --logprobs` gives the trained
# adapter's log-probabilities of the held-out completions within 1e-3 of TRL's. About 7
# minutes on 2 cores (plus, the first time, the dpo venv: a 3 GB download).
#
#   scripts/dpo-check.sh [dpo_check.py options: --steps 8 --lr 1e-4 --work target/dpo-check ...]
#
# Builds mergec (release), makes the venv (scripts/venv.py dpo) and the assets if missing, and
# runs scripts/dpo_check.py, which prints the loss curve and the largest differences and
# writes target/dpo-check/summary.json. The same check is the test
# `MERGEC_DPO_TEST=1 cargo test --release --test dpo_trl -- --nocapture`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
[ -f assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf ] || scripts/fetch-assets.sh
cargo build --release --quiet
PY="$(python3 scripts/venv.py dpo)"
exec "$PY" scripts/dpo_check.py --mergec "$ROOT/target/release/mergec" "$@"
