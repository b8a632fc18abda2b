#!/usr/bin/env bash
# Shows that the invariant suite catches every planted bug in contracts/bugs/*.patch.
#
# Each patch is applied to a temporary copy of the contracts; the invariant suite must then FAIL (the unit and
# fuzz suites run too, and their result is reported). The working tree is never touched. Exit status: 0 when
# every bug was caught, 1 when one slipped through (or a patch no longer applies).
#
# --quick (what `make test` runs): the invariant suite only, without compiling the unit and fuzz tests, without
# the optimizer, and stopping at the first failing invariant; the verdict is the same (the optimizer may not change
# what the code does, and one failing invariant is a catch), the unit+fuzz column reads "skipped" and the last
# column lists the invariants reported failed, which may include one cut short by the first failure (its runs run
# in parallel, so which one fails first can vary). The full run is `make bugs`.
#
# The patches are split over lanes (one per core, at most 4), each with its own copy and forge cache, since
# solc-js uses one core per build.
set -euo pipefail

quick=0
case "${1:-}" in
  --quick) quick=1 ;;
  "") ;;
  *) echo "usage: $0 [--quick]" >&2; exit 2 ;;
esac

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
contracts=$(cd "$here/.." && pwd)
repo=$(cd "$contracts/.." && pwd)
forge="$repo/node_modules/@foundry-rs/forge-linux-amd64/bin/forge"
[ -x "$forge" ] || { echo "bugs: forge not found at $forge; run 'make setup'" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/meshprov-bugs.XXXXXX")
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
cp -R "$contracts/src" "$work/pristine-src"

skip=()
inv_flags=()
if [ "$quick" -eq 1 ]; then
  skip=(--skip 'test/unit/**' --skip 'test/fuzz/**')
  inv_flags=(--fail-fast)
  export FOUNDRY_OPTIMIZER=false
fi

patches=("$here"/*.patch)
lanes=$(nproc 2>/dev/null || echo 1)
[ "$lanes" -gt 4 ] && lanes=4
[ "$lanes" -gt "${#patches[@]}" ] && lanes=${#patches[@]}

# One patch, in one lane's copy: writes <work>/<name>.row (the table row) and the logs beside it.
check_patch() {
  local copy=$1 patch=$2 name inv unit failing
  name=$(basename "$patch" .patch)
  rm -rf "$copy/src" && cp -R "$work/pristine-src" "$copy/src"
  if ! patch --quiet --forward -p1 -d "$copy" < "$patch" > "$work/$name.patch.log" 2>&1; then
    printf '%-28s %s\n' "$name" "DOES NOT APPLY (see below)" > "$work/$name.row"
    sed 's/^/    /' "$work/$name.patch.log" >> "$work/$name.row"
    return
  fi
  inv="caught"
  if (cd "$copy" && "$forge" test --match-path 'test/invariant/*' "${skip[@]}" "${inv_flags[@]}" \
      > "$work/$name.inv.log" 2>&1); then
    inv="MISSED"
  elif grep -q 'Compiler run failed' "$work/$name.inv.log"; then
    inv="NO BUILD"  # a patch that breaks the build catches nothing
  fi
  unit="skipped"
  if [ "$quick" -eq 0 ]; then
    unit="caught"
    if (cd "$copy" && "$forge" test --no-match-path 'test/invariant/*' > "$work/$name.unit.log" 2>&1); then
      unit="passed"
    fi
  fi
  failing=$(grep -o '"invariant":"[A-Za-z_]*"' "$work/$name.inv.log" | sed 's/.*:"//; s/"$//' | sort -u | paste -sd, - || true)
  if [ -z "$failing" ]; then
    # a failed invariant is named on its own line after its [FAIL: ...] line (a passed one on the [PASS] line)
    failing=$(grep -oE '^ ?invariant_[A-Za-z_]+\(\) \(runs' "$work/$name.inv.log" | grep -oE 'invariant_[A-Za-z_]+' | sort -u | paste -sd, - || true)
  fi
  printf '%-28s %-10s %-12s %s\n' "$name" "$inv" "$unit" "${failing:--}" > "$work/$name.row"
  if [ "$inv" = "NO BUILD" ]; then
    echo "  the patched contracts do not compile; fix the patch:" >> "$work/$name.row"
    grep -A8 'Compiler run failed' "$work/$name.inv.log" | sed 's/^/    /' >> "$work/$name.row"
  elif [ "$inv" = "MISSED" ]; then
    echo "  the invariant suite passed with this bug planted:" >> "$work/$name.row"
    sed 's/^/    /' "$work/$name.inv.log" | tail -n 20 >> "$work/$name.row"
  fi
}

# A lane: its own copy at <work>/laneN/contracts beside a link to node_modules (the layout foundry.toml's libs and
# remappings and the solc wrapper expect), then every lanes-th patch. No unpatched build first: every patch touches
# a contract the invariant suite imports, so a warm cache would save almost nothing of the next compile.
run_lane() {
  local lane=$1 dir="$work/lane$1" i
  mkdir "$dir" "$dir/contracts"
  ln -s "$repo/node_modules" "$dir/node_modules"
  cp -R "$contracts/src" "$contracts/test" "$contracts/tools" "$contracts/foundry.toml" "$dir/contracts/"
  for ((i = lane; i < ${#patches[@]}; i += lanes)); do
    check_patch "$dir/contracts" "${patches[$i]}"
  done
}

echo "bugs: ${#patches[@]} patches over $lanes lane(s), each lane with its own copy and forge cache"
pids=()
for ((l = 0; l < lanes; l++)); do
  run_lane "$l" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done

printf '\n%-28s %-10s %-12s %s\n' "patch" "invariants" "unit+fuzz" "failing invariants"
for patch in "${patches[@]}"; do
  name=$(basename "$patch" .patch)
  if [ ! -f "$work/$name.row" ]; then
    printf '%-28s %s\n' "$name" "NOT CHECKED (its lane failed)"
    status=1
    continue
  fi
  cat "$work/$name.row"
  if ! head -n 1 "$work/$name.row" | grep -q ' caught '; then status=1; fi
done
echo
if [ "$status" -eq 0 ]; then
  echo "bugs: every planted bug was caught by the invariant suite"
else
  echo "bugs: a planted bug was NOT caught (or a patch no longer applies)" >&2
fi
exit "$status"
