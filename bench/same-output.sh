#!/usr/bin/env bash
# Whether two mxc binaries give the same output for every model in the
# repository (tests/fixtures, examples, bench): stdout, stderr and exit
# status of `mxc compile MODEL`, and the bytes of `-o FILE` for each that
# compiles. A change that must leave XIR and diagnostics byte-identical
# (a refactoring, a faster parser) is checked this way before it lands.
# Prints each difference and a count; exits 1 if there is any.
# Usage: bench/same-output.sh MXC_A MXC_B
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 2 ] || { sed -n '2,8p' "$0" >&2; exit 2; }
a=$1
b=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n=0
bad=0
while IFS= read -r -d '' m; do
    n=$((n + 1))
    ra=0
    rb=0
    "$a" compile "$m" >"$tmp/a.out" 2>"$tmp/a.err" || ra=$?
    "$b" compile "$m" >"$tmp/b.out" 2>"$tmp/b.err" || rb=$?
    if [ "$ra" != "$rb" ] || ! cmp -s "$tmp/a.out" "$tmp/b.out" || ! cmp -s "$tmp/a.err" "$tmp/b.err"; then
        echo "differs: $m (exit $ra against $rb)"
        bad=$((bad + 1))
        continue
    fi
    if [ "$ra" = 0 ]; then
        "$a" compile "$m" -o "$tmp/a.json" 2>/dev/null
        "$b" compile "$m" -o "$tmp/b.json" 2>/dev/null
        cmp -s "$tmp/a.json" "$tmp/b.json" || { echo "differs in -o: $m"; bad=$((bad + 1)); }
    fi
done < <(find tests/fixtures examples bench \( -name '*.mx' -o -name '*.py' \) -print0 | sort -z)
echo "$n models, $bad differences"
[ "$bad" = 0 ]
