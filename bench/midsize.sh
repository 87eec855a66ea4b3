#!/usr/bin/env bash
# The heuristic against the exact engine on 30 to 60 nodes (bench/vms.mx onto
# bench/facility-mid.mx: 8 identical 16-core hypervisors on one leaf, 10 for
# 60 VMs, whose 150 cores do not fit 8). The
# exact engine cannot prove an optimum on these in minutes, so this reports
# the best lower bound HiGHS proves in ILP_SECONDS (default 300) next to the
# heuristic's crossing links: the gap is at most heuristic / bound - 1.
# Usage: bench/midsize.sh [N[:H] ...]   (default: 16:3 20:4 24:4 30 40 50 60;
# H, the hypervisors, defaults to 8, and 10 past 50 VMs)
set -euo pipefail
cd "$(dirname "$0")/.."
LIMIT=${ILP_SECONDS:-300}
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(16:3 20:4 24:4 30 40 50 60)
cargo build --release -q -p mxc
mxc=${CARGO_TARGET_DIR:-target}/release/mxc
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cross() { awk '/"hosts": \[/ { if ($0 ~ /", "/) c++ } END { print c + 0 }' "$1"; }
echo "| VMs | hosts | links | heuristic: crossing links (time) | ILP after ${LIMIT} s: best found, proven lower bound | heuristic over the bound at most |"
echo "|---:|---:|---:|---:|---:|---:|"
for size in "${sizes[@]}"; do
    n=${size%%:*}
    h=8; [ "$n" -le 50 ] || h=10
    [ "$size" = "$n" ] || h=${size##*:}
    sed "s/param('H', 8)/$h/" bench/facility-mid.mx > "$tmp/fac.mx"
    start=$(date +%s%N)
    "$mxc" realize bench/vms.mx --set "N=$n" --facility "$tmp/fac.mx" --solver heuristic \
        --dry-run --format json -o "$tmp/h.json" > /dev/null
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    hx=$(cross "$tmp/h.json")
    MX_ILP_SECONDS=$LIMIT MX_ILP_LOG=1 "$mxc" realize bench/vms.mx --set "N=$n" \
        --facility "$tmp/fac.mx" --solver ilp --dry-run --format json -o "$tmp/i.json" \
        > "$tmp/log" 2>&1 || true
    # The objective adds 0.01 per VM (a constant here) to the crossing links.
    primal=$(awk '/Primal bound/ { print $3 }' "$tmp/log" | tail -1)
    dual=$(awk '/Dual bound/ { print $3 }' "$tmp/log" | tail -1)
    status=$(awk '/^  Status/ { $1 = ""; sub(/^ +/, ""); print }' "$tmp/log" | tail -1)
    lb=$(awk -v d="$dual" -v n="$n" 'BEGIN { x = d - 0.01 * n; c = int(x); if (c < x - 1e-6) c++; print c }')
    best=$(awk -v p="$primal" -v n="$n" 'BEGIN { printf "%d", p - 0.01 * n + 0.5 }')
    gap=$(awk -v h="$hx" -v b="$lb" 'BEGIN { if (b > 0) printf "%.0f%%", 100 * (h / b - 1); else print "n/a" }')
    echo "| $n | $h | $((2 * n)) | $hx ($ms ms) | $best, $lb ($status) | $gap |"
done
