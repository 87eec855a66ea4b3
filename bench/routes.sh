#!/usr/bin/env bash
# Route computation benchmark: bench/vms.mx with N nodes (average degree 4,
# point-to-point links), realized onto bench/facility.mx with H
# hypervisors, with and without `addressing == ipv4, routing == static`.
# The difference is what addressing and routes cost: an address per
# interface, a shortest-path first hop from every node to every subnet,
# merged into the fewest prefixes.
# Usage: bench/routes.sh [H:N ...]   (default: 500:10000)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
pairs=("$@")
[ ${#pairs[@]} -gt 0 ] || pairs=(500:10000)
cargo build --release -q -p mxc
mxc=${CARGO_TARGET_DIR:-target}/release/mxc
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
best() { # best MODEL FAC: the fastest `realize` time of RUNS, in ms
    local b="" ms
    for _ in $(seq "$RUNS"); do
        ms=$("$mxc" realize "$1" --facility "$2" --dry-run --format json -o "$tmp/real.json" --timings 2>&1 \
            | sed -n 's/^timings: realize \([0-9]*\) ms.*/\1/p')
        if [ -z "$b" ] || [ "$ms" -lt "$b" ]; then b=$ms; fi
    done
    echo "$b"
}
echo "| nodes | subnets | realize without routing | with addressing and routing | routes per node (min/mean/max) |"
echo "|---:|---:|---:|---:|---:|"
for p in "${pairs[@]}"; do
    h=${p%%:*}; n=${p##*:}
    sed "s/param('H', 50)/$h/" bench/facility.mx > "$tmp/fac.mx"
    sed "s/param('N', 1000)/$n/" bench/vms.mx > "$tmp/plain.mx"
    { cat "$tmp/plain.mx"; echo "topo.spec(addressing == ipv4, routing == static)"; } > "$tmp/routed.mx"
    plain=$(best "$tmp/plain.mx" "$tmp/fac.mx")
    routed=$(best "$tmp/routed.mx" "$tmp/fac.mx")
    stats=$(python3 - "$tmp/real.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
n = [len(p.get("routes", [])) for p in r["nodes"]]
print(f"{min(n)}/{sum(n) / len(n):.1f}/{max(n)} {len(r['links'])}")
PY
)
    echo "| $n | ${stats##* } | $plain ms | $routed ms | ${stats%% *} |"
done
