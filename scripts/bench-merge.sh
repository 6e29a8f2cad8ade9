#!/usr/bin/env bash
# End-to-end merge benchmark: mergec beside mergekit 0.1.5 on the same synthetic checkpoints in the
# same run, wall time and peak RSS per merge, page cache warm. A script, not a test.
#
#   scripts/bench-merge.sh [DIR] [--arch mistral-2] [--only-mergec] [--methods "task_arithmetic ties"]
#                          [--density 0.5] [--repeat 1] [--keep] [--check] [--backends "jit interp"]
#                          [--mergec PATH] [--device cpu] [--threads "1 2 all"]
#
# --threads: the thread counts the jit backend runs at (each labelled mergec-jit-tN; "all" is
# every core, mergec's default); the other backends run on all cores.
# --backends: mergec's engines to run, each labelled mergec-BACKEND (jit: the compiled kernels, the
# default; interp: the reference interpreter; cuda: the GPU, with --device cuda; auto: --device auto,
# which with a GPU races the JIT and cuda on one tensor and merges with the faster, printing what it
# measured). --mergec: a prebuilt binary (no cargo build; for GPU machines without Rust).
#
# DIR (default /tmp/mergec-bench) holds the checkpoints, DIR/ckpt-ARCH/{base,model-1..3}, written by
# `mergec synth --arch ARCH --models 3 --dtype bf16` unless already there (then reused). The default
# arch mistral-2 has Mistral-7B's shapes (hidden 4096, intermediate 14336, kv 1024, vocab 32000,
# untied lm_head) with 2 layers: 0.70 B parameters per model, 1.4 GB each in bf16, 5.6 GB for the
# four. Smaller: --arch mistral-1 (0.48 B per model), --arch tiny-2 (11 k parameters: a smoke test).
#
# Per method, the same merge through each tool:
#   task_arithmetic: weight 1.0 for each model, lambda 1 (mergekit's defaults, weight is required)
#   ties:            weight 1.0, density 0.5 (--density; mergekit's default density is 1.0, which
#                    skips the trimming and makes ties a sign election only), normalize true
#   mergec:   mergec merge METHOD --base .. --model .. x3 [--set density=D] --dtype bf16 --quiet
#             (all cores, default --max-memory 4GB)
#   mergekit: mergekit-yaml CONFIG OUT --lazy-unpickle --no-copy-tokenizer --quiet, `dtype: bfloat16`,
#             on the CPU (its default device), from the virtualenv .venv-mergekit
#             (scripts/conformance/ensure_venv.py makes it if missing; --only-mergec skips mergekit)
# Each run is measured by GNU time (`/usr/bin/time -v`: elapsed wall time and "Maximum resident
# set size"; the Debian package `time` is installed if missing and we are root), else by
# getrusage(RUSAGE_CHILDREN).ru_maxrss; scripts/conformance/memwatch.py also samples RssAnon every
# 50 ms (peak RSS includes the touched pages of the memory-mapped inputs, which are page cache) and
# times the command itself (GNU time's max RSS covers the sampler too: about 14 MB, which only
# shows on tiny runs). Before the runs every input file is read
# once with cat (timed: "first read") and again (timed: "warm read"), and re-read before each run
# so the page cache is warm. Outputs go to DIR/out-*, deleted after each run unless --keep;
# --check runs scripts/check-output.py on the mergec outputs. Before each run the page cache is
# warmed and `sync` flushes what earlier runs wrote, so no run waits on another's writeback.
# mergec remembers its inputs' content digests across merges (~/.cache/mergec/digests): after
# the first run of a method the inputs are not hashed again. MERGEC_DIGEST_CACHE=off in the
# environment makes every run hash them (the cost of merging files never merged before); the
# report's header says which.
# Floors, measured in the same run: "read inputs" (cat of every input, warm) and "copy base"
# (cat of the base into a new file: a warm read of one model plus a write of the output's
# size, the least a merge that writes its output can do beyond reading its inputs). The "x
# read" column is each wall time over the warm read of the inputs. And the machine's own
# parallel throughput, before and after the merges: N processes each hashing 256 MB of the
# cached base (sha256, no shared data) against one, N the most threads measured. On a VM whose
# vCPUs share physical cores, or a busy host, no program scales past that ratio.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR=/tmp/mergec-bench
ARCH=mistral-2
ONLY_MERGEC=0
METHODS="task_arithmetic ties"
DENSITY=0.5
REPEAT=1
KEEP=0
CHECK=0
BACKENDS="jit interp"
MERGEC_BIN=""
DEVICE=cpu
THREADS="1 2 all"
while [ $# -gt 0 ]; do
    case "$1" in
        --arch) ARCH="$2"; shift 2 ;;
        --only-mergec) ONLY_MERGEC=1; shift ;;
        --methods) METHODS="$2"; shift 2 ;;
        --density) DENSITY="$2"; shift 2 ;;
        --repeat) REPEAT="$2"; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --check) CHECK=1; shift ;;
        --backends) BACKENDS="$2"; shift 2 ;;
        --mergec) MERGEC_BIN="$2"; shift 2 ;;
        --device) DEVICE="$2"; shift 2 ;;
        --threads) THREADS="$2"; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "unknown option: $1" >&2; exit 2 ;;
        *) DIR="$1"; shift ;;
    esac
done
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

# ---------------------------------------------------------------- tools
TIME=""
if [ -x /usr/bin/time ] && /usr/bin/time -v true 2>/dev/null; then
    TIME=/usr/bin/time
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing the Debian package time (GNU time)" >&2
    (apt-get install -y -qq time >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq time >/dev/null 2>&1; }) || true
    [ -x /usr/bin/time ] && TIME=/usr/bin/time
fi
[ -n "$TIME" ] || echo "== GNU time not available: measuring with getrusage from Python" >&2

if [ -n "$MERGEC_BIN" ]; then
    MERGEC="$MERGEC_BIN"
else
    echo "== cargo build --release" >&2
    (cd "$ROOT" && cargo build --release --quiet)
    MERGEC="${CARGO_TARGET_DIR:-$ROOT/target}/release/mergec"
fi
MKYAML=""
if [ "$ONLY_MERGEC" = 0 ]; then
    PY="$(python3 "$ROOT/scripts/conformance/ensure_venv.py")"
    MKYAML="$(dirname "$PY")/mergekit-yaml"
fi

CKPT="$DIR/ckpt-$ARCH"
if [ ! -f "$CKPT/model-3/config.json" ]; then
    echo "== mergec synth --arch $ARCH --models 3 --dtype bf16 --out $CKPT" >&2
    rm -rf "$CKPT"
    mkdir -p "$DIR"
    t0=$(date +%s.%N)
    "$MERGEC" synth --arch "$ARCH" --models 3 --dtype bf16 --out "$CKPT"
    printf '   synth took %.1f s\n' "$(echo "$(date +%s.%N) - $t0" | bc)" >&2
else
    echo "== reusing $CKPT" >&2
fi
INPUTS=("$CKPT"/base/*.safetensors "$CKPT"/model-*/*.safetensors)
IN_BYTES=$(du -cb "${INPUTS[@]}" | tail -1 | cut -f1)
IN_SIZE="$(echo "$IN_BYTES / 1000000000" | bc -l | xargs printf '%.3f') GB"

# measure LABEL CMD...: runs CMD, appends "LABEL wall_s maxrss_kb anon_kb status" to $RESULTS
RESULTS="$(mktemp)"
SHAS="$(mktemp)"
LOGDIR="$DIR/logs"
mkdir -p "$LOGDIR"
MEMWATCH="$ROOT/scripts/conformance/memwatch.py"
measure() {
    local label="$1"; shift
    local log="$LOGDIR/$label.log" tfile mfile wall rss anon file status=0
    tfile="$(mktemp)"; mfile="$(mktemp)"
    if [ -n "$TIME" ]; then
        "$TIME" -v -o "$tfile" python3 "$MEMWATCH" "$mfile" "$@" >"$log" 2>&1 || status=$?
        # wall time from memwatch (the command alone, without the sampler's Python start-up)
        read -r wall _ anon file <"$mfile" || true
        rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$tfile")
    else
        python3 "$MEMWATCH" "$mfile" "$@" >"$log" 2>&1 || status=$?
        read -r wall rss anon file <"$mfile" || true
    fi
    rm -f "$tfile" "$mfile"
    echo "$label ${wall:-nan} ${rss:-0} ${anon:-0} $status" >>"$RESULTS"
    if [ "$status" != 0 ]; then
        echo "   $label FAILED (exit $status), last lines of $log:" >&2
        tail -5 "$log" >&2
    else
        printf '   %-28s %8.2f s  peak RSS %7.3f GB (anonymous %7.3f GB)\n' "$label" "$wall" \
            "$(echo "${rss:-0} / 1048576" | bc -l)" "$(echo "${anon:-0} / 1048576" | bc -l)" >&2
    fi
}

warm() { cat "${INPUTS[@]}" >/dev/null; sync; }

# The machine's parallel ceiling (see the top), best of 3 each: "xR (N processes A s, one B s)".
SCALE_N=1
for t in $THREADS; do
    case "$t" in all) t=$(nproc) ;; esac
    [ "$t" -gt "$SCALE_N" ] && SCALE_N=$t
done
hash_once() { head -c 268435456 "$(ls "$CKPT"/base/*.safetensors | head -1)" | sha256sum >/dev/null; }
seconds() { local s; s=$(date +%s.%N); "$@"; echo "$(date +%s.%N) - $s" | bc -l; }
hash_n() { for _ in $(seq "$SCALE_N"); do hash_once & done; wait; }
best3() { for _ in 1 2 3; do seconds "$@"; done | sort -g | head -1; }
scaling() {
    local one n
    hash_once
    one=$(best3 hash_once); n=$(best3 hash_n)
    printf 'x%.2f (%d processes %.2f s, one %.2f s)' "$(echo "$SCALE_N * $one / $n" | bc -l)" \
        "$SCALE_N" "$n" "$one"
}
SCALE_BEFORE=""
[ "$SCALE_N" -gt 1 ] && SCALE_BEFORE="$(scaling)"

echo "== page cache: reading the $IN_SIZE of inputs" >&2
measure first_read sh -c 'cat "$@" >/dev/null' cat "${INPUTS[@]}"
measure warm_read sh -c 'cat "$@" >/dev/null' cat "${INPUTS[@]}"
COPY="$DIR/out-copy"
rm -rf "$COPY"; mkdir -p "$COPY"; warm
measure copy_base sh -c 'cat "$@" >"$0/model.safetensors"' "$COPY" "$CKPT"/base/*.safetensors
rm -rf "$COPY"

for method in $METHODS; do
    set_args=()
    mk_density=""
    if [ "$method" = ties ]; then
        set_args=(--set "density=$DENSITY")
        mk_density=", density: $DENSITY"
    fi
    for r in $(seq 1 "$REPEAT"); do
      for backend in $BACKENDS; do
        runs="all"
        [ "$backend" = jit ] && runs="$THREADS"
        for t in $runs; do
        tag="$backend"; targs=(--backend "$backend" --device "$DEVICE")
        if [ "$backend" = jit ]; then tag="jit-t$t"; fi
        if [ "$backend" = auto ]; then targs=(--device auto); fi
        # On a device: the JSON summary carries the bytes copied each way and their GB/s.
        if [ "$backend" = cuda ] || [ "$backend" = auto ]; then targs+=(--format json); fi
        [ "$t" = all ] || targs+=(--threads "$t")
        out="$DIR/out-mergec-$tag-$method"
        rm -rf "$out"
        warm
        echo "== mergec ${targs[*]} $method (run $r)" >&2
        measure "mergec-${tag}_${method}_$r" "$MERGEC" merge "$method" --base "$CKPT/base" --model "$CKPT/model-1" \
            --model "$CKPT/model-2" --model "$CKPT/model-3" "${set_args[@]}" --dtype bf16 --out "$out" --quiet \
            "${targs[@]}"
        grep -h "^note: " "$LOGDIR/mergec-${tag}_${method}_$r.log" >&2 || true
        grep -ho '"transfers":{[^}]*}' "$LOGDIR/mergec-${tag}_${method}_$r.log" |
            sed 's/^/   host<->device copies: /' >&2 || true
        if [ "$CHECK" = 1 ] && [ "$r" = 1 ] && [ -n "${PY:-}" ]; then
            "$PY" "$ROOT/scripts/check-output.py" "$out" --quiet --expect-dtype bf16 2>/dev/null | tail -4 >&2 || true
        fi
        if compgen -G "$out/*.safetensors" >/dev/null; then
            sha="$(cat "$out"/*.safetensors | sha256sum | cut -c1-16)"
            echo "   sha256 of the output: $sha" >&2
            echo "mergec-${tag}_${method}_$r $sha" >>"$SHAS"
        fi
        [ "$KEEP" = 1 ] || rm -rf "$out"
        done
      done

        [ "$ONLY_MERGEC" = 1 ] && continue
        cfg="$DIR/mergekit-$method.yml"
        cat >"$cfg" <<EOF
merge_method: $method
base_model: $CKPT/base
models:
  - model: $CKPT/model-1
    parameters: {weight: 1.0$mk_density}
  - model: $CKPT/model-2
    parameters: {weight: 1.0$mk_density}
  - model: $CKPT/model-3
    parameters: {weight: 1.0$mk_density}
dtype: bfloat16
EOF
        out="$DIR/out-mergekit-$method"
        rm -rf "$out"
        warm
        echo "== mergekit $method (run $r)" >&2
        measure "mergekit_${method}_$r" "$MKYAML" "$cfg" "$out" --lazy-unpickle --no-copy-tokenizer --quiet
        [ "$KEEP" = 1 ] || rm -rf "$out"
    done
done

SCALE_AFTER=""
[ "$SCALE_N" -gt 1 ] && SCALE_AFTER="$(scaling)"

# ---------------------------------------------------------------- report
cpu="$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
mem="$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
params="$("$MERGEC" --version 2>/dev/null || true)"
echo
echo "Merge benchmark: $ARCH (base + 3 models, bf16), $IN_SIZE of inputs ($IN_BYTES bytes); ties density $DENSITY"
echo "machine: $(nproc) cores ($cpu), $mem RAM, $(uname -sr); $params$([ "$ONLY_MERGEC" = 0 ] && echo "; mergekit $("$PY" -c 'import importlib.metadata as m; print(m.version("mergekit"), "/ torch", m.version("torch"))')")"
echo "input digests: $([ "${MERGEC_DIGEST_CACHE:-}" = off ] || [ "${MERGEC_DIGEST_CACHE:-}" = 0 ] && echo "hashed in every run (MERGEC_DIGEST_CACHE=off)" || echo "cached across runs (~/.cache/mergec/digests)")"
[ -n "$SCALE_BEFORE" ] && echo "the machine's own parallel throughput (sha256 of 256 MB per process): before the merges $SCALE_BEFORE, after $SCALE_AFTER"
echo "page cache warm; peak RSS from $([ -n "$TIME" ] && echo "GNU time -v" || echo "getrusage(RUSAGE_CHILDREN)"), wall time and peak anon from scripts/conformance/memwatch.py"
echo
OUT_BYTES=$(du -cb "$CKPT"/base/*.safetensors | tail -1 | cut -f1)
WARM_WALL=$(awk '$1 == "warm_read" {print $2}' "$RESULTS")
printf '| %-18s | %-12s | %10s | %7s | %13s | %15s | %9s | %s\n' "merge" "tool" "wall (s)" "x read" "peak RSS (GB)" "peak anon (GB)" "GB/s moved" "note"
printf '|%s|%s|%s|%s|%s|%s|%s|%s\n' "--------------------" "--------------" "-----------:" "--------:" "--------------:" "----------------:" "----------:" "------"
while read -r label wall rss anon status; do
    case "$label" in
        first_read) m="read inputs (cat)"; tool="-"; note="first read" ;;
        warm_read) m="read inputs (cat)"; tool="-"; note="page cache warm" ;;
        copy_base) m="copy base (cat >)"; tool="-"; note="read + write of the output's size" ;;
        *) tool="${label%%_*}"; rest="${label#*_}"; m="${rest%_*}"; note="run ${rest##*_}" ;;
    esac
    [ "$status" != 0 ] && note="$note, FAILED (exit $status)"
    # bytes moved: inputs read once plus the output written once (a plain read moves only the inputs)
    case "$label" in *_read) moved=$IN_BYTES ;; copy_base) moved=$((2 * OUT_BYTES)) ;; *) moved=$((IN_BYTES + OUT_BYTES)) ;; esac
    sha="$(awk -v l="$label" '$1 == l {print $2}' "$SHAS")"
    [ -n "$sha" ] && note="$note, sha256 $sha"
    printf '| %-18s | %-12s | %10.2f | %7.2f | %13.3f | %15.3f | %9.2f | %s\n' "$m" "$tool" "$wall" \
        "$(echo "$wall / $WARM_WALL" | bc -l)" \
        "$(echo "$rss / 1048576" | bc -l)" "$(echo "$anon / 1048576" | bc -l)" \
        "$(echo "$moved / $wall / 1000000000" | bc -l)" "$note"
done <"$RESULTS"
rm -f "$RESULTS" "$SHAS"
echo
echo "(input size in 10^9 bytes; memory in GiB = 2^30 bytes. peak RSS: the kernel's high-water mark (GNU time's"
echo " 'Maximum resident set size'), which counts the touched pages of memory-mapped inputs; peak anon:"
echo " the largest RssAnon sampled every 50 ms, the memory actually allocated. Logs in $LOGDIR)"
