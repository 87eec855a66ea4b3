#!/usr/bin/env bash
# Realizer benchmark: N VMs (1 to 4 cores, average degree 4) onto H
# hypervisors of bench/facility.mx, dry run. Reports wall time of the whole
# `mxc realize` (both models compiled, realized, checked), peak memory, and
# the fraction of links that cross hosts.
# Usage: bench/realize.sh [H:N ...]   (default: 50:1000 500:10000)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
pairs=("$@")
[ ${#pairs[@]} -gt 0 ] || pairs=(50:1000 500:10000)
cargo build --release -q -p mxc
mxc=${CARGO_TARGET_DIR:-target}/release/mxc
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "| hypervisors | VMs | links | wall time (best of $RUNS) | peak memory | links crossing hosts |"
echo "|---:|---:|---:|---:|---:|---:|"
for p in "${pairs[@]}"; do
    h=${p%%:*}; n=${p##*:}
    sed "s/param('H', 50)/$h/" bench/facility.mx > "$tmp/fac.mx"
    sed "s/param('N', 1000)/$n/" bench/vms.mx > "$tmp/vms.mx"
    best=""
    for _ in $(seq "$RUNS"); do
        start=$(date +%s%N)
        "$mxc" realize "$tmp/vms.mx" --facility "$tmp/fac.mx" --dry-run --format json -o "$tmp/real.json" --timings > /dev/null 2> "$tmp/err"
        end=$(date +%s%N)
        ms=$(( (end - start) / 1000000 ))
        if [ -z "$best" ] || [ "$ms" -lt "$best" ]; then best=$ms; fi
    done
    peak=$(sed -n 's/.*peak memory \([0-9]*\) MiB.*/\1/p' "$tmp/err" | tail -1)
    links=$(grep -c '"link":' "$tmp/real.json")
    cross=$(awk '/"hosts": \[/ { if (gsub(/,/, ",") >= 1 && $0 ~ /", "/) c++ } END { print c + 0 }' "$tmp/real.json")
    echo "| $h | $n | $links | $best ms | ${peak:-?} MiB | $cross ($(awk -v c="$cross" -v l="$links" 'BEGIN { printf "%.1f%%", 100 * c / l }')) |"
done
