#!/usr/bin/env bash
# The testbed table (docs/zoo.md): builds the zoo (cached), merges each family's experts
# with every stdlib method over a small parameter grid, chooses each method's parameters
# on the dev set (never on test), scores that choice on the test set, and prints base,
# experts and merges with dev and test accuracy and 95% intervals, in points.
#
# Usage: scripts/zoo-table.sh [ZOO_DIR] [FAMILY...]     (default: zoo, families 1 2)
# Environment: MERGEC (the binary, default target/release/mergec, built if missing);
# ZOO_BUILD=0 scores an existing zoo as it is (e.g. one built with --set overrides);
# METHODS, a regex, keeps only the matching methods of the grid.
# Merges and scores are kept under ZOO_DIR/familyN/merges/, so a rerun only does what
# is missing. The family's multi-task reference (multitask/) gets a row when it is there.
set -euo pipefail
cd "$(dirname "$0")/.."
ZOO=${1:-zoo}
shift || true
FAMILIES=("$@")
[ ${#FAMILIES[@]} -eq 0 ] && FAMILIES=(1 2)
MERGEC=${MERGEC:-target/release/mergec}
[ -x "$MERGEC" ] || cargo build --release

# method|space-separated --set overrides; one line per candidate.
GRID='linear|
task_arithmetic|lambda=0.3
task_arithmetic|lambda=0.5
task_arithmetic|lambda=0.7
task_arithmetic|lambda=1.0
ties|density=0.3 lambda=0.7
ties|density=0.3 lambda=1.0
ties|density=0.7 lambda=0.7
ties|density=0.7 lambda=1.0
dare_linear|density=0.3 lambda=0.5
dare_linear|density=0.3 lambda=1.0
dare_linear|density=0.7 lambda=0.5
dare_linear|density=0.7 lambda=1.0
dare_ties|density=0.3 lambda=0.7
dare_ties|density=0.3 lambda=1.0
dare_ties|density=0.7 lambda=0.7
dare_ties|density=0.7 lambda=1.0
breadcrumbs|density=0.5 lambda=0.5
breadcrumbs|density=0.5 lambda=1.0
breadcrumbs|density=0.9 lambda=0.5
breadcrumbs|density=0.9 lambda=1.0
breadcrumbs_ties|density=0.5 lambda=0.7
breadcrumbs_ties|density=0.9 lambda=0.7
breadcrumbs_ties|density=0.9 lambda=1.0
della|density=0.3 lambda=0.7
della|density=0.7 lambda=1.0
della_linear|density=0.3 lambda=0.5
della_linear|density=0.7 lambda=1.0
sce|select_topk=0.3
sce|select_topk=1.0
model_stock|
karcher|
multislerp|
nearswap|
slerp|
nuslerp|
algorithm_a|'

t0=$(date +%s)
if [ "${ZOO_BUILD:-1}" != 0 ]; then
  for fam in "${FAMILIES[@]}"; do "$MERGEC" zoo --out "$ZOO" --family "$fam"; done
fi
GRID=$(grep -E "^(${METHODS:-.*})\|" <<< "$GRID")
echo "zoo build (or cache check): $(( $(date +%s) - t0 ))s" >&2

# Prints "acc lo hi" (points) of model $1 on data $2, cached in $3.
score() {
  if [ ! -s "$3" ]; then
    "$MERGEC" zoo --score "$1" --data "$2" | awk -F'\t' '{gsub(/[\[\],]/, "", $3); split($3, ci, " "); print $2, ci[1], ci[2], $5}' > "$3.tmp"
    mv "$3.tmp" "$3"
  fi
  cat "$3"
}

for fam in "${FAMILIES[@]}"; do
  D="$ZOO/family$fam"
  W="$D/merges"
  mkdir -p "$W"
  experts=()
  for e in "$D"/expert-*; do experts+=(--model "$e"); done
  rows=()
  # The multi-task model is a reference (the usual ceiling), never merged.
  refs=(base "$D"/expert-*)
  [ -d "$D/multitask" ] && refs+=(multitask)
  for m in "${refs[@]}"; do
    name=$(basename "$m")
    dir="$D/$name"
    read -r dacc dlo dhi _ < <(score "$dir" "$D/dev.jsonl" "$W/$name.dev")
    read -r tacc tlo thi _ < <(score "$dir" "$D/test.jsonl" "$W/$name.test")
    rows+=("$(printf '%-18s %-30s %5s [%4s,%5s]  %5s [%4s,%5s]' "$name" "" "$dacc" "$dlo" "$dhi" "$tacc" "$tlo" "$thi")")
  done
  unset best_acc best_id best_sets shown
  declare -A best_acc=() best_id=() best_sets=() shown=()
  while IFS='|' read -r method sets; do
    id="$method${sets:+-${sets// /-}}"
    out="$W/$id"
    if [ ! -f "$out/model.safetensors" ]; then
      setargs=()
      for s in $sets; do setargs+=(--set "$s"); done
      if ! "$MERGEC" merge "$method" --base "$D/base" "${experts[@]}" "${setargs[@]}" \
          --out "$out" --force --quiet 2> "$W/$id.err"; then
        echo "family$fam: $id failed: $(head -1 "$W/$id.err")" >&2
        continue
      fi
    fi
    read -r acc _ _ secs < <(score "$out" "$D/dev.jsonl" "$W/$id.dev")
    echo "family$fam dev $id: $acc (${secs})" >&2
    if [ -z "${best_acc[$method]:-}" ] || awk -v a="$acc" -v b="${best_acc[$method]}" 'BEGIN{exit !(a>b)}'; then
      best_acc[$method]=$acc
      best_id[$method]=$id
      best_sets[$method]=${sets:-defaults}
    fi
  done <<< "$GRID"
  echo
  echo "family$fam (dev $(wc -l < "$D/dev.jsonl"), test $(wc -l < "$D/test.jsonl") problems; accuracy % [95% CI])"
  printf '%-18s %-30s %-20s  %-20s\n' model "params (chosen on dev)" dev test
  for r in "${rows[@]}"; do echo "$r"; done
  while IFS='|' read -r method _; do
    [ -n "${best_id[$method]:-}" ] || continue
    [ -z "${shown[$method]:-}" ] || continue
    shown[$method]=1
    id=${best_id[$method]}
    read -r dacc dlo dhi _ < <(score "$W/$id" "$D/dev.jsonl" "$W/$id.dev")
    read -r tacc tlo thi _ < <(score "$W/$id" "$D/test.jsonl" "$W/$id.test")
    printf '%-18s %-30s %5s [%4s,%5s]  %5s [%4s,%5s]\n' "$method" "${best_sets[$method]}" "$dacc" "$dlo" "$dhi" "$tacc" "$tlo" "$thi"
  done <<< "$GRID"
done
echo "total: $(( $(date +%s) - t0 ))s" >&2
