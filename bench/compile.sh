#!/usr/bin/env bash
# Compile benchmark: wall time and peak memory of `mxc compile` for models of
# N = 1k, 10k and 100k nodes with two links per node, constraints on every
# node and link and an address on every endpoint. Two shapes:
#   ring  bench/ring.mx, a loop that builds the topology (--set N=...), the
#         way real models are written and the way MergeTB's figures were taken;
#   flat  bench/gen-flat.awk writes one statement per node and per endpoint,
#         which stresses the parser (700,000 lines at N = 100k).
# Prints a Markdown table (best of RUNS runs) for BENCHMARKS.md.
# Usage: bench/compile.sh [N...]    (default: 1000 10000 100000)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000 10000 100000)
cargo build --release -q -p mxc
mxc=${CARGO_TARGET_DIR:-target}/release/mxc
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

measure() { # model args... -> "best_ms peak_mib"
    local best="" peak=""
    for _ in $(seq "$RUNS"); do
        local start end ms mem
        # The last run's 200 MB output is removed and written back first:
        # the kernel writing it back during the next run, or dropping its
        # pages when it is replaced, added up to 0.2 s to a run.
        rm -f "$tmp/out.json"
        sync
        start=$(date +%s%N)
        "$mxc" compile "$@" -o "$tmp/out.json" --timings 2>"$tmp/err"
        end=$(date +%s%N)
        ms=$(( (end - start) / 1000000 ))
        mem=$(sed -n 's/.*peak memory \([0-9]*\) MiB.*/\1/p' "$tmp/err")
        if [ -z "$best" ] || [ "$ms" -lt "$best" ]; then best=$ms; peak=$mem; fi
    done
    echo "$best $peak $(stat -c %s "$tmp/out.json")"
}

echo "| shape | N | nodes | links | wall time (best of $RUNS) | peak memory | XIR size |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for n in "${sizes[@]}"; do
    read -r ms mem size < <(measure bench/ring.mx --set "N=$n")
    printf '| ring (loop) | %s | %s | %s | %s ms | %s MiB | %s MB |\n' "$n" "$n" "$((2 * n))" "$ms" "$mem" "$((size / 1000000))"
done
for n in "${sizes[@]}"; do
    awk -v N="$n" -f bench/gen-flat.awk > "$tmp/flat.mx"
    read -r ms mem size < <(measure "$tmp/flat.mx")
    printf '| flat (generated source, %s lines) | %s | %s | %s | %s ms | %s MiB | %s MB |\n' "$(wc -l < "$tmp/flat.mx")" "$n" "$n" "$((2 * n))" "$ms" "$mem" "$((size / 1000000))"
done
