#!/usr/bin/env python3
"""DPO on LoRA adapters with TRL's DPOTrainer and PEFT, on the pairs a develop run exports.

    PY="$(python3 scripts/venv.py dpo)"
    "$PY" scripts/dpo_train.py --pairs run/generator/dpo-pairs-iter1.jsonl \\
        --model assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf --out adapters/iter1

Reads JSON lines `{"prompt", "chosen", "rejected"}` (a develop run's
`generator/dpo-pairs-iterN.jsonl`, TRL's preference format; several --pairs files are
concatenated), holds out a seeded fraction of them (--heldout), and trains a LoRA adapter
on the rest against the frozen base (adapters disabled: TRL's reference for a PEFT model),
or with --init-adapter trains an earlier iteration's adapter further against a frozen copy
of it. The held-out DPO loss is measured before training and every --eval-every steps.
Writes to
--out (built in OUT.tmp, then renamed; an existing non-empty OUT needs --force):

    adapter_model.safetensors, adapter_config.json   PEFT's layout: `mergec generate --adapter
                                                     OUT` and vLLM's LoRA serving load it
    loss.json       the settings, and the train and held-out loss (and reward margin and
                    accuracy) per step
    heldout.jsonl   the held-out pairs with the trained policy's log-probabilities of chosen
                    and rejected as TRL computes them (`chosen_logp`, `rejected_logp`), and
                    the reference's (`ref_chosen_logp`, `ref_rejected_logp`)

Defaults are the paper's (Ishibashi et al. 2025, the self-developing loop): LoRA rank 256,
learning rate 1e-6, beta 0.01. lora_alpha defaults to twice the rank (512), the ratio of
mergec's own `local:` DPO (rank 8, alpha 16) and the usual LoRA choice; the paper states none.
LoRA goes on every attention and MLP projection (as mergec's `local:`), dropout 0.

--format says what the model is trained to continue (the pairs hold a develop prompt and
programs):
  mergec (default)  exactly what mergec's local generator scores and samples: the prompt in
                    the model's chat template with the assistant's reply opened by a
                    ```merge fence (`mergec generate MODEL --print-prompt` prints it), and
                    the program closed by the fence, no EOS. The texts are tokenized as
                    mergec does (prompt and completion apart); TRL's tokenization is
                    replaced for this, its collator, loss and log-probabilities are kept.
  chat              TRL's conversational format: the prompt a user message, the reply
                    "```merge\\nPROGRAM\\n```" an assistant message (an `openai-chat:`
                    generator's requests).
  raw               the texts as written, TRL's standard format (EOS appended to each
                    completion): an `openai:` generator's /completions requests.

The run is on the CPU in float32 (torch's threads: all cores). A .gguf model is dequantized
by transformers (as mergec's loader does, its q/k row permutation undone).
"""

import argparse
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time

PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
REPLY_OPEN = "```merge\n"  # mergec's src/develop/local.rs REPLY_OPEN
REPLY_CLOSE = "```"


def fail(msg):
    sys.exit(f"dpo_train: error: {msg}")


def log(msg):
    print(f"dpo_train: {msg}", file=sys.stderr, flush=True)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="DPO on LoRA adapters (TRL + PEFT, CPU) from a develop run's pairs.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--pairs", action="append", required=True, metavar="FILE",
                   help="JSON lines {prompt, chosen, rejected}; repeat to concatenate files")
    p.add_argument("--model", required=True, help="a .gguf file or a Hugging Face model directory")
    p.add_argument("--out", required=True, help="the adapter directory to write")
    p.add_argument("--format", choices=["mergec", "chat", "raw"], default="mergec")
    p.add_argument("--rank", type=int, default=256)
    p.add_argument("--alpha", type=float, default=None, help="lora_alpha (default: 2 x rank)")
    p.add_argument("--target-modules", default=",".join(PROJECTIONS),
                   help="comma-separated projections to adapt")
    p.add_argument("--lr", type=float, default=1e-6)
    p.add_argument("--beta", type=float, default=0.01)
    p.add_argument("--scheduler", default="constant",
                   help="transformers lr_scheduler_type (constant, linear, cosine, ...)")
    p.add_argument("--steps", type=int, default=0, help="optimizer steps (0: --epochs decides)")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--batch", type=int, default=1, help="pairs per device batch")
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--heldout", type=float, default=0.2, help="fraction of pairs held out")
    p.add_argument("--eval-every", type=int, default=0,
                   help="held-out loss every this many steps (0: about 4 times a run)")
    p.add_argument("--max-length", type=int, default=0,
                   help="truncate prompt+completion to this many tokens (0: never)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    p.add_argument("--init-adapter", metavar="DIR",
                   help="continue training this PEFT adapter (e.g. the previous iteration's), "
                        "against a frozen copy of it; its rank, alpha and targets are kept")
    p.add_argument("--force", action="store_true", help="replace a non-empty --out")
    a = p.parse_args(argv)
    if a.alpha is None:
        a.alpha = 2.0 * a.rank
    a.targets = [t.strip() for t in a.target_modules.split(",") if t.strip()]
    bad = [t for t in a.targets if t not in PROJECTIONS]
    if bad or not a.targets:
        fail(f"--target-modules {a.target_modules!r}: use any of {', '.join(PROJECTIONS)} "
             "(mergec loads adapters on these only)")
    if a.rank < 1:
        fail("--rank must be at least 1")
    if not 0.0 <= a.heldout < 1.0:
        fail("--heldout must be in [0, 1)")
    if not (os.path.isdir(a.model) and os.path.isfile(os.path.join(a.model, "config.json"))
            or os.path.isfile(a.model) and a.model.endswith(".gguf")):
        fail(f"--model {a.model}: expected a .gguf file or a Hugging Face model directory "
             "(with config.json)")
    if a.init_adapter and not os.path.isfile(os.path.join(a.init_adapter, "adapter_config.json")):
        fail(f"--init-adapter {a.init_adapter}: no adapter_config.json there")
    return a


def read_pairs(files):
    pairs = []
    for f in files:
        if not os.path.isfile(f):
            fail(f"{f}: no such pairs file")
        with open(f, encoding="utf-8") as fh:
            for i, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    r = json.loads(line)
                except json.JSONDecodeError as e:
                    fail(f"{f}:{i}: not JSON: {e}")
                if not all(isinstance(r.get(k), str) for k in ("prompt", "chosen", "rejected")):
                    fail(f"{f}:{i}: a pair needs string fields prompt, chosen and rejected")
                pairs.append({k: r[k] for k in ("prompt", "chosen", "rejected")})
    if not pairs:
        fail(f"no pairs in {', '.join(files)}")
    return pairs


def split(pairs, fraction, seed):
    """Seeded held-out split: round(fraction * n) pairs (at least 1 when fraction > 0 and
    n >= 2), the rest for training, both in file order."""
    n = len(pairs)
    k = min(n - 1, max(1, round(fraction * n))) if fraction > 0 and n >= 2 else 0
    order = list(range(n))
    random.Random(seed).shuffle(order)
    held = sorted(order[:k])
    train = sorted(order[k:])
    return [pairs[i] for i in train], [pairs[i] for i in held]


def load_model(path):
    """(model, tokenizer) in float32 on the CPU from a .gguf file or an HF directory."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    if path.endswith(".gguf") and os.path.isfile(path):
        src, kw = os.path.dirname(os.path.abspath(path)), {"gguf_file": os.path.basename(path)}
    else:
        src, kw = path, {}
    try:
        tok = AutoTokenizer.from_pretrained(src, **kw)
        model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32, **kw)
    except Exception as e:  # noqa: BLE001 - any loader failure is the model's
        fail(f"--model {path}: transformers could not load it: {e}")
    if kw:
        # Dequantized on load: a plain float model from here on (the trainer would treat a
        # model marked quantized as frozen weights needing special handling).
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model.config.use_cache = False
    return model, tok


def mergec_prompt(tok, prompt):
    """The text mergec's local generator puts before a program (LocalGenerator::prompt_text)."""
    if tok.chat_template:
        head = tok.apply_chat_template([{"role": "user", "content": prompt}],
                                       add_generation_prompt=True, tokenize=False)
    else:
        head = f"{prompt}\n\n"
    return head + REPLY_OPEN


def mergec_completion(program):
    """The text mergec scores for a program (LocalGenerator::completion_ids)."""
    return program.rstrip() + "\n" + REPLY_CLOSE


def mergec_ids(tok, prompt_text, completion):
    """Token ids as mergec's Tok::encode (prompt: special tokens added unless the text starts
    with BOS) and Tok::encode_plain (completion: nothing added)."""
    bos = tok.bos_token
    add = not (bos and prompt_text.startswith(bos))
    p = tok(prompt_text, add_special_tokens=add)["input_ids"]
    c = tok(completion, add_special_tokens=False)["input_ids"]
    return p, c


def formatted(pairs, fmt, tok):
    """The pairs as the trainer's dataset rows for --format."""
    rows = []
    for r in pairs:
        if fmt == "mergec":
            rows.append({"prompt": mergec_prompt(tok, r["prompt"]),
                         "chosen": mergec_completion(r["chosen"]),
                         "rejected": mergec_completion(r["rejected"])})
        elif fmt == "chat":
            reply = lambda p: [{"role": "assistant", "content": REPLY_OPEN + p.rstrip() + "\n" + REPLY_CLOSE}]  # noqa: E731
            rows.append({"prompt": [{"role": "user", "content": r["prompt"]}],
                         "chosen": reply(r["chosen"]), "rejected": reply(r["rejected"])})
        else:
            rows.append(dict(r))
    return rows


def make_trainer_class():
    from trl import DPOTrainer

    class MergecDPOTrainer(DPOTrainer):
        """TRL's DPOTrainer; with --format mergec its dataset is tokenized as mergec scores
        (prompt and completion tokenized apart, no EOS added). Everything else is TRL's."""

        mergec_format = False

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            if not self.mergec_format:
                return super()._prepare_dataset(dataset, processing_class, args, dataset_name)
            tok = getattr(processing_class, "tokenizer", processing_class)

            def tokenize(ex):
                p, c = mergec_ids(tok, ex["prompt"], ex["chosen"])
                _, r = mergec_ids(tok, ex["prompt"], ex["rejected"])
                return {"prompt_ids": p, "chosen_ids": c, "rejected_ids": r}

            return dataset.map(tokenize)

    return MergecDPOTrainer


def trl_logps(trainer, dataset):
    """Per-pair summed completion log-probabilities as TRL's loss computes them (its
    collator, the fused LM head's per-token log-probs in float32), with the adapters, summed
    in float64 (TRL's float32 sum of hundreds of tokens is off by ~1e-3); and the reference's,
    as TRL cached them (float32 sums; computed here when not cached)."""
    import torch
    model = trainer.model
    model.eval()
    out = []
    for ex in dataset:
        batch = trainer.data_collator([{k: ex[k] for k in ("prompt_ids", "chosen_ids", "rejected_ids")}])
        mask = batch["completion_mask"]
        labels = batch["input_ids"].masked_fill(mask == 0, -100)
        kw = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                  labels=labels, fused_lm_head=True, use_cache=False)
        n = mask.size(1) - 1
        with torch.no_grad():
            pol = model(**kw).log_probs[:, -n:].double().sum(1).tolist()
            if "ref_chosen_logps" in ex:
                ref = [ex["ref_chosen_logps"], ex["ref_rejected_logps"]]
            else:
                with model.disable_adapter():
                    ref = model(**kw).log_probs[:, -n:].double().sum(1).tolist()
        out.append((pol[0], pol[1], ref[0], ref[1],
                    len(ex["prompt_ids"]), len(ex["chosen_ids"]), len(ex["rejected_ids"])))
    return out


def history(log):
    """(train, heldout) records per step from the trainer's log history."""
    train, held = [], []
    for h in log:
        if "loss" in h and "eval_loss" not in h:
            train.append({"step": h["step"], "loss": h["loss"],
                          "margin": h.get("rewards/margins"), "accuracy": h.get("rewards/accuracies")})
        if "eval_loss" in h:
            held.append({"step": h["step"], "loss": h["eval_loss"],
                         "margin": h.get("eval_rewards/margins"),
                         "accuracy": h.get("eval_rewards/accuracies")})
    return train, held


def check_out(out, force):
    """Refuses to clobber: before any work."""
    if os.path.exists(out) and not os.path.isdir(out):
        fail(f"--out {out}: exists and is not a directory")
    if os.path.isdir(out) and os.listdir(out) and not force:
        fail(f"--out {out}: exists and is not empty (--force replaces it)")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        os.makedirs(parent)


def publish(tmp, out):
    """Renames the finished tmp directory to out (an old out is removed after)."""
    old = None
    if os.path.exists(out):
        old = out.rstrip("/") + ".old"
        shutil.rmtree(old, ignore_errors=True)
        os.rename(out, old)
    os.rename(tmp, out)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def main(argv=None):
    a = parse_args(argv)
    pairs = read_pairs(a.pairs)
    train_pairs, held_pairs = split(pairs, a.heldout, a.seed)
    if not train_pairs:
        fail("no pairs left to train on")
    check_out(a.out, a.force)
    import torch
    torch.set_num_threads(a.threads or os.cpu_count() or 1)
    torch.manual_seed(a.seed)
    from datasets import Dataset, disable_progress_bars
    disable_progress_bars()
    from peft import LoraConfig, get_peft_model
    from trl import DPOConfig
    t0 = time.time()
    model, tok = load_model(a.model)
    log(f"{a.model} loaded in {time.time() - t0:.1f}s; {len(train_pairs)} pairs to train on, "
        f"{len(held_pairs)} held out; format {a.format}")
    lora = LoraConfig(r=a.rank, lora_alpha=a.alpha, target_modules=a.targets, lora_dropout=0.0,
                      bias="none", task_type="CAUSAL_LM")
    if a.init_adapter:
        # TRL trains the adapter further against a frozen copy of it (its "ref" adapter).
        from peft import PeftModel
        model = PeftModel.from_pretrained(model, a.init_adapter, is_trainable=True)
        c = model.peft_config["default"]
        a.rank, a.alpha, a.targets, lora = c.r, c.lora_alpha, sorted(c.target_modules), None
        log(f"continuing {a.init_adapter} (rank {a.rank}, alpha {a.alpha})")
    per_step = a.batch * a.grad_accum
    steps = a.steps or max(1, math.ceil(a.epochs * len(train_pairs) / per_step))
    every = a.eval_every or max(1, steps // 4)
    scratch = tempfile.TemporaryDirectory(prefix="dpo_train-")  # the trainer's output_dir
    cfg = DPOConfig(
        output_dir=scratch.name, learning_rate=a.lr, beta=a.beta,
        lr_scheduler_type=a.scheduler, warmup_steps=0, max_steps=steps,
        per_device_train_batch_size=a.batch, per_device_eval_batch_size=a.batch,
        gradient_accumulation_steps=a.grad_accum, max_length=a.max_length or None,
        eval_strategy="steps" if held_pairs else "no", eval_steps=every, logging_steps=1,
        save_strategy="no", report_to="none", use_cpu=True, seed=a.seed, data_seed=a.seed,
        bf16=False, fp16=False, precompute_ref_log_probs=True, dataloader_num_workers=0,
        disable_tqdm=True)
    cls = make_trainer_class()
    cls.mergec_format = a.format == "mergec"
    train_ds = Dataset.from_list(formatted(train_pairs, a.format, tok))
    held_ds = Dataset.from_list(formatted(held_pairs, a.format, tok)) if held_pairs else None
    t1 = time.time()
    trainer = cls(model=model, args=cfg, train_dataset=train_ds, eval_dataset=held_ds,
                  processing_class=tok, peft_config=lora)
    log(f"trainer ready (reference log-probabilities cached) in {time.time() - t1:.1f}s")
    t1 = time.time()
    before = trainer.evaluate() if held_pairs else None
    if before:
        log(f"held-out loss before training {before['eval_loss']:.6f} ({time.time() - t1:.1f}s)")
    t1 = time.time()
    trainer.train()
    train_s = time.time() - t1
    train_log, held_log = history(trainer.state.log_history)
    if before:
        held_log.insert(0, {"step": 0, "loss": before["eval_loss"],
                            "margin": before.get("eval_rewards/margins"),
                            "accuracy": before.get("eval_rewards/accuracies")})
    tmp = a.out.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    trainer.model.save_pretrained(tmp, selected_adapters=["default"])
    t1 = time.time()
    if held_pairs:
        with open(os.path.join(tmp, "heldout.jsonl"), "w", encoding="utf-8") as fh:
            for r, lp in zip(held_pairs, trl_logps(trainer, trainer.eval_dataset)):
                fh.write(json.dumps({**r, "chosen_logp": lp[0], "rejected_logp": lp[1],
                                     "ref_chosen_logp": lp[2], "ref_rejected_logp": lp[3],
                                     "prompt_tokens": lp[4], "chosen_tokens": lp[5],
                                     "rejected_tokens": lp[6]}) + "\n")
        log(f"held-out log-probabilities written ({time.time() - t1:.1f}s)")
    summary = {
        "model": a.model, "pairs": a.pairs, "format": a.format, "rank": a.rank, "alpha": a.alpha,
        "target_modules": a.targets, "init_adapter": a.init_adapter, "lr": a.lr, "beta": a.beta, "scheduler": a.scheduler,
        "steps": steps, "batch": a.batch, "grad_accum": a.grad_accum, "seed": a.seed,
        "train_pairs": len(train_pairs), "heldout_pairs": len(held_pairs), "eval_every": every,
        "train_seconds": round(train_s, 1), "train": train_log, "heldout": held_log,
    }
    with open(os.path.join(tmp, "loss.json"), "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=1)
    publish(tmp, a.out)
    curve = " -> ".join(f"{h['loss']:.4f}@{h['step']}" for h in held_log)
    log(f"{steps} steps in {train_s:.0f}s; held-out loss {curve or '(none held out)'}; adapter in {a.out}")


if __name__ == "__main__":
    main()
