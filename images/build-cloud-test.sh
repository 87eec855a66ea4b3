#!/usr/bin/env bash
# build-cloud-test.sh OUT.qcow2
#
# Builds a cloud image the way the distributions' cloud images are made,
# from the Debian mirror alone, for the tests of `mxc image import`: a
# partitioned disk booted by the firmware through GRUB, a kernel and an
# initramfs of its own, cloud-init (which finds the NoCloud seed mx writes),
# openssh-server with no host keys, no mx script anywhere. What mx does
# with such an image is what it does with Debian's genericcloud or Ubuntu's
# cloud images, which this machine cannot download.
#
# Environment:
#   MX_DEBIAN_MIRROR  default http://deb.debian.org/debian
# Needs root, mmdebstrap, e2fsprogs (mkfs.ext4 -d), fdisk (sfdisk),
# qemu-utils. Logs to stderr.
set -euo pipefail
umask 022
export LC_ALL=C
export PATH="$PATH:/usr/sbin:/sbin"

log() { printf 'build-cloud-test: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ $# -eq 1 ] || { echo "usage: $0 OUT.qcow2" >&2; exit 2; }
OUT=$1
MIRROR=${MX_DEBIAN_MIRROR:-http://deb.debian.org/debian}
[ "$(id -u)" -eq 0 ] || die "run as root"

need() { # need COMMAND PACKAGE
  command -v "$1" >/dev/null && return 0
  log "installing $2"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >&2 \
    || die "$1 is missing: apt-get install -y $2"
}
need mmdebstrap mmdebstrap
need mkfs.ext4 e2fsprogs
need sfdisk fdisk
need qemu-img qemu-utils

WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/build-cloud-test.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

cat >"$WORK/customize.sh" <<'HOOK'
#!/bin/sh
set -eu
R=$1
echo cloud >"$R/etc/hostname"
printf '127.0.0.1\tlocalhost\n' >"$R/etc/hosts"
printf 'LABEL=cloudimg-rootfs / ext4 defaults 0 1\n' >"$R/etc/fstab"
: >"$R/etc/machine-id"
rm -f "$R"/etc/ssh/ssh_host_*
# the locale cloud-init sets, made now (as in the distributions' images)
echo 'en_US.UTF-8 UTF-8' >"$R/etc/locale.gen"
chroot "$R" locale-gen >/dev/null
echo 'LANG=en_US.UTF-8' >"$R/etc/default/locale"
printf 'auto lo\niface lo inet loopback\nsource /etc/network/interfaces.d/*\n' >"$R/etc/network/interfaces"
kver=$(ls "$R/boot" | sed -n 's/^vmlinuz-//p' | sort -V | tail -n 1)
[ -n "$kver" ] || { echo "no kernel in /boot" >&2; exit 1; }
mkdir -p "$R/boot/grub"
cat >"$R/boot/grub/grub.cfg" <<CFG
set timeout=0
linux /boot/vmlinuz-$kver root=LABEL=cloudimg-rootfs ro console=tty0 console=ttyS0,115200
initrd /boot/initrd.img-$kver
boot
CFG
cp -r "$R/usr/lib/grub/i386-pc" "$R/boot/grub/"
chroot "$R" grub-mkimage -O i386-pc -o /boot/grub/core.img -p '(hd0,msdos1)/boot/grub' \
  biosdisk part_msdos ext2 normal linux configfile
HOOK
chmod 0755 "$WORK/customize.sh"

include=systemd-sysv,udev,kmod,linux-image-cloud-amd64,initramfs-tools,grub-pc-bin
include=$include,cloud-init,ifupdown,openssh-server,iproute2,iputils-ping,procps
include=$include,e2fsprogs,cloud-guest-utils,locales
# Straight into a directory: no tarball beside the tree.
ROOT=$WORK/root
log "mmdebstrap bookworm ($include)"
mmdebstrap --variant=minbase --include="$include" \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --customize-hook="$WORK/customize.sh \"\$1\"" \
  bookworm "$ROOT" "deb $MIRROR bookworm main" >&2

cp "$ROOT/boot/grub/core.img" "$ROOT/usr/lib/grub/i386-pc/boot.img" "$WORK/"
[ "$(stat -c %s "$WORK/core.img")" -lt $((2047 * 512)) ] || die "core.img does not fit before the partition"

# One partition from 1 MiB; GRUB's boot sector in the MBR, its core in the
# gap after it (where grub-install puts them; boot.img reads sector 1,
# whose first sector reads the rest from sector 2 on). The file system is
# made in place at the partition's offset, and the tree it came from goes
# before the image is converted: one copy of the root on disk at a time
# (CI machines share their disk).
truncate -s $((3 * 1024 + 1))M "$WORK/disk.raw"
mkfs.ext4 -q -F -L cloudimg-rootfs -E offset=$((1024 * 1024)),nodiscard -d "$ROOT" "$WORK/disk.raw" 3G
rm -rf "$ROOT"
printf 'label: dos\nstart=2048, type=83, bootable\n' | sfdisk -q --wipe-partitions never "$WORK/disk.raw"
dd if="$WORK/boot.img" of="$WORK/disk.raw" bs=440 count=1 conv=notrunc status=none
dd if="$WORK/core.img" of="$WORK/disk.raw" bs=512 seek=1 conv=notrunc status=none
grep -q 'start=\s*2048,.*bootable' <<<"$(sfdisk -d "$WORK/disk.raw")" || die "the partition table did not survive"
# Compressed, as distributions publish them.
qemu-img convert -c -O qcow2 "$WORK/disk.raw" "$WORK/out.qcow2"
mv -f "$WORK/out.qcow2" "$OUT"
log "$OUT: $(du -h "$OUT" | cut -f1)"
