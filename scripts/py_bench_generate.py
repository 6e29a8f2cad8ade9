#!/usr/bin/env python3
"""Baseline for sampled generation on the CPU: Python Hugging Face `transformers` generating from
the same GGUF model as mergec's in-process (candle) generator. A benchmark script, not a test.

    scripts/py-bench-env.sh        # once: target/py-bench-venv with torch, transformers, gguf
    target/py-bench-venv/bin/python scripts/py_bench_generate.py \\
        --model assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf --prompt-file scripts/py_bench_prompt.txt \\
        --batch 1,16 --new-tokens 64 --threads 2

What it does, per batch size B (each of --batch):
  * the model: AutoModelForCausalLM.from_pretrained(dir, gguf_file=name, dtype=float32), eval mode.
    transformers dequantizes every GGUF tensor (Q4_1 here, via the gguf package) to a dense float32
    weight at load, as mergec's loader does (candle `QTensor::dequantize` to F32); so both run dense
    f32 matmuls. The tokenizer is read from the same GGUF (transformers converts its vocab/merges).
  * the prompt: the file's text, tokenized as is (no BOS is added by this tokenizer for SmolLM2),
    or with --chat as one user message through the GGUF's chat template plus the assistant header.
  * B samples of ONE prompt: generate(input_ids [1, P], num_return_sequences=B). transformers
    expands the input to [B, P] before the prefill (no prefix sharing, no padding), so this is the
    same work as a batch of B identical prompts; it is simply the shorter call.
  * do_sample=True, temperature, top_p, top_k=0 (off: transformers' default top_k=50 would be an
    extra filter the other side may not apply), min_new_tokens = max_new_tokens = N, so EOS is
    suppressed and every sequence gets exactly N new tokens; use_cache=True (the dynamic KV cache).
  * timing: one warm-up generate of 4 tokens at that B (from the first 32 prompt tokens), then time.perf_counter() around generate()
    only, --repeats times (the best and the mean are printed; "seconds" is the best). Prefill
    separately: one model forward over the [B, P] prompt with use_cache=True (best of --repeats),
    and "decode_tokens_per_s" = B*(N-1) / (seconds - prefill_seconds) (the first new token comes
    out of the prefill).
  * torch.manual_seed(--seed) before each timed generate.

  * OMP_WAIT_POLICY=PASSIVE unless the environment sets it (recorded as "omp_wait_policy"): torch's
    OpenMP (libgomp) threads otherwise spin at each barrier, and on a 2-core machine shared with
    another busy process that made generation 2.7x (batch 1) and 1.9x (batch 16) slower with 2
    threads (measured 2026-11-27 with a rustc build beside it). Set OMP_WAIT_POLICY=ACTIVE to compare.

One JSON line per batch size on stdout; progress on stderr.
"""

import argparse
import json
import os
import statistics
import sys
import time


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="path of the .gguf file")
    ap.add_argument("--prompt-file", required=True)
    ap.add_argument("--batch", default="1,16", help="comma-separated batch sizes (samples of the one prompt)")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--top-p", type=float, default=0.95)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--chat", action="store_true",
                    help="wrap the prompt as one user message in the GGUF's chat template")
    ap.add_argument("--no-prefill", action="store_true", help="skip the separate prefill measurement")
    ap.add_argument("--show", action="store_true", help="print the first sample's text to stderr")
    args = ap.parse_args()

    # Must be set before torch loads libgomp (see the docstring).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(args.threads)
    # Quieter: transformers warns about generation flags and GGUF conversion on every call.
    transformers.logging.set_verbosity_error()

    path = os.path.abspath(args.model)
    d, name = os.path.dirname(path), os.path.basename(path)
    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32)
    model.eval()
    log(f"loaded {name} in {time.perf_counter() - t0:.1f} s: {type(model).__name__}, "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters, dtype {model.dtype}, "
        f"threads {torch.get_num_threads()}")

    text = open(args.prompt_file, encoding="utf-8").read()
    if args.chat:
        ids = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                      return_tensors="pt", return_dict=True)["input_ids"]
    else:
        ids = tok(text, return_tensors="pt")["input_ids"]
    prompt_tokens = ids.shape[1]
    log(f"prompt: {prompt_tokens} tokens ({'chat template' if args.chat else 'raw text'})")

    n = args.new_tokens
    eos = model.generation_config.eos_token_id
    pad = tok.pad_token_id if tok.pad_token_id is not None else (eos[0] if isinstance(eos, list) else eos)

    def generate(b, new, x=ids):
        return model.generate(
            x,
            attention_mask=torch.ones_like(x),
            do_sample=True,
            temperature=args.temperature,
            top_p=args.top_p,
            top_k=0,
            num_return_sequences=b,
            min_new_tokens=new,
            max_new_tokens=new,
            use_cache=True,
            pad_token_id=pad,
        )

    for b in [int(x) for x in args.batch.split(",") if x.strip()]:
        with torch.inference_mode():
            torch.manual_seed(args.seed)
            # Warm-up: 4 tokens at this batch size from the first 32 prompt tokens (kernels, thread
            # pool, allocator; the full-length shapes are warmed by the prefill measurement below,
            # and a full-prompt warm-up would cost one more prefill of B x P tokens).
            generate(b, 4, ids[:, :32])
            prefill = None
            if not args.no_prefill:
                big = ids.expand(b, -1).contiguous()
                ps = []
                for _ in range(args.repeats):
                    t = time.perf_counter()
                    model(input_ids=big, attention_mask=torch.ones_like(big), use_cache=True)
                    ps.append(time.perf_counter() - t)
                prefill = min(ps)
            times = []
            for _ in range(args.repeats):
                torch.manual_seed(args.seed)
                t = time.perf_counter()
                out = generate(b, n)
                times.append(time.perf_counter() - t)
        got = out.shape[1] - prompt_tokens
        assert out.shape[0] == b and got == n, f"generated {tuple(out.shape)}, wanted [{b}, {prompt_tokens}+{n}]"
        if args.show:
            log(f"batch {b} sample 0: {tok.decode(out[0, prompt_tokens:])!r}")
        s = min(times)
        rec = {
            "impl": "transformers",
            "batch": b,
            "new_tokens": n,
            "prompt_tokens": prompt_tokens,
            "seconds": round(s, 4),
            "tokens_per_s": round(b * n / s, 2),
            "threads": args.threads,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "repeats": args.repeats,
            "mean_seconds": round(statistics.mean(times), 4),
            "prefill_seconds": None if prefill is None else round(prefill, 4),
            "decode_tokens_per_s": None if prefill is None or s <= prefill
            else round(b * (n - 1) / (s - prefill), 2),
            "temperature": args.temperature,
            "top_p": args.top_p,
            "chat": args.chat,
            # Other processes on the machine skew CPU timings (OpenMP threads wait on busy cores).
            "loadavg_1m_after": round(os.getloadavg()[0], 2),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        }
        print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
