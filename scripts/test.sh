#!/usr/bin/env bash
# The test command (README, .ci/run): fetch the real assets the end-to-end tests use
# (GSM8K, SmolLM2-135M; idempotent, skipped when present), then the whole suite in
# release mode (numeric code in debug is ~200x slower). Without network the fetch
# fails with a warning and the real-asset tests skip, saying so.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! scripts/fetch-assets.sh; then
    echo "warning: scripts/fetch-assets.sh failed; tests that need assets/ will skip" >&2
fi
exec cargo test --release "$@"
