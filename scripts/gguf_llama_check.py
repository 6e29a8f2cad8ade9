#!/usr/bin/env python3
"""Loads each .gguf file with llama.cpp (llama-cpp-python) and decodes greedily from one prompt;
prints one line per file and, last, a JSON object {"texts": [...]} in the files' order
(tests/gguf_out.rs compares them).

    python scripts/gguf_llama_check.py FILE.gguf...     (the `llama-server` venv)
"""

import json
import sys
import time

from llama_cpp import Llama

PROMPT = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"


def main():
    texts = []
    for path in sys.argv[1:]:
        t0 = time.time()
        llm = Llama(model_path=path, n_ctx=256, seed=0, verbose=False)
        out = llm.create_completion(PROMPT, max_tokens=24, temperature=0.0, top_k=1)
        text = out["choices"][0]["text"]
        texts.append(text)
        meta = llm.metadata
        print(f"llama.cpp {path}: {meta.get('general.file_type')=} {len(text)} chars in "
              f"{time.time() - t0:.1f} s: {text!r}", flush=True)
        del llm
    print(json.dumps({"texts": texts}))


if __name__ == "__main__":
    main()
