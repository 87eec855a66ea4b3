#!/usr/bin/env bash
# Measures node emulation fidelity on this machine and writes FIDELITY.md:
# CPU bandwidth against the clock constraint (host cgroup accounting while
# the guest burns every vCPU), NIC models carrying traffic, the PCIe link the
# guest sees. Needs root and QEMU.
#   bench/fidelity.sh [SECONDS_PER_CPU_MEASUREMENT]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
cargo build --release -q -p mxc
mxc=${CARGO_TARGET_DIR:-target}/release/mxc
tmp=$(mktemp -d)
export MX_STATE_DIR=$tmp/run MX_DB=$tmp/alloc.db
trap 'for n in cpu nics arm tdf capacity; do $mxc down $n >/dev/null 2>&1 || true; done; rm -rf "$tmp"' EXIT
$mxc image --build >/dev/null 2>&1

console() { # console NAME VM MARKER: wait for MARKER, print the MX- lines
  for _ in $(seq 240); do
    if $mxc status "$1" --json | python3 -c "
import json, sys
g = json.load(sys.stdin)['guests'].get('$2', {}).get('console', [])
sys.exit(0 if any(l.startswith('$3') for l in g) else 1)"; then
      $mxc status "$1" --json | python3 -c "
import json, sys
print('\n'.join(json.load(sys.stdin)['guests']['$2']['console']))"
      return 0
    fi
    sleep 0.5
  done
  echo "no $3 from $2" >&2; return 1
}
usage() { cat "/sys/fs/cgroup/cpuacct/mx/cpu/v/cpuacct.usage" 2>/dev/null \
  || awk '/^usage_usec/ {print $2 * 1000}' /sys/fs/cgroup/mx/cpu/v/cpu.stat; }

rows=()
for spec in "1 1.3" "2 1.3" "4 0.65" "1 2.6"; do
  set -- $spec
  $mxc up examples/fidelity/cpu.mx --set VCPUS=$1 --set GHZ=$2 >/dev/null 2>&1
  console cpu v MX-BURN >/dev/null
  sleep 2
  a=$(usage); t0=$(date +%s.%N); sleep "$secs"; b=$(usage); t1=$(date +%s.%N)
  rows+=("$(python3 -c "
v, g = $1, $2
want = v * min(g / 2.6, 1.0)
used = ($b - $a) / 1e9 / ($t1 - $t0)
print(f'| {v} | {g} GHz | {want / v:.3f} | {want:.3f} | {used:.3f} | {used / v:.3f} | {100 * (used - want) / want:+.1f}% |')")")
  $mxc down cpu >/dev/null 2>&1
done

$mxc up examples/fidelity/nics.mx >/dev/null 2>&1
x=$(console nics x MX-PINGS-DONE); y=$(console nics y MX-PINGS-DONE)
$mxc down nics >/dev/null 2>&1
nicrows=()
i=0
for pair in "virtio virtio_net" "e1000 e1000" "e1000e e1000e" "rtl8139 8139cp" "vmxnet3 vmxnet3"; do
  set -- $pair
  px=$(grep -q "MX-PING x 10.9.$i.2 ok" <<<"$x" && echo ok || echo FAIL)
  py=$(grep -q "MX-PING y 10.9.$i.1 ok" <<<"$y" && echo ok || echo FAIL)
  line=$(grep "MX-NIC x .* driver=$2 " <<<"$x")
  slot=$(sed 's/.*slot=\([^ ]*\).*/\1/; s/_/ /g' <<<"$line")
  link=$(sed 's/.*speed=\([^ ]*\) width=\([^ ]*\).*/\1 x\2/; s/_/ /g' <<<"$line")
  [ "$link" = "none xnone" ] && link="none (conventional PCI)"
  nicrows+=("| $1 | $2 | $px | $py | $slot | $link |")
  i=$((i + 1))
done

# Time dilation: the guest's own clock (MX-TICK every 0.5 s of guest time),
# timed by the host as the lines appear, over a window of real time.
tdfrows=()
for tdf in 2 5 10; do
  $mxc up examples/fidelity/tdf.mx --set TDF=$tdf >/dev/null 2>&1
  console tdf v MX-TICK >/dev/null
  tdfrows+=("$(python3 - "$MX_STATE_DIR/tdf/vm/v/serial.log" "$tdf" "$((secs * 2))" <<'PY'
import re, sys, time
log, tdf, secs = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
def ticks():
    with open(log, 'rb') as f:
        return [float(m) for m in re.findall(rb'MX-TICK \S+ ([0-9.]+)', f.read())]
seen, pts, t0 = len(ticks()), [], time.time()
while time.time() - t0 < secs:
    t = ticks()
    now = time.time() - t0
    pts += [(now, g) for g in t[seen:]]
    seen = len(t)
    time.sleep(0.02)
(h0, g0), (h1, g1) = pts[1], pts[-1]
rate = (g1 - g0) / (h1 - h0)
print(f'| {tdf:g} | {1 / tdf:.4f} | {g1 - g0:.1f} s in {h1 - h0:.1f} s | {rate:.4f} | {1 / rate:.2f} | {100 * (1 / rate - tdf) / tdf:+.1f}% |')
PY
)")
  $mxc down tdf >/dev/null 2>&1
done

# aarch64: boot time to MX-READY under TCG and the ping to an x86 guest.
armrow="| aarch64 | not measured (qemu-system-aarch64 missing) | | |"
if command -v qemu-system-aarch64 >/dev/null; then
  t0=$(date +%s.%N)
  $mxc up examples/fidelity/arm.mx >/dev/null 2>&1
  t1=$(date +%s.%N)
  a=$(console arm a MX-PINGS-DONE)
  $mxc down arm >/dev/null 2>&1
  ping=$(grep -q "MX-PING a 10.8.0.2 ok" <<<"$a" && echo ok || echo FAIL)
  boot=$(grep -o "MX-BOOT a [0-9.]*" <<<"$a" | awk '{print $3}')
  armrow="| aarch64 (qemu-system-aarch64, virt, max with pauth-impdef, TCG) | $(python3 -c "print(f'{$t1 - $t0:.1f} s')") | $boot s | $ping |"
fi

# Link capacity: iperf3 between two Debian guests over a link with
# `capacity == mbps(N)` (a token bucket on each tap, toward its VM), and
# over an unshaped link for what TCG manages at all.
$mxc image --build bookworm >/dev/null 2>&1
caprows=()
for n in 0 10 50 100 200; do
  $mxc up examples/fidelity/capacity.mx --set MBPS=$n >/dev/null 2>&1
  # Both guests done booting, the server up, and a first short run to warm
  # up (the first TCP connection after boot is slow under TCG).
  for v in a b; do
    $mxc exec --timeout 120 capacity $v -- systemctl is-system-running --wait >/dev/null || true
  done
  $mxc exec capacity b -- iperf3 -s -D >/dev/null
  sleep 1
  $mxc exec capacity a -- iperf3 -c b -t 2 >/dev/null
  res=$($mxc exec capacity a -- iperf3 -c b -t $((secs / 2)) -O 1 -J)
  $mxc down capacity >/dev/null 2>&1
  caprows+=("$(python3 -c "
import json, sys
r = json.loads(sys.argv[1])['end']
got = r['sum_received']['bits_per_second'] / 1e6
sent = r['sum_sent']['bits_per_second'] / 1e6
asked = $n
# The bucket counts Ethernet frames (1514 bytes for 1448 of TCP payload
# with timestamps): the payload the link can carry is 1448/1514 of it.
if asked == 0:
    print(f'| none (unshaped) | | {sent:.2f} | {got:.2f} | | |')
else:
    payload = asked * 1448 / 1514
    print(f'| {asked} Mbit/s | {payload:.2f} | {sent:.2f} | {got:.2f} | {got * 1514 / 1448:.2f} | {100 * (got - payload) / payload:+.1f}% |')
" "$res")")
done

machine="$(nproc) vCPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(grep -m1 'cpu MHz' /proc/cpuinfo | cut -d: -f2 | xargs) MHz), $(free -g | awk '/Mem:/ {print $2}') GiB, kernel $(uname -r), QEMU $(qemu-system-x86_64 --version | head -1 | awk '{print $4}'), TCG"
{
cat <<HEAD
# Fidelity

Measured by \`bench/fidelity.sh $secs\` on $(date -u +%Y-%m-%d): $machine.
Every figure comes from a VM brought up by \`mxc up\` on the \`local\` facility
(host cores declared at 2.6 GHz, this machine's clock).

## CPU bandwidth

\`examples/fidelity/cpu.mx\`: one VM with \`cores == N, clock == ghz(G)\`. Each
vCPU gets G/2.6 of a host core, enforced by the cgroup CPU controller
(cfs quota = share × vCPUs × 100 ms per 100 ms period; \`cpu.max\` on cgroup
v2). The guest runs one busy loop per vCPU (\`mx.burn\`); the host reads the
VM's cgroup CPU accounting (cpuacct.usage) over $secs s. The VM's cgroup holds
all of QEMU's threads, so I/O and TCG translation count against the share too.

| vCPUs | clock asked | share per vCPU | cores asked | cores used | per vCPU | error |
|---|---|---|---|---|---|---|
HEAD
printf '%s\n' "${rows[@]}"
cat <<MID

The last row asks for the host's own clock: no quota is set, and the VM
uses what TCG can (one host core per busy vCPU, at most the machine's two).

## NIC models

\`examples/fidelity/nics.mx\`: two VMs on one hypervisor joined by five
point-to-point links (XDP pairs), one per model; both ends ping each other.
The driver column is the guest driver that took the NIC. x asks for
\`pcie == gen3(8)\`: each of its NICs sits behind a \`pcie-root-port\` with
\`x-speed=8,x-width=8\`, and the slot column is the link that port offers, as
x's guest reads it from sysfs. The negotiated link is lower: QEMU 7.2's NIC
models advertise 2.5 GT/s x1 themselves, and a link trains to the slower end.
e1000 and rtl8139 are conventional PCI devices: they sit in the same slots
but have no link of their own.

| model | guest driver | x → y | y → x | slot offered to x | negotiated link |
|---|---|---|---|---|---|
MID
printf '%s\n' "${nicrows[@]}"
cat <<CAP

## Link capacity

\`examples/fidelity/capacity.mx\`: two Debian 12 VMs (\`image == 'bookworm'\`)
on one hypervisor, joined by a link with \`capacity == mbps(N)\`. The link
is a bridge with a token bucket (tc \`tbf\`) on each tap, toward its VM; a
shaped link is never an XDP pair, since the redirect would carry packets
below the bucket. iperf3 runs $((secs / 2)) s of TCP (the first second
omitted) from a to b. The bucket counts Ethernet frames, so the TCP payload
a link of N Mbit/s carries is 1448/1514 of N; the error compares the
payload received with that. The first row is the same pair on an unshaped
link: under TCG two guests on this 2-core machine move about that much, so
capacities near it cannot be reached.

| capacity asked | payload expected (Mbit/s) | iperf3 sent | iperf3 received | on the wire | error |
|---|---|---|---|---|---|
CAP
printf '%s\n' "${caprows[@]}"
cat <<TDF

## Time dilation

\`examples/fidelity/tdf.mx\`: one VM with \`tdf == F\`. The guest prints its
uptime every 0.5 s of guest time; the host times those lines as they appear
on the console over $((secs * 2)) s and compares.

How: QEMU counts guest time in instructions (\`-icount shift=6,sleep=off\`:
each instruction is 64 ns of guest time), the guest kernel polls when idle
(\`idle=poll\`) so idle time is counted rather than skipped, and the cgroup
CPU quota sets how many instructions run per real second. \`mxc up\` measures
the guest's instruction count through QMP (\`query-replay\`), sets the quota so
that guest time runs roughly at 1/F of real time, and leaves a small
controller (\`mxc tdf-control\`, gone with the VM) that every second sets the
quota which brings the guest's total time since it started back to 1/F of
the host's within 5 s: one second's rate is noisy at small shares (±40%
here), and integral action makes the factor hold on average.

| tdf | guest s per real s asked | guest time elapsed | guest s per real s | measured factor | error |
|---|---|---|---|---|---|
TDF
printf '%s\n' "${tdfrows[@]}"
cat <<ARM

## Non-x86 guests

\`examples/fidelity/arm.mx\`: an aarch64 VM (\`arch == aarch64\`) next to an
x86_64 VM on the same (x86_64) hypervisor, joined by an XDP pair. The aarch64
image is built like the x86 one (Debian arm64 kernel and busybox, fetched as
packages and unpacked, not installed): \`mxc image --build --arch aarch64\`.

| guest | \`mxc up\` to MX-READY (both VMs) | guest kernel uptime at MX-BOOT | ping to the x86 guest |
|---|---|---|---|
$armrow

## Sender-side emulation profiles

\`emulation == wifi\` (or \`optical\`, \`lte\`, \`satellite\`) on a vNIC shapes
what the VM sends: the tap's ingress is redirected (tc \`mirred\`) to an IFB
device, and the profile is applied as the IFB's egress. This kernel has no
netem, so only the rate is applied and the task says so; on a kernel with
netem the delay, jitter and loss are applied too.

| profile | rate | delay | jitter | loss |
|---|---|---|---|---|
| wifi | 54 Mbit/s | 2 ms | 1 ms | 0.5% |
| optical | 10 Gbit/s | 5 µs | 0 | 0 |
| lte | 50 Mbit/s | 30 ms | 10 ms | 0.1% |
| satellite | 10 Mbit/s | 300 ms | 20 ms | 0.5% |

\`examples/fidelity/nics.mx\` puts \`wifi\` on y's virtio NIC; the test checks
the IFB carries a 54 Mbit/s token bucket and that the pings still pass.
ARM
cat <<'TAIL'

## What is and is not emulated

- **CPU bandwidth**: enforced (cgroup CPU controller) and measured above.
  `v.properties['pin'] = True` also pins the VM to host cores (a cpuset
  cgroup; consecutive cores per hypervisor in model order, modulo the
  machine's cores), tested in mxc/tests/fidelity.rs
  (`examples/fidelity/pin.mx`).
- **Time dilation** (`tdf`): every clock the guest has (TSC, HPET, timers)
  follows the instruction count, so all of guest time is dilated. Limits: one
  vCPU (icount with `-smp 2` hangs at secondary-CPU bring-up here), TCG only
  (KVM has no instruction counting; refused on a KVM host), factors 1 to 50,
  and the guest burns its CPU share even when idle (`idle=poll`). The factor
  holds on average over seconds: the quota is applied per 100 ms period, so
  over short spans guest time advances in bursts. `mxc up` refuses anything
  else with E0405 before touching the machine.
- **PCIe link**: the slot's speed and width are set (QEMU root ports, up to
  gen4 in QEMU 7.2); the devices in it advertise gen1 x1, so that is the
  negotiated link, and the data path is a virtual device that runs at
  whatever rate TCG manages, not at the link's.
- **Memory bus** (`membus`): matched against the facility and recorded in the
  VM fragment; not emulated.
- **VFs, PCI passthrough, GPUs**: realized and allocated (VFs, ports, whole
  GPUs and virtual-GPU slices are held in the allocation table), planned
  (fragments, dry-run operations: vfio-pci binding of a function and its
  IOMMU group, mediated-device creation, GPU VFs, each GPU behind its own
  PCIe root port) and refused on this machine (no SR-IOV, no VFIO, no such
  PCI devices) with E0405 before anything is touched. docs/SRIOV.md is the
  procedure for hardware that has them.
- **aarch64 guests**: run under `qemu-system-aarch64` (TCG on this x86 host;
  KVM would need an aarch64 host). riscv64 is accepted by the language and
  the runtime picks `qemu-system-riscv64` (`virt`), but no riscv64 image is
  built (Debian 12 packages no riscv64 kernel): `mxc up` refuses such a VM
  with E0405 unless an image is installed by hand (images/README.md).
- **Sender-side emulation**: the rate is applied; delay, jitter and loss need
  netem, which this kernel lacks.
TAIL
} > FIDELITY.md
cat FIDELITY.md
