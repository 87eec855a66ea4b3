#!/usr/bin/env bash
# Point-to-point links across hosts: a VM's tap joined to its VTEP by an
# XDP redirect (what mx materializes) against the same link through a
# bridge per link per host (what it materialized before, and still does
# for LANs and shaped links).
#
# Two namespace hypervisors, LINKS links, each between a VM on one and a VM
# on the other; VMs are a no-op task (MX_BENCH_NOOP_VMS, benchmarks only),
# so the figures are the plumbing. The bridge variant is the same bundles
# with each `xdp_pair` tap-VTEP fragment rewritten into a `bridge`
# fragment (digests recomputed), run by the same mxc.
#
# Usage: bench/vtep.sh [LINKS...]   (default: 100 400; PROFILE=debug uses
# the debug build: the figures are the kernel's work either way)
# Prints a Markdown table row per size and path: bridges made, up and
# down wall time (median of 3).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "vtep: needs root"; exit 2; }
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100 400)
profile=${PROFILE:-release}
if [ "$profile" = release ]; then cargo build -q --release -p mxc; else cargo build -q -p mxc; fi
mxc=${CARGO_TARGET_DIR:-$PWD/target}/$profile/mxc
work=$(mktemp -d /tmp/mx-vtep.XXXXXX)
export MX_STATE_DIR=$work/run MX_DB=$work/alloc.db MX_BENCH_NOOP_VMS=1
cleanup() {
    "$mxc" down vtep >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
median() { sort -n | sed -n 2p; }

cat >"$work/fac.mx" <<'EOF'
fac = facility('vtep')
sw = fac.switch('underlay', role=leaf, vxlan=True)
for i in range(2):
    hv = fac.host(f'h{i}', roles=[hypervisor], cores=4096, memory=gb(4096), disk=gb(100000),
                  reserved_cores=0, reserved_memory=gb(1), underlay=f'192.0.2.{i + 1}', netns=True,
                  nics=[nic(x710, ports=1, capacity=gbps(100))])
    fac.cable(hv.port(0), sw.port(i))
EOF

echo "| links | path | bridges | up | down |"
echo "|---:|---|---:|---:|---:|"
for links in "${sizes[@]}"; do
    cat >"$work/exp.mx" <<EOF
net = topology('vtep')
for i in range($links):
    a = net.device(f'a{i}', cores == 1, memory == mb(64), host == 'h0')
    b = net.device(f'b{i}', cores == 1, memory == mb(64), host == 'h1')
    net.connect([a, b])
experiment(net)
EOF
    rm -rf "$work/xdp" "$work/bridge" "$MX_DB"
    "$mxc" realize "$work/exp.mx" --facility "$work/fac.mx" -o "$work/r.json" >"$work/realize.log" 2>&1 \
        || { cat "$work/realize.log"; exit 1; }
    "$mxc" materialize "$work/r.json" -o "$work/xdp" >"$work/materialize.log" 2>&1 \
        || { cat "$work/materialize.log"; exit 1; }
    python3 - "$work/xdp" "$work/bridge" <<'PY'
import hashlib, json, os, shutil, sys
src, dst = sys.argv[1], sys.argv[2]
shutil.copytree(src, dst)
for host in sorted(os.listdir(dst)):
    d = os.path.join(dst, host)
    m = json.load(open(os.path.join(d, "manifest.json")))
    for e in m["fragments"]:
        p = os.path.join(d, e["file"])
        f = json.load(open(p))
        if f["kind"] == "xdp_pair" and f["b"].startswith("v"):
            br = "b" + f["b"][1:]
            g = {k: f[k] for k in ("version", "experiment", "tag", "host", "scope")}
            g.update(id=f"bridge/{host}/{br}", kind="bridge", device=br, ports=[f["a"], f["b"]])
            os.remove(p)
            e["id"], e["file"] = g["id"], e["file"].replace("xdp_pair", "bridge")
            text = json.dumps(g, indent=2) + "\n"
            open(os.path.join(d, e["file"]), "w").write(text)
            e["sha256"] = hashlib.sha256(text.encode()).hexdigest()
    open(os.path.join(d, "manifest.json"), "w").write(json.dumps(m, indent=2) + "\n")
PY
    for path in xdp bridge; do
        bridges=$(cat "$work/$path"/*/*.json | grep -c '"kind": "bridge"' || true)
        ups=() downs=()
        for _ in 1 2 3; do
            t=$(now_ms)
            "$mxc" up "$work/$path" >"$work/up.log" 2>&1 || { cat "$work/up.log"; exit 1; }
            ups+=($(( $(now_ms) - t )))
            t=$(now_ms)
            "$mxc" down vtep >"$work/down.log" 2>&1 || { cat "$work/down.log"; exit 1; }
            downs+=($(( $(now_ms) - t )))
        done
        up=$(printf '%s\n' "${ups[@]}" | median)
        down=$(printf '%s\n' "${downs[@]}" | median)
        echo "| $links | $path | $bridges | $(awk "BEGIN{printf \"%.2f s\", $up/1000}") | $(awk "BEGIN{printf \"%.2f s\", $down/1000}") |"
    done
done
