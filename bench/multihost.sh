#!/usr/bin/env bash
# Multi-host on one machine (root): etcd on a private loopback port, one
# `mxc agent` per namespace hypervisor (four), and an experiment of eight
# VMs spread over them (bench/multihost/) with colocated (XDP), crossing
# (VXLAN) and LAN (bridges joined by VXLAN) links, brought up with
# `mxc up --store`. The allocation table is on the same etcd. The store
# serves TLS and requires client certificates (`mxc store certs`), with
# etcd's roles on (`mxc store roles`): each agent connects as itself and
# may touch only its host's keys; the coordinator publishes.
#
# Checks, in order, and exits non-zero at the first that fails:
#   1. every guest reaches every neighbour (their console reports);
#   2. an agent killed with -9 mid-`up` and started again converges: `up`
#      completes, the killed host resumes its part;
#   3. etcd restarted once: the agents follow it again;
#   4. `down` with one agent stopped marks its host dirty and keeps the
#      allocation; the agent, back, cleans its host; a second `down`
#      gives the allocation back;
#   5. nothing is left: namespaces, QEMU processes, XDP pins, state.
# The last line holds the figures.
#
# The leaf is a switch agent's: it runs the switch fragments (a VLAN per
# VF link, mapped to a VNI for the VF-to-tap link) in its emulation, and
# the VMs with VFs wait for them through the store.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "multihost: needs root (namespaces, QEMU)"; exit 2; }
command -v etcd >/dev/null || { echo "multihost: needs etcd (apt-get install etcd-server)"; exit 2; }
cargo build -q -p mxc
mxc=${CARGO_TARGET_DIR:-$PWD/target}/debug/mxc
exp=bench/multihost/experiment.mx
fac=bench/multihost/facility.mx
hosts=(hv0 hv1 hv2 hv3)
# The leaf switch, emulated in a namespace, has an agent of its own.
switch=leaf
every=("${hosts[@]}" "$switch")
work=$(mktemp -d /tmp/mx-multihost.XXXXXX)
port=$((20000 + RANDOM % 20000))
url="etcds://127.0.0.1:$port"
certs=$work/certs
export MX_DB=$url
# The coordinator's identity, for every mxc call but the agents'.
export MX_STORE_CERT=$certs/mx-coordinator.pem MX_STORE_KEY=$certs/mx-coordinator.key MX_STORE_CA=$certs/ca.pem

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
fail() { echo "multihost: FAIL: $*"; for f in "$work"/*.log; do echo "--- $f"; tail -20 "$f"; done; exit 1; }

start_etcd() {
    etcd --data-dir "$work/etcd" --name mx-multihost \
        --client-cert-auth --trusted-ca-file "$certs/ca.pem" \
        --cert-file "$certs/server.pem" --key-file "$certs/server.key" \
        --listen-client-urls "https://127.0.0.1:$port" --advertise-client-urls "https://127.0.0.1:$port" \
        --listen-peer-urls "http://127.0.0.1:$((port + 1))" \
        --initial-advertise-peer-urls "http://127.0.0.1:$((port + 1))" \
        --initial-cluster "mx-multihost=http://127.0.0.1:$((port + 1))" \
        >>"$work/etcd.log" 2>&1 &
    echo $! >"$work/etcd.pid"
    for _ in $(seq 100); do
        MX_STORE_CERT=$certs/root.pem MX_STORE_KEY=$certs/root.key \
            "$mxc" status --store "$url" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    fail "etcd did not start: $("$mxc" status --store "$url" 2>&1)"
}

start_agent() { # host
    MX_STORE_CERT=$certs/agent-$1.pem MX_STORE_KEY=$certs/agent-$1.key \
        setsid "$mxc" agent --store "$url" --host "$1" --state-dir "$work/$1/run" >>"$work/agent-$1.log" 2>&1 &
    echo $! >"$work/agent-$1.pid"
}

stop_agent() { # host signal
    local pid
    pid=$(cat "$work/agent-$1.pid")
    kill "-$2" "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.05; done
}

cleanup() {
    for h in "${every[@]}"; do
        [ -f "$work/agent-$h.pid" ] && stop_agent "$h" TERM
        # Whatever an interrupted run left: the runtime takes it down.
        if [ -d "$work/$h/run/multi" ]; then MX_STATE_DIR="$work/$h/run" "$mxc" down multi >/dev/null 2>&1 || true; fi
    done
    [ -f "$work/etcd.pid" ] && kill "$(cat "$work/etcd.pid")" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# Every guest of every host has reported its pings, all ok.
pings_ok() {
    local report
    for h in "${hosts[@]}"; do
        report=$(MX_STATE_DIR="$work/$h/run" "$mxc" status multi --json 2>/dev/null) || return 1
        python3 - "$report" 2>/dev/null <<'PY' || return 1
import json, sys
doc = json.loads(sys.argv[1])
guests = doc["guests"]
assert guests, "no guests"
for name, g in guests.items():
    lines = g["console"]
    assert any(l.startswith("MX-PINGS-DONE") for l in lines), name
    pings = [l for l in lines if l.startswith("MX-PING ")]
    assert pings and all(l.endswith(" ok") for l in pings), (name, pings)
PY
    done
}

wait_pings() {
    for _ in $(seq 600); do pings_ok && return 0; sleep 0.1; done
    fail "not every guest reached its neighbours"
}

"$mxc" store certs --dir "$certs" --server 127.0.0.1 $(printf -- '--host %s ' "${every[@]}") 2>/dev/null
start_etcd
"$mxc" store roles --store "$url" --dir "$certs" $(printf -- '--host %s ' "${every[@]}") 2>/dev/null \
    || fail "roles could not be set up"
# An agent may not act as another host.
if MX_STORE_CERT=$certs/agent-hv0.pem MX_STORE_KEY=$certs/agent-hv0.key \
    timeout 10 "$mxc" agent --store "$url" --host hv1 --state-dir "$work/x" >"$work/impostor.log" 2>&1; then
    fail "agent-hv0's certificate registered as hv1"
fi
grep -q "permission denied" "$work/impostor.log" || fail "the impostor was not refused: $(cat "$work/impostor.log")"
for h in "${every[@]}"; do start_agent "$h"; done
"$mxc" image --build >/dev/null

# 1 and 2: up, with hv1's agent killed part way and started again.
t0=$(now_ms)
"$mxc" up "$exp" --facility "$fac" --store "$url" >"$work/up.log" 2>&1 &
up_pid=$!
until grep -q "^\[.*ok .*hv1: " "$work/up.log" 2>/dev/null; do
    kill -0 "$up_pid" 2>/dev/null || break
    sleep 0.05
done
stop_agent hv1 KILL
t_kill=$(now_ms)
start_agent hv1
wait "$up_pid" || fail "up did not complete after an agent was killed"
t_up=$(( $(now_ms) - t0 ))
grep -q "registered" "$work/agent-hv1.log" || fail "the restarted agent did not register"
# Convergence, in the restarted agent's own clock (seconds since it
# started): when it acted on its host's state, and when its part was up.
at() { sed -n "s/^\[ *\([0-9.]*\)\] .*$1.*/\1/p" "$work/agent-hv1.log" | tail -1; }
t_react=$(at "resuming\|bringing up\|is down here")
t_converged=$(at "is up here")
[ -n "$t_converged" ] || fail "hv1 did not converge"
t_restart=$(( $(now_ms) - t_kill ))
wait_pings
t_pings=$(( $(now_ms) - t0 ))
vms=$("$mxc" status multi --store "$url" --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(1 for h in d["hosts"].values() for t in h["tasks"] if t.startswith("vm/")))')
[ "$vms" -ge 8 ] || fail "expected 8 VMs, the agents report $vms"
sw=$("$mxc" status multi --store "$url" --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(1 for t in d["hosts"].get("leaf", {}).get("tasks", []) if t.startswith("switch_vlan/")))')
[ "$sw" -ge 3 ] || fail "expected 3 switch ports configured by the leaf's agent, it reports $sw"

# 3: etcd restarts; the agents follow it again.
kill "$(cat "$work/etcd.pid")"; wait "$(cat "$work/etcd.pid")" 2>/dev/null || true
start_etcd
sleep 1
agents=$("$mxc" status --store "$url" | grep -c ' pid ')
[ "$agents" -eq 5 ] || fail "after the etcd restart $agents of 5 agents are registered"

# 4: down with hv2's agent stopped, then back.
stop_agent hv2 TERM
t0=$(now_ms)
if "$mxc" down multi --store "$url" >"$work/down1.log" 2>&1; then fail "down succeeded with an agent away"; fi
grep -q "hv2" "$work/down1.log" || fail "down did not name the dirty host"
grep -q multi <<<"$("$mxc" alloc show)" || fail "the allocation was given back while hv2 was dirty"
start_agent hv2
for _ in $(seq 300); do [ -d "$work/hv2/run/multi" ] || break; sleep 0.1; done
[ ! -d "$work/hv2/run/multi" ] || fail "hv2's agent did not clean its host when it came back"
"$mxc" down multi --store "$url" >"$work/down2.log" 2>&1 || fail "the second down failed"
t_down=$(( $(now_ms) - t0 ))
if grep -q multi <<<"$("$mxc" alloc show)"; then fail "the allocation was not given back"; fi

# 5: nothing left.
for h in "${every[@]}"; do
    [ ! -d "$work/$h/run/multi" ] || fail "state of multi left on $h"
done
if grep -qE '^mx[hu]-' <<<"$(ip netns list)"; then fail "namespaces left: $(ip netns list | tr '\n' ' ')"; fi
if pgrep -f "qemu-system.*$work" >/dev/null; then fail "QEMU processes left"; fi
if compgen -G "/sys/fs/bpf/mx/*/multi" >/dev/null || [ -e /sys/fs/bpf/mx/multi ]; then fail "XDP pins left"; fi

echo "multihost: ok: TLS with client certificates and per-agent roles, 4 host agents and a switch agent, $vms VMs (VF links through the emulated leaf); up with an agent killed and restarted ${t_up} ms (guests pinged every neighbour at ${t_pings} ms); the killed agent, restarted, acted on its state after ${t_react:-?} s and had its part up after ${t_converged} s (resumed VMs boot under TCG); etcd restarted; down with an agent away, then cleaned on its return, ${t_down} ms; nothing left"
