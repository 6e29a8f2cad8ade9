#!/usr/bin/env python3
"""Reads a .gguf file with llama.cpp's own `gguf` package (GGUFReader) and prints, as one JSON
object, what tests/gguf_out.rs checks: the version, scalar and string metadata, the length and
first items of array metadata, and every tensor's name, shape (in ggml's order: row length first)
and type.

    python scripts/gguf_dump.py FILE.gguf       (the `gguf` venv: scripts/venv.py gguf)
"""

import json
import sys

import gguf


def main():
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} FILE.gguf")
    r = gguf.GGUFReader(sys.argv[1])
    scalars, arrays = {}, {}
    for name, field in r.fields.items():
        if name.startswith("GGUF."):
            continue
        value = field.contents()
        if isinstance(value, list):
            arrays[name] = {"len": len(value), "head": value[:8]}
        else:
            scalars[name] = value
    tensors = [
        {"name": t.name, "shape": [int(d) for d in t.shape], "type": t.tensor_type.name}
        for t in r.tensors
    ]
    version = r.fields["GGUF.version"].contents()
    json.dump({"version": version, "scalars": scalars, "arrays": arrays, "tensors": tensors},
              sys.stdout)
    print()


if __name__ == "__main__":
    main()
