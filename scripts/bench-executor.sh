#!/usr/bin/env bash
# Candidates per minute through the `ray:` executor against the local one, in one run on this
# machine: the loop of `mergec develop` (the `random` generator, one iteration, PROGRAMS programs)
# on synthetic checkpoints (`mergec synth --arch ARCH --models 2`), each candidate merged for real
# and scored by a `command:` evaluator that only checks the merged directory and prints a score
# (so what is left is the executor's own cost per candidate: process start, request and result
# files, and for Ray the job's submission, scheduling and supervisor), with
#   local, jobs 1 and 2                (child processes of the driver)
#   ray, max_in_flight 1 and 2         (a real Ray head on loopback, Ray from PyPI in the project's
#                                       venv: scripts/venv.py ray; head started with --num-cpus 2;
#                                       ray_num_cpus 2 and 1: the candidate's threads, as the local
#                                       executor's share of the cores at jobs 1 and 2)
# Each run is cut after its loop (the final stage is not what is measured): the loop's seconds are
# the driver's own "(N s so far)" line, the candidates the `started` events of its record. The
# Ray overhead per candidate is (ray s - local s) / candidates at the same parallelism.
#
#   scripts/bench-executor.sh [PROGRAMS=24] [ARCH=tiny-2]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROGRAMS="${1:-24}"
ARCH="${2:-tiny-2}"
cd "$ROOT"
cargo build --release --quiet
MERGEC="$ROOT/target/release/mergec"
WORK="$(mktemp -d /tmp/mergec-bench-executor.XXXXXX)"
RAY="$(dirname "$(python3 scripts/venv.py ray)")/ray"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
GCS=$(free_port); DASH=$(free_port)
cleanup() { RAY_USAGE_STATS_ENABLED=0 "$RAY" stop --force >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT
RAY_USAGE_STATS_ENABLED=0 "$RAY" start --head --node-ip-address=127.0.0.1 --port="$GCS" \
  --dashboard-host=127.0.0.1 --dashboard-port="$DASH" --include-dashboard=true \
  --disable-usage-stats --num-cpus=2 --num-gpus=0 >/dev/null
HEAD="http://127.0.0.1:$DASH"
for _ in $(seq 100); do curl -sf "$HEAD/api/version" >/dev/null && break; sleep 0.3; done


"$MERGEC" synth --arch "$ARCH" --models 2 --out "$WORK/ckpt" >/dev/null
for i in 1 2 3; do echo "{\"question\": \"what is $i+1?\", \"answer\": \"#### $((i + 1))\"}"; done \
  > "$WORK/dev.jsonl"

one() { # NAME FLAGS...: the loop's seconds and candidates
  local name="$1"; shift
  local log="$WORK/$name.log"
  "$MERGEC" develop --generator random --iterations 1 --programs "$PROGRAMS" --learn false \
    --base "$WORK/ckpt/base" --models "$WORK/ckpt/model-1,$WORK/ckpt/model-2" --tensors '.' \
    --dev "$WORK/dev.jsonl" --test "$WORK/dev.jsonl" \
    --evaluator 'command:test -f {model}/config.json && echo 0.5' \
    --run-dir "$WORK/$name" "$@" 2>"$log" >/dev/null &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null && ! grep -q "s so far)" "$log"; do sleep 0.2; done
  kill -INT "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  local secs n
  secs=$(grep -o '([0-9.]* s so far)' "$log" | grep -o '[0-9.]*' | head -1)
  n=$(grep -c '"event":"started"' "$WORK/$name/programs.jsonl" || true)
  scored=$(grep -c '"outcome":"scored"' "$WORK/$name/programs.jsonl" || true)
  if [ -z "$secs" ]; then echo "$name: the loop did not finish; its log:"; tail -5 "$log"; return 1; fi
  awk -v name="$name" -v s="$secs" -v n="$n" -v k="$scored" \
    'BEGIN { printf "%-18s %3d candidates (%d scored) in %6.1f s: %7.1f per minute, %5.2f s each\n", name, n, k, s, 60*n/s, s/n }'
}

echo "machine: $(nproc) cores; $PROGRAMS programs on $ARCH checkpoints; Ray head $HEAD"
one local-jobs-1 --jobs 1
one ray-in-flight-1 --executor "ray:$HEAD" --max-in-flight 1 --ray-num-cpus 2
one local-jobs-2 --jobs 2
one ray-in-flight-2 --executor "ray:$HEAD" --max-in-flight 2
