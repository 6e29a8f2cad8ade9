#!/usr/bin/env python3
"""Check a merged checkpoint directory the way a user's Python tools would read it.

    check-output.py DIR [--load-model] [--expect-dtype bf16|f16|f32]

* safetensors: opens every shard with `safe_open` (the shards named by model.safetensors.index.json,
  or the single model.safetensors), reads every tensor, prints its dtype and shape, and checks that
  the index names exactly the tensors the shards hold (none missing, none in two shards), that
  every value is finite, and that the dtypes are the expected one.
* transformers: `AutoConfig.from_pretrained(DIR)` and, for llama/mistral-family configs, that the
  tensor names and shapes are the ones the config implies (embeddings, 9 tensors per layer, final
  norm, lm_head unless tie_word_embeddings).
* --load-model: also `AutoModelForCausalLM.from_pretrained(DIR)` (no missing or unexpected
  weights) and a forward pass on a few tokens (finite logits). Meant for small checkpoints.

Needs torch, safetensors and transformers: run it with the conformance virtualenv,
.venv-mergekit/bin/python scripts/check-output.py DIR (scripts/conformance-mergekit.sh makes it).
Exit status 0 when every check passes, 1 otherwise.
"""

import argparse
import json
import os
import sys

TORCH_NAMES = {"BF16": "bf16", "F16": "f16", "F32": "f32"}


def expected_tensors(cfg):
    """Names and shapes a llama/mistral-family config implies, or None for other model types."""
    if getattr(cfg, "model_type", None) not in ("mistral", "llama", "qwen2"):
        return None
    h, i, v = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    heads = cfg.num_attention_heads
    kv = getattr(cfg, "num_key_value_heads", heads) or heads
    hd = getattr(cfg, "head_dim", None) or h // heads
    out = {"model.embed_tokens.weight": [v, h], "model.norm.weight": [h]}
    for layer in range(cfg.num_hidden_layers):
        p = f"model.layers.{layer}."
        out.update({
            p + "input_layernorm.weight": [h],
            p + "post_attention_layernorm.weight": [h],
            p + "mlp.down_proj.weight": [h, i],
            p + "mlp.gate_proj.weight": [i, h],
            p + "mlp.up_proj.weight": [i, h],
            p + "self_attn.q_proj.weight": [heads * hd, h],
            p + "self_attn.k_proj.weight": [kv * hd, h],
            p + "self_attn.v_proj.weight": [kv * hd, h],
            p + "self_attn.o_proj.weight": [h, heads * hd],
        })
    if not getattr(cfg, "tie_word_embeddings", False):
        out["lm_head.weight"] = [v, h]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--load-model", action="store_true")
    ap.add_argument("--expect-dtype", choices=["bf16", "f16", "f32"])
    ap.add_argument("--quiet", action="store_true", help="do not list every tensor")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import safetensors
    import torch
    import transformers
    from safetensors import safe_open

    problems = []
    d = args.dir
    print(f"checking {d}  (safetensors {safetensors.__version__}, transformers {transformers.__version__}, "
          f"torch {torch.__version__})")

    index_path = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(index_path):
        with open(index_path) as f:
            index = json.load(f)
        weight_map = index["weight_map"]
        shards = sorted(set(weight_map.values()))
        print(f"index: {len(weight_map)} tensors in {len(shards)} shards, "
              f"total_size {index.get('metadata', {}).get('total_size')}")
    elif os.path.exists(os.path.join(d, "model.safetensors")):
        weight_map, shards = None, ["model.safetensors"]
    else:
        print("FAIL: neither model.safetensors nor model.safetensors.index.json")
        return 1

    seen = {}
    n_params = 0
    n_bytes = 0
    dtypes = {}
    for shard in shards:
        path = os.path.join(d, shard)
        with safe_open(path, framework="pt") as f:
            for name in f.keys():
                sl = f.get_slice(name)
                dtype, shape = sl.get_dtype(), list(sl.get_shape())
                t = f.get_tensor(name)
                if name in seen:
                    problems.append(f"{name} is in both {seen[name][0]} and {shard}")
                seen[name] = (shard, dtype, shape)
                n = t.numel()
                n_params += n
                n_bytes += n * t.element_size()
                dtypes[dtype] = dtypes.get(dtype, 0) + 1
                finite = bool(torch.isfinite(t).all()) if t.is_floating_point() else True
                if not finite:
                    problems.append(f"{name} has NaN or Inf")
                if list(t.shape) != shape:
                    problems.append(f"{name}: get_tensor shape {list(t.shape)} != header {shape}")
                if args.expect_dtype and TORCH_NAMES.get(dtype) != args.expect_dtype:
                    problems.append(f"{name} is {dtype}, expected {args.expect_dtype}")
                if not args.quiet:
                    print(f"  {name:52} {dtype:5} {str(shape):16} {shard}")
    print(f"safetensors: {len(seen)} tensors, {n_params:,} parameters, {n_bytes / 1e6:.1f} MB, "
          f"dtypes {dtypes}, all finite: {not any('NaN' in p for p in problems)}")
    if weight_map is not None:
        for name, shard in weight_map.items():
            if name not in seen:
                problems.append(f"index names {name} in {shard}, which does not hold it")
            elif seen[name][0] != shard:
                problems.append(f"index puts {name} in {shard}, found in {seen[name][0]}")
        for name in seen:
            if name not in weight_map:
                problems.append(f"{name} is in {seen[name][0]} but not in the index")

    cfg = transformers.AutoConfig.from_pretrained(d)
    cfg_dtype = getattr(cfg, "dtype", None) or getattr(cfg, "torch_dtype", None)
    print(f"AutoConfig: {type(cfg).__name__} model_type={cfg.model_type} "
          f"architectures={getattr(cfg, 'architectures', None)} dtype={cfg_dtype} "
          f"hidden={getattr(cfg, 'hidden_size', '?')} layers={getattr(cfg, 'num_hidden_layers', '?')} "
          f"vocab={getattr(cfg, 'vocab_size', '?')} tie_word_embeddings={getattr(cfg, 'tie_word_embeddings', '?')}")
    exp = expected_tensors(cfg)
    if exp is not None:
        missing = sorted(set(exp) - set(seen))
        extra = sorted(set(seen) - set(exp))
        wrong = [f"{n}: {seen[n][2]} != {exp[n]}" for n in exp if n in seen and seen[n][2] != exp[n]]
        for m in missing:
            problems.append(f"config implies {m}, not in the checkpoint")
        for m in extra:
            problems.append(f"{m} is not implied by the config")
        problems += [f"shape {w}" for w in wrong]
        print(f"config vs tensors: {len(exp)} expected, {len(missing)} missing, {len(extra)} unexpected, "
              f"{len(wrong)} wrong shapes")

    if os.path.exists(os.path.join(d, "mergec.json")):
        with open(os.path.join(d, "mergec.json")) as f:
            meta = json.load(f)
        print(f"mergec.json: merge={meta.get('merge')} version={meta.get('mergec_version')} "
              f"seed={meta.get('seed')} parameters={meta.get('parameters')}")

    if args.load_model:
        model, info = transformers.AutoModelForCausalLM.from_pretrained(d, output_loading_info=True)
        bad = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
        if bad:
            problems.append(f"AutoModelForCausalLM loading info: {bad}")
        ids = torch.tensor([[1, 5, 7, 3, 2]]) % cfg.vocab_size
        with torch.no_grad():
            logits = model(ids).logits
        if not torch.isfinite(logits).all():
            problems.append("forward pass gave non-finite logits")
        print(f"AutoModelForCausalLM: {type(model).__name__}, {sum(p.numel() for p in model.parameters()):,} "
              f"parameters, dtype {next(model.parameters()).dtype}, loading problems: {bad or 'none'}; "
              f"forward on 5 tokens -> logits {tuple(logits.shape)}, finite: {bool(torch.isfinite(logits).all())}")

    if problems:
        print(f"FAIL: {len(problems)} problem(s)")
        for p in problems[:50]:
            print("  " + p)
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
