#!/usr/bin/env bash
# Wall time of two or more mxc binaries on the 100,000-node models,
# alternated run by run, so a phase of the VM (these VMs drift by 25-40%
# within an hour) weighs on every binary alike. The output of each run is
# removed and written back first (`sync`), as in bench/compile.sh.
# Prints each binary's times, sorted, and their median, per shape.
# Usage: bench/alternate.sh RUNS MXC_A MXC_B [MXC...]
#        e.g. bench/alternate.sh 10 /tmp/mxc-before target/release/mxc
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 3 ] || { sed -n '2,9p' "$0" >&2; exit 2; }
runs=$1
shift
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
awk -v N=100000 -f bench/gen-flat.awk > "$tmp/flat.mx"

declare -A times
for _ in $(seq "$runs"); do
    for i in $(seq $#); do
        mxc=${!i}
        for shape in ring flat; do
            if [ "$shape" = ring ]; then model=(bench/ring.mx --set N=100000)
            else model=("$tmp/flat.mx"); fi
            rm -f "$tmp/out.json"
            sync
            start=$(date +%s%N)
            "$mxc" compile "${model[@]}" -o "$tmp/out.json" 2>/dev/null
            end=$(date +%s%N)
            times[$i.$shape]+="$(( (end - start) / 1000000 )) "
        done
    done
done
for shape in ring flat; do
    for i in $(seq $#); do
        sorted=$(echo "${times[$i.$shape]}" | tr ' ' '\n' | grep . | sort -n)
        n=$(echo "$sorted" | wc -l)
        a=$(echo "$sorted" | sed -n "$(( (n + 1) / 2 ))p")
        b=$(echo "$sorted" | sed -n "$(( n / 2 + 1 ))p")
        printf '%s %s: %s ms (median %s ms)\n' "$shape" "${!i}" "$(echo $sorted | sed 's/ /, /g')" "$(( (a + b) / 2 ))"
    done
done
