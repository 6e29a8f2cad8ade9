#!/usr/bin/env python3
"""Make (if missing) one of the project's Python virtualenvs and print the path of its python.

    python3 scripts/venv.py KIND          KIND: grammar | llama-server | dpo | ray | gguf

Each venv lives under ~/.cache/mergec/venvs/KIND-HASH (MERGEC_VENV_ROOT overrides the folder), keyed
by the sha256 of what it installs, so changing a pin makes a new one and an existing one is reused
across clones and CI runs. Installs come from PyPI only. A venv is used only once its import check
passes; a failed install is removed, and one cut short fails that check and is made again.

What each holds and why:
  grammar       lark and llguidance: the engines' own libraries that check the grammars
                `mergec grammar --format lark|gbnf` derives (tests/grammar_engines.rs).
  llama-server  llama-cpp-python with its OpenAI-compatible server: a real server for the `openai:`
                generator with a GBNF grammar per request. Source only on PyPI: the install compiles
                llama.cpp with CMake (several minutes on 2 cores).
  dpo           TRL + PEFT + transformers + torch for scripts/dpo_train.py. PyPI's Linux torch wheel is
                the CUDA build (its nvidia-* wheels come too: about 3 GB to download, 6 GB on disk) and
                runs on the CPU.
  ray           Ray with its dashboard (`ray[default]`): a real head for the `ray:` executor of
                `mergec develop`, which submits candidates through the Jobs REST API the dashboard
                serves (tests/develop_ray.rs starts one on loopback).
  gguf          llama.cpp's own `gguf` reader (and numpy, which it needs): checks the .gguf files
                `mergec merge --out-format gguf` writes (tests/gguf_out.rs). Small, no compiler.
"""

import hashlib
import os
import shutil
import subprocess
import sys

# llama.cpp built for this machine's CPU (GGML_NATIVE) died with a general protection fault
# in libggml-cpu on the first completion here (its AMX/AVX-512 paths); a portable AVX2 build
# does not. The flags are part of the venv's key.
ENV = {
    "llama-server": {"CMAKE_ARGS": "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON "
                                   "-DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF"},
}

KINDS = {
    "grammar": (
        ["lark==1.3.1", "llguidance==1.9.1"],
        "import lark, llguidance",
    ),
    "llama-server": (
        ["llama-cpp-python[server]==0.3.36"],
        "import llama_cpp, llama_cpp.server, uvicorn",
    ),
    "dpo": (
        ["torch==2.15.0", "transformers==5.24.0", "trl==1.16.0", "peft==0.21.2", "accelerate==1.15.0",
         "datasets", "safetensors==0.8.0", "gguf==0.19.0"],
        "import torch, transformers, trl, peft, datasets, gguf",
    ),
    "ray": (
        ["ray[default]==2.60.0"],
        "import ray, ray.dashboard, ray.job_submission",
    ),
    "gguf": (
        ["gguf==0.19.0", "numpy"],
        "import gguf, numpy",
    ),
}


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in KINDS:
        sys.exit(f"usage: {sys.argv[0]} {{{'|'.join(KINDS)}}}")
    kind = sys.argv[1]
    pins, check = KINDS[kind]
    env = ENV.get(kind, {})
    key = hashlib.sha256((sys.version.split()[0] + " " + " ".join(pins) + repr(sorted(env.items())))
                         .encode()).hexdigest()[:16]
    root = os.environ.get("MERGEC_VENV_ROOT", os.path.expanduser("~/.cache/mergec/venvs"))
    venv = os.path.join(root, f"{kind}-{key}")
    py = os.path.join(venv, "bin", "python")

    def ok(p):
        return os.path.exists(p) and subprocess.run([p, "-c", check], capture_output=True).returncode == 0

    if not ok(py):
        print(f"== installing {' '.join(pins)} into {venv}", file=sys.stderr, flush=True)
        os.makedirs(root, exist_ok=True)
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        r = subprocess.run([os.path.join(venv, "bin", "pip"), "install", "--quiet", "--no-cache-dir",
                            "--disable-pip-version-check", *pins], env={**os.environ, **env})
        if r.returncode != 0 or not ok(py):
            shutil.rmtree(venv, ignore_errors=True)
            sys.exit(f"error: could not install {' '.join(pins)} into {venv} (pip exit {r.returncode})")
    print(py)


if __name__ == "__main__":
    main()
