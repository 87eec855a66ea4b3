#!/usr/bin/env bash
# build-debian.sh OUTDIR
#
# Builds a Debian guest image for mx from the Debian mirror alone
# (mmdebstrap), trimmed to boot fast under TCG:
#   OUTDIR/base.qcow2   the root filesystem (ext4, 2 GiB virtual), never
#                       written: each VM boots from a copy-on-write overlay
#   OUTDIR/vmlinuz      the image's own kernel (linux-image-cloud-amd64:
#                       LZ4, ext4 built in, virtio drivers as modules)
#   OUTDIR/vmlinux      the same kernel uncompressed (QEMU boots it through
#                       its PVH entry, ~0.3 s sooner under TCG)
#   (no initrd: the root is on NVMe, which the cloud kernel has built in, so
#   the kernel mounts it itself; the virtio modules load from the disk)
#   OUTDIR/image.json   what mx reads to boot it (runtime/src/images.rs)
# All logging goes to stderr.
#
# The guest: systemd; qemu-ga on org.qemu.guest_agent.0 started before
# anything else (mx exec and cp); mx-setup configuring names, addresses,
# routes and forwarding from QEMU fw_cfg and saying MX-READY on the console
# (images/guest/mx-setup, shared with the busybox guest); mx-sshd serving
# `mxc ssh` on org.mx.ssh.0; a root shell on the serial console (mxc
# console); iproute2, iputils-ping, openssh-server, iperf3, tcpdump,
# ethtool, traceroute, netcat, procps, python3. What an experiment node does not need is masked:
# timers, gettys on VTs, journal flushing, generators. Measured in
# BENCHMARKS.md; the recipe and where boot time goes are in images/README.md.
#
# Environment:
#   MX_IMAGE_NAME     bookworm (default) or bullseye
#   MX_GUEST_ARCH     x86_64 (the only one built)
#   MX_GUEST_SCRIPTS  the directory with mx-setup and mx-sshd (default:
#                     guest/ beside this script)
#   MX_IMAGE_INCLUDE  more packages, comma-separated (guests have no
#                     network to install them later)
#   MX_DEBIAN_MIRROR  default http://deb.debian.org/debian
#   MX_GUEST_FORCE=1  rebuild even if the stamp matches
# Needs root, mmdebstrap, e2fsprogs (mkfs.ext4 -d), qemu-utils, lz4.
set -euo pipefail
umask 022
export LC_ALL=C
export PATH="$PATH:/usr/sbin:/sbin"

log() { printf 'build-debian: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
OUTDIR=$1
SCRIPT=$(readlink -f "${BASH_SOURCE[0]}")
GUEST=${MX_GUEST_SCRIPTS:-$(dirname "$SCRIPT")/guest}
NAME=${MX_IMAGE_NAME:-bookworm}
ARCH=${MX_GUEST_ARCH:-x86_64}
MIRROR=${MX_DEBIAN_MIRROR:-http://deb.debian.org/debian}
EXTRA=${MX_IMAGE_INCLUDE:-}
case "$NAME" in
  bookworm) OS="Debian 12"; SECURITY=bookworm-security ;;
  bullseye) OS="Debian 11"; SECURITY=bullseye-security ;;
  *) die "MX_IMAGE_NAME=$NAME: this script builds bookworm and bullseye" ;;
esac
[ "$ARCH" = x86_64 ] || die "Debian images are built for x86_64 only (asked: $ARCH)"
[ "$(id -u)" -eq 0 ] || die "run as root (mmdebstrap installs packages into the image as root)"
for f in mx-setup mx-sshd; do
  [ -r "$GUEST/$f" ] || die "$GUEST/$f is missing (set MX_GUEST_SCRIPTS to images/guest)"
done
case "$EXTRA" in *[!a-z0-9.+,:=-]*) die "MX_IMAGE_INCLUDE: package names separated by commas" ;; esac

need() { # need COMMAND PACKAGE
  command -v "$1" >/dev/null && return 0
  log "installing $2"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >&2 \
    || die "$1 is missing: apt-get install -y $2"
}
need mmdebstrap mmdebstrap
need mkfs.ext4 e2fsprogs
need qemu-img qemu-utils
need lz4 lz4

mkdir -p "$OUTDIR"
OUTDIR=$(readlink -f "$OUTDIR")
STAMP=$OUTDIR/.build-debian.stamp
stamp_text=$(printf 'name %s\nscript %s\nguest %s\nextra %s\nmirror %s\n' "$NAME" \
  "$(sha256sum "$SCRIPT" | cut -d' ' -f1)" \
  "$(cat "$GUEST/mx-sshd" | sha256sum | cut -d' ' -f1)" "$EXTRA" "$MIRROR")
if [ "${MX_GUEST_FORCE:-0}" != 1 ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$stamp_text" ] \
   && [ -f "$OUTDIR/base.qcow2" ] && [ -f "$OUTDIR/image.json" ]; then
  log "up to date ($NAME)"
  exit 0
fi

WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/build-debian.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/files"
install -m 0755 "$GUEST/mx-setup" "$GUEST/mx-sshd" "$WORK/files/"

# --- the customize hook: everything written into the image ------------------
cat >"$WORK/customize.sh" <<'HOOK'
#!/bin/sh
set -eu
R=$1
FILES=$2

# identity: mx-setup sets the name at boot; nothing of the build host stays
echo debian >"$R/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$R/etc/hosts"
printf '# the root disk is given on the kernel command line (root=... rw)\n' >"$R/etc/fstab"
: >"$R/etc/resolv.conf"
: >"$R/etc/machine-id" # empty: a new id each boot, and not a first boot
# each VM makes its own host key (mx-sshd, at first boot)
rm -f "$R"/etc/ssh/ssh_host_*

# --- initramfs (unused by mx, which boots the root from NVMe; kept small for
# anyone booting the disk on virtio-blk): the drivers, no udev --------------
mkdir -p "$R/etc/initramfs-tools/conf.d" "$R/etc/initramfs-tools/hooks"
printf 'MODULES=list\nCOMPRESS=gzip\nRESUME=none\n' >"$R/etc/initramfs-tools/conf.d/mx.conf"
printf 'virtio_pci\nvirtio_blk\nvirtio_console\nvirtio_net\nqemu_fw_cfg\n' >>"$R/etc/initramfs-tools/modules"
cat >"$R/etc/initramfs-tools/hooks/zz-mx-noudev" <<'SH'
#!/bin/sh
# Drop udev from the initramfs: the root disk appears in devtmpfs as soon
# as the listed modules load; starting udevd, triggering and settling in
# the initramfs costs ~2 s under TCG.
[ "$1" = prereqs ] && exit 0
rm -f "$DESTDIR/scripts/init-top/udev" \
      "$DESTDIR/bin/udevadm" "$DESTDIR/usr/bin/udevadm" \
      "$DESTDIR/lib/systemd/systemd-udevd" "$DESTDIR/usr/lib/systemd/systemd-udevd"
rm -rf "$DESTDIR/lib/udev" "$DESTDIR/usr/lib/udev"
cat >"$DESTDIR/scripts/init-bottom/udev" <<'EOF'
#!/bin/sh
[ "$1" = prereqs ] && exit 0
# hand the devtmpfs over to the real root, as the udev script would
mount -n -o move /dev "${rootmnt:?}/dev"
nuke /dev
ln -s "${rootmnt}/dev" /dev
EOF
chmod 755 "$DESTDIR/scripts/init-bottom/udev"
SH
chmod 755 "$R/etc/initramfs-tools/hooks/zz-mx-noudev"

# udev loads these for what `-cpu max` advertises; a TCG guest has no use
cat >"$R/etc/modprobe.d/mx-blacklist.conf" <<'CONF'
blacklist kvm
blacklist kvm_amd
blacklist kvm_intel
blacklist aesni_intel
blacklist ghash_clmulni_intel
blacklist sha1_ssse3
blacklist sha256_ssse3
blacklist sha512_ssse3
blacklist crct10dif_pclmul
blacklist crc32_pclmul
blacklist polyval_clmulni
blacklist evdev
blacklist serio_raw
blacklist pcspkr
blacklist button
CONF

# --- the guest agent, first of all, without waiting for udev -----------------
cat >"$R/usr/local/sbin/mx-qga" <<'SH'
#!/bin/sh
# qemu-ga on the port org.qemu.guest_agent.0, found in sysfs rather than
# waiting for udev's /dev/virtio-ports links (seconds later under TCG).
[ -d /sys/class/virtio-ports ] || modprobe -qa virtio_pci virtio_console
i=0
while [ "$i" -lt 400 ]; do
  for p in /sys/class/virtio-ports/vport*; do
    if [ -r "$p/name" ] && read -r n <"$p/name" && [ "$n" = org.qemu.guest_agent.0 ]; then
      # -l /dev/null: qemu-ga logs every request, and journald writing
      # that down doubles what an exec costs under TCG
      exec /usr/sbin/qemu-ga -m virtio-serial -p "/dev/${p##*/}" -l /dev/null "$@"
    fi
  done
  sleep 0.05
  i=$((i + 1))
done
echo "mx-qga: no virtio-serial port org.qemu.guest_agent.0" >&2
exit 1
SH
chmod 755 "$R/usr/local/sbin/mx-qga"
cat >"$R/etc/systemd/system/mx-qga.service" <<'UNIT'
[Unit]
Description=QEMU guest agent for mx exec and cp (started early, without udev)
DefaultDependencies=no
Before=sysinit.target shutdown.target
Conflicts=shutdown.target

[Service]
ExecStart=/usr/local/sbin/mx-qga
# what `mxc exec` runs starts in root's home, as an ssh login would
WorkingDirectory=/root
Restart=always
RestartSec=0
# ahead of the rest of early boot on one vCPU; what it runs gets nice 0
Nice=-15
CPUSchedulingPolicy=other
CPUSchedulingResetOnFork=yes

[Install]
WantedBy=sysinit.target
UNIT
ln -sf /etc/systemd/system/mx-qga.service "$R/etc/systemd/system/sysinit.target.wants/mx-qga.service"

# --- mx-setup: the experiment's names, addresses, routes; MX-READY -----------
install -m 0755 "$FILES/mx-setup" "$R/usr/local/sbin/mx-setup"
cat >"$R/usr/local/sbin/mx-boot" <<'SH'
#!/bin/sh
# Runs the set-up script the runtime hands over through fw_cfg (the one
# that speaks its protocol), else the image's own copy; MX- lines go to the
# serial console, where mx waits for MX-READY.
# No initramfs loaded anything (the root is on NVMe, built into the
# kernel): the NIC drivers and fw_cfg, now rather than when udev gets there.
modprobe -qa virtio_pci virtio_net vmxnet3 qemu_fw_cfg
SETUP=/sys/firmware/qemu_fw_cfg/by_name/opt/mx/setup/raw
if [ -r "$SETUP" ]; then cat "$SETUP" >/run/mx-setup; else cp /usr/local/sbin/mx-setup /run/mx-setup; fi
exec sh /run/mx-setup >/dev/console 2>&1
SH
chmod 0755 "$R/usr/local/sbin/mx-boot"
install -m 0755 "$FILES/mx-sshd" "$R/usr/local/sbin/mx-sshd"
cat >"$R/etc/systemd/system/mx-setup.service" <<'UNIT'
[Unit]
Description=mx: configure the experiment network from fw_cfg
DefaultDependencies=no
After=mx-qga.service
Wants=mx-qga.service
Before=network.target ssh.service mx-sshd.service

[Service]
Type=exec
# Its MX- lines go to the serial console, where mx waits for MX-READY.
ExecStart=/usr/local/sbin/mx-boot
# Ahead of the rest of boot on one vCPU (udev's coldplug, journald): the
# experiment's network is what `up` waits for.
Nice=-15

[Install]
WantedBy=sysinit.target
UNIT
ln -sf /etc/systemd/system/mx-setup.service "$R/etc/systemd/system/sysinit.target.wants/mx-setup.service"
# What can wait until the guest is ready (MX-READY: /run/mx-ready) waits,
# rather than compete with the set-up for the one vCPU.
cat >"$R/etc/systemd/system/mx-ready.service" <<'UNIT'
[Unit]
Description=mx: the experiment network is configured (MX-READY)
After=mx-setup.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'i=0; while [ ! -e /run/mx-ready ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done'
UNIT
cat >"$R/etc/systemd/system/mx-sshd.service" <<'UNIT'
[Unit]
Description=mx: sshd for mxc ssh on the virtio-serial port org.mx.ssh.0
Wants=mx-hostkey.service
After=mx-ready.service mx-hostkey.service

[Service]
ExecStart=/usr/local/sbin/mx-sshd
Restart=always
RestartSec=1

[Install]
WantedBy=multi-user.target
UNIT
ln -sf /etc/systemd/system/mx-sshd.service "$R/etc/systemd/system/multi-user.target.wants/mx-sshd.service"
# Each VM its own host key, made once at its first boot, before either sshd
cat >"$R/etc/systemd/system/mx-hostkey.service" <<'UNIT'
[Unit]
Description=mx: this VM's own ssh host key
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key
Wants=mx-ready.service
After=mx-ready.service
Before=ssh.service mx-sshd.service

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key

[Install]
WantedBy=multi-user.target
UNIT
ln -sf /etc/systemd/system/mx-hostkey.service "$R/etc/systemd/system/multi-user.target.wants/mx-hostkey.service"
# sshd on the experiment network too, for nodes reaching each other
mkdir -p "$R/etc/systemd/system/ssh.service.d"
printf '[Unit]\nWants=mx-hostkey.service\nAfter=mx-hostkey.service\n' >"$R/etc/systemd/system/ssh.service.d/mx.conf"
mkdir -p "$R/etc/ssh/sshd_config.d"
printf 'HostKey /etc/ssh/ssh_host_ed25519_key\nPasswordAuthentication no\nUseDNS no\n' >"$R/etc/ssh/sshd_config.d/mx.conf"

# --- a root shell on the serial console (mxc console; only root on the host
# reaches it), after the agent and the experiment's set-up ---------------------
mkdir -p "$R/etc/systemd/system/serial-getty@ttyS0.service.d"
printf '[Unit]\nWants=mx-ready.service\nAfter=mx-ready.service\n[Service]\nExecStart=\nExecStart=-/sbin/agetty --autologin root --noclear --keep-baud 115200,57600,38400,9600 %%I $TERM\n' \
  >"$R/etc/systemd/system/serial-getty@ttyS0.service.d/mx.conf"
mkdir -p "$R/etc/systemd/system/getty.target.wants"
ln -sf /lib/systemd/system/serial-getty@.service "$R/etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service"

# --- what an experiment node does not need --------------------------------------
for u in \
  qemu-guest-agent.service \
  apt-daily.timer apt-daily-upgrade.timer apt-daily.service apt-daily-upgrade.service \
  dpkg-db-backup.timer dpkg-db-backup.service \
  e2scrub_all.timer e2scrub_all.service e2scrub_reap.service \
  fstrim.timer fstrim.service systemd-tmpfiles-clean.timer \
  getty@tty1.service getty-static.service console-getty.service \
  systemd-journal-flush.service systemd-pstore.service systemd-random-seed.service \
  systemd-update-utmp.service systemd-update-utmp-runlevel.service systemd-user-sessions.service \
  systemd-remount-fs.service systemd-fsck-root.service systemd-sysusers.service systemd-firstboot.service \
  systemd-machine-id-commit.service systemd-udev-settle.service systemd-networkd-wait-online.service \
  systemd-binfmt.service proc-sys-fs-binfmt_misc.automount proc-sys-fs-binfmt_misc.mount \
  modprobe@fuse.service modprobe@dm_mod.service modprobe@configfs.service modprobe@efi_pstore.service \
  modprobe@loop.service modprobe@drm.service kmod-static-nodes.service \
  dev-hugepages.mount dev-mqueue.mount sys-kernel-debug.mount sys-kernel-tracing.mount \
  sys-kernel-config.mount sys-fs-fuse-connections.mount \
  systemd-ask-password-console.path systemd-ask-password-wall.path \
  cryptdisks.service cryptdisks-early.service hwclock.service \
  systemd-pcrphase.service systemd-pcrphase-sysinit.service systemd-repart.service \
  systemd-hwdb-update.service systemd-journal-catalog-update.service systemd-update-done.service \
  ; do
  ln -sf /dev/null "$R/etc/systemd/system/$u"
done
rm -f "$R/etc/systemd/system/getty.target.wants/getty@tty1.service" \
      "$R/etc/systemd/system/multi-user.target.wants/e2scrub_reap.service" \
      "$R/etc/systemd/system/sysinit.target.wants/systemd-pstore.service" \
      "$R"/etc/systemd/system/timers.target.wants/*
mkdir -p "$R/etc/tmpfiles.d"
ln -sf /dev/null "$R/etc/tmpfiles.d/systemd-nologin.conf"
# generators: none is needed (no fstab, no crypt, no sysv scripts)
mkdir -p "$R/etc/systemd/system-generators"
for g in "$R"/lib/systemd/system-generators/*; do
  [ -e "$g" ] || continue
  ln -sf /dev/null "$R/etc/systemd/system-generators/${g##*/}"
done
mkdir -p "$R/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\nRuntimeMaxUse=8M\n' >"$R/etc/systemd/journald.conf.d/mx.conf"

chroot "$R" update-initramfs -u -k all
HOOK
chmod 0755 "$WORK/customize.sh"

include=systemd-sysv,udev,iproute2,iputils-ping,openssh-server,qemu-guest-agent,iperf3
include=$include,linux-image-cloud-amd64,initramfs-tools,procps,less,tcpdump,ethtool
include=$include,traceroute,netcat-openbsd,python3
[ -z "$EXTRA" ] || include=$include,$EXTRA
# Straight into a directory, and the tree gone once the file system holds
# it: one copy of the root on disk at a time (CI machines share their disk).
ROOT=$WORK/root
log "mmdebstrap $NAME ($include)"
mmdebstrap --variant=minbase --include="$include" \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --customize-hook="$WORK/customize.sh \"\$1\" $WORK/files" \
  "$NAME" "$ROOT" \
  "deb $MIRROR $NAME main" \
  "deb $MIRROR $NAME-updates main" \
  "deb ${MIRROR%/debian}/debian-security $SECURITY main" >&2

kernel=$(find "$ROOT/boot" -maxdepth 1 -name 'vmlinuz-*-cloud-amd64' -printf '%f\n' | sort -V | tail -n 1)
[ -n "$kernel" ] || die "the image has no cloud kernel in /boot"
kver=${kernel#vmlinuz-}
cp "$ROOT/boot/$kernel" "$WORK/vmlinuz"
# The cloud kernel is LZ4-compressed: the ELF inside boots through PVH.
for off in $(grep -aboP '\x02\x21\x4c\x18' "$WORK/vmlinuz" | cut -d: -f1); do
  tail -c "+$((off + 1))" "$WORK/vmlinuz" | lz4 -dc >"$WORK/vmlinux" 2>/dev/null || true
  if [ "$(head -c 4 "$WORK/vmlinux" | od -An -c | tr -d ' ')" = '177ELF' ]; then break; fi
  rm -f "$WORK/vmlinux"
done
log "root filesystem: $(du -sh "$ROOT" | cut -f1)"
mkfs.ext4 -q -F -L root -d "$ROOT" "$WORK/disk.raw" 2G
rm -rf "$ROOT"
qemu-img convert -O qcow2 "$WORK/disk.raw" "$WORK/base.qcow2"
rm -f "$WORK/disk.raw"

kernel_file=vmlinuz
[ -f "$WORK/vmlinux" ] && kernel_file=vmlinux
cat >"$WORK/image.json" <<JSON
{
  "name": "$NAME",
  "arch": "$ARCH",
  "kind": "disk",
  "description": "$OS on a disk (systemd, qemu-ga, sshd, iperf3; kernel $kver)",
  "kernel": "$kernel_file",
  "disk": "base.qcow2",
  "disk_bus": "nvme",
  "append": ["root=/dev/nvme0n1", "rootwait", "rootfstype=ext4", "rw", "systemd.show_status=false", "net.ifnames=0",
             "mitigations=off", "8250.nr_uarts=1", "tsc=reliable", "random.trust_cpu=on",
             "cryptomgr.notests=1", "initcall_blacklist=crypto_kdf108_init,init_kprobe_trace,init_encrypted"],
  "agent": "qga",
  "ssh": true,
  "os": "$OS"
}
JSON
# Replace whole files: a running VM keeps the base it booted (its overlay
# names the file, which is renamed over, not written).
rm -f "$OUTDIR/initrd.img"
for f in vmlinuz vmlinux base.qcow2 image.json; do
  [ -f "$WORK/$f" ] || continue
  mv -f "$WORK/$f" "$OUTDIR/$f"
done
printf '%s\n' "$stamp_text" >"$STAMP"
log "$NAME: base.qcow2 $(du -h "$OUTDIR/base.qcow2" | cut -f1), kernel $kver"
