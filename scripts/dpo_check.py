#!/usr/bin/env python3
"""The check of scripts/dpo_train.py against mergec (issue 17): TRL's DPO lowers the held-out
loss, and mergec loads the adapter it writes and computes the same log-probabilities.

    scripts/dpo-check.sh                      (builds mergec, finds the venv, runs this)
    "$(python3 scripts/venv.py dpo)" scripts/dpo_check.py --mergec target/release/mergec

On SmolLM2-135M (assets/, scripts/fetch-assets.sh), on the CPU:
 1. Pairs, deterministic: each program of stdlib/ and examples/ of at most --max-chars
    characters (comment and blank lines dropped; 450: 8 programs, completions of at most
    ~130 tokens) is `chosen` against four corruptions of it as `rejected` (its lines in
    reverse order, the words of each line reversed, its lines rotated by one, its return
    line dropped), for one short prompt. At least 32 pairs.
 2. The prompt dpo_train.py gives TRL (--format mergec) is byte for byte
    `mergec generate MODEL --print-prompt` for that prompt.
 3. dpo_train.py trains a rank-256 adapter for --steps steps with --lr (1e-4 here, larger
    than the paper's 1e-6 default so that a few steps visibly move the loss), holding out
    20% of the pairs; the held-out DPO loss after training must be below the loss before
    (ln 2 = 0.6931 for a fresh adapter, which leaves the policy equal to the reference).
 4. `mergec generate MODEL --adapter OUT --logprobs OUT/heldout.jsonl` scores the held-out
    pairs; its summed completion log-probabilities must match TRL's (dpo_train.py's
    heldout.jsonl: TRL's collator and fused LM head, per-token float32, summed in float64)
    within --tol (1e-3), with the same token counts; and so must those of transformers +
    PEFT with the saved adapter loaded afresh (a plain forward, no TRL).

Prints the held-out loss curve and the largest differences, writes WORK/summary.json,
exits 1 when a check fails.
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import dpo_train  # noqa: E402

PROMPT = "Write a new model-merging algorithm in the mergec language."


def programs(max_chars):
    out = []
    for f in sorted(glob.glob(os.path.join(ROOT, "stdlib", "*.merge"))) + \
            sorted(glob.glob(os.path.join(ROOT, "examples", "*.merge"))):
        with open(f, encoding="utf-8") as fh:
            lines = [l.rstrip() for l in fh if l.strip() and not l.lstrip().startswith("#")]
        text = "\n".join(lines)
        if len(text) <= max_chars and len(lines) >= 3:
            out.append(text)
    return out


def corruptions(program):
    lines = program.splitlines()
    return [
        "\n".join(reversed(lines)),
        "\n".join(" ".join(reversed(l.split())) for l in lines),
        "\n".join(lines[1:] + lines[:1]),
        "\n".join(l for l in lines if not l.lstrip().startswith("return ")),
    ]


def make_pairs(path, max_chars):
    pairs = [{"prompt": PROMPT, "chosen": p, "rejected": r}
             for p in programs(max_chars) for r in corruptions(p)]
    with open(path, "w", encoding="utf-8") as fh:
        for r in pairs:
            fh.write(json.dumps(r) + "\n")
    return pairs


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"dpo_check: `{' '.join(cmd)}` failed ({r.returncode}):\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
    return r


def peft_logps(model_path, adapter, records):
    """transformers + PEFT, the adapter loaded from disk: summed completion log-probs of
    each record's chosen and rejected (mergec's token layout), float64 sums."""
    import torch
    from peft import PeftModel
    model, tok = dpo_train.load_model(model_path)
    model = PeftModel.from_pretrained(model, adapter).eval()
    out = []
    for r in records:
        text = dpo_train.mergec_prompt(tok, r["prompt"])
        row = []
        for k in ("chosen", "rejected"):
            p, c = dpo_train.mergec_ids(tok, text, dpo_train.mergec_completion(r[k]))
            ids = torch.tensor([p + c])
            with torch.no_grad():
                logits = model(input_ids=ids, use_cache=False).logits[0, len(p) - 1:-1].float()
            lp = torch.log_softmax(logits, -1).gather(1, torch.tensor(c)[:, None])[:, 0]
            row.append(lp.double().sum().item())
        out.append(row)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mergec", required=True, help="the mergec binary")
    ap.add_argument("--model", default=os.path.join(ROOT, "assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--work", default=os.path.join(ROOT, "target", "dpo-check"))
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--eval-every", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--max-chars", type=int, default=450)
    ap.add_argument("--tol", type=float, default=1e-3)
    a = ap.parse_args()
    t0 = time.time()
    if not os.path.isfile(a.model):
        sys.exit(f"dpo_check: {a.model} is missing (scripts/fetch-assets.sh)")
    os.makedirs(a.work, exist_ok=True)
    pairs_file = os.path.join(a.work, "pairs.jsonl")
    pairs = make_pairs(pairs_file, a.max_chars)
    if len(pairs) < 32:
        sys.exit(f"dpo_check: only {len(pairs)} pairs (need 32): raise --max-chars")
    print(f"dpo_check: {len(pairs)} pairs from {len(pairs) // 4} programs", flush=True)

    # 2. The prompt TRL sees is mergec's.
    prompt_file = os.path.join(a.work, "prompt.txt")
    with open(prompt_file, "w", encoding="utf-8") as fh:
        fh.write(PROMPT)
    mergec_text = run([a.mergec, "generate", a.model, "--prompt-file", prompt_file, "--print-prompt"]).stdout
    from transformers import AutoTokenizer
    src, name = os.path.split(os.path.abspath(a.model))
    tok = AutoTokenizer.from_pretrained(src, **({"gguf_file": name} if name.endswith(".gguf") else {}))
    ours = dpo_train.mergec_prompt(tok, PROMPT)
    failures = []
    if ours != mergec_text:
        failures.append(f"prompt differs:\n  mergec: {mergec_text!r}\n  dpo_train: {ours!r}")

    # 3. Train; the held-out loss falls.
    adapter = os.path.join(a.work, "adapter")
    t1 = time.time()
    cmd = [sys.executable, os.path.join(ROOT, "scripts", "dpo_train.py"), "--pairs", pairs_file,
           "--model", a.model, "--out", adapter, "--lr", str(a.lr), "--steps", str(a.steps),
           "--eval-every", str(a.eval_every), "--force"]
    print(f"dpo_check: {' '.join(cmd)}", flush=True)
    if subprocess.run(cmd).returncode != 0:
        sys.exit("dpo_check: dpo_train.py failed")
    train_s = time.time() - t1
    with open(os.path.join(adapter, "loss.json"), encoding="utf-8") as fh:
        losses = json.load(fh)
    held = [(h["step"], h["loss"]) for h in losses["heldout"]]
    print("dpo_check: held-out DPO loss by step: " + ", ".join(f"{s}: {l:.4f}" for s, l in held))
    print("dpo_check: train DPO loss by step: " +
          ", ".join(f"{h['step']}: {h['loss']:.4f}" for h in losses["train"]))
    if len(held) < 2 or not held[-1][1] < held[0][1]:
        failures.append(f"the held-out loss did not fall: {held}")

    # 4. Log-probabilities: mergec against TRL, and against transformers + PEFT afresh.
    with open(os.path.join(adapter, "heldout.jsonl"), encoding="utf-8") as fh:
        trl = [json.loads(l) for l in fh if l.strip()]
    t1 = time.time()
    out = run([a.mergec, "generate", a.model, "--adapter", adapter, "--logprobs",
               os.path.join(adapter, "heldout.jsonl")]).stdout
    mergec_s = time.time() - t1
    ours = [json.loads(l) for l in out.splitlines() if l.strip()]
    peft = peft_logps(a.model, adapter, trl)
    d_trl, d_peft, d_tok, rows = 0.0, 0.0, 0.0, []
    for t, m, p in zip(trl, ours, peft, strict=True):
        for i, k in enumerate(("chosen", "rejected")):
            if t[f"{k}_tokens"] != m[f"{k}_tokens"] or t["prompt_tokens"] != m["prompt_tokens"]:
                failures.append(f"token counts differ: TRL {t['prompt_tokens']}+{t[f'{k}_tokens']}, "
                                f"mergec {m['prompt_tokens']}+{m[f'{k}_tokens']}")
            d_trl = max(d_trl, abs(t[f"{k}_logp"] - m[k]))
            d_peft = max(d_peft, abs(p[i] - m[k]))
            d_tok = max(d_tok, abs(t[f"{k}_logp"] - m[k]) / m[f"{k}_tokens"])
            rows.append({"tokens": m[f"{k}_tokens"], "trl": t[f"{k}_logp"], "peft": p[i], "mergec": m[k]})
    print(f"dpo_check: {len(rows)} held-out completions ({min(r['tokens'] for r in rows)}-"
          f"{max(r['tokens'] for r in rows)} tokens, log-probs {min(r['mergec'] for r in rows):.1f} to "
          f"{max(r['mergec'] for r in rows):.1f}): max |mergec - TRL| = {d_trl:.2e}, "
          f"max |mergec - PEFT reloaded| = {d_peft:.2e} (tolerance {a.tol:g}); per token, "
          f"max |mergec - TRL| / tokens = {d_tok:.1e}")
    if d_trl > a.tol or d_peft > a.tol:
        failures.append(f"log-probabilities differ by more than {a.tol}: TRL {d_trl:.2e}, PEFT {d_peft:.2e}")
    summary = {"pairs": len(pairs), "steps": a.steps, "lr": a.lr, "heldout_loss": held,
               "train_loss": [(h["step"], h["loss"]) for h in losses["train"]],
               "max_abs_diff_trl": d_trl, "max_abs_diff_peft": d_peft,
               "max_abs_diff_trl_per_token": d_tok, "completions": rows,
               "train_seconds": round(train_s, 1), "mergec_logprobs_seconds": round(mergec_s, 1),
               "seconds": round(time.time() - t0, 1), "failures": failures}
    with open(os.path.join(a.work, "summary.json"), "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=1)
    print(f"dpo_check: {'FAILED' if failures else 'ok'} in {time.time() - t0:.0f}s (summary in "
          f"{os.path.join(a.work, 'summary.json')})")
    for f in failures:
        print(f"dpo_check: failed: {f}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
