#!/usr/bin/env bash
# Time from `mxc up` to every guest ready, for N VMs (default 2 8 16) on the
# one-machine facility under TCG, and where the time goes. Needs root.
#   bench/vms.sh [N...]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p mxc
mxc=${CARGO_TARGET_DIR:-target}/release/mxc
tmp=$(mktemp -d)
export MX_STATE_DIR=$tmp/run MX_DB=$tmp/alloc.db
trap 'rm -rf "$tmp"' EXIT
$mxc image --build
for n in "${@:-2 8 16}"; do
  for n in $n; do
    model=$tmp/vms$n.mx
    {
      echo "net = topology('vms$n')"
      echo "vms = [net.device(f'v{i}', cores == 1, memory == mb(128), host == f'ns{i % 2}') for i in range($n)]"
      echo "for i in range($n - 1):"
      echo "    l = net.connect([vms[i], vms[i + 1]])"
      echo "    l[vms[i]].socket.addrs = ip4(f'10.1.{i}.1/24')"
      echo "    l[vms[i + 1]].socket.addrs = ip4(f'10.1.{i}.2/24')"
    } > "$model"
    start=$(date +%s.%N)
    $mxc up "$model" --facility bench/facility-local-big.mx 2> "$tmp/up.log" || { cat "$tmp/up.log"; exit 1; }
    end=$(date +%s.%N)
    $mxc status "vms$n" --json > "$tmp/status.json"
    python3 - "$n" "$start" "$end" "$tmp/status.json" <<'PY'
import json, sys
n, start, end, path = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
s = json.load(open(path))
tasks = s["state"]["tasks"]
vm = [t["ms"] for t in tasks if t["id"].startswith("vm/")]
net = sum(t["ms"] for t in tasks if not t["id"].startswith("vm/"))
boots = []
for g in s["guests"].values():
    for l in g["console"]:
        if l.startswith("MX-BOOT"):
            boots.append(float(l.split()[2]))
print(f"{n:>3} VMs: up {end - start:5.1f} s; VM tasks (start paused, cgroup, cont, wait for MX-READY) "
      f"{min(vm)/1000:.1f}-{max(vm)/1000:.1f} s; network tasks {net} ms in all; "
      f"guest kernel uptime at MX-BOOT {min(boots):.1f}-{max(boots):.1f} s")
PY
    start=$(date +%s.%N)
    $mxc down "vms$n" 2> "$tmp/down.log" || { cat "$tmp/down.log"; exit 1; }
    end=$(date +%s.%N)
    python3 -c "print(f'         down {float($end) - float($start):.2f} s')"
  done
done
