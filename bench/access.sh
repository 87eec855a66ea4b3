#!/usr/bin/env bash
# Boot and access benchmark, on this machine (root, QEMU): for each image,
# one VM brought up and taken down RUNS times. Reports
#   - `mxc up` to ready (the VM task: QEMU start, boot, set-up, MX-READY),
#   - where the guest's time goes: its kernel's uptime when the set-up
#     script starts (kernel, initramfs, init) and the rest up to MX-READY,
#   - `mxc exec NODE -- true` round trip on the idle guest (median and 90th
#     percentile of 20),
#   - `mxc cp` of 8 MiB into the guest and back.
# Usage: bench/access.sh [IMAGE ...]   (default: mx-busybox bookworm)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
images=("$@")
[ ${#images[@]} -gt 0 ] || images=(mx-busybox bookworm)
cargo build --release -q -p mxc
mxc=${CARGO_TARGET_DIR:-$PWD/target}/release/mxc
tmp=$(mktemp -d)
export MX_STATE_DIR=$tmp/run MX_DB=$tmp/alloc.db
trap '"$mxc" down boot >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
head -c $((8 << 20)) /dev/urandom > "$tmp/payload"
echo "| image | mxc up to ready | guest uptime at set-up | set-up to MX-READY | exec round trip (median / p90) | cp 8 MiB in / out |"
echo "|---|---:|---:|---:|---:|---:|"
for img in "${images[@]}"; do
    printf "net = topology('boot')\nnet.device('a', image == '%s', memory == mb(512))\n" "$img" > "$tmp/boot.mx"
    ups=() setups=() readies=() rtts=() cpin=() cpout=()
    for _ in $(seq "$RUNS"); do
        start=$(date +%s%N)
        "$mxc" up "$tmp/boot.mx" > "$tmp/up.log" 2>&1 || { cat "$tmp/up.log"; exit 1; }
        vm_ms=$(sed -n 's/.* vm\/a (\([0-9]*\) ms).*/\1/p' "$tmp/up.log")
        log=$MX_STATE_DIR/boot/vm/a/serial.log
        setup=$(grep -a -o 'MX-SETUP a [0-9.]*' "$log" | awk '{ print $3 }')
        ups+=("$vm_ms")
        setups+=("$setup")
        readies+=("$(awk -v t="$vm_ms" -v s="$setup" 'BEGIN { printf "%.2f", t / 1000 - s }')")
        # An idle guest: its pings done, on systemd images the rest of the
        # boot finished, and the root filesystem grown to its overlay (a
        # background resize2fs that takes tens of seconds under TCG).
        sleep 2
        "$mxc" exec --timeout 120 boot a -- sh -c \
            'if command -v systemctl >/dev/null; then systemctl is-system-running --wait >/dev/null; fi
             while pgrep -x resize2fs >/dev/null 2>&1 || pgrep -x ssh-keygen >/dev/null 2>&1; do sleep 0.2; done; true'
        for _ in $(seq 20); do
            a=$(date +%s%N)
            "$mxc" exec boot a -- true
            b=$(date +%s%N)
            echo $(( (b - a) / 1000000 ))
        done > "$tmp/rtt"
        rtts+=("$(sort -n "$tmp/rtt" | awk '{ v[NR] = $1 } END { printf "%d / %d", v[int((NR + 1) / 2)], v[int(NR * 0.9)] }')")
        a=$(date +%s%N); "$mxc" cp boot "$tmp/payload" a:/tmp/payload; b=$(date +%s%N)
        "$mxc" cp boot a:/tmp/payload "$tmp/back"; c=$(date +%s%N)
        cmp -s "$tmp/payload" "$tmp/back" || { echo "cp: the copy differs"; exit 1; }
        cpin+=("$(( (b - a) / 1000000 ))") cpout+=("$(( (c - b) / 1000000 ))")
        "$mxc" down boot > /dev/null 2>&1
    done
    med() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
    echo "| $img | $(awk -v t="$(med "${ups[@]}")" 'BEGIN { printf "%.1f s", t / 1000 }') (runs: ${ups[*]} ms) | $(med "${setups[@]}") s | $(med "${readies[@]}") s | ${rtts[$(( ${#rtts[@]} / 2 ))]} ms | $(med "${cpin[@]}") / $(med "${cpout[@]}") ms |"
done
