#!/usr/bin/env python3
"""Check an adapter written by `mergec extract-lora` with PEFT itself (tests/extract_lora.rs,
with MERGEC_PEFT_TEST=1; run it with the `dpo` venv's python: scripts/venv.py dpo).

    peft_lora_check.py --base DIR --adapter DIR --model DIR

Loads the base with transformers (f32) and the adapter with `peft.PeftModel.from_pretrained`;
compares the adapter's logits (PEFT's unmerged forward) with the fine-tuned model's; then merges
(`merge_and_unload`) and compares every merged weight with base + (alpha / r) B @ A computed here
from the files (f64), and with the fine-tuned model's weight. Weights without LoRA factors must
equal the base's. The last line printed is a JSON summary.
"""

import argparse
import json
import os
import warnings

import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--adapter", required=True)
    ap.add_argument("--model", required=True, help="the fine-tuned model the adapter came from")
    args = ap.parse_args()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        base = AutoModelForCausalLM.from_pretrained(args.base, dtype=torch.float32)
        peft = PeftModel.from_pretrained(base, args.adapter)
    peft_warnings = [str(w.message) for w in caught if "peft" in str(w.filename).lower()]
    tuned = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    ids = torch.arange(3, 40).reshape(1, -1) % tuned.config.vocab_size
    with torch.no_grad():
        logits_peft = peft(input_ids=ids).logits
        logits_tuned = tuned(input_ids=ids).logits
    logits_diff = (logits_peft - logits_tuned).abs().max().item()

    merged = peft.merge_and_unload()
    got = {k: v.detach() for k, v in merged.state_dict().items()}
    base_w = load_file(os.path.join(args.base, "model.safetensors"))
    tuned_w = load_file(os.path.join(args.model, "model.safetensors"))
    ad = load_file(os.path.join(args.adapter, "adapter_model.safetensors"))
    with open(os.path.join(args.adapter, "adapter_config.json")) as f:
        cfg = json.load(f)
    scale = cfg["lora_alpha"] / cfg["r"]

    vs_formula, vs_model, modules, untouched_differ = 0.0, 0.0, 0, 0
    for name, w in sorted(base_w.items()):
        key = "base_model.model." + name.removesuffix(".weight")
        if key + ".lora_A.weight" in ad:
            a = ad[key + ".lora_A.weight"].double()
            b = ad[key + ".lora_B.weight"].double()
            want = w.double() + scale * (b @ a)
            d1 = (got[name].double() - want).abs().max().item()
            d2 = (got[name].double() - tuned_w[name].double()).abs().max().item()
            print(f"{name}: merged vs base+BA*scale {d1:.3g}, merged vs fine-tuned {d2:.3g}")
            vs_formula, vs_model, modules = max(vs_formula, d1), max(vs_model, d2), modules + 1
        elif not torch.equal(got[name], w):
            untouched_differ += 1
            print(f"{name}: no LoRA factors, but the merged weight differs from the base")
    print(json.dumps({
        "modules": modules,
        "r": cfg["r"],
        "lora_alpha": cfg["lora_alpha"],
        "max_abs_diff_merged_vs_formula": vs_formula,
        "max_abs_diff_merged_vs_model": vs_model,
        "max_abs_diff_logits_vs_model": logits_diff,
        "untouched_differ": untouched_differ,
        "peft_warnings": peft_warnings,
    }))


if __name__ == "__main__":
    main()
