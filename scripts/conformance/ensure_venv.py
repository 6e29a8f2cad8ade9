#!/usr/bin/env python3
"""Make (if missing) the virtualenv with mergekit 0.1.5 that the conformance and benchmark scripts
use, and print the path of its python. Run with the system python3:

    python3 scripts/conformance/ensure_venv.py [VENV]     (default: .venv-mergekit at the repo root)

Environment: MERGEKIT_VENV (the virtualenv's path), MERGEKIT_PIP_PINS (what pip installs).

How torch is installed: PyPI's Linux torch wheel is the CUDA build, and its libtorch.so links the
CUDA libraries (DT_NEEDED), so the nvidia-* / cuda-toolkit wheels that torch depends on must be
installed too (about 3 GB of downloads, 6 GB on disk, a few minutes) even though everything here
runs on the CPU. `pip install torch --no-deps` plus the pure-Python dependencies does not work:
`import torch` stops at "ValueError: libcublasLt.so.*[0-9] not found in the system path". The
CPU-only wheels (torch==X+cpu) are only on PyTorch's own index, which this machine cannot reach.
With the CUDA wheels installed `import torch` works on a machine without a GPU
(torch.cuda.is_available() is False) and mergekit runs on the CPU, its default.
"""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The versions this was checked with (mergekit 0.1.5 asks for torch>=2.0, transformers>=5,<6).
PINS = "mergekit==0.1.5 torch==2.15.0 transformers==5.24.0 safetensors==0.8.0"
CHECK = """
import importlib.metadata as m
import torch, transformers, safetensors, yaml, mergekit  # noqa: F401
assert m.version("mergekit") == "0.1.5", m.version("mergekit")
"""


def main():
    venv = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("MERGEKIT_VENV", os.path.join(ROOT, ".venv-mergekit"))
    py = os.path.join(venv, "bin", "python")

    def ok():
        return os.path.exists(py) and subprocess.run([py, "-c", CHECK], capture_output=True).returncode == 0

    if not ok():
        pins = os.environ.get("MERGEKIT_PIP_PINS", PINS).split()
        print(f"== installing {' '.join(pins)} into {venv} (torch brings its CUDA wheels: about 3 GB to "
              "download, 6 GB on disk, a few minutes)", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([os.path.join(venv, "bin", "pip"), "install", "--quiet", "--disable-pip-version-check",
                        *pins], check=True)
        if not ok():
            r = subprocess.run([py, "-c", CHECK], capture_output=True, text=True)
            sys.exit(f"the virtualenv at {venv} does not import mergekit 0.1.5 and torch:\n{r.stderr}")
    print(py)


if __name__ == "__main__":
    main()
