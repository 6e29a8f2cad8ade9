#!/usr/bin/env bash
# Issue 18's findings, re-run (the binary from cargo build --release).
M=$(realpath "${M:-target/release/mergec}")
W=$(mktemp -d); cd "$W"
$M synth --arch tiny-4 --models 1 --out a4 >/dev/null 2>&1
$M synth --arch tiny-2 --models 3 --out a2 >/dev/null 2>&1
echo '$ merge ties --base a4/base --model a2/model-1 (4-layer base, 2-layer model)'; $M merge ties o --base a4/base --model a2/model-1; echo "exit $?"
echo '$ merge ties --base a2/base --model a4/model-1 (2-layer base, 4-layer model)'; $M merge ties o --base a2/base --model a4/model-1 2>&1 | head -2; echo "exit ${PIPESTATUS[0]}"
echo '$ ... --allow-crimes'; $M merge ties o --base a2/base --model a4/model-1 --allow-crimes 2>&1 | tail -2; echo "exit ${PIPESTATUS[0]}"
echo '$ merge slerp with three --model'; $M merge slerp o2 --base a2/base --model a2/model-1 --model a2/model-2 --model a2/model-3; echo "exit $?"
echo '$ content hashes of two different models in mergec.json'; $M merge ties o3 --base a2/base --model a2/model-1 --model a2/model-2 --quiet; python3 -c "import json;p=json.load(open('o3/mergec.json'));print([m['content_blake3'][:16] for m in p['inputs']['models']])"
echo '$ base config with "dtype": "bfloat16", --dtype f32'; python3 - <<'P'
import json;c=json.load(open('a2/base/config.json'));c.pop('torch_dtype',None);c['dtype']='bfloat16';json.dump(c,open('a2/base/config.json','w'))
P
$M merge ties o4 --base a2/base --model a2/model-1 --dtype f32 --quiet; python3 -c "import json;c=json.load(open('o4/config.json'));print(c.get('dtype'),c.get('torch_dtype'))"
echo '$ synth into a non-empty --out'; $M synth --out a2; echo "exit $?"
echo '$ merge CONFIG OUT (mergekit-yaml form) with mergekit flags'; cat > cfg.yml <<Y
merge_method: ties
base_model: a2/base
models:
  - {model: a2/model-1, parameters: {density: 0.5, weight: 1.0}}
  - {model: a2/model-2, parameters: {density: 0.5, weight: 1.0}}
Y
$M merge cfg.yml out5 --cuda; echo "exit $?"; $M merge cfg.yml out5 --copy-tokenizer --out-shard-size 5B --allow-crimes --lazy-unpickle; echo "exit $?"; ls out5
echo '$ a Hub id not in the cache'; HF_HUB_CACHE=$W/hub $M merge ties o6 --base mistralai/Mistral-7B-v0.1 --model a2/model-1; echo "exit $?"
rm -rf "$W"
