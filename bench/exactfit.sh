#!/usr/bin/env bash
# Exact-fit benchmark: H clusters of VMs whose cores and memory sum exactly
# to H identical hypervisors of C cores (bench/exactfit.mx onto
# bench/exactfit-facility.mx). The optimum is H crossing links (one
# cluster per host, only the ring between clusters crosses; the argument is
# in bench/exactfit.mx). Reports wall time (best of RUNS) of the whole
# `mxc realize` for each solver, and the crossing links against the optimum.
# Usage: bench/exactfit.sh [H:C ...]   (default: 5:12 5:14 5:24 20:16 300:16)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
pairs=("$@")
[ ${#pairs[@]} -gt 0 ] || pairs=(5:12 5:14 5:24 20:16 300:16)
cargo build --release -q -p mxc
mxc=${CARGO_TARGET_DIR:-target}/release/mxc
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cross() { awk '/"hosts": \[/ { if ($0 ~ /", "/) c++ } END { print c + 0 }' "$1"; }
echo "| hosts | cores each | VMs | links | optimum | auto: crossing (time) | heuristic: crossing (time) |"
echo "|---:|---:|---:|---:|---:|---:|---:|"
for p in "${pairs[@]}"; do
    h=${p%%:*}; c=${p##*:}
    sed "s/param('H', 5)/$h/; s/param('C', 24)/$c/" bench/exactfit-facility.mx > "$tmp/fac.mx"
    sed "s/param('H', 5)/$h/; s/param('C', 24)/$c/" bench/exactfit.mx > "$tmp/exp.mx"
    row=""
    for solver in auto heuristic; do
        best=""
        for _ in $(seq "$RUNS"); do
            start=$(date +%s%N)
            "$mxc" realize "$tmp/exp.mx" --facility "$tmp/fac.mx" --solver "$solver" --dry-run \
                --format json -o "$tmp/real.json" 2> "$tmp/err" || { cat "$tmp/err"; exit 1; }
            ms=$(( ($(date +%s%N) - start) / 1000000 ))
            if [ -z "$best" ] || [ "$ms" -lt "$best" ]; then best=$ms; fi
        done
        row="$row | $(cross "$tmp/real.json") ($best ms)"
    done
    vms=$(awk '/"nodes": \[/ { on = 1 } on && /"node":/ { n++ } /"links": \[/ { on = 0 } END { print n + 0 }' "$tmp/real.json")
    links=$(grep -c '"link":' "$tmp/real.json")
    echo "| $h | $c | $vms | $links | $h$row |"
done
