#!/bin/sh
# A develop `hook` for an `openai:` (or `openai-chat:`) generator served by vLLM: DPO on the
# iteration's pairs with scripts/dpo_train.py (TRL + PEFT), then the new LoRA adapter loaded
# into the running server through vLLM's dynamic LoRA endpoint (no restart), and the
# generator's requests sent to it.
#
#   export VLLM_ALLOW_RUNTIME_LORA_UPDATING=True
#   vllm serve HuggingFaceTB/SmolLM2-135M-Instruct --port 8000 \
#       --enable-lora --max-lora-rank 256 &
#   export MERGEC_DPO_MODEL=/path/to/the/same/model      # a HF directory or .gguf, to train on
#   mergec develop --config RUN.toml --generator openai:http://localhost:8000/v1 \
#       --hook 'examples/hooks/vllm-lora.sh {pairs} {iteration} {endpoint}'
#
# Arguments: the pairs file, the iteration, the generator's endpoint (`URL/v1`).
# Environment:
#   MERGEC_DPO_MODEL    the base model the server serves, as a local HF directory or .gguf
#                       (required: training runs here, on the CPU, with this machine's files)
#   MERGEC_DPO_FORMAT   what the model is trained to continue (dpo_train.py --format): `raw`
#                       (default) for `openai:` (/completions with the prompt as it is), `chat`
#                       for `openai-chat:`, `mergec` for mergec's local layout
#   MERGEC_DPO_ARGS     more dpo_train.py options, e.g. "--steps 64 --lr 5e-6" (the defaults
#                       are the paper's: rank 256, lr 1e-6, beta 0.01, one epoch)
#   MERGEC_DPO_DIR      where the adapters go (default: `lora` beside the pairs file); the
#                       iteration's adapter is DIR/iteration-N
#   MERGEC_DPO_FRESH=1  train each iteration's adapter from the base model instead of
#                       continuing the previous iteration's
#
# The adapter is loaded as `mergec-iterN` (POST URL/load_lora_adapter; the previous
# iteration's is unloaded) and the last line printed is `model: mergec-iterN`, which moves the
# generator's requests to it. The server must read the adapter's directory at the same path
# (same machine or shared disk), be started with --enable-lora and a --max-lora-rank of at
# least the rank (256 by default), and have VLLM_ALLOW_RUNTIME_LORA_UPDATING=True. Everything
# else this prints goes to stderr.
set -eu

if [ $# -ne 3 ]; then
    echo "usage: $0 PAIRS ITERATION ENDPOINT   (as a develop hook: {pairs} {iteration} {endpoint})" >&2
    exit 2
fi
pairs=$1 iteration=$2 endpoint=${3%/}
root=$(cd "$(dirname "$0")/../.." && pwd)
: "${MERGEC_DPO_MODEL:?set MERGEC_DPO_MODEL to the served model as a local HF directory or .gguf}"
format=${MERGEC_DPO_FORMAT:-raw}
dir=${MERGEC_DPO_DIR:-$(dirname "$pairs")/lora}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
out=$dir/iteration-$iteration
prev=$dir/iteration-$((iteration - 1))
name=mergec-iter$iteration

py=$(python3 "$root/scripts/venv.py" dpo)
init=
if [ "${MERGEC_DPO_FRESH:-0}" != 1 ] && [ -f "$prev/adapter_config.json" ]; then
    init="--init-adapter $prev"
fi
# dpo_train.py's (and the trainer's) output goes to stderr: the generator reads stdout's last line.
# shellcheck disable=SC2086 # MERGEC_DPO_ARGS and init are word lists
"$py" "$root/scripts/dpo_train.py" --pairs "$pairs" --model "$MERGEC_DPO_MODEL" --out "$out" \
    --format "$format" --force $init ${MERGEC_DPO_ARGS:-} 1>&2

# Load the adapter into the running server; unload the previous iteration's.
"$py" - "$endpoint" "$name" "$out" "mergec-iter$((iteration - 1))" 1>&2 <<'EOF'
import json, sys, urllib.error, urllib.request

endpoint, name, path, prev = sys.argv[1:]


def post(route, body):
    req = urllib.request.Request(f"{endpoint}/{route}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


status, text = post("load_lora_adapter", {"lora_name": name, "lora_path": path})
if status != 200:
    sys.exit(f"vllm-lora: POST {endpoint}/load_lora_adapter for {path}: HTTP {status}: {text.strip()} "
             "(is the server started with --enable-lora, --max-lora-rank >= the adapter's rank, and "
             "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True?)")
print(f"vllm-lora: {text.strip()}")
if prev != name:
    status, text = post("unload_lora_adapter", {"lora_name": prev})
    if status == 200:
        print(f"vllm-lora: {text.strip()}")
EOF
echo "model: $name"
