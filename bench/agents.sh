#!/usr/bin/env bash
# Plumbing through the store: an experiment of VMS VMs over HOSTS agents
# (namespace hypervisors on this machine), brought up with `mxc up --store`
# and taken down again, with the VMs replaced by a no-op task
# (MX_BENCH_NOOP_VMS, for this benchmark only) so the figure is the network
# plumbing and the store, not QEMU. Then one agent is killed with -9 and
# started again, and its recovery timed.
#
# Usage: bench/agents.sh [HOSTS VMS]...   (default: 10 1000; KEEP=DIR keeps
# the logs; MIX=lans for taps and bridges only)
# Prints a Markdown table row per size: tasks, plumbing operations, up and
# down wall time, operations per second through the store, recovery.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "agents: needs root"; exit 2; }
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(10 1000)
# MXC=PATH runs that mxc instead of building one (to compare builds).
if [ -z "${MXC:-}" ]; then cargo build -q --release -p mxc; fi
mxc=${MXC:-${CARGO_TARGET_DIR:-$PWD/target}/release/mxc}
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

echo "| hosts | VMs | tasks | plumbing operations | up | down | operations/s (up) | agent restart to converged |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
while [ ${#sizes[@]} -ge 2 ]; do
    hosts=${sizes[0]}; vms=${sizes[1]}; sizes=("${sizes[@]:2}")
    work=$(mktemp -d /tmp/mx-agents.XXXXXX)
    port=$((20000 + RANDOM % 20000))
    url="etcd://127.0.0.1:$port"
    etcd --data-dir "$work/etcd" --name b --listen-client-urls "http://127.0.0.1:$port" \
        --advertise-client-urls "http://127.0.0.1:$port" --listen-peer-urls "http://127.0.0.1:$((port + 1))" \
        --initial-advertise-peer-urls "http://127.0.0.1:$((port + 1))" \
        --initial-cluster "b=http://127.0.0.1:$((port + 1))" >"$work/etcd.log" 2>&1 &
    etcd_pid=$!
    pids=()
    cleanup() {
        for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
        kill "$etcd_pid" 2>/dev/null || true
        wait 2>/dev/null || true
        rm -rf "$work"
    }
    trap cleanup EXIT
    # A port taken (a stray etcd) must fail here, not hang.
    for _ in $(seq 100); do "$mxc" status --store "$url" >/dev/null 2>&1 && break; sleep 0.1; done
    "$mxc" status --store "$url" >/dev/null 2>&1 || { echo "agents: etcd did not start:"; tail -3 "$work/etcd.log"; exit 1; }
    # The facility: HOSTS namespace hypervisors; the experiment: VMS VMs,
    # VMS/HOSTS per host, in a ring (XDP pairs on a host, VXLAN between
    # hosts) plus one LAN per host.
    {
        echo "fac = facility('agents')"
        echo "sw = fac.switch('underlay', role=leaf, vxlan=True)"
        echo "for i in range($hosts):"
        echo "    hv = fac.host(f'h{i}', roles=[hypervisor], cores=4096, memory=gb(4096), disk=gb(100000),"
        echo "                  reserved_cores=0, reserved_memory=gb(1), underlay=f'192.0.2.{i + 1}', netns=True,"
        echo "                  nics=[nic(x710, ports=1, capacity=gbps(100))])"
        echo "    fac.cable(hv.port(0), sw.port(i))"
    } >"$work/fac.mx"
    if [ "${MIX:-ring}" = lans ]; then
        # MIX=lans: taps and bridges only, as the runtime's own plumbing
        # benchmark: LANs of 10 VMs, 5 on one host and 5 on the next (a
        # bridge and a VTEP on each), every VM on one LAN.
        {
            echo "net = topology('plumb')"
            echo "per = $vms // $hosts"
            echo "n = [net.device(f'v{i}', cores == 1, memory == mb(256), host == f'h{i // per}') for i in range($vms)]"
            echo "for h in range($hosts):"
            echo "    for j in range(per // 10):"
            echo "        a = h * per + j * 5"
            echo "        b = ((h + 1) % $hosts) * per + per // 2 + j * 5"
            echo "        net.connect(n[a:a + 5] + n[b:b + 5])"
            echo "experiment(net)"
        } >"$work/exp.mx"
    else
    {
        echo "net = topology('plumb')"
        echo "per = $vms // $hosts"
        echo "n = [net.device(f'v{i}', cores == 1, memory == mb(256), host == f'h{i // per}') for i in range($vms)]"
        echo "for i in range($vms):"
        echo "    net.connect([n[i], n[(i + 1) % $vms]])"
        echo "for h in range($hosts):"
        echo "    net.connect(n[h * per:(h + 1) * per])"
        echo "experiment(net)"
    } >"$work/exp.mx"
    fi
    export MX_DB=$url
    for i in $(seq 0 $((hosts - 1))); do
        MX_BENCH_NOOP_VMS=1 setsid "$mxc" agent --store "$url" --host "h$i" --state-dir "$work/h$i" \
            >"$work/agent-h$i.log" 2>&1 &
        pids+=($!)
    done
    for _ in $(seq 300); do
        [ "$("$mxc" status --store "$url" | grep -c ' pid ')" -eq "$hosts" ] && break
        sleep 0.1
    done
    [ "$("$mxc" status --store "$url" | grep -c ' pid ')" -eq "$hosts" ] \
        || { echo "agents: not every agent registered:"; tail -3 "$work"/agent-h*.log; exit 1; }
    ops=$("$mxc" up "$work/exp.mx" --facility "$work/fac.mx" --dry-run 2>/dev/null \
        | awk '/^[^ #].*:$/ {vm = ($0 ~ /^vm\//)} /^    / && !vm {n++} END {print n}')
    t0=$(now_ms)
    "$mxc" up "$work/exp.mx" --facility "$work/fac.mx" --store "$url" >"$work/up.log" 2>&1 \
        || { tail -20 "$work/up.log"; exit 1; }
    t_up=$(( $(now_ms) - t0 ))
    tasks=$(sed -n 's/.*: \([0-9]*\) tasks on .*/\1/p; T; q' "$work/up.log")
    # Recovery: kill one agent, start it again, time until it has looked
    # at its state and found its part up.
    kill -9 "${pids[0]}"
    t0=$(now_ms)
    MX_BENCH_NOOP_VMS=1 setsid "$mxc" agent --store "$url" --host h0 --state-dir "$work/h0" \
        >"$work/agent-h0b.log" 2>&1 &
    pids[0]=$!
    until grep -q registered "$work/agent-h0b.log"; do sleep 0.01; done
    sleep 0.6 # one follow cycle: it would act on anything unfinished
    grep -qE "resuming|bringing up" "$work/agent-h0b.log" && { echo "h0 redid work"; exit 1; }
    t_recover=$(( $(now_ms) - t0 ))
    t0=$(now_ms)
    "$mxc" down plumb --store "$url" >"$work/down.log" 2>&1 || { cat "$work/down.log"; exit 1; }
    t_down=$(( $(now_ms) - t0 ))
    printf '| %s | %s | %s | %s | %.1f s | %.1f s | %d | %d ms |\n' "$hosts" "$vms" "$tasks" "$ops" \
        "$(echo "$t_up / 1000" | bc -l)" "$(echo "$t_down / 1000" | bc -l)" \
        "$(( ops * 1000 / (t_up > 0 ? t_up : 1) ))" "$t_recover"
    # KEEP=DIR keeps the logs (agents', up's, down's) for a closer look.
    if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP/$hosts-$vms" && cp "$work"/*.log "$KEEP/$hosts-$vms/"; fi
    cleanup
    trap - EXIT
done
