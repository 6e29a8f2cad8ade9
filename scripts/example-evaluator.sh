#!/usr/bin/env bash
# An external evaluator for `mergec eval` (docs/eval.md):
#
#   mergec eval /models/merged --evaluator 'command:scripts/example-evaluator.sh {model}'
#
# Scores a Hugging Face model directory on GSM8K with lm-evaluation-harness and vLLM (on a GPU
# machine), then prints one JSON line, {"accuracy": ..., "stderr": ..., "metric": ...}, as the
# last line of stdout: that is where mergec reads an evaluator's score. lm_eval's own output
# goes to stderr, which mergec shows only when the evaluator fails.
#
# Optional environment:
#   LM_EVAL          the lm_eval command                        (default: lm_eval)
#   LM_EVAL_FILTER   strict-match or flexible-extract           (default: strict-match)
#   NUM_FEWSHOT      worked examples per question               (default: 5)
#   VLLM_ARGS        more vLLM model_args, e.g. tensor_parallel_size=4,max_model_len=4096
#   LM_EVAL_ARGS     more lm_eval arguments, e.g. --limit 200
# Needs bash and python3 (standard library only) besides lm_eval. Exits non-zero, saying why on
# stderr, when MODEL_DIR is not a model directory, lm_eval fails or it writes no GSM8K result.
set -euo pipefail
model="${1:?usage: example-evaluator.sh MODEL_DIR}"
if [ ! -f "$model/config.json" ]; then
    echo "example-evaluator: \`$model\` is not a Hugging Face model directory (no config.json)" >&2
    exit 2
fi
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

model_args="pretrained=$model,dtype=auto,gpu_memory_utilization=0.85${VLLM_ARGS:+,$VLLM_ARGS}"
# LM_EVAL and LM_EVAL_ARGS are word lists on purpose.
# shellcheck disable=SC2086
${LM_EVAL:-lm_eval} --model vllm --model_args "$model_args" --tasks gsm8k \
    --num_fewshot "${NUM_FEWSHOT:-5}" --batch_size auto --output_path "$out" \
    ${LM_EVAL_ARGS:-} >&2

# lm_eval writes OUTPUT_PATH/<model name, / as __>/results_<timestamp>.json holding
# {"results": {"gsm8k": {"exact_match,strict-match": 0.62, "exact_match_stderr,strict-match": ...}}}.
python3 - "$out" "${LM_EVAL_FILTER:-strict-match}" <<'PY'
import glob, json, sys

out, filt = sys.argv[1], sys.argv[2]
files = sorted(glob.glob(f"{out}/**/results_*.json", recursive=True))
if not files:
    sys.exit(f"example-evaluator: lm_eval wrote no results_*.json under {out}")
with open(files[-1], encoding="utf-8") as f:
    results = json.load(f).get("results", {})
if "gsm8k" not in results:
    sys.exit(f"example-evaluator: no gsm8k result in {files[-1]}")
key = f"exact_match,{filt}"
task = results["gsm8k"]
if key not in task:
    sys.exit(f"example-evaluator: no `{key}` in {files[-1]} (it has: {', '.join(sorted(task))})")
print(json.dumps({"accuracy": task[key], "stderr": task.get(f"exact_match_stderr,{filt}"), "metric": key}))
PY
