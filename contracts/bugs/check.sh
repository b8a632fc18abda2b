#!/usr/bin/env bash
# Shows that the invariant suite catches every planted bug in contracts/bugs/*.patch.
#
# Each patch is applied to a temporary copy of the contracts; the invariant suite must then FAIL (the unit and
# fuzz suites run too, and their result is reported). The working tree is never touched. Exit status: 0 when
# every bug was caught, 1 when one slipped through (or a patch no longer applies).
#
# --quick (what `make test` runs): the invariant suite only, without compiling the unit and fuzz tests; the
# verdict is the same, the unit+fuzz column reads "skipped". The full run is `make bugs`.
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
trap 'rm -rf "$work"' EXIT
# The copy lives at <work>/contracts beside a link to node_modules: the layout foundry.toml (libs, remappings)
# and the solc wrapper (which finds node_modules two levels above itself) expect.
ln -s "$repo/node_modules" "$work/node_modules"
mkdir "$work/contracts"
cp -R "$contracts/src" "$contracts/test" "$contracts/tools" "$contracts/foundry.toml" "$work/contracts/"
cp -R "$contracts/src" "$work/pristine-src"
copy="$work/contracts"

skip=()
if [ "$quick" -eq 1 ]; then skip=(--skip 'test/unit/**' --skip 'test/fuzz/**'); fi

echo "bugs: building an unpatched copy (later builds only recompile what a patch touches)"
(cd "$copy" && "$forge" build --quiet "${skip[@]}")

status=0
printf '\n%-28s %-10s %-12s %s\n' "patch" "invariants" "unit+fuzz" "failing invariants"
for patch in "$here"/*.patch; do
  name=$(basename "$patch" .patch)
  rm -rf "$copy/src" && cp -R "$work/pristine-src" "$copy/src"
  if ! patch --quiet --forward -p1 -d "$copy" < "$patch" > "$work/$name.patch.log" 2>&1; then
    printf '%-28s %s\n' "$name" "DOES NOT APPLY (see below)"
    cat "$work/$name.patch.log"
    status=1
    continue
  fi
  inv="caught"
  if (cd "$copy" && "$forge" test --match-path 'test/invariant/*' "${skip[@]}" > "$work/$name.inv.log" 2>&1); then
    inv="MISSED"
    status=1
  fi
  unit="skipped"
  if [ "$quick" -eq 0 ]; then
    unit="caught"
    if (cd "$copy" && "$forge" test --no-match-path 'test/invariant/*' > "$work/$name.unit.log" 2>&1); then
      unit="passed"
    fi
  fi
  failing=$(grep -o '"invariant":"[A-Za-z_]*"' "$work/$name.inv.log" | sed 's/.*:"//; s/"$//' | sort -u | paste -sd, - || true)
  printf '%-28s %-10s %-12s %s\n' "$name" "$inv" "$unit" "${failing:--}"
  if [ "$inv" = "MISSED" ]; then
    echo "  the invariant suite passed with this bug planted:"
    sed 's/^/    /' "$work/$name.inv.log" | tail -n 20
  fi
done
echo
if [ "$status" -eq 0 ]; then
  echo "bugs: every planted bug was caught by the invariant suite"
else
  echo "bugs: a planted bug was NOT caught (or a patch no longer applies)" >&2
fi
exit "$status"
